"""When a drained job must stop: at its next checkpoint within the grace, at once on SIGQUIT or a
second signal; a later request never lengthens the wait."""

from __future__ import annotations

import time

from workers.drain import Drain


def test_no_request_never_stops_the_job() -> None:
    drain = Drain()
    drain.checkpointed()
    assert (drain.requested, drain.due()) == (False, False)


def test_a_graceful_drain_stops_at_the_next_checkpoint() -> None:
    drain = Drain()
    drain.request("SIGTERM", grace_s=300)
    assert drain.requested and not drain.due()
    drain.checkpointed()
    assert drain.due() and drain.reason == "SIGTERM"


def test_a_graceful_drain_stops_when_the_grace_runs_out() -> None:
    drain = Drain()
    drain.request("SIGTERM", grace_s=0.2)
    assert not drain.due()
    time.sleep(0.3)
    assert drain.due()


def test_a_second_request_shortens_the_wait_and_never_lengthens_it() -> None:
    drain = Drain()
    drain.request("SIGTERM", grace_s=300)
    drain.request("SIGQUIT", grace_s=0)
    assert drain.due() and drain.reason == "SIGTERM"
    later = Drain()
    later.request("SIGQUIT", grace_s=0)
    later.request("SIGTERM", grace_s=300)
    assert later.due()
