from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from core.contract.entrypoints import entrypoint_allowed
from core.spec import JobSpec
from service.auth import authenticate, create_key, generate_key, hash_key, revoke_key
from service.errors import AuthenticationFailed
from service.policy import check_policy
from service.settings import ApiSettings, normalize_database_url
from service.store import JobStore


def test_keys_are_random_and_stored_only_as_hashes(store: JobStore) -> None:
    assert generate_key() != generate_key() and generate_key().startswith("ap_")
    with store.tx() as session:
        key = create_key(session, "acme")
    with store.tx() as session:
        tenant = authenticate(session, f"Bearer {key}")
        stored = session.execute(text("SELECT key_hash, prefix FROM api_keys")).all()
    assert tenant.name == "acme"
    assert [tuple(row) for row in stored] == [(hash_key(key), key[:8])]


def test_revoked_and_unknown_keys_are_refused(store: JobStore) -> None:
    with store.tx() as session:
        key = create_key(session, "acme")
        second = create_key(session, "acme")
    with store.tx() as session:
        assert revoke_key(session, key)
        assert not revoke_key(session, key)
    with store.tx() as session:
        with pytest.raises(AuthenticationFailed, match="revoked"):
            authenticate(session, f"Bearer {key}")
        with pytest.raises(AuthenticationFailed) as unknown:
            authenticate(session, "Bearer ap_unknown")
        assert "ap_unknown" not in str(unknown.value)
        assert authenticate(session, f"bearer {second}").name == "acme"


def test_tenant_names_are_checked(store: JobStore) -> None:
    with store.tx() as session, pytest.raises(ValueError, match=r"'\.\./x'"):
        create_key(session, "../x")


def test_settings_read_the_contract_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ADAPRUNE_HOME", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p%40ss@db:5432/adaprune")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("ADAPRUNE_ALLOWED_ENTRYPOINTS", "mypkg, other.models")
    monkeypatch.setenv("ADAPRUNE_ALLOWED_FILE_ROOTS", f"{tmp_path},/data")
    monkeypatch.setenv("ADAPRUNE_MAX_BODY_BYTES", "2048")
    monkeypatch.delenv("ARTIFACT_URL", raising=False)
    settings = ApiSettings()
    assert settings.database_url == "postgresql+psycopg://u:p%40ss@db:5432/adaprune"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.artifact_url == f"file://{tmp_path}/artifacts"
    assert settings.allowed_entrypoints == ("mypkg", "other.models")
    assert settings.allowed_file_roots == (str(tmp_path), "/data")
    assert (settings.max_body_bytes, settings.stale_after_s) == (2048, 30.0)


def test_settings_defaults_live_under_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "ARTIFACT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADAPRUNE_HOME", str(tmp_path))
    settings = ApiSettings()
    assert settings.database_url == f"sqlite:///{tmp_path}/adaprune.db"
    assert settings.redis_url == f"unix://{tmp_path}/redis/redis.sock"
    with pytest.raises(ValueError, match="not an absolute"):
        ApiSettings(allowed_file_roots="relative")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://h/db", "postgresql+psycopg://h/db"),
        ("postgresql://h/db", "postgresql+psycopg://h/db"),
        ("postgresql+psycopg://h/db", "postgresql+psycopg://h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_postgres_urls_map_to_psycopg(url: str, expected: str) -> None:
    assert normalize_database_url(url) == expected


def test_entrypoint_prefixes_match_whole_module_names() -> None:
    assert entrypoint_allowed("mypkg.models:build", ["mypkg"], allow_any=False)
    assert entrypoint_allowed("mypkg:build", ["mypkg"], allow_any=False)
    assert not entrypoint_allowed("mypkgevil.models:build", ["mypkg"], allow_any=False)
    assert not entrypoint_allowed("mypkg.models:build", [], allow_any=False)
    assert entrypoint_allowed("mypkg.models:build", [], allow_any=True)


def test_policy_names_every_refused_field(tmp_path: Path, tiny_spec: Any) -> None:
    spec = JobSpec.model_validate(
        {
            **tiny_spec(),
            "model": {"entrypoint": "x.y:f", "weights": "file:///etc/w.safetensors"},
            "task": {"data": f"file://{tmp_path.parent}/t.npz"},
        }
    )
    problems = check_policy(spec, allowed_entrypoints=[], allowed_file_roots=[str(tmp_path)])
    assert [p.field for p in problems] == ["model.entrypoint", "model.weights", "task.data"]
