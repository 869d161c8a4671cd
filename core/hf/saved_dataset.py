"""Reading a `datasets` `save_to_disk` directory with pyarrow alone: no `datasets` import, no
pickle, no code from the directory.

A Dataset directory holds state.json, whose `_data_files` name its Arrow stream files in order,
beside dataset_info.json. A DatasetDict directory holds dataset_dict.json, whose `splits` name
one Dataset directory each. Split names map to the job's splits: train; validation, val, valid
or dev; test (others are ignored).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import DataInvalid

DICT_FILE = "dataset_dict.json"
STATE_FILE = "state.json"
SPLIT_NAMES = {
    "train": "train",
    "validation": "val",
    "val": "val",
    "valid": "val",
    "dev": "val",
    "test": "test",
}


def _plain(name: Any, *, what: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise DataInvalid(f"{what} {name!r} is not a plain file name")
    return name


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataInvalid(f"{path.name}: cannot be read as JSON ({error})") from error


def read_dataset_rows(directory: Path, *, name: str, max_rows: int) -> list[dict[str, Any]]:
    """The rows of one saved Dataset, its Arrow files read in order.

    Raises:
        DataInvalid: no state.json, a data file named outside the directory, an unreadable
            Arrow file, more than `max_rows` rows, or pyarrow not installed.
    """
    state = _json(directory / STATE_FILE)
    entries = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataInvalid(f"{name}: {STATE_FILE} lists no _data_files")
    try:
        import pyarrow as pa
    except ImportError as error:
        raise DataInvalid(
            f"{name}: a datasets directory needs pyarrow on the worker (pip install pyarrow)"
        ) from error
    rows: list[dict[str, Any]] = []
    for entry in entries:
        filename = _plain(
            entry.get("filename") if isinstance(entry, dict) else None, what="data file"
        )
        try:
            with pa.memory_map(str(directory / filename)) as source:
                table = pa.ipc.open_stream(source).read_all()
        except (OSError, pa.ArrowException) as error:
            raise DataInvalid(
                f"{name}: {filename} is not a readable Arrow file ({error})"
            ) from error
        if len(rows) + table.num_rows > max_rows:
            raise DataInvalid(f"{name}: more than {max_rows} rows")
        rows.extend(table.to_pylist())
    return rows


def read_saved_splits(directory: Path, *, max_rows: int) -> dict[str, list[dict[str, Any]]]:
    """{"train"/"val"/"test": rows} of a DatasetDict directory, or {"all": rows} of a Dataset.

    Raises:
        DataInvalid: neither dataset_dict.json nor state.json is there, or a split is unreadable.
    """
    if (directory / DICT_FILE).is_file():
        splits = _json(directory / DICT_FILE)
        names = splits.get("splits") if isinstance(splits, dict) else None
        if not isinstance(names, list):
            raise DataInvalid(f"{DICT_FILE} lists no splits")
        found: dict[str, list[dict[str, Any]]] = {}
        for split in names:
            split = _plain(split, what="split")
            ours = SPLIT_NAMES.get(split.lower())
            if ours is not None and ours not in found:
                found[ours] = read_dataset_rows(
                    directory / split, name=f"{split} split", max_rows=max_rows
                )
        return found
    if (directory / STATE_FILE).is_file():
        return {"all": read_dataset_rows(directory, name=directory.name, max_rows=max_rows)}
    raise DataInvalid(
        f"{directory.name} is not a datasets save_to_disk directory "
        f"(no {DICT_FILE} or {STATE_FILE})"
    )
