#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# scripts/build.sh DIR [cmake args...] - configure and build dmarcpipe into DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$1; shift
cmake -S "$ROOT" -B "$DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$DIR" -j"$(nproc)"
