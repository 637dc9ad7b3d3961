#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/readonly_queries.sh - a role that may only read (a reporting
# account, or a standby) can query while the aggregates are current, with the
# same answers as the owner; when reports wait to be aggregated, it gets a
# clear error naming what to run, and nothing half-done.
source "$(dirname "$0")/lib/common.bash"
new_db ro
ROLE="dp_ro_$$"
psql "$DB" -qc "CREATE ROLE \"$ROLE\" LOGIN" >/dev/null
trap 'cleanup; psql "$DP_TEST_DB dbname=postgres" -qc "DROP ROLE IF EXISTS \"$ROLE\"" >/dev/null 2>&1' EXIT
"$DP_BIN" sample --out "$TMP/s" --seed 5 --days 4 > /dev/null
"$DP_BIN" ingest --quiet --db "$DB" "$TMP/s/reports" || fail "ingest"
psql "$DB" -qc "GRANT USAGE ON SCHEMA public TO \"$ROLE\"; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"$ROLE\"" >/dev/null
RO="$DB user=$ROLE"

for cmd in "senders --domain example.com" "readiness --domain example.com --format json" "domains" \
           "senders --domain example.com --by day"; do
  # shellcheck disable=SC2086
  owner=$("$DP_BIN" $cmd --db "$DB" 2>&1) || fail "$cmd as owner: $owner"
  # shellcheck disable=SC2086
  ro=$("$DP_BIN" $cmd --db "$RO" 2>&1) || fail "$cmd as a read-only role: $ro"
  expect_eq "$cmd: same answer for the read-only role" "$ro" "$owner"
done

# New reports, not aggregated yet: the read-only role is told what to run.
"$DP_BIN" sample --out "$TMP/s2" --seed 6 --days 2 --end 2025-06-01 > /dev/null
"$DP_BIN" ingest --quiet --no-aggregate --db "$DB" "$TMP/s2/reports" || fail "ingest --no-aggregate"
pending=$(sql "SELECT count(*) FROM agg_pending")
[ "$pending" -gt 0 ] && ok || fail "nothing pending after --no-aggregate"
set +e
err=$("$DP_BIN" senders --domain example.com --db "$RO" 2>&1)
rc=$?
set -e
[ "$rc" -ne 0 ] && ok || fail "a query with pending reports and no write access exited 0"
grep -q "dmarcpipe db aggregate" <<<"$err" && ok || fail "error does not say what to run: $err"
expect_eq "still pending (nothing half-done)" "$(sql "SELECT count(*) FROM agg_pending")" "$pending"
"$DP_BIN" db aggregate --db "$DB" > /dev/null 2>&1 || fail "db aggregate"
"$DP_BIN" senders --domain example.com --db "$RO" > /dev/null 2>&1 && ok || fail "read-only query after db aggregate"
finish
