#!/usr/bin/env bash
# The device inventory at scale (issue 20): fill DEVICES devices (default 1,000,000) straight into
# the event store (bulk insert), then time `device list` pages (100 devices) without a filter and
# with each filter — first page, a page from the middle of the keyset, and through a real origin's
# API — and 50 consecutive API pages of 1000; measure the storage per device (SQLite: dbstat
# pages of the table and each index; PostgreSQL: pg_relation_size of each), then the storage per
# log entry after 2,000 devices × 60 check-ins and events through the real ingest path.
# On SQLite, then PostgreSQL 15 (started by internal/testenv from /usr/lib/postgresql/15/bin, or
# UPDRAFT_PG_URL).
#
#   bench/device-inventory.sh [DEVICES]                 (default 1000000; about 10 minutes on 2 cores)
#   ENGINES=sqlite bench/device-inventory.sh 1000000    (one engine)
#
# Fails when a page's median time is over 100 ms.
set -euo pipefail
DEVICES=${1:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
UPDRAFT_BENCH_DEVICES=$DEVICES UPDRAFT_BENCH_ENGINES=${ENGINES:-} \
  go test ./bench/ -run 'TestDeviceInventoryScale$' -count=1 -v -timeout 60m 2>&1 | grep -v ' INFO '
