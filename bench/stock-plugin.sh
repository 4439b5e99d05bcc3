#!/usr/bin/env bash
# Time to update with the stock plugin's download path: `updraft bench --client capgo` (what an
# unmodified @capgo/capacitor-updater 8.x does: update check, then the manifest's files the device
# does not hold, .br decoded, each SHA-256-checked, or the zip; never a delta) on an emulated
# link, cold and warm connections, manifest and zip, over HTTPS and plain HTTP; the Updraft-aware
# client (zip, dcb/dcz delta) in the same run for reference.
#
#   bench/stock-plugin.sh [PAIR] [DEVICES] [DURATION]     (defaults: swagger 40 12s)
#   LINK=150ms/10mbit bench/stock-plugin.sh ionic          (default link 40ms/100mbit)
#   HTTP2=false bench/stock-plugin.sh                      (the edge's TLS listener without HTTP/2)
#   SCHEMES=https bench/stock-plugin.sh                    (only the HTTPS rows)
#   CLIENTS=updraft bench/stock-plugin.sh                  (only the Updraft-aware client's rows:
#                                                           zip, delta from delta_url, inline delta)
#
# PAIR: swagger (swagger-ui 5.34.1 → 5.35.0), monaco (0.55.0 → 0.55.1) or ionic (9.0.4 → 9.0.5),
# zips from ../shared/fixtures/bundles (FIXTURES=DIR to point elsewhere). Devices run the older
# release (1.0.1) and are offered the newer (1.0.2); they hold the older release's files.
#
# Needs: go, curl, jq. Everything runs on 127.0.0.1 (edge on 18080/18443, origin on 18090); every
# run is bounded by its device count and duration, and by `timeout`; nothing is left running.
set -euo pipefail
PAIR=${1:-swagger}
DEVICES=${2:-40}
DURATION=${3:-12s}
LINK=${LINK:-40ms/100mbit}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIX=${FIXTURES:-$ROOT/../shared/fixtures/bundles}
case "$PAIR" in
  swagger) OLD=swagger-ui-5.34.1.zip NEW=swagger-ui-5.35.0.zip ;;
  monaco) OLD=monaco-app-0.55.0.zip NEW=monaco-app-0.55.1.zip ;;
  ionic) OLD=ionic-app-9.0.4.zip NEW=ionic-app-9.0.5.zip ;;
  *) echo "pair $PAIR: want swagger, monaco or ionic" >&2; exit 2 ;;
esac
for tool in go curl jq timeout; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
for z in "$OLD" "$NEW"; do [ -f "$FIX/$z" ] || { echo "missing fixture $FIX/$z (FIXTURES=DIR)" >&2; exit 1; }; done
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT

echo "== build" >&2
(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft)
U="$WORK/updraft"
C="--origin http://127.0.0.1:18090 --data $WORK/data"

echo "== serve, upload $OLD as 1.0.1 and $NEW as 1.0.2 (waiting for manifests and deltas)" >&2
"$U" serve --data "$WORK/data" --edge-listen 127.0.0.1:18080 --origin-listen 127.0.0.1:18090 \
  --tls self-signed --tls-listen 127.0.0.1:18443 --http2="${HTTP2:-true}" --log-level warn 2>"$WORK/serve.log" &
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
"$U" app create com.bench.app $C >/dev/null
timeout 900 "$U" bundle upload "$FIX/$OLD" --app com.bench.app --version 1.0.1 --channel production --wait $C >&2
"$U" channel set production --app com.bench.app --default $C >/dev/null
timeout 900 "$U" bundle upload "$FIX/$NEW" --app com.bench.app --version 1.0.2 --channel production --wait $C >&2

# One run → one table row. $1 scheme, $2 client, $3 conn, $4 path (manifest, zip, delta,
# delta-inline).
row() {
  local scheme=$1 client=$2 conn=$3 path=$4 target extra=()
  case $scheme in https) target=https://127.0.0.1:18443 ;; http) target=http://127.0.0.1:18080 ;; esac
  case $client/$path in
    capgo/zip) extra=(--capgo-zip) ;;
    updraft/delta) extra=(--deltas --inline-deltas=false) ;;
    updraft/delta-inline) extra=(--deltas) ;;
  esac
  [ "$client" = capgo ] && extra+=(--conn "$conn")
  echo "== $scheme $client $conn $path" >&2
  timeout 300 "$U" bench --client "$client" "${extra[@]}" --target "$target" --insecure --link "$LINK" \
    --app com.bench.app --i-know-this-is-production --version-name 1.0.1 --devices "$DEVICES" --duration "$DURATION" \
    --json $C > "$WORK/run.json" 2>"$WORK/run.log" || { cat "$WORK/run.log" >&2; return 1; }
  jq -r --arg s "$scheme" --arg c "$client" --arg k "$conn" --arg p "$path" '
    .phases[0] as $ph
    | (($ph.time_to_update_by_path // []) | map(select(.path == $p)) | .[0]) as $q
    | ($q.time_to_update // $ph.time_to_update) as $t
    | ([$t.count, 1] | max) as $n
    | "| \($s) | \($c) | \($k) | \($p) | \($ph.check_latency.p50_ms | . * 10 | round / 10) | **\($t.p50_ms | . * 10 | round / 10)** | \($t.p90_ms | . * 10 | round / 10) | **\($t.p99_ms | . * 10 | round / 10)** | \($t.count) | \(($q.bytes_downloaded // $ph.bytes_downloaded) / $n | round) | \(if $q != null and $p == "manifest" then "\($q.files_downloaded / $n | round) / \($q.files_reused / $n | round)" else "-" end) | \(if $c == "capgo" then ($ph.connections_opened // 0) / $n * 10 | round / 10 else "-" end) | \($ph.failures) |"' \
    "$WORK/run.json"
}

echo
echo "$PAIR $OLD → $NEW, link $LINK, HTTP/2 ${HTTP2:-true}, $DEVICES devices over $DURATION per row, $(nproc) cores shared by edge, origin and client, $(date -u +%F)"
echo
echo "| scheme | client | conn | path | check p50 ms | time to update p50 ms | p90 | p99 | updates | bytes per update | files per update (downloaded / held) | connections per update | failures |"
echo "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for scheme in ${SCHEMES:-https http}; do
  if [[ " ${CLIENTS:-capgo updraft} " == *" capgo "* ]]; then
    for conn in warm cold; do
      row "$scheme" capgo "$conn" manifest
      row "$scheme" capgo "$conn" zip
    done
  fi
  if [[ " ${CLIENTS:-capgo updraft} " == *" updraft "* ]]; then
    row "$scheme" updraft warm zip
    row "$scheme" updraft warm delta
    row "$scheme" updraft warm delta-inline
  fi
done
