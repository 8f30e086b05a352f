# connaudit build, run and test entry points. CI runs `make test` through .ci/run.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
VICTORIALOGS_VERSION := v1.52.1
PREFIX ?= /usr/local

.PHONY: all build generate run test fuzz bench bench-smoke bench-micro bench-query bench-advise install k8s-bins node-bins node-images node-up node-down image image-victorialogs image-docker clean

all: build

build: $(BIN)/connaudit $(BIN)/connaudit-agent $(BIN)/otelcol-connaudit $(BIN)/victoria-logs

# Static (CGO_ENABLED=0), as the Dockerfile builds them: the images have no libc.
# The CLI and the agent are two binaries: the agent links none of the CLI's
# kubectl, kustomize and cli-runtime code.
$(BIN)/connaudit: FORCE
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/connaudit

$(BIN)/connaudit-agent: FORCE
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $@ ./cmd/connaudit-agent

$(BIN)/otelcol-connaudit: FORCE
	cd otel-collector && CGO_ENABLED=0 $(GO) build -o ../$@ .

$(BIN)/victoria-logs:
	CGO_ENABLED=0 GOBIN=$(CURDIR)/$(BIN) $(GO) install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@$(VICTORIALOGS_VERSION)

# kube-apiserver, etcd and kubectl, built from Go module source and cached (a cold build takes ~13 minutes).
k8s-bins: $(BIN)/k8s/kube-apiserver $(BIN)/k8s/etcd $(BIN)/k8s/kubectl

$(BIN)/k8s/kube-apiserver $(BIN)/k8s/etcd $(BIN)/k8s/kubectl &:
	hack/build-k8s-bins.sh $(CURDIR)/$(BIN)/k8s

# What a real node runs besides the control plane (internal/kubenode):
# kubelet, kube-controller-manager, kube-scheduler, kube-proxy, containerd
# with its runc shim and ctr, CoreDNS and kube-router (NetworkPolicy
# controller only), built from Go module source and
# cached; runc and the CNI plugins come from Debian (see .ci/run).
NODE_BINS := kubelet kube-controller-manager kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr coredns kube-router
node-bins: $(addprefix $(BIN)/node/,$(NODE_BINS))

$(addprefix $(BIN)/node/,$(NODE_BINS)) &:
	hack/build-node-bins.sh $(CURDIR)/$(BIN)/node

# The node's sandbox image (this host cannot pull registry.k8s.io/pause).
node-images: $(BIN)/images/pause.tar

$(BIN)/images/pause.tar: $(BIN)/ociimage internal/kubenode/pause/main.go internal/kubenode/pause/Dockerfile
	CGO_ENABLED=0 $(GO) build -o $(BIN)/node/pause ./internal/kubenode/pause
	$(BIN)/ociimage -f internal/kubenode/pause/Dockerfile -context $(BIN)/node -target pause -t registry.k8s.io/pause:3.10.1 -o $@

# A real single-node cluster on this host (README.md "Try it on one node"),
# left running; node-down removes everything it made.
node-up: k8s-bins node-bins node-images
	$(GO) run ./hack/kubenode up -k8s-bin $(BIN)/k8s -node-bin $(BIN)/node -pause $(BIN)/images/pause.tar

node-down:
	$(GO) run ./hack/kubenode down

# The images of k8s/deploy, one Dockerfile target each, as OCI archives under
# bin/images/ (for ctr -n k8s.io images import, docker load, kind load
# image-archive, minikube image load, skopeo or crane; see README.md). No
# container engine is needed: hack/ociimage assembles each image from the
# Dockerfile's instructions and the binaries `make build` made.
# k8s/deploy/base/kustomization.yaml names the same images; tag a release with
# `make image VERSION=v0.1.0` and point the kustomization at your registry.
IMAGE_REGISTRY ?= ghcr.io/connaudit
# The upstream image k8s/deploy runs; image-victorialogs builds its equivalent
# from bin/victoria-logs, for a node that cannot pull it.
VICTORIALOGS_IMAGE := victoriametrics/victoria-logs:$(VICTORIALOGS_VERSION)
OCIIMAGE = $(BIN)/ociimage -f Dockerfile -context $(CURDIR)

image: $(BIN)/connaudit-agent $(BIN)/otelcol-connaudit $(BIN)/ociimage
	$(OCIIMAGE) -target agent --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/connaudit:$(VERSION) -o $(BIN)/images/connaudit.tar
	$(OCIIMAGE) -target collector --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/otelcol-connaudit:$(VERSION) -o $(BIN)/images/otelcol-connaudit.tar

image-victorialogs: $(BIN)/victoria-logs $(BIN)/ociimage
	$(OCIIMAGE) -target victorialogs -t $(VICTORIALOGS_IMAGE) -o $(BIN)/images/victoria-logs.tar

# The same images with a Docker engine.
image-docker:
	docker build --target agent --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/connaudit:$(VERSION) .
	docker build --target collector --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/otelcol-connaudit:$(VERSION) .
	docker build --target victorialogs -t $(VICTORIALOGS_IMAGE) .

$(BIN)/ociimage: FORCE
	$(GO) -C hack/ociimage build -o $(CURDIR)/$@ .

# Regenerates the committed eBPF objects and Go bindings. Needs clang, llvm, libbpf-dev and bpftool.
generate:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h
	$(GO) generate ./bpf/... ./dns/capture/...

run: build
	hack/run-local.sh

# -p 1: the packages share one kernel, and a test that counts ring buffer
# losses exactly must not see another package's connect storm.
test: build k8s-bins node-bins
	$(GO) vet ./...
	$(GO) test -p 1 -count=1 -timeout 40m ./...
	# The collector fault tests again against the cluster's default gateway
	# mode, end-to-end acknowledgement (README.md, Delivery guarantees).
	CONNAUDIT_TEST_COLLECTOR_CONFIG=otel-collector/config-ack.yaml $(GO) test -count=1 -timeout 20m \
		-run 'TestFault(CollectorDown60s|CollectorKill9|CollectorKill9UnderLoad|VictoriaLogsDown|VictoriaLogsHangs|SpoolDiskFull)$$' ./e2e/
	cd otel-collector && $(GO) vet ./... && $(GO) test -count=1 ./...
	$(GO) -C hack/ociimage vet ./... && $(GO) -C hack/ociimage test -count=1 ./...
	$(MAKE) fuzz

# A short run of each fuzz target beyond its committed seed corpus. The budget
# is a count of executions, not a duration: a duration races the fuzz
# coordinator's own deadline in go1.26 and fails with "context deadline
# exceeded" without any failing input (go.dev/issue/75804, fixed in go1.27).
FUZZTIME ?= 100000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./bpf/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./shipper/
	$(GO) test -run '^$$' -fuzz '^FuzzReadLogRecord$$' -fuzztime $(FUZZTIME) ./shipper/otlp/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeSegment$$' -fuzztime $(FUZZTIME) ./shipper/spool/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./k8s/cgroup/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./dns/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRow$$' -fuzztime $(FUZZTIME) ./backend/victorialogs/

# The performance report against the budget (see bench/report.md; its last
# full run took 5m55s, as its header says), bounded; BENCH_FIGURES=overhead,rates,capacity
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

# The query side on 1,000,000 records (see README.md, Performance); not part of `make test`.
bench-query: build
	$(GO) test -run '^$$' -bench . -benchtime 10x -timeout 30m ./e2e/querybench/ | tee bin/bench-query.txt

bench-advise: build
	$(GO) test -run '^$$' -bench . -benchtime 5x -timeout 30m ./e2e/advisebench/ | tee bin/bench-advise.txt

# bin/connaudit, the kubectl-connaudit link that makes `kubectl connaudit`
# work, kubectl_complete-connaudit, which kubectl (1.26 and later) runs to
# complete `kubectl connaudit ...` on the command line, and bin/connaudit-agent.
install: $(BIN)/connaudit $(BIN)/connaudit-agent
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/connaudit $(DESTDIR)$(PREFIX)/bin/connaudit
	install -m 0755 $(BIN)/connaudit-agent $(DESTDIR)$(PREFIX)/bin/connaudit-agent
	ln -sfn connaudit $(DESTDIR)$(PREFIX)/bin/kubectl-connaudit
	printf '#!/bin/sh\nexec "%s/bin/connaudit" __complete "$$@"\n' '$(PREFIX)' > $(DESTDIR)$(PREFIX)/bin/kubectl_complete-connaudit
	chmod 0755 $(DESTDIR)$(PREFIX)/bin/kubectl_complete-connaudit

clean:
	rm -rf $(BIN)

FORCE:
