/* SPDX-License-Identifier: MIT */
/* tests/store/test_loader.c - the batch loader against a real server
 * ($DP_TEST_DB): a batch is stored once and again as duplicates, the same
 * report twice in one batch is stored once, and a report the database refuses
 * is refused alone (and recorded) while the rest of its batch is stored; an
 * idle connection the server dropped is replaced; an idle loader keeps no
 * libuv handle active.
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
    "<report_id>%s</report_id><date_range><begin>1700000000</begin><end>1700086399</end>"
    "</date_range></report_metadata><policy_published><domain>example.com</domain>"
    "</policy_published><record><row><source_ip>192.0.2.1</source_ip><count>%d</count></row>"
    "<identifiers><header_from>example.com</header_from></identifiers><auth_results><spf>"
    "<domain>example.com</domain><result>pass</result></spf></auth_results></record>"
    "<record><row><source_ip>192.0.2.2</source_ip><count>1</count></row><identifiers>"
    "<header_from>example.com</header_from></identifiers><auth_results/></record></feedback>";

static dp_limits_t lim;

/* One staged report, parsed and encoded by the real input job. */
static dp_staged_t *staged(const char *org, const char *rid, int count) {
  char xml[2048], path[] = "/tmp/dp-test-loader-XXXXXX";
  int n = snprintf(xml, sizeof xml, xml_fmt, org, rid, count);
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
