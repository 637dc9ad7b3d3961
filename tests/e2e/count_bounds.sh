#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/count_bounds.sh - message counts are bounded per report
# (DP_MAX_REPORT_MESSAGES, 10^12), so that no set of stored reports can make
# the sums the aggregates and queries keep in 64-bit integers overflow: two
# hostile reports of 5e18 messages each for one domain (each accepted alone
# before the bound) are refused with the reason and recorded, the good
# report beside them is stored, and every query still answers; two reports
# at the bound are stored and summed exactly.
source "$(dirname "$0")/lib/common.bash"
new_db counts
"$DP_BIN" db migrate --db "$DB" > /dev/null

# report FILE ORG COUNT: a one-record report for ovf.example
report() { one_record_report "$1" "$2" "r-$2" ovf.example "$3" 1735775999; }
report "$TMP/huge-a.xml" a.test 5000000000000000000
report "$TMP/huge-b.xml" b.test 5000000000000000000
report "$TMP/good.xml" good.test 7
set +e
out=$("$DP_BIN" ingest --db "$DB" "$TMP/huge-a.xml" "$TMP/huge-b.xml" "$TMP/good.xml" 2>&1)
rc=$?
set -e
expect_eq "hostile counts: exit 1 (refused inputs)" "$rc" 1
grep -q "huge-a.xml.*record 1: <count> is more than any real report's (limit 10^12)" <<<"$out" && ok ||
  fail "no reason naming the file and the bound: $out"
expect_eq "both refusals recorded" "$(sql "SELECT count(*) FROM ingest_error WHERE reason LIKE '%more than any real report%'")" 2
expect_eq "the good report stored" "$(sql "SELECT string_agg(org_name, ',') FROM report")" good.test
for args in "senders --domain ovf.example --format json" "readiness --domain ovf.example --format json" \
            "domains --format json" "reports --format json"; do
  # shellcheck disable=SC2086
  "$DP_BIN" $args --db "$DB" > "$TMP/q.json" 2> "$TMP/q.err" && ok || fail "$args: $(cat "$TMP/q.err")"
done

# At the bound: stored, and summed exactly across reports.
report "$TMP/max-a.xml" c.test 1000000000000
report "$TMP/max-b.xml" d.test 1000000000000
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/max-a.xml" "$TMP/max-b.xml" || fail "reports at the bound refused"
expect_eq "senders sums reports at the bound" \
  "$("$DP_BIN" senders --domain ovf.example --format json --db "$DB" | jq '[.[].messages] | add')" 2000000000007
expect_eq "domains sums them" \
  "$("$DP_BIN" domains --format json --db "$DB" | jq '.[] | select(.domain == "ovf.example") | .messages')" 2000000000007
finish
