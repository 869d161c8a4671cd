"""API settings, read from the environment (each variable: docs/service.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

QUEUE_NAME = re.compile(r"^[a-z0-9-]{1,32}$")

_PG_SCHEMES = ("postgres://", "postgresql://", "postgresql+psycopg2://")


def normalize_database_url(url: str) -> str:
    """Map plain PostgreSQL URLs onto the psycopg (v3) driver; leave other URLs as they are.

    Args:
        url: a SQLAlchemy database URL such as `postgresql://user@host/db` or `sqlite:///x.db`.

    Returns:
        The URL with `postgres://`, `postgresql://` or `postgresql+psycopg2://` rewritten to
        `postgresql+psycopg://`.
    """
    for scheme in _PG_SCHEMES:
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class SharedSettings(BaseSettings):
    """What the API and the workers both read: where state lives, leases, policy, the queue."""

    model_config = SettingsConfigDict(env_prefix="ADAPRUNE_", extra="ignore", populate_by_name=True)

    home: Path = Path("~/.adaprune")
    database_url_env: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    redis_url_env: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url")
    )
    artifact_url_env: str | None = Field(
        default=None, validation_alias=AliasChoices("ARTIFACT_URL", "artifact_url")
    )
    heartbeat_s: float = Field(default=10.0, gt=0, le=3600)
    max_attempts: int = Field(default=3, ge=1, le=100)
    allowed_entrypoints: Annotated[tuple[str, ...], NoDecode] = ()
    allowed_file_roots: Annotated[tuple[str, ...], NoDecode] = ()
    allowed_s3_prefixes: Annotated[tuple[str, ...], NoDecode] = ()
    default_queue: str = "gpu"
    served_queues: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator(
        "allowed_entrypoints",
        "allowed_file_roots",
        "allowed_s3_prefixes",
        "served_queues",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("allowed_file_roots")
    @classmethod
    def _absolute_roots(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for root in value:
            if not Path(root).is_absolute():
                raise ValueError(f"file root {root!r} is not an absolute directory")
        return value

    @field_validator("allowed_s3_prefixes")
    @classmethod
    def _s3_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        entries = []
        for entry in value:
            bare = entry.removeprefix("s3://").strip("/")
            if not bare or bare.startswith("/") or ".." in bare.split("/"):
                raise ValueError(f"S3 prefix {entry!r} must be s3://bucket or s3://bucket/prefix")
            entries.append(bare)
        return tuple(entries)

    @field_validator("default_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not QUEUE_NAME.match(value):
            raise ValueError(f"queue name {value!r} must match [a-z0-9-]{{1,32}}")
        return value

    @field_validator("served_queues")
    @classmethod
    def _queue_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            cls._queue_name(name)
        return value

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues workers serve: ADAPRUNE_SERVED_QUEUES, else the default queue alone.

        A submission may only name one of these (a queue no worker reads would hold its job
        for ever), and only these appear as metric labels.
        """
        names = self.served_queues or (self.default_queue,)
        return names if self.default_queue in names else (self.default_queue, *names)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL: DATABASE_URL, else SQLite under ADAPRUNE_HOME."""
        if self.database_url_env:
            return normalize_database_url(self.database_url_env)
        return f"sqlite:///{self.home / 'adaprune.db'}"

    @property
    def redis_socket(self) -> Path:
        """Where `adaprune up` puts the embedded Redis's unix socket."""
        return self.home / "redis" / "redis.sock"

    @property
    def redis_url(self) -> str:
        """REDIS_URL, else the embedded Redis's unix socket under ADAPRUNE_HOME."""
        return self.redis_url_env or f"unix://{self.redis_socket}"

    @property
    def artifact_url(self) -> str:
        """ARTIFACT_URL, else a directory under ADAPRUNE_HOME."""
        return self.artifact_url_env or f"file://{self.home / 'artifacts'}"

    @property
    def stale_after_s(self) -> float:
        """A running job whose heartbeat is older than three intervals is stale."""
        return 3 * self.heartbeat_s


class ApiSettings(SharedSettings):
    """Everything the API process reads from its environment."""

    max_body_bytes: int = Field(default=65536, ge=1024)
    # Connection limits of `adaprune api` (service.server): docs/service.md "Request limits".
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    keep_alive_s: int = Field(default=5, ge=1, le=3600)
    max_connections: int = Field(default=512, ge=1)
    max_header_bytes: int = Field(default=16384, ge=1024)
    tenant_max_active_jobs: int = Field(default=20, ge=1)
    presign_ttl_s: int = Field(default=300, ge=1, le=7 * 24 * 3600)
