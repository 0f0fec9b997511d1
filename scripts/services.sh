#!/usr/bin/env bash
# Makes sure the services Duet needs are up on this machine: PostgreSQL and
# Redis (started if stopped). Sourced by scripts/run and scripts/test.
set -euo pipefail

PG_URL_ADMIN=${PG_URL_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}

wait_for() { # name, probe command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "error: $name did not come up" >&2
  return 1
}

ensure_postgres() {
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
  fi
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
}

ensure_redis() {
  if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  fi
  wait_for Redis sh -c 'redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG'
}

ensure_services() {
  ensure_postgres
  ensure_redis
}
