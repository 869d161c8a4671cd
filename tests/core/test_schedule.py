import itertools

import pytest

from core.schedule import (
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
