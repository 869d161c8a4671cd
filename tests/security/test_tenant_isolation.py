"""One tenant reaching for another's data, against a live API, a real worker and real storage.

Two stacks: file:// artifacts under ADAPRUNE_HOME with a file root that holds the home (as a
careless `adaprune up` configuration would), and s3:// artifacts on a real S3-compatible server
whose allow-list names the service's own bucket. Every hostile reference is tried twice: at the
API, and written straight into the store and queue so that the worker must refuse it alone.
Set ADAPRUNE_SECURITY_TABLE=path.json to save the observed answers.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bench.live import FINAL, Deployment, deployment, tiny_job
from service.auth import get_or_create_tenant
from service.queue import JobQueue
from tests.security.conftest import IN_CI
from tests.support.processes import free_port
from tests.support.redis_url import redis_test_url

REDIS_URL = redis_test_url(10)
SERVICE_BUCKET, DATA_BUCKET, UNRELATED_BUCKET = "service-artifacts", "tenant-data", "unrelated"
OBSERVED: dict[str, dict[str, str]] = {}
WEIGHTS = "weights.safetensors"


def _redis_or_skip() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is not reachable")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    finally:
        client.close()


def _digits_npz() -> bytes:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16).astype(np.float32)
    out = io.BytesIO()
    np.savez(out, x_train=x[:300], y_train=y[:300], x_val=x[300:400], y_val=y[300:400])
    return out.getvalue()


@dataclass
class Stack:
    """A live deployment with two tenants: `attacker` (who tries) and `victim`."""

    kind: str
    deploy: Deployment
    attacker: httpx.Client
    victim: httpx.Client
    victim_job: str = ""
    jobs: dict[str, str] = field(default_factory=dict)  # case -> job id

    @property
    def home(self) -> Path:
        return Path(self.deploy.env["ADAPRUNE_HOME"])

    def victim_uri(self) -> str:
        """Where the victim's weights live, named as the storage itself names them."""
        key = f"tenants/victim/jobs/{self.victim_job}/artifacts/{WEIGHTS}"
        if self.kind == "file":
            return f"file://{self.home}/artifacts/{key}"
        return f"s3://{SERVICE_BUCKET}/prod/{key}"

    def bypass(self, case: str, spec: dict[str, Any]) -> None:
        """Put a job straight into the store and the queue, past the API's checks."""
        store = self.deploy.store
        with store.tx() as session:
            tenant_id = get_or_create_tenant(session, "attacker").id
        job = store.create_job(tenant_id=tenant_id, spec=spec, queue=self.deploy.queue).job
        JobQueue(REDIS_URL).enqueue(job.id, self.deploy.queue)
        self.jobs[case] = job.id

    def submit(self, case: str, spec: dict[str, Any]) -> None:
        response = self.attacker.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        self.jobs[case] = response.json()["id"]


def _weights_spec(uri: str) -> dict[str, Any]:
    spec = tiny_job(name="reach")
    spec["model"] = {"arch": "mlp", "weights": uri}
    return spec


def _data_spec(uri: str) -> dict[str, Any]:
    spec = tiny_job(name="reach")
    spec["task"] = {"data": uri}
    return spec


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _s3_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _start(kind: str, root: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    env: dict[str, str] = {"ADAPRUNE_ALLOWED_FILE_ROOTS": str(root)}  # holds the home
    if kind == "file":
        env["ARTIFACT_URL"] = f"file://{root / 'home' / 'artifacts'}"  # as `adaprune up` has it
    else:
        import boto3

        env.update(_s3_env(request.getfixturevalue("s3_server")))
        env["ARTIFACT_URL"] = f"s3://{SERVICE_BUCKET}/prod"
        env["ADAPRUNE_ALLOWED_S3_PREFIXES"] = f"s3://{SERVICE_BUCKET},s3://{DATA_BUCKET}/{{tenant}}"
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        for bucket in (SERVICE_BUCKET, DATA_BUCKET, UNRELATED_BUCKET):
            s3.create_bucket(Bucket=bucket)
        data = _digits_npz()
        for key in ("attacker/task.npz", "victim/task.npz"):
            s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=data)
        s3.put_object(Bucket=UNRELATED_BUCKET, Key="task.npz", Body=data)
    with deployment(root, redis_url=REDIS_URL, **env) as deploy:
        deploy.start_api()
        keys = {tenant: deploy.key(tenant) for tenant in ("attacker", "victim")}
        with (
            httpx.Client(base_url=deploy.url, timeout=30) as attacker,
            httpx.Client(base_url=deploy.url, timeout=30) as victim,
        ):
            attacker.headers["Authorization"] = f"Bearer {keys['attacker']}"
            victim.headers["Authorization"] = f"Bearer {keys['victim']}"
            yield Stack(kind, deploy, attacker, victim)


@pytest.fixture(scope="module", params=["file", "s3"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack whose hostile jobs were all queued behind the victim's, then run by one worker."""
    _redis_or_skip()
    kind = str(request.param)
    for live in _start(kind, tmp_path_factory.mktemp(f"isolation-{kind}"), request):
        response = live.victim.post("/v1/jobs", json=tiny_job(name="victim"))
        assert response.status_code == 201, response.text
        live.victim_job = response.json()["id"]
        _queue_cases(live)
        live.deploy.start_worker()
        deadline = time.monotonic() + 240
        for job_id in [live.victim_job, *live.jobs.values()]:
            while live.deploy.store.load_job(job_id).state not in FINAL:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, f"job {job_id} did not finish"
                time.sleep(0.2)
        yield live
    target = os.environ.get("ADAPRUNE_SECURITY_TABLE")
    if target:
        Path(target).write_text(json.dumps(OBSERVED, indent=1))


def _queue_cases(live: Stack) -> None:
    """Every job the worker must run or refuse, queued after the victim's (one worker, FIFO)."""
    theirs = f"artifact://{live.victim_job}/{WEIGHTS}"
    live.bypass("artifact:// of another tenant's job (past the API)", _weights_spec(theirs))
    absent = f"artifact://{uuid.uuid4()}/{WEIGHTS}"
    live.bypass("artifact:// of a job that does not exist (past the API)", _weights_spec(absent))
    live.bypass(
        "another tenant's weights by storage URI (past the API)", _weights_spec(live.victim_uri())
    )
    source = tiny_job(name="mine")
    source["finetune"]["pretrain_epochs"] = 15  # well above chance, so a reload is visible
    live.submit("own job, the source of own weights", source)
    own = f"artifact://{live.jobs['own job, the source of own weights']}/{WEIGHTS}"
    live.submit("own artifact:// as weights", _weights_spec(own))
    if live.kind == "file":
        # Checked at the API as a plain file inside the root, then swapped for a link to the
        # victim's weights before the worker opens it.
        data = live.deploy.root / "data"
        data.mkdir(exist_ok=True)
        mine = data / "mine.safetensors"
        mine.write_bytes(b"plain")
        live.submit("file link swapped after the API's check", _weights_spec(f"file://{mine}"))
        mine.unlink()
        mine.symlink_to(live.victim_uri().removeprefix("file://"))
    else:
        live.submit(
            "s3:// in the tenant's own allowed prefix",
            _data_spec(f"s3://{DATA_BUCKET}/attacker/task.npz"),
        )
        live.bypass(
            "s3:// in another tenant's prefix (past the API)",
            _data_spec(f"s3://{DATA_BUCKET}/victim/task.npz"),
        )
        live.bypass(
            "s3:// in an unrelated bucket (past the API)",
            _data_spec(f"s3://{UNRELATED_BUCKET}/task.npz"),
        )


def _observe(name: str, expected: str, observed: str) -> None:
    OBSERVED[name] = {"expected": expected, "observed": observed}


def _short(live: Stack, text: str) -> str:
    """`text` with the scratch paths written as the variables they stand for."""
    return text.replace(str(live.home), "$ADAPRUNE_HOME").replace(str(live.deploy.root), "ROOT")


def _api_refusal(live: Stack, case: str, spec: dict[str, Any], field_name: str, names: str) -> None:
    response = live.attacker.post("/v1/jobs", json=spec)
    error = response.json()["error"]
    _observe(
        f"[{live.kind}] {case}",
        f"422 validation_error naming {field_name}",
        _short(live, f"{response.status_code} {error['code']}: {error['message']}"),
    )
    assert response.status_code == 422, response.text
    assert error["field"] == field_name, response.text
    assert error["details"][0]["code"] == "policy_violation", response.text
    assert names in error["message"], response.text


def test_the_victims_job_succeeded(stack: Stack) -> None:
    assert stack.deploy.store.load_job(stack.victim_job).state == "succeeded"  # type: ignore[union-attr]


def test_the_api_refuses_another_tenants_artifact_by_every_scheme(stack: Stack) -> None:
    theirs = f"artifact://{stack.victim_job}/{WEIGHTS}"
    _api_refusal(
        stack,
        "artifact:// of another tenant's job",
        _weights_spec(theirs),
        "model.weights",
        "you have no job",
    )
    absent = f"artifact://{uuid.uuid4()}/{WEIGHTS}"
    _api_refusal(
        stack,
        "artifact:// of a job that does not exist",
        _weights_spec(absent),
        "model.weights",
        "you have no job",
    )
    own_storage = "service's own"
    _api_refusal(
        stack,
        "another tenant's weights by storage URI",
        _weights_spec(stack.victim_uri()),
        "model.weights",
        own_storage,
    )
    if stack.kind == "file":
        _api_refusal(
            stack,
            "file:// of the database's directory (ADAPRUNE_HOME)",
            _data_spec(f"file://{stack.home}/x.npz"),
            "task.data",
            own_storage,
        )
        _api_refusal(
            stack,
            "s3:// with no S3 prefix configured",
            _data_spec(f"s3://{DATA_BUCKET}/attacker/task.npz"),
            "task.data",
            "none configured",
        )
    else:
        _api_refusal(
            stack,
            "s3:// in another tenant's prefix",
            _data_spec(f"s3://{DATA_BUCKET}/victim/task.npz"),
            "task.data",
            "outside the allowed S3 prefixes",
        )
        _api_refusal(
            stack,
            "s3:// in an unrelated bucket",
            _data_spec(f"s3://{UNRELATED_BUCKET}/task.npz"),
            "task.data",
            "outside the allowed S3 prefixes",
        )


def _final(stack: Stack, case: str) -> Any:
    job = stack.deploy.store.load_job(stack.jobs[case])
    assert job is not None
    return job


REFUSED_IN_THE_WORKER = {
    "artifact:// of another tenant's job (past the API)": ("model.weights", "you have no job"),
    "artifact:// of a job that does not exist (past the API)": ("model.weights", "you have no job"),
    "another tenant's weights by storage URI (past the API)": ("model.weights", "service's own"),
    "file link swapped after the API's check": ("model.weights", "service's own storage"),
    "s3:// in another tenant's prefix (past the API)": ("task.data", "outside the allowed S3"),
    "s3:// in an unrelated bucket (past the API)": ("task.data", "outside the allowed S3"),
}


def test_the_worker_refuses_every_reference_the_api_would_refuse(stack: Stack) -> None:
    cases = [case for case in REFUSED_IN_THE_WORKER if case in stack.jobs]
    assert len(cases) == (4 if stack.kind == "file" else 5)
    for case in cases:
        job = _final(stack, case)
        field_name, names = REFUSED_IN_THE_WORKER[case]
        _observe(
            f"[{stack.kind}] {case}",
            f"job failed policy_violation naming {field_name}",
            _short(stack, f"job {job.state} {job.error_code}: {job.error_message}"),
        )
        assert (job.state, job.error_code) == ("failed", "policy_violation"), job.error_message
        assert job.error_message.startswith(field_name) and names in job.error_message


def test_a_tenants_own_artifact_serves_as_weights_of_a_new_job(stack: Stack) -> None:
    source = _final(stack, "own job, the source of own weights")
    reuse = _final(stack, "own artifact:// as weights")
    _observe(
        f"[{stack.kind}] own artifact:// as weights of a new job",
        "job succeeded; its dense metric is the source job's pruned metric",
        f"job {reuse.state}; dense {reuse.result and reuse.result['dense_metric']}, "
        f"source pruned {source.result and source.result['metric']}",
    )
    assert source.state == "succeeded" and reuse.state == "succeeded", reuse.error_message
    # No pre-training runs when weights are given: the new job starts from the pruned weights.
    assert reuse.result["dense_metric"] == pytest.approx(source.result["metric"], abs=1e-6)
    assert source.result["metric"] > 0.5  # chance is 0.1: the weights, not a fresh model


def test_data_in_the_tenants_own_s3_prefix_is_read(stack: Stack) -> None:
    if stack.kind != "s3":
        pytest.skip("the file stack configures no S3 prefix")
    job = _final(stack, "s3:// in the tenant's own allowed prefix")
    _observe(
        "[s3] s3:// in the tenant's own allowed prefix",
        "job succeeded",
        f"job {job.state} {job.error_code or ''}".strip(),
    )
    assert job.state == "succeeded", job.error_message
