#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/mail_sources.sh - report mails of every shape receivers send (zip,
# gzip, octet-stream, RFC 2231/2047 non-ASCII names, inline text/xml in QP, a
# forwarded message/rfc822, several reports in one mail, newsletters and
# bounces), stored as loose .eml files, as a Maildir (with Maildir++ folder and
# a junk tmp/) and as one mboxrd file: each ingested into its own database
# must give exactly the totals built here, exit 0, and refuse nothing.
source "$(dirname "$0")/lib/common.bash"

python3 - "$TMP" <<'PY'
import gzip, io, json, os, sys, zipfile, base64, quopri
from email.message import EmailMessage
from email import policy
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email import encoders

tmp = sys.argv[1]
reports = []  # (xml bytes, records, messages)

def report(n):
    rid = f"mailsrc-{n}"
    recs = []
    msgs = 0
    for i in range(1 + n % 3):
        c = 3 + n * 7 + i
        msgs += c
        recs.append(f"""  <record>
    <row><source_ip>192.0.2.{n % 250 + 1}</source_ip><count>{c}</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>example.com</header_from></identifiers>
    <auth_results><dkim><domain>example.com</domain><result>pass</result></dkim>
      <spf><domain>mail{i}.example.net</domain><result>fail</result></spf></auth_results>
  </record>""")
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<feedback>
  <report_metadata><org_name>receiver{n % 4}.example</org_name><email>noreply@receiver.example</email>
    <report_id>{rid}</report_id><date_range><begin>{1700000000 + n * 86400}</begin><end>{1700086399 + n * 86400}</end></date_range>
  </report_metadata>
  <policy_published><domain>example.com</domain><adkim>r</adkim><aspf>r</aspf><p>none</p><pct>100</pct></policy_published>
{chr(10).join(recs)}
</feedback>
""".encode()
    reports.append((xml, len(recs), msgs))
    return xml, rid

def gz(b): return gzip.compress(b, mtime=0)
def zp(name, b):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as z: z.writestr(name, b)
    return bio.getvalue()

def hdr(m, subj):
    m["From"] = "noreply-dmarc@receiver.example"
    m["To"] = "rua@example.com"
    m["Subject"] = subj
    m["Date"] = "Mon, 13 Nov 2023 10:00:00 +0000"
    m["Message-ID"] = f"<{abs(hash(subj))}@receiver.example>"

def attach(outer, data, ctype, fname=None, raw_disposition=None):
    maintype, subtype = ctype.split("/")
    p = MIMEBase(maintype, subtype)
    p.set_payload(data)
    encoders.encode_base64(p)
    if raw_disposition:
        p["Content-Disposition"] = raw_disposition
    elif fname:
        p.add_header("Content-Disposition", "attachment", filename=fname)
    outer.attach(p)

msgs = []  # bytes of each message

# 1. Google style: zip attachment, text part first
x, rid = report(1)
m = MIMEMultipart(); hdr(m, f"Report domain: example.com Report-ID: {rid}")
m.attach(MIMEText("This is an aggregate report from receiver0.example.\n"))
attach(m, zp(f"receiver.example!example.com!{rid}.xml", x), "application/zip", f"r{rid}.zip")
msgs.append(m.as_bytes())

# 2. Microsoft style: gzip attachment
x, rid = report(2)
m = MIMEMultipart(); hdr(m, f"Report Domain: example.com Report-ID: <{rid}>")
attach(m, gz(x), "application/gzip", f"{rid}.xml.gz")
msgs.append(m.as_bytes())

# 3. application/octet-stream holding a gzip
x, rid = report(3)
m = MIMEMultipart(); hdr(m, f"octet {rid}")
attach(m, gz(x), "application/octet-stream", f"{rid}.xml.gz")
msgs.append(m.as_bytes())

# 4. RFC 2231 non-ASCII file name (as the email package writes it), zip
x, rid = report(4)
m = MIMEMultipart(); hdr(m, f"2231 {rid}")
attach(m, zp("rapport-été.xml", x), "application/zip", f"rapport-été-{rid}.zip")
msgs.append(m.as_bytes())

# 5. RFC 2231 continuations with a charset, by hand
x, rid = report(5)
m = MIMEMultipart(); hdr(m, f"2231 cont {rid}")
attach(m, gz(x), "application/gzip", raw_disposition=
       f"attachment; filename*0*=iso-8859-1''Rapport%20d%E9; filename*1*=taill%E9;"
       f" filename*2=\"-{rid}.xml.gz\"")
msgs.append(m.as_bytes())

# 6. RFC 2047 encoded-word file name (Outlook, old mailers)
x, rid = report(6)
name = "=?UTF-8?B?" + base64.b64encode(f"отчёт-{rid}.zip".encode()).decode() + "?="
m = MIMEMultipart(); hdr(m, f"2047 {rid}")
p = MIMEBase("application", "zip"); p.set_payload(zp("r.xml", x)); encoders.encode_base64(p)
p.replace_header("Content-Type", f'application/zip; name="{name}"')
p["Content-Disposition"] = f'attachment; filename="{name}"'
m.attach(p)
msgs.append(m.as_bytes())

# 7. XML inline: the whole message is text/xml in quoted-printable
x, rid = report(7)
body = quopri.encodestring(x.replace(b"<feedback>", b"<feedback>" + b" " * 90 + b"<!-- long line =\xc3\xa9 -->"))
msgs.append(b"From: dmarc@receiver.example\r\nTo: rua@example.com\r\nSubject: inline " + rid.encode() +
            b"\r\nMIME-Version: 1.0\r\nContent-Type: text/xml; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body.replace(b"\n", b"\r\n"))

# 8. text/xml QP as an attachment next to a text part
x, rid = report(8)
m = MIMEMultipart(); hdr(m, f"xml attach {rid}")
m.attach(MIMEText("see attachment\n"))
p = MIMEText(x.decode(), "xml", "utf-8"); p.replace_header("Content-Transfer-Encoding", "quoted-printable")
p.set_payload(quopri.encodestring(x).decode())
p.add_header("Content-Disposition", "attachment", filename=f"{rid}.xml")
m.attach(p)
msgs.append(m.as_bytes())

# 9. a report mail forwarded by a person as message/rfc822 (zip inside)
x, rid = report(9)
inner = MIMEMultipart(); hdr(inner, f"inner {rid}")
attach(inner, zp(f"{rid}.xml", x), "application/zip", f"{rid}.zip")
m = MIMEMultipart(); hdr(m, f"Fwd: report {rid}")
m.attach(MIMEText("FYI, this one came to my own mailbox.\n"))
m.attach(MIMEMessage(inner))
msgs.append(m.as_bytes())

# 10. several reports in one message (zip + gzip + plain xml)
m = MIMEMultipart(); hdr(m, "three reports")
x, rid = report(10); attach(m, zp(f"{rid}.xml", x), "application/zip", f"{rid}.zip")
x, rid = report(11); attach(m, gz(x), "application/gzip", f"{rid}.xml.gz")
x, rid = report(12); attach(m, x, "text/xml", f"{rid}.xml")
msgs.append(m.as_bytes())

# 11. a body line that looks like an mbox separator, after a blank line, and
# one already quoted: the mbox writer escapes them (mboxrd), ingest undoes it
x, rid = report(13)
m = MIMEMultipart(); hdr(m, f"from lines {rid}")
m.attach(MIMEText("Hello,\n\nFrom postmaster@example.com Mon Jan  1 10:00:00 2024\n\n>From here on\nbye\n"))
attach(m, gz(x), "application/gzip", f"{rid}.xml.gz")
msgs.append(m.as_bytes())

# 12. a newsletter (no report)
m = MIMEMultipart("alternative"); hdr(m, "Our November newsletter")
m.attach(MIMEText("Plain text news\n")); m.attach(MIMEText("<html><body>news</body></html>", "html"))
msgs.append(m.as_bytes())

# 13. a bounce (multipart/report delivery-status, no DMARC report)
msgs.append(b"""From: MAILER-DAEMON@mx.example.com
To: rua@example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="bnc"

--bnc
Content-Type: text/plain

Your message could not be delivered.

--bnc
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; x@example.org
Action: failed
Status: 5.1.1

--bnc
Content-Type: text/rfc822-headers

From: rua@example.com
Subject: hi
--bnc--
""")

# 14. a plain text mail, single part
msgs.append(b"From: someone@example.org\nTo: rua@example.com\nSubject: question\n\nIs this the right address?\n")

os.makedirs(f"{tmp}/eml")
for i, b in enumerate(msgs):
    open(f"{tmp}/eml/{i + 1:02d}.eml", "wb").write(b)

# the Maildir: new/ and cur/, a Maildir++ folder, junk that must never be read
md = f"{tmp}/Maildir"
for d in ("new", "cur", "tmp", ".Reports/new", ".Reports/cur", ".Reports/tmp"):
    os.makedirs(f"{md}/{d}")
for i, b in enumerate(msgs):
    sub = (".Reports/" if i % 3 == 2 else "") + ("new" if i % 2 else "cur")
    flags = ":2,S" if sub.endswith("cur") else ""
    open(f"{md}/{sub}/17000000{i:02d}.M{i}P1.host{flags}", "wb").write(b)
open(f"{md}/tmp/1700000099.M99P1.host", "wb").write(b"half delivered garbage \x00\x01")
open(f"{md}/.Reports/tmp/1700000098.M98P1.host", "wb").write(b"\x89PNG junk")
open(f"{md}/dovecot-uidlist", "wb").write(b"3 V1700000000 N1\n")
open(f"{md}/.Reports/maildirfolder", "wb").write(b"")

# the mbox (mboxrd: every ^>*From  line of a message gets one more '>')
with open(f"{tmp}/all.mbox", "wb") as f:
    for b in msgs:
        b = b.replace(b"\r\n", b"\n")
        f.write(b"From MAILER-DAEMON Mon Nov 13 10:00:00 2023\n")
        for line in b.split(b"\n")[:-1] if b.endswith(b"\n") else b.split(b"\n"):
            if line.lstrip(b">").startswith(b"From "):
                line = b">" + line
            f.write(line + b"\n")
        f.write(b"\n")

json.dump({"reports": len(reports), "records": sum(r[1] for r in reports),
           "messages": sum(r[2] for r in reports), "mails": len(msgs)},
          open(f"{tmp}/expected.json", "w"))
PY

read -r want_reports want_records want_messages < <(python3 -c '
import json,sys; e=json.load(open(sys.argv[1])); print(e["reports"], e["records"], e["messages"])' "$TMP/expected.json")
[ "$want_reports" -eq 13 ] && ok || fail "generator built $want_reports reports, want 13"
grep -q '^>From postmaster@example.com' "$TMP/all.mbox" && ok || fail "mbox lacks the quoted From line"

# ingest_totals NAME PATH: ingest into a fresh database; check exit status 0,
# no refusal; TOTALS becomes "reports records messages" as stored.
ingest_totals() {
  new_db "$1"
  set +e
  "$DP_BIN" ingest --db "$DB" "$2" > /dev/null 2> "$TMP/$1.err"
  local rc=$?
  set -e
  expect_eq "$1: ingest exit status ($(head -c 2000 "$TMP/$1.err"))" "$rc" 0
  grep -q "0 refused" "$TMP/$1.err" && ok || fail "$1: summary: $(tail -1 "$TMP/$1.err")"
  expect_eq "$1: ingest_error rows" "$(sql "SELECT count(*) FROM ingest_error")" 0
  sql "SELECT source FROM report ORDER BY 1" > "$TMP/$1.sources"
  "$DP_BIN" reports --db "$DB" --format json > "$TMP/$1.json"
  TOTALS=$(python3 -c '
import json,sys; r=json.load(open(sys.argv[1]))
print(len(r), sum(x["records"] for x in r), sum(x["messages"] for x in r))' "$TMP/$1.json")
  psql "$DP_TEST_DB dbname=postgres" -qc "DROP DATABASE IF EXISTS \"$E2E_DB\" WITH (FORCE)" >/dev/null
}

want="$want_reports $want_records $want_messages"
ingest_totals eml "$TMP/eml"
expect_eq "loose .eml totals" "$TOTALS" "$want"
ingest_totals maildir "$TMP/Maildir"
expect_eq "Maildir totals" "$TOTALS" "$want"
ingest_totals mbox "$TMP/all.mbox"
expect_eq "mbox totals" "$TOTALS" "$want"

# the parts are named inside the mbox: message N > part M (decoded name) > entry
for src in "message 5 > part 1 (Rapport détaillé-mailsrc-5.xml.gz)" \
           "message 6 > part 1 (отчёт-mailsrc-6.zip) > entry r.xml" \
           "message 4 > part 1 (rapport-été-mailsrc-4.zip) > entry rapport-été.xml" \
           "message 7 > part 1 (text/xml)" \
           "message 9 > part 2 (message) > part 1 (mailsrc-9.zip) > entry mailsrc-9.xml" \
           "message 10 > part 3 (mailsrc-12.xml)"; do
  grep -qxF "$TMP/all.mbox: $src" "$TMP/mbox.sources" && ok || fail "mbox source '$src' missing: $(cat "$TMP/mbox.sources")"
done
grep -qxF "$TMP/Maildir/.Reports/cur/1700000002.M2P1.host:2,S: part 1 (mailsrc-3.xml.gz)" "$TMP/maildir.sources" &&
  ok || fail "Maildir++ source missing: $(cat "$TMP/maildir.sources")"
"$DP_BIN" ingest --output null "$TMP/all.mbox" > /dev/null 2> "$TMP/mbox_null.err" && ok ||
  fail "mbox --output null: $(cat "$TMP/mbox_null.err")"
grep -q "13 reports stored" "$TMP/mbox_null.err" && ok || fail "mbox --output null: $(tail -1 "$TMP/mbox_null.err")"
# the junk in tmp/ was never an input: 14 messages, no more
grep -q "^dmarcpipe: 14 inputs:" "$TMP/maildir.err" && ok || fail "Maildir inputs: $(tail -1 "$TMP/maildir.err")"
# messages without a report are noted, not refused
grep -q "12.eml: note: no DMARC report in this message" "$TMP/eml.err" && ok ||
  fail "newsletter note missing: $(cat "$TMP/eml.err")"
finish
