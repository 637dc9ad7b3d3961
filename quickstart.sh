#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# quickstart.sh - README command 1: install what is needed, build, generate
# sample reports, ingest them into the embedded PostgreSQL cluster (created and
# started by dmarcpipe under $DMARCPIPE_HOME), print the senders table and the
# p=reject readiness of the sample domain.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
bash "$ROOT/scripts/install-deps.sh"
bash "$ROOT/scripts/build.sh" "$ROOT/build" -DDP_BUILD_TESTS=OFF
DP="$ROOT/build/dmarcpipe"
SAMPLES="$ROOT/build/sample-reports"
rm -rf "$SAMPLES"
"$DP" sample --out "$SAMPLES"
"$DP" ingest "$SAMPLES/reports"
echo
"$DP" senders --domain example.com
echo
"$DP" readiness --domain example.com
