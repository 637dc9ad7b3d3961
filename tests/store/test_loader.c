/* SPDX-License-Identifier: MIT */
/* tests/store/test_loader.c - the batch loader against a real server
 * ($DP_TEST_DB): a batch is stored once and again as duplicates, the same
 * report twice in one batch is stored once, and a report the database refuses
 * is refused alone (and recorded) while the rest of its batch is stored; a
 * new batch is claimed directly, one with stored reports the staged way, a
 * key collision is refused either way, two loaders with overlapping batches
 * store each report once, each half's pending queue holds one mark per stored
 * report, two loaders create the same record partitions without deadlocking,
 * two batch connections load two batches at once and both retry after their
 * backends die; an idle connection the server dropped is replaced; an idle
 * loader keeps no libuv handle active; a loader made async is busy until
 * connected, then loads, says why it cannot connect, and may be destroyed
 * before it is.
 * Without DP_TEST_DB it says so and passes. */
#include <stdio.h>
#include <uv.h>

#include "ingest/input_job_int.h"
#include "parse/parse.h"
#include "store/store.h"
#include "tests/test.h"

#define DP_PG_TEST_DB_PREFIX "dp_loader"
#include "pg_test_util.h"

static const char xml_fmt[] =
    "<feedback><report_metadata><org_name>%s</org_name><email>a@rx.test</email>"
    "<report_id>%s</report_id><date_range><begin>%lld</begin><end>%lld</end>"
    "</date_range></report_metadata><policy_published><domain>example.com</domain>"
    "</policy_published><record><row><source_ip>192.0.2.1</source_ip><count>%d</count></row>"
    "<identifiers><header_from>example.com</header_from></identifiers><auth_results><spf>"
    "<domain>example.com</domain><result>pass</result></spf></auth_results></record>"
    "<record><row><source_ip>192.0.2.2</source_ip><count>1</count></row><identifiers>"
    "<header_from>example.com</header_from></identifiers><auth_results/></record></feedback>";

static dp_limits_t lim;

/* One staged report beginning at begin, parsed and encoded by the real input job. */
static dp_staged_t *staged_at(const char *org, const char *rid, int count, long long begin) {
  char xml[2048], path[] = "/tmp/dp-test-loader-XXXXXX";
  int n = snprintf(xml, sizeof xml, xml_fmt, org, rid, begin, begin + 86399, count);
  int fd = mkstemp(path);
  if (fd < 0 || write(fd, xml, (size_t)n) != n) return NULL;
  close(fd);
  dp_limits_default(&lim);
  dp_align_global_init();
  dp_job_t j;
  dp_job_init(&j, path, &lim);
  dp_job_run(&j);
  dp_staged_t *s = j.head;
  j.head = j.tail = NULL;
  dp_job_free(&j);
  unlink(path);
  return s;
}

static dp_staged_t *staged(const char *org, const char *rid, int count) {
  return staged_at(org, rid, count, 1700000000);
}

/* Replace the begin_ts field (7th) of a staged report's row with text the
 * database refuses, as a report it cannot store would be. */
static void poison(dp_staged_t *s) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  const char *p = s->report_row.data;
  for (int field = 0; *p; field++) {
    const char *end = strchr(p, '\t');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (field == 6)
      dp_buf_puts(&b, "not-a-time");
    else
      dp_buf_append(&b, p, len);
    if (!end) break;
    dp_buf_putc(&b, '\t');
    p = end + 1;
  }
  dp_buf_free(&s->report_row);
  s->report_row = b;
}

static int loaded_status = -1;
static void on_loaded(dp_loader_t *l, dp_batch_t *b, int status) {
  (void)l;
  (void)b;
  loaded_status = status;
}

/* Load b on a fresh loop; returns the callback's status. */
static int load(dp_batch_t *b) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  if (!l) {
    fprintf(stderr, "loader: %s\n", err);
    return -1;
  }
  loaded_status = -1;
  if (dp_loader_submit(l, b, on_loaded)) return -1;
  uv_run(&loop, UV_RUN_DEFAULT);
  dp_loader_destroy(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop)) return -2; /* a handle left open */
  return loaded_status;
}

TEST(loader_stores_once_then_duplicates) {
  if (!setup()) return;
  for (int round = 0; round < 2; round++) {
    dp_batch_t b;
    dp_batch_init(&b);
    dp_batch_add(&b, staged("rx.test", "once-1", 5));
    dp_batch_add(&b, staged("rx.test", "once-2", 6));
    dp_batch_add(&b, staged("rx.test", "once-1", 5)); /* the same report twice */
    ASSERT_OK(load(&b));
    int want = round ? DP_STAGED_DUPLICATE : DP_STAGED_NEW;
    ASSERT_EQ(b.head->status, want);
    ASSERT_EQ(b.head->next->status, want);
    ASSERT_EQ(b.head->next->next->status, DP_STAGED_DUPLICATE);
    dp_batch_free(&b);
  }
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM report WHERE report_id LIKE 'once-%'", "2"));
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) || ' ' || sum(count) FROM record r JOIN report p ON "
                        "p.id = r.report_key WHERE p.report_id LIKE 'once-%'",
                        "4 13"));
  PQfinish(c);
}

/* Load b with the loader l on loop (both kept); returns the callback's status. */
static int load_on(uv_loop_t *loop, dp_loader_t *l, dp_batch_t *b) {
  loaded_status = -1;
  if (dp_loader_submit(l, b, on_loaded)) return -1;
  uv_run(loop, UV_RUN_DEFAULT);
  return loaded_status;
}

/* "direct staged" claim counts of l. */
static const char *claims(dp_loader_t *l) {
  static char out[64];
  uint64_t d, s;
  dp_loader_claim_counts(l, &d, &s);
  snprintf(out, sizeof out, "%llu %llu", (unsigned long long)d, (unsigned long long)s);
  return out;
}

/* Each half's queue (agg_pending, agg_pending_b) holds exactly one mark per
 * stored report, with its begin_ts. */
static bool marks_match(PGconn *c) {
  return scalar_is(c,
                   "SELECT (SELECT count(*) FROM agg_pending) = (SELECT count(*) FROM report) "
                   "AND (SELECT count(*) FROM agg_pending_b) = (SELECT count(*) FROM report) "
                   "AND NOT EXISTS (SELECT 1 FROM report r FULL JOIN agg_pending p ON "
                   "p.report_key = r.id AND p.begin_ts = r.begin_ts "
                   "WHERE r.id IS NULL OR p.report_key IS NULL) "
                   "AND NOT EXISTS (SELECT 1 FROM report r FULL JOIN agg_pending_b p ON "
                   "p.report_key = r.id AND p.begin_ts = r.begin_ts "
                   "WHERE r.id IS NULL OR p.report_key IS NULL)",
                   "t");
}

TEST(loader_claims_a_new_batch_directly_then_falls_back_for_stored_reports) {
  if (!setup()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l);
  /* all new: one COPY into report */
  dp_batch_t b;
  dp_batch_init(&b);
  dp_batch_add(&b, staged("rx.test", "direct-1", 3));
  dp_batch_add(&b, staged("rx.test", "direct-2", 4));
  ASSERT_OK(load_on(&loop, l, &b));
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  ASSERT_EQ(b.head->next->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  ASSERT_STR_EQ(claims(l), "1 0");
  /* one stored report among new ones: the direct COPY fails, the batch is
   * claimed the staged way in the same submit */
  dp_batch_add(&b, staged("rx.test", "direct-3", 5));
  dp_batch_add(&b, staged("rx.test", "direct-2", 4));
  dp_batch_add(&b, staged("rx.test", "direct-4", 6));
  ASSERT_OK(load_on(&loop, l, &b));
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  ASSERT_EQ(b.head->next->status, DP_STAGED_DUPLICATE);
  ASSERT_EQ(b.head->next->next->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  ASSERT_STR_EQ(claims(l), "1 1");
  /* after that the staged way is used while batches hold stored reports... */
  dp_batch_add(&b, staged("rx.test", "direct-5", 1));
  ASSERT_OK(load_on(&loop, l, &b));
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  ASSERT_STR_EQ(claims(l), "1 2");
  /* ...and the direct one again once a batch was all new */
  dp_batch_add(&b, staged("rx.test", "direct-6", 1));
  ASSERT_OK(load_on(&loop, l, &b));
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  ASSERT_STR_EQ(claims(l), "2 2");
  dp_loader_destroy(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT string_agg(report_id || ':' || n_records, ',' ORDER BY report_id) "
                        "FROM report WHERE report_id LIKE 'direct-%'",
                        "direct-1:2,direct-2:2,direct-3:2,direct-4:2,direct-5:2,direct-6:2"));
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) || ' ' || sum(count) FROM record r JOIN report p ON "
                        "p.id = r.report_key WHERE p.report_id LIKE 'direct-%'",
                        "12 26"));
  ASSERT_TRUE(marks_match(c));
  /* one mark per half for each statement that stored reports (decision
   * 54): the two batches of two new reports, direct and staged, and the two
   * of one */
  for (int half = 0; half < 2; half++) {
    char sql[320];
    snprintf(sql, sizeof sql,
             "SELECT string_agg(n::text, ',' ORDER BY n) FROM (SELECT cardinality(report_keys) n "
             "FROM %s m WHERE EXISTS (SELECT 1 FROM report r WHERE r.id = ANY (m.report_keys) "
             "AND r.report_id LIKE 'direct-%%')) x",
             half ? "agg_marks_b" : "agg_marks_a");
    ASSERT_TRUE(scalar_is(c, sql, "1,1,2,2"));
  }
  PQfinish(c);
}

TEST(loader_refuses_a_key_collision_whichever_way_it_claims) {
  if (!setup()) return;
  dp_batch_t b;
  dp_batch_init(&b);
  dp_batch_add(&b, staged("rx.test", "coll-stored", 2));
  ASSERT_OK(load(&b));
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  int64_t key = b.head->key;
  dp_batch_free(&b);
  char keytxt[32];
  snprintf(keytxt, sizeof keytxt, "%lld", (long long)key);
  for (int round = 0; round < 2; round++) {
    /* a different report whose key is the stored one's (a 64-bit hash
     * collision), alone (claimed directly first) and next to a new report */
    dp_staged_t *other = staged("rx.test", round ? "coll-other-b" : "coll-other-a", 7);
    ASSERT_NOT_NULL(other);
    other->key = key;
    char *tab = strchr(other->report_row.data, '\t');
    dp_buf_t row;
    dp_buf_init(&row, 0);
    dp_buf_puts(&row, keytxt);
    dp_buf_puts(&row, tab);
    dp_buf_free(&other->report_row);
    other->report_row = row;
    dp_batch_add(&b, other);
    if (round) dp_batch_add(&b, staged("rx.test", "coll-new", 1));
    ASSERT_OK(load(&b));
    ASSERT_EQ(b.head->status, DP_STAGED_FAILED);
    ASSERT_CONTAINS(b.head->error, "collides");
    if (round) ASSERT_EQ(b.head->next->status, DP_STAGED_NEW);
    dp_batch_free(&b);
  }
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT string_agg(report_id, ',' ORDER BY report_id) FROM report "
                        "WHERE report_id LIKE 'coll-%'",
                        "coll-new,coll-stored"));
  ASSERT_TRUE(scalar_is(c,
                        "SELECT string_agg(report_id, ',' ORDER BY report_id) FROM ingest_error "
                        "WHERE code = 'DP_ECOLLISION'",
                        "coll-other-a,coll-other-b"));
  ASSERT_TRUE(marks_match(c));
  PQfinish(c);
}

static int n_loaded;
static void on_loaded_count(dp_loader_t *l, dp_batch_t *b, int status) {
  (void)l;
  (void)b;
  if (!status) n_loaded++;
}

/* Loads b1 and b2 at once on two loaders of one loop (two ingesters); sets
 * *loaded to how many committed, and when said is given, fills it with what
 * the loaders wrote to stderr meanwhile. The batches stay the caller's. */
static void load_both(dp_batch_t *b1, dp_batch_t *b2, int *loaded, char *said, size_t said_len) {
  *loaded = -1;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  dp_loader_t *l1 = dp_loader_create(&loop, conninfo, err, sizeof err);
  dp_loader_t *l2 = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l1);
  ASSERT_NOT_NULL(l2);
  int saved = -1, efd = -1;
  char errpath[] = "/tmp/dp-test-loader-err-XXXXXX";
  if (said) {
    fflush(stderr);
    saved = dup(2);
    efd = mkstemp(errpath);
    ASSERT_TRUE(saved >= 0 && efd >= 0);
    dup2(efd, 2);
  }
  n_loaded = 0;
  ASSERT_OK(dp_loader_submit(l1, b1, on_loaded_count));
  ASSERT_OK(dp_loader_submit(l2, b2, on_loaded_count));
  uv_run(&loop, UV_RUN_DEFAULT);
  if (said) {
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(efd, said, said_len - 1, 0);
    said[n > 0 ? n : 0] = '\0';
    close(efd);
    unlink(errpath);
  }
  *loaded = n_loaded;
  dp_loader_destroy(l1);
  dp_loader_destroy(l2);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(loader_two_loaders_overlapping_batches_store_each_report_once) {
  if (!setup()) return;
  for (int round = 0; round < 3; round++) {
    /* reports 0-29 and 15-44, the second in reverse order: each loader
     * claims in key order, so neither deadlocks on the other's keys */
    dp_batch_t b1, b2;
    dp_batch_init(&b1);
    dp_batch_init(&b2);
    char rid[64];
    for (int i = 0; i < 30; i++) {
      snprintf(rid, sizeof rid, "par-%d-%d", round, i);
      dp_batch_add(&b1, staged("rx.test", rid, i + 1));
      snprintf(rid, sizeof rid, "par-%d-%d", round, 44 - i);
      dp_batch_add(&b2, staged("rx.test", rid, 45 - i));
    }
    int loaded;
    load_both(&b1, &b2, &loaded, NULL, 0);
    ASSERT_EQ(loaded, 2);
    int n_new = 0, n_dup = 0;
    for (dp_batch_t *b = &b1; b; b = b == &b1 ? &b2 : NULL)
      for (dp_staged_t *s = b->head; s; s = s->next) {
        n_new += s->status == DP_STAGED_NEW;
        n_dup += s->status == DP_STAGED_DUPLICATE;
      }
    ASSERT_EQ(n_new, 45);
    ASSERT_EQ(n_dup, 15);
    dp_batch_free(&b1);
    dp_batch_free(&b2);
  }
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) || ' ' || sum(n_records) FROM report "
                        "WHERE report_id LIKE 'par-%'",
                        "135 270"));
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(*) FROM record r JOIN report p ON p.id = r.report_key "
                        "WHERE p.report_id LIKE 'par-%'",
                        "270"));
  ASSERT_TRUE(marks_match(c));
  PQfinish(c);
}

/* Two batch connections: both batches wait on a lock held elsewhere, their
 * backends are killed, the lock goes; each batch is retried and committed once. */
static PGconn *blocker;
static int kill_state;
static void kill_when_both_wait(uv_timer_t *t) {
  if (kill_state) return;
  /* the blocker is in a transaction: without this it sees its first look again */
  PQclear(PQexec(blocker, "SELECT pg_stat_clear_snapshot()"));
  PGresult *r = PQexec(blocker, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND wait_event_type = 'Lock'");
  bool both = PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "2");
  PQclear(r);
  if (!both) return;
  PQclear(PQexec(blocker, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "datname = current_database() AND pid <> pg_backend_pid()"));
  PQclear(PQexec(blocker, "ROLLBACK"));
  kill_state = 1;
  uv_timer_stop(t);
}

TEST(loader_two_batch_connections_retry_after_their_backends_die) {
  if (!setup()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l);
  dp_loader_set_batch_conns(l, 2);
  blocker = PQconnectdb(conninfo);
  PQclear(PQexec(blocker, "BEGIN"));
  PQclear(PQexec(blocker, "LOCK TABLE report IN ACCESS EXCLUSIVE MODE"));
  dp_batch_t b1, b2, b3;
  dp_batch_init(&b1);
  dp_batch_init(&b2);
  dp_batch_init(&b3);
  dp_batch_add(&b1, staged("rx.test", "conn2-1", 1));
  dp_batch_add(&b1, staged("rx.test", "conn2-2", 2));
  dp_batch_add(&b2, staged("rx.test", "conn2-3", 3));
  dp_batch_add(&b3, staged("rx.test", "conn2-4", 4));
  n_loaded = 0;
  ASSERT_OK(dp_loader_submit(l, &b1, on_loaded_count));
  ASSERT_FALSE(dp_loader_busy(l));
  ASSERT_OK(dp_loader_submit(l, &b2, on_loaded_count));
  ASSERT_TRUE(dp_loader_busy(l));
  ASSERT_EQ(dp_loader_submit(l, &b3, on_loaded_count), UV_EBUSY);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  kill_state = 0;
  uv_timer_start(&t, kill_when_both_wait, 20, 20);
  fflush(stderr);
  int saved = dup(2);
  char errpath[] = "/tmp/dp-test-loader-err-XXXXXX";
  int efd = mkstemp(errpath);
  dup2(efd, 2);
  uv_run(&loop, UV_RUN_DEFAULT); /* the timer stops once it killed them */
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char said[2048] = "";
  ssize_t n = pread(efd, said, sizeof said - 1, 0);
  said[n > 0 ? n : 0] = '\0';
  close(efd);
  unlink(errpath);
  ASSERT_EQ(kill_state, 1);
  ASSERT_CONTAINS(said, "database unavailable");
  ASSERT_EQ(n_loaded, 2);
  ASSERT_FALSE(dp_loader_busy(l));
  ASSERT_EQ(b1.head->status, DP_STAGED_NEW);
  ASSERT_EQ(b1.head->next->status, DP_STAGED_NEW);
  ASSERT_EQ(b2.head->status, DP_STAGED_NEW);
  /* the connections are free again */
  ASSERT_OK(load_on(&loop, l, &b3));
  ASSERT_EQ(b3.head->status, DP_STAGED_NEW);
  dp_batch_free(&b1);
  dp_batch_free(&b2);
  dp_batch_free(&b3);
  uv_close((uv_handle_t *)&t, NULL);
  dp_loader_destroy(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
  ASSERT_TRUE(scalar_is(blocker,
                        "SELECT string_agg(report_id || ':' || n_records, ',' ORDER BY report_id) "
                        "FROM report WHERE report_id LIKE 'conn2-%'",
                        "conn2-1:2,conn2-2:2,conn2-3:2,conn2-4:2"));
  ASSERT_TRUE(scalar_is(blocker,
                        "SELECT count(*) || ' ' || sum(count) FROM record r JOIN report p ON "
                        "p.id = r.report_key WHERE p.report_id LIKE 'conn2-%'",
                        "8 14"));
  ASSERT_TRUE(marks_match(blocker));
  PQfinish(blocker);
}

TEST(loader_two_loaders_create_the_same_partitions_without_deadlock) {
  if (!setup()) return;
  /* 24 months nobody has a partition for yet, one loader in order and the
   * other backwards: before the advisory lock in dp_ensure_record_partition
   * their CREATE TABLEs deadlocked, one batch was rolled back and retried
   * as an outage */
  dp_batch_t b1, b2;
  dp_batch_init(&b1);
  dp_batch_init(&b2);
  char rid[64];
  for (int i = 0; i < 24; i++) {
    long long t1 = 1262304000LL + i * 2678400LL, t2 = 1262304000LL + (23 - i) * 2678400LL;
    snprintf(rid, sizeof rid, "part-a-%d", i);
    dp_batch_add(&b1, staged_at("rx.test", rid, 1, t1));
    snprintf(rid, sizeof rid, "part-b-%d", i);
    dp_batch_add(&b2, staged_at("rx.test", rid, 1, t2));
  }
  int loaded;
  char said[2048] = "";
  load_both(&b1, &b2, &loaded, said, sizeof said);
  ASSERT_STR_EQ(said, "");
  ASSERT_EQ(loaded, 2);
  dp_batch_free(&b1);
  dp_batch_free(&b2);
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM report WHERE report_id LIKE 'part-%'", "48"));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM record_default", "0"));
  ASSERT_TRUE(scalar_is(c,
                        "SELECT count(DISTINCT r.tableoid) || ' ' || count(DISTINCT "
                        "date_trunc('month', r.begin_ts AT TIME ZONE 'UTC')) FROM record r "
                        "JOIN report p ON p.id = r.report_key WHERE p.report_id LIKE 'part-%'",
                        "24 24"));
  PQfinish(c);
}

TEST(loader_refuses_the_bad_report_alone) {
  if (!setup()) return;
  dp_batch_t b;
  dp_batch_init(&b);
  dp_batch_add(&b, staged("rx.test", "good-1", 2));
  dp_staged_t *bad = staged("rx.test", "bad-1", 3);
  ASSERT_NOT_NULL(bad);
  poison(bad);
  dp_batch_add(&b, bad);
  dp_batch_add(&b, staged("rx.test", "good-2", 4));
  /* an ingest_error row from a refused input travels with the batch */
  dp_store_encode_error(&b.error_rows, "/in/broken.xml", "", "", "", DP_EXML, "malformed XML");
  b.n_errors++;
  ASSERT_OK(load(&b));
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  ASSERT_EQ(b.head->next->status, DP_STAGED_FAILED);
  ASSERT_CONTAINS(b.head->next->error, "refused by the database");
  ASSERT_EQ(b.head->next->next->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c,
                        "SELECT string_agg(report_id, ',' ORDER BY report_id) FROM report "
                        "WHERE report_id IN ('good-1', 'bad-1', 'good-2')",
                        "good-1,good-2"));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM ingest_error WHERE report_id = 'bad-1' AND "
                           "code = 'DP_EPG' AND reason LIKE 'refused by the database:%'",
                        "1"));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM ingest_error WHERE source = '/in/broken.xml'",
                        "1"));
  PQfinish(c);
}

TEST(loader_reconnects_quietly_after_idle_connection_dies) {
  if (!setup()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[512];
  dp_loader_t *l = dp_loader_create(&loop, conninfo, err, sizeof err);
  ASSERT_NOT_NULL(l);
  /* the server drops our idle connection (restart, idle timeout): the next
   * batch opens a new one without calling it an outage */
  PGconn *c = PQconnectdb(conninfo);
  PQclear(PQexec(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"));
  for (int i = 0; i < 250; i++) { /* until the backend is really gone */
    PGresult *r = PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid()");
    bool gone = PQntuples(r) == 1 && !strcmp(PQgetvalue(r, 0, 0), "0");
    PQclear(r);
    if (gone) break;
    usleep(20000);
  }
  PQfinish(c);
  dp_batch_t b;
  dp_batch_init(&b);
  dp_batch_add(&b, staged("rx.test", "after-kill", 1));
  loaded_status = -1;
  /* what the loader says meanwhile goes to a file we read back */
  fflush(stderr);
  int saved = dup(2);
  char errpath[] = "/tmp/dp-test-loader-err-XXXXXX";
  int efd = mkstemp(errpath);
  dup2(efd, 2);
  ASSERT_OK(dp_loader_submit(l, &b, on_loaded));
  uv_run(&loop, UV_RUN_DEFAULT);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  char said[1024] = "";
  ssize_t n = pread(efd, said, sizeof said - 1, 0);
  said[n > 0 ? n : 0] = '\0';
  close(efd);
  unlink(errpath);
  ASSERT_STR_EQ(said, ""); /* not an outage: nothing was in flight */
  ASSERT_EQ(loaded_status, 0);
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  dp_loader_destroy(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

/* What dp_loader_create_async's ready callback was told. */
static int ready_calls, ready_status;
static char ready_err[512];
static void on_ready(dp_loader_t *l, int status, const char *err, void *data) {
  (void)l;
  (void)data;
  ready_calls++;
  ready_status = status;
  snprintf(ready_err, sizeof ready_err, "%s", err ? err : "");
}

TEST(loader_made_async_is_busy_until_connected_then_loads) {
  if (!setup()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ready_calls = 0;
  ready_status = -1;
  dp_loader_t *l = dp_loader_create_async(&loop, conninfo, on_ready, NULL);
  ASSERT_NOT_NULL(l);
  /* the connection is made in the pool: nothing may be submitted meanwhile */
  ASSERT_TRUE(dp_loader_connecting(l));
  ASSERT_TRUE(dp_loader_busy(l));
  dp_batch_t b;
  dp_batch_init(&b);
  dp_batch_add(&b, staged("rx.test", "async-1", 2));
  ASSERT_EQ(dp_loader_submit(l, &b, on_loaded), UV_EBUSY);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(ready_calls, 1);
  ASSERT_EQ(ready_status, 0);
  ASSERT_FALSE(dp_loader_connecting(l));
  ASSERT_FALSE(dp_loader_busy(l));
  ASSERT_OK(load_on(&loop, l, &b));
  ASSERT_EQ(b.head->status, DP_STAGED_NEW);
  dp_batch_free(&b);
  dp_loader_destroy(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
  PGconn *c = PQconnectdb(conninfo);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM report WHERE report_id = 'async-1'", "1"));
  PQfinish(c);
}

TEST(loader_made_async_says_why_it_cannot_connect_and_loads_nothing) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  ready_calls = 0;
  ready_status = -1;
  dp_loader_t *l = dp_loader_create_async(
      &loop, "host=/nonexistent-dp-test port=1 dbname=x user=x connect_timeout=2", on_ready, NULL);
  ASSERT_NOT_NULL(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(ready_calls, 1);
  ASSERT_EQ(ready_status, DP_EPGCONN);
  ASSERT_CONTAINS(ready_err, "cannot connect to PostgreSQL: ");
  ASSERT_CONTAINS(ready_err, "/nonexistent-dp-test");
  ASSERT_TRUE(dp_loader_busy(l)); /* it loads nothing, ever */
  dp_loader_destroy(l);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_OK(uv_loop_close(&loop));
}

TEST(loader_made_async_can_be_destroyed_before_it_is_connected) {
  if (!setup()) return;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ready_calls = 0;
  dp_loader_t *l = dp_loader_create_async(&loop, conninfo, on_ready, NULL);
  ASSERT_NOT_NULL(l);
  dp_loader_destroy(l); /* the connection's work is under way: it is dropped when done */
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ(ready_calls, 0);
  ASSERT_OK(uv_loop_close(&loop)); /* nothing left open, nothing leaked (ASan) */
}
