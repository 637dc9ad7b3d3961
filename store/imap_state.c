/* SPDX-License-Identifier: MIT */
/* store/imap_state.c - table imap_state: how far each IMAP mailbox was read
 * (UIDVALIDITY, last committed UID). Blocking libpq on the caller's own
 * connection: the IMAP source calls it from its worker, never the loop thread. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "store.h"
#include "store_int.h"

int dp_store_imap_state_get(PGconn *c, const char *mailbox, int64_t *uidvalidity,
                            int64_t *last_uid, bool *found, char *err, size_t errlen) {
  const char *params[1] = {mailbox};
  PGresult *res = PQexecParams(c, "SELECT uidvalidity, last_uid FROM imap_state WHERE mailbox = $1",
                               1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__store_errline(err, errlen, "reading imap_state: ", PQresultErrorMessage(res));
    PQclear(res);
    return DP_EPG;
  }
  *found = PQntuples(res) == 1;
  *uidvalidity = *found ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
  *last_uid = *found ? strtoll(PQgetvalue(res, 0, 1), NULL, 10) : 0;
  PQclear(res);
  return 0;
}

int dp_store_imap_state_put(PGconn *c, const char *mailbox, int64_t uidvalidity, int64_t last_uid,
                            char *err, size_t errlen) {
  char v[24], u[24];
  snprintf(v, sizeof v, "%" PRId64, uidvalidity);
  snprintf(u, sizeof u, "%" PRId64, last_uid);
  const char *params[3] = {mailbox, v, u};
  /* Never move backwards within one UIDVALIDITY: another process reading the
   * same mailbox may have got further. */
  PGresult *res = PQexecParams(
      c,
      "INSERT INTO imap_state (mailbox, uidvalidity, last_uid, updated_at)"
      " VALUES ($1, $2::bigint, $3::bigint, now())"
      " ON CONFLICT (mailbox) DO UPDATE SET"
      "  last_uid = CASE WHEN imap_state.uidvalidity = EXCLUDED.uidvalidity"
      "             THEN greatest(imap_state.last_uid, EXCLUDED.last_uid)"
      "             ELSE EXCLUDED.last_uid END,"
      "  uidvalidity = EXCLUDED.uidvalidity, updated_at = now()",
      3, NULL, params, NULL, NULL, 0);
  int rc = 0;
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    dp__store_errline(err, errlen, "saving imap_state: ", PQresultErrorMessage(res));
    rc = DP_EPG;
  }
  PQclear(res);
  return rc;
}
