"""The Celery client side: send a job id to a queue, and measure queue depth. JSON only."""

from __future__ import annotations

from urllib.parse import urlsplit

import redis
from celery import Celery

from core.spec import PRUNE_TASK
from service.errors import EnqueueFailed
from service.settings import QUEUE_NAME

SOCKET_TIMEOUT_S = 5.0
# kombu's Redis transport stores priority levels 3, 6 and 9 in extra lists beside the queue's own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _socket_url(scheme: str, path: str, query: str) -> str:
    # urlunsplit drops the empty authority ("unix:/p"), which kombu and redis-py both misread
    return f"{scheme}://{path}" + (f"?{query}" if query else "")


def broker_url(redis_url: str) -> str:
    """The Celery broker URL for a Redis URL (`unix:///sock` becomes `redis+socket:///sock`)."""
    parts = urlsplit(redis_url)
    if parts.scheme == "unix":
        return _socket_url("redis+socket", parts.path, parts.query)
    return redis_url


def redis_client_url(redis_url: str) -> str:
    """The redis-py URL for a Redis URL (`redis+socket:///sock` becomes `unix:///sock`)."""
    parts = urlsplit(redis_url)
    if parts.scheme in ("redis+socket", "socket"):
        return _socket_url("unix", parts.path, parts.query)
    return redis_url


def check_queue_name(queue: str) -> str:
    """Return `queue` if it matches [a-z0-9-]{1,32}, else raise ValueError naming it."""
    if not QUEUE_NAME.match(queue):
        raise ValueError(f"queue name {queue!r} must match [a-z0-9-]{{1,32}}")
    return queue


class JobQueue:
    """Publishes job ids for the workers and reads queue lengths from Redis."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.celery = Celery("adaprune-api", broker=broker_url(redis_url))
        self.celery.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            task_publish_retry=False,
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            # Fail fast when the broker is down: the route answers 503 instead of hanging.
            broker_transport_options={
                "socket_timeout": SOCKET_TIMEOUT_S,
                "socket_connect_timeout": SOCKET_TIMEOUT_S,
                "max_retries": 1,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        )
        self.redis = redis.Redis.from_url(
            redis_client_url(redis_url),
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
        )

    def enqueue(self, job_id: str, queue: str) -> None:
        """Send the prune task for `job_id` to `queue`; the message carries the id alone.

        Raises:
            EnqueueFailed: the broker could not be reached or refused the message.
        """
        check_queue_name(queue)
        try:
            self.celery.send_task(PRUNE_TASK, args=[job_id], queue=queue, retry=False)
        except Exception as error:  # kombu and redis raise many types for "broker down"
            raise EnqueueFailed(
                f"could not send job {job_id} to queue {queue!r}: {error}"
            ) from error

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in `queue` (all priority levels)."""
        check_queue_name(queue)
        return sum(int(self.redis.llen(queue + suffix)) for suffix in _PRIORITY_SUFFIXES)

    def ping(self) -> bool:
        """Whether Redis answers."""
        return bool(self.redis.ping())

    def close(self) -> None:
        """Release broker and Redis connections."""
        self.celery.close()
        self.redis.close()
