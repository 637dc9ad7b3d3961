#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/db_restart.sh - the database stops and restarts while an ingest is
# loading: the ingest waits, reconnects, and in the end every report is stored
# exactly once (nothing lost, nothing doubled). Uses a cluster of its own so
# the restart does not disturb tests running in parallel.
source "$(dirname "$0")/lib/common.bash"
chmod 755 "$TMP"
export DMARCPIPE_HOME="$TMP/home"
trap '"$DP_BIN" db stop >/dev/null 2>&1 || true; cleanup' EXIT
"$DP_BIN" db start > /dev/null
DB=$("$DP_BIN" db conninfo)
"$DP_BIN" db migrate --db "$DB" > /dev/null
"$DP_BIN" sample --out "$TMP/s" --scale 30 --days 30 > /dev/null
read -r want_reports want_records want_messages < <(python3 -c '
import json, sys; t = json.load(open(sys.argv[1]))["totals"]; print(t["reports"], t["records"], t["messages"])' "$TMP/s/expected.json")

for attempt in 1 2 3; do
  psql "$DB" -qc "TRUNCATE report, record, ingest_error" >/dev/null
  "$DP_BIN" ingest --db "$DB" --jobs 1 "$TMP/s/reports" > /dev/null 2> "$TMP/err" & pid=$!
  sleep 0.$((3 + attempt * 2))
  "$DP_BIN" db stop > /dev/null
  sleep 1
  "$DP_BIN" db start > /dev/null
  set +e
  wait $pid
  rc=$?
  set -e
  grep -q "database unavailable" "$TMP/err" && break
  echo "attempt $attempt: the ingest finished before the restart; again" >&2
done
expect_eq "exit status after a restart ($(head -c 400 "$TMP/err"))" "$rc" 0
grep -q "database unavailable" "$TMP/err" && ok || fail "the restart was never seen by the ingest"
grep -q "reachable again" "$TMP/err" && ok || fail "no 'reachable again' line: $(cat "$TMP/err")"
expect_eq "stored exactly once" \
  "$(psql "$DB" -XAtc "SELECT count(*), sum(n_records), sum(messages) FROM report" | tr '|' ' ')" \
  "$want_reports $want_records $want_messages"
expect_eq "record rows" "$(psql "$DB" -XAtc "SELECT count(*), sum(count) FROM record")" "$want_records|$want_messages"
cat "$TMP/err" >&2
finish
