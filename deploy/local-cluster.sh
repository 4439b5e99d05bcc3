#!/usr/bin/env bash
# deploy/local-cluster.sh: the production topology of deploy/compose.yaml as
# plain processes on one machine, no containers, everything on 127.0.0.1:
#
#   PostgreSQL 15 (throwaway cluster)   SeaweedFS (weed server -s3)
#              \                          /
#        origin 1 ---- same database and bucket ---- origin 2
#              \                          /
#        edge 1 (--upstream origin 1,origin 2; HTTPS + HTTP/3)
#              |
#        edge 2 (--upstream edge 1,origin 2: edge 1 is its shield)
#
#   deploy/local-cluster.sh up       build updraft, start everything, wait until ready, print URLs
#   deploy/local-cluster.sh status   processes, health, URLs, API key
#   deploy/local-cluster.sh env      shell exports for the updraft CLI: eval "$(deploy/local-cluster.sh env)"
#   deploy/local-cluster.sh down     stop everything and delete the state folder (--keep: keep it)
#
# Environment:
#   UPDRAFT_CLUSTER_DIR   state folder (default ${TMPDIR:-/tmp}/updraft-local-cluster)
#   UPDRAFT_WEED          SeaweedFS binary (default ~/.cache/updraft/weed-VERSION as .ci/run
#                         builds it, then `weed` on PATH)
#   UPDRAFT_PGBIN         PostgreSQL 15 binaries (default /usr/lib/postgresql/15/bin)
#   UPDRAFT_BIN           use this updraft binary instead of building one
# Ports: edges 18080/18443 and 18081/18444, origins 18090 and 18091,
# PostgreSQL 18432, S3 18333, SeaweedFS internals 18900 up; the next free
# port when one is taken. Readiness is polled (health endpoints, a signed S3
# round trip, pg_ctl -w); nothing sleeps a fixed time.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${UPDRAFT_CLUSTER_DIR:-${TMPDIR:-/tmp}/updraft-local-cluster}
PGBIN=${UPDRAFT_PGBIN:-/usr/lib/postgresql/15/bin}
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6 # internal/testenv.WeedVersion
STATE=$DIR/cluster.env
BUCKET=updraft
REGION=us-east-1

say() { printf '%s\n' "$*"; }
die() { printf 'local-cluster: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

# --- helpers -----------------------------------------------------------------

randhex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# as_pg CMD...: PostgreSQL refuses to run as root; run it as `postgres` then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_free() { # port_free PORT: nothing listens on it (TCP or UDP)
  if command -v ss >/dev/null; then
    [ -z "$(ss -Htuln "( sport = :$1 )" 2>/dev/null)" ]
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
  fi
}

PICKED=" "
pick() { # pick VAR PREFERRED: VAR=the first free port from PREFERRED on, not picked before
  local p=$2
  while [[ "$PICKED" == *" $p "* ]] || ! port_free "$p"; do
    p=$((p + 1))
    [ "$p" -lt 65535 ] || die "no free port from $2 on"
  done
  PICKED="$PICKED$p "
  printf -v "$1" '%s' "$p"
}

wait_until() { # wait_until SECONDS WHAT PIDFILE CMD...: poll CMD until it succeeds
  local secs=$1 what=$2 pidfile=$3
  shift 3
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ -n "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      die "$what exited while starting"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || die "$what not ready after ${secs}s"
    sleep 0.2
  done
}

http_ok() { curl -fsS -m 2 -o /dev/null "$1"; }

s3() { # s3 METHOD PATH [curl args...]: a SigV4-signed request to the S3 endpoint
  local method=$1 path=$2
  shift 2
  curl -sS -m 10 -X "$method" --aws-sigv4 "aws:amz:$REGION:s3" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$@" "http://127.0.0.1:$S3_PORT$path"
}

s3_ready() { # the bucket exists and takes a write and a read
  local code
  code=$(s3 PUT "/$BUCKET" -o /dev/null -w '%{http_code}') || return 1
  [ "$code" = 200 ] || [ "$code" = 409 ] || return 1
  printf ready >"$DIR/weed/ready"
  s3 PUT "/$BUCKET/local-cluster-ready" -f -o /dev/null -T "$DIR/weed/ready" || return 1
  [ "$(s3 GET "/$BUCKET/local-cluster-ready" -f)" = ready ]
}

start_bg() { # start_bg NAME CMD...: start a daemon in its own session, log to logs/NAME.log
  local name=$1
  shift
  setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/$name"
}

weed_binary() {
  if [ -n "${UPDRAFT_WEED:-}" ]; then
    [ -x "$UPDRAFT_WEED" ] || die "UPDRAFT_WEED=$UPDRAFT_WEED is not an executable"
    echo "$UPDRAFT_WEED"
    return
  fi
  local cached=${XDG_CACHE_HOME:-$HOME/.cache}/updraft/weed-$WEED_VERSION
  if [ -x "$cached" ]; then echo "$cached"; return; fi
  if command -v weed >/dev/null; then command -v weed; return; fi
  die "no SeaweedFS binary: set UPDRAFT_WEED, or build it:
  (cd \$(mktemp -d) && go mod init w && go get github.com/seaweedfs/seaweedfs@$WEED_VERSION && go build -o $cached github.com/seaweedfs/seaweedfs/weed)"
}

# Only processes this script started are stopped: the pid file's process
# must still run the binary recorded for it.
ours() { # ours NAME: the recorded process is alive and is what we started
  local f=$DIR/pids/$1 pid exe
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0 # no /proc: trust the pid
  [ -f "$DIR/pids/$1.exe" ] || return 0
  [ "$exe" = "$(cat "$DIR/pids/$1.exe")" ]
}

stop_group() { # stop_group GRACE NAME...: SIGTERM all, wait up to GRACE seconds, then SIGKILL
  local grace=$1 name pid t0 deadline
  shift
  local names=() pids=()
  for name in "$@"; do
    if ours "$name"; then
      pid=$(cat "$DIR/pids/$name")
      kill -TERM "$pid" 2>/dev/null || true
      names+=("$name"); pids+=("$pid")
    fi
    rm -f "$DIR/pids/$name" "$DIR/pids/$name.exe"
  done
  t0=$(date +%s)
  deadline=$(( t0 + grace ))
  local i
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2>/dev/null; do
      if [ "$(date +%s)" -ge "$deadline" ]; then
        say "  ${names[$i]} still running after ${grace}s: SIGKILL"
        kill -KILL "${pids[$i]}" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
    say "  stopped ${names[$i]} (pid ${pids[$i]}, $(( $(date +%s) - t0 ))s)"
  done
}

record_exe() { # record_exe NAME BINARY: the binary the pid runs once started (for ours)
  readlink -f "$2" >"$DIR/pids/$1.exe"
}

load_state() {
  [ -f "$STATE" ] || die "no cluster in $DIR (deploy/local-cluster.sh up)"
  # shellcheck source=/dev/null
  . "$STATE"
}

api_key() { tr -d '\n' <"$DIR/origin1/api-key" 2>/dev/null || true; }

# --- up ----------------------------------------------------------------------

cmd_up() {
  if [ -e "$DIR" ]; then
    die "$DIR exists (a cluster set up before?): deploy/local-cluster.sh status, or down"
  fi
  command -v curl >/dev/null || die "curl is needed"
  [ -x "$PGBIN/initdb" ] || die "no PostgreSQL binaries in $PGBIN (Debian: apt-get install postgresql-15; or set UPDRAFT_PGBIN)"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root: PostgreSQL must run as the 'postgres' user, which does not exist"
  fi
  local weed
  weed=$(weed_binary)

  mkdir -p "$DIR"/{bin,logs,pids,weed/data,origin1,origin2,edge1,edge2}
  chmod 755 "$DIR" # the postgres user must reach its data folder inside
  UP_OK=0
  trap 'if [ "$UP_OK" = 0 ]; then say "local-cluster: up failed; logs:"; tail_logs; cmd_down >/dev/null 2>&1 || true; fi' EXIT

  local bin=${UPDRAFT_BIN:-$DIR/bin/updraft}
  if [ -z "${UPDRAFT_BIN:-}" ]; then
    say "== go build -o $bin ./cmd/updraft"
    (cd "$ROOT" && go build -o "$bin" ./cmd/updraft)
  fi

  # Ports and secrets, kept in cluster.env (0600) for status, env and down.
  pick PG_PORT 18432; pick S3_PORT 18333
  pick ORIGIN1_PORT 18090; pick ORIGIN2_PORT 18091
  pick EDGE1_PORT 18080; pick EDGE1_TLS_PORT 18443
  pick EDGE2_PORT 18081; pick EDGE2_TLS_PORT 18444
  local wm wmg wv wvg wf wfg ws3g
  pick wm 18900; pick wmg 18901; pick wv 18902; pick wvg 18903
  pick wf 18904; pick wfg 18905; pick ws3g 18906
  PG_PASSWORD=$(randhex 16)
  S3_ACCESS_KEY=updraft$(randhex 6); S3_SECRET_KEY=$(randhex 20)
  STORE_URL="postgres://updraft:$PG_PASSWORD@127.0.0.1:$PG_PORT/updraft"
  BLOBS_URL="s3://$BUCKET?endpoint=127.0.0.1:$S3_PORT&region=$REGION&insecure=1"
  (
    umask 077
    for v in PG_PORT S3_PORT ORIGIN1_PORT ORIGIN2_PORT EDGE1_PORT EDGE1_TLS_PORT EDGE2_PORT EDGE2_TLS_PORT \
             PG_PASSWORD S3_ACCESS_KEY S3_SECRET_KEY STORE_URL BLOBS_URL; do
      printf "%s='%s'\n" "$v" "${!v}"
    done
    printf "BIN='%s'\nPGBIN='%s'\n" "$bin" "$PGBIN"
  ) >"$STATE"

  say "== PostgreSQL 15 on 127.0.0.1:$PG_PORT"
  mkdir -p "$DIR/pg"
  [ "$(id -u)" != 0 ] || chown postgres: "$DIR/pg"
  (umask 077; printf '%s\n' "$PG_PASSWORD" >"$DIR/pg/pwfile")
  [ "$(id -u)" != 0 ] || chown postgres: "$DIR/pg/pwfile"
  as_pg "$PGBIN/initdb" -D "$DIR/pg/data" -U updraft --pwfile="$DIR/pg/pwfile" -E UTF8 \
    --auth-host=scram-sha-256 --auth-local=trust --no-sync --no-instructions >"$DIR/logs/initdb.log" 2>&1 ||
    { cat "$DIR/logs/initdb.log" >&2; die "initdb failed"; }
  rm -f "$DIR/pg/pwfile"
  as_pg "$PGBIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$DIR/pg" start >/dev/null
  as_pg "$PGBIN/createdb" -h "$DIR/pg" -p "$PG_PORT" -U updraft updraft

  say "== SeaweedFS S3 on 127.0.0.1:$S3_PORT (bucket $BUCKET, signed requests only)"
  (
    umask 077
    printf '{"identities":[{"name":"updraft","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","List","Tagging","Write"]}]}\n' \
      "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$DIR/weed/s3.json"
  )
  (cd "$DIR/weed" && start_bg weed "$weed" server -dir="$DIR/weed/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$wm" -master.port.grpc="$wmg" -volume.port="$wv" -volume.port.grpc="$wvg" \
    -filer -filer.port="$wf" -filer.port.grpc="$wfg" \
    -s3 -s3.port="$S3_PORT" -s3.port.grpc="$ws3g" -s3.config="$DIR/weed/s3.json" \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false -volume.preStopSeconds=0 \
    -filer.localSocket="$DIR/weed/filer.sock" -s3.localSocket="$DIR/weed/s3.sock" \
    -master.volumeSizeLimitMB=256 -volume.max=64)
  record_exe weed "$weed"
  wait_until 120 "SeaweedFS" "$DIR/pids/weed" s3_ready

  local backend_env=(env "UPDRAFT_STORE=$STORE_URL" "UPDRAFT_BLOBS=$BLOBS_URL"
    "AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY" "AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY" "AWS_REGION=$REGION")
  # Origin 1 first: on a new database it creates the keys that origin 2 then
  # shares through PostgreSQL.
  for i in 1 2; do
    local port_var="ORIGIN${i}_PORT"
    say "== origin $i on 127.0.0.1:${!port_var}"
    start_bg "origin$i" "${backend_env[@]}" "$bin" origin --data "$DIR/origin$i" --listen "127.0.0.1:${!port_var}"
    record_exe "origin$i" "$bin"
    wait_until 60 "origin $i" "$DIR/pids/origin$i" http_ok "http://127.0.0.1:${!port_var}/healthz"
  done

  local pub
  pub=$("${backend_env[@]}" "$bin" keys show --pubkey --data "$DIR/origin1") || die "updraft keys show on origin 1 failed"
  [ -s "$DIR/origin1/edge-key" ] || die "origin 1 wrote no edge key ($DIR/origin1/edge-key)"
  printf "ORIGIN_PUBKEY='%s'\n" "$pub" >>"$STATE"

  say "== edge 1 on 127.0.0.1:$EDGE1_PORT (HTTPS + HTTP/3 127.0.0.1:$EDGE1_TLS_PORT), upstream origin 1, origin 2"
  start_bg edge1 "$bin" edge --data "$DIR/edge1" --listen "127.0.0.1:$EDGE1_PORT" \
    --tls self-signed --tls-listen "127.0.0.1:$EDGE1_TLS_PORT" \
    --upstream "http://127.0.0.1:$ORIGIN1_PORT,http://127.0.0.1:$ORIGIN2_PORT" \
    --origin-pubkey "$pub" --edge-key-file "$DIR/origin1/edge-key"
  record_exe edge1 "$bin"
  wait_until 60 "edge 1" "$DIR/pids/edge1" http_ok "http://127.0.0.1:$EDGE1_PORT/readyz"

  say "== edge 2 on 127.0.0.1:$EDGE2_PORT (HTTPS + HTTP/3 127.0.0.1:$EDGE2_TLS_PORT), upstream edge 1 (shield), then origin 2"
  start_bg edge2 "$bin" edge --data "$DIR/edge2" --listen "127.0.0.1:$EDGE2_PORT" \
    --tls self-signed --tls-listen "127.0.0.1:$EDGE2_TLS_PORT" \
    --upstream "http://127.0.0.1:$EDGE1_PORT,http://127.0.0.1:$ORIGIN2_PORT" \
    --origin-pubkey "$pub" --edge-key-file "$DIR/origin1/edge-key"
  record_exe edge2 "$bin"
  wait_until 60 "edge 2" "$DIR/pids/edge2" http_ok "http://127.0.0.1:$EDGE2_PORT/readyz"

  UP_OK=1
  trap - EXIT
  say ""
  say "updraft local cluster is up (state and logs in $DIR)"
  print_info
}

tail_logs() {
  local f
  for f in "$DIR"/logs/*.log "$DIR"/pg/postgres.log; do
    [ -s "$f" ] || continue
    say "--- $f (last 15 lines)"
    tail -n 15 "$f"
  done
}

print_info() {
  load_state
  cat <<EOF

  PostgreSQL 15   postgres://updraft:…@127.0.0.1:$PG_PORT/updraft   (password in $STATE)
  SeaweedFS S3    http://127.0.0.1:$S3_PORT  bucket $BUCKET  (access key $S3_ACCESS_KEY)
  origin 1        http://127.0.0.1:$ORIGIN1_PORT   operator API /api/v1, analytics /ui
  origin 2        http://127.0.0.1:$ORIGIN2_PORT   same database and bucket
  edge 1          http://127.0.0.1:$EDGE1_PORT/updates   https://127.0.0.1:$EDGE1_TLS_PORT (HTTP/3 too)
  edge 2          http://127.0.0.1:$EDGE2_PORT/updates   https://127.0.0.1:$EDGE2_TLS_PORT  (behind edge 1)
  API key         $(api_key)
  origin pubkey   ${ORIGIN_PUBKEY:-?}

Point the updraft CLI at it (either origin takes every command):
  eval "\$(deploy/local-cluster.sh env)"
  updraft app create com.example.app         # or: $BIN app create ...
  updraft bundle upload testdata/swagger-ui-5.34.0.zip --app com.example.app --version 1.0.1
  updraft channel set production --app com.example.app --bundle 1.0.1 --default
  curl -s -X POST http://127.0.0.1:$EDGE2_PORT/updates -H 'Content-Type: application/json' \\
    -d '{"app_id":"com.example.app","device_id":"00009a6b-eefe-490a-9c60-8e965132ae51","version_name":"builtin","version_build":"1.0.0","platform":"ios","plugin_version":"8.51.14","is_emulator":false,"is_prod":true}'
Stop and delete everything: deploy/local-cluster.sh down
EOF
}

# --- status, env, down -------------------------------------------------------

cmd_status() {
  load_state
  local rc=0 name url state
  printf '%-9s %-8s %-7s %s\n' COMPONENT PID STATE CHECK
  if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then state=ready; else state=down; rc=1; fi
  printf '%-9s %-8s %-7s %s\n' postgres "$(head -n1 "$DIR/pg/data/postmaster.pid" 2>/dev/null || echo -)" "$state" "pg_isready 127.0.0.1:$PG_PORT"
  for name in weed origin1 origin2 edge1 edge2; do
    case $name in
      weed) url="http://127.0.0.1:$S3_PORT/healthz" ;;
      origin1) url="http://127.0.0.1:$ORIGIN1_PORT/healthz" ;;
      origin2) url="http://127.0.0.1:$ORIGIN2_PORT/healthz" ;;
      edge1) url="http://127.0.0.1:$EDGE1_PORT/readyz" ;;
      edge2) url="http://127.0.0.1:$EDGE2_PORT/readyz" ;;
    esac
    if ! ours "$name"; then
      state=exited; rc=1
    elif http_ok "$url"; then
      state=ready
    else
      state=unready; rc=1
    fi
    printf '%-9s %-8s %-7s %s\n' "$name" "$(cat "$DIR/pids/$name" 2>/dev/null || echo -)" "$state" "$url"
  done
  if ours edge2; then
    say ""
    say "edge 2 /readyz: $(curl -sS -m 2 "http://127.0.0.1:$EDGE2_PORT/readyz" 2>&1 || true)"
  fi
  print_info
  return $rc
}

cmd_env() {
  load_state
  cat <<EOF
export UPDRAFT_ORIGIN='http://127.0.0.1:$ORIGIN1_PORT'
export UPDRAFT_API_KEY='$(api_key)'
export PATH='$(dirname "$BIN")':"\$PATH"
EOF
}

cmd_down() {
  local keep=${1:-}
  if [ ! -d "$DIR" ]; then
    say "no cluster in $DIR"
    return 0
  fi
  say "== stopping the cluster in $DIR"
  # Edges first (they flush device events to the origins), then origins,
  # then the stores. SeaweedFS takes ~15 s to stop gracefully (its filer
  # retries a metadata flush); its data is deleted next unless --keep.
  stop_group 20 edge2 edge1
  stop_group 20 origin2 origin1
  if [ "$keep" = --keep ]; then stop_group 30 weed; else stop_group 2 weed; fi
  if [ -f "$DIR/pg/data/postmaster.pid" ]; then
    local pg=${PGBIN}
    # shellcheck source=/dev/null
    [ -f "$STATE" ] && pg=$(. "$STATE"; echo "$PGBIN")
    as_pg "$pg/pg_ctl" -D "$DIR/pg/data" -m fast -w -t 30 stop >/dev/null && say "  stopped postgres"
  fi
  if [ "$keep" = --keep ]; then
    say "kept $DIR (delete it before the next up)"
  else
    rm -rf "$DIR"
    say "deleted $DIR"
  fi
}

case "${1:-}" in
  up) cmd_up ;;
  status) cmd_status ;;
  env) cmd_env ;;
  down) cmd_down "${2:-}" ;;
  -h | --help | help) usage 0 ;;
  *) usage 2 >&2 ;;
esac
