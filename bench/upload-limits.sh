#!/usr/bin/env bash
# Upload limits and builder memory (issue 15). A real origin process
# (`updraft origin`, default flags) is sent:
#   1. zip bombs, one origin per upload: 1,000 MiB of zeros in one deflated
#      entry (≈ 1 MB); the same zip with its headers declaring 1 KiB (the
#      check must count what it decompresses); 1,000 entries of 1 MiB of
#      zeros (each under the per-entry ratio threshold); 200,000 empty
#      entries;
#   2. two releases of a legitimate bundle of BUNDLE_MIB MiB of files
#      (hundreds of files, text-like and incompressible, a few over 8 MiB;
#      5% of the files change), each built in the background: manifest,
#      canonical archive, deltas.
# It prints the answers, the build status and the origin's peak resident
# memory (VmHWM from /proc/PID/status) before and after.
#
#   bench/upload-limits.sh [BUNDLE_MIB]      (default 256)
#   ORIGIN_FLAGS="--max-delta-bundle 300MiB" bench/upload-limits.sh 256
#
# Needs: go, curl, jq. Everything runs on 127.0.0.1; nothing is left running.
set -euo pipefail
SIZE=${1:-256}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
for tool in go curl jq; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft && go build -o "$WORK/bundlegen" ./bench/bundlegen)
U="$WORK/updraft"
G="$WORK/bundlegen"
O=127.0.0.1:18290
APP=com.bench.app

start_origin() {
  rm -rf "$WORK/data"
  "$U" origin --data "$WORK/data" --listen "$O" --log-level warn ${ORIGIN_FLAGS:-} 2>>"$WORK/origin.log" &
  OPID=$!
  for _ in $(seq 100); do curl -sf "http://$O/healthz" >/dev/null && break; sleep 0.1; done
  KEY=$(cat "$WORK/data/api-key")
  "$U" app create "$APP" --origin "http://$O" --api-key "$KEY" >/dev/null
}
stop_origin() { kill "$OPID"; wait "$OPID" 2>/dev/null || true; }
mib() { awk -v k="$1" 'BEGIN { printf "%.0f MiB", k / 1024 }'; }
hwm() { mib "$(awk '/VmHWM/ {print $2}' "/proc/$OPID/status")"; }
upload() { # FILE VERSION: prints the HTTP status; the body is in $WORK/resp
  curl -s -o "$WORK/resp" -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Content-Type: application/zip' \
    --data-binary @"$1" "http://$O/api/v1/apps/$APP/bundles?version=$2"
}
list() { curl -sf -H "Authorization: Bearer $KEY" "http://$O/api/v1/apps/$APP/bundles"; }
wait_built() { # VERSION: until its build is ready or failed
  local st
  while :; do
    st=$(list | jq -r --arg v "$1" '.[] | select(.version == $v) | .delta_status.state // "none"')
    case $st in ready|failed|none) return;; esac
    sleep 1
  done
}

echo "== zip bombs (one fresh origin each; default limits)"
"$G" bomb -o "$WORK/bomb.zip" -size 1000
"$G" lying -o "$WORK/lying.zip" -size 1000
"$G" flat -o "$WORK/flat.zip" -size 1000
"$G" entries -o "$WORK/entries.zip" -n 200000
printf "| upload | zip | answer | origin VmHWM at start → after |\n|---|---:|---|---|\n"
for kind in bomb lying flat entries; do
  start_origin
  before=$(hwm)
  code=$(upload "$WORK/$kind.zip" 1.0.0)
  printf "| %s | %s bytes | %s %s: %s | %s → %s |\n" "$kind" "$(stat -c %s "$WORK/$kind.zip")" "$code" \
    "$(jq -r .error "$WORK/resp")" "$(jq -r .message "$WORK/resp")" "$before" "$(hwm)"
  stop_origin
done

echo
echo "== legitimate bundle: two releases of $SIZE MiB of files (origin flags: ${ORIGIN_FLAGS:-defaults})"
"$G" bundle -o "$WORK/v1.zip" -size "$SIZE" -release 1
"$G" bundle -o "$WORK/v2.zip" -size "$SIZE" -release 2
start_origin
before=$(hwm)
s=$(date +%s)
echo "upload 1.0.0 ($(stat -c %s "$WORK/v1.zip") bytes): HTTP $(upload "$WORK/v1.zip" 1.0.0), VmHWM $(hwm)"
wait_built 1.0.0
m=$(date +%s)
echo "1.0.0 built in $((m - s)) s (manifest, canonical archive), VmHWM $(hwm)"
echo "upload 1.0.1 ($(stat -c %s "$WORK/v2.zip") bytes): HTTP $(upload "$WORK/v2.zip" 1.0.1), VmHWM $(hwm)"
wait_built 1.0.1
e=$(date +%s)
echo "1.0.1 built in $((e - m)) s (manifest, canonical archive, deltas from 1.0.0)"
list | jq -c '.[] | {version, size, canonical_size, manifest_files, delta_status, deltas: [.deltas[]? | {encoding, size}]}'
echo "origin VmHWM: at start $before, after both builds $(hwm)"
stop_origin
grep -E 'level=(ERROR|WARN)' "$WORK/origin.log" | grep -v 'upload refused' || true
