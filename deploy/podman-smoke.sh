#!/usr/bin/env bash
# Smoke test of the container image with podman, offline: builds
# deploy/Containerfile.local (the Dockerfile's runtime stage FROM scratch,
# from binaries compiled here with CGO_ENABLED=0, since golang:1.26 and
# distroless cannot be pulled without a registry), runs `serve` in it on a
# named volume, and checks:
#   - /healthz on the device port (8080) and the operator port (8090), HTTPS
#     on 8443/tcp and HTTP/3 on 8443/udp, all published on 127.0.0.1;
#   - `updraft keys show` and the health probe through `podman exec`;
#   - the API key copied out with `podman cp` authorizes the operator API;
#   - the data volume is writable by the non-root user (65532) and keeps the
#     keys across a restart.
# Then removes the container, the volume and the image.
#
#   deploy/podman-smoke.sh           (root or rootless podman; ~30 s after the build)
#
# Environment: UPDRAFT_PODMAN_RUNTIME (default: runc on hosts with a hybrid
# cgroup v1/v2 layout, where Debian 12's crun 1.8 refuses to start
# containers: "cgroups in hybrid mode not supported"; else podman's default).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "podman-smoke: $*" >&2; exit 1; }
command -v podman >/dev/null || die "podman not installed (Debian: apt-get install podman runc)"
command -v curl >/dev/null || die "curl not installed"

# The runtime stage must be the Dockerfile's: compare from the marker to the end.
if ! diff <(sed -n '/^# Inside the container/,$p' Dockerfile) \
          <(sed -n '/^# Inside the container/,$p' deploy/Containerfile.local) >/dev/null; then
  diff <(sed -n '/^# Inside the container/,$p' Dockerfile) <(sed -n '/^# Inside the container/,$p' deploy/Containerfile.local) >&2 || true
  die "deploy/Containerfile.local's runtime stage differs from the Dockerfile's (above)"
fi

PODMAN=(podman)
if [ -n "${UPDRAFT_PODMAN_RUNTIME:-}" ]; then
  PODMAN+=(--runtime "$UPDRAFT_PODMAN_RUNTIME")
elif [ -d /sys/fs/cgroup/unified ] && command -v runc >/dev/null; then
  PODMAN+=(--runtime runc)
fi
# Podman asks for more open files and processes than a container may have
# where the caller lacks CAP_SYS_RESOURCE (setrlimit: operation not
# permitted); ask for the caller's own limits (conmon caps processes at 32768).
nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
[ "$nofile" = unlimited ] && nofile=1048576
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")

id="updraft-smoke-$$"
image="localhost/updraft:$id"
ctx=$(mktemp -d)
cleanup() {
  "${PODMAN[@]}" rm -f -t 2 "$id" >/dev/null 2>&1 || true
  "${PODMAN[@]}" volume rm -f "$id" >/dev/null 2>&1 || true
  "${PODMAN[@]}" rmi -f "$image" >/dev/null 2>&1 || true
  rm -rf "$ctx"
}
trap cleanup EXIT

start=$(date +%s)
echo "== build binaries (CGO_ENABLED=0)"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/etc/ssl/certs" "$ctx/data"
chmod 1777 "$ctx/rootfs/tmp"
CGO_ENABLED=0 go build -buildvcs=false -ldflags="-s -w" -o "$ctx/rootfs/usr/local/bin/updraft" ./cmd/updraft
CGO_ENABLED=0 go build -buildvcs=false -ldflags="-s -w" -o "$ctx/rootfs/usr/local/bin/updraft-probe" ./deploy/probe
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$ctx/rootfs/etc/group"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then cp /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/"; fi
cp deploy/Containerfile.local "$ctx/Containerfile"

echo "== podman build"
"${PODMAN[@]}" build -q -t "$image" -f "$ctx/Containerfile" "$ctx" >/dev/null

echo "== podman run (serve, named volume $id on /data)"
"${PODMAN[@]}" run -d --name "$id" "${LIMITS[@]}" -v "$id:/data" \
  -p 127.0.0.1::8080/tcp -p 127.0.0.1::8090/tcp -p 127.0.0.1::8443/tcp -p 127.0.0.1::8443/udp \
  "$image" >/dev/null

port() { # port CONTAINER_PORT/PROTO -> host port
  "${PODMAN[@]}" port "$id" "$1" | head -n1 | sed 's/.*://'
}
wait_ok() { # wait_ok URL [seconds]: poll until 200
  local deadline=$(( $(date +%s) + ${2:-30} ))
  until curl -fsS -m 2 -o /dev/null "$1" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      "${PODMAN[@]}" logs "$id" >&2 || true
      die "$1 not ready"
    fi
    if [ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$id")" != true ]; then
      "${PODMAN[@]}" logs "$id" >&2 || true
      die "container exited"
    fi
    sleep 0.2
  done
}
check_running() {
  edge=$(port 8080/tcp); op=$(port 8090/tcp); tls=$(port 8443/tcp); h3=$(port 8443/udp)
  wait_ok "http://127.0.0.1:$edge/healthz"
  wait_ok "http://127.0.0.1:$op/healthz"
}
check_running
echo "   device API 127.0.0.1:$edge, operator API 127.0.0.1:$op, HTTPS 127.0.0.1:$tls/tcp, HTTP/3 127.0.0.1:$h3/udp"

echo "== /healthz (8080, 8090), HTTPS (8443/tcp), HTTP/3 (8443/udp)"
body=$(curl -fsS "http://127.0.0.1:$edge/healthz"); echo "   8080: $body"
[[ "$body" == *'"ok"'* ]] || die "8080 /healthz: $body"
curl -fsS -o /dev/null "http://127.0.0.1:$op/healthz" || die "8090 /healthz"
curl -fsSk -o /dev/null "https://127.0.0.1:$tls/healthz" || die "8443/tcp HTTPS /healthz"
h3out=$("$ctx/rootfs/usr/local/bin/updraft" bench fetch --proto h3 --insecure -n 3 "https://127.0.0.1:$h3/healthz")
echo "   $h3out"
[[ "$h3out" == *"3 requests (0 errors)"* ]] || die "HTTP/3 over the published UDP port failed"

echo "== podman exec: updraft keys show, updraft-probe"
keys=$("${PODMAN[@]}" exec "$id" updraft keys show)
echo "$keys" | sed -n '1,3p;' | sed 's/^/   /'
[[ "$keys" == *"origin public key (edges: --origin-pubkey): "* ]] || die "keys show: $keys"
[[ "$keys" == *"/data/api-key"* ]] || die "keys show does not name /data/api-key"
"${PODMAN[@]}" exec "$id" updraft-probe http://127.0.0.1:8080/readyz http://127.0.0.1:8090/healthz || die "updraft-probe in the container"
pub=$("${PODMAN[@]}" exec "$id" updraft keys show --pubkey)
"${PODMAN[@]}" exec "$id" updraft app create com.example.smoke >/dev/null || die "updraft app create through podman exec"

echo "== podman cp the API key; operator API from the host"
"${PODMAN[@]}" cp "$id:/data/api-key" "$ctx/api-key"
code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(tr -d '\n' <"$ctx/api-key")" "http://127.0.0.1:$op/api/v1/apps")
[ "$code" = 200 ] || die "GET /api/v1/apps with the copied key: HTTP $code"
code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$op/api/v1/apps")
[ "$code" = 401 ] || die "GET /api/v1/apps without a key: HTTP $code, want 401"
echo "   with key: 200, without: 401"

echo "== restart: the volume keeps keys and data"
"${PODMAN[@]}" restart -t 10 "$id" >/dev/null
check_running
pub2=$("${PODMAN[@]}" exec "$id" updraft keys show --pubkey)
[ "$pub" = "$pub2" ] || die "signing key changed across a restart ($pub -> $pub2)"
"${PODMAN[@]}" exec "$id" updraft app list | grep -q com.example.smoke || die "app lost across a restart"
echo "   same signing key, app still there"

echo "== ok ($(( $(date +%s) - start ))s)"
