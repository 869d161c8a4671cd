"""The words of a job's log: step decisions against the tolerance, chance level, retries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.auth import get_or_create_tenant
from service.db.migrate import upgrade
from service.store import JobStore
from tests.support.deployment import tiny_spec
from workers.errors import StorageUnavailable
from workers.journal import JobJournal
from workers.narration import StepNarrator, chance_warning


def report(step: int, sparsity: float, metric: float, decision: str) -> dict[str, Any]:
    return {
        "step": step,
        "target_sparsity": sparsity,
        "sparsity": sparsity,
        "metric": metric,
        "loss": 0.1,
        "decision": decision,
        "seconds": 0.5,
        "epochs": 1,
    }


def test_each_step_is_told_against_the_tolerance() -> None:
    narrator = StepNarrator(metric="accuracy", max_drop=0.03)
    baseline = narrator.step(report(0, 0.0, 0.873, "baseline"))
    assert baseline.message == "step 0: dense baseline, accuracy 0.8730"
    narrator.step(report(1, 0.52, 0.870, "accelerate"))
    kept = narrator.step(report(2, 0.61, 0.861, "keep"))
    assert (
        kept.message == "step 2: 0.52 -> 0.61 sparsity, accuracy 0.8610 (drop 0.012 <= 0.03): keep"
    )
    assert kept.level == "info" and abs(kept.data["drop"] - 0.012) < 1e-9
    rolled = narrator.step(report(3, 0.75, 0.80, "rollback"))
    assert rolled.level == "warning"
    assert rolled.message == (
        "step 3: 0.61 -> 0.75 sparsity, accuracy 0.8000 (drop 0.073 > 0.03): rollback to 0.61"
    )
    after = narrator.step(report(4, 0.66, 0.86, "shrink"))
    assert after.message.startswith("step 4: 0.61 -> 0.66 sparsity")  # from the kept step
    final = narrator.step(report(5, 0.66, 0.865, "final"))
    assert final.message.startswith("step 5: final fine-tuning at 0.66 sparsity, accuracy 0.8650")


def test_a_provisional_step_is_told_as_built_on_within_the_noise() -> None:
    narrator = StepNarrator(metric="accuracy", max_drop=0.02)
    narrator.step(report(0, 0.0, 0.90, "baseline"))
    kept = narrator.step(report(1, 0.42, 0.875, "provisional"))
    assert kept.level == "info"
    assert kept.message == (
        "step 1: 0.00 -> 0.42 sparsity, accuracy 0.8750 (drop 0.025 > 0.02): provisional (past "
        "the tolerance by less than the validation noise; the last model within it is held back)"
    )
    ended = narrator.step(report(2, 0.5, 0.86, "rollback"))
    assert ended.message.endswith(": rollback (the steps since 0.00 were provisional)")
    after = narrator.step(report(3, 0.46, 0.89, "keep"))
    assert after.message.startswith("step 3: 0.42 -> 0.46 sparsity")  # built on
    rolled = narrator.step(report(4, 0.6, 0.8, "rollback"))
    assert rolled.message.endswith(": rollback to 0.46")  # within tolerance again


def test_chance_level_is_within_a_small_margin_of_one_over_classes() -> None:
    warned = chance_warning(metric="accuracy", dense=0.11, num_classes=10)
    assert warned is not None and warned.level == "warning"
    assert warned.message == (
        "dense accuracy 0.11 is at chance level (10 classes): pruning results will not mean much"
    )
    assert chance_warning(metric="accuracy", dense=0.54, num_classes=2) is not None
    assert chance_warning(metric="accuracy", dense=0.30, num_classes=10) is None
    assert chance_warning(metric="accuracy", dense=0.90, num_classes=2) is None


def test_a_retry_is_logged_with_its_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    store = JobStore.from_url(url)
    try:
        with store.tx() as session:
            tenant_id = get_or_create_tenant(session, "acme").id
        job_id = store.create_job(tenant_id=tenant_id, spec=tiny_spec(), queue="gpu").job.id
        claim = store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3)
        assert claim is not None
        JobJournal(store, owner="w1", claim=claim).retry(StorageUnavailable("bucket is down"))
        event = store.list_events(job_id)[-1]
        assert (event.kind, event.level) == ("retry", "warning")
        assert event.message == (
            "attempt 1 stopped (storage_unavailable: bucket is down); the job will be retried"
        )
        assert event.data == {"attempt": 1, "reason": "storage_unavailable: bucket is down"}
    finally:
        store.engine.dispose()
