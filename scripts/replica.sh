#!/usr/bin/env bash
# Makes sure two local PostgreSQL streaming replicas of the primary (port
# 5432) run on ports ${DUET_REPLICA_PORT:-5433} and ${DUET_REPLICA2_PORT:-5434},
# creating each with `pg_basebackup -R` when missing, and exports their addresses:
#   DUET_TEST_REPLICA_URL   the first replica's `postgres` database (tests swap in their own)
#   DUET_TEST_REPLICA2_URL  the second's
#   DATABASE_REPLICA_URL    both replicas' `duet` databases, comma-separated (scripts/run), unless already set
# `ensure_replica_on PORT DATA_DIR` makes one replica (e.g. on a port of
# your own, for a test that stops it).
# Sourced by scripts/test and scripts/run after services.sh. Idempotent: the
# primary is only reloaded (never restarted) unless its wal_level cannot
# feed a replica. Runs the PostgreSQL binaries as the postgres user.
set -euo pipefail

DUET_REPLICA_PORT=${DUET_REPLICA_PORT:-5433}
DUET_REPLICA2_PORT=${DUET_REPLICA2_PORT:-5434}

as_postgres() { # command...
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

ensure_replica() {
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  ensure_replica_on "$DUET_REPLICA_PORT" "/var/lib/postgresql/$ver/duet-replica"
  ensure_replica_on "$DUET_REPLICA2_PORT" "/var/lib/postgresql/$ver/duet-replica-$DUET_REPLICA2_PORT"
  export DUET_TEST_REPLICA_URL="postgres://postgres@127.0.0.1:$DUET_REPLICA_PORT/postgres"
  export DUET_TEST_REPLICA2_URL="postgres://postgres@127.0.0.1:$DUET_REPLICA2_PORT/postgres"
  export DATABASE_REPLICA_URL="${DATABASE_REPLICA_URL:-postgres://postgres@127.0.0.1:$DUET_REPLICA_PORT/duet,postgres://postgres@127.0.0.1:$DUET_REPLICA2_PORT/duet}"
}

ensure_replica_on() { # port, data directory, [again]
  local port=$1 data=$2 ver bin conf primary_psql
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  bin=/usr/lib/postgresql/$ver/bin
  conf=/etc/postgresql/$ver/main
  primary_psql=(psql "${PG_URL_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}" -Atq)

  # The primary must stream WAL to 127.0.0.1 without a password.
  if ! grep -Eq '^host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$conf/pg_hba.conf"; then
    echo "allowing local replication connections in $conf/pg_hba.conf"
    printf '\n# Duet: local streaming replica (scripts/replica.sh)\nhost replication all 127.0.0.1/32 trust\n' >>"$conf/pg_hba.conf"
    "${primary_psql[@]}" -c 'select pg_reload_conf()' >/dev/null
  fi
  local wal_level senders
  wal_level=$("${primary_psql[@]}" -c 'show wal_level')
  senders=$("${primary_psql[@]}" -c 'show max_wal_senders')
  if [ "$wal_level" = minimal ] || [ "$senders" -lt 2 ]; then
    echo "enabling WAL streaming on the primary (restart)"
    printf 'wal_level = replica\nmax_wal_senders = 10\n' >"$conf/conf.d/91-duet-replication.conf"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
    wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432 -q
  fi

  # Keep some WAL for a replica that was stopped for a while (benchmarks stop
  # it to free the CPU): without it, a checkpoint on the busy primary recycles
  # segments the replica still needs, and it has to be made anew.
  if [ "$("${primary_psql[@]}" -c "select setting::bigint from pg_settings where name = 'wal_keep_size'")" -lt 1024 ]; then
    echo "keeping 1 GB of WAL on the primary for the replica (reload)"
    printf 'wal_keep_size = 1GB\n' >"$conf/conf.d/92-duet-wal-keep.conf"
    "${primary_psql[@]}" -c 'select pg_reload_conf()' >/dev/null
  fi

  # A replica left from an earlier primary (the machine's cluster was made
  # anew) can never stream from this one: start it over.
  if [ -f "$data/standby.signal" ]; then
    local primary_id replica_id
    primary_id=$("${primary_psql[@]}" -c 'select system_identifier from pg_control_system()')
    replica_id=$("$bin/pg_controldata" "$data" 2>/dev/null | awk -F: '/Database system identifier/ {gsub(/ /, "", $2); print $2}')
    if [ "$primary_id" != "$replica_id" ]; then
      echo "the replica in $data belongs to another primary; recreating it"
      as_postgres "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
      rm -f "$data/standby.signal"
    fi
  fi
  if ! pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
    if [ ! -f "$data/standby.signal" ]; then
      echo "creating the streaming replica in $data (port $port)"
      rm -rf "$data"
      mkdir -p "$data" && chown postgres:postgres "$data" && chmod 700 "$data"
      as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p 5432 -U postgres -D "$data" -R -X stream -c fast
      # Debian keeps the primary's config in /etc, so the copy has none of its own.
      local max_connections
      max_connections=$("${primary_psql[@]}" -c 'show max_connections')
      as_postgres tee "$data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '/var/run/postgresql'
max_connections = $max_connections
hot_standby = on
hot_standby_feedback = on
wal_receiver_status_interval = 1s
fsync = off
CONF
      as_postgres tee "$data/pg_hba.conf" >/dev/null <<'HBA'
local all all trust
host all all 127.0.0.1/32 trust
HBA
      as_postgres touch "$data/pg_ident.conf"
    fi
    echo "starting the streaming replica on port $port"
    mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
    as_postgres "$bin/pg_ctl" -D "$data" -l "$data/replica.log" -w -t 60 start >/dev/null
  fi
  wait_for "the PostgreSQL replica" pg_isready -h 127.0.0.1 -p "$port" -q
  local url="postgres://postgres@127.0.0.1:$port/postgres"
  # A test that failed while replay was paused must not leave it paused.
  psql "$url" -Atqc "select pg_wal_replay_resume() where pg_get_wal_replay_pause_state() <> 'not paused'" >/dev/null
  if [ "$(psql "$url" -Atqc 'select pg_is_in_recovery()')" != t ]; then
    echo "error: the server on port $port is not a replica" >&2
    return 1
  fi
  # A replica stopped while the primary recycled the WAL it still needed can
  # never catch up ("requested WAL segment has already been removed"): it
  # must reach the primary's current position, or it is made anew.
  local target caught=""
  target=$("${primary_psql[@]}" -c 'select pg_current_wal_flush_lsn()')
  for _ in $(seq 1 40); do
    if [ "$(psql "$url" -Atqc "select coalesce(pg_last_wal_receive_lsn() >= '$target', false)")" = t ]; then
      caught=1; break
    fi
    sleep 0.5
  done
  if [ -z "$caught" ]; then
    if [ "${3:-}" = again ]; then
      echo "error: the replica on port $port does not stream from the primary" >&2
      return 1
    fi
    echo "the replica on port $port cannot catch up with the primary; recreating it"
    as_postgres "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    rm -f "$data/standby.signal"
    ensure_replica_on "$port" "$data" again
    return
  fi
}
