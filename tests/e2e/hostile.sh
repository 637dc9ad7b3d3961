#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/hostile.sh - every case of corpus/hostile/EXPECTED.tsv ingested
# alone into a fresh database: exact counts for ok, refusal with a one-line
# error naming the file and nothing stored for reject, no crash or hang for
# any/noleak, and never a byte of /etc/passwd in the database.
source "$(dirname "$0")/lib/common.bash"
H="$CORPUS/hostile"
new_db hostile
"$DP_BIN" db migrate --db "$DB" > /dev/null
while IFS=$'\t' read -r file expect note; do
  [ "$file" = file ] && continue
  sql "TRUNCATE report, record, ingest_error" >/dev/null
  set +e
  /usr/bin/time -f "%M %e" -o "$TMP/usage" timeout 60 "$DP_BIN" ingest --quiet --db "$DB" "$H/$file" > /dev/null 2> "$TMP/err"
  rc=$?
  set -e
  read -r rss_kb secs < <(tail -n 1 "$TMP/usage")
  # seconds and bounded memory; sanitizer builds carry their own shadow memory
  if [ "${DP_ASAN:-0}" != 1 ]; then
    [ "$rss_kb" -lt $((256 * 1024)) ] && ok || fail "$file: peak RSS ${rss_kb} KB"
    awk -v s="$secs" 'BEGIN { exit !(s < 10) }' && ok || fail "$file: took ${secs} s"
  fi
  case "$expect" in
    ok*)
      read -r _ n m <<< "$expect"
      expect_eq "$file: exit status ($(head -c 300 "$TMP/err"))" "$rc" 0
      expect_eq "$file: records messages" "$(sql "SELECT count(*), coalesce(sum(count), 0) FROM record")" "$n|$m" ;;
    reject)
      expect_eq "$file: exit status" "$rc" 1
      expect_eq "$file: nothing stored" "$(sql "SELECT count(*) FROM report")" 0
      expect_eq "$file: refusal recorded" "$(sql "SELECT count(*) > 0 FROM ingest_error")" t
      grep -qF "$H/$file" "$TMP/err" && ok || fail "$file: error does not name the file: $(cat "$TMP/err")" ;;
    any|noleak)
      [ "$rc" -le 1 ] && ok || fail "$file: exit status $rc: $(head -c 300 "$TMP/err")" ;;
  esac
  if [ "$expect" = noleak ]; then
    leak=$(sql "SELECT count(*) FROM (SELECT row_to_json(r)::text t FROM report r UNION ALL SELECT row_to_json(x)::text FROM record x UNION ALL SELECT row_to_json(e)::text FROM ingest_error e) s WHERE t LIKE '%root:%' OR t LIKE '%/bin/%sh%'")
    expect_eq "$file: nothing of /etc/passwd stored" "$leak" 0
  fi
done < "$H/EXPECTED.tsv"

# Text of any content survives COPY exactly: tabs, newlines, backslashes, \N, quotes, SQL.
sql "TRUNCATE report, record, ingest_error" >/dev/null
"$DP_BIN" ingest --quiet --db "$DB" "$H/copy-escapes.xml"
expect_eq "org_name with SQL in it" "$(sql "SELECT org_name FROM report")" "x'); DROP TABLE report;--"
expect_eq "human_result with tab, newline, backslash, \\N" \
  "$(sql "SELECT dkim_human[1] = E'tab\\there\\nnewline back\\\\slash \\\\N end' FROM record_arrays")" t

# A report that turns into another after its first record (a second
# report_metadata naming another reporter and report) is refused; before,
# it was stored under its first identity's key with the second identity's
# fields, and the genuine report of that second identity was then taken for
# a duplicate and lost.
sql "TRUNCATE report, record, ingest_error" >/dev/null
rec='<record><row><source_ip>192.0.2.1</source_ip><count>2</count></row><identifiers><header_from>example.com</header_from></identifiers><auth_results><spf><domain>example.com</domain><result>pass</result></spf></auth_results></record>'
# ingest_rc FILE: ingest FILE into $DB; its exit status in rc, stderr in $TMP/err
ingest_rc() {
  set +e
  "$DP_BIN" ingest --quiet --db "$DB" "$1" 2> "$TMP/err"
  rc=$?
  set -e
}
meta() { echo "<report_metadata><org_name>$1</org_name><email>d@$1</email><report_id>$2</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>"; }
echo "<feedback>$(meta x.test r1)<policy_published><domain>example.com</domain></policy_published>$rec$(meta evil.test r2)<policy_published><domain>other.test</domain></policy_published>$rec</feedback>" > "$TMP/turncoat.xml"
echo "<feedback>$(meta evil.test r2)<policy_published><domain>other.test</domain></policy_published>$rec</feedback>" > "$TMP/genuine.xml"
ingest_rc "$TMP/turncoat.xml"
expect_eq "identity changed after a record: exit status" "$rc" 1
grep -qF 'report_metadata/org_name after the first record changes it ("x.test" -> "evil.test")' "$TMP/err" && ok ||
  fail "identity changed after a record: $(cat "$TMP/err")"
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/genuine.xml"
expect_eq "the genuine report is stored" \
  "$(sql "SELECT org_name, report_id, domain, n_records FROM report")" "evil.test|r2|other.test|1"

# Two reports concatenated in one file (cat a.xml b.xml > both.xml): the
# document is one report, so the second is not read, but it is not lost
# without a word: the first is stored, the second named in the refusal.
sql "TRUNCATE report, record, ingest_error" >/dev/null
{ echo '<?xml version="1.0"?>'; echo "<feedback>$(meta a.test r1)<policy_published><domain>example.com</domain></policy_published>$rec</feedback>"
  echo '<?xml version="1.0"?>'; echo "<feedback>$(meta b.test r2)<policy_published><domain>example.com</domain></policy_published>$rec</feedback>"; } > "$TMP/both.xml"
ingest_rc "$TMP/both.xml"
expect_eq "two reports in one file: exit status" "$rc" 1
expect_eq "two reports in one file: the first is stored" "$(sql "SELECT org_name FROM report")" "a.test"
grep -qF "$TMP/both.xml: report a.test/r1: another <feedback> report follows this one" "$TMP/err" && ok ||
  fail "two reports in one file: $(cat "$TMP/err")"
expect_eq "two reports in one file: refusal recorded" \
  "$(sql "SELECT count(*) FROM ingest_error WHERE reason LIKE 'another <feedback> report follows%'")" 1

# File names are printed fit for a terminal line: a line break cannot forge
# a line, an escape sequence or a C1/bidi control cannot drive the terminal.
mkdir "$TMP/names"
printf '<feedback><oops' > "$TMP/names/$(printf 'esc\033]0;T\007\033[2J.xml')"
printf '<feedback><oops' > "$TMP/names/$(printf 'two\nfake: 9 reports stored.xml')"
printf '<feedback><oops' > "$TMP/names/$(printf 'rtl\342\200\256x\302\233.xml')"
set +e
"$DP_BIN" ingest --output null "$TMP/names" 2> "$TMP/names.err"
set -e
expect_eq "odd names: one line per input and the summary" "$(wc -l < "$TMP/names.err")" 4
LC_ALL=C grep -q "$(printf '[\001-\010\013-\037\177]\|\302[\200-\237]\|\342\200\256')" "$TMP/names.err" &&
  fail "a control character reached stderr: $(cat -A "$TMP/names.err")" || ok
grep -qF "names/two?fake: 9 reports stored.xml: malformed XML" "$TMP/names.err" && ok ||
  fail "odd names: $(cat -A "$TMP/names.err")"
finish
