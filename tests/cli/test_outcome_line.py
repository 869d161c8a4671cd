"""The line `adaprune run` and `submit --wait` print: reached against asked."""

from cli.outcome import asked_text, outcome_line, target_reached


def test_reached_and_missed_targets_read_against_what_was_asked():
    prune = {"target_sparsity": 0.7}
    assert outcome_line({"sparsity": 0.7, "target_reached": True}, prune) == (
        "target 0.70 reached: sparsity 0.7000"
    )
    missed = {
        "sparsity": 0.664,
        "target_reached": False,
        "target_missed_reason": "no_headroom at 0.664: step 4 at 0.72 cost 3.1 points",
    }
    assert outcome_line(missed, prune) == (
        "target 0.70 missed: sparsity 0.6640 (no_headroom at 0.664: step 4 at 0.72 cost 3.1 points)"
    )
    assert not target_reached(missed)


def test_max_is_shown_with_its_bound():
    assert asked_text({"target_sparsity": "max", "max_sparsity": 0.95}) == "max (up to 0.95)"
