#!/usr/bin/env bash
# Bytes on the wire and build/apply times of every way to ship an update, for
# both pairs of the fixture releases (swagger-ui 5.34.0 → 5.34.1 → 5.35.0):
# full zip, full brotli, file-level manifest (changed files, brotli each, as
# Capgo's manifest mode ships them), Debian bsdiff, the zstd CLI's
# --patch-from, and Updraft's dcz and dcb deltas. All binary deltas are
# computed on the canonical archives (see origin/delta) and checked by
# SHA-256 after applying.
#
#   bench/delta-vs-tools.sh
#
# Needs: go, zstd, bsdiff, brotli (Debian: apt-get install zstd bsdiff brotli).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for tool in go zstd bsdiff bspatch brotli; do
  command -v "$tool" >/dev/null || { echo "missing $tool (Debian: apt-get install zstd bsdiff brotli)" >&2; exit 1; }
done
(cd "$ROOT" && go build -o "$WORK/updraft" ./cmd/updraft)
U="$WORK/updraft"

ms() { # run a command, print elapsed milliseconds
  local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N); echo $(( (e - s) / 1000000 ))
}
size() { stat -c %s "$1"; }
sha() { sha256sum "$1" | cut -c1-64; }

printf "| update | method | bytes | vs zstd CLI | build ms | apply ms |\n|---|---|---:|---:|---:|---:|\n"
for pair in "5.34.0 5.34.1" "5.34.1 5.35.0"; do
  set -- $pair
  old="$ROOT/testdata/swagger-ui-$1.zip"; new="$ROOT/testdata/swagger-ui-$2.zip"
  d="$WORK/$1-$2"; mkdir -p "$d/old" "$d/new"
  "$U" delta canonical --from "$old" -o "$d/old.tar" >/dev/null
  "$U" delta canonical --from "$new" -o "$d/new.tar" >/dev/null
  want=$(sha "$d/new.tar")
  declare -A B T A

  B[zip]=$(size "$new"); T[zip]=-; A[zip]=-
  T[brotli]=$(ms brotli -q 11 -f -o "$d/full.br" "$d/new.tar"); B[brotli]=$(size "$d/full.br")
  A[brotli]=$(ms brotli -d -f -o "$d/full.out" "$d/full.br"); [ "$(sha "$d/full.out")" = "$want" ]

  # File level: the files of the new release whose content changed (or are new), brotli each.
  tar -xf "$d/old.tar" -C "$d/old"; tar -xf "$d/new.tar" -C "$d/new"
  fl=0; s=$(date +%s%N)
  while IFS= read -r -d '' f; do
    rel=${f#"$d/new/"}
    if [ ! -f "$d/old/$rel" ] || ! cmp -s "$f" "$d/old/$rel"; then
      brotli -q 11 -c "$f" > "$d/file.br"; fl=$((fl + $(size "$d/file.br")))
    fi
  done < <(find "$d/new" -type f -print0)
  e=$(date +%s%N); B[files]=$fl; T[files]=$(( (e - s) / 1000000 )); A[files]=-

  T[bsdiff]=$(ms bsdiff "$d/old.tar" "$d/new.tar" "$d/p.bsdiff"); B[bsdiff]=$(size "$d/p.bsdiff")
  A[bsdiff]=$(ms bspatch "$d/old.tar" "$d/bs.out" "$d/p.bsdiff"); [ "$(sha "$d/bs.out")" = "$want" ]

  T[zstd]=$(ms zstd -q -19 --long=27 --patch-from="$d/old.tar" "$d/new.tar" -o "$d/p.zst" -f); B[zstd]=$(size "$d/p.zst")
  A[zstd]=$(ms zstd -q -d --long=27 --patch-from="$d/old.tar" "$d/p.zst" -o "$d/z.out" -f); [ "$(sha "$d/z.out")" = "$want" ]

  for enc in dcz dcb; do
    T[$enc]=$(ms "$U" delta build --from "$old" --to "$new" --encoding $enc -o "$d/p.$enc"); B[$enc]=$(size "$d/p.$enc")
    A[$enc]=$(ms "$U" delta apply --base "$old" --delta "$d/p.$enc" -o "$d/$enc.out"); [ "$(sha "$d/$enc.out")" = "$want" ]
  done
  for m in zip brotli files bsdiff zstd dcz dcb; do
    name=$m
    case $m in zip) name="full zip (deflate)";; brotli) name="full brotli -q 11";; files) name="file-level (changed files, brotli -q 11)";;
      bsdiff) name="bsdiff (Debian)";; zstd) name="zstd -19 --long=27 --patch-from";; dcz) name="Updraft dcz";; dcb) name="Updraft dcb";; esac
    printf "| %s → %s | %s | %d | %.2f× | %s | %s |\n" "$1" "$2" "$name" "${B[$m]}" "$(echo "${B[$m]} / ${B[zstd]}" | bc -l)" "${T[$m]}" "${A[$m]}"
  done
done
echo
echo "Updraft's build and apply times include reading the zips and building the canonical archives"
echo "(the CLI path); build includes the verification decode."
