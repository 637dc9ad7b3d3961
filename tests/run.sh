#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/run.sh - README command 2, and what .ci/run calls: installs the Debian
# packages, builds dmarcpipe twice (plain, and AddressSanitizer+UBSan), starts
# a private PostgreSQL cluster in a temp dir, runs every ctest (unit and
# end-to-end) against both builds, then the libFuzzer harnesses for a minute.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export DP_SHARED_DIR=${DP_SHARED_DIR:-$ROOT/../shared}
[ -d "$DP_SHARED_DIR/corpus" ] || { echo "tests: corpus not found at $DP_SHARED_DIR" >&2; exit 2; }

bash "$ROOT/scripts/install-deps.sh" --test # + Dovecot, Chromium, clang/libFuzzer
bash "$ROOT/scripts/build.sh" "$ROOT/build/test" -DDP_BUILD_TESTS=ON
bash "$ROOT/scripts/build.sh" "$ROOT/build/asan" -DDP_BUILD_TESTS=ON -DDP_ASAN=ON

# A private cluster for the end-to-end tests, started by dmarcpipe itself.
export DMARCPIPE_HOME=$(mktemp -d /tmp/dmarcpipe-test.XXXXXX)
chmod 755 "$DMARCPIPE_HOME"
stop_cluster() { "$ROOT/build/test/dmarcpipe" db stop >/dev/null 2>&1 || true; rm -rf "$DMARCPIPE_HOME"; }
trap stop_cluster EXIT
unset PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSERVICE
"$ROOT/build/test/dmarcpipe" db start
export DP_TEST_DB=$("$ROOT/build/test/dmarcpipe" db conninfo)
echo "tests: PostgreSQL for e2e tests: $DP_TEST_DB"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
echo "== plain build =="
ctest --test-dir "$ROOT/build/test" --output-on-failure -j2 || status=1
echo "== AddressSanitizer + UBSan build =="
ctest --test-dir "$ROOT/build/asan" --output-on-failure -j2 || status=1
echo "== fuzzing (tests/fuzz/run.sh, ${DP_FUZZ_SECONDS:-60}s per harness) =="
bash "$ROOT/tests/fuzz/run.sh" || status=1
exit $status
