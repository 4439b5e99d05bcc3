#!/usr/bin/env bash
# Serve the same 5 MB bundle and the same small JSON answer from nginx and from
# an Updraft edge, load both with wrk (same threads, connections, duration),
# and print req/s, MB/s and the ratio Updraft/nginx.
#
#   bench/cache-vs-nginx.sh [DURATION] [CONNECTIONS]      (defaults: 10s 32)
#   UPDRAFT_FLAGS="--tcp-send-buffer 128KiB" bench/cache-vs-nginx.sh    (extra serve flags)
#
# Needs: go, nginx, wrk (Debian: apt-get install nginx-light wrk). Everything
# runs on 127.0.0.1; nothing is left running afterwards.
set -euo pipefail
DURATION=${1:-10s}
CONNS=${2:-32}
THREADS=2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT

for tool in go nginx wrk; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: apt-get install nginx-light wrk)" >&2; exit 1; }
done

echo "== build"
(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft)
U="$WORK/updraft"

# A 5 MB bundle: index.html plus 5,000,000 random (incompressible) bytes.
mkdir -p "$WORK/bundle"
echo '<!doctype html><title>bench</title>' > "$WORK/bundle/index.html"
head -c 5000000 /dev/urandom > "$WORK/bundle/app.bin"

start_updraft() { # $1: memory cache budget
  rm -rf "$WORK/data"
  "$U" serve --data "$WORK/data" --edge-listen 127.0.0.1:18080 --origin-listen 127.0.0.1:18090 ${UPDRAFT_FLAGS:-} \
    --cache-memory "$1" --log-level warn 2>"$WORK/updraft.log" &
  UPID=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
  local c="--origin http://127.0.0.1:18090 --data $WORK/data"
  "$U" app create com.bench.app $c >/dev/null
  SHA=$("$U" bundle upload "$WORK/bundle" --app com.bench.app --version 1.0.1 --json $c | sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p')
  "$U" channel set production --app com.bench.app --bundle 1.0.1 --default $c >/dev/null
  # Let the origin finish its background work on the upload (manifest, canonical archive)
  # so that it does not compete with the load for CPU.
  for _ in $(seq 600); do
    "$U" bundle list --app com.bench.app --json $c | grep -q '"state": "ready"' && break; sleep 0.1
  done
  curl -sf -o /dev/null "http://127.0.0.1:18080/b/$SHA"   # fill the cache
  curl -sf -o /dev/null "http://127.0.0.1:18080/b/$SHA"   # promote
}
stop_updraft() { kill "$UPID"; wait "$UPID" 2>/dev/null || true; }

BODY='{"app_id":"com.bench.app","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51","version_name":"builtin","version_build":"1.0.0","version_code":"1","version_os":"17.2","platform":"ios","plugin_version":"8.51.14","is_emulator":false,"is_prod":true}'
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA

# wrk → "req/s MB/s"
load() { # $1 url, [$2 lua script]
  local args=(-t"$THREADS" -c"$CONNS" -d"$DURATION" --latency)
  [ -n "${2:-}" ] && args+=(-s "$2")
  wrk "${args[@]}" "$1" > "$WORK/wrk.out"
  local rps mbs unit
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  read -r mbs unit < <(awk '/Transfer\/sec/ {v=$2; u=v; gsub(/[0-9.]/,"",u); gsub(/[A-Za-z]/,"",v); print v, u}' "$WORK/wrk.out")
  case "$unit" in GB) mbs=$(echo "$mbs*1024" | bc -l);; KB) mbs=$(echo "$mbs/1024" | bc -l);; B) mbs=0;; esac
  local p99; p99=$(awk '/ 99%/ {print $2}' "$WORK/wrk.out")
  printf "%s %s %s\n" "$rps" "$mbs" "$p99"
}

echo "== updraft edge (memory tier), $CONNS connections, $DURATION"
start_updraft 512MiB
ANSWER=$(curl -s -X POST http://127.0.0.1:18080/updates -H 'Content-Type: application/json' -d "$BODY")
U_BLOB_MEM=$(load "http://127.0.0.1:18080/b/$SHA")
U_JSON=$(load "http://127.0.0.1:18080/updates" "$WORK/post.lua")
cp "$WORK/data/blobs/${SHA:0:2}/$SHA" "$WORK/bundle.zip"
stop_updraft

echo "== updraft edge (disk tier, sendfile)"
start_updraft 0
U_BLOB_DISK=$(load "http://127.0.0.1:18080/b/$SHA")
stop_updraft

echo "== nginx $(nginx -v 2>&1 | sed 's/.*\///') (sendfile on, $THREADS workers)"
mkdir -p "$WORK/www/b" "$WORK/ngx"
cp "$WORK/bundle.zip" "$WORK/www/b/$SHA"
printf '%s' "$ANSWER" > "$WORK/www/updates.json"
chmod 755 "$WORK"; chmod -R a+rX "$WORK/www"   # nginx workers may run as another user
cat > "$WORK/nginx.conf" <<NGX
worker_processes $THREADS;
pid $WORK/nginx.pid;
error_log $WORK/ngx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 120s;
  open_file_cache max=1000 inactive=60s;
  client_body_temp_path $WORK/ngx; proxy_temp_path $WORK/ngx; fastcgi_temp_path $WORK/ngx;
  uwsgi_temp_path $WORK/ngx; scgi_temp_path $WORK/ngx;
  types { application/json json; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:18081;
    root $WORK/www;
    location = /updates { default_type application/json; try_files /updates.json =404; }
    location /b/ { add_header Cache-Control "public, max-age=31536000, immutable"; etag on; }
  }
}
NGX
nginx -c "$WORK/nginx.conf" -p "$WORK/ngx"
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:18081/b/$SHA" && break; sleep 0.1; done
cmp <(curl -s "http://127.0.0.1:18081/b/$SHA") "$WORK/bundle.zip"
N_BLOB=$(load "http://127.0.0.1:18081/b/$SHA")
N_JSON=$(load "http://127.0.0.1:18081/updates")
kill "$(cat "$WORK/nginx.pid")"

ratio() { echo "scale=2; $1 / $2" | bc -l; }
row() { # name updraft nginx
  read -r ur um up <<<"$2"; read -r nr nm np <<<"$3"
  printf "| %-34s | %10.0f | %8.1f | %7s | %10.0f | %8.1f | %7s | %5s× |\n" "$1" "$ur" "$um" "$up" "$nr" "$nm" "$np" "$(ratio "$ur" "$nr")"
}
echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION on $(nproc) cores, $(date -u +%F)"
echo "| test | updraft req/s | MB/s | p99 | nginx req/s | MB/s | p99 | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
row "5 MB bundle, memory tier"     "$U_BLOB_MEM"  "$N_BLOB"
row "5 MB bundle, disk tier"       "$U_BLOB_DISK" "$N_BLOB"
row "update check (POST /updates)" "$U_JSON" "$N_JSON"
echo "(nginx answers the update check from a static file holding the same JSON; Updraft parses,"
echo " validates and resolves each request.)"
