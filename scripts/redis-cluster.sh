#!/usr/bin/env bash
# Redis topologies for the tests of Duet's Redis Cluster, Sentinel and TLS
# support, from Debian's redis-server on this machine. Sourced (by
# scripts/test); each ensure_* function reuses a healthy running set, starts
# one otherwise, and exports the URL the tests read:
#   ensure_redis_cluster   3 masters + 3 replicas   DUET_TEST_REDIS_CLUSTER_URL
#   ensure_redis_sentinel  1 master + 1 replica + 3 sentinels
#                                                   DUET_TEST_REDIS_SENTINEL_URL
#   ensure_redis_tls       one server on TLS only   DUET_TEST_REDISS_URL, DUET_TEST_REDIS_CA_FILE
# stop_redis_topologies stops every server these functions started.
# Nothing is written to disk but the configs, logs and the test CA under
# $DUET_REDIS_TOPOLOGY_DIR (persistence is off: --save "", no AOF).
set -euo pipefail

# Every port, in one place (override any of them from the environment).
DUET_REDIS_CLUSTER_PORTS=${DUET_REDIS_CLUSTER_PORTS:-"41000 41001 41002 41003 41004 41005"}
DUET_REDIS_SENTINEL_DATA_PORTS=${DUET_REDIS_SENTINEL_DATA_PORTS:-"41100 41101"} # master, replica
DUET_REDIS_SENTINEL_PORTS=${DUET_REDIS_SENTINEL_PORTS:-"41110 41111 41112"}
DUET_REDIS_TLS_PORT=${DUET_REDIS_TLS_PORT:-41200}
DUET_REDIS_SENTINEL_SERVICE=${DUET_REDIS_SENTINEL_SERVICE:-duet}
DUET_REDIS_TOPOLOGY_DIR=${DUET_REDIS_TOPOLOGY_DIR:-/tmp/redis-topologies}

redis_up() { # port [extra redis-cli args...]
  local port=$1; shift
  redis-cli -h 127.0.0.1 -p "$port" "$@" ping 2>/dev/null | grep -q PONG
}

redis_wait() { # description, probe command...
  local what=$1; shift
  for _ in $(seq 1 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "error: $what did not come up (logs in $DUET_REDIS_TOPOLOGY_DIR)" >&2
  return 1
}

# One redis-server in the background, nothing persisted; extra args follow.
redis_start() { # port name [redis-server args...]
  local port=$1 name=$2; shift 2
  local dir=$DUET_REDIS_TOPOLOGY_DIR/$name
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@"
}

cluster_ok() {
  local first=${DUET_REDIS_CLUSTER_PORTS%% *}
  redis-cli -h 127.0.0.1 -p "$first" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  # Three masters with a replica each: the set this script makes, not some other cluster.
  [ "$(redis-cli -h 127.0.0.1 -p "$first" cluster nodes 2>/dev/null | grep -c master)" = 3 ] &&
    [ "$(redis-cli -h 127.0.0.1 -p "$first" cluster nodes 2>/dev/null | grep -c slave)" = 3 ]
}

ensure_redis_cluster() {
  local ports=($DUET_REDIS_CLUSTER_PORTS)
  if ! cluster_ok; then
    echo "starting a Redis Cluster on ports ${ports[*]}"
    for port in "${ports[@]}"; do
      redis_up "$port" && redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
      rm -rf "$DUET_REDIS_TOPOLOGY_DIR/cluster-$port"
      redis_start "$port" "cluster-$port" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout 2000
    done
    for port in "${ports[@]}"; do redis_wait "Redis $port" redis_up "$port"; done
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 1 --cluster-yes >/dev/null
    redis_wait "the Redis Cluster" cluster_ok
  fi
  local nodes
  nodes=$(printf '&node=127.0.0.1:%s' "${ports[@]:1}")
  export DUET_TEST_REDIS_CLUSTER_URL="redis-cluster://127.0.0.1:${ports[0]}?${nodes#&}"
}

sentinel_ok() {
  local data=($DUET_REDIS_SENTINEL_DATA_PORTS) sentinels=($DUET_REDIS_SENTINEL_PORTS)
  for port in "${data[@]}"; do redis_up "$port" || return 1; done
  for port in "${sentinels[@]}"; do
    redis-cli -h 127.0.0.1 -p "$port" sentinel get-master-addr-by-name "$DUET_REDIS_SENTINEL_SERVICE" 2>/dev/null |
      grep -q 127.0.0.1 || return 1
  done
  # The master has its replica (it may be either server after a failover).
  local master
  master=$(redis-cli -h 127.0.0.1 -p "${sentinels[0]}" sentinel get-master-addr-by-name "$DUET_REDIS_SENTINEL_SERVICE" | tail -1)
  redis-cli -h 127.0.0.1 -p "$master" info replication 2>/dev/null | grep -q '^connected_slaves:1'
}

ensure_redis_sentinel() {
  local data=($DUET_REDIS_SENTINEL_DATA_PORTS) sentinels=($DUET_REDIS_SENTINEL_PORTS)
  if ! sentinel_ok; then
    echo "starting Redis with Sentinel: data ${data[*]}, sentinels ${sentinels[*]}"
    for port in "${data[@]}" "${sentinels[@]}"; do
      redis_up "$port" && redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    rm -rf "$DUET_REDIS_TOPOLOGY_DIR"/sentinel-*
    redis_start "${data[0]}" "sentinel-data-${data[0]}"
    redis_start "${data[1]}" "sentinel-data-${data[1]}" --replicaof 127.0.0.1 "${data[0]}"
    for port in "${sentinels[@]}"; do
      local dir=$DUET_REDIS_TOPOLOGY_DIR/sentinel-$port
      mkdir -p "$dir"
      # Sentinel rewrites its config file as it learns the topology.
      cat >"$dir/sentinel.conf" <<EOF
port $port
bind 127.0.0.1
daemonize yes
pidfile $dir/redis.pid
logfile $dir/redis.log
dir $dir
sentinel monitor $DUET_REDIS_SENTINEL_SERVICE 127.0.0.1 ${data[0]} 2
sentinel down-after-milliseconds $DUET_REDIS_SENTINEL_SERVICE 1000
sentinel failover-timeout $DUET_REDIS_SENTINEL_SERVICE 5000
sentinel parallel-syncs $DUET_REDIS_SENTINEL_SERVICE 1
EOF
      redis-server "$dir/sentinel.conf" --sentinel
    done
    redis_wait "Redis with Sentinel" sentinel_ok
  fi
  local nodes
  nodes=$(printf '&node=127.0.0.1:%s' "${sentinels[@]:1}")
  export DUET_TEST_REDIS_SENTINEL_URL="redis-sentinel://127.0.0.1:${sentinels[0]}?sentinelServiceName=$DUET_REDIS_SENTINEL_SERVICE$nodes"
}

# A CA and a server certificate for 127.0.0.1 and localhost, made once.
redis_tls_files() {
  local dir=$DUET_REDIS_TOPOLOGY_DIR/tls
  [ -s "$dir/server.crt" ] && return 0
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=Duet test Redis CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$dir/san.ext" -out "$dir/server.crt" 2>/dev/null
}

ensure_redis_tls() {
  local port=$DUET_REDIS_TLS_PORT dir=$DUET_REDIS_TOPOLOGY_DIR/tls
  redis_tls_files
  local cli=(--tls --cacert "$dir/ca.crt")
  if ! redis_up "$port" "${cli[@]}"; then
    echo "starting Redis on TLS port $port"
    redis_start "$port" "tls-$port" --port 0 --tls-port "$port" --tls-cert-file "$dir/server.crt" \
      --tls-key-file "$dir/server.key" --tls-ca-cert-file "$dir/ca.crt" --tls-auth-clients no
    redis_wait "Redis on TLS" redis_up "$port" "${cli[@]}"
  fi
  export DUET_TEST_REDISS_URL="rediss://127.0.0.1:$port"
  export DUET_TEST_REDIS_CA_FILE=$dir/ca.crt
}

stop_redis_topologies() {
  local pidfile
  for pidfile in "$DUET_REDIS_TOPOLOGY_DIR"/*/redis.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}
