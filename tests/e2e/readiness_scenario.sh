#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/readiness_scenario.sh - `readiness` and `domains` on a generated
# scenario with known answers (dmarcpipe sample, seed 3): the totals and the
# fail classes must agree with expected.json's sender groups, the unaligned
# ESPs must be the senders to fix, forwarding and spoofing must not, and the
# --by day trend must add up to the totals.
source "$(dirname "$0")/lib/common.bash"
new_db readiness
S="$TMP/sample"
"$DP_BIN" sample --out "$S" --seed 3 > /dev/null
"$DP_BIN" ingest --db "$DB" --quiet "$S/reports"
expect_eq "ingest" "$?" 0

"$DP_BIN" readiness --db "$DB" --domain example.com --format json > "$TMP/r.json"
"$DP_BIN" readiness --db "$DB" --domain example.com --by day --format json > "$TMP/day.json"
"$DP_BIN" readiness --db "$DB" --domain example.com --by week > "$TMP/r.txt"
"$DP_BIN" readiness --db "$DB" --domain example.com --by day --format csv > "$TMP/day.csv"
"$DP_BIN" domains --db "$DB" --format json > "$TMP/domains.json"

python3 - "$S/expected.json" "$TMP" <<'PY'
import csv, json, sys
exp = json.load(open(sys.argv[1])); tmp = sys.argv[2]
r = json.load(open(f"{tmp}/r.json")); day = json.load(open(f"{tmp}/day.json"))
fails = []
def eq(what, got, want):
    if got != want: fails.append(f"{what}: got {got!r}, want {want!r}")

want = {s["sender"]: s for s in exp["senders"]}
failing = lambda s: s["messages"] - s["dmarc_pass"]
unauth = {n: s for n, s in want.items() if n.startswith("unauthenticated ")}
eq("object", isinstance(r, dict), True)
eq("domain", r["domain"], "example.com")
eq("messages", r["messages"], exp["totals"]["messages"])
eq("dmarc_pass", r["dmarc_pass"], sum(s["dmarc_pass"] for s in want.values()))
eq("dmarc_fail", r["dmarc_fail"], sum(failing(s) for s in want.values()))
eq("classes add up", r["fail_fixable"] + r["fail_forwarded"] + r["fail_unauthenticated"],
   r["dmarc_fail"])
# The scenario's meaning (docs/sample-data.md): SES, SendGrid and Zendesk are
# legitimate services configured wrong; groups.io is a mailing list and
# 198.51.100.0/24 forwarding that breaks DKIM; every other unauthenticated
# network is spoofing.
fixable = ["amazonses.com", "sendgrid.net", "zendesk.com"]
fwd = ["groups.io", "unauthenticated 198.51.100.0/24"]
eq("fail_fixable", r["fail_fixable"], sum(failing(want[n]) for n in fixable))
eq("fail_forwarded", r["fail_forwarded"], sum(failing(want[n]) for n in fwd))
eq("fail_unauthenticated", r["fail_unauthenticated"],
   sum(failing(s) for n, s in unauth.items() if n not in fwd))
if r["dmarc_fail_if_strict"] < r["dmarc_fail"]:
    fails.append("strict alignment cannot fail less mail than relaxed")
names = [s["sender"] for s in r["senders_to_fix"]]
eq("senders_to_fix", names, sorted(fixable, key=lambda n: (-failing(want[n]), n)))
for s in r["senders_to_fix"]:
    eq(f"{s['sender']}.fail_fixable", s["fail_fixable"], failing(want[s["sender"]]))
    eq(f"{s['sender']}.messages", s["messages"], want[s["sender"]]["messages"])
    for k in ("third_party", "dmarc_pass", "source_ips", "reporters", "fix"):
        if k not in s: fails.append(f"{s['sender']}: key {k} missing")
for n in names:
    if n.startswith("unauthenticated"): fails.append(f"spoofer {n} among senders_to_fix")
eq("verdict", r["verdict_line"], "ready after fixing 3 senders")
eq("receivers", r["receivers"], len(exp["receivers"]))
eq("no disagreement (receivers' verdicts follow the results)", r["receivers_disagree"], 0)
eq("no trend without --by", "trend" in r, False)

t = day["trend"]
eq("days", len(t), exp["days"])
eq("first day", t[0]["period"], exp["first_day"])
eq("last day", t[-1]["period"], exp["last_day"])
for k in ("messages", "dmarc_pass", "fail_fixable", "fail_forwarded", "fail_unauthenticated",
          "dmarc_fail_if_strict"):
    eq(f"trend sum {k}", sum(p[k] for p in t), r[k])
rows = list(csv.DictReader(open(f"{tmp}/day.csv", newline="")))
eq("csv trend rows", [(x["period"], int(x["messages"])) for x in rows],
   [(p["period"], p["messages"]) for p in t])

d = json.load(open(f"{tmp}/domains.json"))
eq("domains", [x["domain"] for x in d], ["example.com"])
eq("domains.messages", d[0]["messages"], exp["totals"]["messages"])
eq("domains.reports", d[0]["reports"], exp["totals"]["reports"])
eq("domains.dmarc_pass", d[0]["dmarc_pass"], r["dmarc_pass"])
eq("domains.p", d[0]["p"], "none")
eq("domains.policy_changed", d[0]["policy_changed"], False)
eq("domains.reporters", sorted(d[0]["reporters"]), sorted(x["org_name"] for x in exp["receivers"]))
for f in fails: print("FAIL:", f)
print(f"{0 if fails else 1} passed, {len(fails)} failed")
sys.exit(1 if fails else 0)
PY
[ $? -eq 0 ] && ok || fail "known answers"
grep -q "^verdict: ready after fixing 3 senders" "$TMP/r.txt" && ok || fail "table lacks the verdict"
grep -q "^trend by week" "$TMP/r.txt" && ok || fail "table lacks the trend"
set +e
"$DP_BIN" readiness --db "$DB" --domain example.com --by month > /dev/null 2>&1
expect_eq "--by month is a usage error" "$?" 2
"$DP_BIN" readiness --db "$DB" > /dev/null 2>&1
expect_eq "--domain is required" "$?" 2
set -e
finish
