#!/usr/bin/env bash
# The origin on PostgreSQL and S3 (issue 13), measured in one run:
#   1. propagation: a channel change written on origin A until an edge that
#      follows only origin B answers it (two origin processes on one
#      PostgreSQL store and one S3 bucket; 300 changes; background work
#      settled first);
#   2. event ingest at the origin, one segment of 1,000 events per op, on
#      SQLite and on PostgreSQL (BenchmarkIngestSegment: the store tests
#      re-run themselves on PostgreSQL);
#   3. upload-to-ready: two uploads of a real bundle pair (swagger-ui 5.34.0
#      then 5.34.1) until the second one's manifest, canonical archive and
#      deltas are built, blobs on files and on S3, on both store engines.
#
#   bench/cluster.sh
#
# Needs: go, PostgreSQL 15 binaries (/usr/lib/postgresql/15/bin) and
# SeaweedFS's weed (UPDRAFT_WEED, or the one .ci/run builds into
# ~/.cache/updraft). Everything runs on 127.0.0.1 and is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
# PostgreSQL with its durable defaults (fsync, synchronous commit), as operators run it.
export UPDRAFT_REQUIRE_PG=1 UPDRAFT_REQUIRE_S3=1 UPDRAFT_PG_DURABLE=1

echo "== 1. propagation, write on origin A → edge following origin B"
go test -count=1 -run '^TestClusterPropagation$' -v ./cmd/updraft/ 2>&1 | grep -E 'propagation,|^(--- |ok|FAIL)'

echo "== 2. event ingest at the origin (1,000-event segments): SQLite, then PostgreSQL"
go test -count=1 -run '^$' -bench '^BenchmarkIngestSegment$' -benchtime 5s ./origin/ 2>&1 | grep -E '^Benchmark|PostgreSQL|^(ok|FAIL)'

echo "== 3. upload-to-ready of a bundle pair, blobs on files and on S3: SQLite, then PostgreSQL"
go test -count=1 -run '^$' -bench '^BenchmarkUploadToReady$' -benchtime 3x ./origin/ 2>&1 | grep -E '^Benchmark|PostgreSQL|^(ok|FAIL)'
