"""The typed Python client of the job API (the `adaprune` CLI uses it too).

from service.client import AdapruneClient

with AdapruneClient("http://127.0.0.1:8000", api_key=key) as client:
    job = client.submit(spec)
    final = client.wait(job["id"], on_step=print)
    for event in client.events(job["id"])["events"]:
        print(event["message"])
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

import httpx
from pydantic import ValidationError

from core.contract.errors import AdapruneError, ErrorCode, as_error_code
from core.contract.layout import MANIFEST, sha256_file
from core.contract.records import Manifest
from core.contract.states import FINAL_STATES
from service.store.artifacts import check_artifact_name
from service.store.jobs import is_job_id

__all__ = ["AdapruneClient", "ChecksumMismatch", "ClientError", "sha256_file"]

StepCallback = Callable[[dict[str, Any]], None]
PollCallback = Callable[[dict[str, Any]], None]


class JobEvent(TypedDict):
    """One event of a job's log."""

    seq: int
    at: str  # ISO-8601, UTC
    kind: str
    level: str  # info | warning | error
    message: str
    data: dict[str, Any]


class EventPage(TypedDict):
    """Events after a cursor; pass `next_after` as `after` for the next ones."""

    events: list[JobEvent]
    next_after: int


class JobList(TypedDict):
    """One page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class FieldError(TypedDict):
    """One bad field of a refused request."""

    field: str | None
    code: str
    message: str


class ClientError(AdapruneError):
    """The API answered with an error (status and the body's code and message).

    `status` is None when the client refused the call itself, before any request. A code this
    client does not know (a newer server's) reads as "http_error"; the message keeps it.
    `details` lists every bad field of a 422 (empty otherwise).
    """

    def __init__(
        self,
        status: int | None,
        *,
        code: str,
        message: str,
        details: list[FieldError] | None = None,
    ) -> None:
        prefix = f"{status} {code}" if status is not None else code
        super().__init__(f"{prefix}: {message}")
        self.status = status
        self.code: ErrorCode = as_error_code(code)
        self.message = message
        self.details = list(details or [])


class ChecksumMismatch(AdapruneError):
    """A downloaded artifact's sha256 differs from the listing or the manifest."""

    code = "checksum_mismatch"


class AdapruneClient:
    """Talks to the API with a bearer key."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )
        self._plain = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        """Close the connections."""
        self.http.close()
        self._plain.close()

    def __enter__(self) -> AdapruneClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @staticmethod
    def _job_path(job_id: str, rest: str = "") -> str:
        # Ids go into the URL path: anything but a UUID could walk to another route.
        if not is_job_id(job_id):
            raise ClientError(
                None,
                code="invalid_job_id",
                message=f"{job_id!r} is not a job id (a UUID such as the one submit printed)",
            )
        return f"/v1/jobs/{job_id}{rest}"

    def _json(self, response: httpx.Response) -> Any:
        if response.is_success:
            return response.json()
        raise _error_of(response)

    def submit(self, spec: Mapping[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job spec (as parsed YAML/JSON); returns the job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        result: dict[str, Any] = self._json(
            self.http.post("/v1/jobs", json=dict(spec), headers=headers)
        )
        return result

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's current record."""
        result: dict[str, Any] = self._json(self.http.get(self._job_path(job_id)))
        return result

    def steps(self, job_id: str) -> list[dict[str, Any]]:
        """The job's steps so far."""
        result: list[dict[str, Any]] = self._json(self.http.get(self._job_path(job_id, "/steps")))
        return result

    def jobs(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> JobList:
        """One page of your jobs, newest first, filtered by state, name and creation time."""
        params: dict[str, str | int] = {"limit": limit}
        for key, value in (("state", state), ("name", name), ("cursor", cursor)):
            if value is not None:
                params[key] = value
        for key, stamp in (("created_after", created_after), ("created_before", created_before)):
            if stamp is not None:
                params[key] = stamp.isoformat()
        result: JobList = self._json(self.http.get("/v1/jobs", params=params))
        return result

    def events(self, job_id: str, *, after: int = 0, limit: int = 100) -> EventPage:
        """The job's events with seq greater than `after`, oldest first (at most `limit`)."""
        params = {"after": after, "limit": limit}
        result: EventPage = self._json(
            self.http.get(self._job_path(job_id, "/events"), params=params)
        )
        return result

    def stream_events(self, job_id: str, *, after: int = 0) -> Iterator[JobEvent]:
        """Follow the job's events as they happen; the iterator ends once the job is final.

        Reads the server-sent event stream; a dropped connection is resumed after the last
        event received.
        """
        path = self._job_path(job_id, "/events/stream")
        while True:
            try:
                with self.http.stream(
                    "GET", path, params={"after": after}, timeout=httpx.Timeout(None, connect=10)
                ) as response:
                    if not response.is_success:
                        response.read()
                        raise _error_of(response)
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            event: JobEvent = json.loads(line[len("data:") :])
                            after = event["seq"]
                            yield event
                return
            except (httpx.RemoteProtocolError, httpx.ReadError):
                time.sleep(1.0)  # the connection dropped mid-stream: pick up after `after`

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask the job to stop; returns the job."""
        result: dict[str, Any] = self._json(self.http.post(self._job_path(job_id, "/cancel")))
        return result

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        """The job's artifact listing (name, size_bytes, sha256, url)."""
        result: list[dict[str, Any]] = self._json(
            self.http.get(self._job_path(job_id, "/artifacts"))
        )
        return result

    def wait(
        self,
        job_id: str,
        *,
        on_step: StepCallback | None = None,
        poll_s: float = 2.0,
        timeout_s: float | None = None,
        on_poll: PollCallback | None = None,
    ) -> dict[str, Any]:
        """Poll until the job is final, calling `on_step` once for each new step.

        `on_poll` receives the job record after every poll; whatever it raises ends the wait
        (a supervisor uses it to stop when the service itself failed).

        Returns:
            The final job record.

        Raises:
            TimeoutError: `timeout_s` passed first.
        """
        if poll_s <= 0:
            raise ValueError(f"poll_s {poll_s} must be positive")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen = -1
        while True:
            job = self.get(job_id)
            if on_poll is not None:
                on_poll(job)
            if on_step is not None:
                for step in self.steps(job_id):
                    if int(step["step"]) > seen:
                        seen = int(step["step"])
                        on_step(step)
            if job["state"] in FINAL_STATES:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout_s}s")
            time.sleep(poll_s)

    def _download(self, job_id: str, name: str, dest: Path) -> None:
        path = self._job_path(job_id, f"/artifacts/{name}")
        with self.http.stream("GET", path, follow_redirects=False) as response:
            if response.status_code in (301, 302, 303, 307, 308):
                # Presigned URLs carry their own signature: never send our key to the store.
                location = response.headers["location"]
                with self._plain.stream("GET", location) as stored:
                    _save(stored, dest)
                return
            _save(response, dest)

    def pull(self, job_id: str, out_dir: Path) -> Path:
        """Download every artifact of a job into `out_dir`, verified.

        Files go to a temporary directory beside `out_dir`; each sha256 is checked against
        the listing and against manifest.json's `files` entries when present; only then is the
        directory renamed to `out_dir` (which must be missing or empty).

        Returns:
            `out_dir`.

        Raises:
            ClientError: the job has not succeeded, or its listing has no manifest.json
                (nothing is created).
            ChecksumMismatch: a file's digest disagrees (nothing is left in `out_dir`).
            FileExistsError: `out_dir` exists and is not empty.
        """
        out_dir = out_dir.expanduser().resolve()
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise FileExistsError(f"{out_dir} exists and is not an empty directory")
        state = self.get(job_id)["state"]
        if state != "succeeded":
            raise ClientError(
                None,
                code="no_artifact",
                message=f"job {job_id} is {state}; only a succeeded job has an artifact",
            )
        listing = self.artifacts(job_id)
        if MANIFEST not in {item.get("name") for item in listing}:
            raise ClientError(None, code="no_artifact", message=f"job {job_id} lists no {MANIFEST}")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
        try:
            for item in listing:
                name = check_artifact_name(str(item["name"]))
                (temp / name).parent.mkdir(parents=True, exist_ok=True)
                self._download(job_id, name, temp / name)
                actual = sha256_file(temp / name)
                if actual != item["sha256"]:
                    raise ChecksumMismatch(
                        f"{name}: sha256 {actual} differs from the listing's {item['sha256']}"
                    )
            _check_manifest(temp)
            if out_dir.exists():
                out_dir.rmdir()
            temp.rename(out_dir)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return out_dir


def _error_of(response: httpx.Response) -> ClientError:
    """The ClientError of a failed response (its body read), with every field of a 422."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
        details: list[FieldError] = [
            FieldError(field=d.get("field"), code=str(d["code"]), message=str(d["message"]))
            for d in error.get("details") or []
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        code, message, details = "http_error", response.text[:500], []
    return ClientError(response.status_code, code=code, message=message, details=details)


def _save(response: httpx.Response, dest: Path) -> None:
    if not response.is_success:
        response.read()
        raise _error_of(response)
    with dest.open("wb") as out:
        for block in response.iter_bytes():
            out.write(block)


def _check_manifest(directory: Path) -> None:
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return
    try:
        files = Manifest.model_validate(json.loads(manifest.read_text())).files
    except (ValueError, ValidationError) as error:
        raise ChecksumMismatch(f"{MANIFEST} cannot be read: {error}") from error
    for name, entry in files.items():
        path = directory / check_artifact_name(name)
        if not path.is_file():
            raise ChecksumMismatch(f"manifest lists {name} but the job has no such artifact")
        digest = entry.sha256
        actual = sha256_file(path)
        if actual != digest:
            raise ChecksumMismatch(f"{name}: sha256 {actual} differs from the manifest's {digest}")
