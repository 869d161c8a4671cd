"""The client commands: submit, status, list, cancel, logs, pull (they talk to the API only)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.errors import UserError

if TYPE_CHECKING:
    from service.client import AdapruneClient, JobEvent

DEFAULT_URL = "http://127.0.0.1:8000"
KEY_FILE = "api_key"
ENVIRONMENT = (
    "environment: ADAPRUNE_URL is the API (default http://127.0.0.1:8000); ADAPRUNE_API_KEY "
    "is your key (default: the key `adaprune up` saved in ADAPRUNE_HOME/api_key)."
)


def home_dir() -> Path:
    """ADAPRUNE_HOME (default ~/.adaprune), expanded."""
    return Path(os.environ.get("ADAPRUNE_HOME", "~/.adaprune")).expanduser()


def client_config() -> tuple[str, str]:
    """(API URL, API key) from ADAPRUNE_URL and ADAPRUNE_API_KEY (or the key `adaprune up` saved).

    Raises:
        UserError: no key anywhere.
    """
    url = os.environ.get("ADAPRUNE_URL", DEFAULT_URL)
    key = os.environ.get("ADAPRUNE_API_KEY", "").strip()
    saved = home_dir() / KEY_FILE
    if not key and saved.is_file():
        key = saved.read_text().strip()
    if not key:
        raise UserError(
            "set ADAPRUNE_API_KEY (create one with `adaprune keys create --tenant NAME`)"
        )
    return url, key


def load_spec_file(path: str) -> dict[str, Any]:
    """Parse a YAML or JSON spec file into a mapping.

    Raises:
        UserError: missing file, unparsable text, or not a mapping.
    """
    from core.contract import specfile  # pydantic loads only for the commands that read specs

    try:
        return specfile.load_spec_file(path)
    except specfile.SpecFileInvalid as error:
        raise UserError(str(error)) from error


def _client() -> AdapruneClient:
    from service.client import AdapruneClient

    url, key = client_config()
    return AdapruneClient(url, api_key=key)


def submit(args: argparse.Namespace) -> int:
    """`adaprune submit SPEC`: print the job id; every validation error names its field."""
    from service.client import ClientError

    spec = load_spec_file(args.spec)
    with _client() as client:
        try:
            job = client.submit(spec, idempotency_key=args.idempotency_key)
        except ClientError as error:
            if error.status != 422 or not error.details:
                raise
            count = len(error.details)
            print(f"adaprune: error: {args.spec} has {count} problem(s):", file=sys.stderr)
            for detail in error.details:
                print(f"  {detail['field'] or 'spec'}: {detail['message']}", file=sys.stderr)
            return 2
        print(job["id"])
        if not args.wait:
            return 0
        from cli.progress import wait_with_progress

        final = wait_with_progress(client, job, timeout_s=args.timeout)
    return 0 if final["state"] == "succeeded" else 1


def status(args: argparse.Namespace) -> int:
    """`adaprune status JOB`: the job record as JSON."""
    with _client() as client:
        print(json.dumps(client.get(args.job), indent=2, sort_keys=True))
    return 0


def pull(args: argparse.Namespace) -> int:
    """`adaprune pull JOB --out DIR`: download and verify the artifact."""
    with _client() as client:
        print(client.pull(args.job, Path(args.out)))
    return 0


def _number(value: Any, digits: int) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


def job_line(job: dict[str, Any]) -> str:
    """One row of `adaprune list`: id, state, progress, reached/asked sparsity, metric, name."""
    reached = f"{_number(job.get('sparsity'), 3)}/{_number(job.get('target_sparsity'), 3)}"
    return (
        f"{job['id']}  {job['state']:<10} {float(job.get('progress') or 0):>4.0%}  "
        f"{reached:<11}  {_number(job.get('metric'), 4):>6}  {job['created_at'][:19]}  "
        f"{job['name']}"
    )


def list_jobs(args: argparse.Namespace) -> int:
    """`adaprune list`: your jobs, newest first."""
    with _client() as client:
        page = client.jobs(state=args.state, name=args.name, limit=args.limit)
    header = f"{'id':<36}  {'state':<10} {'done':>4}  {'sparsity':<11}  {'metric':>6}  "
    print(f"{header}{'created (UTC)':<19}  name")
    for job in page["items"]:
        print(job_line(job))
    if page["next_cursor"] is not None:
        print("(more: raise --limit, at most 100, or filter with --state/--name)", file=sys.stderr)
    return 0


def cancel(args: argparse.Namespace) -> int:
    """`adaprune cancel JOB`: ask the job to stop; prints its state."""
    with _client() as client:
        job = client.cancel(args.job)
    print(f"job {job['id']}: {job['state']}")
    return 0


def event_line(event: JobEvent) -> str:
    """One line of `adaprune logs`: time, level, kind, message."""
    return f"{event['at'][:19]}Z {event['level']:<7} {event['kind']:<9} {event['message']}"


def logs(args: argparse.Namespace) -> int:
    """`adaprune logs JOB [--follow]`: print the job's events (and follow them until it ends)."""
    with _client() as client:
        if args.follow:
            for event in client.stream_events(args.job):
                print(event_line(event), flush=True)
            return 0 if client.get(args.job)["state"] == "succeeded" else 1
        after = 0
        while True:
            page = client.events(args.job, after=after, limit=1000)
            for event in page["events"]:
                print(event_line(event))
            if not page["events"]:
                return 0
            after = page["next_after"]
