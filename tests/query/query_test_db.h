/* SPDX-License-Identifier: MIT */
/* tests/query/query_test_db.h - a fresh, migrated database with C collation
 * and UTF-8 (so expected sort orders and bytes do not depend on the server's
 * defaults) in the server named by $DP_TEST_DB, dropped at exit; plus the
 * NEED_DB() guard that skips a test when DP_TEST_DB is unset. Include once,
 * after tests/test.h. */
#ifndef DP_QUERY_TEST_DB_H
#define DP_QUERY_TEST_DB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "store/store.h"

static PGconn *conn;
static char dbname[64];

static PGconn *admin_connect(const char *dbn) {
  const char *keys[] = {"dbname", "dbname", "client_encoding", NULL};
  const char *vals[] = {getenv("DP_TEST_DB"), dbn, "UTF8", NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "connect: %s", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

static bool exec(PGconn *c, const char *sql) {
  PGresult *res = PQexec(c, sql);
  bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
  if (!ok) fprintf(stderr, "SQL failed: %s\n%s\n", PQresultErrorMessage(res), sql);
  PQclear(res);
  return ok;
}

static void drop_db(void) {
  if (conn) PQfinish(conn);
  conn = NULL;
  if (!*dbname) return;
  PGconn *a = admin_connect(NULL);
  if (!a) return;
  char sql[128];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dbname);
  exec(a, sql);
  PQfinish(a);
}

/* Create and migrate the database "<prefix>_<pid>" and connect to it (conn).
 * NULL when DP_TEST_DB is unset (after saying so) or on failure. */
static PGconn *query_test_db_create(const char *prefix) {
  const char *dsn = getenv("DP_TEST_DB");
  if (!dsn || !*dsn) {
    printf("skipped: DP_TEST_DB unset\n");
    return NULL;
  }
  PGconn *a = admin_connect(NULL);
  if (!a) return NULL;
  exec(a, "SET client_min_messages = warning");
  snprintf(dbname, sizeof dbname, "%s_%ld", prefix, (long)getpid());
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dbname);
  bool ok = exec(a, sql);
  snprintf(sql, sizeof sql,
           "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'",
           dbname);
  ok = ok && exec(a, sql);
  PQfinish(a);
  if (!ok) return NULL;
  atexit(drop_db);
  if (!(conn = admin_connect(dbname))) return NULL;
  char err[512];
  if (dp_store_migrate(conn, err, sizeof err)) {
    fprintf(stderr, "migrate: %s\n", err);
    return NULL;
  }
  return conn;
}

#define NEED_DB()                                                                                  \
  PGconn *c = db();                                                                                \
  if (!c) {                                                                                        \
    ASSERT_FALSE(getenv("DP_TEST_DB") && *getenv("DP_TEST_DB"));                                   \
    return;                                                                                        \
  }

#endif
