/* SPDX-License-Identifier: MIT */
/* ingest/catch_up_sched_int.h - the aggregate catch-up that long-running
 * commands (watch DIR, watch imaps://) run after their commits: debounced
 * until loading pauses, in the loop's thread pool, retried after a failure.
 * Internal to ingest/. */
#ifndef DP_INGEST_CATCH_UP_SCHED_INT_H
#define DP_INGEST_CATCH_UP_SCHED_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "store/store.h"

/* A catch-up starts once no commit came for IDLE ms, and at most MAX ms
 * after the first commit it waits for, so a steady stream of mail still
 * gets its aggregates folded. */
#define DP_CATCH_UP_IDLE_MS 2000
#define DP_CATCH_UP_MAX_MS 60000
/* A failed catch-up (the database away, a DBA's lock) is tried again after
 * 2 s, doubling up to 5 min: the aggregates must not stay stale until the
 * next input happens to arrive. */
#define DP_CATCH_UP_RETRY_MIN_MS 2000
#define DP_CATCH_UP_RETRY_MAX_MS 300000

/* Owned by the command, by value; it must outlive the loop's last run. */
typedef struct dp__catch_up_sched {
  uv_loop_t *loop;
  const char *conninfo; /* the command's, borrowed */
  const char *who;      /* prefix of its stderr lines, e.g. "dmarcpipe watch" */
  bool quiet;
  bool stopping;
  bool final; /* stopped and every commit done: fold what is dirty, then end */
  uv_timer_t timer;
  uv_work_t req;
  bool dirty, running;
  uint64_t dirty_since;
  uint64_t retry_ms; /* after a failed catch-up: the next try's delay */
  int rc;
  dp_agg_stats_t stats;
  char err[512];
} dp__catch_up_sched_t;

/** Set s up on loop (a timer). 0 or a libuv error. */
int dp__catch_up_sched_init(dp__catch_up_sched_t *s, uv_loop_t *loop, const char *conninfo,
                            const char *who, bool quiet);

/** Something may have been stored (or, at start, may be pending from an
 * earlier run): fold it once loading pauses. */
void dp__catch_up_sched_commit(dp__catch_up_sched_t *s);

/** The command is stopping: no timer starts a catch-up any more (the timer
 * closes); commits still count, for dp__catch_up_sched_final. */
void dp__catch_up_sched_stop(dp__catch_up_sched_t *s);

/** Every commit is done (the pipeline has closed): fold what they stored,
 * once more if commits came while a catch-up ran; a failure is said, not
 * retried. The loop runs until it is over. Implies dp__catch_up_sched_stop. */
void dp__catch_up_sched_final(dp__catch_up_sched_t *s);

#endif
