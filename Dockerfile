# syntax=docker/dockerfile:1
#
# Roost in a container: one static binary on distroless, running as an
# unprivileged user, with its data in the volume /var/lib/roost.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" -t roost .
#   docker run -d --name roost -e ROOST_HOSTNAME=mail.example.org \
#     -p 25:25 -p 143:143 -p 993:993 -p 110:110 -p 995:995 -p 8080:8080 \
#     -v roost-data:/var/lib/roost roost
#   docker exec -i roost roost user add alice@example.org <<<"$PASSWORD"
#
# Ports below 1024: Docker (since 20.10) and Podman set the per-container
# sysctl net.ipv4.ip_unprivileged_port_start=0, so the unprivileged user
# binds 25, 110, 143, 993 and 995 inside the container without any
# capability. Elsewhere (e.g. Kubernetes) set that sysctl in the pod's
# securityContext, or move the listeners to high ports with the ROOST_*_LISTEN
# variables (e.g. ROOST_SMTP_LISTEN=:2525) and map them (-p 25:2525).
# LMTP (2424) takes mail for local accounts without authentication: publish
# it only to the MTA that delivers through it, never to the Internet.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# What `roost version`, the start-up log line and roost_build_info report.
# .git is not copied into the image, so pass them:
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" -t roost .
ARG VERSION=""
ARG COMMIT=""
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
    -o /out/roost ./cmd/roost \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/roost /usr/local/bin/roost
# The volume starts out owned by the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/data /var/lib/roost
ENV ROOST_DATA_DIR=/var/lib/roost \
    ROOST_SMTP_LISTEN=:25 \
    ROOST_LMTP_LISTEN=:2424 \
    ROOST_SUBMISSION_LISTEN=:587 \
    ROOST_SUBMISSION_TLS_LISTEN=:465 \
    ROOST_IMAP_LISTEN=:143 \
    ROOST_IMAP_TLS_LISTEN=:993 \
    ROOST_POP3_LISTEN=:110 \
    ROOST_POP3_TLS_LISTEN=:995 \
    ROOST_HTTP_LISTEN=:8080 \
    ROOST_METRICS_LISTEN=:9154
VOLUME /var/lib/roost
WORKDIR /var/lib/roost
# 9154 is /metrics, for a Prometheus on the container network: do not publish
# it to the Internet (8080 is autoconfiguration, meant to be published).
EXPOSE 25 2424 587 465 143 993 110 995 8080 9154
USER 65532:65532
# "roost status" succeeds when the server answers on its control socket.
HEALTHCHECK --interval=30s --timeout=10s CMD ["roost", "status"]
ENTRYPOINT ["roost", "serve"]
