#!/usr/bin/env bash
# Makes sure a local S3-compatible server runs for attachments: s3s-fs
# (the s3s project's file-system store), installed once into target/tools
# (`cargo install s3s-fs@0.14.1 --locked --features binary`: about 170 crates,
# a few minutes on 2 cores), serving target/s3-data on 127.0.0.1:${DUET_S3_PORT:-9000}
# with a bucket `duet`. Exports its address and development credentials:
#   DUET_TEST_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY, _BUCKET, _REGION  (tests)
#   DUET_S3_ENDPOINT, _ACCESS_KEY, _SECRET_KEY, _BUCKET, _REGION        (scripts/run; unless DUET_S3_ENDPOINT is already set)
# Sourced by scripts/test and scripts/run after services.sh (for wait_for).
# Idempotent: a server already answering on the port is reused.
set -euo pipefail

DUET_S3_PORT=${DUET_S3_PORT:-9000}
S3_LOCAL_ACCESS_KEY=duet-local
# A development credential for a server bound to loopback: not a secret.
S3_LOCAL_SECRET_KEY=duet-local-secret-key
S3_LOCAL_BUCKET=duet
S3_LOCAL_REGION=us-east-1

ensure_s3() {
  local root bin data endpoint
  root="$(pwd)/target/tools"
  bin="$root/bin/s3s-fs"
  data="$(pwd)/target/s3-data"
  endpoint="http://127.0.0.1:$DUET_S3_PORT"
  if [ ! -x "$bin" ]; then
    echo "installing s3s-fs 0.14.1 into $root (once)"
    cargo install s3s-fs@0.14.1 --locked --features binary --root "$root"
  fi
  mkdir -p "$data/$S3_LOCAL_BUCKET"
  if ! curl -s -o /dev/null "$endpoint/"; then
    echo "starting s3s-fs on port $DUET_S3_PORT (data in $data)"
    # setsid: the server outlives this shell, like PostgreSQL and Redis.
    setsid "$bin" --host 127.0.0.1 --port "$DUET_S3_PORT" \
      --access-key "$S3_LOCAL_ACCESS_KEY" --secret-key "$S3_LOCAL_SECRET_KEY" "$data" \
      >"$(pwd)/target/s3s-fs.log" 2>&1 </dev/null &
  fi
  wait_for "the S3 server (s3s-fs)" curl -s -o /dev/null "$endpoint/"
  # A server started from another checkout serves another directory: make the bucket through the API.
  # S3 wants the payload's SHA-256 in a header; these requests have none (the hash of nothing).
  local sign=(--aws-sigv4 "aws:amz:$S3_LOCAL_REGION:s3" --user "$S3_LOCAL_ACCESS_KEY:$S3_LOCAL_SECRET_KEY"
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  if ! curl -sf -o /dev/null -I "${sign[@]}" "$endpoint/$S3_LOCAL_BUCKET"; then
    curl -sf -o /dev/null -X PUT "${sign[@]}" "$endpoint/$S3_LOCAL_BUCKET" || {
      echo "error: the S3 server on port $DUET_S3_PORT refuses the bucket $S3_LOCAL_BUCKET (another server with other credentials?)" >&2
      return 1
    }
  fi
  export DUET_TEST_S3_ENDPOINT="$endpoint" DUET_TEST_S3_ACCESS_KEY="$S3_LOCAL_ACCESS_KEY"
  export DUET_TEST_S3_SECRET_KEY="$S3_LOCAL_SECRET_KEY" DUET_TEST_S3_BUCKET="$S3_LOCAL_BUCKET" DUET_TEST_S3_REGION="$S3_LOCAL_REGION"
  if [ -z "${DUET_S3_ENDPOINT:-}" ]; then
    export DUET_S3_ENDPOINT="$endpoint" DUET_S3_ACCESS_KEY="$S3_LOCAL_ACCESS_KEY" DUET_S3_SECRET_KEY="$S3_LOCAL_SECRET_KEY"
    export DUET_S3_BUCKET="$S3_LOCAL_BUCKET" DUET_S3_REGION="$S3_LOCAL_REGION"
  fi
}
