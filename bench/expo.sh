#!/usr/bin/env bash
# Expo Updates (issue 18): `updraft bench --client expo`, the stock expo-updates Android client at
# launch (manifest request with its headers, multipart answer, then every asset it lacks, 64 at
# once, each SHA-256-checked), against one `updraft serve`, over plain HTTP and HTTPS:
#
#   - update checks per second: a closed loop (steady) of manifest requests on warm connections,
#     by devices already on the update (--version-name offered: noUpdateAvailable) and by devices
#     offered it (builtin: the manifest, parsed; nothing downloaded);
#   - time to update (manifest request → last verified asset) of a fresh install, cold and warm
#     connections, on an emulated link (and cold with 5 assets at once, the pre-coroutine client).
#
#   bench/expo.sh [DEVICES] [DURATION] [STEADY]     (defaults: 40 12s 10s)
#   LINK=150ms/10mbit bench/expo.sh                  (default link 40ms/100mbit)
#   EXPORT=DIR bench/expo.sh                         (an `npx expo export` folder instead of the
#                                                     generated one: 2 MB launch bundle, 43 assets)
#
# Every run loads its own throwaway bench.* app (created, given the Expo update, built, deleted).
# Needs: go, curl, jq. Everything runs on 127.0.0.1 (edge on 18080/18443, origin on 18090); every
# run is bounded by its device count and duration, and by `timeout`; nothing is left running.
set -euo pipefail
DEVICES=${1:-40}
DURATION=${2:-12s}
STEADY=${3:-10s}
LINK=${LINK:-40ms/100mbit}
CONNS=${CONNS:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for tool in go curl jq timeout; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT

echo "== build" >&2
(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft)
U="$WORK/updraft"
B=(--origin http://127.0.0.1:18090 --data "$WORK/data" --insecure)
[ -n "${EXPORT:-}" ] && B+=(--bundle "$EXPORT")

echo "== serve" >&2
"$U" serve --data "$WORK/data" --edge-listen 127.0.0.1:18080 --origin-listen 127.0.0.1:18090 \
  --tls self-signed --tls-listen 127.0.0.1:18443 --log-level warn 2>"$WORK/serve.log" &
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done

target() { case $1 in https) echo https://127.0.0.1:18443 ;; http) echo http://127.0.0.1:18080 ;; esac; }

# $1 scheme, $2 fleet (offered: already on the update; builtin: offered it).
checks() {
  local scheme=$1 fleet=$2
  echo "== checks $scheme $fleet" >&2
  timeout 300 "$U" bench --client expo --scenario steady --connections "$CONNS" --duration "$STEADY" --devices 1000 \
    --version-name "$fleet" --target "$(target "$scheme")" "${B[@]}" --json > "$WORK/run.json" 2>"$WORK/run.log" \
    || { cat "$WORK/run.log" >&2; return 1; }
  jq -r --arg s "$scheme" --arg f "$fleet" '.phases[0] as $p
    | "| \($s) | \(if $f == "offered" then "on the update" else "offered it" end) | **\($p.checks_per_sec | round)** | \($p.check_latency.p50_ms * 100 | round / 100) | \($p.check_latency.p99_ms * 100 | round / 100) | \([$p.outcomes[] | "\(.outcome) \(.count)"] | join(", ")) | \($p.failures) |"' "$WORK/run.json"
}

# $1 scheme, $2 conn, $3 assets at once.
ttu() {
  local scheme=$1 conn=$2 conc=$3
  echo "== time to update $scheme $conn $conc" >&2
  timeout 300 "$U" bench --client expo --conn "$conn" --expo-concurrency "$conc" --link "$LINK" --devices "$DEVICES" --duration "$DURATION" \
    --target "$(target "$scheme")" "${B[@]}" --json > "$WORK/run.json" 2>"$WORK/run.log" \
    || { cat "$WORK/run.log" >&2; return 1; }
  jq -r --arg s "$scheme" --arg k "$conn" --arg c "$conc" '.phases[0] as $p
    | (($p.time_to_update_by_path // []) | map(select(.path == "expo")) | .[0]) as $q
    | ([$q.time_to_update.count, 1] | max) as $n
    | "| \($s) | \($k) | \($c) | \($p.check_latency.p50_ms * 10 | round / 10) | **\($q.time_to_update.p50_ms * 10 | round / 10)** | \($q.time_to_update.p90_ms * 10 | round / 10) | **\($q.time_to_update.p99_ms * 10 | round / 10)** | \($q.time_to_update.count) | \($q.bytes_downloaded / $n | round) | \($q.files_downloaded / $n | round) | \(($p.connections_opened // 0) / $n * 10 | round / 10) | \($p.failures) |"' "$WORK/run.json"
}

echo
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "Expo update checks, steady closed loop, $CONNS workers on warm connections, 1000 devices, $STEADY per row, no link, $(nproc) cores shared by edge, origin and client, $(date -u +%F)"
echo
echo "| scheme | devices | checks/s | check p50 ms | p99 | outcomes | failures |"
echo "|---|---|---:|---:|---:|---|---:|"
for scheme in http https; do
  checks "$scheme" offered
  checks "$scheme" builtin
done

echo
echo "Expo time to update (fresh install: manifest request → last verified asset), link $LINK, $DEVICES devices over $DURATION per row"
echo
echo "| scheme | conn | assets at once | check p50 ms | time to update p50 ms | p90 | p99 | updates | bytes per update | assets per update | connections per update | failures |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for scheme in http https; do
  for conn in cold warm; do
    ttu "$scheme" "$conn" 64
  done
  ttu "$scheme" cold 5 # expo-updates before its coroutine loader: OkHttp's 5 requests per host
done
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
