/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_pipeline.c - the pipeline without a database: runs of
 * small inputs share a pool job, yet each input is refused, counted and
 * reported done on its own; a job that runs out of budget hands the rest
 * of its inputs back, and every input is still run exactly once. */
#include "../test.h"

#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "core/core.h"
#include "ingest/pipeline_int.h"
#include "parse/parse.h"

static char root[64];

static const char head_fmt[] =
    "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>rx.example</org_name>"
    "<email>a@rx.example</email><report_id>r%d</report_id><date_range><begin>1700000000</begin>"
    "<end>1700086399</end></date_range></report_metadata><policy_published><domain>example.com"
    "</domain><p>none</p></policy_published>";
static const char rec_xml[] =
    "<record><row><source_ip>192.0.2.%d</source_ip><count>%d</count><policy_evaluated>"
    "<disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>"
    "<identifiers><header_from>example.com</header_from></identifiers><auth_results><dkim>"
    "<domain>example.com</domain><result>pass</result></dkim></auth_results></record>";

/* A report r<id> of n records (counts 1..n) as XML; caller owns result. */
static char *report(int id, int n, size_t *len) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_printf(&b, head_fmt, id);
  for (int i = 1; i <= n; i++) dp_buf_printf(&b, rec_xml, i % 250 + 1, i);
  dp_buf_puts(&b, "</feedback>\n");
  return dp_buf_steal(&b, len);
}

static int write_file(const char *name, const void *data, size_t n) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", root, name);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  size_t w = fwrite(data, 1, n, f);
  return fclose(f) || w != n ? -1 : 0;
}

/* What input_done saw, in order: "name" or "!name" (refused). */
struct done_log {
  dp_buf_t log;
  int calls;
};

static void on_done(void *data, const char *path, bool refused) {
  struct done_log *d = data;
  const char *slash = strrchr(path, '/');
  dp_buf_printf(&d->log, "%s%s\n", refused ? "!" : "", slash ? slash + 1 : path);
  d->calls++;
}

static void rm_tree(int n_files) {
  char path[256];
  for (int i = 0; i < n_files; i++) {
    snprintf(path, sizeof path, "%s/in%03d.xml", root, i);
    unlink(path);
    snprintf(path, sizeof path, "%s/in%03d.xml.gz", root, i);
    unlink(path);
  }
  rmdir(root);
}

/* n small inputs, bad ones at the indexes in bad[], big (> the job budget)
 * ones at big[]; runs the pipeline (null sink) with jobs at once. */
static int run_dir(int n, const int *bad, size_t n_bad, const int *big, size_t n_big, size_t jobs,
                   dp_pipeline_stats_t *st, struct done_log *dl, char **errtext) {
  snprintf(root, sizeof root, "/tmp/dp-test-pipe-XXXXXX");
  if (!mkdtemp(root)) return -1;
  for (int i = 0; i < n; i++) {
    char name[32];
    size_t len;
    bool is_big = false, is_bad = false;
    for (size_t k = 0; k < n_big; k++) is_big = is_big || big[k] == i;
    for (size_t k = 0; k < n_bad; k++) is_bad = is_bad || bad[k] == i;
    char *xml = report(i, is_big ? 3000 : 1 + i % 10, &len);
    if (is_bad) xml[len / 2] = '<'; /* malformed in the middle of a record */
    snprintf(name, sizeof name, "in%03d.xml", i);
    int rc = write_file(name, xml, len);
    free(xml);
    if (rc) return -1;
  }
  dp_pipeline_opts_t o;
  dp_pipeline_opts_default(&o);
  o.sink = DP_SINK_NULL;
  o.quiet = true;
  o.max_in_flight = jobs;
  o.input_done = on_done;
  o.data = dl;
  char *buf = NULL;
  size_t blen = 0;
  o.err = open_memstream(&buf, &blen);
  char *paths[1] = {root};
  int ret = dp_pipeline_run(&o, paths, 1, st);
  fclose(o.err);
  *errtext = buf;
  return ret;
}

static int count_lines(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}

TEST(pipeline_grouped_inputs_bad_one_refused_alone) {
  dp_align_global_init();
  int bad[] = {37};
  for (size_t jobs = 1; jobs <= 8; jobs *= 8) {
    dp_pipeline_stats_t st;
    struct done_log dl = {0};
    dp_buf_init(&dl.log, 0);
    char *err = NULL;
    int ret = run_dir(200, bad, 1, NULL, 0, jobs, &st, &dl, &err);
    ASSERT_EQ(ret, 1); /* some input refused, the rest loaded */
    ASSERT_U64_EQ(st.inputs, 200);
    ASSERT_U64_EQ(st.reports_new, 199);
    ASSERT_U64_EQ(st.reports_refused, 1);
    ASSERT_U64_EQ(st.inputs_refused, 0);
    /* records: 1 + i % 10 for every i but 37 */
    uint64_t want = 0;
    for (int i = 0; i < 200; i++) want += i == 37 ? 0 : (uint64_t)(1 + i % 10);
    ASSERT_U64_EQ(st.records, want);
    /* one refusal line, naming the file and the reason */
    ASSERT_EQ(count_lines(err, "dmarcpipe: "), 1);
    ASSERT_CONTAINS(err, "/in037.xml: report rx.example/r37: malformed XML at line 1");
    /* every input done exactly once; only the bad one refused */
    ASSERT_EQ(dl.calls, 200);
    ASSERT_EQ(count_lines(dl.log.data, "!"), 1);
    ASSERT_CONTAINS(dl.log.data, "!in037.xml\n");
    for (int i = 0; i < 200; i++) {
      char line[32];
      snprintf(line, sizeof line, "%sin%03d.xml\n", i == 37 ? "!" : "", i);
      if (count_lines(dl.log.data, line) != 1) fprintf(stderr, "%s not done once\n", line);
      ASSERT_EQ(count_lines(dl.log.data, line), 1);
    }
    if (jobs == 1) {
      /* one job at a time: inputs are done in input order */
      dp_buf_t want_log;
      dp_buf_init(&want_log, 0);
      for (int i = 0; i < 200; i++) dp_buf_printf(&want_log, "%sin%03d.xml\n", i == 37 ? "!" : "", i);
      ASSERT_STR_EQ(dl.log.data, want_log.data);
      dp_buf_free(&want_log);
    }
    free(err);
    dp_buf_free(&dl.log);
    rm_tree(200);
  }
}

TEST(pipeline_budget_hands_inputs_back) {
  /* inputs over the job budget (1 MiB) among small ones: the job stops after
   * one and hands the rest back; each input is still run exactly once */
  dp_align_global_init();
  int big[] = {3, 4, 40, 41, 42, 99};
  int bad[] = {5, 98};
  dp_pipeline_stats_t st;
  struct done_log dl = {0};
  dp_buf_init(&dl.log, 0);
  char *err = NULL;
  int ret = run_dir(100, bad, 2, big, 6, 1, &st, &dl, &err);
  ASSERT_EQ(ret, 1);
  ASSERT_U64_EQ(st.inputs, 100);
  ASSERT_U64_EQ(st.reports_new, 98);
  ASSERT_U64_EQ(st.reports_refused, 2);
  uint64_t want = 0;
  for (int i = 0; i < 100; i++) {
    if (i == 5 || i == 98) continue;
    bool is_big = i == 3 || i == 4 || i == 40 || i == 41 || i == 42 || i == 99;
    want += is_big ? 3000 : (uint64_t)(1 + i % 10);
  }
  ASSERT_U64_EQ(st.records, want);
  ASSERT_EQ(count_lines(err, "dmarcpipe: "), 2);
  ASSERT_EQ(dl.calls, 100);
  /* one job at a time: done in input order, hand-backs included */
  dp_buf_t want_log;
  dp_buf_init(&want_log, 0);
  for (int i = 0; i < 100; i++)
    dp_buf_printf(&want_log, "%sin%03d.xml\n", i == 5 || i == 98 ? "!" : "", i);
  ASSERT_STR_EQ(dl.log.data, want_log.data);
  dp_buf_free(&want_log);
  free(err);
  dp_buf_free(&dl.log);
  rm_tree(100);
}

TEST(pipeline_input_over_limit_among_grouped) {
  /* an input refused as a whole (over --max-input-size) in a job of others
   * is refused alone, with its own line */
  dp_align_global_init();
  snprintf(root, sizeof root, "/tmp/dp-test-pipe-XXXXXX");
  ASSERT_NOT_NULL(mkdtemp(root));
  for (int i = 0; i < 64; i++) {
    char name[32];
    size_t len;
    char *xml = report(i, i == 10 ? 100 : 2, &len);
    snprintf(name, sizeof name, "in%03d.xml", i);
    int rc = write_file(name, xml, len);
    free(xml);
    ASSERT_OK(rc);
  }
  dp_pipeline_opts_t o;
  dp_pipeline_opts_default(&o);
  o.sink = DP_SINK_NULL;
  o.quiet = true;
  o.max_in_flight = 1;
  o.limits.max_input_size = 20000;
  struct done_log dl = {0};
  dp_buf_init(&dl.log, 0);
  o.input_done = on_done;
  o.data = &dl;
  char *buf = NULL;
  size_t blen = 0;
  o.err = open_memstream(&buf, &blen);
  dp_pipeline_stats_t st;
  char *paths[1] = {root};
  int ret = dp_pipeline_run(&o, paths, 1, &st);
  fclose(o.err);
  ASSERT_EQ(ret, 1);
  ASSERT_U64_EQ(st.inputs, 64);
  ASSERT_U64_EQ(st.inputs_refused, 1);
  ASSERT_U64_EQ(st.reports_new, 63);
  ASSERT_U64_EQ(st.records, 126);
  ASSERT_EQ(count_lines(buf, "dmarcpipe: "), 1);
  ASSERT_CONTAINS(buf, "/in010.xml: input of ");
  ASSERT_CONTAINS(buf, "bytes is larger than the limit of 20000 bytes");
  ASSERT_EQ(dl.calls, 64);
  ASSERT_EQ(count_lines(dl.log.data, "!"), 1);
  ASSERT_CONTAINS(dl.log.data, "in009.xml\n!in010.xml\nin011.xml\n");
  free(buf);
  dp_buf_free(&dl.log);
  rm_tree(64);
}
