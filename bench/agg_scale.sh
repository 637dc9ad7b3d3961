#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/agg_scale.sh - the aggregate catch-up at scale: for each binary given,
# loads the input directories into a fresh database of the running embedded
# cluster with `ingest --no-aggregate` (timed apart), then times `db aggregate`
# from empty aggregates and prints records/s and the agg_* table sizes.
# Binaries alternate, so A/B figures share the machine's conditions.
# Not a test: figures go to docs/performance.md ("Branch aggfast2").
#
# usage: bench/agg_scale.sh INPUT_DIR... -- DMARCPIPE_BINARY...
#   DMARCPIPE_HOME   the cluster (`dmarcpipe db start` first)
#   ROUNDS=n         rounds over the binaries (default 1)
#   JOBS=n           ingest --jobs (default 2)
set -euo pipefail
inputs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do inputs+=("$1"); shift; done
[ $# -gt 0 ] && shift
if [ ${#inputs[@]} -eq 0 ] || [ $# -eq 0 ]; then sed -n 3,14p "$0" >&2; exit 2; fi
bins=("$@")
ci=$("${bins[0]}" db conninfo)
for r in $(seq 1 "${ROUNDS:-1}"); do
  for i in "${!bins[@]}"; do
    b=${bins[$i]}
    db="dp_agg_scale_$$_$i"
    psql "$ci" -Xqc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" > /dev/null
    dsn="$ci dbname=$db"
    t0=$(date +%s.%N)
    "$b" ingest --no-aggregate --jobs "${JOBS:-2}" --quiet --db "$dsn" "${inputs[@]}" || true
    t1=$(date +%s.%N)
    recs=$(psql "$dsn" -XAtqc "SELECT coalesce(sum(n_records), 0) FROM report")
    t2=$(date +%s.%N)
    "$b" db aggregate --db "$dsn" > /dev/null
    t3=$(date +%s.%N)
    printf 'round %s  %s\n  ingest %.1f s, %s records; catch-up %.1f s, %.0f records/s (load %s)\n' \
      "$r" "$b" "$(echo "$t1 - $t0" | bc)" "$recs" "$(echo "$t3 - $t2" | bc)" \
      "$(echo "$recs / ($t3 - $t2)" | bc -l)" "$(cut -d' ' -f1 /proc/loadavg)"
    printf '  %s\n' "$(psql "$dsn" -XAtqc "SELECT string_agg(relname || ' ' ||
      pg_size_pretty(pg_total_relation_size(oid)), ', ' ORDER BY pg_total_relation_size(oid) DESC)
      FROM pg_class WHERE relname LIKE 'agg\_%' AND relkind = 'r'")"
    psql "$ci" -Xqc "DROP DATABASE $db" > /dev/null
  done
done
