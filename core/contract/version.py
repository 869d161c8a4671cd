"""Versions of what is stored: a reader refuses what is newer than it understands."""

from __future__ import annotations

# Raised whenever JobSpec gains a field an older worker would refuse; such a worker requeues
# the job for a newer one instead of failing it.
SPEC_VERSION = 1
# The encoding of a run's state inside a checkpoint's state.json. 2: a run may hold back its
# last model within tolerance (fallback-*.safetensors beside it); an older engine would drop it.
RUN_STATE_VERSION = 2
