"""A job's work directory under the worker's work root, and the ones earlier attempts left.

A worker killed outright (SIGKILL, the OOM killer) cannot remove its job's directory
(`JOB_ID-*`: fetched sources, local checkpoints, the unpublished artifact). The worker that
claims the job next holds its lease, so no live attempt can own an older directory of that job:
it removes them before it makes its own. A job that is never claimed again keeps its directory
until an operator removes it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def earlier_attempts(work_root: Path, job_id: str) -> list[Path]:
    """The directories of `job_id` under `work_root` (names `JOB_ID-<random>`)."""
    if not work_root.is_dir():
        return []
    return sorted(
        path for path in work_root.glob(f"{job_id}-*") if path.is_dir() and not path.is_symlink()
    )


def clear_earlier_attempts(work_root: Path, job_id: str) -> int:
    """Remove what earlier attempts of `job_id` left under `work_root`; returns how many.

    Call only while holding the job's lease: the attempts that made these directories have
    lost it, so none of them can still be writing there for the job's benefit.
    """
    removed = 0
    for path in earlier_attempts(work_root, job_id):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed += 1
            log.info("job %s: removed %s, left by an earlier attempt", job_id, path.name)
    return removed
