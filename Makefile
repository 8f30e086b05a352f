# connaudit build, run and test entry points. CI runs `make test` through .ci/run.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
VICTORIALOGS_VERSION := v1.52.1

.PHONY: all build generate run test fuzz bench bench-smoke bench-micro k8s-bins clean

all: build

build: $(BIN)/connaudit $(BIN)/otelcol-connaudit $(BIN)/victoria-logs

$(BIN)/connaudit: FORCE
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/connaudit

$(BIN)/otelcol-connaudit: FORCE
	cd otel-collector && $(GO) build -o ../$@ .

$(BIN)/victoria-logs:
	GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$(VICTORIALOGS_VERSION)

# kube-apiserver and etcd, built from Go module source and cached (a cold build takes ~10 minutes).
k8s-bins: $(BIN)/k8s/kube-apiserver $(BIN)/k8s/etcd

$(BIN)/k8s/kube-apiserver $(BIN)/k8s/etcd &:
	hack/build-k8s-bins.sh $(CURDIR)/$(BIN)/k8s

# Regenerates the committed eBPF objects and Go bindings. Needs clang, llvm, libbpf-dev and bpftool.
generate:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h
	$(GO) generate ./bpf/...

run: build
	hack/run-local.sh

# -p 1: the packages share one kernel, and a test that counts ring buffer
# losses exactly must not see another package's connect storm.
test: build k8s-bins
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 40m ./...
	cd otel-collector && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(MAKE) fuzz

# A short run of each fuzz target beyond its committed seed corpus.
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./bpf/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./shipper/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSegment$$' -fuzztime $(FUZZTIME) ./shipper/spool/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./k8s/cgroup/

# The performance report against the budget (see bench/report.md): about 20
# minutes on the real stack, bounded; BENCH_FIGURES=overhead,rates,capacity
# runs only some groups. Then the microbenchmarks, five times each, for benchstat.
BENCH_FIGURES ?=
bench: build k8s-bins
	BENCH_FULL=1 BENCH_OUT=$(CURDIR)/bench BENCH_FIGURES=$(BENCH_FIGURES) $(GO) test -count=1 -timeout 60m -run '^TestReport$$' -v ./bench/
	hack/readme-performance.sh
	$(MAKE) bench-micro

# The same steps, tiny (under two minutes), asserting only that the report is
# produced; `make test` runs it too, as part of ./...
bench-smoke: build k8s-bins
	BENCH_OUT=$(CURDIR)/bin/bench-smoke $(GO) test -count=1 -timeout 10m -run '^TestReport$$' -v ./bench/

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./bpf/ ./k8s/ ./agent/ ./shipper/... | tee bin/bench.txt

clean:
	rm -rf $(BIN)

FORCE:
