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
# schema 3 with aggregates migrated to 0006 answers the same.
source "$(dirname "$0")/lib/common.bash"

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

# check_migration LABEL: migrations 0004-0006 on a database at schema 3 holding
# DB's reports and records, whose aggregates were folded by 0003's catch-up in
# several batches (agg_dis_pair's detail arrays grown batch after batch) with
# a third of the reports still pending: after `db migrate` the answers equal
# DB's (the same records, aggregated by 0006 alone) and every table, the moved
# details included, equals its rebuild. Leaves DB set to the migrated database.
MIGDIR="$(cd "$(dirname "$0")/../../store/migrations" && pwd)"
check_migration() {
  local label=$1 args f nrep
  local queries=("senders --domain example.com --format json"
                 "readiness --domain example.com --by day --format json"
                 "domains --format json")
  for args in "${queries[@]}"; do
    # shellcheck disable=SC2086
    "$DP_BIN" $args --db "$DB" > "$TMP/ref-${args%% *}.json"
  done
  psql "$DB" -XAtqc "COPY report TO STDOUT" > "$TMP/report.copy"
  psql "$DB" -XAtqc "COPY (SELECT * FROM record) TO STDOUT" > "$TMP/record.copy"
  new_db "agg_mig3_$label"
  {
    for f in 0001_init 0002_imap_state 0003_aggregates; do cat "$MIGDIR/$f.sql"; echo; done
    echo "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now());
          INSERT INTO schema_migrations (version, name)
          VALUES (1, '0001_init.sql'), (2, '0002_imap_state.sql'), (3, '0003_aggregates.sql');"
  } | psql "$DB" -Xq -v ON_ERROR_STOP=1 > /dev/null
  psql "$DB" -Xqc "COPY report FROM STDIN" < "$TMP/report.copy"
  psql "$DB" -Xqc "COPY record FROM STDIN" < "$TMP/record.copy"
  nrep=$(sql "SELECT count(*) FROM report")
  expect_eq "$label schema 3: every report pending" "$(sql "SELECT count(*) FROM agg_pending")" "$nrep"
  while [ "$(sql "SELECT count(*) FROM agg_pending")" -gt $((nrep / 3)) ]; do
    sql "SELECT * FROM dp_agg_catch_up_batch(300)" > /dev/null
  done
  expect_eq "$label schema 3: a pair's details from several batches" \
    "$(sql "SELECT max(cardinality(d_domain)) > 1 AND count(*) > 0 FROM agg_dis_pair")" t
  "$DP_BIN" db migrate --db "$DB" > /dev/null
  expect_eq "$label: migrated to the latest schema" \
    "$(sql "SELECT max(version) FROM schema_migrations")" "$(ls "$MIGDIR"/*.sql | wc -l)"
  expect_eq "$label 0005: the details moved, a row per pair" \
    "$(sql "SELECT (SELECT count(*) FROM agg_dis_detail) = (SELECT count(*) FROM agg_dis_pair)")" t
  for args in "${queries[@]}"; do
    # shellcheck disable=SC2086
    "$DP_BIN" $args --db "$DB" > "$TMP/mig.json"
    cmp -s "$TMP/ref-${args%% *}.json" "$TMP/mig.json" && ok \
      || fail "$label: $args differs after migrations 0004-0006"
  done
  check_rebuild "$label migrated from schema 3"
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

# Backfill: a database that had reports before migration 0003 (here: 0003
# and 0004, which replaced its trigger, and 0005-0006 undone by hand) gets them
# all pending, and the first query folds them.
"$DP_BIN" senders --domain example.com --format json --db "$DB" > "$TMP/want.json"
psql "$DB" -XAtq -v ON_ERROR_STOP=1 > /dev/null <<'SQL'
DROP TRIGGER report_agg_pending ON report;
DROP TABLE agg_sender, agg_sender_all, agg_ip, agg_dkim, agg_spf, agg_class, agg_fail_ip, agg_fwd_ip, agg_good_sig, agg_dis_pair, agg_dis_detail, agg_report, agg_pending;
DROP FUNCTION dp_agg_key, dp_agg_union, dp_agg_sql, dp_agg_reports_inserted, dp_agg_catch_up_batch,
              dp_agg_rebuild;
DELETE FROM schema_migrations WHERE version >= 3;
SQL
"$DP_BIN" db migrate --db "$DB" > /dev/null
expect_eq "backfill: every report pending" "$(sql "SELECT count(*) FROM agg_pending")" "$nrep"
"$DP_BIN" senders --domain example.com --format json --db "$DB" > "$TMP/got.json"
cmp -s "$TMP/want.json" "$TMP/got.json" && ok || fail "senders after the backfill differs"
check_rebuild "backfill"

check_migration sample

# 3. The real-world corpus (odd reports, duplicates across files), twice at once.
new_db agg_real
set +e
"$DP_BIN" ingest --quiet --db "$DB" "$CORPUS/real" 2>/dev/null & p1=$!
"$DP_BIN" ingest --quiet --db "$DB" "$CORPUS/real" 2>/dev/null & p2=$!
wait $p1
wait $p2
set -e
check_rebuild "real corpus"
check_migration real
finish
