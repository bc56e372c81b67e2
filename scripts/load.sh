#!/usr/bin/env bash
# Load test on this machine, loopback only, bounded in time: authz on
# PostgreSQL (scripts/with-postgres.sh provides one), the example resource
# server in front of it, and cmd/authz-load driving each. Every process this
# script starts is stopped by its PID when it ends.
#
#   scripts/with-postgres.sh scripts/load.sh [duration]
set -euo pipefail
dur=${1:-10s}
: "${AUTHZ_TEST_DATABASE_URL:?run under scripts/with-postgres.sh or set AUTHZ_TEST_DATABASE_URL}"
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/authz" ./cmd/authz
go build -o "$tmp/authz-load" ./cmd/authz-load
go build -o "$tmp/resource-server" ./examples/resource-server

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
aport=$(free_port); rport=$(free_port)
export AUTHZ_DATABASE_URL="$AUTHZ_TEST_DATABASE_URL"
export AUTHZ_ISSUER="http://127.0.0.1:$aport" AUTHZ_ADDR="127.0.0.1:$aport"
export AUTHZ_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64)
export AUTHZ_RESOURCES="http://127.0.0.1:$rport/api" AUTHZ_SCOPES="read" AUTHZ_LOG_LEVEL=warn

"$tmp/authz" migrate >/dev/null
client=$("$tmp/authz" client create --name load --grant-type client_credentials --scope read --json)
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$client")
secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$client")

"$tmp/authz" serve >"$tmp/authz.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -fsS "$AUTHZ_ISSUER/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
"$tmp/resource-server" -issuer "$AUTHZ_ISSUER" -resource "$AUTHZ_RESOURCES" -addr "127.0.0.1:$rport" -scope read >/dev/null & pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$rport/api/hello" && break; sleep 0.1; done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
for mode in client_credentials introspect; do
  "$tmp/authz-load" -issuer "$AUTHZ_ISSUER" -client-id "$id" -client-secret "$secret" -mode "$mode" -concurrency 16 -duration "$dur"
done
"$tmp/authz-load" -issuer "$AUTHZ_ISSUER" -client-id "$id" -client-secret "$secret" -mode resource \
  -target "http://127.0.0.1:$rport/api/hello" -concurrency 32 -duration "$dur"
