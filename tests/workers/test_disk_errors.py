"""Which errors count as a failing local disk (retried and requeued, never internal_error)."""

from __future__ import annotations

import errno

import pytest
from safetensors import SafetensorError

from workers.errors import StorageUnavailable, disk_error


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO])
def test_a_full_or_failing_disk_is_a_storage_error(number: int) -> None:
    found = disk_error(OSError(number, "disk says no"))
    assert isinstance(found, StorageUnavailable) and found.code == "storage_unavailable"
    assert str(found).startswith("local disk: ")


def test_a_rust_library_error_names_the_errno_in_its_text() -> None:
    found = disk_error(SafetensorError("I/O error: No space left on device (os error 28)"))
    assert str(found) == "local disk: No space left on device"


def test_the_cause_of_a_wrapped_error_counts() -> None:
    try:
        try:
            raise OSError(errno.EROFS, "read-only file system")
        except OSError as inner:
            raise RuntimeError("export failed") from inner
    except RuntimeError as outer:
        assert str(disk_error(outer)) == "local disk: Read-only file system"


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOENT, "no such file"),
        PermissionError(errno.EACCES, "denied"),
        ValueError("os error 28 is mentioned without the parentheses"),
    ],
)
def test_other_errors_are_not(error: Exception) -> None:
    assert disk_error(error) is None
