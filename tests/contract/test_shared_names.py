"""Helpers every package shares: one entry-point rule, one spec-file reader, one JSON cleaner."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.contract.entrypoints import ANY_MODULE, EntrypointAllowList, entrypoint_allowed
from core.contract.jsonsafe import json_safe
from core.contract.specfile import SpecFileInvalid, describe_validation, load_spec_file
from core.errors import ModelLoadFailed
from core.models import load_entrypoint
from core.spec import JobSpec
from service.policy import check_policy

TOY = "tests.core.toy_models:tiny_mlp"
SPEC = {"name": "t", "model": {"entrypoint": TOY}, "task": {"dataset": "digits"}}
SPEC["prune"] = {"target_sparsity": 0.5}


@pytest.mark.parametrize(
    "prefixes",
    [[], ["tests"], ["tests.core"], ["tests.co"], [" tests.core. "], ["other"], ["", "tests"]],
)
def test_engine_and_policy_agree_on_every_allow_list(prefixes: list[str]) -> None:
    allow_list = EntrypointAllowList.only(prefixes)
    policy_allows = not check_policy(
        JobSpec.model_validate(SPEC), allowed_entrypoints=prefixes, allowed_file_roots=[]
    )
    try:
        load_entrypoint(TOY, kwargs={}, allowed_prefixes=allow_list)
        engine_allows = True
    except ModelLoadFailed:
        engine_allows = False
    assert engine_allows == policy_allows == allow_list.allows(TOY)


def test_an_empty_allow_list_admits_nothing_and_allow_any_admits_everything() -> None:
    assert not entrypoint_allowed("pkg.models:build", [], allow_any=False)
    assert entrypoint_allowed("pkg.models:build", [], allow_any=True)
    assert entrypoint_allowed("pkg.models:build", ["other"], allow_any=True)
    assert not EntrypointAllowList.only([]).allows("pkg:build")
    assert ANY_MODULE.allows("anything.at.all:f") and ANY_MODULE.describe() == "any module"
    assert EntrypointAllowList.only([]).describe() == "none (built-in archs only)"


def test_prefixes_match_whole_module_names() -> None:
    allow_list = EntrypointAllowList.only(["pkg"])
    assert allow_list.allows("pkg:f") and allow_list.allows("pkg.sub.mod:f")
    assert not allow_list.allows("pkgevil:f") and not allow_list.allows("pk:f")


def test_spec_files_are_read_from_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nprune: {target_sparsity: 0.5}\n")
    (tmp_path / "b.json").write_text('{"name": "b"}')
    assert load_spec_file(tmp_path / "a.yaml") == {"name": "a", "prune": {"target_sparsity": 0.5}}
    assert load_spec_file(str(tmp_path / "b.json")) == {"name": "b"}


@pytest.mark.parametrize(
    ("text", "words"),
    [(None, "not found"), ("model: [unclosed\n", "not valid YAML/JSON"), ("- 1\n", "mapping")],
)
def test_bad_spec_files_are_refused_naming_the_file(tmp_path: Path, text: str | None, words: str):
    path = tmp_path / "spec.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SpecFileInvalid, match=words) as refused:
        load_spec_file(path)
    assert "spec.yaml" in str(refused.value) and refused.value.code == "spec_invalid"


def test_validation_errors_read_as_one_line_naming_each_field() -> None:
    bad = {"name": "x", "model": {"arch": "mlp"}, "task": {"dataset": "digits"}}
    bad["prune"] = {"target_sparsity": 2, "granularity": "bogus"}
    with pytest.raises(ValidationError) as error:
        JobSpec.model_validate(bad)
    every = describe_validation(error.value)
    first = describe_validation(error.value, limit=1)
    assert every.startswith("prune.target_sparsity: ") and "; prune.granularity: " in every
    assert first.startswith("prune.target_sparsity: ") and first.endswith("(and 1 more)")
    assert "\n" not in every


def test_json_safe_turns_nan_and_infinity_into_null() -> None:
    cleaned = json_safe({"a": math.nan, "b": [1.0, math.inf], "c": {"d": 2.5}, 3: (-math.inf,)})
    assert cleaned == {"a": None, "b": [1.0, None], "c": {"d": 2.5}, "3": [None]}
