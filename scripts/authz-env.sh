# Sourced by scripts/load.sh and scripts/soak.sh: builds the binaries,
# prepares a database with a user and two clients, and starts processes
# that are stopped by their PIDs when the calling script exits. Loopback
# only. Needs AUTHZ_TEST_DATABASE_URL (scripts/with-postgres.sh sets it).
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
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# setup_db ISSUER RESOURCES: migrate, create the load user and clients, and
# export what authz-load reads (secrets through the environment, never argv).
setup_db() {
  export AUTHZ_DATABASE_URL="$AUTHZ_TEST_DATABASE_URL" AUTHZ_ISSUER="$1" AUTHZ_RESOURCES="$2"
  export AUTHZ_ENCRYPTION_KEY=${AUTHZ_ENCRYPTION_KEY:-$(head -c 32 /dev/urandom | base64)}
  export AUTHZ_SCOPES="read" AUTHZ_LOG_LEVEL=${AUTHZ_LOG_LEVEL:-warn}
  "$tmp/authz" migrate >/dev/null
  local cc code
  cc=$("$tmp/authz" client create --name load-service --grant-type client_credentials --scope read --json)
  code=$("$tmp/authz" client create --name load-app --redirect-uri http://127.0.0.1/callback --scope read --json)
  CC_ID=$(json_field client_id <<<"$cc"); CODE_ID=$(json_field client_id <<<"$code")
  export AUTHZ_LOAD_CLIENT_SECRET=$(json_field client_secret <<<"$cc")
  export AUTHZ_LOAD_CODE_CLIENT_SECRET=$(json_field client_secret <<<"$code")
  export AUTHZ_LOAD_PASSWORD=$(head -c 18 /dev/urandom | base64)
  "$tmp/authz" user create load --password-stdin <<<"$AUTHZ_LOAD_PASSWORD" >/dev/null
  export AUTHZ_LOAD_DATABASE_URL="$AUTHZ_TEST_DATABASE_URL"
  LOAD_ARGS=(-issuer "$1" -client-id "$CC_ID" -code-client-id "$CODE_ID" -username load)
  [ -n "${AUTHZ_TEST_PG_PID:-}" ] && LOAD_ARGS+=(-pg-pid "$AUTHZ_TEST_PG_PID")
  return 0
}

# start_authz ADDR LOG: one `authz serve` on ADDR; sets AUTHZ_PID.
start_authz() {
  AUTHZ_ADDR="$1" AUTHZ_ADMIN_ADDR="${AUTHZ_ADMIN_ADDR:-}" "$tmp/authz" serve >"$2" 2>&1 &
  AUTHZ_PID=$!
  pids+=("$AUTHZ_PID")
  for _ in $(seq 100); do curl -fsS "http://$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "authz on $1 did not become ready:" >&2; cat "$2" >&2; return 1
}

machine() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, $(go version | cut -d' ' -f3)"
}
