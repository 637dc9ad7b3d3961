/* SPDX-License-Identifier: MIT */
/* store/aggregate.c - the catch-up: folds the reports that ingest marked
 * pending (agg_pending) into the agg_* tables with set-based SQL, a batch per
 * transaction (dp_agg_catch_up_batch in migration 0003, its statement
 * dp_agg_sql as migrations 0005, 0006 and 0008 redefined it), and waits for
 * batches another process holds, so that a query run afterwards sees
 * aggregates covering every committed report; with a backlog of several
 * batches, several aggregators at once. */
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

/* 40001 serialization failure, 40P01 deadlock: the transaction can be retried. */
static bool retryable(const char *state) {
  return !strcmp(state, "40001") || !strcmp(state, "40P01");
}

/* One batch in its own transaction: >0 reports folded, 0 none free to take,
 * or DP_EPG. */
static int one_batch(PGconn *c, int batch, dp_agg_stats_t *st, char *err, size_t errlen) {
  char nb[16], state[6];
  snprintf(nb, sizeof nb, "%d", batch);
  const char *params[1] = {nb};
  for (int attempt = 0;; attempt++) {
    PGresult *res = begin_untimed(c, "aggregate", err, errlen, state);
    if (!res) return DP_EPG;
    PQclear(res);
    res = exec_q(c, "SELECT reports, records FROM dp_agg_catch_up_batch($1::integer)", 1, params,
                 "aggregate", err, errlen, state);
    if (res) {
      int n = atoi(PQgetvalue(res, 0, 0));
      long long recs = atoll(PQgetvalue(res, 0, 1));
      PQclear(res);
      res = exec_q(c, "COMMIT", 0, NULL, "aggregate commit", err, errlen, state);
      if (res) {
        PQclear(res);
        if (n > 0) {
          st->reports += n;
          st->records += recs;
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

int64_t dp_agg_pending(PGconn *c, char *err, size_t errlen) {
  char state[6];
  PGresult *res =
      exec_q(c, "SELECT count(*) FROM agg_pending", 0, NULL, "agg_pending", err, errlen, state);
  if (!res) return -1;
  int64_t n = atoll(PQgetvalue(res, 0, 0));
  PQclear(res);
  return n;
}

int dp_agg_catch_up(PGconn *c, int batch, dp_agg_stats_t *st, char *err, size_t errlen) {
  dp_agg_stats_t local;
  if (!st) st = &local;
  memset(st, 0, sizeof *st);
  if (batch <= 0) batch = DP_AGG_BATCH;
  st->aggregators = 1;
  double t0 = now_s();
  int rc = 0;
  for (;;) {
    int n = one_batch(c, batch, st, err, errlen);
    if (n < 0) {
      rc = n;
      break;
    }
    if (n > 0) continue;
    /* Nothing free to take: done, unless other aggregators hold batches.
     * Then wait for one (a blocking lock on the first mark still there:
     * granted once its holder commits or rolls back) and look again. */
    char state[6];
    PGresult *res = exec_q(c, "SELECT EXISTS (SELECT 1 FROM agg_pending)", 0, NULL, "agg_pending",
                           err, errlen, state);
    if (!res) {
      rc = DP_EPG;
      break;
    }
    bool more = !strcmp(PQgetvalue(res, 0, 0), "t");
    PQclear(res);
    if (!more) break;
    res = begin_untimed(c, "aggregate", err, errlen, state);
    if (!res) {
      rc = DP_EPG;
      break;
    }
    PQclear(res);
    res = exec_q(c,
                 "SELECT 1 FROM (SELECT report_key FROM agg_pending"
                 " ORDER BY report_key LIMIT 1 FOR UPDATE) w",
                 0, NULL, "waiting for another aggregator", err, errlen, state);
    PQclear(res);
    PGresult *end = PQexec(c, "ROLLBACK");
    PQclear(end);
    if (!res && !retryable(state)) {
      rc = DP_EPG;
      break;
    }
  }
  st->seconds = now_s() - t0;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Several aggregators at once (decision 40). One backend folds one batch at
 * a time, so a backlog of many batches (the first import of an archive) used
 * one server core however many it had. Batches are claimed with SKIP LOCKED
 * and upserted in key order, so aggregators side by side fold each report
 * exactly once; this part only decides how many and runs them. */

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

/* Records of the pending reports, or -1 with reason in err. */
static int64_t pending_records(PGconn *c, char *err, size_t errlen) {
  char state[6];
  PGresult *res = exec_q(c,
                         "SELECT coalesce(sum(r.n_records), 0) FROM agg_pending p "
                         "JOIN report r ON r.id = p.report_key",
                         0, NULL, "agg_pending", err, errlen, state);
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
