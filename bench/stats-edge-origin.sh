#!/usr/bin/env bash
# Device events, edge and origin apart: an origin and an edge in separate
# processes; the origin is stopped, `updraft bench --scenario stats` loads the
# edge (every accepted event is fsynced to its spool), then the origin comes
# back and the time to ingest the whole backlog is measured. Prints the
# edge's events/s and the origin's ingest rate, and checks that the origin
# counted exactly the events the edge accepted.
#
#   bench/stats-edge-origin.sh [DURATION] [CONNECTIONS]      (defaults: 10s 32)
#
# Needs: go, curl. Everything runs on 127.0.0.1; nothing is left running.
set -euo pipefail
DURATION=${1:-10s}
CONNS=${2:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT

echo "== build"
(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft)
U="$WORK/updraft"
O=127.0.0.1:18190
E=127.0.0.1:18180

start_origin() {
  "$U" origin --data "$WORK/data" --listen "$O" --log-level warn 2>>"$WORK/origin.log" &
  OPID=$!
  for _ in $(seq 100); do curl -sf "http://$O/healthz" >/dev/null && return; sleep 0.1; done
  echo "origin did not start" >&2; exit 1
}
metric() { curl -s "$1/metrics" | awk -v m="$2" '$1 == m { printf "%d\n", $2 }'; }

start_origin
C="--origin http://$O --data $WORK/data"
"$U" app create com.example.app $C >/dev/null
"$U" bundle upload "$ROOT/testdata/swagger-ui-5.34.0.zip" --app com.example.app --version 1.0.1 --channel production $C >/dev/null
"$U" channel set production --app com.example.app --default $C >/dev/null
"$U" edge --upstream "http://$O" --origin-pubkey "$("$U" keys show --pubkey --data "$WORK/data")" \
  --edge-key-file "$WORK/data/edge-key" --data "$WORK/edge" --listen "$E" --log-level error 2>"$WORK/edge.log" &
for _ in $(seq 100); do curl -sf "http://$E/readyz" >/dev/null && break; sleep 0.1; done

echo "== origin stopped; load the edge for $DURATION, $CONNS connections, batches of 50 events"
kill "$OPID"; wait "$OPID" 2>/dev/null || true
"$U" bench --target "http://$E" --app com.example.app --i-know-this-is-production --scenario stats --duration "$DURATION" --connections "$CONNS" --devices 10000 2>/dev/null | sed -n '/^phase/,$p'
accepted=$(curl -s "http://$E/metrics" | awk '$1 ~ /^updraft_edge_stats_events_total/ { n += $2 } END { printf "%d\n", n }')
echo "edge accepted $accepted events; spool: $(metric "http://$E" updraft_edge_stats_spool_bytes) bytes in $(metric "http://$E" updraft_edge_stats_spool_segments) segments"

echo "== origin back: ingest the backlog"
start=$(date +%s.%N)
start_origin
for _ in $(seq 3000); do [ "$(metric "http://$E" updraft_edge_stats_spool_bytes)" = 0 ] && break; sleep 0.1; done
end=$(date +%s.%N)
ingested=$(metric "http://$O" updraft_origin_events_ingested_total)
secs=$(echo "$end - $start" | bc)
echo "origin ingested $ingested events in ${secs}s: $(echo "$ingested / $secs" | bc) events/s"
[ "$ingested" = "$accepted" ] && echo "counts match" || { echo "MISMATCH: accepted $accepted, ingested $ingested" >&2; exit 1; }
