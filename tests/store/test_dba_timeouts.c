/* SPDX-License-Identifier: MIT */
/* tests/store/test_dba_timeouts.c - against a real server ($DP_TEST_DB):
 * timeouts a DBA set for interactive sessions (on the database here) do not
 * cancel the work that waits by design: a migration waiting for another
 * migrator's lock, a catch-up waiting for another aggregator's batch (of
 * either half of the aggregates). (The
 * loader's stream is in test_loader_stream.c.) Without DP_TEST_DB it says so
 * and passes. */
#include "store/store.h"
#include "store/store_int.h"

#include <pthread.h>

#include "tests/test.h"

#define DP_PG_TEST_DB_PREFIX "dp_store_dba"
#include "pg_test_util.h"

/* Ends holder's lock (a statement) after 400 ms, from another thread, while
 * the test thread is blocked on it. */
struct release {
  PGconn *holder;
  const char *sql;
};
static void *release_later(void *arg) {
  struct release *r = arg;
  usleep(400 * 1000);
  PQclear(PQexec(r->holder, r->sql));
  return NULL;
}

/* dp_agg_catch_up on late while holder, which holds a pending mark, rolls
 * back 400 ms later: the catch-up's outcome (its reason on stderr). */
static int catch_up_racing(PGconn *late, PGconn *holder, dp_agg_stats_t *st, char *err,
                           size_t errlen) {
  struct release r = {holder, "ROLLBACK"};
  pthread_t th;
  if (pthread_create(&th, NULL, release_later, &r)) return -1;
  int rc = dp_agg_catch_up(late, 0, st, err, errlen);
  pthread_join(th, NULL);
  if (rc) fprintf(stderr, "  %s\n", err);
  return rc;
}

static void set_db_timeouts(const char *value) {
  char sql[512];
  if (value)
    snprintf(sql, sizeof sql,
             "ALTER DATABASE %s SET lock_timeout = '%s'; "
             "ALTER DATABASE %s SET statement_timeout = '%s'",
             dbname, value, dbname, value);
  else
    snprintf(sql, sizeof sql, "ALTER DATABASE %s RESET ALL", dbname);
  PGresult *res = PQexec(admin, sql);
  ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
}

TEST(migration_waits_for_another_migrator_past_lock_timeout) {
  if (!setup()) return;
  set_db_timeouts(NULL); /* whatever a failed test left */
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  /* the last migration is to be applied again, by a session with timeouts,
   * while another migrator holds the lock */
  char sql[128];
  snprintf(sql, sizeof sql, "DELETE FROM schema_migrations WHERE version = %d",
           dp_store_schema_version());
  PQclear(PQexec(c, sql));
  PGconn *holder = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(holder, "SELECT pg_advisory_lock(" DP_MIGRATE_LOCK ") IS NULL", "f"));
  set_db_timeouts("100ms");
  PGconn *late = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(late, "SHOW lock_timeout", "100ms"));
  struct release r = {holder, "SELECT pg_advisory_unlock_all()"};
  pthread_t th;
  ASSERT_EQ(pthread_create(&th, NULL, release_later, &r), 0);
  int rc = dp_store_migrate(late, err, sizeof err);
  pthread_join(th, NULL);
  if (rc) fprintf(stderr, "  %s\n", err);
  ASSERT_OK(rc);
  char want[32];
  snprintf(want, sizeof want, "%d", dp_store_schema_version());
  ASSERT_TRUE(scalar_is(late, "SELECT max(version) FROM schema_migrations", want));
  set_db_timeouts(NULL);
  PQfinish(late);
  PQfinish(holder);
  PQfinish(c);
}

/* Stores report `id`, pending, and sets *holder to a new session whose open
 * transaction holds the report's mark in the half's table `marks`, as
 * another aggregator's batch would (*holder stays NULL when that fails). */
static void hold_pending_mark(PGconn *c, int id, const char *marks, PGconn **holder) {
  *holder = NULL;
  char sql[512];
  snprintf(sql, sizeof sql,
           "INSERT INTO report (id, org_name, report_id, domain, begin_ts, end_ts, "
           "schema_version, source, content_hash, n_records, messages) VALUES (%d, 'o', 'r%d', "
           "'example.com', '2026-01-01Z', '2026-01-02Z', 1, 't', 0, 0, 0)",
           id, id);
  PGresult *res = PQexec(c, sql);
  ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
  PGconn *h = PQconnectdb(conninfo);
  PQclear(PQexec(h, "BEGIN"));
  snprintf(sql, sizeof sql, "SELECT report_keys[1] FROM %s FOR UPDATE", marks);
  char want[16];
  snprintf(want, sizeof want, "%d", id);
  bool held = scalar_is(h, sql, want);
  if (!held) PQfinish(h);
  ASSERT_TRUE(held);
  *holder = h;
}

TEST(catch_up_waits_for_another_aggregator_past_lock_timeout) {
  if (!setup()) return;
  set_db_timeouts(NULL); /* whatever a failed test left */
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  /* one pending report, its mark locked by another aggregator's batch */
  PGconn *holder;
  hold_pending_mark(c, 42, "agg_marks_a", &holder);
  ASSERT_NOT_NULL(holder);
  set_db_timeouts("100ms");
  PGconn *late = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(late, "SHOW lock_timeout", "100ms"));
  dp_agg_stats_t st;
  ASSERT_OK(catch_up_racing(late, holder, &st, err, sizeof err));
  ASSERT_U64_EQ((uint64_t)st.reports, 1);
  ASSERT_TRUE(scalar_is(late, "SELECT count(*) FROM agg_pending", "0"));
  /* the caller's session keeps its own settings */
  ASSERT_TRUE(scalar_is(late, "SHOW statement_timeout", "100ms"));
  set_db_timeouts(NULL);
  PQfinish(late);
  PQfinish(holder);
  PQfinish(c);
}

TEST(catch_up_waits_for_another_aggregator_of_the_other_half) {
  if (!setup()) return;
  set_db_timeouts(NULL);
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  /* one pending report whose half B another aggregator holds (decision 53):
   * half A is folded at once, half B once the holder is done */
  PGconn *holder;
  hold_pending_mark(c, 43, "agg_marks_b", &holder);
  ASSERT_NOT_NULL(holder);
  PGconn *late = PQconnectdb(conninfo);
  dp_agg_stats_t st;
  ASSERT_OK(catch_up_racing(late, holder, &st, err, sizeof err));
  ASSERT_U64_EQ((uint64_t)st.reports, 1);
  ASSERT_EQ(st.half_reports[0], 1);
  ASSERT_EQ(st.half_reports[1], 1);
  ASSERT_TRUE(scalar_is(late, "SELECT (SELECT count(*) FROM agg_pending) + "
                              "(SELECT count(*) FROM agg_pending_b)",
                        "0"));
  PQfinish(late);
  PQfinish(holder);
  PQfinish(c);
}

/* The checks around the batches (how many records wait, is anything left)
 * are exempt from a DBA's statement_timeout as the batches are: they grow
 * with the backlog, and cancelling them failed the catch-up ("agg_pending:
 * canceling statement due to statement timeout"). 100,000 pending reports
 * make each check take far longer than the 5 ms allowed here. */
TEST(catch_up_checks_are_exempt_from_statement_timeout) {
  if (!setup()) return;
  set_db_timeouts(NULL);
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  PGresult *res =
      PQexec(c, "INSERT INTO report (id, org_name, report_id, domain, begin_ts, end_ts, "
                "schema_version, source, content_hash, n_records, messages) "
                "SELECT 1000 + i, 'o', 'bulk' || i, 'example.com', '2026-01-01Z', "
                "'2026-01-02Z', 1, 't', 0, 0, 0 FROM generate_series(1, 100000) i");
  ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
  set_db_timeouts("5ms");
  PGconn *late = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(late, "SHOW statement_timeout", "5ms"));
  ASSERT_EQ(dp_agg_pending(late, err, sizeof err), 100000);
  dp_agg_stats_t st;
  int rc = dp_agg_catch_up_parallel(late, conninfo, 2, 0, &st, err, sizeof err);
  if (rc) fprintf(stderr, "  %s\n", err);
  ASSERT_OK(rc);
  ASSERT_EQ(st.reports, 100000);
  ASSERT_EQ(dp_agg_pending(late, err, sizeof err), 0);
  set_db_timeouts(NULL);
  PQfinish(late);
  PQfinish(c);
}
