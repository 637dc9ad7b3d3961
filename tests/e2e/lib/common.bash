# SPDX-License-Identifier: MIT
# tests/e2e/lib/common.bash - shared helpers for the end-to-end tests: a fresh
# database per test in the cluster named by DP_TEST_DB, psql shortcuts, checks.
set -euo pipefail
: "${DP_BIN:?DP_BIN (the dmarcpipe binary) must be set; run through ctest}"
: "${DP_TEST_DB:?DP_TEST_DB is unset: run the suite with tests/run.sh, which starts PostgreSQL}"
CORPUS="${DP_SHARED_DIR:?}/corpus"
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE
export PGOPTIONS="-c client_min_messages=warning"

E2E_FAILS=0
E2E_PASSES=0
TMP=$(mktemp -d /tmp/dp-e2e.XXXXXX)
# every database new_db made is dropped at exit, not only the last one
E2E_DBS=()
cleanup() {
  rm -rf "$TMP"
  local d
  for d in "${E2E_DBS[@]}"; do
    psql "$DP_TEST_DB dbname=postgres" -qc "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# new_db NAME: create an empty database and set DB to its conninfo.
new_db() {
  E2E_DB="dp_e2e_$1_$$"
  E2E_DBS+=("$E2E_DB")
  psql "$DP_TEST_DB dbname=postgres" -qc "DROP DATABASE IF EXISTS \"$E2E_DB\" WITH (FORCE)" >/dev/null
  psql "$DP_TEST_DB dbname=postgres" -qc "CREATE DATABASE \"$E2E_DB\"" >/dev/null
  DB="$DP_TEST_DB dbname=$E2E_DB"
}
# sql QUERY: run a query in DB, print unaligned tuples.
sql() { psql "$DB" -XAtqc "$1"; }
ok() { E2E_PASSES=$((E2E_PASSES + 1)); }
fail() { echo "FAIL: $*" >&2; E2E_FAILS=$((E2E_FAILS + 1)); }
# expect_eq WHAT GOT WANT
expect_eq() { if [ "$2" == "$3" ]; then ok; else fail "$1: got '$2', want '$3'"; fi; }
# one_record_report FILE ORG REPORT_ID DOMAIN COUNT END: a report from ORG
# for DOMAIN of one record (COUNT messages from 192.0.2.7, passing SPF),
# its day ending at END (epoch seconds).
one_record_report() {
  cat > "$1" <<XML
<?xml version="1.0"?><feedback><report_metadata><org_name>$2</org_name>
<email>dmarc@reporter.example</email><report_id>$3</report_id><date_range><begin>$(($6 - 86399))</begin>
<end>$6</end></date_range></report_metadata><policy_published><domain>$4</domain>
<p>none</p></policy_published><record><row><source_ip>192.0.2.7</source_ip><count>$5</count>
<policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf>
</policy_evaluated></row><identifiers><header_from>$4</header_from></identifiers>
<auth_results><spf><domain>$4</domain><result>pass</result></spf></auth_results></record>
</feedback>
XML
}
finish() {
  echo "$E2E_PASSES passed, $E2E_FAILS failed"
  [ "$E2E_FAILS" -eq 0 ]
}
