#!/usr/bin/env bash
# Update checks whose answer carries a real manifest: an Updraft edge
# (`updraft serve`) against nginx serving the very same answer bytes from a
# static file (gzip_static on, with the pre-gzipped file beside it), with the
# same POST, identity and gzip, one run. Prints req/s, p99, the bytes of one
# answer on the wire and the ratio Updraft/nginx, and the CPU time each server
# spent per answer (utime + stime of its processes over the round, from
# /proc): on a virtual machine whose host takes CPU away (steal time) the
# req/s of a round moves with it, the CPU per answer much less.
#
#   bench/answers-vs-nginx.sh [IONIC_ZIP] [DURATION] [CONNECTIONS] [ROUNDS]   (defaults: none 6s 64 5)
#
# Each case is loaded ROUNDS times, alternating Updraft and nginx, and the
# median round is reported, with the ratio of the best rounds beside the ratio
# of the medians (every round is printed as it runs): other work on a shared
# machine moves single runs by ±15% and more.
# The swagger-ui-5.35.0 fixture (testdata/) is always measured; IONIC_ZIP is
# the path of the Ionic fixture (ionic-app-9.0.4.zip, 1,455 files), measured
# when given. nginx answers the POST through `error_page 405 =200` (its static
# module refuses POST), as `updraft bench compare` configures it; a GET of the
# same file is also measured as nginx's ceiling. UPDRAFT_FLAGS adds serve flags.
# FLOOR=1 also loads, in the same rounds, the floor of any Go server on this machine
# (bench/gofloor: no JSON, no resolution, no framework; the same bytes, headers and body in one
# writev, or headers then sendfile from memory as nginx does).

#
# Needs: go, nginx (with gzip_static: Debian's nginx-light has it), wrk, curl,
# bc. Everything runs on 127.0.0.1; nothing is left running afterwards.
set -euo pipefail
IONIC=${1:-}
DURATION=${2:-6s}
CONNS=${3:-64}
ROUNDS=${4:-5}
THREADS=2
EDGE=127.0.0.1:18380
ORIGIN=127.0.0.1:18390
NGINX=127.0.0.1:18381
TLS=127.0.0.1:18382   # serve's HTTPS/HTTP/3 listener (on by default; not loaded here)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT

for tool in go nginx wrk curl bc; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: apt-get install nginx-light wrk curl bc)" >&2; exit 1; }
done
[ -z "$IONIC" ] || [ -f "$IONIC" ] || { echo "no such file: $IONIC" >&2; exit 1; }

echo "== build"
(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft)
FLOOR=${FLOOR:-0}
[ "$FLOOR" = 1 ] && (cd "$ROOT" && go build -o "$WORK/gofloor" ./bench/gofloor)
FLOOR_W=127.0.0.1:18383
FLOOR_S=127.0.0.1:18384
U="$WORK/updraft"

echo "== updraft serve, uploads"
# --device-rtt 0: every answer carries the manifest (the case measured here). With the default
# device profile a device on the store build is sent the Ionic bundle's zip instead (1,455 files,
# 16 at a time, take longer than the zip: docs/design-notes.md, "Manifest or zip per device").
"$U" serve --data "$WORK/data" --edge-listen "$EDGE" --origin-listen "$ORIGIN" --tls-listen "$TLS" --device-rtt 0 ${UPDRAFT_FLAGS:-} \
  --log-level warn 2>"$WORK/updraft.log" &
UPID=$!
for _ in $(seq 100); do curl -sf "http://$EDGE/healthz" >/dev/null && break; sleep 0.1; done
C="--origin http://$ORIGIN --data $WORK/data"
FIXTURES=(swagger)
upload() { # name zip
  "$U" app create "com.bench.$1" $C >/dev/null
  "$U" bundle upload "$2" --app "com.bench.$1" --version 1.0.1 $C >/dev/null
  "$U" channel set production --app "com.bench.$1" --bundle 1.0.1 --default $C >/dev/null
}
upload swagger "$ROOT/testdata/swagger-ui-5.35.0.zip"
if [ -n "$IONIC" ]; then upload ionic "$IONIC"; FIXTURES+=(ionic); fi
# Wait for the origin's background work (manifest, canonical archive) to end:
# bundles ready, then the process idle (under 2% of a core over a second).
for f in "${FIXTURES[@]}"; do
  for _ in $(seq 1200); do
    "$U" bundle list --app "com.bench.$f" --json $C | grep -q '"state": "ready"' && break; sleep 0.25
  done
done
# ticks PID... → CPU clock ticks (user + system) the processes have used
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
cpu() { ticks "$UPID"; }
for _ in $(seq 120); do
  a=$(cpu); sleep 1; b=$(cpu)
  [ $((b - a)) -le 2 ] && break
done

body() { # app
  printf '{"app_id":"com.bench.%s","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51","version_name":"builtin","version_build":"1.0.0","version_code":"1","version_os":"17.2","platform":"ios","plugin_version":"8.51.14","is_emulator":false,"is_prod":true}' "$1"
}
post() { # app accept-encoding out
  curl -sf -X POST "http://$EDGE/updates" -H 'Content-Type: application/json' -H "Accept-Encoding: $2" --data-binary "$(body "$1")" -o "$3"
}

echo "== answers (captured from the edge)"
mkdir -p "$WORK/www" "$WORK/ngx"
for f in "${FIXTURES[@]}"; do
  # The edge compresses an answer the second time it serves it (gzip, then
  # brotli, within its duty cycle): ask until both exist.
  for _ in $(seq 20); do post "$f" br "$WORK/$f.probe"; post "$f" gzip "$WORK/$f.probe"; sleep 0.2; done
  post "$f" identity "$WORK/$f.json"
  post "$f" gzip "$WORK/$f.json.gz"
  post "$f" br "$WORK/$f.json.br"
  cmp <(gzip -dc "$WORK/$f.json.gz") "$WORK/$f.json" || { echo "$f: gzip answer does not decode to the plain one" >&2; exit 1; }
  grep -q '"manifest":\[' "$WORK/$f.json" || { echo "$f: answer without a manifest" >&2; exit 1; }
  files=$(grep -o '"file_name"' "$WORK/$f.json" | wc -l)
  printf '%s: %d manifest files; answer %d bytes, gzip %d, br %d\n' "$f" "$files" \
    "$(stat -c %s "$WORK/$f.json")" "$(stat -c %s "$WORK/$f.json.gz")" "$(stat -c %s "$WORK/$f.json.br")"
  # nginx serves them as files: the path requested (the static module must
  # find it to answer 405) and the file error_page sends it to, each with
  # its .gz for gzip_static.
  mkdir -p "$WORK/www/$f"
  for name in updates updates.json; do
    cp "$WORK/$f.json" "$WORK/www/$f/$name"; cp "$WORK/$f.json.gz" "$WORK/www/$f/$name.gz"
  done
done

echo "== nginx $(nginx -v 2>&1 | sed 's/.*\///') ($THREADS workers, gzip_static on)"
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
  default_type application/json;
  gzip_static on; gzip_vary on;
  server {
    listen $NGINX;
    root $WORK/www;
    # The static module refuses POST (405); error_page turns it into a GET
    # of the same file, as updraft bench compare does.
    location = /swagger/updates { error_page 405 =200 /swagger/updates.json; }
    location = /ionic/updates { error_page 405 =200 /ionic/updates.json; }
  }
}
NGX
nginx -c "$WORK/nginx.conf" -p "$WORK/ngx"
for _ in $(seq 50); do curl -sf -o /dev/null -X POST "http://$NGINX/swagger/updates" && break; sleep 0.1; done
NPIDS=("$(cat "$WORK/nginx.pid")"); NPIDS+=($(pgrep -P "${NPIDS[0]}"))   # master and workers

# Both servers answer the same bytes, plain and gzip.
for f in "${FIXTURES[@]}"; do
  curl -sf -X POST "http://$NGINX/$f/updates" --data-binary "$(body "$f")" -o "$WORK/n.plain"
  curl -sf -X POST "http://$NGINX/$f/updates" -H 'Accept-Encoding: gzip' --data-binary "$(body "$f")" -o "$WORK/n.gz"
  cmp "$WORK/n.plain" "$WORK/$f.json" && cmp "$WORK/n.gz" "$WORK/$f.json.gz" ||
    { echo "$f: nginx does not serve the captured answer" >&2; exit 1; }
done

# wire URL ENCODING METHOD → "header_bytes body_bytes" of one answer
wire() {
  local args=(-s -o /dev/null -w '%{size_header} %{size_download}' -H "Accept-Encoding: $3" -H 'Content-Type: application/json')
  [ "$4" = POST ] && args+=(-X POST --data-binary "$(body "$2")")
  curl "${args[@]}" "$1"
}
# load URL APP ENCODING METHOD PID... → "req/s p99 cpu_µs_per_answer" (the CPU of the server's processes PID...)
load() {
  local script="$WORK/load.lua"
  {
    echo "wrk.method = \"$4\""
    [ "$4" = POST ] && echo "wrk.body = '$(body "$2")'"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    echo "wrk.headers[\"Accept-Encoding\"] = \"$3\""
  } > "$script"
  local t0; t0=$(ticks "${@:5}")
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$script" "$1" > "$WORK/wrk.out"
  local t1; t1=$(ticks "${@:5}")
  if grep -q "Non-2xx" "$WORK/wrk.out"; then echo "non-2xx answers from $1" >&2; cat "$WORK/wrk.out" >&2; exit 1; fi
  printf '%s %s %.2f\n' "$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")" "$(awk '/ 99%/ {print $2}' "$WORK/wrk.out")" \
    "$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" '/requests in/ {print t * 1e6 / hz / $1}' "$WORK/wrk.out")"
}

# median and best of the rounds: "req/s p99 cpu" lines on stdin → "median_req/s p99_of_that_round best_req/s median_cpu"
median() {
  local in; in=$(cat)
  echo "$(sort -n <<<"$in" | awk '{l[NR]=$1" "$2; b=$1} END {print l[int((NR+1)/2)], b}')" \
    "$(awk '{print $3}' <<<"$in" | sort -n | awk '{c[NR]=$1} END {print c[int((NR+1)/2)]}')"
}
declare -A R
for f in "${FIXTURES[@]}"; do
  for enc in identity gzip; do
    echo "== $f, Accept-Encoding: $enc (req/s p99: updraft, nginx POST, nginx GET)"
    : > "$WORK/u"; : > "$WORK/n"; : > "$WORK/g"; : > "$WORK/fw"; : > "$WORK/fs"
    if [ "$FLOOR" = 1 ]; then
      file="$WORK/$f.json"; fenc=()
      [ "$enc" = gzip ] && { file="$WORK/$f.json.gz"; fenc=(-encoding gzip); }
      "$WORK/gofloor" -mode writev -body "$file" -listen "$FLOOR_W" "${fenc[@]}" & FW=$!
      "$WORK/gofloor" -mode sendfile -body "$file" -listen "$FLOOR_S" "${fenc[@]}" & FS=$!
      for _ in $(seq 50); do curl -sf -o /dev/null "http://$FLOOR_W/" && curl -sf -o /dev/null "http://$FLOOR_S/" && break; sleep 0.1; done
      for a in "$FLOOR_W" "$FLOOR_S"; do
        curl -sf -X POST "http://$a/updates" --data-binary "$(body "$f")" -o "$WORK/fl.out"
        cmp "$WORK/fl.out" "$file" || { echo "gofloor at $a does not serve the captured answer" >&2; exit 1; }
      done
    fi
    for r in $(seq "$ROUNDS"); do
      u=$(load "http://$EDGE/updates" "$f" "$enc" POST "$UPID"); echo "$u" >> "$WORK/u"
      n=$(load "http://$NGINX/$f/updates" "$f" "$enc" POST "${NPIDS[@]}"); echo "$n" >> "$WORK/n"
      g=$(load "http://$NGINX/$f/updates.json" "$f" "$enc" GET "${NPIDS[@]}"); echo "$g" >> "$WORK/g"
      if [ "$FLOOR" = 1 ]; then
        fw=$(load "http://$FLOOR_W/updates" "$f" "$enc" POST "$FW"); echo "$fw" >> "$WORK/fw"
        fs=$(load "http://$FLOOR_S/updates" "$f" "$enc" POST "$FS"); echo "$fs" >> "$WORK/fs"
        echo "   round $r: $u | $n | $g | floor writev $fw | floor sendfile $fs"
      else
        echo "   round $r: $u | $n | $g"
      fi
    done
    if [ "$FLOOR" = 1 ]; then
      kill "$FW" "$FS"; wait "$FW" "$FS" 2>/dev/null || true
      R[$f.$enc.fw]=$(median < "$WORK/fw"); R[$f.$enc.fs]=$(median < "$WORK/fs")
    fi
    R[$f.$enc.u]=$(median < "$WORK/u"); R[$f.$enc.n]=$(median < "$WORK/n"); R[$f.$enc.g]=$(median < "$WORK/g")
    R[$f.$enc.uw]=$(wire "http://$EDGE/updates" "$f" "$enc" POST)
    R[$f.$enc.nw]=$(wire "http://$NGINX/$f/updates" "$f" "$enc" POST)
  done
done
kill "$(cat "$WORK/nginx.pid")"

echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, POST /updates (same body), median of $ROUNDS alternating rounds, on $(nproc) cores, $(date -u +%F)"
echo "CPU: the server's CPU time per answer (median of the rounds); its ratio is nginx's over updraft's (above 1: updraft spends less)."
echo "| fixture | Accept-Encoding | answer on the wire (headers + body), updraft / nginx | updraft req/s | p99 | nginx req/s | p99 | ratio (medians) | ratio (best rounds) | nginx GET req/s | CPU µs/answer updraft / nginx | CPU ratio |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for f in "${FIXTURES[@]}"; do
  for enc in identity gzip; do
    read -r ur up ub_ uc <<<"${R[$f.$enc.u]}"; read -r nr np nb_ nc <<<"${R[$f.$enc.n]}"; read -r gr _ _ _ <<<"${R[$f.$enc.g]}"
    read -r uh ub <<<"${R[$f.$enc.uw]}"; read -r nh nb <<<"${R[$f.$enc.nw]}"
    printf "| %s | %s | %d + %d / %d + %d | %.0f | %s | %.0f | %s | %.2f× | %.2f× | %.0f | %.1f / %.1f | %.2f× |\n" "$f" "$enc" "$uh" "$ub" "$nh" "$nb" \
      "$ur" "$up" "$nr" "$np" "$(echo "$ur / $nr" | bc -l)" "$(echo "$ub_ / $nb_" | bc -l)" "$gr" "$uc" "$nc" "$(echo "$nc / $uc" | bc -l)"
  done
done
if [ "$FLOOR" = 1 ]; then
  echo
  echo "The Go floor (bench/gofloor, the same bytes; median req/s, and its ratio to nginx's POST median):"
  echo "| fixture | Accept-Encoding | updraft / nginx | floor writev | / nginx | floor sendfile | / nginx | CPU µs/answer: updraft, writev, sendfile |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  for f in "${FIXTURES[@]}"; do
    for enc in identity gzip; do
      read -r ur _ _ uc <<<"${R[$f.$enc.u]}"; read -r nr _ _ _ <<<"${R[$f.$enc.n]}"
      read -r wr _ _ wc <<<"${R[$f.$enc.fw]}"; read -r sr _ _ sc <<<"${R[$f.$enc.fs]}"
      printf "| %s | %s | %.2f× | %.0f | %.2f× | %.0f | %.2f× | %.1f, %.1f, %.1f |\n" "$f" "$enc" "$(echo "$ur / $nr" | bc -l)" \
        "$wr" "$(echo "$wr / $nr" | bc -l)" "$sr" "$(echo "$sr / $nr" | bc -l)" "$uc" "$wc" "$sc"
    done
  done
fi
