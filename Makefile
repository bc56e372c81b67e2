# authz — see README.md.
GO        ?= go
BIN       := bin/authz
PKGS      := ./...
# Every test runs against a real PostgreSQL: AUTHZ_TEST_DATABASE_URL when set,
# otherwise a throwaway server that scripts/with-postgres.sh starts and stops.
WITH_PG   := scripts/with-postgres.sh
TESTFLAGS ?= -race -count=1 -timeout 15m
# make test runs on a fast, non-durable PostgreSQL; bench, load and soak on
# a durable one (fsync, synchronous_commit on) unless told otherwise, e.g.
# `make bench BENCH_PG=` (README, Benchmarks).
BENCH_PG  ?= --durable
LOAD_DURATION ?= 5s
SOAK_DURATION ?= 10m
STATICCHECK := v0.8.2

.PHONY: build run test lint bench load soak compare clean

build:
	$(GO) build -ldflags "-X main.commit=$$(git rev-parse HEAD 2>/dev/null)" -o $(BIN) ./cmd/authz

run: build
	$(BIN) serve --dev

test:
	scripts/ensure-chromium.sh
	scripts/ensure-node-deps.sh
	AUTHZ_TEST_REQUIRE_POSTGRES=1 AUTHZ_TEST_REQUIRE_BROWSER=1 AUTHZ_TEST_REQUIRE_NODE=1 $(WITH_PG) $(GO) test $(TESTFLAGS) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files --others --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) $(PKGS)

bench:
	AUTHZ_TEST_REQUIRE_POSTGRES=1 $(WITH_PG) $(BENCH_PG) $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 20m $(PKGS)

# A bounded loopback load run: authz on PostgreSQL, the example resource
# server, and cmd/authz-load in every mode at concurrency 1,4,16,64
# (scripts/load.sh; LOAD_DURATION per level, LOAD_MODES, LOAD_CONCURRENCY).
load:
	$(WITH_PG) $(BENCH_PG) scripts/load.sh $(LOAD_DURATION)

# Two authz replicas on one PostgreSQL under mixed traffic for
# SOAK_DURATION, with `authz keys rotate` halfway; fails on any 5xx, lost
# grant or dead replica (scripts/soak.sh).
soak:
	$(WITH_PG) $(BENCH_PG) scripts/soak.sh $(SOAK_DURATION)

# Issue 13's side-by-side run: this tree against COMPARE_OLD (default
# fab00b9, before the two-round-trip grant operations), steps interleaved,
# ratios per round (scripts/compare.sh; COMPARE_ROUNDS, COMPARE_DURATION).
COMPARE_OLD ?= fab00b9
compare:
	$(WITH_PG) $(BENCH_PG) scripts/compare.sh $(COMPARE_OLD)

clean:
	rm -rf bin
