# Two commands: `make run` (the service with demo data) and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/teleconsult
PG    := eval "$$(scripts/postgres.sh)"
export PATH := $(PATH):$(shell $(GO) env GOPATH)/bin

.PHONY: run build test lint vet fmt-check unit fuzz bench deps clean docker

build:
	$(GO) build -o $(BIN) ./cmd/teleconsult

## run: build, obtain PostgreSQL, migrate, load the demo data, serve on :8080
# The demo lets every role in with a password alone (MFA_REQUIRED_ROLES=none)
# so a newcomer can try each side at once; production keeps two-factor
# login mandatory for practitioners, pharmacists and admins.
run: build
	@$(PG) && ./$(BIN) migrate && ./$(BIN) demo && MFA_REQUIRED_ROLES=$${MFA_REQUIRED_ROLES:-none} exec ./$(BIN) serve

## docker: the image from a binary built here (static, no Go image pulled)
docker:
	rm -rf out/docker && mkdir -p out/docker/data
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o out/docker/teleconsult ./cmd/teleconsult
	cp /etc/ssl/certs/ca-certificates.crt out/docker/
	docker build --target prebuilt -t $${IMAGE:-teleconsult} .

## test: formatting, vet, the layering rule, then every test with -race
test: deps fmt-check vet lint unit fuzz

deps:
	@scripts/test-deps.sh

fmt-check:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## lint: sfu imports Pion (and what Pion needs) and the standard library only
lint:
	@bad=$$($(GO) list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' ./sfu | grep -v -E '^(github\.com/pion/|golang\.org/x/|github\.com/wlynxg/anet$$|github\.com/google/uuid$$|teleconsult/sfu$$)' || true); \
	if $(GO) list -deps ./sfu | grep -qx 'net/http'; then bad="$$bad net/http"; fi; \
	if [ -n "$$bad" ]; then echo "sfu must import only Pion and the standard library, found: $$bad"; exit 1; fi

# The media and browser packages run one at a time after the others: real
# peers and Chromium on two cores miss their deadlines when starved.
MEDIA_PKGS := ./signaling ./e2e ./loadtest ./cmd/bench ./cluster
unit:
	@$(PG) && $(GO) test -race -timeout 20m $$($(GO) list ./... | grep -v -E '/(signaling|e2e|loadtest|cmd/bench|cluster)$$') \
	  && $(GO) test -race -timeout 20m -p 1 $(MEDIA_PKGS)

## fuzz: each fuzz target of the parsers of outside input, briefly
FUZZTIME ?= 3s
fuzz:
	@$(PG) && for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## bench: measure the service on this machine -> out/bench/report.md and report.json
# PROFILE=1 also writes CPU and allocation profiles (out/bench/*.pprof).
PROFILE ?=
bench:
	@$(PG) && $(GO) run ./cmd/bench -out out/bench $(if $(PROFILE),-profile)

clean:
	rm -rf bin out
