#!/usr/bin/env bash
# Make sure the services the integration tests talk to answer: Redis, PostgreSQL, Prometheus's tools.
set -uo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
pg_up() { pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

if ! redis_up && command -v redis-server >/dev/null; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! pg_up && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) \
      >/tmp/adaprune-apt.log 2>&1 || echo "warning: could not install prometheus (see /tmp/adaprune-apt.log)"
  fi
fi
for _ in $(seq 1 30); do
  if redis_up && pg_up; then exit 0; fi
  sleep 1
done
redis_up || echo "warning: Redis does not answer on 127.0.0.1:6379"
pg_up || echo "warning: PostgreSQL does not answer on 127.0.0.1:5432"
