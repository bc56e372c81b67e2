#!/bin/sh
# ensure-node-deps.sh: the JavaScript client tests (tests/jsclients_test.go)
# run the MCP SDK and oauth4webapi at the exact versions pinned in
# tests/js/package-lock.json. Install them (npm ci) when tests/js/node_modules
# is missing or does not match the lock file; install Debian's nodejs and npm
# first when node is missing and we are root. Otherwise say how, and let
# the tests fail under make test (AUTHZ_TEST_REQUIRE_NODE=1).
set -eu
dir="$(cd "$(dirname "$0")/../tests/js" && pwd)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "ensure-node-deps: installing nodejs and npm (apt-get)" >&2
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
	else
		echo "ensure-node-deps: node or npm is missing; install them (apt-get install nodejs npm) or the JavaScript client tests fail" >&2
		exit 0
	fi
fi

# npm ci records what it installed in node_modules/.package-lock.json: the
# lock file's packages, without its root entry (and without optional ones
# this platform skipped). Same versions and integrity, package for
# package, means node_modules is current.
current() {
	[ -f "$dir/node_modules/.package-lock.json" ] || return 1
	node -e '
		const [lock, installed] = process.argv.slice(1).map((f) => require(f).packages);
		delete lock[""];
		const same = (a, b) => a.version === b?.version && a.integrity === b?.integrity;
		const ok = Object.keys(installed).every((k) => k in lock) &&
			Object.entries(lock).every(([k, v]) => same(v, installed[k]) || (v.optional && !(k in installed)));
		process.exit(ok ? 0 : 1);
	' "$dir/package-lock.json" "$dir/node_modules/.package-lock.json"
}
current && exit 0
echo "ensure-node-deps: npm ci in tests/js" >&2
cd "$dir"
npm ci --no-audit --no-fund --loglevel=error >&2
