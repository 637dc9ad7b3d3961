/* SPDX-License-Identifier: MIT */
/* tests/bench/test_bench_ceilings.c - the bare ceilings of `dmarcpipe bench`
 * (bench/bench_ceil.c) count what they process: the SAX counter finds every
 * record whatever the chunking, inflate gives back the XML size, the COPY row
 * builder makes one well-formed row per record, and (with DP_TEST_DB) the
 * server stores them all. No timing is asserted anywhere. */
#include "../test.h"

#include <stdbool.h>

#include "bench/bench_ceil.h"
#include "bench/bench_int.h"
#include "parse/parse.h"

struct one {
  dp_buf_t data;
  char name[400];
  int files;
};

static int keep(void *ud, const char *name, const void *data, size_t len) {
  struct one *o = ud;
  snprintf(o->name, sizeof o->name, "%s", name);
  o->files++;
  return dp_buf_append(&o->data, data, len);
}

/* One generated report of n records in format fmt; caller frees o->data. */
static int gen_one(uint64_t n, enum dp_gen_format fmt, uint64_t seed, struct one *o) {
  memset(o, 0, sizeof *o);
  dp_buf_init(&o->data, 0);
  dp_gen_bench_opts_t g = {.seed = seed, .n_reports = 1, .records = n, .formats = 1u << fmt};
  return dp_gen_bench(&g, keep, o, NULL);
}

TEST(bench_sax_counts_records_any_chunking) {
  struct one x;
  ASSERT_OK(gen_one(37, DP_GEN_FMT_XML, 5, &x));
  ASSERT_EQ(x.files, 1);
  static const size_t chunks[] = {0, 1, 7, 4096, 1u << 20};
  for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
    uint64_t n = 0;
    ASSERT_OK(dp_bench_sax_count(x.data.data, x.data.len, chunks[i], &n));
    ASSERT_U64_EQ(n, 37);
  }
  dp_buf_free(&x.data);
}

TEST(bench_sax_counts_namespaced_report) {
  /* GMX writes the RFC 9990 default namespace: local names still match. */
  static const char xml[] =
      "<?xml version=\"1.0\"?><feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">"
      "<record><row/></record><record/><x:record xmlns:x=\"urn:x\"/><records/></feedback>";
  uint64_t n = 0;
  ASSERT_OK(dp_bench_sax_count(xml, sizeof xml - 1, 5, &n));
  ASSERT_U64_EQ(n, 3);
}

TEST(bench_sax_refuses_malformed_xml) {
  static const char bad[] = "<feedback><record></feedback>";
  uint64_t n = 9;
  ASSERT_EQ(dp_bench_sax_count(bad, sizeof bad - 1, 0, &n), DP_EXML);
  ASSERT_U64_EQ(n, 0);
  static const char cut[] = "<feedback><record></record>";
  ASSERT_EQ(dp_bench_sax_count(cut, sizeof cut - 1, 0, &n), DP_EXML);
}

TEST(bench_inflate_gives_xml_size) {
  struct one xml, gz;
  ASSERT_OK(gen_one(120, DP_GEN_FMT_XML, 9, &xml));
  ASSERT_OK(gen_one(120, DP_GEN_FMT_GZIP, 9, &gz));
  ASSERT_TRUE(gz.data.len < xml.data.len);
  uint64_t out = 0;
  ASSERT_OK(dp_bench_inflate(gz.data.data, gz.data.len, &out));
  ASSERT_U64_EQ(out, xml.data.len);
  /* two members back to back are one stream of twice the size */
  dp_buf_t two;
  dp_buf_init(&two, 0);
  ASSERT_OK(dp_buf_append(&two, gz.data.data, gz.data.len));
  ASSERT_OK(dp_buf_append(&two, gz.data.data, gz.data.len));
  ASSERT_OK(dp_bench_inflate(two.data, two.len, &out));
  ASSERT_U64_EQ(out, 2 * xml.data.len);
  /* truncated */
  ASSERT_EQ(dp_bench_inflate(gz.data.data, gz.data.len / 2, &out), DP_EGZIP);
  dp_buf_free(&two);
  dp_buf_free(&xml.data);
  dp_buf_free(&gz.data);
}

struct sink {
  dp_buf_t all;
  int calls;
};

static int take_rows(void *ud, const char *buf, size_t n) {
  struct sink *s = ud;
  s->calls++;
  if (n == 0 || buf[n - 1] != '\n') return DP_EABORT; /* whole rows only */
  return dp_buf_append(&s->all, buf, n);
}

static struct sink build_rows(const struct one *x, uint64_t *rows, int *rc) {
  struct sink s = {.calls = 0};
  dp_buf_init(&s.all, 0);
  *rc = dp_bench_copy_rows(x->data.data, x->data.len, take_rows, &s, rows);
  return s;
}

TEST(bench_copy_rows_one_row_per_record) {
  ASSERT_OK(dp_align_global_init());
  struct one x;
  ASSERT_OK(gen_one(53, DP_GEN_FMT_XML, 3, &x));
  uint64_t rows = 0;
  int rc;
  struct sink s = build_rows(&x, &rows, &rc);
  ASSERT_OK(rc);
  ASSERT_U64_EQ(rows, 53);
  ASSERT_EQ(s.calls, 1); /* small: one piece at the end */
  ASSERT_EQ(dp_bench_copy_columns(), 20);
  /* 53 lines, each with 20 tab-separated fields, sequence numbers 1..53 */
  uint64_t lines = 0;
  const char *p = s.all.data;
  while (p < s.all.data + s.all.len) {
    const char *nl = memchr(p, '\n', (size_t)(s.all.data + s.all.len - p));
    ASSERT_NOT_NULL(nl);
    size_t tabs = 0;
    for (const char *q = p; q < nl; q++) tabs += *q == '\t';
    ASSERT_EQ(tabs, 19);
    const char *f3 = strchr(strchr(p, '\t') + 1, '\t') + 1; /* seq */
    ASSERT_EQ(strtoull(f3, NULL, 10), lines + 1);
    lines++;
    p = nl + 1;
  }
  ASSERT_U64_EQ(lines, 53);
  dp_buf_free(&s.all);
  dp_buf_free(&x.data);
  dp_align_global_cleanup();
}

TEST(bench_copy_rows_flush_in_pieces) {
  ASSERT_OK(dp_align_global_init());
  struct one x;
  ASSERT_OK(gen_one(8000, DP_GEN_FMT_XML, 4, &x)); /* > 1 MiB of rows */
  uint64_t rows = 0, sax = 0;
  int rc;
  struct sink s = build_rows(&x, &rows, &rc);
  ASSERT_OK(rc);
  ASSERT_U64_EQ(rows, 8000);
  ASSERT_TRUE(s.calls >= 2);
  uint64_t lines = 0;
  for (size_t i = 0; i < s.all.len; i++) lines += s.all.data[i] == '\n';
  ASSERT_U64_EQ(lines, 8000);
  ASSERT_OK(dp_bench_sax_count(x.data.data, x.data.len, 0, &sax));
  ASSERT_U64_EQ(sax, rows);
  dp_buf_free(&s.all);
  dp_buf_free(&x.data);
  dp_align_global_cleanup();
}

TEST(bench_copy_rows_refuses_broken_report) {
  ASSERT_OK(dp_align_global_init());
  struct one x;
  ASSERT_OK(gen_one(5, DP_GEN_FMT_XML, 3, &x));
  x.data.len -= 40; /* cut inside the last record */
  uint64_t rows = 0;
  int rc;
  struct sink s = build_rows(&x, &rows, &rc);
  ASSERT_TRUE(rc < 0);
  ASSERT_TRUE(rows <= 5);
  dp_buf_free(&s.all);
  dp_buf_free(&x.data);
  dp_align_global_cleanup();
}

/* With a database (tests/run.sh sets DP_TEST_DB): the server stores every row. */
TEST(bench_copy_load_stores_every_row) {
  const char *db = getenv("DP_TEST_DB");
  if (!db || !*db) {
    fprintf(stderr, "bench_copy_load_stores_every_row: skipped (no DP_TEST_DB)\n");
    return;
  }
  ASSERT_OK(dp_align_global_init());
  struct one x;
  ASSERT_OK(gen_one(211, DP_GEN_FMT_XML, 8, &x));
  uint64_t rows = 0, stored = 0;
  int rc;
  struct sink s = build_rows(&x, &rows, &rc);
  ASSERT_OK(rc);
  PGconn *c = PQconnectdb(db);
  ASSERT_TRUE(PQstatus(c) == CONNECTION_OK);
  char err[256] = "";
  ASSERT_OK(dp_bench_copy_table(c, err, sizeof err));
  ASSERT_OK(dp_bench_copy_begin(c, err, sizeof err));
  ASSERT_OK(dp_bench_copy_put(c, s.all.data, s.all.len, err, sizeof err));
  ASSERT_OK(dp_bench_copy_end(c, &stored, err, sizeof err));
  ASSERT_U64_EQ(stored, 211);
  PGresult *res = PQexec(c, "SELECT count(*), max(seq), sum(count) > 0 FROM pg_temp.dp_bench_copy");
  ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "211");
  ASSERT_STR_EQ(PQgetvalue(res, 0, 1), "211");
  ASSERT_STR_EQ(PQgetvalue(res, 0, 2), "t");
  PQclear(res);
  /* a bad row fails the COPY with the server's reason */
  ASSERT_OK(dp_bench_copy_begin(c, err, sizeof err));
  ASSERT_OK(dp_bench_copy_put(c, "x\n", 2, err, sizeof err));
  ASSERT_EQ(dp_bench_copy_end(c, &stored, err, sizeof err), DP_EPG);
  ASSERT_CONTAINS(err, "COPY");
  PQfinish(c);
  dp_buf_free(&s.all);
  dp_buf_free(&x.data);
  dp_align_global_cleanup();
}
