"""TCP ports for `adaprune up`: the API's and each worker's metrics endpoint."""

from __future__ import annotations

import socket

from cli.errors import UserError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on `port` on every address right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def worker_metrics_ports(workers: int, *, configured: str | None) -> list[int]:
    """The metrics port of each worker.

    Args:
        workers: how many workers.
        configured: ADAPRUNE_METRICS_PORT as set (None: unset, free ports are chosen; "0":
            every endpoint off; P: ports P, P+1, ... which must be free).

    Raises:
        UserError: the variable is not a port, or one of the ports it names is taken.
    """
    if configured is None or not configured.strip():
        return [free_port() for _ in range(workers)]
    try:
        base = int(configured)
    except ValueError:
        raise UserError(f"ADAPRUNE_METRICS_PORT={configured!r} is not a port number") from None
    if base == 0:
        return [0] * workers
    ports = [base + index for index in range(workers)]
    if base < 1 or ports[-1] > 65535:
        raise UserError(f"ADAPRUNE_METRICS_PORT={base}: ports {ports} are not all valid")
    for index, port in enumerate(ports):
        if not port_is_free(port):
            name = "ADAPRUNE_METRICS_PORT" + (f" + {index}" if index else "")
            raise UserError(
                f"worker metrics port {port} ({name}) is taken; set ADAPRUNE_METRICS_PORT to a "
                "free port, 0 to turn metrics off, or unset it to pick free ports"
            )
    return ports
