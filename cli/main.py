"""The `adaprune` command line: one front end for the engine, the service and the client.

Each subcommand imports what it needs when it runs, so `adaprune api` never loads torch and
`adaprune status` starts fast. A user error prints one line on stderr and exits non-zero; set
ADAPRUNE_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.contract.errors import AdapruneError

DEFAULT_URL = "http://127.0.0.1:8000"
KEY_FILE = "api_key"


class UserError(AdapruneError):
    """A mistake the user can fix; printed as one line."""

    code = "usage_error"


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


def _run(args: argparse.Namespace) -> int:
    from cli.local_run import main as run_main

    return run_main(args.spec, args.out, device=args.device)


def _up(args: argparse.Namespace) -> int:
    from cli.embedded import up

    demo = None if args.demo is None else Path(args.demo)
    return up(port=args.port, workers=args.workers, demo_spec=demo)


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.process import run_worker

    queues = [q.strip() for q in (args.queue or "").split(",") if q.strip()]
    return run_worker(queues=queues or None, log_level=args.log_level, quiet=args.quiet)


def _migrate(_args: argparse.Namespace) -> int:
    from service.db.migrate import upgrade
    from service.settings import ApiSettings

    upgrade(ApiSettings().database_url)
    print("database is at the latest schema", file=sys.stderr)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from service.auth import create_key, revoke_key
    from service.settings import ApiSettings
    from service.store import JobStore

    store = JobStore.from_url(ApiSettings().database_url)
    try:
        with store.tx() as session:
            if args.keys_command == "create":
                print(create_key(session, args.tenant))
                return 0
            if not revoke_key(session, args.key):
                raise UserError("that key is unknown or already revoked")
            print("key revoked", file=sys.stderr)
            return 0
    finally:
        store.engine.dispose()


def _client() -> Any:
    from service.client import AdapruneClient

    url, key = client_config()
    return AdapruneClient(url, api_key=key)


def _submit(args: argparse.Namespace) -> int:
    spec = load_spec_file(args.spec)
    with _client() as client:
        job = client.submit(spec, idempotency_key=args.idempotency_key)
        print(job["id"])
        if not args.wait:
            return 0
        from cli.progress import wait_with_progress

        final = wait_with_progress(client, job, timeout_s=args.timeout)
    return 0 if final["state"] == "succeeded" else 1


def _status(args: argparse.Namespace) -> int:
    with _client() as client:
        print(json.dumps(client.get(args.job), indent=2, sort_keys=True))
    return 0


def _pull(args: argparse.Namespace) -> int:
    with _client() as client:
        print(client.pull(args.job, Path(args.out)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="adaprune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run one job locally, no service: SPEC -> artifact in DIR")
    run.add_argument("spec")
    run.add_argument("--out", required=True)
    run.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:N")
    run.set_defaults(handler=_run)

    up = sub.add_parser("up", help="API + workers + embedded Redis + SQLite, all local")
    up.add_argument("--port", type=int, default=8000, help="API port (0: pick a free one)")
    up.add_argument("--workers", type=int, default=1)
    up.add_argument(
        "--demo",
        nargs="?",
        const=str(Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"),
        default=None,
        metavar="SPEC",
        help="submit the demo spec (or SPEC), wait, pull and verify the artifact, then exit",
    )
    up.set_defaults(handler=_up)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--host", default=os.environ.get("ADAPRUNE_API_HOST", "0.0.0.0"))
    api.add_argument("--log-level", default="info")
    api.set_defaults(handler=_api)

    worker = sub.add_parser("worker", help="run one worker process (one job at a time)")
    worker.add_argument("--queue", default=None, help="comma-separated queues (default: gpu)")
    worker.add_argument("--log-level", default="INFO")
    worker.add_argument("--quiet", action="store_true", help="no start-up banner")
    worker.set_defaults(handler=_worker)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(handler=_migrate)

    keys = sub.add_parser("keys", help="create or revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="print a new key for a tenant (created if new)")
    create.add_argument("--tenant", required=True)
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key")
    keys.set_defaults(handler=_keys)

    submit = sub.add_parser("submit", help="submit a spec file; prints the job id")
    submit.add_argument("spec")
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends")
    submit.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    submit.add_argument("--idempotency-key", default=None)
    submit.set_defaults(handler=_submit)

    status = sub.add_parser("status", help="print a job as JSON")
    status.add_argument("job")
    status.set_defaults(handler=_status)

    pull = sub.add_parser("pull", help="download a job's artifact, verified")
    pull.add_argument("job")
    pull.add_argument("--out", required=True)
    pull.set_defaults(handler=_pull)
    return parser


def _describe(error: BaseException) -> str:
    message = " ".join(str(error).split())
    if type(error).__name__ in ("ConnectError", "ConnectTimeout"):
        url = os.environ.get("ADAPRUNE_URL", DEFAULT_URL)
        return f"cannot reach the API at {url} ({message}); is `adaprune up` running?"
    if isinstance(error, UserError) or not message:
        return message or type(error).__name__
    return f"{type(error).__name__}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `adaprune` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("adaprune: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if os.environ.get("ADAPRUNE_DEBUG"):
            raise
        print(f"adaprune: error: {_describe(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
