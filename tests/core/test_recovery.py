"""The plan's steps left, which the adaptive controller re-plans the cubic schedule over."""

from types import SimpleNamespace

from core.recovery import steps_left
from core.report import StepReport
from core.run_state import Counters
from core.spec import JobSpec


def _run(decisions: list[str], *, steps: int = 10, max_epochs: int = 50, used: int = 0):
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "mlp"},
            "task": {"dataset": "digits"},
            "prune": {"target_sparsity": 0.7, "schedule": {"kind": "adaptive", "steps": steps}},
            "finetune": {"epochs_per_step": 3, "final_epochs": 20},
            "budget": {"max_epochs": max_epochs},
        }
    )
    reports = [
        StepReport(
            step=i,
            target_sparsity=0.1 * i,
            sparsity=0.1 * i,
            metric=0.9,
            loss=0.1,
            decision=decision,
            seconds=0.0,
            epochs=0,
        )
        for i, decision in enumerate(decisions)
    ]
    # the step being judged has been counted, not reported yet
    counters = Counters(step=len(decisions), finetune_epochs=used)
    return SimpleNamespace(spec=spec, state=SimpleNamespace(reports=reports, counters=counters))


def test_the_plan_counts_accepted_steps_not_rolled_back_ones():
    accepted = _run(["baseline", "accelerate", "keep"], max_epochs=1000)
    rolled = _run(["baseline", "accelerate", "rollback", "rollback", "keep"], max_epochs=1000)
    # 10 nominal steps, three accepted with the one being judged
    assert steps_left(accepted, limit=30) == 7
    assert steps_left(rolled, limit=30) == 7
    provisional = _run(["baseline", "provisional"], max_epochs=1000)
    assert steps_left(provisional, limit=30) == 8


def test_the_budget_and_the_step_limit_bound_the_plan():
    # 50 epochs, 20 kept for the final fine-tuning, 24 spent: two steps of three epochs left
    assert steps_left(_run(["baseline", "keep"], used=24), limit=30) == 2
    assert steps_left(_run(["baseline", "keep"], max_epochs=1000), limit=3) == 1


def test_past_the_nominal_steps_the_plan_is_one_more_step_while_the_budget_lasts():
    many = ["baseline", *["shrink"] * 12]
    assert steps_left(_run(many, max_epochs=1000), limit=30) == 1
    assert steps_left(_run(many, used=30), limit=30) == 0
