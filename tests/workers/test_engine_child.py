"""The engine's child processes die with their worker: a SIGKILLed `adaprune worker` leaves no
forkserver and no engine child running its job (real worker processes, real Redis)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.deployment import tiny_spec
from tests.support.processes import descendants, parent_pids, still_running
from tests.workers.conftest import ROOT, Service

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# Minutes of pre-training with no step report: the child computes without calling its worker.
LONG_PRETRAINING = {"pretrain_epochs": 5000, "epochs_per_step": 1, "final_epochs": 1}
GONE_WITHIN_S = 5.0


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


def test_a_sigkilled_worker_takes_its_engine_child_and_forkserver_with_it(fresh: Service) -> None:
    worker = fresh.start_worker()
    job_id = fresh.submit({**tiny_spec(steps=1), "finetune": LONG_PRETRAINING})
    fresh.wait(job_id, lambda job: job.phase == "baseline", timeout_s=120)

    def engine_children() -> set[int]:
        # worker -> forkserver -> the job's child: two levels down
        parents = parent_pids()
        return {pid for pid, parent in parents.items() if parents.get(parent) == worker.pid}

    deadline = time.monotonic() + 60
    while not engine_children():
        assert time.monotonic() < deadline, f"no engine child: {fresh.worker_logs()}"
        time.sleep(0.1)
    time.sleep(1.0)  # well inside the pre-training
    tree = descendants(worker.pid)

    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)

    left = still_running(tree, within_s=GONE_WITHIN_S)
    assert left == set(), {pid: _command(pid) for pid in left}
    assert "its worker is gone; exiting" in fresh.worker_logs()


def test_importing_the_forkserver_exit_elsewhere_leaves_the_exit_status_alone() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import workers.forkserver_exit; raise SystemExit(3)"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
