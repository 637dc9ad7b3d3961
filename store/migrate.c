/* SPDX-License-Identifier: MIT */
/* store/migrate.c - applies the SQL migrations compiled into the binary, in
 * order, each in its own transaction under a transaction-level advisory lock,
 * so that any number of processes starting at once apply each exactly once. */
#include "store/store.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The version number of a migration: the digits its file name starts with. */
static int migration_version(const char *name) { return atoi(name); }

/** The number of the newest migration compiled in. */
int dp_store_schema_version(void) {
  int v = 0;
  for (size_t i = 0; i < dp_n_migrations; i++) {
    int m = migration_version(dp_migrations[i].name);
    if (m > v) v = m;
  }
  return v;
}

/* Run sql expecting command/tuples ok; on failure write "what: server message". */
static int exec_ok(PGconn *c, const char *sql, const char *what, char *err, size_t errlen) {
  PGresult *res = PQexec(c, sql);
  ExecStatusType st = PQresultStatus(res);
  int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
  if (!ok) {
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s: ", what);
    const char *m = PQresultErrorMessage(res);
    dp__store_errline(err, errlen, prefix, m && *m ? m : PQerrorMessage(c));
  }
  PQclear(res);
  return ok ? 0 : DP_EPG;
}

int dp__store_db_version(PGconn *c, char *err, size_t errlen) {
  PGresult *res = PQexec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL");
  /* Two statements: a subquery on a missing table fails at parse time. */
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
      !strcmp(PQgetvalue(res, 0, 0), "t")) {
    PQclear(res);
    res = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
  } else if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    PQclear(res);
    return 0;
  }
  int v = -1;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
    v = atoi(PQgetvalue(res, 0, 0));
  else
    dp__store_errline(err, errlen, "reading schema version: ", PQresultErrorMessage(res));
  PQclear(res);
  return v;
}

/* Apply migration i unless already recorded; one transaction, under the lock.
 * The lock is taken before looking, so a concurrent process that applied it
 * meanwhile is seen here and nothing is applied twice. */
static int apply_one(PGconn *c, size_t i, char *err, size_t errlen) {
  const struct dp_migration *m = &dp_migrations[i];
  int version = migration_version(m->name);
  char what[200];
  int rc = exec_ok(c,
                   "BEGIN;"
                   /* No "already exists, skipping" notices on stderr. */
                   "SET LOCAL client_min_messages = warning;"
                   /* may index every stored record, waits for a
                    * concurrent migrator's lock */
                   DP_STORE_UNTIMED_TRANSACTION ";"
                   "SELECT pg_advisory_xact_lock(" DP_MIGRATE_LOCK ");"
                   "CREATE TABLE IF NOT EXISTS schema_migrations ("
                   " version integer PRIMARY KEY,"
                   " name text NOT NULL,"
                   " applied_at timestamptz NOT NULL DEFAULT now())",
                   "schema_migrations", err, errlen);
  if (rc) goto fail;

  char vtxt[16];
  snprintf(vtxt, sizeof vtxt, "%d", version);
  const char *params[2] = {vtxt, m->name};
  PGresult *res = PQexecParams(c, "SELECT 1 FROM schema_migrations WHERE version = $1::integer", 1,
                               NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__store_errline(err, errlen, "schema_migrations: ", PQresultErrorMessage(res));
    PQclear(res);
    rc = DP_EPG;
    goto fail;
  }
  int done = PQntuples(res) > 0;
  PQclear(res);
  if (!done) {
    snprintf(what, sizeof what, "migration %s", m->name);
    if ((rc = exec_ok(c, m->sql, what, err, errlen))) goto fail;
    res = PQexecParams(c, "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)",
                       2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      dp__store_errline(err, errlen, "schema_migrations: ", PQresultErrorMessage(res));
      PQclear(res);
      rc = DP_EPG;
      goto fail;
    }
    PQclear(res);
  }
  return exec_ok(c, "COMMIT", "commit migration", err, errlen);

fail:
  PQclear(PQexec(c, "ROLLBACK"));
  return rc;
}

/** Apply every pending migration (blocking). 0 or DP_EPG with reason in err. */
int dp_store_migrate(PGconn *c, char *err, size_t errlen) {
  int have = dp__store_db_version(c, err, errlen);
  if (have < 0) return DP_EPG;
  /* Fast path on every connect: nothing to do takes no lock. */
  if (have >= dp_store_schema_version()) return 0;
  for (size_t i = 0; i < dp_n_migrations; i++) {
    int rc = apply_one(c, i, err, errlen);
    if (rc) return rc;
  }
  return 0;
}
