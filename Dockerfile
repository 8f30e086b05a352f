# connaudit agent image. The build runs the same Makefile target CI exercises
# (the eBPF objects are committed, so no clang is needed).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 make bin/connaudit VERSION=${VERSION}

FROM gcr.io/distroless/static-debian12
COPY --from=build /src/bin/connaudit /usr/local/bin/connaudit
# The agent needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (or privileged), hostPID
# for /proc executable paths, and a hostPath for CONNAUDIT_SPOOL_DIR.
ENTRYPOINT ["/usr/local/bin/connaudit", "agent"]
