#!/usr/bin/env bash
# Update checks/s of two builds of Updraft side by side, same load, same answer: an A/B of a
# hot-path change. Each revision is built from `git archive`, runs its own `updraft serve`
# (fresh data folder, --device-rtt 0 so the answer carries the manifest) with the swagger-ui
# 5.35.0 fixture (testdata/, 26 files) as the default channel's bundle; then wrk loads
# POST /updates with the same plugin 8.x body, Accept-Encoding gzip (1,704-byte answer),
# ROUNDS times, alternating A and B. Prints every round and the medians.
#
#   bench/ab-checks.sh [REV_A] [REV_B] [ROUNDS] [DURATION]   (defaults: HEAD~1 HEAD 5 5s)
#
# ZIP= uploads another bundle instead (e.g. the Ionic fixture, ionic-app-9.0.4.zip), ENC= sets the
# Accept-Encoding (default gzip; identity for the plain answer), FLAGS_A= / FLAGS_B= add serve
# flags to one side: the same revision twice with FLAGS_A=--device-front=false is an A/B of a flag.
#
# Needs: go, git, wrk, curl. Everything runs on 127.0.0.1; nothing is left running.
set -euo pipefail
A=${1:-HEAD~1}
B=${2:-HEAD}
ROUNDS=${3:-5}
DURATION=${4:-5s}
ZIP=${ZIP:-}
ENC=${ENC:-gzip}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
for tool in go git wrk curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: apt-get install wrk curl)" >&2; exit 1; }
done

BODY='{"app_id":"com.bench.swagger","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51","version_name":"builtin","version_build":"1.0.0","version_code":"1","version_os":"17.2","platform":"ios","plugin_version":"8.51.14","is_emulator":false,"is_prod":true}'
start() { # name rev edge-port flags
  local dir="$WORK/$1" zip=${ZIP:-$ROOT/testdata/swagger-ui-5.35.0.zip}
  mkdir -p "$dir/src"
  git -C "$ROOT" archive "$2" | tar -x -C "$dir/src"
  (cd "$dir/src" && go build -o "$dir/updraft" ./cmd/updraft)
  local edge=127.0.0.1:$3 origin=127.0.0.1:$(($3 + 10)) tls=127.0.0.1:$(($3 + 11))
  "$dir/updraft" serve --data "$dir/data" --edge-listen "$edge" --origin-listen "$origin" --tls-listen "$tls" \
    --device-rtt 0 --log-level warn $4 2>"$dir/serve.log" &
  for _ in $(seq 100); do curl -sf "http://$edge/healthz" >/dev/null && break; sleep 0.1; done
  local c=(--origin "http://$origin" --data "$dir/data")
  "$dir/updraft" app create com.bench.swagger "${c[@]}" >/dev/null
  "$dir/updraft" bundle upload "$zip" --app com.bench.swagger --version 1.0.1 --wait "${c[@]}" >/dev/null
  "$dir/updraft" channel set production --app com.bench.swagger --bundle 1.0.1 --default "${c[@]}" >/dev/null
  # The edge compresses an answer the second time it serves it: ask until the gzip variant is out.
  for _ in $(seq 100); do
    curl -s -X POST -H 'Accept-Encoding: gzip' --data "$BODY" "http://$edge/updates" -D - -o /dev/null | grep -qi '^content-encoding: gzip' && break
    sleep 0.1
  done
  curl -sf -X POST -H "Accept-Encoding: $ENC" --data "$BODY" "http://$edge/updates" -o /dev/null ||
    { echo "$1: no answer to the update check" >&2; exit 1; }
}
echo "== build and serve A ($A) and B ($B)" >&2
start a "$A" 19380 "${FLAGS_A:-}"
start b "$B" 19480 "${FLAGS_B:-}"
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept-Encoding"] = "$ENC"
LUA
sleep 2 # both origins' background work after the upload (manifest, canonical archive) settles
: > "$WORK/a.rps"; : > "$WORK/b.rps"
for r in $(seq "$ROUNDS"); do
  a=$(wrk -t2 -c64 -d"$DURATION" -s "$WORK/post.lua" http://127.0.0.1:19380/updates | awk '/Requests\/sec/ {print $2}')
  b=$(wrk -t2 -c64 -d"$DURATION" -s "$WORK/post.lua" http://127.0.0.1:19480/updates | awk '/Requests\/sec/ {print $2}')
  echo "round $r: A $a  B $b req/s"
  echo "$a" >> "$WORK/a.rps"; echo "$b" >> "$WORK/b.rps"
done
med() { sort -n "$1" | awk '{l[NR]=$1} END {print l[int((NR+1)/2)]}'; }
ma=$(med "$WORK/a.rps"); mb=$(med "$WORK/b.rps")
echo "wrk -t2 -c64 -d$DURATION, POST /updates ($(basename "${ZIP:-swagger-ui-5.35.0.zip}") answer, $ENC), $ROUNDS alternating rounds on $(nproc) cores, $(date -u +%F)"
echo "median: A ($A ${FLAGS_A:-}) $ma, B ($B ${FLAGS_B:-}) $mb req/s, B/A $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", b / a}')"
