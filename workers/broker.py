"""A read-only view of the job ids that the Redis broker still holds.

kombu's Redis transport keeps a queue's waiting messages in a list named like the queue (plus
one list per priority level, `queue + "\\x06\\x16" + level`), and every delivered message that is
not acknowledged yet in the hash `unacked` (delivery tag -> JSON `[message, exchange,
routing_key]`). A message is a JSON object whose `body` is the base64 of the Celery payload
`[args, kwargs, embed]`; the prune task's only argument is the job id.

A Redis restart without persistence empties both; the lease reaper uses this view to find the
queued jobs whose message is gone and send them again.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

import redis

from core.spec import PRUNE_TASK
from service.queue import redis_client_url

UNACKED = "unacked"
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_LEVELS = (3, 6, 9)
SOCKET_TIMEOUT_S = 5.0


def queue_keys(queue: str) -> list[str]:
    """The Redis lists that hold the waiting messages of `queue`, one per priority level."""
    return [queue, *(f"{queue}{PRIORITY_SEPARATOR}{level}" for level in PRIORITY_LEVELS)]


def job_id_of(message: Any) -> str | None:
    """The job id carried by one kombu message of the prune task, or None for anything else."""
    if not isinstance(message, dict):
        return None
    headers = message.get("headers") or {}
    if not isinstance(headers, dict) or headers.get("task") != PRUNE_TASK:
        return None
    body = message.get("body")
    if not isinstance(body, str):
        return None
    try:
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        payload = json.loads(body)
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None
    args = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(args, list) and args and isinstance(args[0], str):
        return args[0]
    return None


def _loads(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


class BrokerView:
    """Reads which job ids are waiting in, or delivered from, the broker's queues."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(
            redis_client_url(redis_url),
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
        )

    def job_ids(self, queues: Iterable[str], *, unacked: bool = True) -> set[str]:
        """Job ids waiting in `queues` or, with `unacked`, delivered and not yet acknowledged
        (any queue).

        Raises:
            redis.ConnectionError, redis.TimeoutError: the broker did not answer.
        """
        found: set[str] = set()
        pipe = self.client.pipeline(transaction=False)
        for queue in sorted(set(queues)):
            for key in queue_keys(queue):
                pipe.lrange(key, 0, -1)
        if unacked:
            pipe.hvals(UNACKED)
        replies = pipe.execute()
        lists, delivered = (replies[:-1], replies[-1]) if unacked else (replies, [])
        for raw in (item for items in lists for item in items):
            job_id = job_id_of(_loads(raw))
            if job_id is not None:
                found.add(job_id)
        for raw in delivered:
            entry = _loads(raw)
            job_id = job_id_of(entry[0]) if isinstance(entry, list) and entry else None
            if job_id is not None:
                found.add(job_id)
        return found

    def claim_resend(self, job_id: str, *, ttl_s: float) -> bool:
        """True for the first caller within `ttl_s` seconds, so several reapers resend once."""
        return bool(
            self.client.set(f"adaprune:resent:{job_id}", b"1", nx=True, px=int(ttl_s * 1000))
        )

    def close(self) -> None:
        """Release the Redis connections."""
        self.client.close()
