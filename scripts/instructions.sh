#!/usr/bin/env bash
# instructions.sh [BENCH] [N]
#
# Instructions per token request, counted by callgrind: a deterministic
# measure of authz's own work where timings swing 2x on a shared machine.
# Runs tests/hotpath_bench_test.go's BENCH (default RefreshHandler) for N
# requests (default 1000) under valgrind and counts only what executes
# inside hotServe, i.e. the whole handler chain of one request (observe,
# router, client authentication, the grant on the memory store, signing,
# the access log). GC is off (GOGC=off: allocations are counted by
# allocs/op instead) and the process has one P, so a run repeats to within
# about 0.2%. Async preemption is off because callgrind cannot follow
# Go's preemption signal. Needs valgrind.
set -euo pipefail
bench=${1:-RefreshHandler}
n=${2:-1000}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/tests.test" ./tests/
ir=$(GOGC=off GOMAXPROCS=1 GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind --callgrind-out-file="$tmp/callgrind.out" \
  --toggle-collect='*tests.hotServe' "$tmp/tests.test" -test.run '^$' -test.bench "^Benchmark${bench}\$" -test.benchtime="${n}x" 2>&1 |
  awk '/Collected/ {gsub(",", "", $4); print $4}')
# The benchmark framework runs the benchmark once with b.N=1, then with N.
echo "Benchmark${bench}: $ir instructions in $((n + 1)) requests, $((ir / (n + 1))) per request"
