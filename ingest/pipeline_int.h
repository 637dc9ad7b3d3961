/* SPDX-License-Identifier: MIT */
/* ingest/pipeline_int.h - the libuv ingest pipeline: inputs are unpacked,
 * parsed and encoded into COPY rows in the thread pool, and batches of reports
 * go to a sink (the PostgreSQL loader, or nothing). Internal to ingest/. */
#ifndef DP_PIPELINE_INT_H
#define DP_PIPELINE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "core/core.h"
#include "store/store.h"

/* Where reports go: PostgreSQL, nowhere (parse only), or JSON lines (one
 * object per record) on opts.out. */
typedef enum dp_sink_kind { DP_SINK_PG, DP_SINK_NULL, DP_SINK_JSONL } dp_sink_kind_t;

typedef struct dp_pipeline_opts {
  dp_limits_t limits;
  dp_sink_kind_t sink;
  const char *conninfo;    /* DP_SINK_PG */
  bool quiet;              /* no notes, no summary */
  bool progress;           /* a progress line on stderr (a terminal) */
  size_t max_in_flight;    /* inputs being unpacked/parsed at once */
  size_t max_batch_bytes;  /* COPY bytes held before the pipeline waits for the sink */
  FILE *err;               /* where refusals, notes and the summary go */
  FILE *out;               /* DP_SINK_JSONL: where the records go */
  uint64_t outage_budget_ms; /* how long to wait for the database (0 = forever) */
  /* Called on the loop thread once an input's reports and refusals are
   * committed (or it had nothing to commit); refused: something in it was
   * refused. Never called for an input whose batch could not be stored. */
  void (*input_done)(void *data, const char *path, bool refused);
  void *data;
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
  uint64_t skipped_messages; /* mail messages without a report (not errors) */
} dp_pipeline_stats_t;

typedef struct dp_pipeline dp_pipeline_t;

/** Create a pipeline on loop (connecting to the database for the PG sink,
 *  blocking, once). o and stats are borrowed for its life; stats is zeroed.
 *  Caller owns result; free with dp_pipeline_destroy after it closed and the
 *  loop ran out. NULL after printing why to o->err. */
dp_pipeline_t *dp_pipeline_create(uv_loop_t *loop, const dp_pipeline_opts_t *o,
                                  dp_pipeline_stats_t *stats);
/** Queue one input file (path is copied). UV_EINVAL once closing. */
int dp_pipeline_add(dp_pipeline_t *p, const char *path);
/** The same, naming the input display (copied; NULL or "" = path) in messages
 *  and in the stored source, e.g. "imaps://user@host/INBOX;UID=42" for a
 *  message spooled to a temp file. input_done still gets path. */
int dp_pipeline_add_named(dp_pipeline_t *p, const char *path, const char *display);
/** Inputs queued, in work or waiting for their batch to commit. */
size_t dp_pipeline_pending(const dp_pipeline_t *p);
/** true after a fatal error (the database stayed unreachable past the budget). */
bool dp_pipeline_failed(const dp_pipeline_t *p);
/** Take no more inputs; finish the queued ones, close the database connection,
 *  then call closed (if not NULL) on the loop thread. */
void dp_pipeline_close(dp_pipeline_t *p, void (*closed)(dp_pipeline_t *p));
/** Free a closed pipeline. NULL is allowed. */
void dp_pipeline_destroy(dp_pipeline_t *p);

/** Apply the config file's jobs and limits to o (ingest_cmd.c); 0, or 2
 *  after printing which setting is invalid. */
int dp__ingest_apply_config(dp_pipeline_opts_t *o);

/** Fill *o with defaults (PG sink, limits from dp_limits_default, stderr). */
void dp_pipeline_opts_default(dp_pipeline_opts_t *o);
/** Ingest every path ("-" is stdin; directories are walked recursively, in
 *  name order) through a libuv loop until done. Fills *stats. Returns 0 when
 *  everything was loaded, 1 when some input or report was refused (the rest
 *  loaded), 2 on a fatal error (message already written to o->err). */
int dp_pipeline_run(const dp_pipeline_opts_t *o, char *const *paths, size_t n_paths,
                    dp_pipeline_stats_t *stats);

#endif
