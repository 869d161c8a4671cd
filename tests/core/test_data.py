from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.data import TaskData, builtin_task, load_npz, load_task
from core.errors import DataInvalid
from core.registries import DATASETS
from core.spec import TaskRef

# name: (train, val, test, input_shape, classes)
SHAPES = {
    "mnist1d": (3600, 400, 1000, (1, 40), 10),
    "digits": (1078, 359, 360, (1, 8, 8), 10),
    "breast_cancer": (341, 114, 114, (30,), 2),
}


def splits(task: TaskData) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = [(task.x_train, task.y_train), (task.x_val, task.y_val)]
    if task.x_test is not None and task.y_test is not None:
        pairs.append((task.x_test, task.y_test))
    return pairs


def test_the_shape_table_covers_every_builtin() -> None:
    assert set(SHAPES) == set(DATASETS)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_builtin_task_has_the_documented_shapes(name: str) -> None:
    task = builtin_task(name)
    train, val, test, shape, classes = SHAPES[name]
    assert task.name == name
    assert task.input_shape == shape
    assert task.num_classes == classes
    sizes = [len(x) for x, _ in splits(task)]
    assert sizes == [train, val, test]
    for x, y in splits(task):
        assert x.shape == (len(x), *shape)
        assert x.dtype == np.float32
        assert y.dtype == np.int64
        assert y.shape == (len(x),)
        assert np.isfinite(x).all()
        assert set(np.unique(y)) == set(range(classes))


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_builtin_splits_share_no_example(name: str) -> None:
    task = builtin_task(name)
    rows = [{x.tobytes() for x in split_x} for split_x, _ in splits(task)]
    assert not rows[0] & rows[1]
    assert not rows[0] & rows[2]
    assert not rows[1] & rows[2]


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_builtin_splits_are_stratified(name: str) -> None:
    task = builtin_task(name)
    # mnist1d keeps its own test split; the splits made here are the ones that must be stratified.
    made = splits(task)[:2] if name == "mnist1d" else splits(task)
    pool = np.concatenate([y for _, y in made])
    per_class = np.bincount(pool, minlength=task.num_classes)
    for _, y in made:
        expected = per_class * len(y) / len(pool)
        counts = np.bincount(y, minlength=task.num_classes)
        assert np.abs(counts - expected).max() <= 1.0


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_builtin_task_is_identical_on_every_call_whatever_the_global_seed(name: str) -> None:
    np.random.seed(1)
    random.seed(1)
    first = builtin_task(name)
    np.random.seed(2)
    random.seed(2)
    second = builtin_task(name)
    for (x1, y1), (x2, y2) in zip(splits(first), splits(second), strict=True):
        assert np.array_equal(x1, x2)
        assert np.array_equal(y1, y2)


def test_mnist1d_does_not_reseed_the_global_generators() -> None:
    builtin_task("mnist1d")
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    builtin_task("mnist1d")
    assert (np.random.random(), random.random()) == expected


def test_digits_images_are_scaled_to_the_unit_interval() -> None:
    task = builtin_task("digits")
    assert task.x_train.min() == 0.0
    assert task.x_train.max() == 1.0


def test_breast_cancer_is_standardised_with_the_training_statistics() -> None:
    task = builtin_task("breast_cancer")
    assert np.allclose(task.x_train.mean(axis=0), 0.0, atol=1e-5)
    assert np.allclose(task.x_train.std(axis=0), 1.0, atol=1e-4)
    # The other splits use the training statistics, so their own means are not exactly zero.
    assert np.abs(task.x_val.mean(axis=0)).max() > 1e-3


def test_unknown_builtin_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'cifar'"):
        builtin_task("cifar")


def valid_arrays(*, test: bool = True) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {
        "x_train": rng.normal(size=(12, 2, 3)),
        "y_train": np.arange(12) % 3,
        "x_val": rng.normal(size=(6, 2, 3)),
        "y_val": np.arange(6) % 3,
    }
    if test:
        arrays["x_test"] = rng.normal(size=(3, 2, 3))
        arrays["y_test"] = np.array([0, 1, 2])
    return arrays


def write(path: Path, arrays: dict[str, Any], *, allow_pickle: bool = False) -> Path:
    with path.open("wb") as handle:
        np.savez(handle, allow_pickle=allow_pickle, **arrays)
    return path


def test_valid_npz_loads_as_float32_features_and_int64_labels(tmp_path: Path) -> None:
    arrays = valid_arrays()
    task = load_npz(write(tmp_path / "t.npz", arrays), name="mine")
    assert task.name == "mine"
    assert task.input_shape == (2, 3)
    assert task.num_classes == 3
    assert task.x_train.dtype == np.float32
    assert task.y_val.dtype == np.int64
    assert task.x_test is not None
    assert np.allclose(task.x_test, arrays["x_test"])
    assert np.array_equal(task.y_train, arrays["y_train"])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.uint16])
def test_integer_features_keep_an_integer_dtype(tmp_path: Path, dtype: Any) -> None:
    ids = {
        key: (np.arange(len(value) * 4).reshape(len(value), 4) % 7).astype(dtype)
        for key, value in valid_arrays().items()
        if key.startswith("x_")
    }
    task = load_npz(write(tmp_path / "t.npz", valid_arrays() | ids))
    for features in (task.x_train, task.x_val, task.x_test):
        assert features is not None
        assert features.dtype == np.int64
    assert np.array_equal(task.x_train, ids["x_train"].astype(np.int64))


def test_splits_must_agree_on_integer_or_float_features(tmp_path: Path) -> None:
    arrays = valid_arrays()
    arrays["x_val"] = np.zeros((6, 2, 3), dtype=np.int64)
    with pytest.raises(DataInvalid, match=r"^x_val: int64 features while x_train's are float32"):
        load_npz(write(tmp_path / "t.npz", arrays))


def test_npz_without_a_test_split_loads(tmp_path: Path) -> None:
    task = load_npz(write(tmp_path / "t.npz", valid_arrays(test=False)))
    assert task.x_test is None
    assert task.y_test is None


def test_float_labels_with_whole_values_are_accepted(tmp_path: Path) -> None:
    arrays = valid_arrays()
    arrays["y_train"] = arrays["y_train"].astype(np.float64)
    task = load_npz(write(tmp_path / "t.npz", arrays))
    assert task.y_train.dtype == np.int64
    assert list(task.y_train[:3]) == [0, 1, 2]


def test_num_classes_counts_labels_of_every_split(tmp_path: Path) -> None:
    arrays = valid_arrays()
    arrays["y_test"] = np.array([0, 1, 5])
    assert load_npz(write(tmp_path / "t.npz", arrays)).num_classes == 6


def broken(change: str) -> dict[str, Any]:
    arrays = valid_arrays()
    if change == "missing":
        del arrays["y_val"]
    elif change == "extra":
        arrays["weights"] = np.ones(3)
    elif change == "half_test":
        del arrays["y_test"]
    elif change == "text_features":
        arrays["x_val"] = np.full((6, 2, 3), "a")
    elif change == "text_labels":
        arrays["y_train"] = np.array(["a"] * 12)
    elif change == "count":
        arrays["y_val"] = np.arange(5) % 3
    elif change == "example_shape":
        arrays["x_test"] = np.zeros((3, 3, 2))
    elif change == "nan":
        arrays["x_train"][4, 1, 2] = np.nan
    elif change == "inf":
        arrays["x_val"][0, 0, 0] = np.inf
    elif change == "fractional":
        arrays["y_val"] = np.array([0, 1, 2, 0, 1.5, 2])
    elif change == "negative":
        arrays["y_test"] = np.array([0, -1, 2])
    elif change == "one_class":
        arrays = {k: v for k, v in arrays.items() if not k.endswith("test")}
        arrays["y_train"] = np.zeros(12, dtype=np.int64)
        arrays["y_val"] = np.zeros(6, dtype=np.int64)
    elif change == "huge_label":
        arrays["y_val"] = np.array([0, 1, 2, 0, 1, 10**9])
    elif change == "empty":
        arrays["x_val"] = np.zeros((0, 2, 3))
        arrays["y_val"] = np.zeros(0, dtype=np.int64)
    elif change == "label_matrix":
        arrays["y_train"] = np.zeros((12, 3))
    elif change == "scalar_features":
        arrays["x_train"] = np.zeros(12)
    return arrays


@pytest.mark.parametrize(
    ("change", "named", "problem"),
    [
        ("missing", "y_val", "missing"),
        ("extra", "weights", "unexpected"),
        ("half_test", "y_test", "both or neither"),
        ("text_features", "x_val", "not numeric"),
        ("text_labels", "y_train", "not numeric"),
        ("count", "y_val", "5 labels for 6 examples"),
        ("example_shape", "x_test", r"example shape \(3, 2\)"),
        ("nan", "x_train", "NaN"),
        ("inf", "x_val", "infinite"),
        ("fractional", "y_val", "whole numbers"),
        ("negative", "y_test", "negative label"),
        ("one_class", "y_train", "at least 2 classes"),
        ("huge_label", "y_val", "limit of 100000 classes"),
        ("empty", "x_val", "empty"),
        ("label_matrix", "y_train", "one label per example"),
        ("scalar_features", "x_train", "examples"),
    ],
)
def test_each_npz_fault_names_the_array(
    tmp_path: Path, change: str, named: str, problem: str
) -> None:
    path = write(tmp_path / "t.npz", broken(change))
    with pytest.raises(DataInvalid, match=problem) as caught:
        load_npz(path)
    message = str(caught.value)
    assert message.startswith(f"{named}:")
    assert "\n" not in message


def test_object_arrays_are_refused_as_pickled(tmp_path: Path) -> None:
    arrays = valid_arrays()
    arrays["y_train"] = np.array([0, 1, 2] * 4, dtype=object)
    path = write(tmp_path / "t.npz", arrays, allow_pickle=True)
    with pytest.raises(DataInvalid, match=r"^y_train: .*pickled/object arrays"):
        load_npz(path)


@pytest.mark.parametrize(
    "content",
    [b"not a zip file at all", b"PK\x03\x04 truncated zip header"],
)
def test_a_file_that_is_not_an_npz_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "t.npz"
    path.write_bytes(content)
    with pytest.raises(DataInvalid, match=r"not a valid \.npz"):
        load_npz(path)


def test_a_single_npy_array_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(DataInvalid, match=r"not a valid \.npz"):
        load_npz(path)


def test_load_task_reads_a_builtin_without_fetching() -> None:
    def refuse(uri: str) -> Path:
        raise AssertionError(f"fetched {uri}")

    task = load_task(TaskRef(dataset="breast_cancer"), fetch=refuse)
    assert task.name == "breast_cancer"


def test_load_task_fetches_and_checks_a_data_uri(tmp_path: Path) -> None:
    path = write(tmp_path / "mine.npz", valid_arrays())
    fetched: list[str] = []

    def fetch(uri: str) -> Path:
        fetched.append(uri)
        return path

    task = load_task(TaskRef(data="s3://bucket/tasks/mine.npz"), fetch=fetch)
    assert fetched == ["s3://bucket/tasks/mine.npz"]
    assert task.num_classes == 3
    assert task.name == "mine"


def test_load_task_turns_a_missing_file_into_data_invalid_naming_the_uri() -> None:
    def fetch(uri: str) -> Path:
        raise FileNotFoundError(uri)

    with pytest.raises(DataInvalid, match=re.escape("file:///nowhere/t.npz")):
        load_task(TaskRef(data="file:///nowhere/t.npz"), fetch=fetch)
