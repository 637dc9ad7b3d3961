#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/conn_limit.sh - a server that allows dmarcpipe one connection
# (a role's CONNECTION LIMIT, a full max_connections): ingest loads on the
# one it has instead of waiting two minutes for a second and failing, and
# the catch-up after it still gets its connection.
source "$(dirname "$0")/lib/common.bash"
ROLE="dp_lim_$$"
psql "$DP_TEST_DB dbname=postgres" -qc "CREATE ROLE \"$ROLE\" LOGIN" >/dev/null
trap 'cleanup; psql "$DP_TEST_DB dbname=postgres" -qc "DROP ROLE IF EXISTS \"$ROLE\"" >/dev/null 2>&1' EXIT
new_db lim
# the role owns the database, so it owns what the migrations create
psql "$DP_TEST_DB dbname=postgres" -qc "ALTER DATABASE \"$E2E_DB\" OWNER TO \"$ROLE\"" >/dev/null
LIM="$DB user=$ROLE"
"$DP_BIN" db migrate --db "$LIM" > /dev/null || fail "migrate as the role"
psql "$DP_TEST_DB dbname=postgres" -qc "ALTER ROLE \"$ROLE\" CONNECTION LIMIT 1" >/dev/null
# a year of sample mail, parsed by one thread: the first batch loads while
# the next gathers, so a second connection is wanted
"$DP_BIN" sample --out "$TMP/s" --seed 3 --days 365 > /dev/null
read -r want_reports want_records < <(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))["totals"]
print(t["reports"], t["records"])' "$TMP/s/expected.json")
t0=$(date +%s)
set +e
err=$(timeout 100 "$DP_BIN" ingest --jobs 1 --db "$LIM" "$TMP/s/reports" 2>&1)
rc=$?
set -e
expect_eq "ingest with one connection allowed: exit status" "$rc" 0
[ $(( $(date +%s) - t0 )) -lt 30 ] && ok || fail "ingest took $(( $(date +%s) - t0 )) s (waiting for a second connection?)"
expect_eq "every report stored once" "$(sql "SELECT count(*), sum(n_records) FROM report")" "$want_reports|$want_records"
expect_eq "nothing left to aggregate" "$(sql "SELECT count(*) FROM agg_pending_any")" 0
grep -q "refused a second connection" <<<"$err" && ok || fail "no line about the refused connection: $err"
grep -q "aggregates caught up" <<<"$err" && ok || fail "no catch-up: $err"
finish
