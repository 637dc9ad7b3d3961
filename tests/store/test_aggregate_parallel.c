/* SPDX-License-Identifier: MIT */
/* tests/store/test_aggregate_parallel.c - against a real server
 * ($DP_TEST_DB): a backlog folded by several aggregators at once gives every
 * agg_* table exactly the rows one aggregator gives; helpers run only when the
 * backlog is worth it; one batch past DP_AGG_SPLIT_MIN records is folded by
 * two aggregators, one per half of the aggregates, with one aggregator's
 * result; helpers that cannot connect cost nothing but speed. Without DP_TEST_DB it says so and
 * passes. */
#include "store/store.h"
#include "store/store_int.h"

#include "tests/test.h"

#define DP_PG_TEST_DB_PREFIX "dp_store_aggpar"
#include "pg_test_util.h"

#define N_REPORTS 60
#define N_PER 50

/* n reports (ids 1001..1000+n) of 50 records over six days, two receivers,
 * five senders, mixed alignment and sources, all pending. */
static void make_backlog_of(PGconn *c, int n) {
  char sql[1024];
  snprintf(
      sql, sizeof sql,
      "INSERT INTO report (id, org_name, report_id, domain, begin_ts, end_ts, schema_version, "
      "source, content_hash, n_records, messages) "
      "SELECT 1000 + i, CASE WHEN i %% 2 = 0 THEN 'google.com' ELSE 'yahoo.com' END, 'r' || i, "
      "'example.com', timestamptz '2026-03-01Z' + make_interval(days => i %% 6), "
      "timestamptz '2026-03-01Z' + make_interval(days => i %% 6 + 1) - interval '1 second', "
      "1, 't', 0, 50, 50 * 3 FROM generate_series(1, %d) i",
      n);
  PGresult *res = PQexec(c, sql);
  ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
  res = PQexec(
      c, "INSERT INTO record (report_key, begin_ts, seq, source_ip, count, disposition, pe_dkim, "
         "pe_spf, header_from, envelope_from, dkim_aligned, dkim_aligned_strict, spf_aligned, "
         "spf_aligned_strict, sender, third_party) "
         "SELECT r.id, r.begin_ts, s, ('192.0.2.' || (s * 7 + r.id) % 50)::inet, 3, 'none', "
         "CASE WHEN s % 3 = 0 THEN 'fail' ELSE 'pass' END, 'pass', "
         "CASE WHEN s % 4 = 0 THEN 'news.example.com' ELSE 'example.com' END, "
         "'mail' || s % 5 || '.example.net', s % 3 <> 0, s % 6 = 1, s % 2 = 0, s % 4 = 0, "
         "'sender' || s % 5 || '.example.net', s % 5 > 1 "
         "FROM report r, generate_series(1, 50) s");
  ASSERT_EQ(PQresultStatus(res), PGRES_COMMAND_OK);
  PQclear(res);
}

static void make_backlog(PGconn *c) {
  make_backlog_of(c, N_REPORTS);
}

/* Nothing pending in either half's queue. */
static bool none_pending(PGconn *c) {
  return scalar_is(
      c, "SELECT (SELECT count(*) FROM agg_pending) + (SELECT count(*) FROM agg_pending_b)", "0");
}

/* agg_dis_detail holds a row per pair and batch, so its rows depend on how
 * reports were batched; what it means does not: per pair, the messages of
 * each detail. */
static const char dis_detail_sql[] =
    "SELECT count(*) || ':' || md5(coalesce(string_agg(x, '|' ORDER BY x), '')) FROM ("
    " SELECT (k, dom, b, e, org, pd, ps, dk, sp, sum(m))::text AS x FROM agg_dis_detail,"
    "  unnest(d_domain, d_begin, d_end, d_org, d_pd, d_ps, d_dk_re, d_sp_re, d_messages)"
    "   AS u(dom, b, e, org, pd, ps, dk, sp, m)"
    " GROUP BY k, dom, b, e, org, pd, ps, dk, sp) q";

/* Every agg_* table's rows, in a canonical order, as one digest each. */
static char *snapshot(PGconn *c) {
  PGresult *res = PQexec(c, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'agg\\_%' "
                            "AND tablename NOT IN ('agg_marks_a', 'agg_marks_b') ORDER BY 1");
  dp_buf_t b;
  dp_buf_init(&b, 0);
  for (int i = 0; i < PQntuples(res); i++) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), "
             "'')) FROM %s t",
             PQgetvalue(res, i, 0));
    char *v = scalar(c, strcmp(PQgetvalue(res, i, 0), "agg_dis_detail") ? sql : dis_detail_sql);
    dp_buf_printf(&b, "%s=%s\n", PQgetvalue(res, i, 0), v ? v : "?");
    free(v);
  }
  PQclear(res);
  return dp_buf_steal(&b, NULL);
}

TEST(parallel_catch_up_equals_one_aggregator) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  make_backlog(c);
  dp_agg_stats_t st;
  ASSERT_OK(dp_agg_catch_up(c, 200, &st, err, sizeof err));
  ASSERT_EQ(st.aggregators, 1);
  ASSERT_U64_EQ((uint64_t)st.reports, N_REPORTS);
  char *one = snapshot(c);
  ASSERT_TRUE(strstr(one, "agg_sender=0:") == NULL); /* something was folded */
  ASSERT_TRUE(scalar_is(c, "SELECT dp_agg_rebuild() IS NULL", "f"));
  /* 3,000 records in batches of 200: plenty of batches for three */
  ASSERT_OK(dp_agg_catch_up_parallel(c, conninfo, 3, 200, &st, err, sizeof err));
  ASSERT_EQ(st.aggregators, 3);
  ASSERT_U64_EQ((uint64_t)st.reports, N_REPORTS);
  ASSERT_U64_EQ((uint64_t)st.records, N_REPORTS * N_PER);
  ASSERT_TRUE(none_pending(c));
  char *three = snapshot(c);
  ASSERT_STR_EQ(three, one);
  free(three);
  free(one);
  PQfinish(c);
}

TEST(parallel_catch_up_runs_helpers_only_when_worth_it) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  ASSERT_TRUE(scalar_is(c, "SELECT dp_agg_rebuild() IS NULL", "f"));
  dp_agg_stats_t st;
  /* the whole backlog is one batch, under DP_AGG_SPLIT_MIN records: a
   * second connection would cost more than it saves */
  ASSERT_TRUE(N_REPORTS * N_PER < DP_AGG_SPLIT_MIN);
  ASSERT_OK(dp_agg_catch_up_parallel(c, conninfo, 4, 100000, &st, err, sizeof err));
  ASSERT_EQ(st.aggregators, 1);
  ASSERT_U64_EQ((uint64_t)st.reports, N_REPORTS);
  /* helpers that cannot connect: the caller's connection folds it all */
  ASSERT_TRUE(scalar_is(c, "SELECT dp_agg_rebuild() IS NULL", "f"));
  ASSERT_OK(dp_agg_catch_up_parallel(c, "host=/nonexistent-dmarcpipe-test connect_timeout=2", 3,
                                     200, &st, err, sizeof err));
  ASSERT_EQ(st.aggregators, 1);
  ASSERT_U64_EQ((uint64_t)st.reports, N_REPORTS);
  ASSERT_TRUE(none_pending(c));
  PQfinish(c);
}

TEST(parallel_catch_up_folds_the_two_halves_of_one_batch_at_once) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  /* a backlog of one batch past DP_AGG_SPLIT_MIN records: twice the others */
  PQclear(PQexec(c, "TRUNCATE report, record"));
  ASSERT_TRUE(scalar_is(c, "SELECT dp_agg_rebuild() IS NULL", "f"));
  int n = 2 * N_REPORTS;
  ASSERT_TRUE(n * N_PER >= DP_AGG_SPLIT_MIN);
  make_backlog_of(c, n);
  dp_agg_stats_t st;
  ASSERT_OK(dp_agg_catch_up(c, 0, &st, err, sizeof err));
  ASSERT_EQ(st.aggregators, 1);
  ASSERT_EQ(st.batches, 2); /* one per half */
  ASSERT_U64_EQ((uint64_t)st.reports, (uint64_t)n);
  ASSERT_U64_EQ((uint64_t)st.records, (uint64_t)n * N_PER);
  char *one = snapshot(c);
  ASSERT_TRUE(scalar_is(c, "SELECT dp_agg_rebuild() IS NULL", "f"));
  ASSERT_OK(dp_agg_catch_up_parallel(c, conninfo, 4, 0, &st, err, sizeof err));
  ASSERT_EQ(st.aggregators, 2); /* one per half: a batch's worth has no more to share */
  ASSERT_EQ(st.batches, 2);
  ASSERT_U64_EQ((uint64_t)st.reports, (uint64_t)n);
  ASSERT_U64_EQ((uint64_t)st.records, (uint64_t)n * N_PER);
  ASSERT_TRUE(none_pending(c));
  char *two = snapshot(c);
  ASSERT_STR_EQ(two, one);
  free(two);
  free(one);
  PQfinish(c);
}
