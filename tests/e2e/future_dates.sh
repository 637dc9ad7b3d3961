#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/future_dates.sh - a report whose date_range ends more than
# --max-future-days (default 7) after the clock is refused by `ingest` with
# the date in the reason, recorded in ingest_error, and creates no partition,
# while the good report beside it is stored; the limit is read from the
# command line and from the config file, and 0 turns it off.
source "$(dirname "$0")/lib/common.bash"
new_db future
"$DP_BIN" db migrate --db "$DB" > /dev/null

# report FILE REPORT_ID END: a one-record report whose date_range ends at END
report() { one_record_report "$1" fut.example "$2" example.com 3 "$3"; }
now=$(date +%s)
report "$TMP/past.xml" past $((now - 3 * 86400))
report "$TMP/soon.xml" soon $((now + 6 * 86400))
report "$TMP/far.xml" far 99999993600   # 5138-11-16T08:00:00Z
report "$TMP/later.xml" later $((now + 20 * 86400))

set +e
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/past.xml" "$TMP/soon.xml" "$TMP/far.xml" 2> "$TMP/err"
rc=$?
set -e
expect_eq "exit status with one report refused" "$rc" 1
grep -q "far.xml.*date_range end 5138-11-16T08:00:00Z is more than 7 days after this machine's clock (--max-future-days)" \
  "$TMP/err" && ok || fail "refusal line: $(cat "$TMP/err")"
expect_eq "the good reports are stored" "$(sql "SELECT string_agg(report_id, ',' ORDER BY report_id) FROM report")" \
  "past,soon"
expect_eq "the refusal is recorded" \
  "$(sql "SELECT count(*) FROM ingest_error WHERE reason LIKE '%date_range end 5138-11-16T08:00:00Z%'")" 1
expect_eq "no partition for 5138" "$(sql "SELECT count(*) FROM pg_class WHERE relname LIKE 'record_5138%'")" 0

# the limit from the command line, then from the config file
set +e
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/later.xml" 2> /dev/null
rc_default=$?
"$DP_BIN" ingest --quiet --db "$DB" --max-future-days 30 "$TMP/later.xml" 2> /dev/null
rc_cli=$?
set -e
expect_eq "20 days ahead: refused by default, taken with --max-future-days 30" "$rc_default $rc_cli" "1 0"
printf 'max-future-days = 0\n' > "$TMP/config"
"$DP_BIN" --config "$TMP/config" ingest --quiet --db "$DB" "$TMP/far.xml" && ok || fail "config 0 did not turn the check off"
expect_eq "every report stored at last" "$(sql "SELECT count(*) FROM report")" 4
finish
