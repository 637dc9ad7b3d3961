/* SPDX-License-Identifier: MIT */
/* ingest/pipeline_int.h - the libuv ingest pipeline: inputs are unpacked,
 * parsed and encoded into COPY rows in the thread pool, and batches of reports
 * go to a sink (the PostgreSQL loader, or nothing). Internal to ingest/. */
#ifndef DP_PIPELINE_INT_H
#define DP_PIPELINE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "store/store.h"

typedef enum dp_sink_kind { DP_SINK_PG, DP_SINK_NULL } dp_sink_kind_t;

typedef struct dp_pipeline_opts {
  dp_limits_t limits;
  dp_sink_kind_t sink;
  const char *conninfo;    /* DP_SINK_PG */
  bool quiet;              /* no notes, no summary */
  bool progress;           /* a progress line on stderr (a terminal) */
  size_t max_in_flight;    /* inputs being unpacked/parsed at once */
  size_t max_batch_bytes;  /* COPY bytes held before the pipeline waits for the sink */
  FILE *err;               /* where refusals, notes and the summary go */
} dp_pipeline_opts_t;

typedef struct dp_pipeline_stats {
  uint64_t inputs;         /* files / stdin read */
  uint64_t inputs_refused; /* inputs refused as a whole */
  uint64_t reports_new;
  uint64_t reports_dup;
  uint64_t reports_refused;
  uint64_t records;        /* records of newly stored reports */
  uint64_t messages;       /* their message sum */
  uint64_t bytes_in;       /* input bytes read */
  uint64_t notes;
} dp_pipeline_stats_t;

/** Fill *o with defaults (PG sink, limits from dp_limits_default, stderr). */
void dp_pipeline_opts_default(dp_pipeline_opts_t *o);
/** Ingest every path ("-" is stdin; directories are walked recursively, in
 *  name order) through a libuv loop until done. Fills *stats. Returns 0 when
 *  everything was loaded, 1 when some input or report was refused (the rest
 *  loaded), 2 on a fatal error (message already written to o->err). */
int dp_pipeline_run(const dp_pipeline_opts_t *o, char *const *paths, size_t n_paths,
                    dp_pipeline_stats_t *stats);

#endif
