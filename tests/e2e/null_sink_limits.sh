#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/null_sink_limits.sh - `ingest --output null` builds no rows, yet
# refuses for size exactly what the PostgreSQL sink refuses: a report whose
# COPY rows pass --max-report-size (in memory, at a spool point, on its last
# rows) gives the same refusal lines, counts and exit status under both.
source "$(dirname "$0")/lib/common.bash"
new_db nulllim
"$DP_BIN" db migrate --db "$DB" > /dev/null
python3 - "$TMP" <<'PY'
import gzip, sys
tmp = sys.argv[1]
bs = "\xff" * 2700  # invalid UTF-8: U+FFFD, three COPY bytes each: rows outgrow the XML
def report(n, rid):
    out = ['<?xml version="1.0"?><feedback><report_metadata><org_name>lim.example</org_name>'
           f'<email>a@lim.example</email><report_id>{rid}</report_id><date_range><begin>1700000000'
           '</begin><end>1700086399</end></date_range></report_metadata><policy_published>'
           '<domain>example.com</domain><p>none</p></policy_published>']
    for i in range(n):
        out.append(f'<record><row><source_ip>10.0.{i // 256}.{i % 256}</source_ip>'
                   f'<count>{1 + i % 5}</count><policy_evaluated><disposition>none</disposition>'
                   '<dkim>pass</dkim><spf>fail</spf></policy_evaluated></row><identifiers>'
                   '<header_from>example.com</header_from></identifiers><auth_results><dkim>'
                   f'<domain>{bs}</domain><result>pass</result></dkim>'
                   f'<spf><domain>{bs}</domain><result>pass</result></spf></auth_results></record>')
    out.append('</feedback>')
    return "".join(out)
with open(f"{tmp}/big.xml", "wb") as f: f.write(report(150, "big").encode("latin-1"))
with gzip.open(f"{tmp}/big.xml.gz", "wb") as f: f.write(report(150, "big-gz").encode("latin-1"))
with open(f"{tmp}/small.xml", "wb") as f: f.write(report(3, "small").encode("latin-1"))
PY

# run SINK CAP: refusal lines and the summary's counts, then the exit status
run() {
  local out rc
  set +e
  if [ "$1" = pg ]; then
    out=$("$DP_BIN" ingest --db "$DB" --max-report-size "$2" "$TMP/big.xml" "$TMP/big.xml.gz" "$TMP/small.xml" 2>&1)
  else
    out=$("$DP_BIN" ingest --output null --max-report-size "$2" "$TMP/big.xml" "$TMP/big.xml.gz" "$TMP/small.xml" 2>&1)
  fi
  rc=$?
  set -e
  printf '%s\n' "$out" | grep -v 'aggregates caught up' | sed -e 's/ (--output null[^)]*)$//' -e 's/, [0-9]* already stored//' | sort
  echo "exit $rc"
}

for cap in 921600 1572864 2400000 16777216; do
  sql "TRUNCATE report, record, ingest_error" > /dev/null
  pg=$(run pg "$cap")
  null=$(run null "$cap")
  expect_eq "cap $cap: null sink as pg" "$null" "$pg"
  case $cap in
    16777216) want="3 reports stored (303 records, 906 messages), 0 refused" ;;
    *) want="1 reports stored (3 records, 6 messages), 2 refused" ;;
  esac
  printf '%s' "$null" | grep -qF "$want" && ok || fail "cap $cap: want '$want' in: $null"
done
# in memory and at a spool point the refusal names the record where the rows
# passed the limit; past the last spool point it comes at </feedback>
for cap in 921600 1572864; do
  [ "$(run null $cap | grep -c 'record [0-9]*: report exceeds the size limit')" = 2 ] && ok ||
    fail "cap $cap: refusals at a record: $(run null $cap)"
done
[ "$(run null 2400000 | grep -c 'big[-gz]*: report exceeds the size limit')" = 2 ] && ok ||
  fail "refusals at the end: $(run null 2400000)"

# --max-xml-depth within what libxml2 parses (1-255): beyond it every
# report was refused ("nested deeper than 4294967295 levels", or out of
# memory for the element stack); now it is a usage error.
# expect_usage OPTION VALUE: ingest refuses the value, a usage error naming it
expect_usage() {
  local err rc
  set +e
  err=$("$DP_BIN" ingest --output null --quiet "--$1" "$2" "$CORPUS/hostile/no-records.xml" 2>&1)
  rc=$?
  set -e
  expect_eq "--$1 '$2': usage error" "$rc" 2
  grep -q "invalid value '$2' for --$1" <<<"$err" && ok || fail "--$1 '$2': $err"
}
for v in 0 256 4294967295 8G; do expect_usage max-xml-depth "$v"; done
"$DP_BIN" ingest --output null --quiet --max-xml-depth 255 "$CORPUS/hostile/no-records.xml" && ok ||
  fail "--max-xml-depth 255 refused a report"

# sizes and counts are digits with an optional k/M/G (KiB, MB, ...) or B:
# strtoull alone took " -1" as 2^64-1 (no limit) and ignored an 'i'
for v in " -1" "-1" "+5" "2000i" "0x10" "" "10 k"; do expect_usage max-input-size "$v"; done
for v in 10k 10KiB 10MB 1G 5000B; do
  "$DP_BIN" ingest --output null --quiet --max-input-size "$v" "$CORPUS/hostile/no-records.xml" && ok ||
    fail "--max-input-size $v refused"
done

# standard input once: a second '-' would read it spent and refuse it as empty
set +e
err=$("$DP_BIN" ingest --output null - - < "$CORPUS/hostile/no-records.xml" 2>&1)
rc=$?
set -e
expect_eq "ingest - -: usage error" "$rc" 2
grep -q "standard input ('-') can be given once" <<<"$err" && ok || fail "ingest - -: $err"
"$DP_BIN" ingest --output null --quiet - < "$CORPUS/hostile/no-records.xml" && ok || fail "ingest - refused"
finish
