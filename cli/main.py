"""The `adaprune` command line: one front end for the engine, the service and the client.

Each subcommand imports what it needs when it runs, so `adaprune api` never loads torch and
`adaprune status` starts fast. A user error prints one line on stderr and exits non-zero; set
ADAPRUNE_DEBUG=1 to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cli import commands
from cli.commands import DEFAULT_URL, ENVIRONMENT, client_config, home_dir, load_spec_file
from cli.errors import UserError
from core.contract.states import JOB_STATES

__all__ = ["UserError", "build_parser", "client_config", "home_dir", "load_spec_file", "main"]
DATABASE = (
    "database: DATABASE_URL (default: SQLite in ADAPRUNE_HOME, created and migrated on first "
    "use; an external database needs `adaprune migrate` first)."
)


def _run(args: argparse.Namespace) -> int:
    from cli.local_run import main as run_main

    return run_main(args.spec, args.out, device=args.device, threads=args.threads)


def _up(args: argparse.Namespace) -> int:
    from cli.embedded import up

    demo = None if args.demo is None else Path(args.demo)
    return up(port=args.port, workers=args.workers, demo_spec=demo)


def _api(args: argparse.Namespace) -> int:
    from cli.database import ready_database
    from service.main import create_app
    from service.server import serve
    from service.settings import ApiSettings

    settings = ApiSettings()
    ready_database(settings)
    serve(create_app(settings), settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from cli.database import ready_database
    from workers.process import run_worker
    from workers.settings import WorkerSettings

    ready_database(WorkerSettings())
    queues = [q.strip() for q in (args.queue or "").split(",") if q.strip()]
    return run_worker(queues=queues or None, log_level=args.log_level, quiet=args.quiet)


def _migrate(_args: argparse.Namespace) -> int:
    from service.db.migrate import upgrade
    from service.settings import ApiSettings

    upgrade(ApiSettings().database_url)
    print("database is at the latest schema", file=sys.stderr)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from cli.database import ready_database
    from service.auth import create_key, revoke_key
    from service.settings import ApiSettings
    from service.store import JobStore

    store = JobStore.from_url(ready_database(ApiSettings()))
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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adaprune")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _client_parser(sub: Any, name: str, *, help: str, handler: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=f"{help[0].upper()}{help[1:]}.", epilog=ENVIRONMENT
    )
    parser.set_defaults(handler=handler)
    return parser


def _job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="the job id (the UUID `submit` printed)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand; every argument has its help text."""
    parser = argparse.ArgumentParser(
        prog="adaprune",
        description=__doc__.splitlines()[0],
        epilog=f"{ENVIRONMENT} {DATABASE} Run `adaprune COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"adaprune {_version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (see below)"
    )

    run = sub.add_parser("run", help="run one job locally, no service: SPEC -> artifact in DIR")
    run.add_argument("spec", metavar="SPEC", help="job spec file (YAML or JSON)")
    run.add_argument("--out", required=True, metavar="DIR", help="where the artifact is written")
    run.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda:N")
    run.add_argument(
        "--threads",
        type=int,
        default=0,
        metavar="N",
        help="torch CPU threads (default 0: one for models under 1 M parameters, else all cores)",
    )
    run.set_defaults(handler=_run)

    up = sub.add_parser(
        "up",
        help="API + workers + embedded Redis + SQLite, all local",
        epilog="state lives in ADAPRUNE_HOME (default ~/.adaprune); ADAPRUNE_METRICS_PORT, when "
        "set, is the first worker's metrics port (the next workers take the ports after it); "
        "unset, free ports are chosen.",
    )
    up.add_argument("--port", type=int, default=8000, help="API port (0: pick a free one)")
    up.add_argument("--workers", type=int, default=1, help="worker processes (1 job each)")
    up.add_argument(
        "--demo",
        nargs="?",
        const=str(Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"),
        default=None,
        metavar="SPEC",
        help="submit the demo spec (or SPEC), wait, pull and verify the artifact, then exit",
    )
    up.set_defaults(handler=_up)

    api = sub.add_parser("api", help="serve the HTTP API", epilog=DATABASE)
    api.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    api.add_argument(
        "--host",
        default=os.environ.get("ADAPRUNE_API_HOST", "127.0.0.1"),
        help="address to bind (default ADAPRUNE_API_HOST or 127.0.0.1; 0.0.0.0 for every one)",
    )
    api.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    api.set_defaults(handler=_api)

    worker = sub.add_parser(
        "worker",
        help="run one worker process (one job at a time)",
        epilog=f"{DATABASE} REDIS_URL is the broker; ADAPRUNE_METRICS_PORT (default 9100, 0: "
        "off) serves /metrics.",
    )
    worker.add_argument(
        "--queue",
        default=None,
        help="comma-separated queues (default: the served queues, ADAPRUNE_SERVED_QUEUES)",
    )
    worker.add_argument("--log-level", default="INFO", help="Python log level (default INFO)")
    worker.add_argument("--quiet", action="store_true", help="no start-up banner")
    worker.set_defaults(handler=_worker)

    migrate = sub.add_parser(
        "migrate",
        help="bring the database schema up to date",
        epilog="database: DATABASE_URL (default: SQLite in ADAPRUNE_HOME).",
    )
    migrate.set_defaults(handler=_migrate)

    keys = sub.add_parser("keys", help="create or revoke API keys", epilog=DATABASE)
    keys_sub = keys.add_subparsers(
        dest="keys_command", required=True, metavar="ACTION", help="create or revoke"
    )
    create = keys_sub.add_parser(
        "create", help="print a new key for a tenant (created if new)", epilog=DATABASE
    )
    create.add_argument("--tenant", required=True, metavar="NAME", help="the tenant's name")
    revoke = keys_sub.add_parser("revoke", help="revoke a key", epilog=DATABASE)
    revoke.add_argument("key", metavar="KEY", help="the key to revoke (as printed by create)")
    keys.set_defaults(handler=_keys)

    submit = _client_parser(
        sub, "submit", help="submit a spec file; prints the job id", handler=commands.submit
    )
    submit.add_argument("spec", metavar="SPEC", help="job spec file (YAML or JSON)")
    submit.add_argument("--wait", action="store_true", help="show progress until the job ends")
    submit.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")
    submit.add_argument(
        "--idempotency-key",
        default=None,
        metavar="KEY",
        help="a repeat with the same key and spec returns the first job instead of a new one",
    )

    status = _client_parser(sub, "status", help="print a job as JSON", handler=commands.status)
    _job_argument(status)

    listing = _client_parser(
        sub, "list", help="list your jobs, newest first", handler=commands.list_jobs
    )
    listing.add_argument(
        "--state", choices=JOB_STATES, default=None, help="only jobs in this state"
    )
    listing.add_argument("--name", default=None, help="only jobs with exactly this name")
    listing.add_argument(
        "--limit", type=_limit, default=20, metavar="N", help="at most N jobs (1-100, default 20)"
    )

    cancel = _client_parser(sub, "cancel", help="ask a job to stop", handler=commands.cancel)
    _job_argument(cancel)

    logs = _client_parser(sub, "logs", help="print a job's events", handler=commands.logs)
    _job_argument(logs)
    logs.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="keep printing new events until the job ends (exit 0 only if it succeeded)",
    )

    pull = _client_parser(
        sub, "pull", help="download a job's artifact, verified", handler=commands.pull
    )
    _job_argument(pull)
    pull.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory")
    return parser


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 100")
    return value


def _describe(error: BaseException) -> str:
    message = " ".join(str(error).split())
    if type(error).__name__ in ("ConnectError", "ConnectTimeout"):
        url = os.environ.get("ADAPRUNE_URL", DEFAULT_URL)
        return f"cannot reach the API at {url} ({message}); is `adaprune up` running?"
    if isinstance(error, UserError) or not message:
        return message or type(error).__name__
    sqlalchemy = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy is not None and isinstance(error, sqlalchemy.SQLAlchemyError):
        from cli.database import describe_db_error

        return f"database error: {describe_db_error(error)}"
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
