"""The Celery app's delivery rules and broker URL."""

from __future__ import annotations

from celery import Celery
from kombu.utils.url import url_to_parts

from core.spec import PRUNE_TASK, BudgetSpec
from service.queue import broker_url
from workers.app import configure
from workers.settings import WorkerSettings


def test_visibility_timeout_outlasts_the_longest_job_the_spec_allows() -> None:
    longest = BudgetSpec(max_runtime_s=7 * 24 * 3600).max_runtime_s
    conf = configure(WorkerSettings(redis_url="redis://h:6379/0"), celery=Celery("t")).conf
    assert conf.broker_transport_options["visibility_timeout"] > longest
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost) == (True, True)
    assert (conf.worker_prefetch_multiplier, conf.worker_concurrency) == (1, 1)
    assert conf.worker_pool == "solo" and conf.accept_content == ["json"]
    assert conf.task_routes[PRUNE_TASK] == {"queue": "gpu"}


def test_a_unix_socket_redis_url_becomes_a_kombu_socket_url_with_an_absolute_path() -> None:
    url = broker_url("unix:///var/lib/adaprune/redis/redis.sock")
    parts = url_to_parts(url)
    assert parts.scheme == "redis+socket" and parts.hostname is None
    assert "/" + parts.path.lstrip("/") == "/var/lib/adaprune/redis/redis.sock"
    assert broker_url("redis://127.0.0.1:6379/3") == "redis://127.0.0.1:6379/3"
