"""Which data and weights a tenant's spec may name: file roots, S3 prefixes, its own jobs."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from core.spec import JobSpec
from service.db.session import make_engine
from service.policy import DataPolicy, check_policy
from service.settings import ApiSettings
from service.store import JobStore


def _spec(weights: str | None = None, data: str | None = None) -> JobSpec:
    model: dict[str, Any] = {"arch": "mlp"}
    if weights is not None:
        model["weights"] = weights
    task = {"data": data} if data is not None else {"dataset": "digits"}
    return JobSpec.model_validate({"model": model, "task": task, "prune": {"target_sparsity": 0.5}})


def _problems(spec: JobSpec, policy: DataPolicy, owned: tuple[str, ...] = ()) -> list[str]:
    found = check_policy(
        spec, allowed_entrypoints=[], data=policy, owns_job=lambda job: job in owned
    )
    return [f"{p.field}: {p.message}" for p in found]


def test_the_home_is_refused_even_when_a_file_root_holds_it(tmp_path: Path) -> None:
    settings = ApiSettings(home=tmp_path / "home", allowed_file_roots=str(tmp_path))
    policy = DataPolicy.of(settings, tenant="acme")
    other = tmp_path / "home/artifacts/tenants/other/jobs/x/artifacts/weights.safetensors"
    problems = _problems(_spec(weights=f"file://{other}"), policy)
    assert len(problems) == 1 and "model.weights" in problems[0]
    assert "service's own storage" in problems[0] and "artifact://JOB_ID/NAME" in problems[0]
    assert _problems(_spec(data=f"file://{tmp_path}/mine.npz"), policy) == []


def test_a_link_into_the_home_is_refused(tmp_path: Path) -> None:
    settings = ApiSettings(home=tmp_path / "home", allowed_file_roots=str(tmp_path / "data"))
    (tmp_path / "home").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "home" / "secret.npz").write_bytes(b"x")
    (tmp_path / "data" / "link.npz").symlink_to(tmp_path / "home" / "secret.npz")
    problems = _problems(
        _spec(data=f"file://{tmp_path}/data/link.npz"), DataPolicy.of(settings, tenant="acme")
    )
    assert len(problems) == 1 and "service's own storage" in problems[0]


def test_a_file_artifact_directory_outside_the_home_is_refused_too(tmp_path: Path) -> None:
    settings = ApiSettings(
        home=tmp_path / "home",
        artifact_url=f"file://{tmp_path}/store",
        allowed_file_roots=str(tmp_path),
    )
    problems = _problems(
        _spec(weights=f"file://{tmp_path}/store/tenants/b/jobs/j/artifacts/w.safetensors"),
        DataPolicy.of(settings, tenant="acme"),
    )
    assert len(problems) == 1 and "service's own storage" in problems[0]


def test_s3_references_are_refused_unless_a_prefix_allows_them(tmp_path: Path) -> None:
    policy = DataPolicy.of(ApiSettings(home=tmp_path), tenant="acme")
    problems = _problems(_spec(data="s3://data/acme/task.npz"), policy)
    assert problems == [
        "task.data: 's3://data/acme/task.npz' is outside the allowed S3 prefixes (none configured)"
    ]


def test_s3_prefixes_match_whole_segments_and_name_the_tenant(tmp_path: Path) -> None:
    settings = ApiSettings(home=tmp_path, allowed_s3_prefixes="s3://data/{tenant}/,shared")
    policy = DataPolicy.of(settings, tenant="acme")
    assert policy.s3_prefixes == ("data/acme", "shared")
    assert _problems(_spec(data="s3://data/acme/task.npz"), policy) == []
    assert _problems(_spec(data="s3://shared/any/task.npz"), policy) == []
    for refused in (
        "s3://data/other/task.npz",
        "s3://data/acme-evil/t.npz",
        "s3://datax/acme/t.npz",
    ):
        assert len(_problems(_spec(data=refused), policy)) == 1, refused


def test_the_service_artifact_bucket_is_refused_even_when_allowed(tmp_path: Path) -> None:
    settings = ApiSettings(
        home=tmp_path, artifact_url="s3://service/prod", allowed_s3_prefixes="s3://service"
    )
    policy = DataPolicy.of(settings, tenant="acme")
    own = "s3://service/prod/tenants/other/jobs/j/artifacts/weights.safetensors"
    problems = _problems(_spec(weights=own), policy)
    assert len(problems) == 1 and "service's own artifact storage" in problems[0]
    assert _problems(_spec(weights="s3://service/models/w.safetensors"), policy) == []
    elsewhere = _problems(_spec(weights="s3://other/w.safetensors"), policy)
    assert elsewhere and "(none configured)" in elsewhere[0]  # the own bucket is never offered


@pytest.mark.parametrize("entry", ["s3://", "/", "s3://b/../x"])
def test_malformed_s3_prefixes_are_refused_at_start(entry: str) -> None:
    with pytest.raises(ValidationError, match="S3 prefix"):
        ApiSettings(allowed_s3_prefixes=entry)


def test_artifact_references_need_a_job_of_the_tenant(tmp_path: Path) -> None:
    policy = DataPolicy.of(ApiSettings(home=tmp_path), tenant="acme")
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    assert _problems(_spec(weights=f"artifact://{mine}/weights.safetensors"), policy, (mine,)) == []
    problems = _problems(_spec(weights=f"artifact://{theirs}/weights.safetensors"), policy, (mine,))
    assert problems == [
        f"model.weights: 'artifact://{theirs}/weights.safetensors': you have no job {theirs}"
    ]


def test_the_api_refuses_another_tenants_or_a_missing_job_as_artifact(
    api: TestClient, api_store: JobStore, auth: dict[str, str], new_tenant: Any, tiny_spec: Any
) -> None:
    mine = api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    _, other_key = new_tenant(api_store, "other")
    other = {"Authorization": f"Bearer {other_key}"}
    theirs = api.post("/v1/jobs", json=tiny_spec(), headers=other).json()["id"]
    for job in (theirs, str(uuid.uuid4())):
        spec = {
            **tiny_spec(),
            "model": {"arch": "mlp", "weights": f"artifact://{job}/w.safetensors"},
        }
        response = api.post("/v1/jobs", json=spec, headers=auth)
        assert response.status_code == 422, response.text
        detail = response.json()["error"]
        assert detail["field"] == "model.weights" and "you have no job" in detail["message"]
    spec = {**tiny_spec(), "model": {"arch": "mlp", "weights": f"artifact://{mine}/w.safetensors"}}
    assert api.post("/v1/jobs", json=spec, headers=auth).status_code == 201


def test_the_sqlite_database_and_its_wal_are_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = tmp_path / "home" / "adaprune.db"
        engine = make_engine(f"sqlite:///{path}")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        with engine.connect() as connection:  # the WAL and SHM files exist while connected
            connection.exec_driver_sql("SELECT * FROM t").all()
            files = [path, path.with_name("adaprune.db-wal"), path.with_name("adaprune.db-shm")]
            modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}
        engine.dispose()
    finally:
        os.umask(previous)
    assert modes == dict.fromkeys(modes, 0o600)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_an_existing_readable_database_is_narrowed_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    make_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
