#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/aggregates.sh - the aggregates of migration 0003 under real
# ingest: three concurrent ingests of the sample scenario (with broken inputs),
# each catching up at its end at the same time as the others, and a repeated
# one leave every agg_* table equal to a rebuild from `record` (nothing counted
# twice or lost), with message totals equal to the records'; the real-world
# corpus likewise; the query answers do not change when the aggregates are
# rebuilt; reports left pending (--no-aggregate) are folded exactly once by
# three concurrent `db aggregate`, or by the first query; a database at
# schema 2 gets its reports pending; databases at schema 3 and at schema 7
# (auth results as arrays) with aggregates, migrated to the newest schema,
# keep their records exactly and answer the same.
source "$(dirname "$0")/lib/common.bash"

RO_ROLE="dp_agg_ro_$$"
psql "$DP_TEST_DB dbname=postgres" -qc "CREATE ROLE \"$RO_ROLE\" LOGIN" > /dev/null
trap 'cleanup; psql "$DP_TEST_DB dbname=postgres" -qc "DROP ROLE IF EXISTS \"$RO_ROLE\"" >/dev/null 2>&1' EXIT

TABLES="agg_sender agg_sender_all agg_ip agg_dkim agg_spf agg_class agg_fail_ip agg_fwd_ip agg_good_sig
        dis_pair_norm agg_report"

# check_rebuild LABEL: the maintained tables equal dp_agg_rebuild()'s, and
# each message total equals sum(record.count).
check_rebuild() {
  local label=$1 t
  local want
  want=$(sql "SELECT coalesce(sum(count), 0) FROM record")
  expect_eq "$label: nothing pending" "$(sql "SELECT count(*) FROM agg_pending")" 0
  for t in agg_sender agg_ip agg_class agg_report; do
    expect_eq "$label: $t messages" "$(sql "SELECT coalesce(sum(messages), 0) FROM $t")" "$want"
  done
  expect_eq "$label: agg_dis_pair messages" \
    "$(sql "SELECT coalesce(sum(m), 0) FROM agg_dis_detail, unnest(d_messages) m")" "$want"
  # every pair has its details (a row per batch that saw it), and no detail
  # row is without its pair
  expect_eq "$label: agg_dis_detail rows without a pair, pairs without details" \
    "$(sql "SELECT (SELECT count(*) FROM agg_dis_detail d WHERE NOT EXISTS
                      (SELECT 1 FROM agg_dis_pair p WHERE p.k = d.k)),
                   (SELECT count(*) FROM agg_dis_pair p WHERE NOT EXISTS
                      (SELECT 1 FROM agg_dis_detail d WHERE d.k = p.k))")" "0|0"
  # agg_dis_pair's details are a row per batch (agg_dis_detail): compared as
  # sums per pair, domain, range, receiver and verdicts
  local q="BEGIN; CREATE TEMP VIEW dis_pair_norm AS
    SELECT k, header_from, source_ip, dk_pass_orgs, dk_fail_orgs, sp_pass_orgs, sp_fail_orgs,
           dk_re, sp_re, flagged, d.dom, d.b, d.e, d.org, d.pd, d.ps, bool_or(d.dkre) AS dkre,
           bool_or(d.spre) AS spre, sum(d.m) AS messages
      FROM agg_dis_pair JOIN agg_dis_detail USING (k),
           unnest(d_domain, d_begin, d_end, d_org, d_pd, d_ps, d_dk_re, d_sp_re,
                  d_messages) AS d(dom, b, e, org, pd, ps, dkre, spre, m)
     GROUP BY k, header_from, source_ip, dk_pass_orgs, dk_fail_orgs, sp_pass_orgs, sp_fail_orgs,
              dk_re, sp_re, flagged, d.dom, d.b, d.e, d.org, d.pd, d.ps;"
  for t in $TABLES; do q+="CREATE TEMP TABLE kept_$t AS TABLE $t;"; done
  q+="SELECT dp_agg_rebuild(); SELECT * FROM dp_agg_catch_up_batch(2147483647);"
  for t in $TABLES; do
    q+="SELECT '$t', (SELECT count(*) FROM $t), (SELECT count(*) FROM ((TABLE kept_$t EXCEPT ALL TABLE $t) UNION ALL (TABLE $t EXCEPT ALL TABLE kept_$t)) d);"
  done
  q+="ROLLBACK;"
  local line name rows diff
  while IFS='|' read -r name rows diff; do
    [ -n "$name" ] || continue
    expect_eq "$label: $name equals its rebuild ($rows rows)" "$diff" 0
  done < <(psql "$DB" -XAtq -c "$q" | grep -E '^(agg|dis)_')
}

MIGDIR="$(cd "$(dirname "$0")/../../store/migrations" && pwd)"
LATEST=$(find "$MIGDIR" -name '[0-9]*.sql' | sed 's|.*/0*\([0-9]*\)_.*|\1|' | sort -n | tail -1)

# old_schema_db NAME VERSION: a new database at schema VERSION (migrations
# 0001..VERSION applied by psql, as an older dmarcpipe left it) holding DB's
# reports and records (through record_arrays, the record layout of schemas
# 1-7, before schema 8; in monthly partitions, as ingest puts them); sets DB
# to it.
old_schema_db() {
  local name=$1 version=$2 f v
  psql "$DB" -XAtqc "COPY report TO STDOUT" > "$TMP/report.copy"
  local layout=record_arrays
  [ "$version" -ge 8 ] && layout=record
  psql "$DB" -XAtqc "COPY (SELECT * FROM $layout) TO STDOUT" > "$TMP/record.copy"
  new_db "$name"
  {
    for f in "$MIGDIR"/[0-9]*.sql; do
      v=$(basename "$f" | sed 's/^0*\([0-9]*\)_.*/\1/')
      if [ "$v" -le "$version" ]; then cat "$f"; echo; fi
    done
    echo "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now());"
    for f in "$MIGDIR"/[0-9]*.sql; do
      v=$(basename "$f" | sed 's/^0*\([0-9]*\)_.*/\1/')
      if [ "$v" -le "$version" ]; then
        echo "INSERT INTO schema_migrations (version, name) VALUES ($v, '$(basename "$f")');"
      fi
    done
  } | psql "$DB" -Xq -v ON_ERROR_STOP=1 > /dev/null
  psql "$DB" -Xqc "COPY report FROM STDIN" < "$TMP/report.copy"
  sql "SELECT count(dp_ensure_record_partition(b)) FROM (SELECT DISTINCT begin_ts AS b FROM report) r" > /dev/null
  psql "$DB" -Xqc "COPY record FROM STDIN" < "$TMP/record.copy"
}

# check_migration LABEL VERSION: the migrations after VERSION (3 or 7) on a
# database at that schema holding DB's reports and records, whose aggregates
# were folded by that schema's catch-up in several batches (agg_dis_pair's
# detail arrays grown batch after batch at schema 3) with a third of the
# reports still pending: after `db migrate` the records read back through
# record_arrays exactly as stored before (0008 rebuilt `record`: same
# partitions, checks and index), the answers equal DB's (the same records,
# aggregated by the newest catch-up alone), and every table, the moved
# details included, equals its rebuild. Leaves DB set to the migrated database.
check_migration() {
  local label=$1 version=$2 args nrep shape pend
  local queries=("senders --domain example.com --format json"
                 "readiness --domain example.com --by day --format json"
                 "domains --format json")
  for args in "${queries[@]}"; do
    # shellcheck disable=SC2086
    "$DP_BIN" $args --db "$DB" > "$TMP/ref-${args%% *}.json"
  done
  old_schema_db "agg_mig${version}_$label" "$version"
  nrep=$(sql "SELECT count(*) FROM report")
  expect_eq "$label schema $version: every report pending" "$(sql "SELECT count(*) FROM agg_pending")" "$nrep"
  while [ "$(sql "SELECT count(*) FROM agg_pending")" -gt $((nrep / 3)) ]; do
    sql "SELECT * FROM dp_agg_catch_up_batch(300)" > /dev/null
  done
  if [ "$version" -lt 5 ]; then
    expect_eq "$label schema $version: a pair's details from several batches" \
      "$(sql "SELECT max(cardinality(d_domain)) > 1 AND count(*) > 0 FROM agg_dis_pair")" t
  fi
  local before=record
  [ "$version" -ge 8 ] && before=record_arrays # the same layout for the comparison
  psql "$DB" -XAtqc "COPY (SELECT * FROM $before ORDER BY report_key, seq) TO STDOUT" > "$TMP/before.copy"
  local shape_sql="SELECT (SELECT string_agg(c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid), ', '
                                   ORDER BY c.relname)
                      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'record'::regclass),
                   (SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname)
                      FROM pg_constraint WHERE conrelid = 'record'::regclass AND contype = 'c')"
  shape=$(sql "$shape_sql")
  pend=$(sql "SELECT count(*) FROM agg_pending")
  # a reporting role a DBA granted the schema's tables to, before migrating
  sql "GRANT USAGE ON SCHEMA public TO \"$RO_ROLE\"; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"$RO_ROLE\"" > /dev/null
  "$DP_BIN" db migrate --db "$DB" > /dev/null
  expect_eq "$label: migrated to $LATEST" "$(sql "SELECT max(version) FROM schema_migrations")" "$LATEST"
  expect_eq "$label: the pending reports still pending" "$(sql "SELECT count(*) FROM agg_pending")" "$pend"
  psql "$DB" -XAtqc "COPY (SELECT * FROM record_arrays ORDER BY report_key, seq) TO STDOUT" > "$TMP/after.copy"
  cmp -s "$TMP/before.copy" "$TMP/after.copy" && ok \
    || fail "$label: record_arrays after the migrations differs from record before"
  expect_eq "$label: record's partitions and checks kept" "$(sql "$shape_sql")" "$shape"
  # the access path of 0007_record_key, on record and each partition,
  # whichever of 0007 and 0008 rebuilt the table last
  expect_eq "$label: record's index" \
    "$(sql "SELECT string_agg(indexname, ','), (SELECT count(*) FROM pg_inherits i
              WHERE i.inhparent = 'record'::regclass AND NOT EXISTS (SELECT 1 FROM pg_index x
                WHERE x.indrelid = i.inhrelid AND NOT x.indisunique))
              FROM pg_indexes WHERE tablename = 'record'")" "record_report_key|0"
  expect_eq "$label: the auth lists stored as text" \
    "$(sql "SELECT count(*) > 0 AND bool_and(dkim = '' OR dkim LIKE '%' || chr(31) || '%') FROM record")" t
  if [ "$version" -lt 5 ]; then
    expect_eq "$label 0005: the details moved, a row per pair" \
      "$(sql "SELECT (SELECT count(*) FROM agg_dis_detail) = (SELECT count(*) FROM agg_dis_pair)")" t
  fi
  for args in "${queries[@]}"; do
    # shellcheck disable=SC2086
    "$DP_BIN" $args --db "$DB" > "$TMP/mig.json"
    cmp -s "$TMP/ref-${args%% *}.json" "$TMP/mig.json" && ok \
      || fail "$label: $args differs after the migrations from schema $version"
  done
  # the tables a migration replaced by views keep their grants (the
  # aggregates of schemas before 9 came after the grant: those need a DBA's
  # new grant, as any table a migration adds)
  if [ "$version" -ge 9 ]; then
    for args in "${queries[@]}"; do
      # shellcheck disable=SC2086
      "$DP_BIN" $args --db "$DB user=$RO_ROLE" > "$TMP/mig.json" 2> "$TMP/mig.err" || true
      cmp -s "$TMP/ref-${args%% *}.json" "$TMP/mig.json" && ok \
        || fail "$label: $args as a read-only role after the migrations from schema $version: $(cat "$TMP/mig.err")"
    done
  fi
  check_rebuild "$label migrated from schema $version"
}

# 1. The sample scenario, three ingests at once, then once more.
"$DP_BIN" sample --out "$TMP/sample" --days 21 --scale 3 --corrupt > /dev/null 2>&1
new_db agg_sample
set +e
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/sample/reports" 2>/dev/null & p1=$!
"$DP_BIN" ingest --quiet --jobs 1 --db "$DB" "$TMP/sample/reports" 2>/dev/null & p2=$!
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/sample/reports" 2>/dev/null & p3=$!
wait $p1; r1=$?
wait $p2; r2=$?
wait $p3; r3=$?
set -e
expect_eq "concurrent exit statuses (broken inputs refused)" "$r1 $r2 $r3" "1 1 1"
want=$(jq -r '.totals | "\(.reports) \(.records) \(.messages)"' "$TMP/sample/expected.json")
expect_eq "reports/records/messages stored once" \
  "$(sql "SELECT count(*), sum(n_records), sum(messages) FROM report" | tr '|' ' ')" "$want"
check_rebuild "concurrent"

set +e
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/sample/reports" 2>/dev/null
set -e
check_rebuild "re-ingest"

# The answers read from the maintained aggregates equal those read from
# freshly rebuilt ones (same bytes).
for args in "senders --domain example.com --format json" \
            "readiness --domain example.com --by day --format json" \
            "domains --format json"; do
  # shellcheck disable=SC2086
  "$DP_BIN" $args --db "$DB" > "$TMP/before.json"
  sql "SELECT dp_agg_rebuild()" > /dev/null
  # shellcheck disable=SC2086
  "$DP_BIN" $args --db "$DB" > "$TMP/after.json"
  cmp -s "$TMP/before.json" "$TMP/after.json" && ok || fail "$args: differs after a rebuild"
done
# and the sender totals are the generator's known answers
expect_eq "senders total messages = generated messages" \
  "$("$DP_BIN" senders --domain example.com --format json --db "$DB" | jq '[.[].messages] | add')" \
  "$(jq -r .totals.messages "$TMP/sample/expected.json")"

# 2. Pending reports: --no-aggregate leaves them for later; three `db aggregate`
# at once fold each exactly once (their counts add up to the reports).
new_db agg_pending
set +e
"$DP_BIN" ingest --quiet --no-aggregate --db "$DB" "$TMP/sample/reports" 2>/dev/null
set -e
nrep=$(sql "SELECT count(*) FROM report")
expect_eq "--no-aggregate: every report pending" "$(sql "SELECT count(*) FROM agg_pending")" "$nrep"
expect_eq "--no-aggregate: aggregates empty" "$(sql "SELECT count(*) FROM agg_sender")" 0
"$DP_BIN" db aggregate --db "$DB" > "$TMP/a1" & p1=$!
"$DP_BIN" db aggregate --db "$DB" > "$TMP/a2" & p2=$!
"$DP_BIN" db aggregate --db "$DB" > "$TMP/a3" & p3=$!
wait $p1 $p2 $p3
folded=$(cat "$TMP/a1" "$TMP/a2" "$TMP/a3" | awk '{n += $2} END {print n}')
expect_eq "concurrent db aggregate: each report folded once" "$folded" "$nrep"
check_rebuild "concurrent db aggregate"
# A query with reports pending folds them first: same bytes as above.
"$DP_BIN" senders --domain example.com --format json --db "$DB" > "$TMP/caught.json"
sql "SELECT dp_agg_rebuild()" > /dev/null
expect_eq "rebuild: every report pending again" "$(sql "SELECT count(*) FROM agg_pending")" "$nrep"
"$DP_BIN" senders --domain example.com --format json --db "$DB" > "$TMP/pending.json"
cmp -s "$TMP/caught.json" "$TMP/pending.json" && ok || fail "senders with reports pending differs"
expect_eq "the query folded the pending reports" "$(sql "SELECT count(*) FROM agg_pending")" 0
# Half A folded and half B not (decision 53: a run stopped between the
# halves, or another aggregator is still at it): the reports still wait,
# a query folds half B before it answers, `db aggregate` says it finished
# reports another run began.
sql "SELECT dp_agg_rebuild()" > /dev/null
sql "SELECT reports FROM dp_agg_catch_up_part('a', 2147483647)" > /dev/null
expect_eq "half A folded: half B pending" "$(sql "SELECT count(*) FROM agg_pending_b")" "$nrep"
expect_eq "half A folded: db status counts the reports as waiting" \
  "$("$DP_BIN" db status --db "$DB" | sed -n 's/^reports waiting for aggregation: //p')" "$nrep"
"$DP_BIN" senders --domain example.com --format json --db "$DB" > "$TMP/half.json"
cmp -s "$TMP/caught.json" "$TMP/half.json" && ok || fail "senders with half B pending differs"
expect_eq "the query folded half B" "$(sql "SELECT count(*) FROM agg_pending_any")" 0
sql "SELECT dp_agg_rebuild()" > /dev/null
sql "SELECT reports FROM dp_agg_catch_up_part('a', 2147483647)" > /dev/null
out=$("$DP_BIN" db aggregate --db "$DB")
grep -q "^aggregated 0 reports .*; and the second half of $nrep more" <<<"$out" && ok ||
  fail "db aggregate after half A: $out"
check_rebuild "half B alone"

# Backfill: a database that had reports before migration 0003 (schema 2,
# made by old_schema_db) gets them all pending, and the first query folds them.
"$DP_BIN" senders --domain example.com --format json --db "$DB" > "$TMP/want.json"
old_schema_db agg_backfill 2
"$DP_BIN" db migrate --db "$DB" > /dev/null
expect_eq "backfill: every report pending" "$(sql "SELECT count(*) FROM agg_pending")" "$nrep"
"$DP_BIN" senders --domain example.com --format json --db "$DB" > "$TMP/got.json"
cmp -s "$TMP/want.json" "$TMP/got.json" && ok || fail "senders after the backfill differs"
check_rebuild "backfill"

check_migration sample 3
check_migration sample 7
check_migration sample 9

# 3. The real-world corpus (odd reports, duplicates across files), twice at once.
new_db agg_real
set +e
"$DP_BIN" ingest --quiet --db "$DB" "$CORPUS/real" 2>/dev/null & p1=$!
"$DP_BIN" ingest --quiet --db "$DB" "$CORPUS/real" 2>/dev/null & p2=$!
wait $p1
wait $p2
set -e
check_rebuild "real corpus"
check_migration real 3
check_migration real 7
finish
