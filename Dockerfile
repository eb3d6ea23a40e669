# teleconsult: one static binary on an empty image, run as UID 65532.
#
#   docker build -t teleconsult .                 # compiles in golang:1.26
#   make docker                                   # no Go image needed: builds the
#                                                 # binary here, then only FROM scratch
#
# make docker runs CGO_ENABLED=0 go build ... -o out/docker/teleconsult, copies
# the host's CA bundle to out/docker/, then
#   docker build --target prebuilt -t teleconsult .
# The prebuilt target comes before the golang stage, so neither BuildKit nor
# the legacy builder pulls or runs it.
#
# Ports: 8080/tcp HTTP(S) and the signalling WebSocket; media on the UDP range
# set with MEDIA_UDP_PORTS (50000-50999 below), or the single MEDIA_UDP_PORT;
# the embedded TURN relay, if TURN_LISTEN is set, on 3478/udp+tcp plus
# TURN_RELAY_PORTS. Media needs the host's address: run with --network host,
# or publish the same port numbers 1:1 and set MEDIA_PUBLIC_IP.
#
# No HEALTHCHECK: the image has no shell and no client to run one. Probe
# GET /healthz (liveness) and GET /readyz (database reachable) from the
# orchestrator instead. See DEPLOY.md.

ARG GO_VERSION=1.26

# What every variant shares. COPY runs as root whatever USER says.
FROM scratch AS runtime
ENV ADDR=:8080 \
    DATA_DIR=/data \
    MEDIA_UDP_PORTS=50000-50999 \
    MEDIA_LOOPBACK=false
USER 65532:65532
EXPOSE 8080/tcp 50000-50999/udp
ENTRYPOINT ["/teleconsult"]
CMD ["serve"]

# make docker: the binary and CA bundle are in out/docker/ (see Makefile).
FROM runtime AS prebuilt
COPY out/docker/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY out/docker/teleconsult /teleconsult
COPY --chown=65532:65532 out/docker/data /data
VOLUME /data

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/teleconsult ./cmd/teleconsult \
 && mkdir -p /out/data

# Default target: compiled from source in the golang stage.
FROM runtime
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/teleconsult /teleconsult
COPY --from=build --chown=65532:65532 /out/data /data
VOLUME /data
