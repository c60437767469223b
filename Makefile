# Gavel build entry points. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin

BUF_VERSION := v1.50.0
PROTOC_GEN_GO_VERSION := v1.36.10
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

TEST_TIMEOUT ?= 14m
PKGS ?= ./...

.PHONY: all build test test-short lint proto proto-check run bench rootfs tools clean chaos

all: build

## build: static binaries (CGO_ENABLED=0): gavel-keeper also runs inside containers
## as their init, where the rootfs may have no C library.
## The commit is stamped into the binaries (gavel version) wherever git is there,
## even when the environment's GOFLAGS says -buildvcs=false.
build: export CGO_ENABLED := 0
build: export GOFLAGS := -buildvcs=auto
build:
	$(GO) build -o $(BIN)/ ./cmd/...

## test: the whole suite with the race detector (what CI runs).
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

## chaos: the HA scenarios (integration TestHAEtcdFaults: a 3-member etcd cluster of
## separate processes, two BBS replicas, auctioneer, cells under a recorded write load;
## kill a follower, kill the leader, SIGSTOP the leader, restart two members, fill the
## quota) CHAOS_ROUNDS times; each scenario's figures are logged as "HA scenario=...".
CHAOS_ROUNDS ?= 3
chaos:
	set -o pipefail; CHAOS_ROUNDS=$(CHAOS_ROUNDS) $(GO) test -race -count=1 -timeout 60m -v -run '^TestHAEtcdFaults$$' ./integration/ 2>&1 | tee $(BIN)/chaos.log | grep -E '^(---|===|ok|FAIL|PASS)|HA |fill-quota'

## lint: formatting, vet and the proto lint.
lint: $(BIN)/buf
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^proto/gen/')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	cd proto && $(BIN)/buf lint

## proto: regenerate proto/gen with the pinned tools.
proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	cd proto && $(BIN)/buf lint
	rm -rf proto/gen
	cd proto && $(BIN)/buf generate

## proto-check: fail when the committed generated code is stale.
proto-check: proto
	@git diff --exit-code --stat -- proto/gen || { echo "proto/gen is stale: run make proto and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto/gen)" || { echo "proto/gen has untracked files: run make proto and commit"; git status --porcelain -- proto/gen; exit 1; }

## run: start the whole of Gavel on this machine (gavel dev: etcd, NATS, BBS, auctioneer, 3 cells, route emitter).
run: build
	$(BIN)/gavel dev

## bench: the scale benchmark (gavel bench; default 100,000 instances on 1,000 simulated cells).
## BENCH_FLAGS adds flags (e.g. BENCH_FLAGS='--kill-cells 10%'); results go to BENCH_OUT.
## The Go micro-benchmarks: go test -run '^$$' -bench . -benchmem ./...
BENCH_OUT ?= $(BIN)/bench
BENCH_FLAGS ?=
bench: build
	@mkdir -p $(BENCH_OUT)
	$(BIN)/gavel bench --bin-dir $(BIN) --out $(BENCH_OUT)/result.json --svg $(BENCH_OUT)/running.svg $(BENCH_FLAGS)

## rootfs: a minimal busybox rootfs for the runc backend (needs busybox-static) in bin/rootfs/busybox.
rootfs: build
	$(BIN)/gavel rootfs busybox $(BIN)/rootfs/busybox

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

$(BIN)/buf:
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

clean:
	rm -rf $(BIN)
