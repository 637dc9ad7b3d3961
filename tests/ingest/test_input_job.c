/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_input_job.c - one input's work end to end without a
 * database: staged reports and their COPY rows, refusals with file, part and
 * reason, notes shown only when an input holds no report, and a context
 * shared by many jobs changing nothing on the real and hostile corpora. */
#include <stdio.h>
#include <unistd.h>

#include "ingest/input_job_int.h"
#include "parse/parse.h"
#include "../test.h"

static const char report_xml[] =
    "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>rx.example</org_name>"
    "<email>a@rx.example</email><report_id>r1</report_id><date_range><begin>1700000000</begin>"
    "<end>1700086399</end></date_range></report_metadata><policy_published><domain>example.com"
    "</domain><p>none</p></policy_published>"
    "<record><row><source_ip>192.0.2.1</source_ip><count>3</count><policy_evaluated>"
    "<disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>"
    "<identifiers><header_from>example.com</header_from></identifiers><auth_results><dkim>"
    "<domain>example.com</domain><result>pass</result></dkim><spf><domain>bounce.esp.test"
    "</domain><result>pass</result></spf></auth_results></record>"
    "<record><row><source_ip>%s</source_ip><count>4</count></row><identifiers><header_from>"
    "example.com</header_from></identifiers><auth_results></auth_results></record></feedback>";

static char *write_tmp(const char *content, size_t n) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/dp-test-job-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  if (write(fd, content, n) != (ssize_t)n) {
    close(fd);
    return NULL;
  }
  close(fd);
  return path;
}

static dp_limits_t lim;

static void run(dp_job_t *j, const char *path) {
  dp_align_global_init(); /* idempotent; the PSL stays loaded (reachable) */
  dp_limits_default(&lim);
  dp_job_init(j, path, &lim);
  dp_job_run(j);
}

TEST(input_job_xml_report) {
  char xml[4096];
  int n = snprintf(xml, sizeof xml, report_xml, "2001:DB8::1");
  char *path = write_tmp(xml, (size_t)n);
  ASSERT_NOT_NULL(path);
  dp_job_t j;
  run(&j, path);
  ASSERT_EQ(j.n_staged, 1);
  ASSERT_EQ(j.n_errors, 0);
  ASSERT_EQ(j.input_refused, 0);
  ASSERT_EQ(j.head->n_records, 2);
  ASSERT_U64_EQ(j.head->messages, 7);
  ASSERT_STR_EQ(j.head->org_name, "rx.example");
  ASSERT_STR_EQ(j.head->source, path);
  /* two record rows, the IPv6 address canonical */
  int lines = 0;
  for (const char *p = j.head->record_rows.data; *p; p++) lines += *p == '\n';
  ASSERT_EQ(lines, 2);
  ASSERT_CONTAINS(j.head->record_rows.data, "\t2001:db8::1\t");
  ASSERT_CONTAINS(j.head->report_row.data, "rx.example");
  dp_job_free(&j);
  unlink(path);
}

TEST(input_job_bad_record_refuses_report) {
  char xml[4096];
  int n = snprintf(xml, sizeof xml, report_xml, "not-an-ip");
  char *path = write_tmp(xml, (size_t)n);
  ASSERT_NOT_NULL(path);
  dp_job_t j;
  run(&j, path);
  ASSERT_EQ(j.n_staged, 0); /* atomic: the good first record is not kept */
  ASSERT_EQ(j.n_errors, 1);
  ASSERT_EQ(j.docs_refused, 1);
  ASSERT_CONTAINS(j.lines.data, path);
  ASSERT_CONTAINS(j.lines.data, "report rx.example/r1");
  ASSERT_CONTAINS(j.lines.data, "record 2");
  ASSERT_CONTAINS(j.error_rows.data, "DP_EREPORT");
  dp_job_free(&j);
  unlink(path);
}

TEST(input_job_not_a_report) {
  char *path = write_tmp("\x89PNG\r\n\x1a\n....", 12);
  ASSERT_NOT_NULL(path);
  dp_job_t j;
  run(&j, path);
  ASSERT_EQ(j.input_refused, 1);
  ASSERT_EQ(j.n_errors, 1);
  ASSERT_CONTAINS(j.lines.data, path);
  ASSERT_CONTAINS(j.lines.data, "not XML, gzip, zip, zlib or a mail message");
  dp_job_free(&j);
  unlink(path);
}

/* A file the walk listed that is gone when opened was moved or deleted
 * meanwhile (a mail client moved a Maildir message from new/ to cur/): a
 * note, no refusal recorded. A path the user named that does not exist is
 * still an error. */
TEST(input_job_vanished_listed_file_is_a_note) {
  const char *path = "/tmp/dp-test-vanished-no-such-file.xml";
  unlink(path);
  dp_job_t j;
  dp_align_global_init();
  dp_limits_default(&lim);
  dp_job_init(&j, path, &lim);
  j.listed = true;
  dp_job_run(&j);
  ASSERT_EQ(j.input_refused, 0);
  ASSERT_EQ(j.n_errors, 0);
  ASSERT_EQ(j.notes, 1);
  ASSERT_CONTAINS(j.note_lines.data, "gone before it was read");
  dp_job_free(&j);
  run(&j, path);
  ASSERT_EQ(j.input_refused, 1);
  ASSERT_EQ(j.n_errors, 1);
  ASSERT_CONTAINS(j.lines.data, "cannot open: No such file or directory");
  dp_job_free(&j);
}

TEST(input_job_mail_notes) {
  char xml[4096];
  snprintf(xml, sizeof xml, report_xml, "192.0.2.9");
  /* a mail with a text part and the report inline: no note shown */
  dp_buf_t m;
  dp_buf_init(&m, 0);
  dp_buf_printf(&m,
                "From: dmarc@rx.example\r\nTo: rua@example.com\r\nSubject: Report\r\n"
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
                "--b1\r\nContent-Type: text/plain\r\n\r\nThis is a DMARC report.\r\n"
                "--b1\r\nContent-Type: text/xml\r\n\r\n%s\r\n--b1--\r\n",
                xml);
  char *path = write_tmp(m.data, m.len);
  ASSERT_NOT_NULL(path);
  dp_job_t j;
  run(&j, path);
  ASSERT_EQ(j.n_staged, 1);
  ASSERT_EQ(j.n_errors, 0);
  ASSERT_TRUE(j.lines.len == 0);
  ASSERT_TRUE(j.note_lines.len == 0); /* the text part's note is dropped next to a report */
  ASSERT_EQ(j.notes, 1);
  ASSERT_EQ(j.skipped_messages, 0);
  dp_job_free(&j);
  unlink(path);
  /* a newsletter: skipped with a note, not an error */
  dp_buf_reset(&m);
  dp_buf_puts(&m, "From: news@shop.test\r\nTo: rua@example.com\r\nSubject: Sale\r\n"
                  "Content-Type: text/plain\r\n\r\nBuy now.\r\n");
  path = write_tmp(m.data, m.len);
  run(&j, path);
  ASSERT_EQ(j.n_staged, 0);
  ASSERT_EQ(j.n_errors, 0);
  ASSERT_EQ(j.input_refused, 0);
  ASSERT_TRUE(j.lines.len == 0); /* not an error */
  ASSERT_CONTAINS(j.note_lines.data, "note: no DMARC report in this message");
  ASSERT_EQ(j.skipped_messages, 1);
  dp_job_free(&j);
  unlink(path);
  dp_buf_free(&m);
}

TEST(input_job_mbox_counts_messages_without_report) {
  char xml[4096];
  snprintf(xml, sizeof xml, report_xml, "192.0.2.10");
  dp_buf_t m;
  dp_buf_init(&m, 0);
  dp_buf_printf(&m,
                "From news@shop.test Thu Nov 26 10:00:00 2026\n"
                "From: news@shop.test\nSubject: Sale\nContent-Type: text/plain\n\nBuy now.\n\n"
                "From dmarc@rx.example Thu Nov 26 10:01:00 2026\n"
                "From: dmarc@rx.example\nSubject: Report\nContent-Type: text/xml\n\n%s\n\n"
                "From bounce@mx.test Thu Nov 26 10:02:00 2026\n"
                "From: bounce@mx.test\nSubject: Undelivered\nContent-Type: text/plain\n\nNo.\n",
                xml);
  char *path = write_tmp(m.data, m.len);
  ASSERT_NOT_NULL(path);
  dp_job_t j;
  run(&j, path);
  ASSERT_EQ(j.n_staged, 1);
  ASSERT_EQ(j.n_errors, 0);
  ASSERT_EQ(j.skipped_messages, 2); /* the newsletter and the bounce */
  dp_job_free(&j);
  unlink(path);
  dp_buf_free(&m);
}

/* ------------------------------------------------------------------------ */
/* A context shared by many jobs (as a pool job runs a run of inputs) gives
 * every input exactly what a job of its own gives it. */

#include <dirent.h>
#include <sys/stat.h>

/* Everything a job produced, as text. */
static void job_text(const dp_job_t *j, dp_buf_t *out) {
  dp_buf_printf(out, "staged %zu errors %zu refused %d docs %" PRIu64 "/%" PRIu64 " notes %" PRIu64
                     " skipped %" PRIu64 " bytes %zu\n",
                j->n_staged, j->n_errors, j->input_refused, j->docs, j->docs_refused, j->notes,
                j->skipped_messages, j->bytes);
  for (const dp_staged_t *s = j->head; s; s = s->next) {
    dp_buf_printf(out, "report %s|%s|%s|%" PRIu64 "|%" PRIu64 "|%" PRId64 "|spool %" PRIu64 "\n",
                  s->source, s->org_name, s->report_id, s->n_records, s->messages, s->key,
                  s->spool_len);
    if (s->report_row.len) dp_buf_append(out, s->report_row.data, s->report_row.len);
    if (s->record_rows.len) dp_buf_append(out, s->record_rows.data, s->record_rows.len);
  }
  if (j->error_rows.len) dp_buf_append(out, j->error_rows.data, j->error_rows.len);
  if (j->lines.len) dp_buf_append(out, j->lines.data, j->lines.len);
  if (j->note_lines.len) dp_buf_append(out, j->note_lines.data, j->note_lines.len);
}

/* Every file under dir (recursively), skipping the corpora's notes. */
static void list_files(const char *dir, char ***v, size_t *n) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    size_t l = strlen(e->d_name);
    if (l > 3 && (!strcmp(e->d_name + l - 3, ".md") || !strcmp(e->d_name + l - 4, ".tsv"))) continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st)) continue;
    if (S_ISDIR(st.st_mode)) {
      list_files(path, v, n);
    } else if (S_ISREG(st.st_mode)) {
      *v = realloc(*v, (*n + 1) * sizeof **v);
      (*v)[(*n)++] = strdup(path);
    }
  }
  closedir(d);
}

static int cmp_path(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

TEST(input_job_shared_context_equals_own_job) {
  dp_align_global_init();
  dp_limits_default(&lim);
  char **files = NULL;
  size_t nf = 0;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/corpus/real", dp_test_shared_dir());
  list_files(dir, &files, &nf);
  snprintf(dir, sizeof dir, "%s/corpus/hostile", dp_test_shared_dir());
  list_files(dir, &files, &nf);
  qsort(files, nf, sizeof *files, cmp_path);
  /* each on its own */
  char **want = calloc(nf, sizeof *want);
  size_t n_refusing = 0;
  for (size_t i = 0; i < nf; i++) {
    dp_job_t j;
    dp_job_init(&j, files[i], &lim);
    dp_job_run(&j);
    n_refusing += j.input_refused || j.docs_refused;
    dp_buf_t t;
    dp_buf_init(&t, 0);
    job_text(&j, &t);
    want[i] = dp_buf_steal(&t, NULL);
    dp_job_free(&j);
  }
  ASSERT_EQ(nf, 92);
  ASSERT_EQ(n_refusing, 19); /* refusals of every kind are among them */
  /* all through one context, forwards then backwards */
  dp_job_ctx_t ctx;
  dp_job_ctx_init(&ctx);
  bool good = true;
  for (size_t k = 0; k < 2 * nf && good; k++) {
    size_t i = k < nf ? k : 2 * nf - 1 - k;
    dp_job_t j;
    dp_job_init(&j, files[i], &lim);
    dp_job_run_in(&j, &ctx);
    dp_buf_t t;
    dp_buf_init(&t, 0);
    job_text(&j, &t);
    good = t.data && !strcmp(t.data, want[i]);
    if (!good) fprintf(stderr, "%s differs with a shared context:\n%s\n--- own job:\n%s\n", files[i], t.data, want[i]);
    dp_buf_free(&t);
    dp_job_free(&j);
  }
  dp_job_ctx_close(&ctx);
  for (size_t i = 0; i < nf; i++) {
    free(files[i]);
    free(want[i]);
  }
  free(files);
  free(want);
  ASSERT_TRUE(good);
}

/* The null sink builds no rows but applies the size limit to the same COPY
 * row bytes: for every limit, a job that measures refuses exactly what a job
 * that encodes refuses, with the same lines, rows and counts. Invalid UTF-8
 * bytes in the auth results (each U+FFFD, three bytes, in the rows) make the
 * rows about three times their XML, so the rows' limit is what refuses: in
 * memory (under one spool chunk), at a spool point, and on the last rows at
 * </feedback>. The auth results are filled with n_bs bytes fill. */
static char *big_filled_report(size_t n_records, size_t n_bs, char fill, size_t *len) {
  dp_buf_t x;
  dp_buf_init(&x, 0);
  char *bs = malloc(n_bs + 1);
  memset(bs, fill, n_bs);
  bs[n_bs] = '\0';
  dp_buf_puts(&x, "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>lim.example"
                  "</org_name><email>a@lim.example</email><report_id>big</report_id><date_range>"
                  "<begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>"
                  "<policy_published><domain>example.com</domain><p>none</p></policy_published>");
  for (size_t i = 0; i < n_records; i++)
    dp_buf_printf(&x, "<record><row><source_ip>10.0.%zu.%zu</source_ip><count>%zu</count>"
                      "<policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail"
                      "</spf></policy_evaluated></row><identifiers><header_from>example.com"
                      "</header_from></identifiers><auth_results><dkim><domain>%s</domain><result>"
                      "pass</result></dkim><spf><domain>%s</domain><result>pass</result></spf>"
                      "</auth_results></record>",
                  i / 256, i % 256, 1 + i % 5, bs, bs);
  dp_buf_puts(&x, "</feedback>");
  free(bs);
  return dp_buf_steal(&x, len);
}

static void run_limited(dp_job_t *j, const char *path, uint64_t max_report, bool no_rows,
                        dp_limits_t *l) {
  dp_limits_default(l);
  l->max_report_size = max_report;
  dp_job_init(j, path, l);
  j->no_rows = no_rows;
  dp_job_run(j);
}

/* What must not depend on whether rows are built. */
static char *refusal_text(const dp_job_t *j) {
  dp_buf_t t;
  dp_buf_init(&t, 0);
  dp_buf_printf(&t, "staged %zu errors %zu refused %d docs %" PRIu64 "/%" PRIu64 "\n", j->n_staged,
                j->n_errors, j->input_refused, j->docs, j->docs_refused);
  for (const dp_staged_t *s = j->head; s; s = s->next)
    dp_buf_printf(&t, "report %s|%s|%" PRIu64 "|%" PRIu64 "\n", s->org_name, s->report_id,
                  s->n_records, s->messages);
  if (j->error_rows.len) dp_buf_append(&t, j->error_rows.data, j->error_rows.len);
  if (j->lines.len) dp_buf_append(&t, j->lines.data, j->lines.len);
  return dp_buf_steal(&t, NULL);
}

TEST(input_job_null_sink_same_size_refusals) {
  dp_align_global_init();
  size_t xlen = 0;
  char *xml = big_filled_report(150, 2700, '\xff', &xlen);
  char *path = write_tmp(xml, xlen);
  free(xml);
  ASSERT_NOT_NULL(path);
  dp_limits_t l;
  dp_job_t j;
  /* the rows' total, from a job that builds them */
  run_limited(&j, path, 64u << 20, false, &l);
  ASSERT_EQ(j.n_staged, 1);
  ASSERT_TRUE(j.head->spool_len > 0); /* past a spool chunk */
  uint64_t total = dp_staged_rows_len(j.head);
  dp_job_free(&j);
  ASSERT_TRUE(xlen < 900 * 1024 && total > 2 * xlen && total > (2u << 20));
  const struct {
    uint64_t cap;
    const char *want; /* in the refusal line, or NULL: stored */
  } cases[] = {
      {64u << 20, NULL},
      {total, NULL},
      {total - 1, ": report exceeds the size limit\n"}, /* the last rows */
      {3u << 19, "exceeds the size limit"},             /* at a spool point */
      {900 * 1024, "exceeds the size limit"},           /* in memory */
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    dp_job_t a, b;
    dp_limits_t la, lb;
    run_limited(&a, path, cases[c].cap, false, &la);
    run_limited(&b, path, cases[c].cap, true, &lb);
    char *ta = refusal_text(&a), *tb = refusal_text(&b);
    if (strcmp(ta, tb)) fprintf(stderr, "cap %" PRIu64 ": rows:\n%s\nmeasured:\n%s\n", cases[c].cap, ta, tb);
    bool same = !strcmp(ta, tb);
    ASSERT_TRUE(same);
    if (cases[c].want) {
      ASSERT_EQ(b.n_staged, 0);
      ASSERT_EQ(b.docs_refused, 1);
      ASSERT_CONTAINS(b.lines.data, cases[c].want);
      ASSERT_CONTAINS(b.error_rows.data, "DP_ELIMIT");
      /* refused by the rows' limit, not by the XML's */
      ASSERT_TRUE(strstr(b.lines.data, "decompressed") == NULL);
      if (c >= 3) ASSERT_CONTAINS(b.lines.data, ": record ");
    } else {
      ASSERT_EQ(b.n_staged, 1);
      ASSERT_EQ(b.head->n_records, 150);
      ASSERT_EQ(b.head->spool_len, 0); /* nothing built, nothing spooled */
      ASSERT_EQ(b.head->record_rows.len, 0);
      ASSERT_EQ(b.head->report_row.len, 0);
    }
    free(ta);
    free(tb);
    dp_job_free(&a);
    dp_job_free(&b);
  }
  unlink(path);
}

/* The row length a null sink counts equals the COPY row's length for every
 * record the parser gives on the real and hostile corpora (UTF-8, escapes,
 * arrays) and on a report of plain and of backslashed fields: the parser's
 * record text block (the plain fast path) and the per-field path agree. */
struct row_check {
  uint64_t records, plain, mismatches;
};

static int check_row(void *ud, const dp_report_t *r, const dp_record_t *rec) {
  struct row_check *c = ud;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int64_t key = dp_store_report_key(r);
  if (dp_store_encode_record(&b, key, r, rec)) return DP_ENOMEM;
  size_t want = b.len;
  dp_buf_free(&b);
  c->records++;
  bool plain = true;
  for (size_t i = 0; i < rec->text_len; i++) {
    unsigned char ch = (unsigned char)rec->text[i];
    if (ch && (ch < 0x20 || ch >= 0x80 || ch == '\\' || ch == '"')) plain = false;
  }
  c->plain += plain;
  size_t got = dp_store_record_row_len(key, r, rec);
  if (got != want) {
    c->mismatches++;
    fprintf(stderr, "record %" PRIu64 ": row_len %zu, row %zu\n", rec->index, got, want);
  }
  /* without the text block: the per-field path */
  dp_record_t copy = *rec;
  copy.text = NULL;
  copy.text_len = 0;
  if (dp_store_record_row_len(key, r, &copy) != want) c->mismatches++;
  return 0;
}

static void parse_file_check(const char *path, struct row_check *c) {
  static const dp_parse_cb_t cb = {NULL, check_row, NULL};
  FILE *f = fopen(path, "rb");
  if (!f) return;
  dp_parser_t *p = dp_parser_create(&lim, &cb, c);
  char buf[4096];
  size_t n;
  int rc = 0;
  while (!rc && (n = fread(buf, 1, sizeof buf, f)) > 0) rc = dp_parser_feed(p, buf, n);
  if (!rc) dp_parser_finish(p);
  dp_parser_destroy(p);
  fclose(f);
}

TEST(input_job_row_len_equals_row_on_corpora) {
  dp_align_global_init();
  dp_limits_default(&lim);
  char **files = NULL;
  size_t nf = 0;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/corpus", dp_test_shared_dir());
  list_files(dir, &files, &nf);
  struct row_check c = {0, 0, 0};
  for (size_t i = 0; i < nf; i++) {
    size_t l = strlen(files[i]);
    if (l > 4 && !strcmp(files[i] + l - 4, ".xml")) parse_file_check(files[i], &c);
    free(files[i]);
  }
  free(files);
  /* two made-up reports: every field plain, and backslashes in arrays */
  for (int k = 0; k < 2; k++) {
    size_t xlen = 0;
    char *xml = big_filled_report(20, k ? 37 : 0, '\\', &xlen);
    char *path = write_tmp(xml, xlen);
    free(xml);
    ASSERT_NOT_NULL(path);
    parse_file_check(path, &c);
    unlink(path);
  }
  /* repeated elements (the same value again, or a value after an empty
   * one; different values refuse the report): the later string replaces
   * the earlier one */
  static const char dup_xml[] =
      "<feedback><report_metadata><org_name>d.example</org_name><email>a@d.example</email>"
      "<report_id>dup</report_id><date_range><begin>1700000000</begin><end>1700086399</end>"
      "</date_range></report_metadata><policy_published><domain>example.com</domain><p>none</p>"
      "</policy_published><record><row><source_ip>192.0.2.1</source_ip><count>2</count>"
      "<policy_evaluated><disposition></disposition><disposition>reject</disposition>"
      "<dkim>pass</dkim><spf>fail</spf><reason><type>forwarded</type><comment>a long comment"
      "</comment><comment> a long comment </comment></reason></policy_evaluated></row><identifiers>"
      "<header_from></header_from><header_from>example.com</header_from>"
      "</identifiers><auth_results><dkim><domain></domain><domain>example.com"
      "</domain><selector>selector-two</selector><selector>selector-two</selector><result>pass</"
      "result>"
      "</dkim><spf><domain>bounce.example</domain><result>pass</result><result>pass</result>"
      "</spf></auth_results></record></feedback>";
  char *dpath = write_tmp(dup_xml, sizeof dup_xml - 1);
  ASSERT_NOT_NULL(dpath);
  uint64_t before = c.records;
  parse_file_check(dpath, &c);
  unlink(dpath);
  ASSERT_EQ(c.records, before + 1);
  ASSERT_EQ(c.mismatches, 0);
  ASSERT_TRUE(c.records > 1000);
  ASSERT_TRUE(c.plain > 100 && c.plain < c.records); /* both paths taken */
  fprintf(stderr, "  %" PRIu64 " records, %" PRIu64 " with plain text\n", c.records, c.plain);
}
