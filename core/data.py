"""Task data: the built-in offline tasks and user `.npz` files, checked before any training."""

from __future__ import annotations

import functools
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataInvalid
from core.limits import JobLimits, check_npz
from core.registries import DATASETS
from core.spec import TaskRef

_SPLIT_SEED = 0
# A stray huge label would otherwise size the output layer; real tasks stay far below this.
MAX_CLASSES = 100_000
_REQUIRED = ("x_train", "y_train", "x_val", "y_val")
_OPTIONAL = ("x_test", "y_test")


@dataclass(frozen=True)
class TaskData:
    """One task's splits: features of shape (N, *input_shape) and int64 labels (N,).

    Features are float32, except integer features (token ids, category codes), which are int64
    so that they can index an embedding.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    num_classes: int
    input_shape: tuple[int, ...]

    @property
    def input_dtype(self) -> str:
        """ "int64" for integer features (token ids), else "float32"."""
        return "int64" if self.x_train.dtype.kind in "iu" else "float32"


def load_task(
    task: TaskRef, *, fetch: Callable[[str], Path], limits: JobLimits | None = None
) -> TaskData:
    """Load the task a job names.

    Args:
        task: a built-in dataset name or a `.npz` URI.
        fetch: turns a URI into a local path (see `core.uri.fetch`).
        limits: size limits checked on the file and its arrays' headers before inflating.

    Returns:
        The checked task data.

    Raises:
        DataInvalid: the file is missing or fails a check in `load_npz`.
        ResourceLimit: the file or an array it declares is over `limits`.
    """
    if task.dataset is not None:
        return builtin_task(task.dataset)
    if task.data is None or not isinstance(task.data, str):
        raise DataInvalid("the task names neither a built-in dataset nor a .npz data URI")
    try:
        path = fetch(task.data)
    except FileNotFoundError as error:
        raise DataInvalid(f"task data {task.data!r} was not found") from error
    if limits is not None:
        check_npz(path, limits=limits)
    return load_npz(path, name=Path(task.data).stem)


def builtin_task(name: str) -> TaskData:
    """Return a built-in task; the same arrays on every call, whatever the job seed.

    Args:
        name: "mnist1d", "digits" or "breast_cancer".

    Returns:
        The task's splits (mnist1d: 3600/400/1000 with input (1, 40); digits: 60/20/20 of
        (1, 8, 8) images in [0, 1]; breast_cancer: 60/20/20 of 30 features standardised with
        the training split's mean and standard deviation).

    Raises:
        ValueError: `name` is not a built-in dataset.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown built-in dataset {name!r}; allowed: {DATASETS.allowed()}")
    task: TaskData = DATASETS.resolve(name)()
    return task


def load_npz(path: Path, *, name: str = "npz") -> TaskData:
    """Load and check a user `.npz` task file without ever unpickling.

    The file holds x_train, y_train, x_val, y_val and optionally x_test with y_test. Features must
    be finite numbers with the same per-example shape in every split; labels must be integral and
    lie in [0, num_classes) with num_classes = max label + 1 >= 2.

    Args:
        path: the `.npz` file.
        name: the task's name in the result.

    Returns:
        The checked task data.

    Raises:
        DataInvalid: with a one-line message naming the array at fault and the problem.
    """
    arrays = _read_npz(path)
    missing = [key for key in _REQUIRED if key not in arrays]
    if missing:
        raise DataInvalid(f"{missing[0]}: missing from {path.name} (needs {', '.join(_REQUIRED)})")
    extra = sorted(set(arrays) - set(_REQUIRED) - set(_OPTIONAL))
    if extra:
        raise DataInvalid(f"{extra[0]}: unexpected array in {path.name}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        given, absent = ("x_test", "y_test") if "x_test" in arrays else ("y_test", "x_test")
        raise DataInvalid(f"{absent}: missing while {given} is given (give both or neither)")
    splits = ["train", "val"] + (["test"] if "x_test" in arrays else [])
    xs = {split: _features(f"x_{split}", arrays[f"x_{split}"]) for split in splits}
    ys = {split: _labels(f"y_{split}", arrays[f"y_{split}"]) for split in splits}
    shape = xs["train"].shape[1:]
    for split in splits:
        if xs[split].shape[1:] != shape:
            raise DataInvalid(
                f"x_{split}: example shape {xs[split].shape[1:]} differs from x_train's {shape}"
            )
        if xs[split].dtype != xs["train"].dtype:
            raise DataInvalid(
                f"x_{split}: {xs[split].dtype} features while x_train's are "
                f"{xs['train'].dtype} (give every split integers, or every split floats)"
            )
        if len(xs[split]) != len(ys[split]):
            raise DataInvalid(
                f"y_{split}: {len(ys[split])} labels for {len(xs[split])} examples in x_{split}"
            )
    num_classes = int(max(int(y.max()) for y in ys.values())) + 1
    if num_classes < 2:
        raise DataInvalid("y_train: labels need at least 2 classes (max label + 1 >= 2)")
    test = "test" in xs
    return TaskData(
        name=name,
        x_train=xs["train"],
        y_train=ys["train"],
        x_val=xs["val"],
        y_val=ys["val"],
        x_test=xs["test"] if test else None,
        y_test=ys["test"] if test else None,
        num_classes=num_classes,
        input_shape=tuple(int(size) for size in shape),
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DataInvalid(f"{path.name}: not a valid .npz file ({error})") from error
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataInvalid(f"{path.name}: not a valid .npz file (a single .npy array)")
    arrays: dict[str, np.ndarray] = {}
    with loaded:
        for key in loaded.files:
            try:
                arrays[key] = loaded[key]
            except ValueError as error:
                if "pickle" in str(error).lower():
                    raise DataInvalid(
                        f"{key}: holds pickled/object arrays, which are refused for safety"
                    ) from error
                raise DataInvalid(f"{key}: cannot be read from {path.name} ({error})") from error
            except (OSError, EOFError, zipfile.BadZipFile) as error:
                raise DataInvalid(f"{key}: cannot be read from {path.name} ({error})") from error
    return arrays


def _features(key: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise DataInvalid(f"{key}: dtype {array.dtype} is not numeric")
    if array.ndim < 2:
        raise DataInvalid(f"{key}: shape {array.shape} needs (examples, *features)")
    if len(array) == 0:
        raise DataInvalid(f"{key}: split is empty")
    if not np.isfinite(array).all():
        raise DataInvalid(f"{key}: contains NaN or infinite values")
    if array.dtype == np.uint64 and len(array) and int(array.max()) > np.iinfo(np.int64).max:
        raise DataInvalid(f"{key}: integer values above {np.iinfo(np.int64).max} do not fit int64")
    converted = np.ascontiguousarray(array, dtype=feature_dtype(array.dtype))
    if converted.dtype.kind == "f" and not np.isfinite(converted).all():
        largest = float(np.abs(array).max())
        raise DataInvalid(
            f"{key}: values up to {largest:.4g} overflow float32 "
            f"(largest finite {float(np.finfo(np.float32).max):.4g}); rescale the features"
        )
    return converted


def feature_dtype(dtype: np.dtype) -> type[np.generic]:
    """int64 for integer features (token ids must stay integers), float32 for everything else."""
    return np.int64 if dtype.kind in "iu" else np.float32


def _labels(key: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise DataInvalid(f"{key}: dtype {array.dtype} is not numeric")
    if array.ndim != 1:
        raise DataInvalid(f"{key}: shape {array.shape} must be one label per example (N,)")
    if len(array) == 0:
        raise DataInvalid(f"{key}: split is empty")
    if array.dtype.kind == "f" and not (
        np.isfinite(array).all() and (array == np.round(array)).all()
    ):
        raise DataInvalid(f"{key}: float labels must be whole numbers")
    if array.min() < 0:
        raise DataInvalid(f"{key}: negative label {array.min()}")
    # Checked before the int64 cast, which would wrap labels >= 2**63 to negative numbers.
    if array.max() >= MAX_CLASSES:
        raise DataInvalid(
            f"{key}: label {int(array.max())} exceeds the limit of {MAX_CLASSES} classes"
        )
    return array.astype(np.int64)


def _split_indices(labels: np.ndarray, *, sizes: tuple[float, ...]) -> list[np.ndarray]:
    """Stratified split with a fixed seed; `sizes` are fractions of the whole, one per split."""
    from sklearn.model_selection import train_test_split

    remaining = np.arange(len(labels))
    parts: list[np.ndarray] = []
    left = 1.0
    for size in sizes[:-1]:
        taken, remaining = train_test_split(
            remaining,
            train_size=size / left,
            stratify=labels[remaining],
            random_state=_SPLIT_SEED,
        )
        parts.append(np.sort(taken))
        left -= size
    parts.append(np.sort(remaining))
    return parts


def _task(
    *, name: str, x: np.ndarray, y: np.ndarray, splits: list[np.ndarray], num_classes: int
) -> TaskData:
    x = x.astype(np.float32)
    y = y.astype(np.int64)
    train, val, test = splits
    return TaskData(
        name=name,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x[test],
        y_test=y[test],
        num_classes=num_classes,
        input_shape=tuple(int(size) for size in x.shape[1:]),
    )


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global `random` and numpy generators; restore them so that
    # loading data never changes the job's own random stream.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = (
        np.asarray(raw["x"], dtype=np.float32)[:, None, :],
        np.asarray(raw["y"], dtype=np.int64),
        np.asarray(raw["x_test"], dtype=np.float32)[:, None, :],
        np.asarray(raw["y_test"], dtype=np.int64),
    )
    for array in arrays:
        array.flags.writeable = False
    return arrays


def mnist1d_task() -> TaskData:
    x, y, x_test, y_test = _mnist1d_arrays()
    train, val = _split_indices(y, sizes=(0.9, 0.1))
    return TaskData(
        name="mnist1d",
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x_test.copy(),
        y_test=y_test.copy(),
        num_classes=10,
        input_shape=(1, 40),
    )


def digits_task() -> TaskData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0)[:, None, :, :]
    y = bunch.target
    splits = _split_indices(y, sizes=(0.6, 0.2, 0.2))
    return _task(name="digits", x=x, y=y, splits=splits, num_classes=10)


def breast_cancer_task() -> TaskData:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float64)
    y = bunch.target
    splits = _split_indices(y, sizes=(0.6, 0.2, 0.2))
    mean = x[splits[0]].mean(axis=0)
    std = x[splits[0]].std(axis=0)
    # A constant training feature would divide by zero; leave its scale untouched instead.
    std[std == 0] = 1.0
    return _task(name="breast_cancer", x=(x - mean) / std, y=y, splits=splits, num_classes=2)
