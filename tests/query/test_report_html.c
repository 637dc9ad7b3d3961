/* SPDX-License-Identifier: MIT */
/* tests/query/test_report_html.c - the HTML report: escaping of hostile text,
 * the inline SVG charts (exact geometry of a small case, structure of the
 * rest), and the whole page against a real PostgreSQL with a small scenario
 * (verdict, every sender, one <svg> per chart, hostile values escaped, no
 * reference a browser would fetch, redaction). The database case needs
 * DP_TEST_DB and is skipped without it. */
#include "tests/test.h"

#include <math.h>
#include <unistd.h>

#include "core/core.h"
#include "query/query_int.h"
#include "store/store.h"

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

static char *escaped(const char *s) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_puts(&b, "");
  if (dp__html_escape(&b, s)) return NULL;
  return dp_buf_steal(&b, NULL);
}

TEST(html_escape_hostile_text) {
  char *e = escaped("<script>alert(\"x\")</script> & 'q' é");
  ASSERT_STR_EQ(e, "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39; é");
  free(e);
  /* controls become '?', invalid UTF-8 U+FFFD; tab and newline stay */
  e = escaped("a\x01\x1b[31mb\x7f\xc2\x85\tc\n\xff\xe2\x82");
  ASSERT_STR_EQ(e, "a??[31mb??\tc\n\xEF\xBF\xBD\xEF\xBF\xBD");
  free(e);
  /* bidirectional controls too: U+202E would show "moc.elgoog" as
   * google.com; U+200F, U+2066 and U+2069 likewise */
  e = escaped("\xE2\x80\xAEmoc.elgoog \xE2\x80\x8F\xE2\x81\xA6x\xE2\x81\xA9");
  ASSERT_STR_EQ(e, "?moc.elgoog ??x?");
  free(e);
  e = escaped("\xEF\xBF\xBD ok");
  ASSERT_STR_EQ(e, "\xEF\xBF\xBD ok");
  free(e);
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp__html_escape(&b, NULL));
  ASSERT_EQ(b.len, 0);
}

TEST(svg_line_chart_exact) {
  const char *labels[] = {"d1", "d2"};
  double y[] = {50, NAN};
  dp_chart_series_t se[] = {{"a<b", y, "#123456", false}};
  dp_chart_t c = {DP_CHART_LINE, "t\"", labels, 2, se, 1, true};
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp__svg_chart(&b, &c));
  /* 0..100% in steps of 25: five grid lines; x centers at 56 + (i + .5) * 688 / 2 */
  ASSERT_EQ(count(b.data, "<line class=\"grid\""), 5);
  ASSERT_CONTAINS(b.data, "<svg class=\"chart\" viewBox=\"0 0 760 260\" role=\"img\" "
                          "aria-label=\"t&quot;\">");
  ASSERT_CONTAINS(b.data, ">100%</text>");
  ASSERT_CONTAINS(b.data, "<text class=\"xlab\" x=\"228.0\" y=\"244.0\">d1</text>");
  ASSERT_CONTAINS(b.data, "<text class=\"xlab\" x=\"572.0\" y=\"244.0\">d2</text>");
  /* plot height 212 from y=14: 50% is at 120; the NAN point is left out */
  ASSERT_CONTAINS(b.data, "<path class=\"line\" stroke=\"#123456\" d=\"M228.0 120.0 \"/>");
  ASSERT_CONTAINS(b.data, "<circle cx=\"228.0\" cy=\"120.0\" r=\"2.5\" fill=\"#123456\">"
                          "<title>a&lt;b, d1: 50.0%</title></circle>");
  ASSERT_EQ(count(b.data, "<circle"), 1);
  ASSERT_STR_EQ(b.data + b.len - 6, "</svg>");
  dp_buf_free(&b);
}

TEST(svg_stacked_chart_axis_and_bars) {
  const char *labels[] = {"2024-03-01", "2024-03-02", "2024-03-03"};
  double pass[] = {900, 0, 1200}, fail[] = {100, 0, 30};
  dp_chart_series_t se[] = {{"pass", pass, "#0a0", false}, {"fail", fail, "#a00", false}};
  dp_chart_t c = {DP_CHART_STACKED, "vol", labels, 3, se, 2, false};
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp__svg_chart(&b, &c));
  /* max stack 1230 -> axis 0..1,250 by 250 (6 lines) */
  ASSERT_EQ(count(b.data, "<line class=\"grid\""), 6);
  ASSERT_CONTAINS(b.data, ">1,250</text>");
  ASSERT_EQ(count(b.data, "<rect"), 4); /* zero values draw nothing */
  ASSERT_CONTAINS(b.data, "<title>fail, 2024-03-01: 100</title>");
  ASSERT_CONTAINS(b.data, "<title>pass, 2024-03-03: 1,200</title>");
  ASSERT_TRUE(strstr(b.data, "http") == NULL);
  dp_buf_free(&b);
}

TEST(svg_many_labels_thinned_and_empty) {
  char lab[40][16];
  const char *labels[40];
  double y[40];
  for (int i = 0; i < 40; i++) {
    snprintf(lab[i], sizeof lab[i], "L%02d", i);
    labels[i] = lab[i];
    y[i] = i;
  }
  dp_chart_series_t se[] = {{"s", y, "#000", true}};
  dp_chart_t c = {DP_CHART_LINE, "many", labels, 40, se, 1, false};
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp__svg_chart(&b, &c));
  ASSERT_TRUE(count(b.data, "class=\"xlab\"") <= 9);
  ASSERT_CONTAINS(b.data, ">L39</text>"); /* the last period is always labelled */
  ASSERT_CONTAINS(b.data, "class=\"line em\"");
  ASSERT_EQ(count(b.data, "<circle"), 40);
  dp_buf_free(&b);
  dp_chart_t e = {DP_CHART_LINE, "none", NULL, 0, se, 1, false};
  dp_buf_init(&b, 0);
  ASSERT_OK(dp__svg_chart(&b, &e));
  ASSERT_CONTAINS(b.data, ">no data</text>");
  dp_buf_free(&b);
}

/* ======================================================================== */
/* Against PostgreSQL */

#include "query_test_db.h"

#define D1 "2024-03-01T00:00:00Z"
#define D1E "2024-03-01T23:59:59Z"
#define D3 "2024-03-03T00:00:00Z"
#define D3E "2024-03-03T23:59:59Z"

/* Mar 1 and Mar 3 (Mar 2 has no report: a gap on the axis). The reporter's
 * name and contact and a header_from are hostile; SendGrid is unaligned. */
static const char fixture[] =
    "INSERT INTO report (id, org_name, email, report_id, domain, begin_ts, end_ts, p, sp, pct,"
    "  adkim, aspf, schema_version, source, content_hash, n_records, messages) VALUES"
    " (1, 'google.com', 'noreply-dmarc-support@google.com', 'r1', 'example.com', '" D1 "', '" D1E
    "', 'none', 'none', 100, 'r', 'r', 1, 'a', 1, 3, 1130),"
    " (2, '<img src=http://evil.example/x.png>', 'spy@evil.example', 'r2', 'example.com',"
    "  '" D3 "', '" D3E "', 'quarantine', '', NULL, '', '', 1, 'b', 2, 2, 520);"
    "INSERT INTO record_arrays (report_key, begin_ts, seq, source_ip, count, pe_dkim, pe_spf,"
    "  header_from, dkim_domains, dkim_selectors, dkim_results, spf_domains, spf_results,"
    "  dkim_aligned, dkim_aligned_strict, spf_aligned, spf_aligned_strict, sender, third_party)"
    " VALUES"
    " (1, '" D1 "', 1, '192.0.2.1', 1000, 'pass', 'pass', 'example.com', '{example.com}', '{s1}',"
    "  '{pass}', '{example.com}', '{pass}', true, true, true, true, 'example.com', false),"
    " (1, '" D1 "', 2, '198.51.100.20', 120, 'fail', 'fail', 'example.com', '{sendgrid.net}',"
    "  '{s}', '{pass}', '{sendgrid.net}', '{pass}', false, false, false, false, 'sendgrid.net',"
    "  true),"
    " (1, '" D1 "', 3, '203.0.113.9', 10, 'fail', 'fail', 'example.com', '{}', '{}', '{}',"
    "  '{example.com}', '{fail}', false, false, false, false, 'unauthenticated 203.0.113.0/24',"
    "  false),"
    " (2, '" D3 "', 1, '192.0.2.1', 500, 'pass', 'pass', 'example.com', '{example.com}', '{s1}',"
    "  '{pass}', '{example.com}', '{pass}', true, true, true, true, 'example.com', false),"
    " (2, '" D3 "', 2, '198.51.100.20', 20, 'fail', 'fail', 'x.example.com<script>', "
    "  '{sendgrid.net}', '{s}', '{pass}', '{sendgrid.net}', '{pass}', false, false, false, false,"
    "  'sendgrid.net', true)";

static PGconn *db(void) {
  static bool done, failed;
  if (done) return failed ? NULL : conn;
  done = failed = true;
  if (!query_test_db_create("dp_test_report")) return NULL;
  if (!exec(conn, fixture)) return NULL;
  dp__query_services_set(NULL); /* the built-in map */
  failed = false;
  return conn;
}

static char *report(PGconn *c, bool redact) {
  char *buf = NULL, err[512] = "";
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  dp_query_filter_t flt = {"example.com", false, 0};
  int rc = dp__report_html(c, &flt, DP_PERIOD_DAY, redact, INT64_C(1709251200), f, err, sizeof err);
  fclose(f);
  if (rc) {
    fprintf(stderr, "report: %s\n", err);
    free(buf);
    return NULL;
  }
  return buf;
}

/* Every attribute value that a browser would fetch from: src=, href=,
 * action=, poster=, srcset=, xlink:href=, url(, @import. Only "#..." and
 * "data:" would be harmless; the report uses none at all. */
static void assert_nothing_fetched(const char *html) {
  static const char *const bad[] = {
      "src=",  "href=",   "action=", "poster=", "srcset=", "url(",  "@import",
      "<link", "<script", "<iframe", "<img",    "<object", "<embed"};
  /* Inside escaped text these can only appear with &lt; / &quot; around them:
   * strip the text by checking the raw markup outside of text nodes is hard,
   * so check that every occurrence is inside text, i.e. never directly after
   * a raw '<' or a raw ' ' in a tag. Simplest sound rule: no raw '<' starts
   * one of the tags, and no attribute of ours is named so. */
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *p = html;
    while ((p = strstr(p, bad[i]))) {
      /* Find the last raw '<' and '>' before it: inside a tag if '<' is later. */
      const char *lt = NULL, *gt = NULL;
      for (const char *q = html; q < p; q++) {
        if (*q == '<') lt = q;
        if (*q == '>') gt = q;
      }
      bool in_tag = lt && (!gt || lt > gt);
      bool tag_name = bad[i][0] == '<';
      if (in_tag || tag_name) {
        fprintf(stderr, "fetchable reference: %.60s\n", p);
        ASSERT_TRUE(false);
      }
      p += strlen(bad[i]);
    }
  }
  ASSERT_TRUE(strstr(html, "http://") == NULL || strstr(html, "&lt;img src=http://") != NULL);
  ASSERT_TRUE(strstr(html, "https://") == NULL);
}

TEST(report_html_page) {
  PGconn *c = db();
  if (!c) {
    ASSERT_FALSE(getenv("DP_TEST_DB") && *getenv("DP_TEST_DB"));
    return;
  }
  char *h = report(c, false);
  ASSERT_NOT_NULL(h);
  ASSERT_TRUE(!strncmp(h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">", 58));
  ASSERT_CONTAINS(h, "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"");
  /* 1650 messages, 1500 pass; SendGrid's 140 are fixable (8.4%): one blocking sender */
  ASSERT_CONTAINS(h, "<div class=\"line\">ready after fixing 1 sender</div>");
  ASSERT_CONTAINS(h, "<div class=\"k\">Messages</div><div class=\"v\">1,650</div>");
  ASSERT_CONTAINS(h, "<div class=\"k\">Fixable</div><div class=\"v\">140</div>");
  /* every sender, with the service named */
  ASSERT_CONTAINS(h, "<td>example.com</td>");
  ASSERT_CONTAINS(h, "<td>sendgrid.net<span class=\"svc\">SendGrid</span></td>");
  ASSERT_CONTAINS(h, "<td>unauthenticated 203.0.113.0/24</td>");
  ASSERT_CONTAINS(h, "sign with d=example.com at SendGrid (Sender Authentication: CNAME "
                     "s1._domainkey.example.com");
  /* three charts; the axis runs through the day without reports */
  ASSERT_EQ(count(h, "<svg "), 3);
  ASSERT_EQ(count(h, "</svg>"), 3);
  ASSERT_CONTAINS(h, ">2024-03-02</text>");
  ASSERT_CONTAINS(h, "<title>DMARC pass, 2024-03-01: 1,000</title>");
  ASSERT_CONTAINS(h, "<title>all mail, 2024-03-03: 96.2%</title>"); /* 500 of 520 */
  /* receivers, policy, hostile values escaped */
  ASSERT_CONTAINS(h, "<td>&lt;img src=http://evil.example/x.png&gt;</td>");
  ASSERT_CONTAINS(h, "spy@evil.example");
  ASSERT_CONTAINS(h, "<td>google.com</td><td class=\"n\">1</td><td class=\"n\">1,130</td>");
  ASSERT_CONTAINS(h, "p=none-&gt;quarantine on 2024-03-03");
  ASSERT_CONTAINS(h, "generated 2024-03-01 00:00 UTC");
  assert_nothing_fetched(h);
  ASSERT_TRUE(strstr(h, "<script") == NULL);
  free(h);

  h = report(c, true);
  ASSERT_NOT_NULL(h);
  ASSERT_CONTAINS(h, "redacted@evil.example");
  ASSERT_CONTAINS(h, "redacted@google.com");
  ASSERT_CONTAINS(h, "198.51.100.x");
  ASSERT_TRUE(strstr(h, "spy@") == NULL);
  ASSERT_TRUE(strstr(h, "198.51.100.20") == NULL);
  ASSERT_TRUE(strstr(h, "192.0.2.1<") == NULL);
  ASSERT_CONTAINS(h, "unauthenticated 203.0.113.0/24"); /* networks stay */
  ASSERT_CONTAINS(h, "addresses redacted");
  free(h);
}
