/* SPDX-License-Identifier: MIT */
/* tests/store/test_loader_stream.c - streaming reports against a real server
 * ($DP_TEST_DB): a stream claims its report and COPYs rows before the report
 * is complete, yet commits only when it is (small batches land meanwhile on
 * the other connection); the same report again is a duplicate that cancels
 * its worker; an aborted stream stores nothing; a backend killed mid-stream
 * is replayed from the spool and stored once; two stream connections load
 * two streams at once.
 * Without DP_TEST_DB it says so and passes. */
#include <stdio.h>
#include <uv.h>

#include "ingest/input_job_int.h"
#include "parse/parse.h"
#include "store/store.h"
#include "tests/test.h"

#define DP_PG_TEST_DB_PREFIX "dp_lstream"
#include "pg_test_util.h"

static dp_limits_t lim;

/* A report of n records parsed and encoded by the real input job (no
 * loader: it comes back whole), every row moved to its spool file. */
static dp_staged_t *big_staged(const char *rid, int n) {
  char path[] = "/tmp/dp-test-lstream-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  FILE *f = fdopen(fd, "w");
  fprintf(f,
          "<feedback><report_metadata><org_name>big.test</org_name><email>a@big.test</email>"
          "<report_id>%s</report_id><date_range><begin>1700000000</begin><end>1700086399</end>"
          "</date_range></report_metadata><policy_published><domain>example.com</domain>"
          "</policy_published>",
          rid);
  for (int i = 0; i < n; i++)
    fprintf(f,
            "<record><row><source_ip>10.%d.%d.%d</source_ip><count>%d</count></row>"
            "<identifiers><header_from>example.com</header_from></identifiers><auth_results>"
            "<spf><domain>example.com</domain><result>pass</result></spf></auth_results></record>",
            (i >> 16) & 255, (i >> 8) & 255, i & 255, 1 + i % 3);
  fputs("</feedback>", f);
  fclose(f);
  dp_limits_default(&lim);
  dp_align_global_init();
  dp_job_t j;
  dp_job_init(&j, path, &lim);
  dp_job_run(&j);
  dp_staged_t *s = j.head;
  j.head = j.tail = NULL;
  dp_job_free(&j);
  unlink(path);
  if (s && dp_staged_spool(s, UINT64_MAX)) {
    dp_staged_free(s);
    return NULL;
  }
  return s;
}

static uint64_t messages_of(int n) {
  uint64_t m = 0;
  for (int i = 0; i < n; i++) m += (uint64_t)(1 + i % 3);
  return m;
}

/* The offset just past the row break nearest below at: whole rows only. */
static uint64_t row_boundary(const dp_staged_t *s, uint64_t at) {
  char buf[4096];
  uint64_t from = at > sizeof buf ? at - sizeof buf : 0;
  ssize_t n = pread(s->spool_fd, buf, (size_t)(at - from), (off_t)from);
  for (ssize_t i = n - 1; i >= 0; i--)
    if (buf[i] == '\n') return from + (uint64_t)i + 1;
  return 0;
}

/* A stream of s with only its first `published` bytes published. */
static dp_stream_t *open_partial(dp_loader_t *l, dp_staged_t *s, uint64_t published) {
  uint64_t full = s->spool_len;
  s->spool_len = published;
  dp_stream_t *st = dp_loader_stream_open(l, s, &s->report_row);
  s->spool_len = full;
  return st;
}

static int settled;
static void on_settled(void *data) {
  (void)data;
  settled++;
}

/* In dmarcpipe the worker that opens a stream keeps the loop alive until
 * the loader took it up; here the test thread plays the worker, so a timer
 * keeps the loop polling while we spin it. */
static uv_timer_t keepalive;
static void tick(uv_timer_t *t) { (void)t; }
static void start_loop(uv_loop_t *loop) {
  uv_loop_init(loop);
  uv_timer_init(loop, &keepalive);
  uv_timer_start(&keepalive, tick, 5, 5);
}

/* Run the loop for about ms milliseconds. */
static void spin(uv_loop_t *loop, int ms) {
  for (int i = 0; i < ms / 5; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
}

/* Run the loop until the stream settles (10 s at most). */
static int wait_result(uv_loop_t *loop, dp_stream_t *st) {
  for (int i = 0; i < 2000 && dp_stream_result(st, NULL, NULL) == DP_STAGED_PENDING; i++) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  return dp_stream_result(st, NULL, NULL);
}

static int loaded_status;
static void on_loaded(dp_loader_t *l, dp_batch_t *b, int status) {
  (void)l;
  (void)b;
  loaded_status = status;
}

/* A small report (2 records) encoded by the job. */
static dp_staged_t *small_staged(const char *rid) {
  dp_staged_t *s = big_staged(rid, 2);
  return s;
}

/* Each test starts from empty tables (they share one database), without
 * the database-level settings a failed test may have left. */
static void wipe(void) {
  char sql[160];
  snprintf(sql, sizeof sql, "ALTER DATABASE %s RESET ALL", dbname);
  PQclear(PQexec(admin, sql));
  PGconn *c = PQconnectdb(conninfo);
  PQclear(PQexec(c, "TRUNCATE report, record, ingest_error"));
  PQfinish(c);
}

static void finish_loop(uv_loop_t *loop, dp_loader_t *l) {
  dp_loader_destroy(l);
  uv_close((uv_handle_t *)&keepalive, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
}

#define N_BIG 20000

/* A big report's stream opened at half its rows on a loader of its own
 * loop, over empty tables; h->st stays NULL when that failed. */
struct half {
  uv_loop_t loop;
  dp_loader_t *l;
  dp_staged_t *s;
  dp_stream_t *st;
};
static void half_open(struct half *h, const char *rid) {
  h->st = NULL;
  h->s = big_staged(rid, N_BIG);
  ASSERT_NOT_NULL(h->s);
  start_loop(&h->loop);
  char err[512];
  h->l = dp_loader_create(&h->loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(h->l);
  wipe();
  h->st = open_partial(h->l, h->s, row_boundary(h->s, h->s->spool_len / 2));
}
static void half_close(struct half *h) {
  dp_staged_free(h->s);
  finish_loop(&h->loop, h->l);
  ASSERT_OK(uv_loop_close(&h->loop));
}

TEST(stream_commits_when_complete_while_batches_land) {
  if (!setup()) return;
  dp_staged_t *s = big_staged("stream-1", N_BIG);
  ASSERT_NOT_NULL(s);
  ASSERT_TRUE(s->spool_len > 2 * DP_STAGED_SPOOL_CHUNK);
  uv_loop_t loop;
  start_loop(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l);
  wipe();
  settled = 0;
  dp_loader_set_stream_cb(l, on_settled, NULL);
  uint64_t half = row_boundary(s, s->spool_len / 2);
  dp_stream_t *st = open_partial(l, s, half);
  ASSERT_NOT_NULL(st);
  spin(&loop, 400);
  ASSERT_EQ(dp_stream_result(st, NULL, NULL), DP_STAGED_PENDING);
  PGconn *c = PQconnectdb(conninfo);
  /* claimed and COPYing on the second connection, not committed */
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND query LIKE 'COPY record%'",
                        "1"));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM report", "0"));
  /* small reports are not stuck behind it */
  dp_batch_t b;
  dp_batch_init(&b);
  dp_batch_add(&b, small_staged("small-1"));
  dp_batch_add(&b, small_staged("small-2"));
  loaded_status = -1;
  ASSERT_OK(dp_loader_submit(l, &b, on_loaded));
  for (int i = 0; i < 2000 && loaded_status == -1; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  ASSERT_EQ(loaded_status, 0);
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  ASSERT_EQ(b.head->next->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  ASSERT_TRUE(scalar_is(c, "SELECT string_agg(report_id, ',' ORDER BY report_id) FROM report",
                        "small-1,small-2"));
  ASSERT_EQ(dp_stream_result(st, NULL, NULL), DP_STAGED_PENDING);
  /* the rest, then the end: committed with the final counts */
  dp_stream_publish(st, s->spool_len);
  dp_stream_complete(st, s->spool_len, N_BIG, messages_of(N_BIG), 12345);
  ASSERT_EQ(wait_result(&loop, st), DP_STAGED_NEW);
  ASSERT_EQ(settled, 1);
  char want[128];
  snprintf(want, sizeof want, "%d %" PRIu64 " 12345", N_BIG, messages_of(N_BIG));
  ASSERT_TRUE(scalar_is(c, "SELECT n_records || ' ' || messages || ' ' || content_hash FROM report "
                           "WHERE report_id = 'stream-1'",
                        want));
  snprintf(want, sizeof want, "%d %" PRIu64 " %d", N_BIG, messages_of(N_BIG), N_BIG);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) || ' ' || sum(count) || ' ' || max(seq) FROM record "
                           "r JOIN report p ON p.id = r.report_key WHERE p.report_id = 'stream-1'",
                        want));
  dp_stream_release(st);
  /* the same report again: a duplicate, and its worker is told to stop */
  st = open_partial(l, s, half);
  ASSERT_NOT_NULL(st);
  ASSERT_EQ(wait_result(&loop, st), DP_STAGED_DUPLICATE);
  ASSERT_TRUE(dp_stream_cancelled(st));
  dp_stream_release(st);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM record", "20004"));
  PQfinish(c);
  dp_staged_free(s);
  finish_loop(&loop, l);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(stream_aborted_by_its_worker_stores_nothing) {
  if (!setup()) return;
  struct half h;
  half_open(&h, "stream-bad");
  ASSERT_NOT_NULL(h.st);
  dp_stream_t *st = h.st;
  dp_staged_t *s = h.s;
  spin(&h.loop, 400);
  /* say the XML broke after many records */
  dp_stream_abort(st);
  ASSERT_EQ(wait_result(&h.loop, st), DP_STAGED_FAILED);
  const char *why = "x";
  bool recorded = true;
  dp_stream_result(st, &why, &recorded);
  ASSERT_TRUE(why == NULL); /* the worker records its own reason */
  dp_stream_release(st);
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM report", "0"));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM record", "0"));
  PQfinish(c);
  /* a later good copy of it is stored: nothing was left claimed */
  st = dp_loader_stream_open(h.l, s, &s->report_row);
  dp_stream_complete(st, s->spool_len, N_BIG, messages_of(N_BIG), 7);
  ASSERT_EQ(wait_result(&h.loop, st), DP_STAGED_NEW);
  dp_stream_release(st);
  half_close(&h);
}

TEST(stream_replays_after_its_backend_is_killed) {
  if (!setup()) return;
  struct half h;
  half_open(&h, "stream-kill");
  ASSERT_NOT_NULL(h.st);
  dp_stream_t *st = h.st;
  dp_staged_t *s = h.s;
  spin(&h.loop, 400);
  PGconn *c = PQconnectdb(conninfo);
  fflush(stderr);
  ASSERT_TRUE(scalar_is(c, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                           "datname = current_database() AND query LIKE 'COPY record%'",
                        "1"));
  spin(&h.loop, 100);
  dp_stream_complete(st, s->spool_len, N_BIG, messages_of(N_BIG), 9);
  ASSERT_EQ(wait_result(&h.loop, st), DP_STAGED_NEW);
  dp_stream_release(st);
  char want[64];
  snprintf(want, sizeof want, "1 %d %d", N_BIG, N_BIG);
  ASSERT_TRUE(scalar_is(c, "SELECT (SELECT count(*) FROM report) || ' ' || count(*) || ' ' || "
                           "count(DISTINCT seq) FROM record",
                        want));
  PQfinish(c);
  half_close(&h);
}

/* Timeouts a DBA set for interactive sessions (here on the database, so
 * every new connection has them) do not cancel a stream that lasts longer:
 * the loader's sessions turn them off, and the report is stored whole. */
TEST(stream_outlasts_the_database_timeouts) {
  if (!setup()) return;
  char sql[512];
  snprintf(sql, sizeof sql,
           "ALTER DATABASE %s SET statement_timeout = '100ms'; ALTER DATABASE %s SET "
           "lock_timeout = '100ms'; ALTER DATABASE %s SET idle_in_transaction_session_timeout = "
           "'100ms'",
           dbname, dbname, dbname);
  struct half h;
  half_open(&h, "stream-slow"); /* its wipe and its hub connection come first */
  ASSERT_NOT_NULL(h.st);
  PQclear(PQexec(admin, sql)); /* the lane connects when the loop takes the stream */
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c, "SHOW statement_timeout", "100ms"));
  spin(&h.loop, 600); /* the COPY has been running for longer than that */
  ASSERT_EQ(dp_stream_result(h.st, NULL, NULL), DP_STAGED_PENDING);
  dp_stream_complete(h.st, h.s->spool_len, N_BIG, messages_of(N_BIG), 5);
  ASSERT_EQ(wait_result(&h.loop, h.st), DP_STAGED_NEW);
  dp_stream_release(h.st);
  char want[64];
  snprintf(want, sizeof want, "1 %d", N_BIG);
  ASSERT_TRUE(scalar_is(c, "SELECT (SELECT count(*) FROM report) || ' ' || count(*) FROM record",
                        want));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM ingest_error", "0"));
  PQfinish(c);
  snprintf(sql, sizeof sql, "ALTER DATABASE %s RESET ALL", dbname);
  PQclear(PQexec(admin, sql));
  half_close(&h);
}

/* With two stream connections, two big reports are COPYed at once (two
 * backends), and a third waits for whichever lane frees first; each commits
 * alone, complete, once. */
TEST(two_streams_load_at_once_a_third_waits) {
  if (!setup()) return;
  uv_loop_t loop;
  start_loop(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l);
  dp_loader_set_stream_conns(l, 2);
  wipe();
  settled = 0;
  dp_loader_set_stream_cb(l, on_settled, NULL);
  static const char *const rids[] = {"lane-a", "lane-b", "lane-c"};
  dp_staged_t *s[3];
  dp_stream_t *st[3];
  for (int i = 0; i < 3; i++) {
    s[i] = big_staged(rids[i], N_BIG);
    ASSERT_NOT_NULL(s[i]);
    st[i] = open_partial(l, s[i], row_boundary(s[i], s[i]->spool_len / 2));
    ASSERT_NOT_NULL(st[i]);
  }
  spin(&loop, 400);
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query LIKE 'COPY record%' AND state = 'active'",
                        "2"));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM report", "0"));
  for (int i = 0; i < 3; i++)
    ASSERT_EQ(dp_stream_result(st[i], NULL, NULL), DP_STAGED_PENDING);
  /* the second ends first: its lane takes the third */
  dp_stream_complete(st[1], s[1]->spool_len, N_BIG, messages_of(N_BIG), 2);
  ASSERT_EQ(wait_result(&loop, st[1]), DP_STAGED_NEW);
  ASSERT_EQ(dp_stream_result(st[0], NULL, NULL), DP_STAGED_PENDING);
  spin(&loop, 400);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND query LIKE 'COPY record%' AND state = 'active'",
                        "2"));
  for (int i = 0; i < 3; i += 2) {
    dp_stream_complete(st[i], s[i]->spool_len, N_BIG, messages_of(N_BIG), (uint64_t)i + 1);
    ASSERT_EQ(wait_result(&loop, st[i]), DP_STAGED_NEW);
  }
  ASSERT_EQ(settled, 3);
  char want[128];
  snprintf(want, sizeof want, "lane-a %d 1,lane-b %d 2,lane-c %d 3", N_BIG, N_BIG, N_BIG);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT string_agg(report_id || ' ' || n || ' ' || content_hash, ',' "
                        "ORDER BY report_id) FROM (SELECT p.report_id, p.content_hash, "
                        "count(DISTINCT r.seq) AS n FROM report p JOIN record r ON "
                        "r.report_key = p.id GROUP BY 1, 2) q",
                        want));
  snprintf(want, sizeof want, "%d", 3 * N_BIG);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM record", want));
  PQfinish(c);
  for (int i = 0; i < 3; i++) {
    dp_stream_release(st[i]);
    dp_staged_free(s[i]);
  }
  finish_loop(&loop, l);
  ASSERT_OK(uv_loop_close(&loop));
}

/* The batch loader reads spooled rows through its reader thread too: many
 * chunks, in order, exactly once; a spool that cannot be read back refuses
 * that report alone. */
TEST(batch_reads_spooled_rows_off_the_loop_thread) {
  if (!setup()) return;
  dp_staged_t *s = big_staged("spooled-1", N_BIG);
  dp_staged_t *short_one = big_staged("spooled-short", N_BIG);
  ASSERT_NOT_NULL(s);
  ASSERT_NOT_NULL(short_one);
  ASSERT_TRUE(s->spool_len > 2 * DP_STAGED_SPOOL_CHUNK); /* 8+ reads */
  short_one->spool_len += 100; /* claims bytes the file does not hold */
  uv_loop_t loop;
  start_loop(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l);
  wipe();
  dp_batch_t b;
  dp_batch_init(&b);
  dp_batch_add(&b, s);
  dp_batch_add(&b, short_one);
  dp_batch_add(&b, small_staged("small-3"));
  loaded_status = -1;
  fflush(stderr);
  ASSERT_OK(dp_loader_submit(l, &b, on_loaded));
  for (int i = 0; i < 4000 && loaded_status == -1; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(2000);
  }
  ASSERT_EQ(loaded_status, 0);
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  ASSERT_EQ(b.head->next->status, DP_STAGED_FAILED);
  ASSERT_CONTAINS(b.head->next->error, "spool file unreadable");
  ASSERT_EQ(b.head->next->next->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  PGconn *c = PQconnectdb(conninfo);
  char want[128];
  snprintf(want, sizeof want, "%d %" PRIu64 " %d", N_BIG + 2, messages_of(N_BIG) + 3, N_BIG);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) || ' ' || sum(count) || ' ' || max(seq) FROM record", want));
  ASSERT_TRUE(scalar_is(c, "SELECT string_agg(report_id, ',' ORDER BY report_id) FROM report",
                        "small-3,spooled-1"));
  PQfinish(c);
  finish_loop(&loop, l);
  ASSERT_OK(uv_loop_close(&loop));
}
