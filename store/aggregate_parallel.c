/* SPDX-License-Identifier: MIT */
/* store/aggregate_parallel.c - a catch-up with several aggregators at once:
 * one backend folds one batch at a time, so a backlog of many batches (the
 * first import of an archive) used one server core however many it had.
 * Batches are claimed with SKIP LOCKED and upserted in key order, so
 * aggregators working side by side fold each report exactly once (decision
 * 40); this file only decides how many and runs them. */
#include "store/store.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One extra aggregator: its own connection, in its own thread. */
struct helper {
  const char *conninfo;
  int batch;
  uv_thread_t thread;
  dp_agg_stats_t st;
  int rc;
  char err[512];
};

static void helper_main(void *arg) {
  struct helper *h = arg;
  PGconn *c = dp_store_connect(h->conninfo, h->err, sizeof h->err);
  h->rc = c ? dp_agg_catch_up(c, h->batch, &h->st, h->err, sizeof h->err) : DP_EPG;
  PQfinish(c);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Records of the pending reports, or -1 with reason in err. */
static int64_t pending_records(PGconn *c, char *err, size_t errlen) {
  PGresult *res = PQexec(c, "SELECT coalesce(sum(r.n_records), 0) FROM agg_pending p "
                            "JOIN report r ON r.id = p.report_key");
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__store_errline(err, errlen, "agg_pending: ", PQresultErrorMessage(res));
    PQclear(res);
    return -1;
  }
  int64_t n = atoll(PQgetvalue(res, 0, 0));
  PQclear(res);
  return n;
}

unsigned dp_agg_default_aggregators(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > DP_AGG_MAX_AGGREGATORS ? DP_AGG_MAX_AGGREGATORS : (unsigned)n;
}

int dp_agg_catch_up_parallel(PGconn *c, const char *conninfo, unsigned n, int batch,
                             dp_agg_stats_t *st, char *err, size_t errlen) {
  dp_agg_stats_t local;
  if (!st) st = &local;
  memset(st, 0, sizeof *st);
  if (batch <= 0) batch = DP_AGG_BATCH;
  if (n > DP_AGG_MAX_AGGREGATORS) n = DP_AGG_MAX_AGGREGATORS;
  double t0 = now_s();
  /* one more aggregator per further batch's worth of records: a backlog of
   * one batch has nothing to share, and an idle helper would only wait */
  unsigned extra = 0;
  if (n > 1 && conninfo) {
    int64_t recs = pending_records(c, err, errlen);
    if (recs < 0) return DP_EPG;
    int64_t batches = recs / batch;
    extra = batches < 1 ? 0 : batches < (int64_t)n - 1 ? (unsigned)batches : n - 1;
  }
  struct helper h[DP_AGG_MAX_AGGREGATORS];
  unsigned started = 0;
  for (unsigned i = 0; i < extra; i++) {
    h[i] = (struct helper){.conninfo = conninfo, .batch = batch, .rc = DP_EPG};
    if (uv_thread_create(&h[i].thread, helper_main, &h[i])) break;
    started++;
  }
  /* This call alone guarantees the outcome: it folds until nothing is
   * pending, waiting for batches the helpers hold, and takes over any batch
   * a failed helper rolled back. A helper's failure costs only speed. */
  int rc = dp_agg_catch_up(c, batch, st, err, errlen);
  for (unsigned i = 0; i < started; i++) {
    uv_thread_join(&h[i].thread);
    if (h[i].rc && !rc)
      fprintf(stderr, "dmarcpipe: a helper aggregator stopped (%s); the others went on\n",
              h[i].err);
    /* what it committed before it stopped is folded all the same */
    st->aggregators += h[i].st.aggregators; /* 0 when it never connected */
    st->reports += h[i].st.reports;
    st->records += h[i].st.records;
    st->batches += h[i].st.batches;
  }
  st->seconds = now_s() - t0;
  return rc;
}
