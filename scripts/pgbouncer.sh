#!/usr/bin/env bash
# Makes sure a PgBouncer (Debian's package) in transaction pool mode runs in
# front of the primary (127.0.0.1:5432) on port ${DUET_PGBOUNCER_PORT:-6432},
# and exports its address:
#   DUET_TEST_PGBOUNCER_URL  its `postgres` database (tests swap in their own)
# Every database name is passed through to the primary as user postgres
# (auth_type any), so each test's fresh database is reachable. The pool is
# ${DUET_PGBOUNCER_POOL_SIZE:-2} server connections per database: small, so
# client transactions interleave on them. State (config, log, pid) lives
# under /tmp/duet-pgbouncer-PORT. `stop_pgbouncer` stops it. Sourced after
# services.sh (for wait_for). Runs pgbouncer as the postgres user (it
# refuses to run as root).
set -euo pipefail

DUET_PGBOUNCER_PORT=${DUET_PGBOUNCER_PORT:-6432}
DUET_PGBOUNCER_POOL_SIZE=${DUET_PGBOUNCER_POOL_SIZE:-2}

pgbouncer_dir() { echo "/tmp/duet-pgbouncer-$DUET_PGBOUNCER_PORT"; }

pgbouncer_as_postgres() { # command...
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

ensure_pgbouncer() {
  if ! command -v pgbouncer >/dev/null; then
    echo "installing pgbouncer"
    DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >/dev/null
  fi
  local dir
  dir=$(pgbouncer_dir)
  if ! pg_isready -h 127.0.0.1 -p "$DUET_PGBOUNCER_PORT" -q 2>/dev/null; then
    echo "starting PgBouncer (transaction pooling) on port $DUET_PGBOUNCER_PORT"
    mkdir -p "$dir" && chown postgres:postgres "$dir"
    # extra_float_digits: a startup parameter sqlx sends that PgBouncer
    # does not track; ignoring it is safe (it only changes float output).
    pgbouncer_as_postgres tee "$dir/pgbouncer.ini" >/dev/null <<INI
[databases]
* = host=127.0.0.1 port=5432 user=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $DUET_PGBOUNCER_PORT
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = $DUET_PGBOUNCER_POOL_SIZE
max_client_conn = 1000
ignore_startup_parameters = extra_float_digits
server_reset_query =
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    pgbouncer_as_postgres pgbouncer -d "$dir/pgbouncer.ini"
  fi
  wait_for PgBouncer pg_isready -h 127.0.0.1 -p "$DUET_PGBOUNCER_PORT" -q
  export DUET_TEST_PGBOUNCER_URL="postgres://postgres@127.0.0.1:$DUET_PGBOUNCER_PORT/postgres"
}

stop_pgbouncer() {
  local pidfile
  pidfile="$(pgbouncer_dir)/pgbouncer.pid"
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" 2>/dev/null || true
  fi
}
