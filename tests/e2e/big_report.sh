#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/big_report.sh - a report whose rows pass the in-memory chunk is
# spooled and still loads exactly (gzip and zip forms: stored once); a
# duplicate of it stores nothing; a bad record at its very end refuses the
# whole report, spooled rows included.
source "$(dirname "$0")/lib/common.bash"
new_db big
python3 - "$TMP" <<'PY'
import gzip, sys, zipfile
tmp = sys.argv[1]
def report(n, rid, bad_last=False):
    out = ['<?xml version="1.0"?><feedback><report_metadata><org_name>big.example</org_name>'
           f'<email>a@big.example</email><report_id>{rid}</report_id><date_range><begin>1700000000'
           '</begin><end>1700086399</end></date_range></report_metadata><policy_published>'
           '<domain>example.com</domain><p>none</p></policy_published>']
    for i in range(n):
        ip = "bad-ip" if bad_last and i == n - 1 else f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        out.append(f'<record><row><source_ip>{ip}</source_ip><count>{1 + i % 7}</count>'
                   '<policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf>'
                   '</policy_evaluated></row><identifiers><header_from>example.com</header_from>'
                   '</identifiers><auth_results><dkim><domain>example.com</domain><selector>s1'
                   '</selector><result>pass</result></dkim><spf><domain>bounce.esp.test</domain>'
                   '<result>pass</result></spf></auth_results></record>')
    out.append('</feedback>')
    return "".join(out)
big = report(30000, "big-1")
with gzip.open(f"{tmp}/big.xml.gz", "wt") as f: f.write(big)
with zipfile.ZipFile(f"{tmp}/big.zip", "w", zipfile.ZIP_DEFLATED) as z: z.writestr("big.xml", big)
with gzip.open(f"{tmp}/bad.xml.gz", "wt") as f: f.write(report(30000, "big-2", bad_last=True))
PY
want_messages=$(python3 -c 'print(sum(1 + i % 7 for i in range(30000)))')
set +e
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/big.xml.gz" "$TMP/big.zip" "$TMP/bad.xml.gz" 2> "$TMP/err"
rc=$?
set -e
expect_eq "exit status (one bad report)" "$rc" 1
expect_eq "the big report stored once" "$(sql "SELECT count(*), sum(n_records), sum(messages) FROM report")" "1|30000|$want_messages"
expect_eq "its records" "$(sql "SELECT count(*), sum(count), count(DISTINCT seq) FROM record")" "30000|$want_messages|30000"
grep -q "record 30000: <source_ip>" "$TMP/err" && ok || fail "the bad record is not named: $(cat "$TMP/err")"
expect_eq "nothing of the bad report" "$(sql "SELECT count(*) FROM report WHERE report_id = 'big-2'")" 0
finish
