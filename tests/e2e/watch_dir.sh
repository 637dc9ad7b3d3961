#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/watch_dir.sh - `dmarcpipe watch DIR`: files dropped while it runs
# are loaded once and moved to done/ (a refused one to rejected/); a file still
# being written is taken only once complete; while PostgreSQL is stopped the
# files stay put and are loaded after it is back; once idle it folds the
# stored reports into the aggregates (those of a partly refused input too),
# and tries a failed catch-up again by itself; SIGTERM exits cleanly.
# Uses a cluster of its own, since it stops and starts it.
source "$(dirname "$0")/lib/common.bash"
chmod 755 "$TMP"
export DMARCPIPE_HOME="$TMP/home"
WPID=""
trap '[ -n "$WPID" ] && kill "$WPID" 2>/dev/null; "$DP_BIN" db stop >/dev/null 2>&1 || true; cleanup' EXIT
"$DP_BIN" db start > /dev/null
DB=$("$DP_BIN" db conninfo)
"$DP_BIN" db migrate --db "$DB" > /dev/null
"$DP_BIN" sample --out "$TMP/s" --days 4 > /dev/null
read -r want_reports want_records < <(python3 -c '
import json, sys; t = json.load(open(sys.argv[1]))["totals"]; print(t["reports"], t["records"])' "$TMP/s/expected.json")
W="$TMP/inbox"
mkdir -p "$W"
"$DP_BIN" watch --db "$DB" --settle 1.5 --rescan 1 "$W" 2> "$TMP/watch.err" & WPID=$!

# wait_moved N: until N files sit in done/ + rejected/ (30 s at most)
wait_moved() {
  for _ in $(seq 1 150); do
    n=$(find "$W/done" "$W/rejected" -type f 2>/dev/null | wc -l)
    [ "$n" -ge "$1" ] && return 0
    sleep 0.2
  done
  return 1
}
files=("$TMP"/s/reports/*)
half=$(( ${#files[@]} / 2 ))
cp "${files[@]:0:$half}" "$W/"
printf 'this is not a report\n' > "$W/junk.txt"
# a report written in two steps, slower than nothing but faster than --settle
big="${files[$half]}"
head -c 100 "$big" > "$W/growing.bin"; sleep 0.7; tail -c +101 "$big" >> "$W/growing.bin"
wait_moved $((half + 2)) && ok || fail "first files not moved: $(ls "$W")"
expect_eq "junk refused into rejected/" "$(ls "$W/rejected")" "junk.txt"
[ -f "$W/done/growing.bin" ] && ok || fail "the growing file was not loaded whole: $(cat "$TMP/watch.err")"

# the database goes away: new files wait, untouched
"$DP_BIN" db stop > /dev/null
cp "${files[@]:$((half + 1))}" "$W/"
sleep 3
left=$(find "$W" -maxdepth 1 -type f | wc -l)
expect_eq "files kept while the database is down" "$left" $(( ${#files[@]} - half - 1 ))
"$DP_BIN" db start > /dev/null
wait_moved $(( ${#files[@]} + 1 )) && ok || fail "files not loaded after the database came back: $(cat "$TMP/watch.err")"
expect_eq "stored once" "$(psql "$DB" -XAtc "SELECT count(*), sum(n_records) FROM report")" "$want_reports|$want_records"
expect_eq "nothing left in the inbox" "$(find "$W" -maxdepth 1 -type f | wc -l)" 0
# once idle, watch folds what it stored into the aggregates by itself
for _ in $(seq 1 100); do
  [ "$(psql "$DB" -XAtc "SELECT count(*) FROM agg_pending")" = 0 ] && break
  sleep 0.2
done
expect_eq "aggregates caught up by watch" "$(psql "$DB" -XAtc \
  "SELECT (SELECT count(*) FROM agg_pending), (SELECT count(*) FROM agg_report) > 0")" "0|t"

# stop_watch: SIGTERM the watch and wait for it; its exit status in WRC
stop_watch() {
  kill -TERM "$WPID"
  set +e
  wait "$WPID"
  WRC=$?
  set -e
  WPID=""
}
# wait_folded: until nothing is pending (20 s at most)
wait_folded() {
  for _ in $(seq 1 100); do
    [ "$(psql "$DB" -XAtc "SELECT count(*) FROM agg_pending_any")" = 0 ] && return 0
    sleep 0.2
  done
  return 1
}
"$DP_BIN" sample --out "$TMP/s2" --days 2 --seed 11 --end 2025-03-01 > /dev/null
more=("$TMP"/s2/reports/*.xml)
# a zip of a good report and junk is refused as a whole (rejected/), but its
# report is stored, and watch folds it like any other
python3 - "${more[0]}" "$TMP/mixed.zip" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[2], "w")
z.writestr("good.xml", open(sys.argv[1], "rb").read())
z.writestr("notes.txt", "not a report")
z.close()
PY
nrep=$(psql "$DB" -XAtc "SELECT count(*) FROM report")
cp "$TMP/mixed.zip" "$W/"
wait_moved $(( ${#files[@]} + 2 )) && ok || fail "the mixed zip was not moved: $(cat "$TMP/watch.err")"
[ -f "$W/rejected/mixed.zip" ] && ok || fail "the mixed zip is not in rejected/: $(ls "$W/rejected")"
if [ "$(psql "$DB" -XAtc "SELECT count(*) FROM report")" -gt "$nrep" ]; then
  wait_folded && ok || fail "watch left the report of a partly refused input pending"
else
  fail "the mixed zip's good report was not stored (input: ${more[0]})"
fi
# a catch-up that fails (a table away, as a DBA's maintenance might) is
# tried again by itself, not left until the next file arrives
psql "$DB" -Xqc "ALTER TABLE agg_report RENAME TO agg_report_away"
cp "${more[1]}" "$W/"
for _ in $(seq 1 100); do grep -q "aggregating: .*agg_report.*trying again in" "$TMP/watch.err" && break; sleep 0.2; done
grep -q "aggregating: .*agg_report.*(trying again in [0-9]* s)" "$TMP/watch.err" && ok ||
  fail "no failed catch-up reported: $(cat "$TMP/watch.err")"
psql "$DB" -Xqc "ALTER TABLE agg_report_away RENAME TO agg_report"
wait_folded && ok || fail "the failed catch-up was not tried again: $(tail -3 "$TMP/watch.err")"

stop_watch
expect_eq "exit status after SIGTERM" "$WRC" 0
grep -q "database unavailable" "$TMP/watch.err" && ok || fail "outage not reported: $(cat "$TMP/watch.err")"

# Stopped within the idle wait after a commit, watch folds what it stored
# before it exits; a read-only reporting role could not query otherwise.
# Started on a backlog an earlier run left (killed, or --no-aggregate), it
# folds that too once loading pauses.
"$DP_BIN" sample --out "$TMP/s3" --days 1 --seed 12 --end 2025-04-01 > /dev/null
late=("$TMP"/s3/reports/*)
"$DP_BIN" watch --db "$DB" --settle 0.2 --rescan 1 "$W" 2> "$TMP/watch2.err" & WPID=$!
cp "${late[0]}" "$W/"
wait_moved $(( ${#files[@]} + 4 )) && ok || fail "not moved: $(cat "$TMP/watch2.err")"
stop_watch
expect_eq "exit status after a SIGTERM right after a commit" "$WRC" 0
expect_eq "folded before exiting" "$(psql "$DB" -XAtc "SELECT count(*) FROM agg_pending_any")" 0
"$DP_BIN" ingest --quiet --no-aggregate --db "$DB" "${late[1]}" || fail "ingest --no-aggregate"
[ "$(psql "$DB" -XAtc "SELECT count(*) FROM agg_pending_any")" -gt 0 ] && ok || fail "nothing pending"
"$DP_BIN" watch --db "$DB" --settle 0.2 --rescan 1 "$W" 2> "$TMP/watch3.err" & WPID=$!
wait_folded && ok || fail "watch did not fold the backlog it started on: $(cat "$TMP/watch3.err")"
stop_watch
finish
