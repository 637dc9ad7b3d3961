/* SPDX-License-Identifier: MIT */
/* store/aggregate.c - the catch-up: folds the reports that ingest marked
 * pending into the agg_* tables with set-based SQL, one half of the
 * aggregates and a batch of reports per transaction (dp_agg_catch_up_part in
 * migration 0010, its halves of the statement migrations 0005, 0006 and 0008
 * built), and waits for batches another process holds, so that a query run
 * afterwards sees aggregates covering every committed report; with a backlog
 * worth it, several aggregators at once, the first two on different halves. */
#include "store/store.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Attempts per batch on deadlock or serialization failure. */
#define DP_AGG_RETRIES 8

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run sql; on failure write "what: message" to err and return the SQLSTATE
 * class of the error ("40" retryable) through *state. */
static PGresult *exec_q(PGconn *c, const char *sql, int nparams, const char *const *params,
                        const char *what, char *err, size_t errlen, char state[6]) {
  PGresult *res = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(res);
  state[0] = '\0';
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return res;
  const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  snprintf(state, 6, "%s", s ? s : "");
  char prefix[128];
  snprintf(prefix, sizeof prefix, "%s: ", what);
  const char *m = PQresultErrorMessage(res);
  dp__store_errline(err, errlen, prefix, m && *m ? m : PQerrorMessage(c));
  PQclear(res);
  return NULL;
}

/* BEGIN a transaction exempt from the session's statement and lock
 * timeouts (DP_STORE_UNTIMED_TRANSACTION): a DBA's statement_timeout would
 * otherwise cancel the same batch at every attempt and the aggregates would
 * never catch up. */
static PGresult *begin_untimed(PGconn *c, const char *what, char *err, size_t errlen,
                               char state[6]) {
  PGresult *res = exec_q(c, "BEGIN", 0, NULL, what, err, errlen, state);
  if (!res) return NULL;
  PQclear(res);
  res = exec_q(c, DP_STORE_UNTIMED_TRANSACTION, 0, NULL, what, err, errlen, state);
  if (!res) PQclear(PQexec(c, "ROLLBACK"));
  return res;
}

/* sql (one read, no parameters) exempt from the session's timeouts as the
 * batches are: the checks around them (what is pending, how much) grow
 * with the backlog, and a DBA's statement_timeout cancelling them failed
 * the catch-up it was exempted from. In a transaction of its own when c is
 * idle; inside the caller's transaction as it is. */
static PGresult *read_untimed(PGconn *c, const char *sql, const char *what, char *err,
                              size_t errlen, char state[6]) {
  if (PQtransactionStatus(c) != PQTRANS_IDLE)
    return exec_q(c, sql, 0, NULL, what, err, errlen, state);
  PGresult *res = begin_untimed(c, what, err, errlen, state);
  if (!res) return NULL;
  PQclear(res);
  res = exec_q(c, sql, 0, NULL, what, err, errlen, state);
  PQclear(PQexec(c, res ? "COMMIT" : "ROLLBACK"));
  return res;
}

/* 40001 serialization failure, 40P01 deadlock: the transaction can be retried. */
static bool retryable(const char *state) {
  return !strcmp(state, "40001") || !strcmp(state, "40P01");
}

/* The halves of the aggregates (migration 0009) by their names in SQL. */
static const char *const half_name[2] = {"a", "b"};

/* One batch of half h in its own transaction: >0 reports folded, 0 none free
 * to take, or DP_EPG. */
static int one_batch(PGconn *c, int h, int batch, dp_agg_stats_t *st, char *err, size_t errlen) {
  char nb[16], state[6];
  snprintf(nb, sizeof nb, "%d", batch);
  const char *params[2] = {half_name[h], nb};
  for (int attempt = 0;; attempt++) {
    PGresult *res = begin_untimed(c, "aggregate", err, errlen, state);
    if (!res) return DP_EPG;
    PQclear(res);
    res = exec_q(c, "SELECT reports, records FROM dp_agg_catch_up_part($1, $2::integer)", 2, params,
                 "aggregate", err, errlen, state);
    if (res) {
      int n = atoi(PQgetvalue(res, 0, 0));
      long long recs = atoll(PQgetvalue(res, 0, 1));
      PQclear(res);
      res = exec_q(c, "COMMIT", 0, NULL, "aggregate commit", err, errlen, state);
      if (res) {
        PQclear(res);
        if (n > 0) {
          st->half_reports[h] += n;
          st->half_records[h] += recs;
          st->batches++;
        }
        return n;
      }
    } else {
      PQclear(PQexec(c, "ROLLBACK"));
    }
    if (!retryable(state) || attempt + 1 >= DP_AGG_RETRIES) return DP_EPG;
  }
}

/* A report is folded once into each half, by whichever aggregators: it is
 * counted where its half A was folded, so the counts of aggregators (and of
 * processes) running at once add up to the reports folded. */
static void sum_halves(dp_agg_stats_t *st) {
  st->reports = st->half_reports[0];
  st->records = st->half_records[0];
}

int64_t dp_agg_pending(PGconn *c, char *err, size_t errlen) {
  char state[6];
  PGresult *res = read_untimed(c, "SELECT count(DISTINCT report_key) FROM agg_pending_any",
                               "agg_pending", err, errlen, state);
  if (!res) return -1;
  int64_t n = atoll(PQgetvalue(res, 0, 0));
  PQclear(res);
  return n;
}

/* Fold until nothing is pending in either half, half `first` first. */
static int catch_up(PGconn *c, int batch, int first, dp_agg_stats_t *st, char *err, size_t errlen) {
  for (;;) {
    for (int k = 0; k < 2; k++) {
      int h = (first + k) % 2;
      int n;
      while ((n = one_batch(c, h, batch, st, err, errlen)) > 0) {
      }
      if (n < 0) return n;
    }
    /* Nothing free to take: done, unless other aggregators hold batches.
     * Then wait for one (a blocking lock on the first mark still there:
     * granted once its holder commits or rolls back) and look again. */
    char state[6];
    PGresult *res = read_untimed(c, "SELECT half FROM agg_pending_any LIMIT 1", "agg_pending", err,
                                 errlen, state);
    if (!res) return DP_EPG;
    char half[2] = "";
    if (PQntuples(res)) snprintf(half, sizeof half, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!*half) return 0;
    res = begin_untimed(c, "aggregate", err, errlen, state);
    if (!res) return DP_EPG;
    PQclear(res);
    const char *params[1] = {half};
    res = exec_q(c, "SELECT dp_agg_wait_for($1)", 1, params, "waiting for another aggregator", err,
                 errlen, state);
    PQclear(res);
    PGresult *end = PQexec(c, "ROLLBACK");
    PQclear(end);
    if (!res && !retryable(state)) return DP_EPG;
  }
}

int dp_agg_catch_up(PGconn *c, int batch, dp_agg_stats_t *st, char *err, size_t errlen) {
  dp_agg_stats_t local;
  if (!st) st = &local;
  memset(st, 0, sizeof *st);
  if (batch <= 0) batch = DP_AGG_BATCH;
  st->aggregators = 1;
  double t0 = now_s();
  int rc = catch_up(c, batch, 0, st, err, errlen);
  sum_halves(st);
  st->seconds = now_s() - t0;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Several aggregators at once (decision 40). One backend folds one batch at
 * a time, so a backlog of many batches (the first import of an archive) used
 * one server core however many it had. Batches are claimed with SKIP LOCKED
 * and upserted in key order, so aggregators side by side fold each report
 * exactly once; this part only decides how many and runs them. */

/* One extra aggregator: its own connection, in its own thread, starting
 * with half `first`. */
struct helper {
  const char *conninfo;
  int batch;
  int first;
  uv_thread_t thread;
  dp_agg_stats_t st;
  int rc;
  char err[512];
};

static void helper_main(void *arg) {
  struct helper *h = arg;
  PGconn *c = dp_store_connect(h->conninfo, h->err, sizeof h->err);
  if (c) h->st.aggregators = 1;
  h->rc = c ? catch_up(c, h->batch, h->first, &h->st, h->err, sizeof h->err) : DP_EPG;
  PQfinish(c);
}

/* Records of the pending reports (in either half), or -1 with reason in err. */
static int64_t pending_records(PGconn *c, char *err, size_t errlen) {
  char state[6];
  PGresult *res = read_untimed(c,
                               "SELECT coalesce(sum(r.n_records), 0) FROM report r WHERE r.id IN "
                               "(SELECT report_key FROM agg_pending_any)",
                               "agg_pending", err, errlen, state);
  if (!res) return -1;
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
  /* A second aggregator folds the other half from the first batch on (the
   * halves share no table, so neither waits for the other); one more per
   * further batch's worth of records. A small backlog is not worth a
   * connection. */
  unsigned extra = 0;
  if (n > 1 && conninfo) {
    int64_t recs = pending_records(c, err, errlen);
    if (recs < 0) return DP_EPG;
    int64_t want = (recs >= DP_AGG_SPLIT_MIN) + recs / batch;
    extra = want < (int64_t)n - 1 ? (unsigned)want : n - 1;
  }
  struct helper h[DP_AGG_MAX_AGGREGATORS];
  unsigned started = 0;
  for (unsigned i = 0; i < extra; i++) {
    /* the caller starts with half A: helpers with B, A, B... */
    h[i] = (struct helper){
        .conninfo = conninfo, .batch = batch, .first = (int)((i + 1) % 2), .rc = DP_EPG};
    if (uv_thread_create(&h[i].thread, helper_main, &h[i])) break;
    started++;
  }
  /* This call alone guarantees the outcome: it folds both halves until
   * nothing is pending, waiting for batches the helpers hold, and takes over
   * any batch a failed helper rolled back. A helper's failure costs only
   * speed. */
  st->aggregators = 1;
  int rc = catch_up(c, batch, 0, st, err, errlen);
  for (unsigned i = 0; i < started; i++) {
    uv_thread_join(&h[i].thread);
    if (h[i].rc && !rc)
      fprintf(stderr, "dmarcpipe: a helper aggregator stopped (%s); the others went on\n",
              h[i].err);
    /* what it committed before it stopped is folded all the same */
    st->aggregators += h[i].st.aggregators; /* 0 when it never connected */
    st->batches += h[i].st.batches;
    for (int k = 0; k < 2; k++) {
      st->half_reports[k] += h[i].st.half_reports[k];
      st->half_records[k] += h[i].st.half_records[k];
    }
  }
  sum_halves(st);
  st->seconds = now_s() - t0;
  return rc;
}

int dp_agg_catch_up_at(const char *conninfo, uint64_t wait_ms, dp_agg_stats_t *st, char *err,
                       size_t errlen) {
  PGconn *c = dp_store_connect(conninfo, err, errlen);
  for (uint64_t ms = 50, waited = 0; !c && waited < wait_ms; waited += ms, ms *= 2) {
    uv_sleep((unsigned)ms);
    c = dp_store_connect(conninfo, err, errlen);
  }
  if (!c) return DP_EPGCONN;
  int rc = dp_agg_catch_up_parallel(c, conninfo, dp_agg_default_aggregators(), 0, st, err, errlen);
  PQfinish(c);
  return rc;
}
