#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/senders_scenario.sh - a generated scenario with known answers
# (dmarcpipe sample writes them, computed independently of the parser): after
# ingest, `reports` and `senders` must give exactly those numbers, `--fail`
# must filter by them, and the broken inputs of --corrupt must be refused and
# listed by `errors` while every good report still loads.
source "$(dirname "$0")/lib/common.bash"
new_db scenario
S="$TMP/sample"
"$DP_BIN" sample --out "$S" --seed 7 --days 9 --corrupt > /dev/null
set +e
"$DP_BIN" ingest --db "$DB" "$S/reports" > /dev/null 2> "$TMP/err"
rc=$?
set -e
expect_eq "ingest exit status with corrupt inputs" "$rc" 1
n_refused=$(grep -c 'dmarcpipe: .*reports/' "$TMP/err" | tr -d ' ' || true)
[ "$n_refused" -ge 3 ] && ok || fail "expected the 3 corrupt files named on stderr: $(cat "$TMP/err")"

"$DP_BIN" reports --db "$DB" --format json > "$TMP/reports.json"
"$DP_BIN" senders --db "$DB" --domain example.com --format json > "$TMP/senders.json"
"$DP_BIN" senders --db "$DB" --domain example.com --fail spf --format json > "$TMP/fail_spf.json"
"$DP_BIN" senders --db "$DB" --domain example.com --fail dkim --format json > "$TMP/fail_dkim.json"
"$DP_BIN" senders --db "$DB" --domain example.com --fail any --format json > "$TMP/fail_any.json"
"$DP_BIN" errors --db "$DB" --format json > "$TMP/errors.json"
"$DP_BIN" senders --db "$DB" --domain example.com > "$TMP/senders.txt"

python3 - "$S/expected.json" "$TMP" <<'PY'
import json, sys
exp = json.load(open(sys.argv[1])); tmp = sys.argv[2]
load = lambda n: json.load(open(f"{tmp}/{n}.json"))
fails = []
def eq(what, got, want):
    if got != want: fails.append(f"{what}: got {got!r}, want {want!r}")

reports = load("reports")
t = exp["totals"]
eq("reports", len(reports), t["reports"])
eq("records", sum(r["records"] for r in reports), t["records"])
eq("messages", sum(r["messages"] for r in reports), t["messages"])
for r in reports:
    for k in ("org_name", "report_id", "domain", "begin", "end", "records", "messages"):
        if k not in r: fails.append(f"reports: key {k} missing")
    if not (r["begin"].endswith("Z") and "T" in r["begin"]): fails.append(f"begin not ISO 8601 UTC: {r['begin']}")

got = {s["sender"]: s for s in load("senders")}
want = {s["sender"]: s for s in exp["senders"]}
eq("sender groups", sorted(got), sorted(want))
for name, w in want.items():
    g = got.get(name)
    if not g: continue
    for k in ("messages", "spf_aligned", "dkim_aligned", "dmarc_pass", "third_party"):
        eq(f"{name}.{k}", g.get(k), w[k])
    for k in ("source_ips", "dkim_domains", "spf_domains", "reporters", "first_seen", "last_seen"):
        if k not in g: fails.append(f"{name}: key {k} missing")
vols = [s["messages"] for s in load("senders")]
eq("most volume first", vols, sorted(vols, reverse=True))
# the SPF-unaligned volume built into the scenario
eq("messages - spf_aligned over all senders",
   sum(s["messages"] - s["spf_aligned"] for s in got.values()),
   sum(s["messages"] - s["spf_aligned"] for s in want.values()))
for kind, field in (("spf", "spf_aligned"), ("dkim", "dkim_aligned"), ("any", "dmarc_pass")):
    eq(f"--fail {kind}", sorted(s["sender"] for s in load(f"fail_{kind}")),
       sorted(n for n, s in want.items() if s["messages"] > s[field]))
errs = load("errors")
if len(errs) < 3: fails.append(f"errors: {len(errs)} rows, want >= 3")
for e in errs:
    if "reports/" not in e.get("source", ""): fails.append(f"error without its source: {e}")
for f in fails: print("FAIL:", f)
print(f"{0 if fails else 1} passed, {len(fails)} failed")
sys.exit(1 if fails else 0)
PY
[ $? -eq 0 ] && ok || fail "known answers"
grep -q "sendgrid.net" "$TMP/senders.txt" && ok || fail "table lacks sendgrid.net"
finish
