/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz_ingest.c - libFuzzer harness for the pipeline path: every unpacked document into its own parser.
 * The code path and its checks live in fuzz_common.h, shared with
 * tests/fuzz/test_regress.c. */
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/** libFuzzer hook: load the Public Suffix List once (alignment needs it). */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (dp_align_global_init() != 0) abort();
  return 0;
}

/** libFuzzer hook: run one input through the harness's code path. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dp_fuzz_ingest_one(data, size);
  return 0;
}
