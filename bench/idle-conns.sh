#!/usr/bin/env bash
# Edge memory per idle keep-alive connection: devices keep their connection
# open between two checks, so an edge holds many more connections than it
# has requests in flight. For each revision, a fresh `updraft serve` with the
# swagger-ui 5.35.0 fixture; bench/idleconns opens N connections, sends one
# update check on each (gzip answer) and keeps them open and idle; the serve
# process's resident memory (VmRSS) is read before and while they are held.
#
#   bench/idle-conns.sh [N] [REV...]   (defaults: 10000 HEAD)
#   bench/idle-conns.sh 10000 HEAD~1 HEAD
#   FLAGS=--device-front=false bench/idle-conns.sh 10000 HEAD   # fasthttp serving them
#   OVER_TLS=1 bench/idle-conns.sh 5000 HEAD                     # over the HTTPS listener
#
# Each revision is built from `git archive`. Needs: go, git, curl; N file
# descriptors on each side (ulimit -n). Everything runs on 127.0.0.1.
set -euo pipefail
N=${1:-10000}
shift || true
REVS=("$@")
[ ${#REVS[@]} -gt 0 ] || REVS=(HEAD)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
EDGE=127.0.0.1:19580 ORIGIN=127.0.0.1:19590 TLS=127.0.0.1:19591
BODY='{"app_id":"com.bench.swagger","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51","version_name":"builtin","version_build":"1.0.0","version_code":"1","version_os":"17.2","platform":"ios","plugin_version":"8.51.14","is_emulator":false,"is_prod":true}'
printf '%s' "$BODY" > "$WORK/body.json"
(cd "$ROOT" && go build -o "$WORK/idleconns" ./bench/idleconns)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; } # KiB
for rev in "${REVS[@]}"; do
  dir="$WORK/$(echo "$rev" | tr -c 'A-Za-z0-9\n' _)"
  mkdir -p "$dir/src"
  git -C "$ROOT" archive "$rev" | tar -x -C "$dir/src"
  (cd "$dir/src" && go build -o "$dir/updraft" ./cmd/updraft)
  "$dir/updraft" serve --data "$dir/data" --edge-listen "$EDGE" --origin-listen "$ORIGIN" --tls-listen "$TLS" \
    --device-rtt 0 --log-level warn ${FLAGS:-} 2>"$dir/serve.log" &
  pid=$!
  for _ in $(seq 100); do curl -sf "http://$EDGE/healthz" >/dev/null && break; sleep 0.1; done
  c=(--origin "http://$ORIGIN" --data "$dir/data")
  "$dir/updraft" app create com.bench.swagger "${c[@]}" >/dev/null
  "$dir/updraft" bundle upload "$ROOT/testdata/swagger-ui-5.35.0.zip" --app com.bench.swagger --version 1.0.1 --wait "${c[@]}" >/dev/null
  "$dir/updraft" channel set production --app com.bench.swagger --bundle 1.0.1 --default "${c[@]}" >/dev/null
  for _ in $(seq 100); do # until the gzip answer is built (the second time it is asked)
    curl -s -X POST -H 'Accept-Encoding: gzip' --data "$BODY" "http://$EDGE/updates" -D - -o /dev/null | grep -qi '^content-encoding: gzip' && break
    sleep 0.1
  done
  # The process idle (under 2% of a core over a second): the origin's work after the upload is done.
  cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
  for _ in $(seq 60); do a=$(cpu); sleep 1; b=$(cpu); [ $((b - a)) -le 2 ] && break; done
  before=$(rss "$pid")
  mkfifo "$dir/hold"
  target=(-addr "$EDGE"); [ "${OVER_TLS:-0}" = 1 ] && target=(-addr "$TLS" -tls)
  "$WORK/idleconns" "${target[@]}" -n "$N" -body "$WORK/body.json" < "$dir/hold" > "$dir/idle.out" &
  cpid=$!
  exec 3>"$dir/hold" # keeps the connections open until closed
  for _ in $(seq 600); do grep -q '^held' "$dir/idle.out" && break; kill -0 "$cpid" 2>/dev/null || break; sleep 0.1; done
  grep -q "^held $N" "$dir/idle.out" || { echo "$rev: the connections were not all opened" >&2; exit 1; }
  sleep 1 # the last connections' goroutines reach their wait
  during=$(rss "$pid")
  exec 3>&-
  wait "$cpid" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-10s %s%s: %d idle connections: serve RSS %d MiB -> %d MiB, %.1f KiB per connection\n' "$rev" "${FLAGS:-}" "$([ "${OVER_TLS:-0}" = 1 ] && echo '(TLS)')" "$N" \
    $((before / 1024)) $((during / 1024)) "$(echo "($during - $before) / $N" | bc -l)"
done
