/* SPDX-License-Identifier: MIT */
/* bench/bench.h - the deterministic report corpus generator (`sample`) and the
 * throughput harness (`bench`). */
#ifndef DP_BENCH_H
#define DP_BENCH_H

/** `dmarcpipe sample --out DIR [--seed N] [--domain D] [--days N] [--end
 *  YYYY-MM-DD] [--scale K] [--corrupt]`; argv[0] is "sample". Writes a
 *  deterministic set of realistic reports into DIR/reports and the known
 *  answers into DIR/expected.json and DIR/expected.tsv (docs/sample-data.md).
 *  Returns the exit status: 0 done, 2 usage or write error. */
int dp_sample_cmd(int argc, char **argv);

/** `dmarcpipe bench [--seed N] [--reports N] [--big-records M] [--mix N]
 *  [--sink null|pg|both] [--db DSN] [--runs K] [--json] [--json-file PATH]
 *  [--workdir DIR]`; argv[0] is "bench". Generates a deterministic corpus,
 *  times each stage and its bare ceiling K times in forked children, prints
 *  medians, ratios and the targets (docs/performance.md). Returns the
 *  exit status: 0 done, 1 a stage failed (the others are reported), 2 usage,
 *  generation or database selection error. */
int dp_bench_cmd(int argc, char **argv);

#endif
