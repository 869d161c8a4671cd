"""Worker settings, read from the environment (each variable: docs/service.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from service.settings import SharedSettings

DEVICE_NAMES = ("auto", "cpu", "cuda")


class WorkerSettings(SharedSettings):
    """Everything a worker process reads from its environment."""

    device: str = "auto"
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # How long SIGTERM lets a running job go on to its next checkpoint before it is requeued.
    drain_grace_s: float = Field(default=300.0, ge=0, le=86400)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        kind, _, index = value.partition(":")
        if kind not in DEVICE_NAMES or (index and (kind != "cuda" or not index.isdigit())):
            raise ValueError(f"device {value!r} must be auto, cpu, cuda or cuda:N")
        return value

    @property
    def work_root(self) -> Path:
        """Where jobs keep their downloads, checkpoints and artifacts while they run."""
        return self.home / "work"
