/* SPDX-License-Identifier: MIT */
/* tests/store/test_record_index.c - against a real server ($DP_TEST_DB): the
 * access path to a report's records (migration *_record_key.sql) is a
 * non-unique index on report_key in every record partition, present and
 * future, and no primary key makes each stored row pay a uniqueness check.
 * Without DP_TEST_DB it says so and passes. */
#include "store/store.h"
#include "store/store_int.h"

#include <uv.h>

#include "tests/test.h"

#define DP_PG_TEST_DB_PREFIX "dp_store_ri"
#include "pg_test_util.h"

/* Partitions of record without an index whose only column is report_key. */
static const char *const unindexed_partitions =
    "SELECT count(*) FROM pg_inherits i WHERE i.inhparent = 'record'::regclass "
    "AND NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_attribute a "
    "ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0] "
    "WHERE x.indrelid = i.inhrelid AND x.indnatts = 1 AND a.attname = 'report_key' "
    "AND NOT x.indisunique)";

TEST(store_record_index_in_every_partition) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) FROM pg_constraint "
                        "WHERE conrelid = 'record'::regclass AND contype IN ('p', 'u')",
                        "0"));
  /* a month made before any record, and one made on demand afterwards */
  ASSERT_TRUE(scalar_is(
      c, "SELECT count(*) FROM (SELECT dp_ensure_record_partition('2024-02-10T00:00:00Z')) q",
      "1"));
  ASSERT_TRUE(
      scalar_is(c, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'record'::regclass", "2"));
  ASSERT_TRUE(scalar_is(c, unindexed_partitions, "0"));
  ASSERT_TRUE(scalar_is(
      c, "SELECT count(*) FROM (SELECT dp_ensure_record_partition('2031-05-31T23:00:00Z')) q",
      "1"));
  ASSERT_TRUE(
      scalar_is(c, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'record'::regclass", "3"));
  ASSERT_TRUE(scalar_is(c, unindexed_partitions, "0"));
  PQfinish(c);
}

TEST(store_record_index_migration_reruns) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  /* A database whose migrations table was rolled back by hand runs it again
   * without an error and without a second index. */
  PQclear(PQexec(c, "DELETE FROM schema_migrations WHERE name LIKE '%_record_key.sql'"));
  ASSERT_OK(dp_store_migrate(c, err, sizeof err));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM pg_indexes WHERE tablename = 'record'", "1"));
  ASSERT_TRUE(scalar_is(c,
                        "SELECT indexdef LIKE '%(report_key)' FROM pg_indexes "
                        "WHERE tablename = 'record'",
                        "t"));
  ASSERT_TRUE(scalar_is(c, unindexed_partitions, "0"));
  PQfinish(c);
}

/* A loader makes last, this and next month's partitions when it starts, so
 * that no load in the usual case waits to make one (making a partition waits
 * for every transaction inserting into record, a streaming report's too). */
TEST(store_loader_makes_the_current_months_partitions) {
  if (!setup()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l);
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) FROM generate_series(-1, 1) m WHERE to_regclass(format("
                        "'record_%s', to_char((now() + make_interval(months => m)) AT TIME ZONE "
                        "'UTC', 'YYYY_MM'))) IS NOT NULL",
                        "3"));
  ASSERT_TRUE(scalar_is(c, unindexed_partitions, "0"));
  PQfinish(c);
  dp_loader_destroy(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}
