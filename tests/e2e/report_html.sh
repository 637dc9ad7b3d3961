#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/report_html.sh - `dmarcpipe report --html` opened in a real
# headless browser (Debian `chromium`): the page renders (the DOM holds the
# verdict, three charts and every sender), a screenshot is produced, and the
# page makes no network request: no element of the rendered DOM refers to
# anything but "#" or "data:", and chromium's network log shows no request
# other than the browser's own (a canary page proves that log sees a page's
# requests). Also: --redact, and the CSV export with --redact.
source "$(dirname "$0")/lib/common.bash"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  fail "chromium is not installed (scripts/install-deps.sh installs it)"
  finish
fi
new_db report
S="$TMP/sample"
"$DP_BIN" sample --out "$S" --seed 3 > /dev/null
"$DP_BIN" ingest --db "$DB" --quiet "$S/reports"
expect_eq "ingest" "$?" 0

"$DP_BIN" report --db "$DB" --domain example.com --html "$TMP/report.html"
expect_eq "report exit status" "$?" 0
[ -s "$TMP/report.html" ] && ok || fail "no report written"
[ ! -e "$TMP/report.html.tmp" ] && ok || fail "temporary file left behind"

# browser NAME URL ARGS...: run headless chromium on URL with a fresh profile;
# stdout to $TMP/NAME.out, the verbose log to $TMP/NAME.log.
browser() {
  local name=$1 url=$2; shift 2
  local prof; prof=$(mktemp -d "$TMP/prof.XXXXXX")
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-default-apps --disable-extensions --user-data-dir="$prof" \
    --host-resolver-rules="MAP * ~NOTFOUND" --enable-logging=stderr --v=1 \
    "$@" "$url" > "$TMP/$name.out" 2> "$TMP/$name.log" || true
}

# Requests a page made: chromium logs every URL request; its own background
# services (Google hosts) are not the page's.
page_requests() {
  grep -o 'NotifyBeforeURLRequest: [^ ]*' "$1" | sed 's/^NotifyBeforeURLRequest: //' \
    | grep -v '^file:' | grep -Ev '^[a-z]+://([a-z0-9.-]+\.)?(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)(/|:|$)' \
    || true
}

browser dom "file://$TMP/report.html" --dump-dom
browser shot "file://$TMP/report.html" --window-size=1200,2400 --hide-scrollbars \
  --screenshot="$TMP/report.png"
cp "$TMP/report.png" "${DP_REPORT_SCREENSHOT:-/dev/null}" 2>/dev/null || true

python3 - "$TMP/dom.out" "$S/expected.json" <<'PY'
import json, sys
from html.parser import HTMLParser
dom = open(sys.argv[1], encoding="utf-8").read()
exp = json.load(open(sys.argv[2]))
fails = []
FETCH = {"src", "href", "xlink:href", "srcset", "poster", "action", "formaction", "data",
         "background", "ping", "manifest", "cite", "longdesc"}
class P(HTMLParser):
    def __init__(s):
        super().__init__(); s.tags = {}; s.refs = []; s.text = []
    def handle_starttag(s, tag, attrs):
        s.tags[tag] = s.tags.get(tag, 0) + 1
        for k, v in attrs:
            if k in FETCH and not (v or "").startswith(("#", "data:")):
                s.refs.append(f"<{tag} {k}={v!r}>")
            if k == "style" and "url(" in (v or ""):
                s.refs.append(f"<{tag} style={v!r}>")
    def handle_data(s, d): s.text.append(d)
p = P(); p.feed(dom)
text = " ".join(p.text)
if "ready after fixing 3 senders" not in text: fails.append("verdict missing from the rendered DOM")
if p.tags.get("svg", 0) != 3: fails.append(f"{p.tags.get('svg', 0)} svg elements, want 3")
if p.tags.get("path", 0) < 2 or p.tags.get("rect", 0) < 1: fails.append("charts have no marks")
if p.refs: fails.append(f"fetchable references: {p.refs[:5]}")
for t in ("script", "link", "img", "iframe", "object", "embed"):
    if p.tags.get(t): fails.append(f"<{t}> present")
if "@import" in dom or "url(" in dom: fails.append("CSS fetch (url( or @import) present")
# Every named sender of the scenario is in the page.
for s in exp["senders"]:
    n = s["sender"]
    if not n.startswith("unauthenticated ") and n not in text: fails.append(f"sender {n} missing")
for svc in ("SendGrid", "Amazon SES", "Zendesk"):
    if svc not in text: fails.append(f"service {svc} missing")
for f in fails: print("FAIL:", f)
sys.exit(1 if fails else 0)
PY
[ $? -eq 0 ] && ok || fail "rendered DOM"

# The screenshot is a PNG of the requested size.
python3 - "$TMP/report.png" <<'PY' && ok || fail "screenshot"
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (1200, 2400), (w, h)
assert len(b) > 20000, "suspiciously small (blank page?)"
PY

# No request from the page; the canary shows the log would have seen one.
R=$(page_requests "$TMP/dom.log"; page_requests "$TMP/shot.log")
expect_eq "requests made by the report page" "$R" ""
printf '<!DOCTYPE html><p>canary</p><img src="http://198.51.100.77/canary.png">' > "$TMP/canary.html"
browser canary "file://$TMP/canary.html" --dump-dom
page_requests "$TMP/canary.log" | grep -q '198\.51\.100\.77/canary\.png' && ok \
  || fail "the network log did not show the canary's request: the no-request check is blind"

# --redact: no full source address, no local part; networks stay. A
# reporter's name is free text and may hold addresses too.
one_record_report "$TMP/leaky.xml" "Contact 192.0.2.55 or admin@corp.example" leaky-1 example.com 3 1735775999
"$DP_BIN" ingest --db "$DB" --quiet "$TMP/leaky.xml" || fail "ingest of the leaky reporter"
"$DP_BIN" report --db "$DB" --domain example.com --html "$TMP/leaky.html"
grep -q "Contact 192.0.2.55 or admin@corp.example" "$TMP/leaky.html" && ok \
  || fail "the reporter's name is not on the page (the redaction check below would be blind)"
"$DP_BIN" report --db "$DB" --domain example.com --html "$TMP/red.html" --redact
grep -Eq "192\.0\.2\.55|admin@" "$TMP/red.html" && fail "a reporter's address is not redacted" || ok
expect_eq "report --redact" "$?" 0
IPS=$(grep -Eo '\b([0-9]{1,3}\.){3}[0-9]{1,3}\b' "$TMP/red.html" | grep -v '\.0$' | head -3 || true)
expect_eq "full IPv4 addresses in the redacted report" "$IPS" ""
grep -q '\.x<' "$TMP/red.html" && ok || fail "redacted addresses not shown as a.b.c.x"
"$DP_BIN" senders --db "$DB" --domain example.com --format csv --redact > "$TMP/s.csv"
IPS=$(grep -Eo '\b([0-9]{1,3}\.){3}[0-9]{1,3}\b' "$TMP/s.csv" | grep -v '\.0$' | head -3 || true)
expect_eq "full IPv4 addresses in senders --redact CSV" "$IPS" ""
head -1 "$TMP/s.csv" | grep -q ',fix,service,service_kind' && ok || fail "CSV lacks service columns"
grep -q '^sendgrid.net,.*,SendGrid,esp' "$TMP/s.csv" && ok || fail "CSV lacks SendGrid"

set +e
"$DP_BIN" report --db "$DB" --domain example.com > /dev/null 2>&1
expect_eq "--html is required" "$?" 2
"$DP_BIN" report --db "$DB" --domain example.com --html "$TMP/nodir/x.html" > /dev/null 2>&1
expect_eq "unwritable --html" "$?" 2
set -e
finish
