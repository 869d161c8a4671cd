"""Text tasks from a `datasets` save_to_disk directory (read with pyarrow alone), and the
no-links directory copy the worker makes of it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from core.contract.entrypoints import ANY_MODULE
from core.errors import DataInvalid
from core.job import prepare
from core.spec import JobSpec
from core.uri import copy_dir_no_links
from tests.core.hf_assets import sentiment_rows, tiny_bert

datasets = pytest.importorskip("datasets", reason="the [dev] extra installs datasets")


def _spec(model: Path, data: str, **task: Any) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"hf": model.as_uri()},
            "task": {"kind": "text-classification", "data": data, "max_length": 16, **task},
            "prune": {"method": "wanda", "target_sparsity": 0.5},
        }
    )


def _save_dict(directory: Path) -> Path:
    splits = {"train": 20, "validation": 8, "test": 6}
    datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(sentiment_rows(count, seed=seed))
            for seed, (split, count) in enumerate(splits.items())
        }
    ).save_to_disk(str(directory))
    return directory


def test_a_dataset_dict_directory_gives_its_own_splits(tmp_path):
    model = tiny_bert(tmp_path / "bert")
    saved = _save_dict(tmp_path / "bbc")
    data, _ = prepare(
        _spec(model, saved.as_uri() + "/"), cache_dir=tmp_path / "c", allowed_entrypoints=ANY_MODULE
    )
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (20, 8, 6)
    assert data.num_classes == 2
    with pytest.raises(DataInvalid, match="has its own splits"):
        prepare(
            _spec(model, saved.as_uri() + "/", val_fraction=0.2),
            cache_dir=tmp_path / "c",
            allowed_entrypoints=ANY_MODULE,
        )


@pytest.mark.integration
def test_a_dataset_dict_under_an_s3_prefix_gives_its_own_splits(s3_endpoint, tmp_path):
    import boto3

    model = tiny_bert(tmp_path / "bert")
    saved = _save_dict(tmp_path / "bbc")
    client = boto3.client("s3")
    client.create_bucket(Bucket="tasks")
    for path in saved.rglob("*"):
        if path.is_file():
            key = f"team/bbc/{path.relative_to(saved).as_posix()}"
            client.upload_file(str(path), "tasks", key)
    data, _ = prepare(
        _spec(model, "s3://tasks/team/bbc/"),
        cache_dir=tmp_path / "c",
        allowed_entrypoints=ANY_MODULE,
    )
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (20, 8, 6)


def test_one_saved_dataset_is_split_by_the_fractions(tmp_path):
    model = tiny_bert(tmp_path / "bert")
    saved = tmp_path / "one"
    datasets.Dataset.from_list(sentiment_rows(40, seed=3)).save_to_disk(str(saved))
    spec = _spec(model, saved.as_uri() + "/", val_fraction=0.25, test_fraction=0.1)
    data, _ = prepare(spec, cache_dir=tmp_path / "c", allowed_entrypoints=ANY_MODULE)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (26, 10, 4)
    with pytest.raises(DataInvalid, match="give val_fraction"):
        prepare(
            _spec(model, saved.as_uri() + "/"),
            cache_dir=tmp_path / "c",
            allowed_entrypoints=ANY_MODULE,
        )


def test_a_directory_uri_is_a_datasets_directory_in_the_spec():
    spec = _spec(Path("/m"), "file:///d/bbc/")
    assert spec.task.val_fraction is None
    with pytest.raises(ValueError, match="names a file, not a directory"):
        _spec(Path("/m"), "artifact://0b7c1f3e-3d3a-4b8e-9a8e-2f6f1f6f1f6f/data/")
    with pytest.raises(ValueError, match="needs val_fraction"):
        _spec(Path("/m"), "file:///d/all.jsonl")


def test_the_directory_copy_takes_the_split_directories_and_refuses_links(tmp_path):
    saved = _save_dict(tmp_path / "bbc")
    copied = copy_dir_no_links(str(saved), tmp_path / "copy", depth=1)
    assert sorted(p.name for p in copied.iterdir()) == [
        "dataset_dict.json",
        "test",
        "train",
        "validation",
    ]
    assert (copied / "train" / "state.json").is_file()
    flat = copy_dir_no_links(str(saved), tmp_path / "flat")
    assert [p.name for p in flat.iterdir()] == ["dataset_dict.json"]
    os.symlink(tmp_path / "bert", saved / "train" / "elsewhere")
    with pytest.raises(PermissionError, match="symbolic link"):
        copy_dir_no_links(str(saved), tmp_path / "again", depth=1)
