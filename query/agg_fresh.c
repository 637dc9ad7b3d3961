/* SPDX-License-Identifier: MIT */
/* query/agg_fresh.c - what every command that reads the agg_* tables runs
 * first: the catch-up (store/aggregate.c), then a read-only snapshot in which
 * no report is pending, so the aggregates it reads cover exactly the reports
 * it sees and the answers equal the record-level SQL's. */
#include <stdio.h>
#include <string.h>

#include "query/query_int.h"
#include "store/store.h"

/* Snapshots taken before giving up when ingest keeps committing between the
 * catch-up and the snapshot (each round folds what came meanwhile). */
#define DP_FRESH_ROUNDS 51

int dp__query_agg_begin(PGconn *c, bool *opened, char *err, size_t errlen) {
  *opened = false;
  /* The caller's transaction (readiness fetching senders) is already fresh. */
  if (PQtransactionStatus(c) != PQTRANS_IDLE) return 0;
  for (int round = 0; round < DP_FRESH_ROUNDS; round++) {
    /* Look before catching up: when nothing is pending (watch keeps the
     * aggregates current) a read-only role or a standby can query. */
    if (round > 0 && dp_agg_catch_up(c, 0, NULL, err, errlen)) {
      size_t n = strlen(err);
      snprintf(err + n, errlen - n,
               " (reports wait to be aggregated: run `dmarcpipe db aggregate` as a role"
               " that can write, or query again when `watch`/`ingest` has done it)");
      return DP_EPG;
    }
    PGresult *res = PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    if (!ok) return DP_EPG;
    /* First statement of the transaction: it takes the snapshot. */
    res = PQexec(c, "SELECT EXISTS (SELECT 1 FROM agg_pending_any)");
    ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    bool pending = ok && !strcmp(PQgetvalue(res, 0, 0), "t");
    if (!ok) dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    if (ok && !pending) {
      *opened = true;
      return 0;
    }
    PQclear(PQexec(c, "ROLLBACK"));
    if (!ok) return DP_EPG;
  }
  snprintf(err, errlen, "reports kept arriving faster than they could be aggregated; try again");
  return DP_EPG;
}

void dp__query_agg_end(PGconn *c, bool opened) {
  if (opened) PQclear(PQexec(c, "COMMIT"));
}
