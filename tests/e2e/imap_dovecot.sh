#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/imap_dovecot.sh - the IMAP source against a real Dovecot started on
# loopback with a throwaway config: ingest moves messages to Archive/DMARC,
# re-ingest fetches nothing, a message left in place is not fetched twice,
# a new UIDVALIDITY reads the folder again (stored once), XOAUTH2 with a token
# from a file or a command, nothing is moved while PostgreSQL is down, `watch`
# survives a Dovecot restart, `watch` learns of new mail through IDLE (with a
# password and with XOAUTH2) and stops promptly on SIGTERM while idling, and
# polls when the server has no IDLE. Uses a PostgreSQL cluster of its own (it stops it).
source "$(dirname "$0")/lib/common.bash"
command -v dovecot >/dev/null || { fail "dovecot not installed (scripts/install-deps.sh)"; finish; exit 1; }
chmod 755 "$TMP"
export DMARCPIPE_HOME="$TMP/home"
export TMPDIR="$TMP/tmpdir" # where dmarcpipe spools fetched messages
mkdir -p "$TMPDIR"
WPID=""
DV="$TMP/dovecot"
# stop_dovecot: the master and its children (the IMAP sessions live on after
# the master otherwise), by process id
stop_dovecot() {
  local pid
  pid=$(cat "$DV/base/master.pid" 2>/dev/null) || return 0
  # shellcheck disable=SC2046
  kill -9 "$pid" $(pgrep -P "$pid") 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$DV/base/master.pid"
}
trap '[ -n "$WPID" ] && kill "$WPID" 2>/dev/null; stop_dovecot; "$DP_BIN" db stop >/dev/null 2>&1 || true; cleanup' EXIT

# --- Dovecot on 127.0.0.1:PORT; mail belongs to nobody; the password is
# "s3cret" (PLAIN/LOGIN), the OAuth2 bearer token "tok-123" (XOAUTH2 and
# OAUTHBEARER only: a second passdb restricted to those mechanisms).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$DV/base" "$DV/state" "$DV/mail"
chown nobody "$DV/mail"
NOGROUP=$(id -gn nobody)
echo "dmarc:{PLAIN}s3cret:$(id -u nobody):$(id -g nobody)::$DV/mail::" > "$DV/passwd"
echo "dmarc:{PLAIN}tok-123:$(id -u nobody):$(id -g nobody)::$DV/mail::" > "$DV/tokens"
cat > "$DV/dovecot.conf" <<EOF
base_dir = $DV/base
state_dir = $DV/state
instance_name = dp-e2e-$$
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login xoauth2 oauthbearer
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
log_path = $DV/dovecot.log
mail_location = maildir:$DV/mail/Maildir
first_valid_uid = 1
mail_uid = nobody
mail_gid = $NOGROUP
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
passdb {
  driver = passwd-file
  args = $DV/tokens
  mechanisms = xoauth2 oauthbearer
}
passdb {
  driver = passwd-file
  args = $DV/passwd
  mechanisms = plain login
}
userdb {
  driver = passwd-file
  args = $DV/passwd
}
EOF
start_dovecot() {
  dovecot -c "$DV/dovecot.conf"
  for _ in $(seq 1 50); do
    curl -s --user dmarc:s3cret "imap://127.0.0.1:$PORT/" >/dev/null && return 0
    sleep 0.1
  done
  fail "dovecot did not start: $(cat "$DV/dovecot.log")"
  return 1
}
start_dovecot
IMAP="imap://127.0.0.1:$PORT"
URL="imap://dmarc@127.0.0.1:$PORT"
# count FOLDER: messages in it (0 when it does not exist)
count() {
  curl -s --user dmarc:s3cret "$IMAP/" -X "STATUS \"$1\" (MESSAGES)" 2>/dev/null |
    sed -n 's/.*MESSAGES \([0-9]*\).*/\1/p' | grep . || echo 0
}
# unseen FOLDER: messages in it without \Seen
unseen() {
  curl -s --user dmarc:s3cret "$IMAP/" -X "STATUS \"$1\" (UNSEEN)" 2>/dev/null |
    sed -n 's/.*UNSEEN \([0-9]*\).*/\1/p' | grep . || echo 0
}
# deliver FOLDER FILE...: APPEND each message
deliver() {
  local folder=$1; shift
  for f in "$@"; do curl -s --user dmarc:s3cret -T "$f" "$IMAP/$folder" || fail "APPEND $f"; done
}
# mails DIR OUT: every sample report as a mail message (reports that are not
# mail already become an attachment), CRLF line ends as IMAP wants them
mails() {
  mkdir -p "$2"
  python3 - "$1" "$2" <<'PY'
import os, sys
from email.message import EmailMessage
src, dst = sys.argv[1], sys.argv[2]
for i, name in enumerate(sorted(os.listdir(src))):
    data = open(os.path.join(src, name), 'rb').read()
    if not name.endswith('.eml'):
        m = EmailMessage()
        org = name.split('!')[0]
        m['From'] = 'noreply-dmarc@' + org
        m['To'] = 'rua@example.com'
        m['Subject'] = 'Report Domain: example.com Submitter: ' + org
        m.set_content('DMARC aggregate report attached.')
        sub = 'gzip' if name.endswith('.gz') else 'zip' if name.endswith('.zip') else 'xml'
        m.add_attachment(data, maintype='application', subtype=sub, filename=name)
        data = m.as_bytes()
    data = data.replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
    open(os.path.join(dst, '%03d.eml' % i), 'wb').write(data)
PY
}
totals() { python3 -c 'import json, sys; t = json.load(open(sys.argv[1]))["totals"]; print(t["reports"], t["records"])' "$1"; }

"$DP_BIN" db start > /dev/null
DB=$("$DP_BIN" db conninfo)
"$DP_BIN" db migrate --db "$DB" > /dev/null
"$DP_BIN" sample --out "$TMP/s1" --days 3 > /dev/null
"$DP_BIN" sample --out "$TMP/s2" --days 2 --seed 7 --end 2025-03-01 > /dev/null
mails "$TMP/s1/reports" "$TMP/m1"
mails "$TMP/s2/reports" "$TMP/m2"
read -r r1 c1 < <(totals "$TMP/s1/expected.json")
read -r r2 c2 < <(totals "$TMP/s2/expected.json")
n1=$(ls "$TMP/m1" | wc -l)
printf 'From: news@example.net\r\nTo: rua@example.com\r\nSubject: newsletter\r\n\r\nno report here\r\n' > "$TMP/news.eml"

# --- 1. one-shot ingest: everything loaded, report mails archived, the
# newsletter left in INBOX (default for messages without a report)
deliver INBOX "$TMP"/m1/*.eml "$TMP/news.eml"
export DMARCPIPE_IMAP_PASSWORD=s3cret
set +e
"$DP_BIN" ingest --db "$DB" "$URL/INBOX" 2> "$TMP/i1.err"
rc=$?
set -e
expect_eq "ingest exit status" "$rc" 0
expect_eq "stored" "$(sql "SELECT count(*), sum(n_records) FROM report")" "$r1|$c1"
expect_eq "left in INBOX (no report)" "$(count INBOX)" 1
expect_eq "moved to Archive/DMARC (created)" "$(count Archive/DMARC)" "$n1"
expect_eq "imap_state" "$(sql "SELECT mailbox, last_uid FROM imap_state")" "$URL/INBOX|$((n1 + 1))"
grep -q "$((n1 + 1)) messages fetched, $n1 moved, 1 left in place" "$TMP/i1.err" && ok ||
  fail "summary: $(cat "$TMP/i1.err")"
grep -q 's3cret' "$TMP/i1.err" && fail "the password was printed" || ok

# --- 2. again: nothing new, the newsletter is not fetched twice
"$DP_BIN" ingest --db "$DB" "$URL/INBOX" 2> "$TMP/i2.err" && ok || fail "re-ingest: $(cat "$TMP/i2.err")"
grep -q ": 0 messages fetched" "$TMP/i2.err" && ok || fail "re-ingest fetched: $(cat "$TMP/i2.err")"

# --- 3. no-move mode: messages stay, and are still read only once; fetching
# leaves the read/unread marks as they were (curl's APPEND sets \Seen: unmark
# all, then mark the last new message read before dmarcpipe comes)
deliver INBOX "$TMP"/m1/000.eml "$TMP"/m1/001.eml
curl -s --user dmarc:s3cret "$IMAP/INBOX" -X "STORE 1:* -FLAGS (\\Seen)" > /dev/null || fail "STORE -\\Seen"
curl -s --user dmarc:s3cret "$IMAP/INBOX" -X "STORE 3 +FLAGS (\\Seen)" > /dev/null || fail "STORE \\Seen"
expect_eq "unread before" "$(unseen INBOX)" 2
"$DP_BIN" ingest --db "$DB" --imap-archive '' "$URL/INBOX" 2> "$TMP/i3.err" && ok || fail "no-move: $(cat "$TMP/i3.err")"
grep -q "2 messages fetched, 0 moved, 2 left in place" "$TMP/i3.err" && ok || fail "no-move: $(cat "$TMP/i3.err")"
grep -q "2 already stored" "$TMP/i3.err" && ok || fail "no-move duplicates: $(cat "$TMP/i3.err")"
expect_eq "left in INBOX" "$(count INBOX)" 3
expect_eq "unread after (read marks kept)" "$(unseen INBOX)" 2
"$DP_BIN" ingest --db "$DB" --imap-archive '' "$URL/INBOX" 2> "$TMP/i4.err"
grep -q ": 0 messages fetched" "$TMP/i4.err" && ok || fail "left messages fetched again: $(cat "$TMP/i4.err")"

# --- 3b. folders for refused and report-less messages; --output null moves
# nothing and saves no position; a folder that does not exist is an error
printf 'From: x@example.org\r\nSubject: Report domain: example.com\r\nContent-Type: text/xml\r\n\r\n<?xml version="1.0"?><feedback><report_metadata><org_name>broken\r\n' > "$TMP/bad.eml"
deliver INBOX "$TMP/bad.eml" "$TMP/news.eml"
"$DP_BIN" ingest --output null "$URL/INBOX" 2> "$TMP/n1.err" || true
grep -q ": 5 messages fetched, 0 moved" "$TMP/n1.err" && ok || fail "--output null: $(cat "$TMP/n1.err")"
set +e
"$DP_BIN" ingest --db "$DB" --imap-rejected Rejected --imap-nonreport Junk "$URL/INBOX" 2> "$TMP/n2.err"
rc=$?
set -e
expect_eq "refused message: exit status" "$rc" 1
expect_eq "refused message moved to Rejected" "$(count Rejected)" 1
expect_eq "message without a report moved to Junk" "$(count Junk)" 1
expect_eq "left in INBOX" "$(count INBOX)" 3
expect_eq "refusal recorded" "$(sql "SELECT count(*) FROM ingest_error WHERE source LIKE '%INBOX;UIDVALIDITY=%'")" 1
expect_eq "sources name the IMAP message, not the spool file" \
  "$(sql "SELECT count(*) FROM (SELECT source FROM report UNION ALL SELECT source FROM ingest_error) s WHERE source NOT LIKE 'imap://%;UIDVALIDITY=%;UID=%'")" 0
set +e
"$DP_BIN" ingest --db "$DB" "$URL/NoSuchFolder" 2> "$TMP/n3.err"
rc=$?
set -e
expect_eq "missing folder: exit status" "$rc" 2
grep -q "giving up" "$TMP/n3.err" && ok || fail "missing folder: $(cat "$TMP/n3.err")"

# --- 4. UIDVALIDITY: a folder deleted and created again numbers from 1 anew
curl -s --user dmarc:s3cret "$IMAP/" -X 'CREATE "Reports"' > /dev/null
deliver Reports "$TMP"/m1/002.eml "$TMP"/m1/003.eml
"$DP_BIN" ingest --db "$DB" --imap-archive '' "$URL/Reports" 2> "$TMP/u1.err"
grep -q "2 messages fetched" "$TMP/u1.err" && ok || fail "Reports: $(cat "$TMP/u1.err")"
curl -s --user dmarc:s3cret "$IMAP/" -X 'DELETE "Reports"' > /dev/null
sleep 1.1 # Dovecot derives UIDVALIDITY from the clock
curl -s --user dmarc:s3cret "$IMAP/" -X 'CREATE "Reports"' > /dev/null
deliver Reports "$TMP"/m1/002.eml "$TMP"/m1/003.eml
"$DP_BIN" ingest --db "$DB" --imap-archive '' "$URL/Reports" 2> "$TMP/u2.err"
grep -q "UIDVALIDITY changed" "$TMP/u2.err" && ok || fail "no UIDVALIDITY note: $(cat "$TMP/u2.err")"
grep -q "2 messages fetched" "$TMP/u2.err" && ok || fail "not read again: $(cat "$TMP/u2.err")"
expect_eq "still stored once" "$(sql "SELECT count(*), sum(n_records) FROM report")" "$r1|$c1"
"$DP_BIN" ingest --db "$DB" --imap-archive '' "$URL/Reports" 2> "$TMP/u3.err"
grep -q "UIDVALIDITY changed" "$TMP/u3.err" && fail "new UIDVALIDITY not saved: $(cat "$TMP/u3.err")" || ok
grep -q ": 0 messages fetched" "$TMP/u3.err" && ok || fail "read again twice: $(cat "$TMP/u3.err")"

# --- 5. XOAUTH2 with a bearer token from a file, then from a command; a
# wrong token is refused and never printed
unset DMARCPIPE_IMAP_PASSWORD
echo tok-123 > "$TMP/token"
"$DP_BIN" ingest --db "$DB" --imap-oauth2-token-file "$TMP/token" "$URL/INBOX" 2> "$TMP/o1.err" && ok ||
  fail "XOAUTH2 token file: $(cat "$TMP/o1.err")"
grep -q "user=<dmarc>, method=XOAUTH2" "$DV/dovecot.log" && ok || fail "no XOAUTH2 login in the Dovecot log"
"$DP_BIN" ingest --db "$DB" --imap-oauth2-token-cmd 'printf "%s\n" tok-123' "$URL/INBOX" 2> "$TMP/o2.err" && ok ||
  fail "XOAUTH2 token command: $(cat "$TMP/o2.err")"
echo wrong-token-42 > "$TMP/token"
set +e
"$DP_BIN" ingest --db "$DB" --imap-oauth2-token-file "$TMP/token" "$URL/INBOX" 2> "$TMP/o3.err"
rc=$?
set -e
expect_eq "wrong token: exit status" "$rc" 2
grep -q 'wrong-token-42' "$TMP/o3.err" && fail "the token was printed" || ok
set +e
"$DP_BIN" ingest --db "$DB" "$URL/INBOX" 2> "$TMP/o4.err"
rc=$?
set -e
expect_eq "no password: exit status" "$rc" 2
grep -q DMARCPIPE_IMAP_PASSWORD "$TMP/o4.err" && ok || fail "no password: $(cat "$TMP/o4.err")"
set +e
"$DP_BIN" ingest --db "$DB" "imap://dmarc:s3cret@127.0.0.1:$PORT/INBOX" 2> "$TMP/o5.err"
rc=$?
set -e
expect_eq "password in the URL refused" "$rc" 2

# --- 6. watch: PostgreSQL stopped -> messages are fetched but stay in INBOX;
# back -> loaded and moved; Dovecot restarted -> watch reconnects
export DMARCPIPE_IMAP_PASSWORD=s3cret
archived=$(count Archive/DMARC)
"$DP_BIN" watch --db "$DB" --imap-poll 0.5 "$URL/INBOX" 2> "$TMP/watch.err" & WPID=$!
sleep 1.5
"$DP_BIN" db stop > /dev/null
deliver INBOX "$TMP"/m2/000.eml "$TMP"/m2/001.eml "$TMP"/m2/002.eml
sleep 3
expect_eq "kept in INBOX while the database is down" "$(count INBOX)" 6
expect_eq "nothing archived while the database is down" "$(count Archive/DMARC)" "$archived"
"$DP_BIN" db start > /dev/null
for _ in $(seq 1 150); do [ "$(count INBOX)" = 3 ] && break; sleep 0.2; done
expect_eq "moved after the database came back" "$(count INBOX)" 3
stop_dovecot
sleep 2
start_dovecot
rest=("$TMP"/m2/*.eml)
deliver INBOX "${rest[@]:3}"
want=$((archived + ${#rest[@]}))
for _ in $(seq 1 200); do [ "$(count Archive/DMARC)" = "$want" ] && break; sleep 0.2; done
expect_eq "watch read the rest after the restart" "$(count Archive/DMARC)" "$want"
grep -q "INBOX: connecting or logging in: " "$TMP/watch.err" && ok || fail "outage not reported: $(cat "$TMP/watch.err")"
grep -q "INBOX: connected again" "$TMP/watch.err" && ok || fail "no reconnect line: $(cat "$TMP/watch.err")"
for _ in $(seq 1 100); do grep -q "INBOX: IDLE connected again" "$TMP/watch.err" && break; sleep 0.2; done
grep -q "INBOX: IDLE: .*; polling until it is back" "$TMP/watch.err" && ok || fail "IDLE outage not reported: $(cat "$TMP/watch.err")"
grep -q "INBOX: IDLE connected again" "$TMP/watch.err" && ok || fail "IDLE did not reconnect: $(cat "$TMP/watch.err")"
[ "$(grep -c "IDLE: .*polling until it is back" "$TMP/watch.err")" = 1 ] && ok || fail "not one IDLE line per outage: $(cat "$TMP/watch.err")"
kill -TERM "$WPID"
set +e
wait "$WPID"
rc=$?
set -e
WPID=""
expect_eq "watch exit status after SIGTERM" "$rc" 0
expect_eq "all stored once" "$(sql "SELECT count(*), sum(n_records) FROM report")" "$((r1 + r2))|$((c1 + c2))"
expect_eq "spool directories removed" "$(ls -A "$TMPDIR")" ""

# --- 7. IDLE: with a poll only every 300 s, mail APPENDed while watch idles
# is loaded within seconds (Dovecot announces it on the IDLE connection);
# SIGTERM while idling ends watch at once. Then the same with XOAUTH2: the
# IDLE connection is logged in by libcurl with the token too.
"$DP_BIN" sample --out "$TMP/s3" --days 1 --seed 11 --end 2025-04-01 > /dev/null
mails "$TMP/s3/reports" "$TMP/m3"
read -r r3 c3 < <(totals "$TMP/s3/expected.json")
# idle_watch ERRFILE ARGS...: start watch in the background, wait for IDLE
idle_watch() {
  local errf=$1; shift
  "$DP_BIN" watch --db "$DB" --imap-poll 300 "$@" "$URL/INBOX" 2> "$errf" & WPID=$!
  for _ in $(seq 1 100); do grep -q "IDLE: new mail is read at once" "$errf" && break; sleep 0.1; done
  grep -q "IDLE: new mail is read at once" "$errf" && ok || fail "IDLE not used: $(cat "$errf")"
  sleep 1 # the first look at the folder is over; now only IDLE can notice mail
}
# stop_watch WHAT: SIGTERM, which must end watch within 2 s with status 0
stop_watch() {
  local t0 rc
  t0=$(date +%s%N)
  kill -TERM "$WPID"
  set +e
  wait "$WPID"
  rc=$?
  set -e
  WPID=""
  expect_eq "$1: exit status after SIGTERM" "$rc" 0
  [ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 2000 ] && ok || fail "$1: SIGTERM took $(( ($(date +%s%N) - t0) / 1000000 )) ms"
}
idle_watch "$TMP/idle.err"
t0=$(date +%s)
deliver INBOX "$TMP"/m3/*.eml
want="$((r1 + r2 + r3))|$((c1 + c2 + c3))"
for _ in $(seq 1 50); do [ "$(sql "SELECT count(*), sum(n_records) FROM report")" = "$want" ] && break; sleep 0.2; done
expect_eq "IDLE: new mail loaded within seconds (poll: 300 s)" "$(sql "SELECT count(*), sum(n_records) FROM report")" "$want"
[ $(( $(date +%s) - t0 )) -lt 15 ] && ok || fail "IDLE: took $(( $(date +%s) - t0 )) s"
for _ in $(seq 1 25); do [ "$(count INBOX)" = 3 ] && break; sleep 0.2; done
[ "$(count INBOX)" = 3 ] && ok || fail "IDLE: new mail not archived: $(count INBOX) in INBOX: $(cat "$TMP/idle.err")"
# like watch DIR, it folds what it stored once loading pauses (2 s idle)
for _ in $(seq 1 75); do [ "$(sql "SELECT count(*) FROM agg_pending_any")" = 0 ] && break; sleep 0.2; done
expect_eq "watch imaps: aggregates caught up after loading" "$(sql "SELECT count(*) FROM agg_pending_any")" 0
grep -q "dmarcpipe watch: aggregates caught up: " "$TMP/idle.err" && ok || fail "no catch-up line: $(cat "$TMP/idle.err")"
stop_watch "IDLE"
grep -q 's3cret' "$TMP/idle.err" && fail "the password was printed" || ok
echo tok-123 > "$TMP/token"
idle_watch "$TMP/idle2.err" --imap-oauth2-token-file "$TMP/token"
archived=$(count Archive/DMARC)
deliver INBOX "$TMP"/m1/004.eml
for _ in $(seq 1 50); do [ "$(count Archive/DMARC)" = $((archived + 1)) ] && break; sleep 0.2; done
expect_eq "IDLE with XOAUTH2: new mail archived within seconds" "$(count Archive/DMARC)" $((archived + 1))
stop_watch "IDLE with XOAUTH2"
grep -q 'tok-123' "$TMP/idle2.err" && fail "the token was printed" || ok

# --- 8. a server without IDLE in its CAPABILITY: watch says so and polls
stop_dovecot
echo "imap_capability = IMAP4rev1 UIDPLUS MOVE" >> "$DV/dovecot.conf"
start_dovecot
"$DP_BIN" watch --db "$DB" --imap-poll 1 "$URL/INBOX" 2> "$TMP/noidle.err" & WPID=$!
for _ in $(seq 1 50); do grep -q "the server has no IDLE: polling every 1 s" "$TMP/noidle.err" && break; sleep 0.1; done
grep -q "the server has no IDLE: polling every 1 s" "$TMP/noidle.err" && ok || fail "no IDLE not noticed: $(cat "$TMP/noidle.err")"
archived=$(count Archive/DMARC)
deliver INBOX "$TMP"/m1/005.eml
for _ in $(seq 1 50); do [ "$(count Archive/DMARC)" = $((archived + 1)) ] && break; sleep 0.2; done
expect_eq "no IDLE: new mail archived by polling" "$(count Archive/DMARC)" $((archived + 1))
stop_watch "no IDLE"
grep -q "IDLE: .*polling until it is back" "$TMP/noidle.err" && fail "no IDLE taken for an outage: $(cat "$TMP/noidle.err")" || ok
expect_eq "spool directories removed after IDLE" "$(ls -A "$TMPDIR")" ""
finish
