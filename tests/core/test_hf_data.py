"""Loading a Hugging Face directory and its text task: formats, splits, labels, refusals."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import DataInvalid, ModelLoadFailed
from core.hf.load import prepare_hf
from core.losses import IGNORE
from core.spec import JobSpec
from core.uri import fetch, fetch_dir
from tests.core.hf_assets import pattern_rows, sentiment_rows, tiny_bert, tiny_llama, write_jsonl


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert"))


def _prepare(model: Path, task: dict[str, Any], cache: Path) -> Any:
    spec = JobSpec.model_validate(
        {"model": {"hf": model.as_uri()}, "task": task, "prune": {"target_sparsity": 0.5}}
    )
    return prepare_hf(
        spec,
        fetch_dir=functools.partial(fetch_dir, cache_dir=cache),
        fetch=functools.partial(fetch, cache_dir=cache),
    )


def test_jsonl_and_csv_splits_are_tokenised_with_the_models_tokenizer(bert_dir, tmp_path):
    rows = sentiment_rows(12, seed=0)
    train = write_jsonl(tmp_path / "train.jsonl", rows[:8])
    csv_path = tmp_path / "val.csv"
    csv_path.write_text(
        "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows[8:]),
        encoding="utf-8",
    )
    task = {
        "kind": "text-classification",
        "data": {"train": train, "val": csv_path.as_uri()},
        "max_length": 4,
    }
    data, adapter, _ = _prepare(bert_dir, task, tmp_path / "cache")
    assert data.x_train.dtype == np.int64 and data.x_train.shape == (8, 2, 4)
    assert data.x_val.shape == (4, 2, 4) and data.x_test is None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(bert_dir))
    expected = tokenizer(rows[0]["text"], truncation=True, max_length=4)["input_ids"]
    assert data.x_train[0, 0].tolist() == expected
    assert data.x_train[:, 1].min() == 1  # every text fills max_length here
    # no label names in the config: sorted unique labels, recorded in the loaded model
    assert data.y_train.tolist() == [1 if r["label"] == "pos" else 0 for r in rows[:8]]
    assert adapter.hf.config.id2label == {0: "neg", 1: "pos"}
    assert adapter.prune_excluded == {"hf.classifier": "classifier head: kept dense by default"}


def test_the_configs_label2id_maps_labels_and_unknown_labels_are_refused(tmp_path):
    model = tiny_bert(tmp_path / "named")
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model))
    config.id2label = {0: "pos", 1: "neg"}
    config.label2id = {"pos": 0, "neg": 1}
    config.save_pretrained(str(model))
    rows = sentiment_rows(8, seed=1)
    task = {"kind": "text-classification", "data": write_jsonl(tmp_path / "a.jsonl", rows)}
    data, _, _ = _prepare(model, {**task, "val_fraction": 0.25}, tmp_path / "cache")
    labels = np.concatenate([data.y_train, data.y_val])
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4
    rows[0]["label"] = "meh"
    write_jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataInvalid, match="'meh' is not in the model's label2id"):
        _prepare(model, {**task, "val_fraction": 0.25}, tmp_path / "cache")


def test_one_file_is_split_by_fractions_the_same_way_every_time(bert_dir, tmp_path):
    uri = write_jsonl(tmp_path / "all.jsonl", sentiment_rows(40, seed=2))
    task = {"kind": "text-classification", "data": uri, "val_fraction": 0.2, "test_fraction": 0.1}
    first, _, _ = _prepare(bert_dir, task, tmp_path / "cache")
    again, _, _ = _prepare(bert_dir, task, tmp_path / "cache")
    assert (len(first.x_train), len(first.x_val), len(first.x_test)) == (28, 8, 4)
    assert np.array_equal(first.x_val, again.x_val) and np.array_equal(first.x_test, again.x_test)


def test_causal_lm_targets_are_the_next_real_tokens(tmp_path):
    model = tiny_llama(tmp_path / "llama")
    rows = pattern_rows(6, seed=0)
    rows[0]["text"] = "the day"  # shorter: padded
    uri = write_jsonl(tmp_path / "lm.jsonl", rows)
    task = {"kind": "causal-lm", "data": {"train": uri, "val": uri}, "max_length": 8}
    data, adapter, _ = _prepare(model, task, tmp_path / "cache")
    ids, mask = data.x_train[:, 0], data.x_train[:, 1]
    assert data.y_train.shape == ids.shape and data.num_classes == adapter.hf.config.vocab_size
    assert mask[0].tolist() == [1, 1] + [0] * 6
    assert data.y_train[0].tolist() == [int(ids[0, 1])] + [IGNORE] * 7
    assert data.y_train[1, :-1].tolist() == ids[1, 1:].tolist() and data.y_train[1, -1] == IGNORE
    assert adapter.prune_excluded == {"hf.lm_head": "language-model head: kept dense by default"}


def test_pickle_weights_are_refused_as_model_load_failed(bert_dir, tmp_path):
    copy = tmp_path / "with-bin"
    copy.mkdir()
    for file in bert_dir.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "pytorch_model.bin").write_bytes(b"not loaded")
    task = {
        "kind": "text-classification",
        "data": write_jsonl(tmp_path / "a.jsonl", sentiment_rows(8, seed=0)),
    }
    with pytest.raises(ModelLoadFailed, match=r"pickle weights \(pytorch_model.bin\)") as info:
        _prepare(copy, {**task, "val_fraction": 0.25}, tmp_path / "cache")
    assert info.value.code == "model_load_failed"
    (copy / "pytorch_model.bin").unlink()
    (copy / "model.safetensors").unlink()
    with pytest.raises(ModelLoadFailed, match=r"no \*\.safetensors"):
        _prepare(copy, {**task, "val_fraction": 0.25}, tmp_path / "cache")


def test_parquet_is_read_with_pyarrow_or_refused_clearly(bert_dir, tmp_path):
    path = tmp_path / "t.parquet"
    rows = sentiment_rows(8, seed=3)
    task = {"kind": "text-classification", "data": path.as_uri(), "val_fraction": 0.25}
    if importlib.util.find_spec("pyarrow") is None:
        path.write_bytes(b"PAR1")
        with pytest.raises(DataInvalid, match="Parquet needs pyarrow"):
            _prepare(bert_dir, task, tmp_path / "cache")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    data, _, _ = _prepare(bert_dir, task, tmp_path / "cache")
    assert len(data.x_train) + len(data.x_val) == 8


def test_missing_columns_and_files_are_data_invalid(bert_dir, tmp_path):
    uri = write_jsonl(tmp_path / "a.jsonl", [{"sentence": "good day", "label": "pos"}] * 4)
    task = {"kind": "text-classification", "data": uri, "val_fraction": 0.25}
    with pytest.raises(DataInvalid, match="no column 'text'"):
        _prepare(bert_dir, task, tmp_path / "cache")
    missing = {**task, "data": (tmp_path / "none.jsonl").as_uri()}
    with pytest.raises(DataInvalid, match="was not found"):
        _prepare(bert_dir, missing, tmp_path / "cache")
