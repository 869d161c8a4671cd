"""What one job may take: parameters, training memory, task data; checked before allocating.

`JobLimits` is a plain value (no torch): the worker fills it from its settings, `adaprune run`
uses the defaults. The `.npz` checks read only the zip directory and each array's `.npy` header,
so a small file that would inflate to gigabytes is refused before a byte of it is inflated.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from core.errors import DataInvalid, ResourceLimit

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class JobLimits:
    """Per-job ceilings; a job over any of them fails with `resource_limit` naming it.

    Attributes:
        max_params: parameters of the model (counted on the `meta` device).
        max_job_memory_bytes: the estimated training memory (see `core.sizing`).
        max_data_bytes: a task data or weights file as stored (compressed) or downloaded.
        max_array_bytes: one array of a `.npz` once inflated, from its declared shape and dtype.
        max_total_array_bytes: all arrays of a `.npz` together once inflated.
    """

    max_params: int = 100_000_000
    max_job_memory_bytes: int = 8 * GIB
    max_data_bytes: int = 2 * GIB
    max_array_bytes: int = 2 * GIB
    max_total_array_bytes: int = 4 * GIB


def human_bytes(count: int | float) -> str:
    """`count` bytes in the largest binary unit that keeps it >= 1 (e.g. "4.0 TiB")."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # unreachable; keeps the type checker sure of a return


def check_file_size(path: Path, *, limits: JobLimits, what: str) -> None:
    """Refuse a file larger than `limits.max_data_bytes` (by stat, before it is read)."""
    size = path.stat().st_size
    if size > limits.max_data_bytes:
        raise ResourceLimit(
            f"{what}: {path.name} is {human_bytes(size)}, over the limit of "
            f"{human_bytes(limits.max_data_bytes)} (ADAPRUNE_MAX_DATA_BYTES)"
        )


def _declared_bytes(member: IO[bytes], key: str) -> int:
    """Bytes the array `key` occupies once loaded, from its `.npy` header alone."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version in ((2, 0), (3, 0)):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise DataInvalid(f"{key}: unsupported .npy format version {version}")
    except ValueError as error:
        raise DataInvalid(f"{key}: not a valid .npy array ({error})") from error
    if dtype.hasobject:
        raise DataInvalid(f"{key}: holds pickled/object arrays, which are refused for safety")
    count = 1
    for size in shape:
        count *= int(size)
    return count * int(dtype.itemsize)


def check_npz(path: Path, *, limits: JobLimits) -> None:
    """Refuse a `.npz` whose file or inflated arrays exceed `limits`, before inflating any.

    Raises:
        ResourceLimit: the file, one array or all arrays together are over their limit; the
            message names the array, its declared size and the limit.
        DataInvalid: the file is not a zip of `.npy` arrays.
    """
    check_file_size(path, limits=limits, what="task data")
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise DataInvalid(f"{path.name}: not a valid .npz file ({error})") from error
    total = 0
    with archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            try:
                with archive.open(info) as member:
                    size = _declared_bytes(member, key)
            except (OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as error:
                raise DataInvalid(f"{key}: cannot be read from {path.name} ({error})") from error
            if size > limits.max_array_bytes:
                raise ResourceLimit(
                    f"{key}: declares {human_bytes(size)} once inflated, over the limit of "
                    f"{human_bytes(limits.max_array_bytes)} per array (ADAPRUNE_MAX_ARRAY_BYTES)"
                )
            total += size
            if total > limits.max_total_array_bytes:
                raise ResourceLimit(
                    f"{key}: the arrays up to it declare {human_bytes(total)} once inflated, over "
                    f"the limit of {human_bytes(limits.max_total_array_bytes)} for all arrays "
                    "(ADAPRUNE_MAX_TOTAL_ARRAY_BYTES)"
                )
