# syntax=docker/dockerfile:1
# connaudit images, one target each:
#
#   agent         ghcr.io/connaudit/connaudit           the node agent (k8s/deploy DaemonSet)
#   collector     ghcr.io/connaudit/otelcol-connaudit   the collector gateway (StatefulSet)
#   victorialogs  victoriametrics/victoria-logs         the upstream image's equivalent (same
#                                                       name, tag, entrypoint), for a node that
#                                                       cannot pull it; k8s/deploy runs upstream's
#
# `make image` (and `make image-victorialogs`) build them from this file
# without a container engine (hack/ociimage: the image stages only COPY onto
# scratch, and the files they copy are what `make build` made);
# `make image-docker` builds them with `docker build`.
#
# Each binary is built by the same Makefile target CI runs, statically
# (CGO_ENABLED=0; the eBPF objects are committed, so no clang is needed), and
# copied onto an empty base with only CA certificates: no shell, no package
# manager, nothing to pin but the build image.
# e2e/deploy/images_test.go checks that every path and target named here exists.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
COPY otel-collector/go.mod otel-collector/go.sum otel-collector/
RUN go mod download && cd otel-collector && go mod download
COPY . .
ARG VERSION=dev

FROM build AS build-agent
RUN make bin/connaudit-agent VERSION=${VERSION}

FROM build AS build-collector
RUN make bin/otelcol-connaudit

FROM build AS build-victorialogs
RUN make bin/victoria-logs

# The root of every image: CA certificates (the collector's exporters and the
# agent's OTLP client verify TLS with them), and nothing else.
FROM scratch AS base
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt

FROM base AS agent
ARG VERSION=dev
LABEL org.opencontainers.image.title="connaudit" \
      org.opencontainers.image.description="Audit trail of every TCP connect attempt on a Kubernetes node (eBPF agent)" \
      org.opencontainers.image.source="https://github.com/connaudit/connaudit" \
      org.opencontainers.image.version="${VERSION}"
# The agent's own binary, without the CLI's kubectl dependencies (the
# connaudit CLI is not in the image). `connaudit-agent unpin` and
# `connaudit-agent version` run in the container too.
COPY --from=build-agent /src/bin/connaudit-agent /usr/local/bin/connaudit-agent
# Runs as uid 0 with CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE only; see
# k8s/deploy/base/agent-daemonset.yaml.
USER 0:0
ENTRYPOINT ["/usr/local/bin/connaudit-agent"]

FROM base AS collector
ARG VERSION=dev
LABEL org.opencontainers.image.title="otelcol-connaudit" \
      org.opencontainers.image.description="connaudit's OpenTelemetry Collector distribution (gateway with a persistent queue)" \
      org.opencontainers.image.source="https://github.com/connaudit/connaudit" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build-collector /src/bin/otelcol-connaudit /usr/local/bin/otelcol-connaudit
COPY otel-collector/config.yaml /etc/otelcol-connaudit/config.yaml
USER 10001:10001
EXPOSE 4317 4318 13133 8888
ENTRYPOINT ["/usr/local/bin/otelcol-connaudit"]
CMD ["--config=/etc/otelcol-connaudit/config.yaml"]

# Laid out as victoriametrics/victoria-logs is: the binary at
# /victoria-logs-prod, its entrypoint; no USER (the manifests set 10001).
FROM base AS victorialogs
LABEL org.opencontainers.image.title="victoria-logs" \
      org.opencontainers.image.description="VictoriaLogs v1.52.1 built from source, equivalent to victoriametrics/victoria-logs:v1.52.1" \
      org.opencontainers.image.source="https://github.com/VictoriaMetrics/VictoriaLogs" \
      org.opencontainers.image.version="v1.52.1"
COPY --from=build-victorialogs /src/bin/victoria-logs /victoria-logs-prod
EXPOSE 9428
ENTRYPOINT ["/victoria-logs-prod"]
