/* SPDX-License-Identifier: MIT */
/* tests/store/pg_test_util.h - a fresh database per test executable in the
 * server named by $DP_TEST_DB (dropped at exit), and one-value query checks.
 * Include once, after tests/test.h; static: each test binary has its own. */
#ifndef DP_PG_TEST_UTIL_H
#define DP_PG_TEST_UTIL_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "store/store_int.h"

#ifndef DP_PG_TEST_DB_PREFIX
#define DP_PG_TEST_DB_PREFIX "dp_test"
#endif

static PGconn *admin;    /* connection to DP_TEST_DB */
static char dbname[64];  /* the fresh database */
static char *conninfo;   /* conninfo of the fresh database */

/* conninfo of the admin connection with dbname replaced. */
static char *conninfo_for(PGconn *c, const char *db) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  PQconninfoOption *opts = PQconninfo(c);
  for (PQconninfoOption *o = opts; o && o->keyword; o++) {
    const char *v = strcmp(o->keyword, "dbname") ? o->val : db;
    if (!v || !*v) continue;
    dp_buf_printf(&b, "%s%s=", b.len ? " " : "", o->keyword);
    dp__store_conninfo_value(&b, v);
  }
  PQconninfoFree(opts);
  return dp_buf_steal(&b, NULL);
}

/* Drop the fresh database however the run ends (one test may run alone). */
static void cleanup(void) {
  if (!admin) return;
  char sql[128];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
  PGresult *res = PQexec(admin, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK)
    fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
  PQfinish(admin);
  admin = NULL;
  free(conninfo);
  conninfo = NULL;
}

static bool setup(void) {
  const char *db = getenv("DP_TEST_DB");
  if (!db || !*db) {
    printf("skipped: DP_TEST_DB unset\n");
    return false;
  }
  if (admin) return true;
  admin = PQconnectdb(db);
  if (PQstatus(admin) != CONNECTION_OK) {
    fprintf(stderr, "DP_TEST_DB: %s", PQerrorMessage(admin));
    exit(1);
  }
  PQclear(PQexec(admin, "SET client_min_messages = warning"));
  snprintf(dbname, sizeof dbname, DP_PG_TEST_DB_PREFIX "_%ld", (long)getpid());
  char sql[128];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dbname);
  PQclear(PQexec(admin, sql));
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
  PGresult *res = PQexec(admin, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(res));
    exit(1);
  }
  PQclear(res);
  conninfo = conninfo_for(admin, dbname);
  atexit(cleanup);
  return true;
}

/* Run sql (one row, one column expected) and return the value; caller frees. */
static char *scalar(PGconn *c, const char *sql) {
  PGresult *res = PQexec(c, sql);
  char *v = NULL;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
    v = strdup(PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
  else
    fprintf(stderr, "  %s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
  return v ? v : strdup("(error)");
}

static int scalar_is(PGconn *c, const char *sql, const char *want) {
  char *v = scalar(c, sql);
  int ok = !strcmp(v, want);
  if (!ok) fprintf(stderr, "  %s\n    gave \"%s\"\n    want \"%s\"\n", sql, v, want);
  free(v);
  return ok;
}

#endif
