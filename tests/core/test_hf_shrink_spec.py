"""The spec of width and depth jobs: Hugging Face models only, a numeric target, `hidden` with
width alone, no one-shot method; validated without torch."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from core.spec import JobSpec


def _body(**prune: Any) -> dict[str, Any]:
    return {
        "model": {"hf": "file:///models/tiny"},
        "task": {"kind": "causal-lm", "data": "file:///data/t.jsonl", "val_fraction": 0.2},
        "prune": {"target_sparsity": 0.3, **prune},
    }


def test_width_and_depth_specs_validate_with_their_fields():
    width = JobSpec.model_validate(_body(granularity="width", hidden=True, round_to=64))
    assert (width.prune.granularity, width.prune.hidden, width.prune.round_to) == (
        "width",
        True,
        64,
    )
    depth = JobSpec.model_validate(_body(granularity="depth", calibration_samples=16))
    assert depth.prune.hidden is False and depth.prune.calibration_samples == 16


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"model": {"arch": "mlp"}, "task": {"dataset": "digits"}},
            "prune",
            "granularity 'width' needs a Hugging Face model",
        ),
        ({"prune": {"granularity": "depth", "hidden": True}}, "prune", "with a width"),
        ({"prune": {"granularity": "channel", "hidden": True}}, "prune", "with a width"),
        ({"prune": {"granularity": "width", "target_sparsity": "max"}}, "prune", "cuts once"),
        ({"prune": {"granularity": "width", "method": "wanda"}}, "prune", "'unstructured' or N:M"),
    ],
)
def test_bad_width_and_depth_specs_are_refused_naming_the_field(body, field, message):
    spec = _body(granularity="width")
    for key, value in body.items():
        spec[key] = {**spec[key], **value} if key == "prune" else value
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(spec)
    errors = caught.value.errors()
    assert any(
        ".".join(map(str, error["loc"])) == field and message in error["msg"] for error in errors
    ), errors


def test_width_specs_validate_without_importing_torch():
    code = (
        "import sys\n"
        "from core.spec import JobSpec\n"
        "from tests.core.test_hf_shrink_spec import _body\n"
        "JobSpec.model_validate(_body(granularity='width', hidden=True))\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
