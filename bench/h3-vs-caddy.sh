#!/usr/bin/env bash
# HTTP/3 delivery, Updraft edge vs Caddy (Debian package, file_server, h3 on),
# the same 5 MB file and the same small answer, measured in one run by the
# same client (`updraft bench fetch`, quic-go's HTTP/3 client): req/s, MB/s,
# latency, and the ratio Updraft/Caddy.
#
#   bench/h3-vs-caddy.sh [REQUESTS_5MB] [REQUESTS_SMALL]     (defaults: 100 3000)
#
# Needs: go, caddy (Debian: apt-get install caddy). Loopback only.
set -euo pipefail
N_BIG=${1:-100}
N_SMALL=${2:-3000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rm -rf "$WORK"' EXIT
for tool in go caddy; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: apt-get install caddy)" >&2; exit 1; }
done
(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft)
U="$WORK/updraft"

mkdir -p "$WORK/bundle"
echo '<!doctype html><title>bench</title>' > "$WORK/bundle/index.html"
head -c 5000000 /dev/urandom > "$WORK/bundle/app.bin"

"$U" serve --data "$WORK/data" --edge-listen 127.0.0.1:18080 --origin-listen 127.0.0.1:18090 \
  --tls self-signed --tls-listen 127.0.0.1:18443 --log-level warn 2>"$WORK/updraft.log" &
for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
C="--origin http://127.0.0.1:18090 --data $WORK/data"
"$U" app create com.bench.app $C >/dev/null
SHA=$("$U" bundle upload "$WORK/bundle" --app com.bench.app --version 1.0.1 --json $C | sed -n 's/.*"sha256": "\([0-9a-f]*\)".*/\1/p')
# Let the origin finish its background work on the upload before measuring.
for _ in $(seq 600); do "$U" bundle list --app com.bench.app --json $C | grep -q '"state": "ready"' && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:18080/b/$SHA"; curl -sf -o /dev/null "http://127.0.0.1:18080/b/$SHA"   # fill, promote

mkdir -p "$WORK/www/b" "$WORK/caddy"
cp "$WORK/data/blobs/${SHA:0:2}/$SHA" "$WORK/www/b/$SHA"
echo -n '{"status":"ok"}' > "$WORK/www/healthz"
chmod -R a+rX "$WORK/www"
cat > "$WORK/Caddyfile" <<CADDY
{
	admin off
	auto_https disable_redirects
	skip_install_trust
	storage file_system $WORK/caddy
	servers {
		protocols h1 h2 h3
	}
}
https://localhost:18444 {
	bind 127.0.0.1
	tls internal
	root * $WORK/www
	file_server
}
CADDY
XDG_DATA_HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy" HOME="$WORK/caddy" caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
for _ in $(seq 100); do curl -skf -o /dev/null "https://127.0.0.1:18444/healthz" && break; sleep 0.1; done

fetch() { "$U" bench fetch --proto h3 --insecure --json -n "$2" -c "$3" "$1"; }
field() { sed -n "s/.*\"$1\":\([0-9.e+]*\).*/\1/p"; }
row() { # name updraft-json caddy-json
  local ur um up cr cm cp
  ur=$(echo "$2" | field requests_per_sec); um=$(echo "$2" | field mb_per_sec); up=$(echo "$2" | sed -n 's/.*"p99_ms":\([0-9.e+]*\).*/\1/p')
  cr=$(echo "$3" | field requests_per_sec); cm=$(echo "$3" | field mb_per_sec); cp=$(echo "$3" | sed -n 's/.*"p99_ms":\([0-9.e+]*\).*/\1/p')
  printf "| %-32s | %9.1f | %8.1f | %8.2f | %9.1f | %8.1f | %8.2f | %5.2f× |\n" "$1" "$ur" "$um" "$up" "$cr" "$cm" "$cp" "$(echo "$ur / $cr" | bc -l)"
}
echo "HTTP/3 on 127.0.0.1, $(nproc) cores, $(date -u +%F); client: updraft bench fetch (quic-go)"
echo "| test | updraft req/s | MB/s | p99 ms | caddy req/s | MB/s | p99 ms | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for c in 1 8; do
  u=$(fetch "https://localhost:18443/b/$SHA" "$N_BIG" $c); k=$(fetch "https://localhost:18444/b/$SHA" "$N_BIG" $c)
  row "5 MB file, $c at a time" "$u" "$k"
done
u=$(fetch "https://localhost:18443/healthz" "$N_SMALL" 16); k=$(fetch "https://localhost:18444/healthz" "$N_SMALL" 16)
row "small answer, 16 at a time" "$u" "$k"
echo "($(caddy version | head -1 | cut -d' ' -f1) serves the same bytes from its file_server; Updraft from its memory tier.)"
