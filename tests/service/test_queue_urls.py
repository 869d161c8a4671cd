import redis

from service.queue import broker_url, redis_client_url


def test_unix_socket_urls_keep_their_absolute_path_both_ways():
    assert broker_url("unix:///tmp/a/redis.sock") == "redis+socket:///tmp/a/redis.sock"
    assert redis_client_url("redis+socket:///tmp/a/redis.sock") == "unix:///tmp/a/redis.sock"
    assert broker_url("unix:///tmp/r.sock?db=3") == "redis+socket:///tmp/r.sock?db=3"
    assert broker_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redis_py_reads_the_converted_socket_path():
    client = redis.Redis.from_url(redis_client_url(broker_url("unix:///tmp/x/redis.sock")))
    assert client.connection_pool.connection_kwargs["path"] == "/tmp/x/redis.sock"
