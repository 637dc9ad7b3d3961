#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/stream_report.sh - big reports stream into PostgreSQL while they
# are parsed: a 100k-record report lands exactly once with the right counts,
# also when two processes ingest it at once; re-ingest is a no-op; a report
# that breaks after many records (record cap, truncated tail) stores nothing
# and one ingest_error; a backend killed mid-stream is replayed, stored once;
# small reports ingested beside a big one all land.
source "$(dirname "$0")/lib/common.bash"
new_db stream
"$DP_BIN" db migrate --db "$DB" > /dev/null
python3 - "$TMP" <<'PY'
import gzip, sys
tmp = sys.argv[1]
def report(n, rid):
    out = ['<?xml version="1.0"?><feedback><report_metadata><org_name>stream.example</org_name>'
           f'<email>a@stream.example</email><report_id>{rid}</report_id><date_range><begin>1700000000'
           '</begin><end>1700086399</end></date_range></report_metadata><policy_published>'
           '<domain>example.com</domain><p>none</p></policy_published>']
    for i in range(n):
        out.append(f'<record><row><source_ip>10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}</source_ip>'
                   f'<count>{1 + i % 5}</count><policy_evaluated><disposition>none</disposition>'
                   '<dkim>pass</dkim><spf>fail</spf></policy_evaluated></row><identifiers>'
                   '<header_from>example.com</header_from></identifiers><auth_results><dkim>'
                   '<domain>example.com</domain><selector>s1</selector><result>pass</result></dkim>'
                   '<spf><domain>bounce.esp.test</domain><result>pass</result></spf></auth_results></record>')
    out.append('</feedback>')
    return "".join(out)
for rid in ("s-1", "s-cap", "s-kill"):
    with gzip.open(f"{tmp}/{rid}.xml.gz", "wt") as f: f.write(report(100000, rid))
x = report(100000, "s-trunc")
with gzip.open(f"{tmp}/s-trunc.xml.gz", "wt") as f: f.write(x[: len(x) * 4 // 5])
PY
cp "$TMP/s-1.xml.gz" "$TMP/s-1-copy.xml.gz"
"$DP_BIN" sample --out "$TMP/small" --scale 2 --days 3 > /dev/null
want_small=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["totals"]["reports"])' "$TMP/small/expected.json")
want_messages=$(python3 -c 'print(sum(1 + i % 5 for i in range(100000)))')

# two processes at once, the same report under two names
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/s-1.xml.gz" 2> "$TMP/err1" & p1=$!
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/s-1-copy.xml.gz" 2> "$TMP/err2" & p2=$!
set +e
wait $p1; rc1=$?
wait $p2; rc2=$?
set -e
expect_eq "first ingest ($(head -c 300 "$TMP/err1"))" "$rc1" 0
expect_eq "second ingest ($(head -c 300 "$TMP/err2"))" "$rc2" 0
expect_eq "stored once" "$(sql "SELECT count(*), sum(n_records), sum(messages) FROM report")" "1|100000|$want_messages"
expect_eq "its records" "$(sql "SELECT count(*), sum(count), count(DISTINCT seq), max(seq) FROM record")" \
  "100000|$want_messages|100000|100000"
expect_eq "content hash set" "$(sql "SELECT count(*) FROM report WHERE content_hash <> 0")" 1

# re-ingest: nothing new
"$DP_BIN" ingest --db "$DB" "$TMP/s-1.xml.gz" > "$TMP/out" 2>&1
grep -q "0 reports stored (0 records, 0 messages), 1 already stored" "$TMP/out" && ok || fail "re-ingest summary: $(cat "$TMP/out")"
expect_eq "re-ingest stores nothing" "$(sql "SELECT (SELECT count(*) FROM report) || ' ' || count(*) FROM record")" "1 100000"

# broken after many records: a record cap, a truncated tail
set +e
"$DP_BIN" ingest --quiet --db "$DB" --max-records 60000 "$TMP/s-cap.xml.gz" 2> "$TMP/err"
rc=$?
set -e
expect_eq "record cap: exit status" "$rc" 1
grep -q "more than 60000 records" "$TMP/err" && ok || fail "record cap not named: $(cat "$TMP/err")"
set +e
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/s-trunc.xml.gz" 2> "$TMP/err"
rc=$?
set -e
expect_eq "truncated: exit status" "$rc" 1
expect_eq "nothing of either" "$(sql "SELECT count(*) FROM report WHERE report_id IN ('s-cap', 's-trunc')")" 0
expect_eq "no stray records" "$(sql "SELECT count(*) FROM record")" 100000
expect_eq "one ingest_error each" \
  "$(sql "SELECT string_agg(report_id || ':' || code, ',' ORDER BY report_id) FROM ingest_error")" \
  "s-cap:DP_ELIMIT,s-trunc:DP_EXML"

# a backend killed while the report streams; small reports beside it
for attempt in 1 2 3; do
  sql "DELETE FROM report WHERE report_id <> 's-1'; DELETE FROM record WHERE report_key NOT IN (SELECT id FROM report)" > /dev/null
  "$DP_BIN" ingest --db "$DB" "$TMP/s-kill.xml.gz" "$TMP/small/reports" > /dev/null 2> "$TMP/err" & pid=$!
  killed=0
  for _ in $(seq 1 200); do
    killed=$(sql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY record%' AND state = 'active'")
    [ "$killed" != 0 ] && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.02
  done
  set +e
  wait $pid
  rc=$?
  set -e
  [ "$killed" != 0 ] && grep -q "database unavailable" "$TMP/err" && break
  echo "attempt $attempt: no stream was caught mid-way; again" >&2
done
expect_eq "killed mid-stream: exit status ($(head -c 300 "$TMP/err"))" "$rc" 0
grep -q "database unavailable" "$TMP/err" && ok || fail "the kill was never seen: $(cat "$TMP/err")"
expect_eq "stored once after the kill" \
  "$(sql "SELECT count(*), sum(messages) FROM report WHERE report_id = 's-kill'")" "1|$want_messages"
expect_eq "its records once" \
  "$(sql "SELECT count(*), count(DISTINCT seq) FROM record r JOIN report p ON p.id = r.report_key WHERE p.report_id = 's-kill'")" \
  "100000|100000"
expect_eq "the small reports too" \
  "$(sql "SELECT count(*) FROM report WHERE org_name <> 'stream.example'")" "$want_small"
finish
