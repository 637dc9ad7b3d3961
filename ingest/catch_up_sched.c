/* SPDX-License-Identifier: MIT */
/* ingest/catch_up_sched.c - the debounced aggregate catch-up of the
 * long-running commands; see catch_up_sched_int.h. */
#include <inttypes.h>
#include <stdio.h>

#include "catch_up_sched_int.h"

/* In the thread pool: libpq blocks. */
static void work(uv_work_t *req) {
  dp__catch_up_sched_t *s = req->data;
  /* a refused connection is retried by the scheduler, not here */
  s->rc = dp_agg_catch_up_at(s->conninfo, 0, &s->stats, s->err, sizeof s->err);
}

static void on_timer(uv_timer_t *t);
static void done(uv_work_t *req, int status);

static void start(dp__catch_up_sched_t *s) {
  s->dirty = false;
  s->running = true;
  s->req.data = s;
  if (uv_queue_work(s->loop, &s->req, work, done)) s->running = false;
}

static void say_caught_up(const dp__catch_up_sched_t *s) {
  if (!s->quiet && s->stats.reports)
    fprintf(stderr,
            "%s: aggregates caught up: %" PRId64 " reports (%" PRId64 " records) in %.2f s\n",
            s->who, s->stats.reports, s->stats.records, s->stats.seconds);
}

static void done(uv_work_t *req, int status) {
  dp__catch_up_sched_t *s = req->data;
  s->running = false;
  if (status) return; /* cancelled: the loop is closing */
  if (s->final) {
    if (s->rc)
      fprintf(stderr, "%s: aggregating: %s (the reports are stored; run `dmarcpipe db aggregate`)\n",
              s->who, s->err);
    else
      say_caught_up(s);
    if (!s->rc && s->dirty) start(s); /* commits came meanwhile */
    return;
  }
  if (s->rc) {
    /* what failed is still pending: a later commit may start it sooner, and
     * a stop now leaves it to dp__catch_up_sched_final */
    if (!s->dirty) s->dirty_since = uv_now(s->loop);
    s->dirty = true;
    if (s->stopping) {
      fprintf(stderr, "%s: aggregating: %s\n", s->who, s->err);
      return;
    }
    if (!s->retry_ms) s->retry_ms = DP_CATCH_UP_RETRY_MIN_MS;
    fprintf(stderr, "%s: aggregating: %s (trying again in %" PRIu64 " s)\n", s->who, s->err,
            s->retry_ms / 1000);
    uv_timer_start(&s->timer, on_timer, s->retry_ms, 0);
    s->retry_ms = s->retry_ms * 2 > DP_CATCH_UP_RETRY_MAX_MS ? DP_CATCH_UP_RETRY_MAX_MS
                                                             : s->retry_ms * 2;
    return;
  }
  s->retry_ms = 0;
  say_caught_up(s);
  if (s->dirty) dp__catch_up_sched_commit(s); /* commits arrived meanwhile */
}

static void on_timer(uv_timer_t *t) {
  dp__catch_up_sched_t *s = t->data;
  if (s->running || s->stopping) return;
  start(s);
}

int dp__catch_up_sched_init(dp__catch_up_sched_t *s, uv_loop_t *loop, const char *conninfo,
                            const char *who, bool quiet) {
  *s = (dp__catch_up_sched_t){.loop = loop, .conninfo = conninfo, .who = who, .quiet = quiet};
  int rc = uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  return rc;
}

/* Debounce: each commit pushes the catch-up back until loading has been
 * idle a while, but never more than DP_CATCH_UP_MAX_MS. */
void dp__catch_up_sched_commit(dp__catch_up_sched_t *s) {
  if (s->stopping) {
    /* dp__catch_up_sched_final folds it; after that, nothing will */
    s->dirty = true;
    return;
  }
  uint64_t now = uv_now(s->loop);
  if (!s->dirty) s->dirty_since = now;
  s->dirty = true;
  if (s->running) return; /* done() schedules again */
  uint64_t waited = now - s->dirty_since;
  uint64_t delay = waited >= DP_CATCH_UP_MAX_MS ? 0 : DP_CATCH_UP_IDLE_MS;
  if (delay && waited + delay > DP_CATCH_UP_MAX_MS) delay = DP_CATCH_UP_MAX_MS - waited;
  uv_timer_start(&s->timer, on_timer, delay, 0);
}

void dp__catch_up_sched_stop(dp__catch_up_sched_t *s) {
  if (s->stopping) return;
  s->stopping = true;
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, NULL);
}

/* A stop within the idle wait after a commit would otherwise leave that
 * commit unfolded until someone runs a query that may write, or `db
 * aggregate`: a read-only reporting role could not query meanwhile. */
void dp__catch_up_sched_final(dp__catch_up_sched_t *s) {
  dp__catch_up_sched_stop(s);
  if (s->final) return;
  s->final = true;
  if (s->dirty && !s->running) start(s);
}
