"""Hostile inputs against the live API and a real worker, each with the answer it must get.

Set ADAPRUNE_SECURITY_TABLE=path.json to save the observed answers (bench/load.py --security
renders them into docs/reliability.md).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.live import FINAL, Deployment
from tests.security.conftest import MAX_BODY_BYTES, data_dir

OBSERVED: dict[str, dict[str, str]] = {}


class OpensMarker:
    """Unpickling this object creates the file `marker` (proof that something was unpickled)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


@dataclass(frozen=True)
class Client:
    deploy: Deployment
    http: httpx.Client
    own_job: str
    other_job: str

    def post_spec(self, spec: Any) -> httpx.Response:
        return self.http.post("/v1/jobs", json=spec)


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "hostile",
        "model": {"arch": "mlp"},
        "task": {"dataset": "digits"},
        "prune": {"target_sparsity": 0.5},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = base
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return base


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_json = {"Content-Type": "application/json"}


def _cursor(stamp: str) -> str:
    raw = json.dumps([stamp, "00000000-0000-4000-8000-000000000000"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _post_sparsity(client: Client, *, value: object) -> httpx.Response:
    return client.post_spec(spec(prune__target_sparsity=value))


@dataclass(frozen=True)
class ApiCase:
    """A request and the answer it must get: a status, an error code and text the body names."""

    name: str
    send: Callable[[Client], httpx.Response]
    status: tuple[int, ...]
    code: str
    names: str


API_CASES = [
    ApiCase(
        "body over ADAPRUNE_MAX_BODY_BYTES (Content-Length)",
        lambda c: c.http.post(
            "/v1/jobs", content=b"{" + b" " * MAX_BODY_BYTES + b"}", headers=_json
        ),
        (413,),
        "body_too_large",
        f"{MAX_BODY_BYTES} bytes",
    ),
    ApiCase(
        "body over the limit, chunked (no Content-Length)",
        lambda c: c.http.post(
            "/v1/jobs", content=iter([b"{", b" " * MAX_BODY_BYTES, b"}"]), headers=_json
        ),
        (413,),
        "body_too_large",
        f"{MAX_BODY_BYTES} bytes",
    ),
    ApiCase(
        "JSON nested 2,000 levels deep",
        lambda c: c.http.post("/v1/jobs", content=nested(2000), headers=_json),
        (400,),
        "body_too_deep",
        "deeper than 32",
    ),
    ApiCase(
        "spec with model.kwargs nested 40 levels deep",
        lambda c: c.http.post(
            "/v1/jobs",
            content=json.dumps(spec()).replace('"arch": "mlp"', f'"kwargs": {{"a": {nested(40)}}}'),
            headers=_json,
        ),
        (400,),
        "body_too_deep",
        "deeper than 32",
    ),
    *[
        ApiCase(
            f"prune.target_sparsity = {value}",
            functools.partial(_post_sparsity, value=value),
            (422,),
            "validation_error",
            "prune.target_sparsity",
        )
        for value in (0, 1, -0.5, 1.5, "NaN")
    ],
    ApiCase(
        "unknown criterion",
        lambda c: c.post_spec(spec(prune__criterion="l2norm")),
        (422,),
        "validation_error",
        "prune.criterion",
    ),
    ApiCase(
        "task.data = file:///etc/passwd",
        lambda c: c.post_spec(spec(task={"data": "file:///etc/passwd"})),
        (422,),
        "validation_error",
        "task.data",
    ),
    ApiCase(
        "task.data = file:///etc/passwd.npz (outside the allowed roots)",
        lambda c: c.post_spec(spec(task={"data": "file:///etc/passwd.npz"})),
        (422,),
        "validation_error",
        "task.data",
    ),
    ApiCase(
        "task.data escaping the allowed root with '..'",
        lambda c: c.post_spec(
            spec(task={"data": f"file://{data_dir(c.deploy)}/../../../etc/x.npz"})
        ),
        (422,),
        "validation_error",
        "task.data",
    ),
    ApiCase(
        "task.data = http:// URI",
        lambda c: c.post_spec(spec(task={"data": "http://169.254.169.254/latest/x.npz"})),
        (422,),
        "validation_error",
        "task.data",
    ),
    ApiCase(
        "model.weights = http:// URI",
        lambda c: c.post_spec(spec(model__weights="http://example.com/w.safetensors")),
        (422,),
        "validation_error",
        "model.weights",
    ),
    ApiCase(
        "entry point outside the allow-list (os:system)",
        lambda c: c.post_spec(spec(model={"entrypoint": "os:system"})),
        (422,),
        "validation_error",
        "model.entrypoint",
    ),
    ApiCase(
        "entry point that only shares the allowed prefix (userpkg_evil)",
        lambda c: c.post_spec(spec(model={"entrypoint": "userpkg_evil.models:build"})),
        (422,),
        "validation_error",
        "model.entrypoint",
    ),
    ApiCase(
        "artifact name ../../etc/passwd (encoded slashes)",
        lambda c: c.http.get(f"/v1/jobs/{c.own_job}/artifacts/..%2F..%2Fetc%2Fpasswd"),
        (400, 404),
        "",
        "",
    ),
    ApiCase(
        "artifact name '..'",
        lambda c: c.http.get(f"/v1/jobs/{c.own_job}/artifacts/%2E%2E"),
        (400, 404),
        "",
        "",
    ),
    ApiCase(
        "artifact name .env (hidden file)",
        lambda c: c.http.get(f"/v1/jobs/{c.own_job}/artifacts/.env"),
        (400,),
        "invalid_key",
        "plain file name",
    ),
    ApiCase(
        "another tenant's job id",
        lambda c: c.http.get(f"/v1/jobs/{c.other_job}"),
        (404,),
        "job_not_found",
        "not found",
    ),
    ApiCase(
        "another tenant's job steps",
        lambda c: c.http.get(f"/v1/jobs/{c.other_job}/steps"),
        (404,),
        "job_not_found",
        "not found",
    ),
    ApiCase(
        "another tenant's job artifacts",
        lambda c: c.http.get(f"/v1/jobs/{c.other_job}/artifacts/manifest.json"),
        (404,),
        "job_not_found",
        "not found",
    ),
    ApiCase(
        "cancelling another tenant's job",
        lambda c: c.http.post(f"/v1/jobs/{c.other_job}/cancel"),
        (404,),
        "job_not_found",
        "not found",
    ),
    ApiCase(
        "Infinity literal in model.kwargs (not JSON)",
        lambda c: c.http.post(
            "/v1/jobs",
            content=json.dumps(spec()).replace(
                '"arch": "mlp"', '"arch": "mlp", "kwargs": {"s": Infinity}'
            ),
            headers=_json,
        ),
        (422,),
        "validation_error",
        "Infinity is not a JSON number",
    ),
    ApiCase(
        "lone UTF-16 surrogate in model.kwargs",
        lambda c: c.http.post(
            "/v1/jobs",
            content=json.dumps(spec()).replace(
                '"arch": "mlp"', '"arch": "mlp", "kwargs": {"s": "\\ud800"}'
            ),
            headers=_json,
        ),
        (422,),
        "validation_error",
        "model.kwargs.s: lone UTF-16 surrogate",
    ),
    ApiCase(
        "cursor holding 0001-01-01T00:00:00+23:59",
        lambda c: c.http.get("/v1/jobs", params={"cursor": _cursor("0001-01-01T00:00:00+23:59")}),
        (400,),
        "invalid_cursor",
        "is not valid",
    ),
    ApiCase(
        "created_after=0001-01-01T00:00:00+23:59",
        lambda c: c.http.get("/v1/jobs", params={"created_after": "0001-01-01T00:00:00+23:59"}),
        (422,),
        "validation_error",
        "query.created_after",
    ),
    ApiCase(
        "task.data with a percent-encoded NUL (%00)",
        lambda c: c.post_spec(spec(task={"data": f"file://{data_dir(c.deploy)}/x%00.npz"})),
        (422,),
        "validation_error",
        "NUL bytes",
    ),
    ApiCase(
        "X-Adaprune-Queue naming a queue no worker serves",
        lambda c: c.http.post("/v1/jobs", json=spec(), headers={"X-Adaprune-Queue": "nobody"}),
        (422,),
        "unknown_queue",
        "'nobody' is not served here",
    ),
    ApiCase(
        "GET /v1/jobs/ with a foreign Host header",
        lambda c: c.http.get("/v1/jobs/", headers={"Host": "evil.example"}),
        (404,),
        "not_found",
        "Not Found",
    ),
    ApiCase(
        "no API key",
        lambda c: httpx.get(f"{c.deploy.url}/v1/jobs", timeout=10),
        (401,),
        "unauthenticated",
        "Authorization",
    ),
]


@pytest.fixture(scope="module")
def client(live: Deployment) -> Iterator[Client]:
    own_key = live.key("hostile")
    other_key = live.key("victim")
    with (
        httpx.Client(
            base_url=live.url, headers={"Authorization": f"Bearer {own_key}"}, timeout=30
        ) as http,
        httpx.Client(
            base_url=live.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=30
        ) as other,
    ):
        own = http.post("/v1/jobs", json=spec())
        theirs = other.post("/v1/jobs", json=spec())
        assert own.status_code == theirs.status_code == 201, (own.text, theirs.text)
        yield Client(live, http, own.json()["id"], theirs.json()["id"])
    _save_observed()


def _save_observed() -> None:
    target = os.environ.get("ADAPRUNE_SECURITY_TABLE")
    if target:
        Path(target).write_text(json.dumps(OBSERVED, indent=1))


@pytest.mark.parametrize("case", API_CASES, ids=[case.name for case in API_CASES])
def test_hostile_request_gets_its_expected_refusal(client: Client, case: ApiCase) -> None:
    response = case.send(client)
    body = response.json()
    error = body["error"]
    OBSERVED[case.name] = {
        "expected": f"{'/'.join(map(str, case.status))} {case.code}".strip(),
        "observed": f"{response.status_code} {error['code']}: {error['message']}",
    }
    assert response.status_code in case.status, response.text
    assert error["message"]
    if case.code:
        assert error["code"] == case.code, response.text
    assert case.names in json.dumps(body), response.text


def test_the_api_answers_after_every_hostile_request(client: Client) -> None:
    assert client.http.get("/healthz").json() == {"status": "ok"}
    assert client.deploy.processes[0].poll() is None


# Checks that happen in the worker: the job is accepted, then fails with a code, never running
# the hostile content.


def _arrays(*, x_train: Any = None, y_train: Any = None) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = np.arange(40) % 2
    return {
        "x_train": x if x_train is None else x_train,
        "y_train": y if y_train is None else y_train,
        "x_val": x[:10],
        "y_val": y[:10],
    }


def _npz(folder: Path, name: str, arrays: dict[str, Any]) -> str:
    path = folder / name
    np.savez(path, **arrays)
    return f"file://{path}"


def _pickled_npz(folder: Path, marker: Path) -> dict[str, Any]:
    evil = np.empty(40, dtype=object)
    evil[:] = [OpensMarker(str(marker))] * 40
    return spec(task={"data": _npz(folder, "pickled.npz", _arrays(x_train=evil))})


def _pickle_weights(folder: Path, marker: Path) -> dict[str, Any]:
    path = folder / "pickle.safetensors"
    path.write_bytes(pickle.dumps({"layer.weight": OpensMarker(str(marker))}))
    return spec(model__weights=f"file://{path}")


def _mismatched_weights(folder: Path, _marker: Path) -> dict[str, Any]:
    import torch
    from safetensors.torch import save_file

    from core.models import build_builtin

    state = build_builtin("mlp", input_shape=(64,), num_classes=10).state_dict()
    first = next(iter(state))
    state = {key: value.clone().contiguous() for key, value in state.items()}
    state[first] = torch.zeros(3, 5)
    path = folder / "mismatch.safetensors"
    save_file(state, str(path))
    return spec(model__weights=f"file://{path}")


def _nan_data(folder: Path, _marker: Path) -> dict[str, Any]:
    x = _arrays()["x_train"].copy()
    x[3, 2] = np.nan
    return spec(task={"data": _npz(folder, "nan.npz", _arrays(x_train=x))})


def _negative_labels(folder: Path, _marker: Path) -> dict[str, Any]:
    y = np.arange(40) % 2
    y[5] = -1
    return spec(task={"data": _npz(folder, "negative.npz", _arrays(y_train=y))})


def _huge_labels(folder: Path, _marker: Path) -> dict[str, Any]:
    y = np.arange(40) % 2
    y[5] = 10**9
    return spec(task={"data": _npz(folder, "huge.npz", _arrays(y_train=y))})


def _non_finite_weights(
    value: float, *, everywhere: bool = False
) -> Callable[[Path, Path], dict[str, Any]]:
    def build(folder: Path, _marker: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        from core.models import build_builtin

        state = build_builtin("mlp", input_shape=(64,), num_classes=10).state_dict()
        state = {key: tensor.clone().contiguous() for key, tensor in state.items()}
        first = next(iter(state))
        if everywhere:
            state = {key: tensor.fill_(value) for key, tensor in state.items()}
        state[first][0, 0] = value
        path = folder / f"weights-{value}.safetensors"
        save_file(state, str(path))
        return spec(model__weights=f"file://{path}")

    return build


def _wrapping_labels(folder: Path, _marker: Path) -> dict[str, Any]:
    y = (np.arange(40) % 2).astype(np.uint64)
    y[5] = 2**63  # int64 would make it -2**63
    return spec(task={"data": _npz(folder, "wrapping.npz", _arrays(y_train=y))})


def _float32_overflow(folder: Path, _marker: Path) -> dict[str, Any]:
    x = _arrays()["x_train"].astype(np.float64)
    x[7, 1] = 1e39  # finite in float64, inf in float32
    return spec(task={"data": _npz(folder, "overflow.npz", _arrays(x_train=x))})


@dataclass(frozen=True)
class WorkerCase:
    name: str
    build: Callable[[Path, Path], dict[str, Any]]
    code: str
    names: str


WORKER_CASES = [
    WorkerCase(".npz holding pickled object arrays", _pickled_npz, "data_invalid", "x_train"),
    WorkerCase(
        "weights file that is a pickle", _pickle_weights, "model_load_failed", "safetensors"
    ),
    WorkerCase(
        "weights with a mismatched tensor shape", _mismatched_weights, "model_load_failed", "(3, 5)"
    ),
    WorkerCase("NaN in the features", _nan_data, "data_invalid", "x_train: contains NaN"),
    WorkerCase("negative label", _negative_labels, "data_invalid", "y_train: negative label"),
    WorkerCase("label far out of range", _huge_labels, "data_invalid", "y_train: label"),
    WorkerCase(
        "NaN in the weights",
        _non_finite_weights(float("nan")),
        "model_load_failed",
        "holds NaN or infinite values",
    ),
    WorkerCase(
        "infinity in the weights",
        _non_finite_weights(float("inf")),
        "model_load_failed",
        "holds NaN or infinite values",
    ),
    WorkerCase(
        "finite weights of 3e38 everywhere (outputs overflow)",
        _non_finite_weights(3e38, everywhere=True),
        "training_diverged",
        "the dense model's validation loss is",
    ),
    WorkerCase(
        "label 2**63 (uint64; wraps negative as int64)",
        _wrapping_labels,
        "data_invalid",
        "y_train: label 9223372036854775808 exceeds",
    ),
    WorkerCase(
        "float64 feature 1e39 (inf as float32)",
        _float32_overflow,
        "data_invalid",
        "x_train: values up to 1e+39 overflow float32",
    ),
]


@pytest.fixture(scope="module")
def worker_jobs(client: Client) -> dict[str, tuple[str, Path]]:
    """Submit every worker case at once, then start one worker: {case name: (job id, marker)}."""
    folder = data_dir(client.deploy)
    jobs: dict[str, tuple[str, Path]] = {}
    for case in WORKER_CASES:
        marker = client.deploy.root / f"unpickled-{len(jobs)}"
        response = client.post_spec(case.build(folder, marker))
        assert response.status_code == 201, response.text
        jobs[case.name] = (str(response.json()["id"]), marker)
    client.deploy.start_worker()
    deadline = time.monotonic() + 120
    for job_id, _ in jobs.values():
        while client.deploy.store.load_job(job_id).state not in FINAL:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"job {job_id} did not end in 120 s"
            time.sleep(0.2)
    return jobs


@pytest.mark.parametrize("case", WORKER_CASES, ids=[case.name for case in WORKER_CASES])
def test_hostile_file_fails_the_job_in_the_worker_without_unpickling(
    client: Client, worker_jobs: dict[str, tuple[str, Path]], case: WorkerCase
) -> None:
    job_id, marker = worker_jobs[case.name]
    job = client.http.get(f"/v1/jobs/{job_id}").json()
    error = job["error"] or {}
    OBSERVED[case.name] = {
        "expected": f"job failed, {case.code}",
        "observed": f"job {job['state']}, {error.get('code')}: {error.get('message')}",
    }
    assert job["state"] == "failed", job
    assert error["code"] == case.code, job
    assert case.names in error["message"], job
    assert not marker.exists(), "the hostile pickle was unpickled"
