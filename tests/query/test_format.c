/* SPDX-License-Identifier: MIT */
/* tests/query/test_format.c - exact table, CSV and JSON output of query/format.c
 * for hostile and awkward values: quotes, commas, newlines, non-ASCII, control
 * characters, invalid UTF-8, NULLs, lists, truncation and empty result sets. */
#include "tests/test.h"

#include "core/core.h"
#include "query/query_int.h"

/* Render r in fmt into a malloc'd string (caller frees). */
static char *render(const dp_qres_t *r, dp_qfmt_t fmt) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (!f) return NULL;
  int rc = dp__query_res_write(r, fmt, f);
  fclose(f);
  if (rc) {
    free(buf);
    return NULL;
  }
  return buf;
}

#define ASSERT_RENDER(r, fmt, expected)                                                            \
  do {                                                                                             \
    char *out_ = render((r), (fmt));                                                               \
    ASSERT_NOT_NULL(out_);                                                                         \
    int same_ = strcmp(out_, (expected)) == 0;                                                     \
    if (!same_) fprintf(stderr, "got:\n%s\nexpected:\n%s\n", out_, (expected));                    \
    free(out_);                                                                                    \
    ASSERT_TRUE(same_);                                                                            \
  } while (0)

static const dp_qcol_t cols[] = {
    {"name", "NAME", DP_QT_TEXT, 0, 12}, {"n", "N", DP_QT_INT, 0, 0},
    {"ok", "OK", DP_QT_BOOL, 0, 0},      {"at", "AT", DP_QT_TIME, 0, 0},
    {"tags", "TAGS", DP_QT_LIST, 0, 0},
};

/* 2024-03-01T00:00:00Z and 2024-02-29T23:59:59Z */
#define T1 INT64_C(1709251200)
#define T2 INT64_C(1709251199)

static dp_qres_t *sample(void) {
  dp_qres_t *r = dp__query_res_create(cols, 5);
  const char *tags[] = {"a", "b,c", NULL};
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "plain");
  dp__query_res_set_int(r, 1, 12345);
  dp__query_res_set_int(r, 2, 1);
  dp__query_res_set_int(r, 3, T1);
  dp__query_res_set_list(r, 4, tags, 3);
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "say \"hi\", then\nbye");
  dp__query_res_set_int(r, 1, -7);
  dp__query_res_set_int(r, 2, 0);
  dp__query_res_set_int(r, 3, T2);
  dp__query_res_set_list(r, 4, NULL, 0);
  dp__query_res_add_row(r); /* all NULL */
  return r;
}

TEST(query_format_table) {
  dp_qres_t *r = sample();
  ASSERT_OK(dp__query_res_add_footer(r, "3 rows"));
  ASSERT_RENDER(r, DP_QFMT_TABLE,
                "NAME              N  OK   AT                TAGS\n"
                "plain         12345  yes  2024-03-01 00:00  a, b,c, -\n"
                "say \"hi\", t\xE2\x80\xA6     -7  no   2024-02-29 23:59\n"
                "-                 -  -    -                 -\n"
                "3 rows\n");
  dp__query_res_destroy(r);
}

TEST(query_format_csv) {
  dp_qres_t *r = sample();
  ASSERT_OK(dp__query_res_add_footer(r, "never in CSV"));
  ASSERT_RENDER(r, DP_QFMT_CSV,
                "name,n,ok,at,tags\r\n"
                "plain,12345,true,2024-03-01T00:00:00Z,\"a;b,c;\"\r\n"
                "\"say \"\"hi\"\", then\nbye\",-7,false,2024-02-29T23:59:59Z,\r\n"
                ",,,,\r\n");
  dp__query_res_destroy(r);
}

TEST(query_format_json) {
  dp_qres_t *r = sample();
  ASSERT_OK(dp__query_res_add_footer(r, "never in JSON"));
  ASSERT_RENDER(r, DP_QFMT_JSON,
                "[\n"
                "{\"name\":\"plain\",\"n\":12345,\"ok\":true,\"at\":\"2024-03-01T00:00:00Z\","
                "\"tags\":[\"a\",\"b,c\",null]},\n"
                "{\"name\":\"say \\\"hi\\\", then\\nbye\",\"n\":-7,\"ok\":false,"
                "\"at\":\"2024-02-29T23:59:59Z\",\"tags\":[]},\n"
                "{\"name\":null,\"n\":null,\"ok\":null,\"at\":null,\"tags\":null}\n"
                "]\n");
  dp__query_res_destroy(r);
}

TEST(query_format_empty) {
  dp_qres_t *r = dp__query_res_create(cols, 5);
  ASSERT_OK(dp__query_res_add_footer(r, "0 rows"));
  ASSERT_RENDER(r, DP_QFMT_TABLE, "NAME  N  OK  AT  TAGS\n0 rows\n");
  ASSERT_RENDER(r, DP_QFMT_CSV, "name,n,ok,at,tags\r\n");
  ASSERT_RENDER(r, DP_QFMT_JSON, "[]\n");
  ASSERT_EQ(dp__query_res_rows(r), 0);
  dp__query_res_destroy(r);
}

static const dp_qcol_t text_col[] = {{"s", "S", DP_QT_TEXT, 0, 0}};

/* Control characters, backslashes, non-ASCII, invalid and truncated UTF-8. */
static dp_qres_t *hostile(void) {
  static const char *vals[] = {
      "tab\there\\",                               /* tab and backslash */
      "\x1b[31mred\x01\x7f",                       /* ESC (terminal escape), SOH, DEL */
      "caf\xC3\xA9 \xE2\x80\xA8 \xF0\x9F\x93\xA7", /* é, U+2028, U+1F4E7 */
      "bad\xFF\xC3(\xE2\x82\x41\xED\xA0\x80z",     /* invalid byte, truncated ("A"), surrogate */
      "\xC2\x9B\x31m\r",                           /* C1 CSI, "1m", CR */
      "",
  };
  dp_qres_t *r = dp__query_res_create(text_col, 1);
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    dp__query_res_add_row(r);
    dp__query_res_set_text(r, 0, vals[i]);
  }
  return r;
}

TEST(query_format_hostile_table) {
  dp_qres_t *r = hostile();
  /* Terminal control never passes through; widths count code points. */
  ASSERT_RENDER(r, DP_QFMT_TABLE,
                "S\n"
                "tab here\\\n"
                "?[31mred??\n"
                "caf\xC3\xA9 \xE2\x80\xA8 \xF0\x9F\x93\xA7\n"
                "bad\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD"
                "A\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz\n"
                "?1m\n"
                "\n");
  dp__query_res_destroy(r);
}

/* Bidirectional controls reorder what a terminal shows: a sender named
 * U+202E "moc.elgoog" would read as google.com. The table shows '?'; CSV
 * and JSON are data and keep the character. */
TEST(query_format_bidi_controls) {
  dp_qres_t *r = dp__query_res_create(text_col, 1);
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "\xE2\x80\xAEmoc.elgoog\xE2\x80\x8E\xE2\x81\xA7");
  ASSERT_RENDER(r, DP_QFMT_TABLE, "S\n?moc.elgoog??\n");
  ASSERT_RENDER(r, DP_QFMT_CSV, "s\r\n\xE2\x80\xAEmoc.elgoog\xE2\x80\x8E\xE2\x81\xA7\r\n");
  dp__query_res_destroy(r);
}

TEST(query_format_hostile_json) {
  dp_qres_t *r = hostile();
  ASSERT_RENDER(r, DP_QFMT_JSON,
                "[\n"
                "{\"s\":\"tab\\there\\\\\"},\n"
                "{\"s\":\"\\u001b[31mred\\u0001\\u007f\"},\n"
                "{\"s\":\"caf\xC3\xA9 \\u2028 \xF0\x9F\x93\xA7\"},\n"
                "{\"s\":\"bad\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD"
                "A\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz\"},\n"
                "{\"s\":\"\\u009b1m\\r\"},\n"
                "{\"s\":\"\"}\n"
                "]\n");
  dp__query_res_destroy(r);
}

TEST(query_format_hostile_csv) {
  dp_qres_t *r = hostile();
  /* CSV keeps characters (it is data), repairs UTF-8, quotes CR. */
  ASSERT_RENDER(r, DP_QFMT_CSV,
                "s\r\n"
                "tab\there\\\r\n"
                "\x1b[31mred\x01\x7f\r\n"
                "caf\xC3\xA9 \xE2\x80\xA8 \xF0\x9F\x93\xA7\r\n"
                "bad\xEF\xBF\xBD\xEF\xBF\xBD(\xEF\xBF\xBD"
                "A\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz\r\n"
                "\"\xC2\x9B"
                "1m\r\"\r\n"
                "\r\n");
  dp__query_res_destroy(r);
}

/* A report field that a spreadsheet would run as a formula is written as
 * text; numbers (negative too) and lists whose first item is harmless are
 * left alone. */
TEST(query_format_csv_formula_cells) {
  static const dp_qcol_t c3[] = {
      {"s", "S", DP_QT_TEXT, 0, 0},
      {"n", "N", DP_QT_INT, 0, 0},
      {"l", "L", DP_QT_LIST, 0, 0},
  };
  static const char *const lead[] = {"=HYPERLINK(\"http://x\",\"y\")", "+1", "-2+3",
                                     "@SUM(A1)", "\tx", "\rx", "a=b"};
  dp_qres_t *r = dp__query_res_create(c3, 3);
  for (size_t i = 0; i < sizeof lead / sizeof lead[0]; i++) {
    dp__query_res_add_row(r);
    dp__query_res_set_text(r, 0, lead[i]);
    dp__query_res_set_int(r, 1, -5);
    const char *const items[] = {i % 2 ? "ok" : "=1", "=2"};
    ASSERT_OK(dp__query_res_set_list(r, 2, items, 2));
  }
  ASSERT_RENDER(r, DP_QFMT_CSV,
                "s,n,l\r\n"
                "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-5,'=1;=2\r\n"
                "'+1,-5,ok;=2\r\n"
                "'-2+3,-5,'=1;=2\r\n"
                "'@SUM(A1),-5,ok;=2\r\n"
                "'\tx,-5,'=1;=2\r\n"
                "\"'\rx\",-5,ok;=2\r\n"
                "a=b,-5,'=1;=2\r\n");
  dp__query_res_destroy(r);
  /* JSON is for programs: values stay verbatim */
  r = dp__query_res_create(c3, 1);
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "=1");
  ASSERT_RENDER(r, DP_QFMT_JSON, "[\n{\"s\":\"=1\"}\n]\n");
  dp__query_res_destroy(r);
}

TEST(query_format_truncate_unicode) {
  static const dp_qcol_t c2[] = {
      {"a", "A", DP_QT_TEXT, 0, 5},
      {"b", "B", DP_QT_INT, 0, 0},
  };
  dp_qres_t *r = dp__query_res_create(c2, 2);
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"); /* 6 x é */
  dp__query_res_set_int(r, 1, 1);
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"); /* exactly 5: kept */
  dp__query_res_set_int(r, 1, 100);
  ASSERT_RENDER(r, DP_QFMT_TABLE,
                "A        B\n"
                "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xE2\x80\xA6    1\n"
                "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9  100\n");
  /* Machine formats are never truncated. */
  ASSERT_RENDER(r, DP_QFMT_CSV,
                "a,b\r\n\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9,1\r\n"
                "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9,100\r\n");
  dp__query_res_destroy(r);
}

TEST(query_format_pct_and_flags) {
  static const dp_qcol_t c3[] = {
      {"who", "WHO", DP_QT_TEXT, 0, 0},
      {"rate", "RATE", DP_QT_PCT, 0, 0},
      {"secret", "SECRET", DP_QT_TEXT, DP_QCOL_NOTABLE, 0},
      {"label", "LABEL", DP_QT_TEXT, DP_QCOL_TABLEONLY, 0},
  };
  dp_qres_t *r = dp__query_res_create(c3, 4);
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "x");
  dp__query_res_set_pct(r, 1, 2, 3);
  dp__query_res_set_text(r, 2, "m");
  dp__query_res_set_text(r, 3, "t");
  dp__query_res_add_row(r);
  dp__query_res_set_text(r, 0, "y");
  dp__query_res_set_pct(r, 1, 0, 0); /* no messages: NULL */
  ASSERT_RENDER(r, DP_QFMT_TABLE, "WHO   RATE  LABEL\nx    66.6%  t\ny        -  -\n");
  ASSERT_RENDER(r, DP_QFMT_CSV, "who,rate,secret\r\nx,66.6,m\r\ny,,\r\n");
  ASSERT_RENDER(r, DP_QFMT_JSON,
                "[\n{\"who\":\"x\",\"rate\":66.6,\"secret\":\"m\"},\n"
                "{\"who\":\"y\",\"rate\":null,\"secret\":null}\n]\n");
  dp__query_res_destroy(r);
}

TEST(query_format_pct_values) {
  char b[32];
  struct {
    int64_t num, den;
    const char *want;
  } cases[] = {
      {0, 0, "0.0"},
      {0, 10, "0.0"},
      {1, 3, "33.3"},
      {2, 3, "66.6"},
      {5, 5, "100.0"},
      {999, 1000, "99.9"},
      {99999, 100000, "99.9"}, /* never 100.0 */
      {1, 100000, "0.1"},
      /* never 0.0 */ {1, 2, "50.0"},
      {7, 5, "100.0"},
      {1, INT64_MAX, "0.1"},
      {INT64_MAX - 1, INT64_MAX, "99.9"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dp__query_pct(b, sizeof b, cases[i].num, cases[i].den);
    ASSERT_STR_EQ(b, cases[i].want);
  }
}

TEST(query_format_pgarray) {
  char **items;
  size_t n;
  ASSERT_OK(dp__query_pgarray_parse("{}", &items, &n));
  ASSERT_EQ(n, 0);
  free(items);
  ASSERT_OK(dp__query_pgarray_parse("{a,\"b c\",\"d\\\"e\\\\f\",NULL,\"NULL\",\"\",x.y:pass}",
                                    &items, &n));
  ASSERT_EQ(n, 7);
  ASSERT_STR_EQ(items[0], "a");
  ASSERT_STR_EQ(items[1], "b c");
  ASSERT_STR_EQ(items[2], "d\"e\\f");
  ASSERT_TRUE(items[3] == NULL);
  ASSERT_STR_EQ(items[4], "NULL");
  ASSERT_STR_EQ(items[5], "");
  ASSERT_STR_EQ(items[6], "x.y:pass");
  for (size_t i = 0; i < n; i++)
    free(items[i]);
  free(items);
  ASSERT_OK(dp__query_pgarray_parse("[0:1]={p,q}", &items, &n));
  ASSERT_EQ(n, 2);
  ASSERT_STR_EQ(items[1], "q");
  for (size_t i = 0; i < n; i++)
    free(items[i]);
  free(items);
  ASSERT_EQ(dp__query_pgarray_parse("{{a},{b}}", &items, &n), -1);
  ASSERT_EQ(dp__query_pgarray_parse("{\"open", &items, &n), -1);
  ASSERT_EQ(dp__query_pgarray_parse("{a}x", &items, &n), -1);
  ASSERT_EQ(dp__query_pgarray_parse("plain", &items, &n), -1);

  /* A literal that is not an array is kept verbatim as one item. */
  static const dp_qcol_t lc[] = {{"l", "L", DP_QT_LIST, 0, 0}};
  dp_qres_t *r = dp__query_res_create(lc, 1);
  dp__query_res_add_row(r);
  ASSERT_OK(dp__query_res_set_pgarray(r, 0, "{{a},{b}}"));
  dp__query_res_add_row(r);
  ASSERT_OK(dp__query_res_set_pgarray(r, 0, "{\"x,y\",z}"));
  ASSERT_RENDER(r, DP_QFMT_JSON, "[\n{\"l\":[\"{{a},{b}}\"]},\n{\"l\":[\"x,y\",\"z\"]}\n]\n");
  dp__query_res_destroy(r);
}

/* dp__query_res_append_pg converts libpq text values by column type. */
TEST(query_format_append_pg) {
  PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
  ASSERT_NOT_NULL(res);
  PGresAttDesc att[5];
  memset(att, 0, sizeof att);
  const char *names[] = {"name", "n", "ok", "at", "tags"};
  for (int j = 0; j < 5; j++) {
    att[j].name = (char *)names[j];
    att[j].format = 0;
  }
  ASSERT_TRUE(PQsetResultAttrs(res, 5, att));
  const char *row0[] = {"x\"y", "9223372036854775807", "t", "1709251200", "{a,\"b c\"}"};
  for (int j = 0; j < 5; j++)
    ASSERT_TRUE(PQsetvalue(res, 0, j, (char *)row0[j], (int)strlen(row0[j])));
  ASSERT_TRUE(PQsetvalue(res, 1, 0, NULL, -1)); /* NULL */
  for (int j = 1; j < 5; j++)
    ASSERT_TRUE(PQsetvalue(res, 1, j, NULL, -1));
  dp_qres_t *r = dp__query_res_create(cols, 5);
  ASSERT_OK(dp__query_res_append_pg(r, res));
  ASSERT_EQ(dp__query_res_rows(r), 2);
  ASSERT_RENDER(r, DP_QFMT_JSON,
                "[\n{\"name\":\"x\\\"y\",\"n\":9223372036854775807,\"ok\":true,"
                "\"at\":\"2024-03-01T00:00:00Z\",\"tags\":[\"a\",\"b c\"]},\n"
                "{\"name\":null,\"n\":null,\"ok\":null,\"at\":null,\"tags\":null}\n]\n");
  dp__query_res_destroy(r);

  /* A value that does not fit its column type is an error, not garbage. */
  ASSERT_TRUE(PQsetvalue(res, 2, 0, "z", 1));
  ASSERT_TRUE(PQsetvalue(res, 2, 1, "12abc", 5));
  r = dp__query_res_create(cols, 5);
  ASSERT_EQ(dp__query_res_append_pg(r, res), DP_EPG);
  dp__query_res_destroy(r);
  PQclear(res);
}

TEST(query_format_parse_format) {
  dp_qfmt_t f = DP_QFMT_TABLE;
  ASSERT_OK(dp__query_parse_format("json", &f));
  ASSERT_EQ(f, DP_QFMT_JSON);
  ASSERT_OK(dp__query_parse_format("csv", &f));
  ASSERT_EQ(f, DP_QFMT_CSV);
  ASSERT_OK(dp__query_parse_format("table", &f));
  ASSERT_EQ(f, DP_QFMT_TABLE);
  ASSERT_EQ(dp__query_parse_format("JSON", &f), DP_EUSAGE);
  ASSERT_EQ(dp__query_parse_format("", &f), DP_EUSAGE);
}
