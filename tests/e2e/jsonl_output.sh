#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/jsonl_output.sh - `ingest --output jsonl`: one valid JSON object
# per record on stdout, with exact counts and alignment, for the sample
# scenario and for a report big enough to be spooled; text survives exactly.
source "$(dirname "$0")/lib/common.bash"
"$DP_BIN" sample --out "$TMP/s" --seed 11 --days 5 > /dev/null
"$DP_BIN" ingest --quiet --output jsonl "$TMP/s/reports" > "$TMP/out.jsonl"
python3 - "$TMP/s/expected.json" "$TMP/out.jsonl" <<'PY' && ok || fail "sample scenario as JSON lines"
import json, sys
exp = json.load(open(sys.argv[1]))
rows = [json.loads(l) for l in open(sys.argv[2])]
t = exp["totals"]
assert len(rows) == t["records"], (len(rows), t["records"])
assert sum(r["count"] for r in rows) == t["messages"]
assert len({(r["org_name"], r["report_id"], r["begin"]) for r in rows}) <= t["reports"]
by = {}
for r in rows:
    s = by.setdefault(r["sender"], [0, 0])
    s[0] += r["count"]; s[1] += r["count"] if r["dmarc_pass"] else 0
for s in exp["senders"]:
    assert by[s["sender"]] == [s["messages"], s["dmarc_pass"]], (s, by.get(s["sender"]))
for r in rows:
    assert r["begin"].endswith("Z") and isinstance(r["dkim"], list) and isinstance(r["spf"], list)
print("ok")
PY
# a report past the in-memory chunk (spooled) comes out whole and in order
python3 - "$TMP" <<'PY'
import gzip, sys
rec = ('<record><row><source_ip>10.0.{a}.{b}</source_ip><count>{c}</count></row><identifiers>'
       '<header_from>example.com</header_from></identifiers><auth_results><spf><domain>example.com'
       '</domain><result>pass</result><human_result>tab\there "q" \\N</human_result></spf></auth_results></record>')
with gzip.open(f"{sys.argv[1]}/big.xml.gz", "wt") as f:
    f.write('<feedback><report_metadata><org_name>big</org_name><email>a@big.test</email><report_id>b1'
            '</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range>'
            '</report_metadata><policy_published><domain>example.com</domain></policy_published>')
    for i in range(20000):
        f.write(rec.format(a=i // 256 % 256, b=i % 256, c=i % 5 + 1))
    f.write('</feedback>')
PY
"$DP_BIN" ingest --quiet --output jsonl "$TMP/big.xml.gz" > "$TMP/big.jsonl"
python3 - "$TMP/big.jsonl" <<'PY' && ok || fail "spooled report as JSON lines"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["record"] for r in rows] == list(range(1, 20001))
assert sum(r["count"] for r in rows) == sum(i % 5 + 1 for i in range(20000))
assert rows[0]["spf"][0]["human_result"] == 'tab\there "q" \\N', rows[0]["spf"][0]
PY
# each line carries its own report's part, which is encoded once per report:
# the reports of one zip (parsed one after the other by the same thread) keep
# theirs; a report whose policy changes after its first record is refused
# (its lines were made with the first policy) without taking the others down
python3 - "$TMP" <<'PY'
import sys, zipfile
def rep(org, rid, recs, mid=""):
    r = ('<record><row><source_ip>192.0.2.{i}</source_ip><count>{i}</count></row><identifiers>'
         '<header_from>example.com</header_from></identifiers><auth_results><spf><domain>example.com'
         '</domain><result>pass</result></spf></auth_results></record>')
    body = "".join(r.format(i=i) + (mid if i == 1 else "") for i in range(1, recs + 1))
    return ('<feedback><report_metadata><org_name>' + org + '</org_name><email>d@' + org +
            '</email><report_id>' + rid + '</report_id><date_range><begin>1700000000</begin>'
            '<end>1700086399</end></date_range></report_metadata><policy_published><domain>'
            'example.com</domain><p>none</p></policy_published>' + body + '</feedback>')
with zipfile.ZipFile(f"{sys.argv[1]}/two.zip", "w") as z:
    z.writestr("a.xml", rep("first.test", "r-1", 3))
    z.writestr("b.xml", rep("second.test", "r-2", 2,
                            "<policy_published><domain>example.com</domain><p>reject</p>"
                            "</policy_published>"))
    z.writestr("c.xml", rep("third.test", "r-3", 2,
                            "<policy_published><domain>example.com</domain><p>none</p>"
                            "</policy_published>"))
PY
"$DP_BIN" ingest --quiet --output jsonl "$TMP/two.zip" > "$TMP/two.jsonl" 2> "$TMP/two.err" || true
python3 - "$TMP/two.jsonl" "$TMP/two.err" <<'PY' && ok || fail "per-report part of JSON lines"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
got = sorted((r["org_name"], r["email"], r["report_id"], r["record"], r["policy"]["p"]) for r in rows)
assert got == [("first.test", "d@first.test", "r-1", 1, "none"),
               ("first.test", "d@first.test", "r-1", 2, "none"),
               ("first.test", "d@first.test", "r-1", 3, "none"),
               ("third.test", "d@third.test", "r-3", 1, "none"),
               ("third.test", "d@third.test", "r-3", 2, "none")], got
assert all("two.zip" in r["source"] and r["source"].endswith("a.xml") == (r["report_id"] == "r-1")
           for r in rows), rows
err = open(sys.argv[2]).read()
assert "report second.test/r-2: policy_published/p after the first record changes it" in err, err
PY
finish
