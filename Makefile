# authz — see README.md.
GO        ?= go
BIN       := bin/authz
PKGS      := ./...
# Every test runs against a real PostgreSQL: AUTHZ_TEST_DATABASE_URL when set,
# otherwise a throwaway server that scripts/with-postgres.sh starts and stops.
WITH_PG   := scripts/with-postgres.sh
TESTFLAGS ?= -race -count=1 -timeout 15m
STATICCHECK := v0.8.2

.PHONY: build run test lint bench load clean

build:
	$(GO) build -o $(BIN) ./cmd/authz

run: build
	$(BIN) serve --dev

test:
	AUTHZ_TEST_REQUIRE_POSTGRES=1 $(WITH_PG) $(GO) test $(TESTFLAGS) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files --others --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK) $(PKGS)

bench:
	AUTHZ_TEST_REQUIRE_POSTGRES=1 $(WITH_PG) $(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 20m $(PKGS)

# A bounded loopback load run: authz on PostgreSQL, the example resource
# server, and cmd/authz-load against each (scripts/load.sh).
load:
	$(WITH_PG) scripts/load.sh 10s

clean:
	rm -rf bin
