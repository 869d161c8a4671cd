import itertools

import pytest

from core.schedule import (
    AdaptiveController,
    cubic_sparsity,
    fixed_schedule,
    linear_sparsity,
    oneshot_sparsity,
)


def test_cubic_sparsity_reaches_target_at_end_and_starts_at_zero():
    assert cubic_sparsity(0, final=0.9, steps=10) == 0.0
    assert cubic_sparsity(10, final=0.9, steps=10) == pytest.approx(0.9)
    assert cubic_sparsity(15, final=0.9, steps=10) == pytest.approx(0.9)


def test_cubic_sparsity_prunes_fastest_early():
    values = [cubic_sparsity(t, final=0.9, steps=10) for t in range(11)]
    increments = [b - a for a, b in itertools.pairwise(values)]
    assert all(x > y for x, y in itertools.pairwise(increments))


def test_cubic_sparsity_matches_zhu_gupta_formula():
    assert cubic_sparsity(3, final=0.8, steps=6, initial=0.1) == pytest.approx(
        0.8 + (0.1 - 0.8) * (1 - 3 / 6) ** 3
    )


def test_linear_and_oneshot_schedules():
    assert linear_sparsity(5, final=0.6, steps=10) == pytest.approx(0.3)
    assert oneshot_sparsity(0, final=0.6, steps=10) == 0.0
    assert oneshot_sparsity(1, final=0.6, steps=10) == 0.6
    assert fixed_schedule("linear", final=0.6, steps=10)(10) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"final": 1.2, "steps": 3}, "final sparsity"), ({"final": 0.5, "steps": 0}, "steps")],
)
def test_schedules_refuse_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        linear_sparsity(1, **kwargs)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        fixed_schedule("exponential", final=0.5, steps=3)  # type: ignore[arg-type]


def test_controller_accelerates_with_headroom():
    controller = AdaptiveController(tolerance=0.02)
    state = controller.initial_state(target=0.9, steps=9)
    decision = controller.decide(state, sparsity=0.1, drop=0.0)
    assert decision.verdict == "accelerate"
    assert decision.next_sparsity == pytest.approx(0.1 + 0.1 * 1.5)
    assert decision.state.last_good_sparsity == pytest.approx(0.1)


def test_controller_shrinks_close_to_tolerance_and_keeps_in_between():
    controller = AdaptiveController(tolerance=0.02)
    state = controller.initial_state(target=0.9, steps=9)
    assert controller.decide(state, sparsity=0.1, drop=0.019).verdict == "shrink"
    assert controller.decide(state, sparsity=0.1, drop=0.012).verdict == "keep"


def test_controller_rolls_back_past_tolerance_with_half_increment():
    controller = AdaptiveController(tolerance=0.02)
    state = controller.initial_state(target=0.9, steps=9)
    good = controller.decide(state, sparsity=0.1, drop=0.0).state
    decision = controller.decide(good, sparsity=0.25, drop=0.05)
    assert decision.verdict == "rollback"
    assert decision.state.last_good_sparsity == pytest.approx(0.1)
    assert decision.next_sparsity == pytest.approx(0.1 + good.increment / 2)
    assert decision.state.rollbacks == 1


def test_controller_gives_up_when_increment_vanishes():
    controller = AdaptiveController(tolerance=0.0)
    state = controller.initial_state(target=0.9, steps=1)
    decision = None
    for _ in range(10):
        decision = controller.decide(
            state, sparsity=state.last_good_sparsity + state.increment, drop=0.1
        )
        state = decision.state
        if decision.done:
            break
    assert decision is not None and decision.done
    assert state.best_sparsity == 0.0


def test_controller_is_done_when_target_accepted():
    controller = AdaptiveController(tolerance=0.05)
    state = controller.initial_state(target=0.5, steps=2)
    decision = controller.decide(state, sparsity=0.5, drop=0.01)
    assert decision.done
    assert decision.state.best_sparsity == pytest.approx(0.5)


def test_controller_never_proposes_a_sparsity_that_was_rolled_back():
    controller = AdaptiveController(tolerance=0.02)
    state = controller.initial_state(target=0.9, steps=3)
    state = controller.decide(state, sparsity=0.3, drop=0.0).state
    failed = controller.decide(state, sparsity=0.6, drop=0.1)
    assert failed.state.ceiling == pytest.approx(0.6)
    accepted = controller.decide(failed.state, sparsity=failed.next_sparsity, drop=0.0)
    assert accepted.next_sparsity < 0.6
    assert accepted.next_sparsity == pytest.approx((failed.next_sparsity + 0.6) / 2)


def test_controller_narrows_onto_the_highest_tolerable_sparsity_and_stops():
    controller = AdaptiveController(tolerance=0.02)
    state = controller.initial_state(target=0.9, steps=2)
    proposal, decision, steps = controller.first_sparsity(state), None, 0
    while steps < 40:
        steps += 1
        # every sparsity from 0.7 up costs too much accuracy
        decision = controller.decide(
            state, sparsity=proposal, drop=0.05 if proposal >= 0.7 else 0.0
        )
        state, proposal = decision.state, decision.next_sparsity
        if decision.done:
            break
    assert decision is not None and decision.done and steps < 40
    assert 0.7 - state.min_increment <= state.last_good_sparsity < 0.7
    assert state.ceiling >= 0.7
