#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/copy_costs.sh - where PostgreSQL's time goes when it takes record rows.
# COPYs the big report's rows (the exact rows dmarcpipe sends, written by
# `dmarcpipe bench --workdir`) into tables that differ by one property at a
# time - temp (no WAL), unlogged, logged, + the old primary key or today's
# index on report_key, the real partitioned `record` - so the cost of each
# layer is the difference of two medians, by wall time and by the backend's
# own CPU time.
# Not a test: figures go to docs/performance.md ("Server cost per record row").
#
# usage: bench/copy_costs.sh [RECORDS]   (default 200000)
#   DMARCPIPE=path  the binary (default: build a Release one in build/bench)
#   RUNS=n          runs per table (default 5)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
records=${1:-200000}
runs=${RUNS:-5}

if [[ -z "${DMARCPIPE:-}" ]]; then
  cmake -S "$here" -B "$here/build/bench" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS="-Wno-error=format-truncation" >/dev/null
  cmake --build "$here/build/bench" -j"$(nproc)" --target dmarcpipe >/dev/null
  DMARCPIPE=$here/build/bench/dmarcpipe
fi
dp=$DMARCPIPE

work=$(mktemp -d /tmp/dp-copy-costs.XXXXXX)
chmod 755 "$work"
export DMARCPIPE_HOME=$work/home
mkdir -p "$DMARCPIPE_HOME"
chmod 755 "$DMARCPIPE_HOME"
cleanup() { "$dp" db stop >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE

"$dp" bench --runs 1 --big-records "$records" --reports 1 --sink null \
  --workdir "$work/corpus" >/dev/null
rows=$work/corpus/big.copy
chmod 644 "$rows"
"$dp" db start >/dev/null
db=$("$dp" db conninfo)
"$dp" db migrate --db "$db" >/dev/null
begin_ts=$(head -n 1 "$rows" | cut -f 2)
psql "$db" -qAt -v ON_ERROR_STOP=1 -c "SELECT dp_ensure_record_partition('$begin_ts')" >/dev/null

# the record columns with every array as text: what the arrays cost to parse
astext=$(psql "$db" -qAt -c "SELECT string_agg(format('%I %s', attname,
  CASE WHEN t.typcategory = 'A' THEN 'text' ELSE format_type(atttypid, atttypmod) END), ', '
  ORDER BY attnum) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  WHERE attrelid = 'record'::regclass AND attnum > 0 AND NOT attisdropped")

# one COPY into the table made by $2, in its own transaction rolled back (so
# every run starts from the same empty table); prints the wall milliseconds
# and the backend's CPU milliseconds (user + system, from its own
# log_statement_stats: steadier than wall time on a busy machine)
copy_ms() {
  local setup=$1 target=$2
  psql "$db" -qAt -v ON_ERROR_STOP=1 2>&1 <<SQL | awk '
    /^Time: / { wall = $2 }
    /s user, .* s system, .* s elapsed/ && !cpu { gsub(/^[!\t ]+/, ""); cpu = ($1 + $4) * 1000 }
    END { printf "%s %.1f\n", wall, cpu }'
BEGIN;
$setup
SET client_min_messages = log;
SET log_statement_stats = on;
\timing on
\copy $target from '$rows'
\timing off
SET log_statement_stats = off;
ROLLBACK;
SQL
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -a names setups targets
add() { names+=("$1"); setups+=("$2"); targets+=("$3"); }
add "temp table, no index (the bench's COPY ceiling)" "CREATE TEMP TABLE t (LIKE record);" t
# (none since migration 0008 made the auth results text lists; the row is
# kept for a schema with arrays)
if [[ "$(psql "$db" -qAt -c "SELECT count(*) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  WHERE attrelid = 'record'::regclass AND attnum > 0 AND NOT attisdropped AND t.typcategory = 'A'")" != 0 ]]; then
  add "temp table, arrays as text" "CREATE TEMP TABLE t ($astext);" t
fi
add "unlogged table" "CREATE UNLOGGED TABLE t (LIKE record);" t
add "logged table (WAL)" "CREATE TABLE t (LIKE record);" t
add "logged + primary key" "CREATE TABLE t (LIKE record); ALTER TABLE t ADD PRIMARY KEY (report_key, seq, begin_ts);" t
add "logged + index on report_key (record's since 0007)" "CREATE TABLE t (LIKE record); CREATE INDEX ON t (report_key);" t
add "record (partitioned, as migrated)" "" record
add "record + the primary key it had before 0007" "ALTER TABLE record ADD PRIMARY KEY (report_key, seq, begin_ts);" record

echo "COPY of $records record rows ($(du -m "$rows" | cut -f1) MB), median of $runs runs:"
printf '%-52s %10s %12s %12s\n' "table" "ms" "rows/s" "backend ms"
for i in "${!names[@]}"; do
  out=$(for _ in $(seq "$runs"); do copy_ms "${setups[$i]}" "${targets[$i]}"; done)
  ms=$(cut -d' ' -f1 <<<"$out" | median)
  cpu=$(cut -d' ' -f2 <<<"$out" | median)
  printf '%-52s %10.0f %12.0f %12.0f\n' "${names[$i]}" "$ms" "$(echo "$records * 1000 / $ms" | bc -l)" "$cpu"
done
