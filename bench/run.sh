#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh - reproduce the figures of docs/performance.md from a fresh
# clone: build dmarcpipe (Release), start a private embedded PostgreSQL cluster
# in a temp DMARCPIPE_HOME, run `dmarcpipe bench` for a 100k- and a 1M-record
# report (plus the small-report set), keep table + JSON, stop the cluster.
#
# Environment: RUNS (default 5), SIZES (big-report records, default
# "100000 1000000"), SMALL (small reports, default 2000), SEED (default 1),
# OUT (results dir, default build/bench-results), BUILD (build dir, default
# build/bench), DP_BENCH_NO_DEPS=1 to skip scripts/install-deps.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5}
SIZES=${SIZES:-"100000 1000000"}
SMALL=${SMALL:-2000}
SEED=${SEED:-1}
OUT=${OUT:-$ROOT/build/bench-results}
BUILD=${BUILD:-$ROOT/build/bench}

[ -n "${DP_BENCH_NO_DEPS:-}" ] || bash "$ROOT/scripts/install-deps.sh"
# -O3 finds format-truncation "may be truncated" cases that -O2 does not; they
# are warnings about message buffers, not about what is measured.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDP_BUILD_TESTS=OFF \
  -DCMAKE_C_FLAGS="-Wno-error=format-truncation" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target dmarcpipe >/dev/null
BIN=$BUILD/dmarcpipe
mkdir -p "$OUT"

export DMARCPIPE_HOME
DMARCPIPE_HOME=$(mktemp -d /tmp/dmarcpipe-bench-home.XXXXXX)
chmod 755 "$DMARCPIPE_HOME"
stop_cluster() { "$BIN" db stop >/dev/null 2>&1 || true; rm -rf "$DMARCPIPE_HOME"; }
trap stop_cluster EXIT
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE
"$BIN" db start >/dev/null
DB=$("$BIN" db conninfo)

{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -srm), $(nproc) CPUs"
  echo "# $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git')"
} >"$OUT/machine.txt"
for n in $SIZES; do
  echo "== big report of $n records, $SMALL small reports, $RUNS runs =="
  "$BIN" bench --seed "$SEED" --runs "$RUNS" --big-records "$n" --reports "$SMALL" \
    --db "$DB" --json-file "$OUT/bench-$n.json" | tee "$OUT/bench-$n.txt"
  echo
done
echo "results: $OUT"
