#!/usr/bin/env bash
# Does the origin's background work hurt the edge beside it (issue 17)?
# `updraft serve` runs origin and edge in one process: after an upload the
# origin builds the bundle (brotli q11 of every new file, the canonical
# archive, dcz and dcb deltas) while the edge answers devices.
#
# Each round starts a fresh serve, uploads a real bundle (BASE) and waits for
# its build, then runs two release storms with `updraft bench` (each on its
# own throwaway app; a storm is open-loop arrivals, every device checks and
# downloads its update):
#   idle: the origin has nothing to do;
#   busy: started 1 s after the upload of the next release (NEXT), whose
#         build runs during the storm.
# Rounds alternate which storm goes first. Reported: update-check p50/p99 and
# time-to-update p99 per storm, and the busy/idle ratio of the check p99s
# (median over rounds).
#
#   bench/storm-after-upload.sh [ROUNDS] [DURATION] [DEVICES]
#   BASE=…zip NEXT=…zip bench/storm-after-upload.sh 3 10s 2000
#   BUILD_NICE=0 bench/storm-after-upload.sh …   # builds at normal priority (before issue 17)
#
# Needs: go. Everything runs on 127.0.0.1 and is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
DURATION=${2:-10s}
DEVICES=${3:-2000}
FIX=${FIXTURES:-../shared/fixtures/bundles}
BASE=${BASE:-$FIX/monaco-app-0.55.0.zip}
NEXT=${NEXT:-$FIX/monaco-app-0.55.1.zip}
for f in "$BASE" "$NEXT"; do [ -f "$f" ] || { echo "missing bundle $f (set BASE and NEXT)" >&2; exit 1; }; done

TMP=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
go build -o "$TMP/updraft" ./cmd/updraft
U="$TMP/updraft"
OL=127.0.0.1:18490 EL=127.0.0.1:18480

storm() { # $1: label; prints "label check_p50 check_p99 ttu_p99 checks failures"
	"$U" bench --origin "http://$OL" --data "$D" --target "http://$EL" --scenario release-storm \
		--duration "$DURATION" --devices "$DEVICES" --json 2>"$TMP/bench.err" >"$TMP/$1.json" ||
		{ cat "$TMP/bench.err" >&2; exit 1; }
	python3 - "$TMP/$1.json" "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["phases"][0]
c, t = r["check_latency"], r["time_to_update"]
print(f'{sys.argv[2]:5} check p50 {c["p50_ms"]:7.2f} ms  p99 {c["p99_ms"]:8.2f} ms  time-to-update p99 {t["p99_ms"]:8.1f} ms  checks {c["count"]}  failures {r["failures"]}')
EOF
}

ratios=()
for round in $(seq 1 "$ROUNDS"); do
	D="$TMP/data$round"
	"$U" serve --data "$D" --origin-listen "$OL" --edge-listen "$EL" --build-nice "${BUILD_NICE:-19}" --log-level warn >"$TMP/serve.log" 2>&1 &
	PID=$!
	for _ in $(seq 1 200); do curl -fs "http://$EL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
	"$U" app create com.example.storm --origin "http://$OL" --data "$D" >/dev/null
	"$U" bundle upload "$BASE" --app com.example.storm --version 1.0.0 --wait --origin "http://$OL" --data "$D" >/dev/null
	idle() { storm idle | tee "$TMP/idle.line"; }
	busy() {
		"$U" bundle upload "$NEXT" --app com.example.storm --version 1.0.1 --origin "http://$OL" --data "$D" >/dev/null
		sleep 1
		storm busy | tee "$TMP/busy.line"
		"$U" bundle list --app com.example.storm --origin "http://$OL" --data "$D" | sed -n '2p;3p' | awk '{print "      build after the storm: " $1 " deltas " $4 " " $5 " " $6}'
	}
	echo "== round $round"
	if [ $((round % 2)) = 1 ]; then idle; busy; else busy; idle; fi
	ratios+=("$(python3 -c "
import re,sys
p=lambda f: float(re.search(r'p99 +([0-9.]+) ms', open(f).read()).group(1))
print(p('$TMP/busy.line')/p('$TMP/idle.line'))")")
	kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
python3 -c "
import statistics
r=[float(x) for x in '${ratios[*]}'.split()]
print('busy/idle check p99 per round:', ', '.join(f'{x:.2f}x' for x in r), ' median', f'{statistics.median(r):.2f}x')"
