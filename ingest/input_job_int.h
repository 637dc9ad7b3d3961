/* SPDX-License-Identifier: MIT */
/* ingest/input_job_int.h - one input's CPU work (read, unpack, parse, encode
 * COPY rows), run in a thread pool worker; pure: no loop, no database. */
#ifndef DP_INPUT_JOB_INT_H
#define DP_INPUT_JOB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "parse/parse.h"
#include "store/store.h"

typedef struct dp_job {
  const char *path;          /* borrowed; "-" is stdin */
  const char *display;       /* how messages name the input */
  const dp_limits_t *lim;    /* borrowed */
  bool jsonl;                /* encode records as JSON lines, not COPY rows */
  bool no_rows;              /* build no rows (null sink): records are only
                              * measured, for the same size limit as COPY rows */
  dp_loader_t *loader;       /* borrowed, or NULL: where big reports stream to */
  bool listed;               /* found by walking a directory, not named by the user:
                              * gone when opened means moved or deleted meanwhile
                              * (a Maildir message read by a mail client moves from
                              * new/ to cur/), a note rather than an error */
  /* results, owned by the job until taken */
  dp_staged_t *head, *tail;  /* parsed reports, in input order */
  size_t n_staged;
  size_t bytes;              /* COPY bytes held by the staged reports */
  dp_buf_t error_rows;       /* ingest_error COPY rows */
  size_t n_errors;
  dp_buf_t lines;            /* refusal lines for stderr */
  dp_buf_t note_lines;       /* note lines for stderr; emptied when a document was found */
  uint64_t docs;             /* documents found (refused or not) */
  uint64_t bytes_in;
  int input_refused;         /* the input as a whole was refused */
  uint64_t docs_refused;     /* documents/parts refused inside it */
  uint64_t notes;
  uint64_t skipped_messages; /* mail messages holding no report */
  void *data;                /* for the pipeline */
} dp_job_t;

/* What a pool job keeps from one input to the next, so that a run of small
 * inputs pays for its setup once: the read buffer and a report parser that
 * is reset (dp_parser_reset) for each document. Used by one thread at a
 * time; every input still gets its own dp_job_t and its own results. */
typedef struct dp_job_ctx {
  char *chunk;         /* read buffer, allocated on first use */
  dp_parser_t *parser; /* made on first use, reset per document */
  dp_limits_t lim;     /* the parser's limits */
  dp_buf_t jsonl_head;  /* --output jsonl: the current report's dp__jsonl_head */
} dp_job_ctx_t;

/** Prepare an empty context; allocates nothing. */
void dp_job_ctx_init(dp_job_ctx_t *c);
/** Free what the context holds. */
void dp_job_ctx_close(dp_job_ctx_t *c);

/** Prepare a job for path with limits lim (both borrowed for the job's life). */
void dp_job_init(dp_job_t *j, const char *path, const dp_limits_t *lim);
/** Do the work; thread-safe with respect to other jobs. Never fails as a
 *  whole: refusals are recorded in error_rows and lines. */
void dp_job_run(dp_job_t *j);
/** The same, borrowing ctx's buffer and parser (which must not be in use
 *  by another thread). Results are identical to dp_job_run's. */
void dp_job_run_in(dp_job_t *j, dp_job_ctx_t *ctx);
/** Free whatever results the job still owns. */
void dp_job_free(dp_job_t *j);

#endif
