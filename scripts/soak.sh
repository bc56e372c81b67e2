#!/usr/bin/env bash
# Soak: two `authz serve` replicas on one PostgreSQL, loopback only, under
# mixed traffic from cmd/authz-load -mode mixed (authorization code through
# the login and consent pages, refresh chains, pairs refreshing one token at
# once, client_credentials, introspection and revocation checked across the
# replicas) for a bounded time, with `authz keys rotate` halfway. It stops
# by itself, stops what it started by PID, and exits non-zero on any 5xx,
# request without an answer, failed check, grant lost, dead replica or
# panic in a replica's log.
#
#   scripts/with-postgres.sh --durable scripts/soak.sh [duration]   # make soak; default 10m
#   SOAK_CONCURRENCY=12 SOAK_JANITOR_INTERVAL=30s ...
set -euo pipefail
dur=${1:-${SOAK_DURATION:-10m}}
conc=${SOAK_CONCURRENCY:-12}
# Short enough that a soak of a few minutes sees several janitor ticks.
export AUTHZ_JANITOR_INTERVAL=${SOAK_JANITOR_INTERVAL:-30s}
. "$(dirname "$0")/authz-env.sh"

seconds() {
  case "$1" in
    *h) echo $(( ${1%h} * 3600 )) ;; *m) echo $(( ${1%m} * 60 )) ;; *s) echo "${1%s}" ;; *) echo "$1" ;;
  esac
}
secs=$(seconds "$dur")

aport=$(free_port); bport=$(free_port)
setup_db "http://127.0.0.1:$aport" "http://127.0.0.1:$aport/api"
start_authz "127.0.0.1:$aport" "$tmp/a.log"; apid=$AUTHZ_PID
start_authz "127.0.0.1:$bport" "$tmp/b.log"; bpid=$AUTHZ_PID

machine
echo "soak: $dur, $conc clients, replicas A=127.0.0.1:$aport (pid $apid) and B=127.0.0.1:$bport (pid $bpid), janitor interval $AUTHZ_JANITOR_INTERVAL, keys rotate after $((secs / 2))s"
( sleep $((secs / 2)); if "$tmp/authz" keys rotate >"$tmp/rotate.log" 2>&1; then echo ok; else echo FAILED; fi >"$tmp/rotate.status" ) &
pids+=($!)

status=0
"$tmp/authz-load" "${LOAD_ARGS[@]}" -mode mixed -replicas "http://127.0.0.1:$aport,http://127.0.0.1:$bport" \
  -server-pid "$apid,$bpid" -concurrency "$conc" -duration "$dur" || status=1

echo "soak: keys rotate: $(cat "$tmp/rotate.status" 2>/dev/null || echo 'did not run')"
[ "$(cat "$tmp/rotate.status" 2>/dev/null)" = ok ] || { cat "$tmp/rotate.log" >&2 2>/dev/null || true; status=1; }
for r in "A $apid $tmp/a.log" "B $bpid $tmp/b.log"; do
  set -- $r
  if kill -0 "$2" 2>/dev/null; then
    echo "soak: replica $1 alive, $(awk '/^VmRSS|^VmHWM/{printf "%s %.1f MiB ", $1, $2/1024}' "/proc/$2/status")"
  else
    echo "soak: replica $1 (pid $2) DIED"; status=1
  fi
  if grep -qi 'panic' "$3"; then
    echo "soak: replica $1 logged a panic:"; grep -i -m3 -A3 'panic' "$3" | cut -c1-300; status=1
  fi
  echo "soak: replica $1 log: $(grep -c 'level=ERROR' "$3" || true) ERROR lines, $(grep -c 'level=WARN' "$3" || true) WARN lines"
done
[ $status = 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit $status
