#!/usr/bin/env bash
# Makes sure a PostgreSQL of its own that accepts TLS connections only runs
# on port ${DUET_PG_TLS_PORT:-42100}, with a server certificate for
# 127.0.0.1 and localhost signed by a local CA made here with openssl, and
# exports:
#   DUET_TEST_PG_TLS_URL       its `postgres` database, sslmode=verify-full against that CA
#   DUET_TEST_PG_TLS_OTHER_CA  another CA's certificate (one that did not sign the server's)
# Everything lives under /tmp/duet-pg-tls-PORT; `stop_pg_tls` stops the
# server. Sourced after services.sh (for wait_for). Runs the PostgreSQL
# binaries as the postgres user.
set -euo pipefail

DUET_PG_TLS_PORT=${DUET_PG_TLS_PORT:-42100}

pg_tls_dir() { echo "/tmp/duet-pg-tls-$DUET_PG_TLS_PORT"; }

pg_tls_as_postgres() { # command...
  if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

# A CA (ca.crt) and a server certificate it signed for 127.0.0.1 and
# localhost (server.crt, server.key), and an unrelated CA (other-ca.crt).
make_pg_tls_certs() { # dir
  local dir=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Duet test PostgreSQL CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Duet test other CA" \
    -keyout "$dir/other-ca.key" -out "$dir/other-ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 3650 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  chmod 600 "$dir/server.key"
}

ensure_pg_tls() {
  local ver bin dir data
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  bin=/usr/lib/postgresql/$ver/bin
  dir=$(pg_tls_dir)
  data=$dir/data
  if ! pg_isready -h 127.0.0.1 -p "$DUET_PG_TLS_PORT" -q 2>/dev/null; then
    if [ ! -f "$data/PG_VERSION" ]; then
      echo "creating a PostgreSQL with TLS in $dir (port $DUET_PG_TLS_PORT)"
      rm -rf "$dir" && mkdir -p "$dir"
      make_pg_tls_certs "$dir"
      chown -R postgres:postgres "$dir"
      pg_tls_as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust >/dev/null
      pg_tls_as_postgres tee -a "$data/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $DUET_PG_TLS_PORT
unix_socket_directories = '$dir'
ssl = on
ssl_cert_file = '$dir/server.crt'
ssl_key_file = '$dir/server.key'
fsync = off
CONF
      # TLS or nothing: a connection without it is refused.
      pg_tls_as_postgres tee "$data/pg_hba.conf" >/dev/null <<'HBA'
local all all trust
hostssl all all 127.0.0.1/32 trust
HBA
    fi
    echo "starting the PostgreSQL with TLS on port $DUET_PG_TLS_PORT"
    pg_tls_as_postgres "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  fi
  wait_for "the PostgreSQL with TLS" pg_isready -h 127.0.0.1 -p "$DUET_PG_TLS_PORT" -q
  export DUET_TEST_PG_TLS_URL="postgres://postgres@127.0.0.1:$DUET_PG_TLS_PORT/postgres?sslmode=verify-full&sslrootcert=$dir/ca.crt"
  export DUET_TEST_PG_TLS_OTHER_CA="$dir/other-ca.crt"
}

stop_pg_tls() {
  local ver
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  if [ -f "$(pg_tls_dir)/data/postmaster.pid" ]; then
    pg_tls_as_postgres "/usr/lib/postgresql/$ver/bin/pg_ctl" -D "$(pg_tls_dir)/data" -m fast stop >/dev/null
  fi
}
