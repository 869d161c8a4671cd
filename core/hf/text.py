"""Reading text task files: JSONL, CSV or Parquet, one per split or one split by fractions, or
a `datasets` `save_to_disk` directory (`core.hf.saved_dataset`).

Rows are plain dicts; only the text and label columns are kept. Nothing is ever unpickled.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import DataInvalid
from core.hf.saved_dataset import read_saved_splits
from core.spec import DataSplits, TaskRef
from core.spec_sources import is_directory_uri

_SPLIT_SEED = 0
# a text task with more rows than this is refused before tokenising (memory)
MAX_ROWS = 5_000_000


@dataclass(frozen=True)
class TextSplits:
    """The texts (and labels, None for a causal LM) of each split; `test` may be absent."""

    texts: dict[str, list[str]]
    labels: dict[str, list[Any]] | None


def read_rows(path: Path, *, name: str) -> list[dict[str, Any]]:
    """The rows of one JSONL, CSV or Parquet file.

    Raises:
        DataInvalid: unreadable file, a JSONL line that is not an object, or Parquet without
            pyarrow installed.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _jsonl(path, name=name)
        if suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                return list(csv.DictReader(handle))
        if suffix == ".parquet":
            return _parquet(path, name=name)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataInvalid(f"{name}: cannot be read ({error})") from error
    raise DataInvalid(f"{name}: {suffix or 'no suffix'} is not .jsonl, .csv or .parquet")


def _jsonl(path: Path, *, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise DataInvalid(f"{name} line {number}: not JSON ({error})") from error
            if not isinstance(row, dict):
                raise DataInvalid(f"{name} line {number}: not a JSON object")
            rows.append(row)
            if len(rows) > MAX_ROWS:
                raise DataInvalid(f"{name}: more than {MAX_ROWS} rows")
    return rows


def _parquet(path: Path, *, name: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise DataInvalid(
            f"{name}: Parquet needs pyarrow on the worker (pip install pyarrow), "
            "or give the split as .jsonl or .csv"
        ) from error
    try:
        table = pq.read_table(path)
    except Exception as error:
        raise DataInvalid(f"{name}: not a readable Parquet file ({error})") from error
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _column(rows: list[dict[str, Any]], column: str, *, name: str) -> list[Any]:
    if not rows:
        raise DataInvalid(f"{name}: split is empty")
    values = []
    for number, row in enumerate(rows, start=1):
        if column not in row:
            found = ", ".join(sorted(map(str, row))[:8])
            raise DataInvalid(f"{name} row {number}: no column {column!r} (has {found})")
        values.append(row[column])
    return values


def _texts(rows: list[dict[str, Any]], column: str, *, name: str) -> list[str]:
    texts = _column(rows, column, name=name)
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise DataInvalid(f"{name} row {number}: {column!r} is {type(text).__name__}, not text")
    return texts


def _labels(rows: list[dict[str, Any]], column: str, *, name: str) -> list[Any]:
    labels = _column(rows, column, name=name)
    for number, label in enumerate(labels, start=1):
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise DataInvalid(
                f"{name} row {number}: label {label!r} must be a string or an integer"
            )
    return labels


def read_splits(
    task: TaskRef,
    *,
    fetch: Callable[[str], Path],
    labelled: bool,
    fetch_dir: Callable[[str], Path] | None = None,
) -> TextSplits:
    """Read the task's text (and, when `labelled`, label) columns for every split.

    One file is split with a fixed seed into train / val (/ test) by `val_fraction` and
    `test_fraction`, the same rows on every run. A `datasets` `save_to_disk` directory (a URI
    ending in "/", fetched with `fetch_dir`) gives its own splits, or is split the same way.

    Raises:
        DataInvalid: a missing file, column or value of the wrong type, or an empty split.
    """
    if task.data is None:
        raise DataInvalid("the text task names no data")
    if is_directory_uri(task.data):
        return _columns(task, _directory_rows(task, fetch_dir), labelled=labelled)
    files = (
        {"train": task.data.train, "val": task.data.val, "test": task.data.test}
        if isinstance(task.data, DataSplits)
        else {"all": task.data}
    )
    rows: dict[str, list[dict[str, Any]]] = {}
    for split, uri in files.items():
        if uri is None:
            continue
        try:
            path = fetch(uri)
        except FileNotFoundError as error:
            raise DataInvalid(f"task data {uri!r} was not found") from error
        rows[split] = read_rows(path, name=f"{split} data {Path(path).name}")
    if "all" in rows:
        rows = _split(rows["all"], val=task.val_fraction or 0.0, test=task.test_fraction or 0.0)
    return _columns(task, rows, labelled=labelled)


def _directory_rows(
    task: TaskRef, fetch_dir: Callable[[str], Path] | None
) -> dict[str, list[dict[str, Any]]]:
    """The splits of a `datasets` directory: its own, or its one set of rows split by the
    task's fractions (a dictionary with train but no validation split has train split)."""
    assert isinstance(task.data, str)
    if fetch_dir is None:
        raise DataInvalid("task.data names a directory, and this caller reads only files")
    try:
        directory = fetch_dir(task.data)
    except FileNotFoundError as error:
        raise DataInvalid(f"task data {task.data!r} was not found") from error
    rows = read_saved_splits(directory, max_rows=MAX_ROWS)
    fractions = task.val_fraction is not None
    if "all" in rows or "val" not in rows:
        pool = rows.pop("all", None) or rows.pop("train", None)
        if pool is None or not fractions:
            raise DataInvalid(
                f"{Path(directory).name}: no train and validation splits; give val_fraction "
                "to split its rows"
            )
        test = task.test_fraction or 0.0 if "test" not in rows else 0.0
        return {**_split(pool, val=task.val_fraction or 0.0, test=test), **rows}
    if fractions:
        raise DataInvalid("val_fraction splits one set of rows; this dataset has its own splits")
    return rows


def _columns(task: TaskRef, rows: dict[str, list[dict[str, Any]]], *, labelled: bool) -> TextSplits:
    for split in ("train", "val"):
        if split not in rows:
            raise DataInvalid(f"the task data has no {split} split")
    texts = {split: _texts(r, task.text_column, name=split) for split, r in rows.items()}
    labels = None
    if labelled:
        labels = {split: _labels(r, task.label_column, name=split) for split, r in rows.items()}
    return TextSplits(texts=texts, labels=labels)


def _split(
    rows: list[dict[str, Any]], *, val: float, test: float
) -> dict[str, list[dict[str, Any]]]:
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(rows))
    n_val = max(1, round(val * len(rows)))
    n_test = max(1, round(test * len(rows))) if test > 0 else 0
    if len(rows) - n_val - n_test < 1:
        raise DataInvalid(f"{len(rows)} rows are too few for val/test fractions {val}, {test}")
    parts = {
        "val": order[:n_val],
        "test": order[n_val : n_val + n_test],
        "train": order[n_val + n_test :],
    }
    return {split: [rows[i] for i in sorted(idx)] for split, idx in parts.items() if len(idx)}
