"""Worker settings, read from the environment (each variable: docs/service.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from core.limits import GIB, JobLimits
from service.settings import SharedSettings

DEVICE_NAMES = ("auto", "cpu", "cuda")


class WorkerSettings(SharedSettings):
    """Everything a worker process reads from its environment."""

    device: str = "auto"
    # torch CPU threads per job (0: one for models under 1 M parameters, else all cores)
    torch_threads: int = Field(default=0, ge=0, le=1024)
    metrics_port: int = Field(default=9100, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    # How long SIGTERM lets a running job go on to its next checkpoint before it is requeued.
    drain_grace_s: float = Field(default=300.0, ge=0, le=86400)
    # fair dispatch: a tenant with this many running jobs gets no more workers (0 = no cap)
    tenant_max_running_jobs: int = Field(default=0, ge=0)
    # per-job limits (core.limits.JobLimits): checked before anything is allocated
    max_params: int = Field(default=JobLimits.max_params, ge=1)
    max_job_memory_bytes: int = Field(default=JobLimits.max_job_memory_bytes, ge=1)
    max_data_bytes: int = Field(default=JobLimits.max_data_bytes, ge=1)
    max_array_bytes: int = Field(default=JobLimits.max_array_bytes, ge=1)
    max_total_array_bytes: int = Field(default=JobLimits.max_total_array_bytes, ge=1)
    # the engine's child process: RLIMIT_DATA in bytes (0 = run the engine in the worker itself)
    job_memory_limit_bytes: int = Field(default=JobLimits.max_job_memory_bytes + 2 * GIB, ge=0)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        kind, _, index = value.partition(":")
        if kind not in DEVICE_NAMES or (index and (kind != "cuda" or not index.isdigit())):
            raise ValueError(f"device {value!r} must be auto, cpu, cuda or cuda:N")
        return value

    @property
    def job_limits(self) -> JobLimits:
        """The limits every job of this worker is checked against."""
        return JobLimits(
            max_params=self.max_params,
            max_job_memory_bytes=self.max_job_memory_bytes,
            max_data_bytes=self.max_data_bytes,
            max_array_bytes=self.max_array_bytes,
            max_total_array_bytes=self.max_total_array_bytes,
        )

    @property
    def work_root(self) -> Path:
        """Where jobs keep their downloads, checkpoints and artifacts while they run."""
        return self.home / "work"
