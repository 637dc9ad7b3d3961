#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/store_roundtrip.sh - the embedded cluster's life cycle through the
# CLI (db status/start/init/conninfo/stop, two concurrent first starts, a
# stale postmaster.pid), then the COPY round trip (test_pg_roundtrip) against
# it. Needs the PostgreSQL server package; $DP_BIN is the dmarcpipe binary.
set -u

: "${DP_BIN:?DP_BIN must point to the dmarcpipe binary}"
fail() { echo "FAIL: $*" >&2; exit 1; }

tmp=$(mktemp -d /tmp/dp_e2e_store.XXXXXX) || fail "mktemp"
# As root the cluster runs as 'postgres', who must be able to enter $tmp.
chmod 755 "$tmp"
homes=()
cleanup() {
  for h in "${homes[@]}"; do DMARCPIPE_HOME=$h "$DP_BIN" db stop >/dev/null 2>&1; done
  rm -rf "$tmp"
}
trap cleanup EXIT
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE

export DMARCPIPE_HOME=$tmp/home
homes+=("$DMARCPIPE_HOME")
db() { "$DP_BIN" db "$@"; }

# Nothing yet: status says so and exits 1; stop is a no-op.
out=$(db status) && fail "status of a missing cluster exited 0"
grep -q "embedded cluster: not initialised" <<<"$out" || fail "status: $out"
db stop >/dev/null || fail "stop of a missing cluster"

# conninfo works before the cluster exists and names the private socket.
ci=$(db conninfo) || fail "conninfo"
[ "$ci" = "host='$DMARCPIPE_HOME/run' port=5432 dbname=dmarcpipe user=dmarcpipe" ] || fail "conninfo: $ci"
[ "$(db conninfo --db 'dbname=x')" = "dbname=x" ] || fail "conninfo --db"
[ "$(PGHOST=/x db conninfo)" = "" ] || fail "conninfo with PGHOST set should be empty"

# the newest migration compiled in: the number of store/migrations/*.sql
NMIG=$(ls "${DP_SOURCE_DIR:?}"/store/migrations/*.sql | wc -l | tr -d ' ')
db start >/dev/null || fail "db start"
db start >/dev/null || fail "db start twice (must be idempotent)"
out=$(db status) || fail "status of a running cluster exited non-zero: $out"
grep -q "embedded cluster: running (pid [0-9]*), socket $DMARCPIPE_HOME/run" <<<"$out" || fail "status: $out"
grep -q "schema version: 0" <<<"$out" || fail "schema before init: $out"
[ -S "$DMARCPIPE_HOME/run/.s.PGSQL.5432" ] || fail "no socket in $DMARCPIPE_HOME/run"
# No TCP: the server was told listen_addresses=''.
grep -q "^listen_addresses = ''" "$DMARCPIPE_HOME/pgdata/dmarcpipe.conf" || fail "listen_addresses"

out=$(db init) || fail "db init: $out"
grep -q "schema migrated from version 0 to $NMIG" <<<"$out" || fail "init: $out"
out=$(db migrate) || fail "db migrate: $out"
grep -q "schema up to date at version $NMIG" <<<"$out" || fail "migrate: $out"
out=$(db status) || fail "status"
grep -q "^schema version: $NMIG" <<<"$out" || fail "status after init: $out"
grep -q "^reports: 0$" <<<"$out" || fail "status counts: $out"
grep -q "^records: 0$" <<<"$out" || fail "status counts: $out"

# --db pointing at the same server gives the same answer; a bad one fails with 1.
out=$(db status --db "$ci") || fail "status --db: $out"
grep -q "^schema version: $NMIG" <<<"$out" || fail "status --db: $out"
db status --db "host=$tmp/nowhere dbname=x" >/dev/null && fail "status of an unreachable db exited 0"
grep -q "^reports waiting for aggregation: 0$" <<<"$out" || fail "status pending: $out"
grep -q "^upgrade:" <<<"$out" && fail "status of an up-to-date schema offers an upgrade: $out"

# ingest connects while it reads its inputs (decision 51); an unreachable
# database still ends the run with 2 and the reason, with inputs or none.
mkdir -p "$tmp/noinput" "$tmp/oneinput"
cat >"$tmp/oneinput/r.xml" <<'XML'
<feedback><report_metadata><org_name>rx.test</org_name><email>a@rx.test</email>
<report_id>unreachable-1</report_id><date_range><begin>1700000000</begin><end>1700086399</end>
</date_range></report_metadata><policy_published><domain>example.com</domain></policy_published>
<record><row><source_ip>192.0.2.1</source_ip><count>1</count></row><identifiers>
<header_from>example.com</header_from></identifiers><auth_results/></record></feedback>
XML
for d in noinput oneinput; do
  out=$("$DP_BIN" ingest --db "host=$tmp/nowhere dbname=x" "$tmp/$d" 2>&1)
  rc=$?
  [ "$rc" = 2 ] || fail "ingest of $d into an unreachable db exited $rc: $out"
  grep -q "^dmarcpipe: cannot connect to PostgreSQL: .*$tmp/nowhere" <<<"$out" ||
    fail "ingest of $d into an unreachable db: $out"
  grep -q "reports stored" <<<"$out" && fail "ingest of $d into an unreachable db: a summary: $out"
done

# A database at an older schema (0001-0002, before the aggregates): its
# counts, no pending line, and how to upgrade; nothing "unavailable".
psql "$ci" -Xqc "CREATE DATABASE dp_status_old" >/dev/null || fail "createdb"
old="$ci dbname=dp_status_old"
{
  for f in 0001_init 0002_imap_state; do cat "$DP_SOURCE_DIR/store/migrations/$f.sql"; echo; done
  echo "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
          applied_at timestamptz NOT NULL DEFAULT now());
        INSERT INTO schema_migrations (version, name)
        VALUES (1, '0001_init.sql'), (2, '0002_imap_state.sql');"
} | psql "$old" -Xq -v ON_ERROR_STOP=1 >/dev/null || fail "schema 2"
out=$(db status --db "$old") || fail "status of a schema-2 database: $out"
grep -q "^schema version: 2 (this dmarcpipe: $NMIG)$" <<<"$out" || fail "status schema 2: $out"
grep -q "^reports: 0$" <<<"$out" || fail "status schema 2 counts: $out"
grep -q "unavailable" <<<"$out" && fail "status schema 2 says unavailable: $out"
grep -q "waiting for aggregation" <<<"$out" && fail "status schema 2 has a pending line: $out"
grep -q "^upgrade: .dmarcpipe db migrate. .* to $NMIG$" <<<"$out" || fail "status schema 2 upgrade: $out"
psql "$ci" -Xqc "DROP DATABASE dp_status_old" >/dev/null
db start --db x 2>/dev/null; [ $? -eq 2 ] || fail "start --db should be a usage error"
db frobnicate 2>/dev/null; [ $? -eq 2 ] || fail "unknown action should exit 2"
db --help | grep -q "usage: dmarcpipe db" || fail "--help"

# The COPY round trip against the running cluster, when the test is built.
rt=$(dirname "$DP_BIN")/tests/test_pg_roundtrip
if [ -x "$rt" ]; then
  DP_TEST_DB=$ci "$rt" || fail "test_pg_roundtrip against the embedded cluster"
fi

db stop >/dev/null || fail "db stop"
out=$(db status) && fail "status of a stopped cluster exited 0"
grep -q "embedded cluster: stopped" <<<"$out" || fail "status after stop: $out"
db stop >/dev/null || fail "second stop must be a no-op"

# A crash leaves postmaster.pid behind, its pid reused by another process.
db start >/dev/null || fail "restart"
pid=$(head -1 "$DMARCPIPE_HOME/pgdata/postmaster.pid")
children=$(pgrep -P "$pid" || true)
kill -9 "$pid"
# The children exit on their own once they notice the postmaster is gone; a
# new postmaster refuses to start while they still hold the shared memory, so
# wait for every one of them (a loaded machine can take seconds).
for p in $pid $children; do
  for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && fail "process $p of the killed cluster still alive after 30 s"
done
sleep 300 & sleeper=$!
sed -i "1s/.*/$sleeper/" "$DMARCPIPE_HOME/pgdata/postmaster.pid"
out=$(db status) && fail "status with a stale pid exited 0: $out"
out=$(db init) || { kill "$sleeper"; fail "start after a crash with a stale pid: $out"; }
kill "$sleeper"
out=$(db status) || fail "status after crash restart: $out"
grep -q "^schema version: $NMIG" <<<"$out" || fail "schema lost after crash: $out"
db stop >/dev/null || fail "stop after crash restart"

# Two processes creating the same new cluster at once: both succeed, one initdb.
# Missing parent directories are created traversable even under umask 077.
umask 077
export DMARCPIPE_HOME=$tmp/new/parents/home2
homes+=("$DMARCPIPE_HOME")
db init >"$tmp/a.out" 2>&1 & a=$!
db init >"$tmp/b.out" 2>&1 & b=$!
wait $a || fail "concurrent init A: $(cat "$tmp/a.out")"
wait $b || fail "concurrent init B: $(cat "$tmp/b.out")"
out=$(db status) || fail "status after concurrent init"
grep -q "^schema version: $NMIG" <<<"$out" || fail "concurrent init: $out"
db stop >/dev/null || fail "stop home2"

# As root, a home the 'postgres' user cannot enter is refused with a clear reason.
if [ "$(id -u)" = 0 ] && getent passwd postgres >/dev/null; then
  mkdir -m 700 "$tmp/private"
  out=$(DMARCPIPE_HOME=$tmp/private/home "$DP_BIN" db start 2>&1) && fail "start under a 0700 dir as root succeeded"
  grep -q "cannot enter $tmp/private" <<<"$out" || fail "root traversal message: $out"
  grep -q "DMARCPIPE_HOME" <<<"$out" || fail "root traversal message: $out"
fi

echo "ok: store_roundtrip"
