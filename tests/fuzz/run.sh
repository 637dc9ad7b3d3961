#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/fuzz/run.sh - build the libFuzzer harnesses with clang into build/fuzz,
# seed them from ../shared/corpus (real + hostile), tests/fuzz/seeds and
# tests/fuzz/regress, run each for DP_FUZZ_SECONDS (default 60, in parallel),
# print the executions reached, and exit 1 on any crash, leak, timeout or OOM.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${DP_SHARED_DIR:-$ROOT/../shared}
SECS=${DP_FUZZ_SECONDS:-60}
OUT=${DP_FUZZ_BUILD:-$ROOT/build/fuzz}
HARNESSES=(${DP_FUZZ_HARNESSES:-parser unpack mime ingest})
[ -d "$SHARED/corpus" ] || { echo "fuzz: corpus not found at $SHARED" >&2; exit 2; }
command -v clang >/dev/null || { echo "fuzz: clang not installed (scripts/install-deps.sh --test)" >&2; exit 2; }

echo "== fuzz: building harnesses in $OUT =="
cmake -S "$ROOT" -B "$OUT" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DDP_BUILD_FUZZ=ON -DDP_BUILD_TESTS=OFF -DDP_BUILD_BENCH=OFF >/dev/null
cmake --build "$OUT" -j"$(nproc)" --target "${HARNESSES[@]/#/fuzz_}" >/dev/null

# Seeds are copied (never written back into the repo or ../shared); libFuzzer
# adds what it finds to the same temporary directory.
RUN="$OUT/run"
rm -rf "$RUN"
mkdir -p "$RUN"
seed() { # seed HARNESS FILTER(all|xml|eml) PREFIX DIR...
  local h=$1 filter=$2 prefix=$3 i=0 f; shift 3
  mkdir -p "$RUN/$h/corpus" "$RUN/$h/artifacts"
  while IFS= read -r -d '' f; do
    case "$filter:$f" in
      all:*|xml:*.xml|xml:*.XML|eml:*.eml|eml:*.elm) ;;
      *) continue ;;
    esac
    i=$((i + 1))
    cp "$f" "$RUN/$h/corpus/$prefix-$i"
  done < <(find "$@" -type f ! -name '*.md' ! -name '*.tsv' -print0 2>/dev/null)
}
REG="$ROOT/tests/fuzz/regress"
for h in "${HARNESSES[@]}"; do
  case $h in
    parser) seed parser xml seed "$SHARED/corpus/real" "$SHARED/corpus/hostile" ;;
    mime) seed mime eml seed "$SHARED/corpus/real" "$SHARED/corpus/hostile" "$ROOT/tests/fuzz/seeds/mime" ;;
    *) seed "$h" all seed "$SHARED/corpus/real" "$SHARED/corpus/hostile" "$ROOT/tests/fuzz/seeds" ;;
  esac
  # Every saved crash of this harness is replayed with the seeds.
  seed "$h" all regress "$REG/$h"
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_one() { # run_one HARNESS (in a subshell: it becomes the fuzzer)
  local h=$1 dict max_len=65536
  case $h in
    parser) dict=xml.dict ;;
    ingest) dict=xml.dict ;;
    mime) dict=mime.dict; max_len=16384 ;;
    *) dict=mime.dict ;;
  esac
  exec "$OUT/tests/fuzz/fuzz_$h" -max_total_time="$SECS" -rss_limit_mb=512 -timeout=10 \
    -max_len="$max_len" -print_final_stats=1 -dict="$ROOT/tests/fuzz/dict/$dict" \
    -artifact_prefix="$RUN/$h/artifacts/" "$RUN/$h/corpus" >"$RUN/$h/log" 2>&1
}

echo "== fuzz: ${#HARNESSES[@]} harnesses, ${SECS}s each, in parallel =="
declare -A PID
trap 'kill "${PID[@]}" 2>/dev/null; exit 130' INT TERM
for h in "${HARNESSES[@]}"; do run_one "$h" & PID[$h]=$!; done
status=0
for h in "${HARNESSES[@]}"; do
  rc=0
  wait "${PID[$h]}" || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$RUN/$h/log" | tail -1)
  found=$(find "$RUN/$h/artifacts" -type f | sort)
  if [ "$rc" = 0 ] && [ -z "$found" ]; then
    echo "fuzz_$h: ok, ${execs:-?} executions"
  else
    status=1
    echo "fuzz_$h: FAILED (exit $rc) after ${execs:-?} executions; log: $RUN/$h/log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*contract violated|.*runtime error)' "$RUN/$h/log" | head -5 || true
    for f in $found; do echo "  crashing input: $f  (keep it: tests/fuzz/regress/$h/)"; done
  fi
done
exit $status
