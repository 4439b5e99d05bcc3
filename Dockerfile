# syntax=docker/dockerfile:1
# One image for every role: `serve` (default), `origin` and `edge`.
#
#   docker build -t updraft .
#   docker run -p 8080:8080 -p 8090:8090 -p 8443:8443/tcp -p 8443:8443/udp -v updraft:/data updraft
#   docker run ... updraft origin --store postgres://... --blobs s3://...
#   docker run ... updraft edge --upstream http://origin:8090 --tls acme --acme-domain edge.example.com
#
# deploy/compose.yaml runs the production topology with it; docs/deploy.md
# explains the choices.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/updraft ./cmd/updraft && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/updraft-probe ./deploy/probe
# The data volume's folder is made here: the runtime image has no shell. It
# must exist in the image owned by distroless's nonroot user (65532), or a
# new named volume is created root-owned and the origin cannot write its keys.
RUN mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0700 /out/data

# Channel maintenance windows name IANA time zones. distroless/static ships
# /usr/share/zoneinfo, which Go reads first; the binary also embeds the time
# zone database (time/tzdata, origin/snapshot/windows.go), so an image
# without one (FROM scratch) works too.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/updraft /out/updraft-probe /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
# Inside the container every role listens on all interfaces (publish only the
# ports a role needs). The data folder holds the keys (api-key, edge-key,
# origin-key), the embedded SQLite and blobs (serve, or origin without
# --store/--blobs) and an edge's cache, spool and snapshot (DATA/edge).
ENV UPDRAFT_DATA=/data \
    UPDRAFT_ORIGIN_LISTEN=0.0.0.0:8090 \
    UPDRAFT_EDGE_LISTEN=0.0.0.0:8080 \
    UPDRAFT_TLS_LISTEN=0.0.0.0:8443
VOLUME /data
# 8080 device API (HTTP/1.1), 8443 HTTPS (tcp) + HTTP/3 (udp), 8090 operator
# API and edge replication (keep it off the public internet).
EXPOSE 8080/tcp 8443/tcp 8443/udp 8090/tcp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/updraft"]
CMD ["serve"]
