#!/usr/bin/env bash
# Issue 13's side-by-side run: this tree's authz against an earlier commit's
# (default fab00b9, before the two-round-trip grant operations), each
# `authz serve` on its own database of one PostgreSQL (set up with its own
# CLI), the same cmd/authz-load driving both, steps interleaved so that
# the machine's noise hits both sides alike. Ends with each ratio per
# round. Loopback only; every process started here is stopped by its PID.
#
#   scripts/with-postgres.sh --durable scripts/compare.sh [old commit]
#   COMPARE_ROUNDS=3 COMPARE_DURATION=10s COMPARE_CONCURRENCY=16 (defaults)
#   COMPARE_STEPS="old:refresh new:refresh …" (default: every target's steps)
#   COMPARE_PIN=1: PostgreSQL on the last core, the servers and the load
#   program on the others (taskset): "the database on its own cores".
set -euo pipefail
old=${1:-fab00b9}
rounds=${COMPARE_ROUNDS:-3} dur=${COMPARE_DURATION:-10s} conc=${COMPARE_CONCURRENCY:-16}
steps=${COMPARE_STEPS:-old:refresh new:refresh new:bound new:authorization_code new:bound_code old:client_credentials new:client_credentials old:introspect new:introspect}
. "$(dirname "$0")/authz-env.sh"

src="$tmp/old-src"
git worktree add -q --detach "$src" "$old"
(cd "$src" && go build -o "$tmp/authz-old" ./cmd/authz) || { git worktree remove --force "$src"; exit 1; }
git worktree remove --force "$src"

base=${AUTHZ_TEST_DATABASE_URL%%\?*}; base=${base%/*}
psql "$AUTHZ_TEST_DATABASE_URL" -qAt -c "CREATE DATABASE authz_old" >/dev/null
export AUTHZ_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | base64) AUTHZ_SCOPES=read AUTHZ_LOG_LEVEL=${AUTHZ_LOG_LEVEL:-warn}
export AUTHZ_LOAD_PASSWORD=$(head -c 18 /dev/urandom | base64) AUTHZ_LOAD_DATABASE_URL="$AUTHZ_TEST_DATABASE_URL"
export AUTHZ_RESOURCES="http://127.0.0.1:9/api"

# side WHO BIN DATABASE: migrate, create the load user and clients with
# that side's own CLI, start its server; sets WHO_{PID,ARGS,CC,CODE}.
side() {
  local who=$1 bin=$2 db=$3 port cc code
  port=$(free_port)
  export AUTHZ_DATABASE_URL=$db AUTHZ_ISSUER="http://127.0.0.1:$port"
  "$bin" migrate >/dev/null
  cc=$("$bin" client create --name load-service --grant-type client_credentials --scope read --json)
  code=$("$bin" client create --name load-app --redirect-uri http://127.0.0.1/callback --scope read --json)
  "$bin" user create load --password-stdin <<<"$AUTHZ_LOAD_PASSWORD" >/dev/null
  AUTHZ_ADDR=127.0.0.1:$port AUTHZ_ADMIN_ADDR= "${pin[@]}" "$bin" serve >"$tmp/$who.log" 2>&1 &
  pids+=($!)
  printf -v "${who}_PID" %s "$!"
  printf -v "${who}_ARGS" %s "-issuer http://127.0.0.1:$port -client-id $(json_field client_id <<<"$cc") -code-client-id $(json_field client_id <<<"$code")"
  printf -v "${who}_CC" %s "$(json_field client_secret <<<"$cc")"
  printf -v "${who}_CODE" %s "$(json_field client_secret <<<"$code")"
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "compare: the $who server did not become ready:" >&2; cat "$tmp/$who.log" >&2; return 1
}
pin=()
if [ -n "${COMPARE_PIN:-}" ]; then
  last=$(( $(nproc) - 1 ))
  pin=(taskset -c "0-$(( last - 1 ))")
  # The postmaster's children inherit its affinity; pin those already running too.
  for p in "$AUTHZ_TEST_PG_PID" $(pgrep -P "$AUTHZ_TEST_PG_PID"); do taskset -p -c "$last" "$p" >/dev/null; done
  echo "pinned: PostgreSQL on core $last, servers and load program on cores 0-$(( last - 1 ))"
fi
side new "$tmp/authz" "$AUTHZ_TEST_DATABASE_URL"
side old "$tmp/authz-old" "$base/authz_old?sslmode=disable"

machine
echo "old: $old ($(git log -1 --format=%cs "$old")); new: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with uncommitted changes'); $rounds rounds of $dur per step at concurrency $conc; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
{
for r in $(seq "$rounds"); do
  for step in $steps; do
    who=${step%%:*} mode=${step#*:}
    pid=${who}_PID args=${who}_ARGS ccs=${who}_CC codes=${who}_CODE
    # shellcheck disable=SC2086
    AUTHZ_LOAD_CLIENT_SECRET=${!ccs} AUTHZ_LOAD_CODE_CLIENT_SECRET=${!codes} "${pin[@]}" "$tmp/authz-load" ${!args} -username load \
      -pg-pid "$AUTHZ_TEST_PG_PID" -server-pid "${!pid}" -mode "$mode" -concurrency "$conc" -duration "$dur" \
      | { if [ "$r$step" = "1${steps%% *}" ]; then cat; else grep -v '^postgres: '; fi; } | sed "s/^mode=/round=$r $who mode=/"
  done
done
} | tee "$tmp/out"
echo "RSS peak (VmHWM): old $(awk '/VmHWM/{print $2" "$3}' /proc/$old_PID/status), new $(awk '/VmHWM/{print $2" "$3}' /proc/$new_PID/status)"

awk '
  /^round=/ { split($1, a, "="); r = a[2]; who = $2; split($3, m, "="); x = $0; sub(/.*rate=/, "", x); sub(/\/s.*/, "", x)
              rate[r, who, m[2]] = x; rounds[r] = 1 }
  function ratio(num, den) { return den > 0 ? sprintf("%.2f", num / den) : "-" }
  END {
    print "ratios per round (same run):"
    for (r in rounds)
      printf "  round %s: refresh new/old %s, refresh/bound %s, authorization_code/bound_code %s, client_credentials new/old %s, introspect new/old %s\n", r,
        ratio(rate[r, "new", "refresh"], rate[r, "old", "refresh"]), ratio(rate[r, "new", "refresh"], rate[r, "new", "bound"]),
        ratio(rate[r, "new", "authorization_code"], rate[r, "new", "bound_code"]),
        ratio(rate[r, "new", "client_credentials"], rate[r, "old", "client_credentials"]), ratio(rate[r, "new", "introspect"], rate[r, "old", "introspect"])
  }' "$tmp/out"
