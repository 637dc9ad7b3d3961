#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/query_scale.sh - query times at scale: builds a database of about
# RECORDS stored records (default 10 million) from the `sample` generator
# (one domain, 90 days, the same sending sources day after day, several report
# streams per receiver) through `dmarcpipe ingest --no-aggregate` and `dmarcpipe
# db aggregate` (timed apart), then prints the median of 3
# runs of senders, readiness, domains, senders --by day and report --html.
# Not a test: figures go to docs/performance.md ("Queries at scale").
#
# usage: bench/query_scale.sh [RECORDS]
#   DMARCPIPE=path    the binary (default: build a Release one in build/bench)
#   WORK=dir          generated reports and the cluster (default: a temp dir, removed)
#   KEEP=1            keep WORK (the database stays for EXPLAIN ANALYZE)
#   RUNS=n            runs per query (default 3)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
records=${1:-10000000}
runs=${RUNS:-3}
domain=example.com

if [[ -z "${DMARCPIPE:-}" ]]; then
  cmake -S "$here" -B "$here/build/bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$here/build/bench" -j"$(nproc)" --target dmarcpipe >/dev/null
  DMARCPIPE=$here/build/bench/dmarcpipe
fi
dp=$DMARCPIPE

work=${WORK:-$(mktemp -d /tmp/dp-query-scale.XXXXXX)}
mkdir -p "$work"
chmod 755 "$work"
export DMARCPIPE_HOME=$work/home
mkdir -p "$DMARCPIPE_HOME"
chmod 755 "$DMARCPIPE_HOME"
unset PGHOST PGPORT PGDATABASE PGUSER PGSERVICE

cleanup() {
  "$dp" db stop >/dev/null 2>&1 || true
  if [[ "${KEEP:-}" != 1 && -z "${WORK:-}" ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT

"$dp" db start >/dev/null
db=$("$dp" db conninfo)

# One `sample --scale 64 --days 90` stream is about 1.32 million records; each
# further seed is another set of reports (new report ids and counts, new
# spoofing sources) for the same domain, days and legitimate sources.
per_seed=1320000
seeds=$(( (records + per_seed - 1) / per_seed ))
days=90
scale=64
if (( seeds == 1 && records < per_seed )); then
  scale=$(( records * 64 / per_seed ))
  (( scale < 1 )) && scale=1
fi

t0=$(date +%s.%N)
inputs=()
for ((s = 1; s <= seeds; s++)); do
  "$dp" sample --out "$work/s$s" --seed "$s" --domain "$domain" --days "$days" \
    --end 2026-11-01 --scale "$scale" >/dev/null 2>&1
  inputs+=("$work/s$s/reports")
done
t1=$(date +%s.%N)
"$dp" ingest --quiet --no-aggregate --jobs 2 --db "$db" "${inputs[@]}"
t2=$(date +%s.%N)
"$dp" db aggregate --db "$db" >/dev/null
t3=$(date +%s.%N)

psql_q() { psql "$db" -XAtqc "$1"; }
n_records=$(psql_q "SELECT count(*) FROM record")
n_reports=$(psql_q "SELECT count(*) FROM report")
size=$(psql_q "SELECT pg_size_pretty(pg_database_size(current_database()))")
echo "database: $n_records records in $n_reports reports ($seeds seed(s) x $days days, scale $scale), $size"
printf 'generate %.1f s, ingest %.1f s (%.0f records/s), catch-up %.1f s (%.0f records/s)\n' \
  "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$n_records / ($t2 - $t1)" | bc)" \
  "$(echo "$t3 - $t2" | bc)" "$(echo "$n_records / ($t3 - $t2)" | bc)"
for t in agg_sender agg_sender_all agg_ip agg_dkim agg_spf agg_class agg_fail_ip agg_fwd_ip agg_good_sig \
         agg_dis_pair agg_report; do
  echo "  $t: $(psql_q "SELECT count(*) FROM $t") rows"
done

median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

time_cmd() {
  local label=$1
  shift
  local ts=()
  for ((i = 0; i < runs; i++)); do
    local a b
    a=$(date +%s.%N)
    "$dp" "$@" --db "$db" >/dev/null
    b=$(date +%s.%N)
    ts+=("$(echo "$b - $a" | bc)")
  done
  printf '%-40s median %.3f s  (runs: %s)\n' "$label" "$(printf '%s\n' "${ts[@]}" | median)" "${ts[*]}"
}

time_cmd "senders --domain $domain" senders --domain "$domain"
time_cmd "readiness --domain $domain" readiness --domain "$domain"
time_cmd "domains" domains
time_cmd "senders --domain $domain --by day" senders --domain "$domain" --by day
time_cmd "readiness --domain $domain --since 30d*" readiness --domain "$domain" --since 2026-10-02
time_cmd "report --domain $domain --html" report --domain "$domain" --html "$work/report.html"
echo "(*) --since 2026-10-02: the last 30 days of the data"
