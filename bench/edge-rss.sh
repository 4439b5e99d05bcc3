#!/usr/bin/env bash
# Edge memory under load (issue 17): an origin and an edge in separate
# processes; `updraft bench` runs a release storm (every device checks, then
# downloads and verifies the bundle) and a steady closed-loop check phase
# against the edge, with the edge's memory cache budget at BUDGETS (each a
# fresh edge). The edge's resident memory is sampled every 100 ms from
# /proc; reported: the peak (VmHWM) against the budget + 64 MiB the issue
# allows.
#
#   bench/edge-rss.sh [DURATION] [DEVICES] [BUNDLE] [BUDGETS]
#   bench/edge-rss.sh 15s 1000 ../shared/fixtures/bundles/monaco-app-0.55.0.zip "512MiB 16MiB"
#
# Needs: go. Everything runs on 127.0.0.1 and is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15s}
DEVICES=${2:-1000}
BUNDLE=${3:-../shared/fixtures/bundles/monaco-app-0.55.0.zip}
BUDGETS=${4:-512MiB 16MiB}
[ -f "$BUNDLE" ] || { echo "missing bundle $BUNDLE" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
go build -o "$TMP/updraft" ./cmd/updraft
U="$TMP/updraft"
OL=127.0.0.1:18590 EL=127.0.0.1:18580
D="$TMP/origin"
"$U" origin --data "$D" --listen "$OL" --log-level warn >"$TMP/origin.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do curl -fs "http://$OL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
PUB=$("$U" keys show --data "$D" --pubkey)

for budget in $BUDGETS; do
	E="$TMP/edge-$budget"
	"$U" edge --upstream "http://$OL" --origin-pubkey "$PUB" --edge-key-file "$D/edge-key" --data "$E" \
		--listen "$EL" --cache-memory "$budget" --log-level warn >"$TMP/edge.log" 2>&1 &
	EPID=$!
	PIDS+=("$EPID")
	for _ in $(seq 1 200); do curl -fs "http://$EL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
	peak=0
	( while kill -0 "$EPID" 2>/dev/null; do
		awk '/VmRSS/ {print $2}' "/proc/$EPID/status" 2>/dev/null; sleep 0.1; done >"$TMP/rss" ) &
	SAMPLER=$!
	for sc in release-storm steady; do
		"$U" bench --origin "http://$OL" --data "$D" --target "http://$EL" --scenario "$sc" --bundle "$BUNDLE" \
			--duration "$DURATION" --devices "$DEVICES" --json >"$TMP/$sc.json" 2>"$TMP/bench.err" ||
			{ cat "$TMP/bench.err" >&2; exit 1; }
		python3 - "$TMP/$sc.json" "$budget" "$sc" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["phases"][0]
c = r["check_latency"]
print(f'edge --cache-memory {sys.argv[2]:7} {sys.argv[3]:13} checks {c["count"]:7}  {r["checks_per_sec"]:8.0f}/s  check p99 {c["p99_ms"]:7.2f} ms  downloaded {r["bytes_downloaded"]/1e6:8.1f} MB  failures {r["failures"]}')
EOF
	done
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$EPID/status")
	kill "$EPID"; wait "$EPID" 2>/dev/null || true
	wait "$SAMPLER" 2>/dev/null || true
	python3 - "$hwm" "$budget" "$TMP/rss" <<'EOF'
import sys
hwm = int(sys.argv[1]) / 1024
b = sys.argv[2]
mib = float(b[:-3]) * (1024 if b.endswith("GiB") else 1)
samples = [int(x) / 1024 for x in open(sys.argv[3]).read().split() if x.strip()]
p = sorted(samples)[int(len(samples) * 0.99) - 1] if samples else 0
print(f'edge --cache-memory {b}: peak RSS {hwm:.0f} MiB (p99 of 100 ms samples {p:.0f} MiB); budget + 64 MiB = {mib + 64:.0f} MiB: {"within" if hwm <= mib + 64 else "OVER"}')
EOF
done
