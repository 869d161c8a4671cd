"""core.threads: a job's CPU thread count follows its model's size unless one is asked for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from core import threads
from core.threads import SMALL_MODEL_PARAMETERS, auto_threads, configure_threads
from workers.settings import WorkerSettings


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_small_model_runs_on_one_thread() -> None:
    model = nn.Linear(10, 10)
    assert configure_threads(model) == 1
    assert torch.get_num_threads() == 1


def test_a_large_model_keeps_torchs_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_DEFAULT_THREADS", 3)
    model = nn.Linear(1000, SMALL_MODEL_PARAMETERS // 1000 + 1)
    assert configure_threads(model) == 3
    assert torch.get_num_threads() == 3
    assert auto_threads(SMALL_MODEL_PARAMETERS - 1) == 1


def test_an_asked_count_wins_over_the_size_rule() -> None:
    assert configure_threads(nn.Linear(2, 2), 2) == 2
    assert torch.get_num_threads() == 2
    assert configure_threads(nn.Linear(2, 2), 0) == 1


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 0"):
        configure_threads(nn.Linear(2, 2), -1)


def test_the_worker_reads_its_thread_count_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADAPRUNE_TORCH_THREADS", "4")
    assert WorkerSettings().torch_threads == 4
    monkeypatch.setenv("ADAPRUNE_TORCH_THREADS", "-1")
    with pytest.raises(ValueError, match="torch_threads"):
        WorkerSettings()
