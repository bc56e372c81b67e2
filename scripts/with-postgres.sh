#!/usr/bin/env bash
# with-postgres.sh [--durable] CMD [ARGS...]
#
# Runs CMD with AUTHZ_TEST_DATABASE_URL pointing at a PostgreSQL server.
# When AUTHZ_TEST_DATABASE_URL is already set, CMD runs against it as is.
# Otherwise a throwaway server is created with initdb in a temporary
# directory, on a free loopback port, and removed when CMD ends. Works as
# root (the server runs as an unprivileged user) and as a normal user, and
# finds the binaries of a Debian install when they are not on PATH.
#
# By default the throwaway server is NOT durable (fsync, synchronous_commit
# and full_page_writes off): `make test` wants speed, not crash safety.
# --durable keeps PostgreSQL's durable defaults (fsync=on,
# synchronous_commit=on, full_page_writes=on), as a production server runs:
# `make bench`, `make load` and `make soak` use it, because commit latency
# is most of a grant operation's cost. Either way the settings are printed,
# and AUTHZ_TEST_PG_PID is the postmaster's PID (for CPU accounting).
set -euo pipefail

durable=""
if [ "${1:-}" = "--durable" ]; then
  durable=1
  shift
fi

if [ -n "${AUTHZ_TEST_DATABASE_URL:-}" ]; then
  [ -n "$durable" ] && echo "with-postgres: using AUTHZ_TEST_DATABASE_URL as is (--durable applies only to a throwaway server)" >&2
  exec "$@"
fi

find_pg_bin() {
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
    return
  fi
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir
    return
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/pgsql/bin /opt/homebrew/bin /usr/local/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  done
  echo "with-postgres: no PostgreSQL server binaries found (install postgresql, or set AUTHZ_TEST_DATABASE_URL)" >&2
  exit 1
}
PGBIN=$(find_pg_bin)

dir=$(mktemp -d "${TMPDIR:-/tmp}/authz-pg.XXXXXX")
chmod 755 "$dir"
run_as=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root: use an unprivileged account.
  user=postgres
  id "$user" >/dev/null 2>&1 || user=nobody
  chown "$user" "$dir"
  if command -v runuser >/dev/null 2>&1; then
    run_as=(runuser -u "$user" --)
  else
    run_as=(setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups)
  fi
fi

cleanup() {
  "${run_as[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"${run_as[@]}" "$PGBIN/initdb" -D "$dir/data" -U authz --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2; exit 1; }

if [ -n "$durable" ]; then
  settings="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
else
  # A throwaway test cluster trades durability for speed.
  settings="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=""
for _ in $(seq 1 20); do
  port=$(( 20000 + RANDOM % 30000 ))
  port_free "$port" || continue
  if "${run_as[@]}" "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 $settings -c max_connections=400" \
      start >/dev/null 2>&1; then
    started=1; break
  fi
done
if [ -z "$started" ]; then
  echo "with-postgres: could not start PostgreSQL:" >&2
  cat "$dir/server.log" >&2 || true
  exit 1
fi

export AUTHZ_TEST_DATABASE_URL="postgres://authz@127.0.0.1:$port/postgres?sslmode=disable"
AUTHZ_TEST_PG_PID=$(head -n1 "$dir/data/postmaster.pid")
export AUTHZ_TEST_PG_PID
echo "with-postgres: throwaway PostgreSQL on 127.0.0.1:$port ($PGBIN), $([ -n "$durable" ] && echo durable || echo NOT durable): ${settings//-c /}" >&2
set +e
"$@"
status=$?
set -e
exit $status
