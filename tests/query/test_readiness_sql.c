/* SPDX-License-Identifier: MIT */
/* tests/query/test_readiness_sql.c - `readiness` and `domains` against a real
 * PostgreSQL: a hand-built scenario (own servers, a subdomain, ESPs aligned
 * and not, a service with a broken key, forwarders and lists with and without
 * reasons, spoofers, strict-vs-relaxed) whose answers are worked out below.
 * Needs DP_TEST_DB; without it the database cases are skipped. */
#include "tests/test.h"

#include <unistd.h>

#include "core/core.h"
#include "query/query_int.h"
#include "store/store.h"

#include "query_test_db.h"

static bool setup_done, setup_failed;

#define MAR01 "2024-03-01T00:00:00Z"
#define MAR01E "2024-03-01T23:59:59Z"
#define MAR02 "2024-03-02T00:00:00Z"
#define MAR02E "2024-03-02T23:59:59Z"
#define T_MAR01 INT64_C(1709251200)
#define T_MAR02 INT64_C(1709337600)
#define T_FEB26 INT64_C(1708905600) /* the Monday of Mar 1's week */

/* 1 google.com Mar 1, 2 yahoo.com Mar 1 (no sp/np/adkim/aspf reported),
 * 3 google.com Mar 2 (p=quarantine, pct=50), 4 Enterprise Outlook Mar 2
 * (p=quarantine, adkim=s, no pct), 5 google.com Mar 1 for other.org. */
static const char fixture_reports[] =
    "INSERT INTO report (id, org_name, report_id, domain, begin_ts, end_ts, p, sp, np, pct,"
    "                    adkim, aspf, schema_version, source, content_hash, n_records, messages,"
    "                    ingested_at) VALUES"
    " (1, 'google.com', 'r1', 'example.com', '" MAR01 "', '" MAR01E "', 'none', 'none', 'none',"
    "  100, 'r', 'r', 1, 'a', 1, 8, 1114, '2024-03-03T10:00:01Z'),"
    " (2, 'yahoo.com', 'r2', 'example.com', '" MAR01 "', '" MAR01E "', 'none', '', '', 100,"
    "  '', '', 1, 'b', 2, 5, 524, '2024-03-03T10:00:02Z'),"
    " (3, 'google.com', 'r3', 'example.com', '" MAR02 "', '" MAR02E "', 'quarantine', 'none',"
    "  'none', 50, 'r', 'r', 1, 'c', 3, 9, 855, '2024-03-03T10:00:03Z'),"
    " (4, 'Enterprise Outlook', 'r4', 'example.com', '" MAR02 "', '" MAR02E "', 'quarantine',"
    "  'none', '', NULL, 's', 'r', 1, 'd', 4, 4, 229, '2024-03-03T10:00:04Z'),"
    " (5, 'google.com', 'r5', 'other.org', '" MAR01 "', '" MAR01E "', 'reject', 'reject', '',"
    "  100, 'r', 'r', 1, 'e', 5, 1, 1000, '2024-03-03T10:00:05Z')";

/* Columns: report, begin, seq, ip, count, pe_dkim, pe_spf, reasons, header_from,
 * dkim domains/selectors/results, spf domains/results, dkim_aligned,
 * dkim_strict, spf_aligned, spf_strict, sender, third_party. */
#define REC_COLS                                                                                   \
  "INSERT INTO record_arrays (report_key, begin_ts, seq, source_ip, count, pe_dkim, pe_spf,"       \
  "  reason_types, header_from, dkim_domains, dkim_selectors, dkim_results, spf_domains,"          \
  "  spf_results, dkim_aligned, dkim_aligned_strict, spf_aligned, spf_aligned_strict, sender,"     \
  "  third_party) VALUES"

static const char fixture_mar01[] = REC_COLS
    /* R1: own servers (selector s1) */
    " (1, '" MAR01 "', 1, '192.0.2.1', 1000, 'pass', 'pass', '{}', 'example.com',"
    "  '{example.com}', '{s1}', '{pass}', '{example.com}', '{pass}', true, true, true, true,"
    "  'example.com', false),"
    /* a subdomain sender: DKIM d=news.example.com, SPF example.com */
    " (1, '" MAR01 "', 2, '192.0.2.50', 30, 'pass', 'pass', '{}', 'news.example.com',"
    "  '{news.example.com}', '{s2}', '{pass}', '{example.com}', '{pass}', true, true, true, false,"
    "  'example.com', false),"
    /* an ESP aligned through DKIM only */
    " (1, '" MAR01 "', 3, '198.51.100.10', 40, 'pass', 'fail', '{}', 'example.com',"
    "  '{example.com,mcsv.net}', '{k1,k3}', '{pass,pass}', '{mcsv.net}', '{pass}', true, true,"
    "  false, false, 'mcsv.net', true),"
    /* an ESP not aligned: fixable */
    " (1, '" MAR01 "', 4, '198.51.100.20', 25, 'fail', 'fail', '{}', 'example.com',"
    "  '{sendgrid.net}', '{smtpapi}', '{pass}', '{sendgrid.net}', '{pass}', false, false, false,"
    "  false, 'sendgrid.net', true),"
    /* a forwarder the receiver names */
    " (1, '" MAR01 "', 5, '203.0.113.40', 6, 'fail', 'fail', '{forwarded}', 'example.com',"
    "  '{example.com}', '{s1}', '{fail}', '{example.com}', '{softfail}', false, false, false,"
    "  false, 'unauthenticated 203.0.113.0/24', false),"
    /* broken forwarding, selector not reported: the domain alone decides */
    " (1, '" MAR01 "', 6, '198.18.0.7', 2, 'fail', 'fail', '{}', 'example.com',"
    "  '{example.com}', '{\"\"}', '{fail}', '{example.com}', '{softfail}', false, false, false,"
    "  false, 'unauthenticated 198.18.0.0/24', false),"
    /* spoofing */
    " (1, '" MAR01 "', 7, '100.64.0.9', 7, 'fail', 'fail', '{}', 'example.com', '{}', '{}', '{}',"
    "  '{example.com}', '{softfail}', false, false, false, false,"
    "  'unauthenticated 100.64.0.0/24', false),"
    /* relaxed but not strict: DKIM d=mail.example.com, SPF bounce.example.com;
     * this receiver's dkim verdict contradicts the auth results */
    " (1, '" MAR01 "', 8, '192.0.2.70', 4, 'fail', 'pass', '{}', 'example.com',"
    "  '{mail.example.com}', '{m1}', '{pass}', '{bounce.example.com}', '{pass}', true, false,"
    "  true, false, 'example.com', false),"
    /* R2 (Yahoo): own servers */
    " (2, '" MAR01 "', 1, '192.0.2.1', 500, 'pass', 'pass', '{}', 'example.com',"
    "  '{example.com}', '{s1}', '{pass}', '{example.com}', '{pass}', true, true, true, true,"
    "  'example.com', false),"
    /* SendGrid again; Yahoo says SPF pass (disagrees with Google and the results) */
    " (2, '" MAR01 "', 2, '198.51.100.20', 5, 'fail', 'pass', '{}', 'example.com',"
    "  '{sendgrid.net}', '{smtpapi}', '{pass}', '{sendgrid.net}', '{pass}', false, false, false,"
    "  false, 'sendgrid.net', true),"
    /* a service signing d=example.com with a key that never verifies: fixable */
    " (2, '" MAR01 "', 3, '203.0.113.30', 12, 'fail', 'fail', '{}', 'example.com',"
    "  '{example.com,zendesk.com}', '{zd1,zd2}', '{fail,pass}', '{zendesk.com}', '{pass}', false,"
    "  false, false, false, 'zendesk.com', true),"
    /* the named forwarder again, no reason, signature stripped: same source */
    " (2, '" MAR01 "', 4, '203.0.113.40', 4, 'fail', 'fail', '{}', 'example.com', '{}', '{}',"
    "  '{}', '{example.com}', '{softfail}', false, false, false, false,"
    "  'unauthenticated 203.0.113.0/24', false),"
    /* spoofing with a d=example.com signature that never verifies */
    " (2, '" MAR01 "', 5, '100.64.1.9', 3, 'fail', 'fail', '{}', 'example.com', '{example.com}',"
    "  '{default}', '{fail}', '{example.com}', '{softfail}', false, false, false, false,"
    "  'unauthenticated 100.64.1.0/24', false),"
    /* other.org's own mail: not example.com's */
    " (5, '" MAR01 "', 1, '192.0.2.99', 1000, 'pass', 'pass', '{}', 'other.org', '{other.org}',"
    "  '{x}', '{pass}', '{other.org}', '{pass}', true, true, true, true, 'other.org', false)";

static const char fixture_mar02[] = REC_COLS
    /* R3 (Google) */
    " (3, '" MAR02 "', 1, '192.0.2.1', 800, 'pass', 'pass', '{}', 'example.com',"
    "  '{example.com}', '{s1}', '{pass}', '{example.com}', '{pass}', true, true, true, true,"
    "  'example.com', false),"
    " (3, '" MAR02 "', 2, '198.51.100.10', 10, 'pass', 'fail', '{}', 'example.com',"
    "  '{example.com,mcsv.net}', '{k1,k3}', '{pass,pass}', '{mcsv.net}', '{pass}', true, true,"
    "  false, false, 'mcsv.net', true),"
    " (3, '" MAR02 "', 3, '198.51.100.20', 15, 'fail', 'fail', '{}', 'example.com',"
    "  '{sendgrid.net}', '{smtpapi}', '{pass}', '{sendgrid.net}', '{pass}', false, false, false,"
    "  false, 'sendgrid.net', true),"
    " (3, '" MAR02 "', 4, '203.0.113.30', 8, 'fail', 'fail', '{}', 'example.com',"
    "  '{example.com,zendesk.com}', '{zd1,zd2}', '{fail,pass}', '{zendesk.com}', '{pass}', false,"
    "  false, false, false, 'zendesk.com', true),"
    /* a mailing list Google does not name (Outlook does, in R4) */
    " (3, '" MAR02 "', 5, '203.0.113.60', 3, 'fail', 'fail', '{}', 'example.com',"
    "  '{example.com,lists.example.org}', '{s1,l1}', '{fail,pass}', '{lists.example.org}',"
    "  '{pass}', false, false, false, false, 'example.org', true),"
    /* forwarding without a reason, DKIM d=example.com survives: passes */
    " (3, '" MAR02 "', 6, '198.18.0.5', 11, 'pass', 'fail', '{}', 'example.com',"
    "  '{example.com}', '{s1}', '{pass}', '{example.com}', '{softfail}', true, true, false, false,"
    "  'example.com', false),"
    /* forwarding without a reason, signature s1 broken: forwarded */
    " (3, '" MAR02 "', 7, '198.18.0.6', 5, 'fail', 'fail', '{}', 'example.com',"
    "  '{example.com}', '{s1}', '{fail}', '{example.com}', '{softfail}', false, false, false,"
    "  false, 'unauthenticated 198.18.0.0/24', false),"
    /* spoofing a non-existent subdomain */
    " (3, '" MAR02 "', 8, '100.64.2.9', 2, 'fail', 'fail', '{}', 'secure.example.com', '{}', '{}',"
    "  '{}', '{secure.example.com}', '{none}', false, false, false, false,"
    "  'unauthenticated 100.64.2.0/24', false),"
    /* spam whose own envelope domain passes SPF: fixable by the rules, but noise */
    " (3, '" MAR02 "', 9, '100.65.0.1', 1, 'fail', 'fail', '{}', 'example.com', '{}', '{}', '{}',"
    "  '{spammer.test}', '{pass}', false, false, false, false, 'spammer.test', true),"
    /* R4 (Outlook, adkim=s) */
    " (4, '" MAR02 "', 1, '192.0.2.1', 200, 'pass', 'pass', '{}', 'example.com',"
    "  '{example.com}', '{s1}', '{pass}', '{example.com}', '{pass}', true, true, true, true,"
    "  'example.com', false),"
    " (4, '" MAR02 "', 2, '203.0.113.60', 9, 'fail', 'fail', '{mailing_list}', 'example.com',"
    "  '{example.com,lists.example.org}', '{s1,l1}', '{fail,pass}', '{lists.example.org}',"
    "  '{pass}', false, false, false, false, 'example.org', true),"
    /* a list that strips D's signature: the reason wins over "fixable" */
    " (4, '" MAR02 "', 3, '203.0.113.70', 7, 'fail', 'fail', '{mailing_list}', 'example.com',"
    "  '{list2.example.net}', '{l2}', '{pass}', '{list2.example.net}', '{pass}', false, false,"
    "  false, false, 'example.net', true),"
    " (4, '" MAR02 "', 4, '192.0.2.70', 13, 'fail', 'pass', '{}', 'example.com',"
    "  '{mail.example.com}', '{m1}', '{pass}', '{bounce.example.com}', '{pass}', true, false,"
    "  true, false, 'example.com', false)";

static PGconn *db(void) {
  if (setup_done) return setup_failed ? NULL : conn;
  setup_done = true;
  setup_failed = true;
  if (!query_test_db_create("dp_test_readiness")) return NULL;
  if (!exec(conn, fixture_reports) || !exec(conn, fixture_mar01) || !exec(conn, fixture_mar02))
    return NULL;
  setup_failed = false;
  return conn;
}

#define ASSERT_COUNTS(cnt, msg, pass, fix, fwd, unauth, strict)                                    \
  do {                                                                                             \
    ASSERT_EQ((cnt).messages, msg);                                                                \
    ASSERT_EQ((cnt).dmarc_pass, pass);                                                             \
    ASSERT_EQ((cnt).dmarc_fail, (msg) - (pass));                                                   \
    ASSERT_EQ((cnt).fail_fixable, fix);                                                            \
    ASSERT_EQ((cnt).fail_forwarded, fwd);                                                          \
    ASSERT_EQ((cnt).fail_unauthenticated, unauth);                                                 \
    ASSERT_EQ((cnt).fail_fixable + (cnt).fail_forwarded + (cnt).fail_unauthenticated,              \
              (cnt).dmarc_fail);                                                                   \
    ASSERT_EQ((cnt).dmarc_fail_if_strict, strict);                                                 \
  } while (0)

static const char *joined(char **items, size_t n) {
  static char buf[1024];
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(buf, "|");
    strcat(buf, items[i] ? items[i] : "NULL");
  }
  return buf;
}

/* Worked answers, all of example.com's mail (reports 1-4):
 *   Mar 1: 1638 messages, 1574 pass; fixable 25+5+12 = 42 (SendGrid,
 *          Zendesk); forwarded 6 (reason) + 2 (broken, no selector) + 4 (same
 *          source as a named forwarder) = 12; unauthenticated 7+3 = 10;
 *          strict fail 44+24 = 68 (adds the 4 relaxed-only messages).
 *   Mar 2: 1084 messages, 1034 pass; fixable 15+8+1 = 24; forwarded 3 (same
 *          source as a named list) + 5 (broken s1) + 9 + 7 (reasons) = 24;
 *          unauthenticated 2; strict fail 34+29 = 63.  */
TEST(query_readiness_all) {
  NEED_DB();
  dp_query_filter_t f = {"example.com", false, 0};
  dp_readiness_t r;
  char err[512] = "";
  ASSERT_OK(dp__query_readiness_fetch(c, &f, DP_PERIOD_DAY, &r, err, sizeof err));
  ASSERT_EQ(r.reports, 4);
  ASSERT_EQ(r.receivers, 3);
  ASSERT_COUNTS(r.total, 2722, 2608, 66, 36, 12, 131);

  ASSERT_EQ(r.n_trend, 2);
  ASSERT_EQ(r.trend[0].start, T_MAR01);
  ASSERT_COUNTS(r.trend[0].c, 1638, 1574, 42, 12, 10, 68);
  ASSERT_EQ(r.trend[1].start, T_MAR02);
  ASSERT_COUNTS(r.trend[1].c, 1084, 1034, 24, 24, 2, 63);

  /* Senders to fix, most fixable first; spammer.test is under the 0.1% floor. */
  ASSERT_EQ(r.n_to_fix, 3);
  ASSERT_STR_EQ(r.to_fix[0].sender, "sendgrid.net");
  ASSERT_EQ(r.to_fix_fixable[0], 45);
  ASSERT_EQ(r.to_fix[0].messages, 45);
  ASSERT_STR_EQ(r.to_fix[1].sender, "zendesk.com");
  ASSERT_EQ(r.to_fix_fixable[1], 20);
  ASSERT_CONTAINS(r.to_fix[1].fix, "selector zd1");
  ASSERT_STR_EQ(r.to_fix[2].sender, "spammer.test");
  ASSERT_EQ(r.to_fix_fixable[2], 1);
  ASSERT_EQ(r.n_blocking, 2);
  ASSERT_STR_EQ(r.verdict, "ready after fixing");
  ASSERT_STR_EQ(r.verdict_line, "ready after fixing 2 senders");

  /* Receivers that disagree: SendGrid's SPF (Google fail, Yahoo pass, the
   * results fail), and Google's DKIM verdict on 192.0.2.70 (relaxed-aligned). */
  ASSERT_EQ(r.disagree_sources, 2);
  ASSERT_EQ(r.n_disagree, 2);
  ASSERT_STR_EQ(r.disagree[0].source_ip, "198.51.100.20");
  ASSERT_STR_EQ(r.disagree[0].header_from, "example.com");
  ASSERT_EQ(r.disagree[0].messages, 45);
  ASSERT_STR_EQ(joined(r.disagree[0].reasons, r.disagree[0].n_reasons),
                "spf: receivers disagree|spf: receiver verdict differs from its auth results");
  ASSERT_STR_EQ(joined(r.disagree[0].verdicts, r.disagree[0].n_verdicts),
                "google.com: dkim=fail spf=fail|yahoo.com: dkim=fail spf=pass");
  ASSERT_STR_EQ(r.disagree[1].source_ip, "192.0.2.70");
  ASSERT_EQ(r.disagree[1].messages, 17);
  ASSERT_STR_EQ(joined(r.disagree[1].reasons, r.disagree[1].n_reasons),
                "dkim: receiver verdict differs from its auth results");
  ASSERT_STR_EQ(joined(r.disagree[1].verdicts, r.disagree[1].n_verdicts),
                "Enterprise Outlook: dkim=fail spf=pass|google.com: dkim=fail spf=pass");
  dp__query_readiness_free(&r);

  /* By week: Mar 1 and 2, 2024 share the week of Monday Feb 26. */
  ASSERT_OK(dp__query_readiness_fetch(c, &f, DP_PERIOD_WEEK, &r, err, sizeof err));
  ASSERT_EQ(r.n_trend, 1);
  ASSERT_EQ(r.trend[0].start, T_FEB26);
  ASSERT_COUNTS(r.trend[0].c, 2722, 2608, 66, 36, 12, 131);
  dp__query_readiness_free(&r);

  /* No --by: no trend. */
  ASSERT_OK(dp__query_readiness_fetch(c, &f, DP_PERIOD_NONE, &r, err, sizeof err));
  ASSERT_EQ(r.n_trend, 0);
  ASSERT_COUNTS(r.total, 2722, 2608, 66, 36, 12, 131);
  dp__query_readiness_free(&r);
}

TEST(query_readiness_since) {
  NEED_DB();
  /* --since Mar 2: reports 3 and 4. The list source is still named by R4 and
   * the s1 key still verifies in R3, so the classes hold within the window. */
  dp_query_filter_t f = {"example.com", true, T_MAR02};
  dp_readiness_t r;
  char err[512] = "";
  ASSERT_OK(dp__query_readiness_fetch(c, &f, DP_PERIOD_NONE, &r, err, sizeof err));
  ASSERT_EQ(r.reports, 2);
  ASSERT_EQ(r.receivers, 2);
  ASSERT_COUNTS(r.total, 1084, 1034, 24, 24, 2, 63);
  ASSERT_EQ(r.n_to_fix, 3);
  ASSERT_EQ(r.n_blocking, 2); /* 1 message is under 0.1% of 1084 */
  ASSERT_EQ(r.disagree_sources, 0);
  dp__query_readiness_free(&r);

  /* A domain without mail: zeros, "not ready", nothing to fix. */
  dp_query_filter_t g = {"nothing.example", false, 0};
  ASSERT_OK(dp__query_readiness_fetch(c, &g, DP_PERIOD_DAY, &r, err, sizeof err));
  ASSERT_COUNTS(r.total, 0, 0, 0, 0, 0, 0);
  ASSERT_EQ(r.n_trend, 0);
  ASSERT_EQ(r.n_to_fix, 0);
  ASSERT_STR_EQ(r.verdict, "not ready");
  dp__query_readiness_free(&r);

  /* other.org: its one record passes. */
  dp_query_filter_t h = {"other.org", false, 0};
  ASSERT_OK(dp__query_readiness_fetch(c, &h, DP_PERIOD_NONE, &r, err, sizeof err));
  ASSERT_COUNTS(r.total, 1000, 1000, 0, 0, 0, 0);
  ASSERT_STR_EQ(r.verdict, "ready");
  dp__query_readiness_free(&r);
}

static char *capture(PGconn *c, const dp_query_filter_t *f, dp_period_t by, dp_qfmt_t fmt,
                     int *rc) {
  char *buf = NULL, err[512];
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  *rc = dp__query_readiness(c, f, by, fmt, out, err, sizeof err);
  fclose(out);
  return buf;
}

TEST(query_readiness_output) {
  NEED_DB();
  dp_query_filter_t f = {"example.com", false, 0};
  int rc;
  char *out = capture(c, &f, DP_PERIOD_DAY, DP_QFMT_JSON, &rc);
  ASSERT_OK(rc);
  ASSERT_TRUE(out[0] == '{');
  ASSERT_CONTAINS(out, "{\"domain\":\"example.com\",\"since\":null,\"by\":\"day\",\"reports\":4,"
                       "\"receivers\":3,\"messages\":2722,\"dmarc_pass\":2608,\"dmarc_fail\":114,"
                       "\"fail_fixable\":66,\"fail_forwarded\":36,\"fail_unauthenticated\":12,"
                       "\"dmarc_fail_if_strict\":131,\"senders_to_fix_count\":3,"
                       "\"senders_blocking\":2,\"receivers_disagree\":2,"
                       "\"verdict\":\"ready after fixing\","
                       "\"verdict_line\":\"ready after fixing 2 senders\",");
  ASSERT_CONTAINS(out, ",\"disagreements\":[\n{\"source_ip\":\"198.51.100.20\",");
  ASSERT_CONTAINS(out, ",\"senders_to_fix\":[\n{\"sender\":\"sendgrid.net\",\"third_party\":true,"
                       "\"messages\":45,\"fail_fixable\":45,\"blocking\":true,\"spf_aligned\":0,");
  ASSERT_CONTAINS(out, "{\"sender\":\"spammer.test\",\"third_party\":true,\"messages\":1,"
                       "\"fail_fixable\":1,\"blocking\":false,");
  ASSERT_CONTAINS(out, ",\"trend\":[\n{\"period\":\"2024-03-01\",\"messages\":1638,"
                       "\"dmarc_pass\":1574,\"pass_rate\":96.0,\"fail_fixable\":42,"
                       "\"fail_forwarded\":12,\"fail_unauthenticated\":10,"
                       "\"dmarc_fail_if_strict\":68},\n"
                       "{\"period\":\"2024-03-02\",\"messages\":1084,\"dmarc_pass\":1034,"
                       "\"pass_rate\":95.3,\"fail_fixable\":24,\"fail_forwarded\":24,"
                       "\"fail_unauthenticated\":2,\"dmarc_fail_if_strict\":63}\n]}\n");
  free(out);

  /* Without --by there is no trend key. */
  out = capture(c, &f, DP_PERIOD_NONE, DP_QFMT_JSON, &rc);
  ASSERT_OK(rc);
  ASSERT_TRUE(strstr(out, "\"trend\"") == NULL);
  ASSERT_STR_EQ(out + strlen(out) - 3, "]}\n");
  free(out);

  out = capture(c, &f, DP_PERIOD_NONE, DP_QFMT_TABLE, &rc);
  ASSERT_OK(rc);
  ASSERT_CONTAINS(out, "readiness of example.com for p=reject\n");
  ASSERT_CONTAINS(out, "all mail               2722  100.0%  4 reports from 3 receivers\n");
  ASSERT_CONTAINS(out, "  fixable                66    2.4%  3 senders to fix (below)\n");
  ASSERT_CONTAINS(out, "  forwarded              36    1.3%");
  ASSERT_CONTAINS(out, "  unauthenticated        12    0.4%");
  ASSERT_CONTAINS(out, "verdict: ready after fixing 2 senders\n");
  ASSERT_CONTAINS(out, "\nsendgrid.net        45               45  yes       DKIM signs as");
  ASSERT_CONTAINS(out, "receivers disagree on 2 sources (top 2):\n");
  ASSERT_TRUE(strstr(out, "trend by") == NULL);
  free(out);

  out = capture(c, &f, DP_PERIOD_WEEK, DP_QFMT_TABLE, &rc);
  ASSERT_OK(rc);
  ASSERT_CONTAINS(out, "trend by week (UTC, by report begin):\n"
                       "PERIOD      MESSAGES  DMARC PASS  PASS RATE  FIXABLE  FORWARDED  "
                       "UNAUTHENTICATED  FAIL IF STRICT\n"
                       "2024-02-26      2722        2608      95.8%       66         36       "
                       "        12             131\n");
  free(out);

  out = capture(c, &f, DP_PERIOD_NONE, DP_QFMT_CSV, &rc);
  ASSERT_OK(rc);
  ASSERT_CONTAINS(out, "domain,since,by,reports,receivers,messages,dmarc_pass,dmarc_fail,"
                       "fail_fixable,fail_forwarded,fail_unauthenticated,dmarc_fail_if_strict,");
  ASSERT_CONTAINS(out, "\r\nexample.com,,,4,3,2722,2608,114,66,36,12,131,3,2,2,");
  free(out);

  out = capture(c, &f, DP_PERIOD_DAY, DP_QFMT_CSV, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(out, "period,messages,dmarc_pass,pass_rate,fail_fixable,fail_forwarded,"
                     "fail_unauthenticated,dmarc_fail_if_strict\r\n"
                     "2024-03-01,1638,1574,96.0,42,12,10,68\r\n"
                     "2024-03-02,1084,1034,95.3,24,24,2,63\r\n");
  free(out);
}

/* The verdict from counts alone (no database). */
TEST(query_readiness_verdict) {
  dp_readiness_t r;
  memset(&r, 0, sizeof r);
  int64_t fixable[2] = {5, 1};
  dp_sender_t senders[2];
  memset(senders, 0, sizeof senders);
  r.total.messages = 1000;
  r.total.dmarc_pass = 900;
  r.total.dmarc_fail = 100;
  r.total.fail_unauthenticated = 100;
  dp__query_readiness_verdict(&r, "example.com");
  ASSERT_STR_EQ(r.verdict_line, "ready"); /* spoofing alone does not block */
  ASSERT_CONTAINS(r.verdict_reason, "10.0% fails DMARC: 10.0% unauthenticated");

  r.to_fix = senders;
  r.to_fix_fixable = fixable;
  r.n_to_fix = 2;
  dp__query_readiness_verdict(&r, "example.com");
  ASSERT_EQ(r.n_blocking, 2); /* 1 message is exactly 0.1% */
  ASSERT_STR_EQ(r.verdict_line, "ready after fixing 2 senders");
  ASSERT_FALSE(strstr(r.verdict_reason, "small sender"));
  r.total.messages = 1001;
  dp__query_readiness_verdict(&r, "example.com");
  ASSERT_EQ(r.n_blocking, 1);
  ASSERT_STR_EQ(r.verdict_line, "ready after fixing 1 sender");
  /* the one below 0.1% is left out of the verdict, not out of the reason */
  ASSERT_CONTAINS(r.verdict_reason, "; 0.1% from 1 small sender, each under 0.1%");

  /* many small senders: the verdict stays, the reason says how much */
  int64_t many[120];
  dp_sender_t many_s[120];
  memset(many_s, 0, sizeof many_s);
  for (size_t i = 0; i < 120; i++) many[i] = 3;
  dp_readiness_t m;
  memset(&m, 0, sizeof m);
  m.total.messages = 10000;
  m.total.dmarc_fail = 400;
  m.total.fail_unauthenticated = 40;
  m.to_fix = many_s;
  m.to_fix_fixable = many;
  m.n_to_fix = 120;
  dp__query_readiness_verdict(&m, "example.com");
  ASSERT_STR_EQ(m.verdict_line, "ready");
  ASSERT_CONTAINS(m.verdict_reason, "no sender to fix; 3.6% from 120 small senders, each under 0.1%");

  r.total.fail_forwarded = 20; /* 2.0%: still acceptable */
  dp__query_readiness_verdict(&r, "example.com");
  ASSERT_STR_EQ(r.verdict, "ready after fixing");
  r.total.fail_forwarded = 21;
  dp__query_readiness_verdict(&r, "example.com");
  ASSERT_STR_EQ(r.verdict, "not ready");
  ASSERT_CONTAINS(r.verdict_reason, "forwarded or mailing-list mail");

  memset(&r, 0, sizeof r);
  dp__query_readiness_verdict(&r, "example.com");
  ASSERT_STR_EQ(r.verdict_line, "not ready");
  ASSERT_CONTAINS(r.verdict_reason, "no mail of example.com");
}

static char *domains(PGconn *c, const dp_query_filter_t *f, dp_qfmt_t fmt, int *rc) {
  char *buf = NULL, err[512];
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  *rc = dp__query_domains(c, f, fmt, out, err, sizeof err);
  fclose(out);
  return buf;
}

TEST(query_domains) {
  NEED_DB();
  int rc;
  dp_query_filter_t f = {NULL, false, 0};
  char *out = domains(c, &f, DP_QFMT_JSON, &rc);
  ASSERT_OK(rc);
  /* example.com: p none (Mar 1) then quarantine (Mar 2); pct 100 then 50
   * (Outlook reports no pct, so 50 stays); adkim r then s; Yahoo's missing
   * sp/np/adkim/aspf are no change. */
  ASSERT_STR_EQ(out,
                "[\n"
                "{\"domain\":\"example.com\",\"reports\":4,\"messages\":2722,\"dmarc_pass\":2608,"
                "\"p\":\"quarantine\",\"sp\":\"none\",\"np\":\"none\",\"pct\":50,"
                "\"adkim\":\"s\",\"aspf\":\"r\",\"policy_changed\":true,"
                "\"reporters\":[\"Enterprise Outlook\",\"google.com\",\"yahoo.com\"],"
                "\"first_seen\":\"2024-03-01T00:00:00Z\",\"last_seen\":\"2024-03-02T23:59:59Z\","
                "\"policy_changes\":[\"p=none->quarantine on 2024-03-02\","
                "\"pct=100->50 on 2024-03-02\",\"adkim=r->s on 2024-03-02\"]},\n"
                "{\"domain\":\"other.org\",\"reports\":1,\"messages\":1000,\"dmarc_pass\":1000,"
                "\"p\":\"reject\",\"sp\":\"reject\",\"np\":null,\"pct\":100,\"adkim\":\"r\","
                "\"aspf\":\"r\",\"policy_changed\":false,\"reporters\":[\"google.com\"],"
                "\"first_seen\":\"2024-03-01T00:00:00Z\",\"last_seen\":\"2024-03-01T23:59:59Z\","
                "\"policy_changes\":[]}\n"
                "]\n");
  free(out);

  out = domains(c, &f, DP_QFMT_TABLE, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(out, "DOMAIN       REPORTS  MESSAGES  DMARC PASS  P           SP      NP    PCT  "
                     "ADKIM  ASPF  REPORTERS  POLICY CHANGES\n"
                     "example.com        4      2722       95.8%  quarantine  none    none   50  "
                     "s      r             3  p=none->quarantine on 2024-03-02, pct=100->50 on "
                     "2024-03-02, adkim=r->s on 2024-03-02\n"
                     "other.org          1      1000      100.0%  reject      reject  -     100  "
                     "r      r             1\n"
                     "2 domains, 3722 messages\n");
  free(out);

  /* --since Mar 2: only the quarantine reports; Google and Outlook report a
   * different adkim on the same day, which shows as a change. */
  f.has_since = true;
  f.since = T_MAR02;
  out = domains(c, &f, DP_QFMT_CSV, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(out, "domain,reports,messages,dmarc_pass,p,sp,np,pct,adkim,aspf,policy_changed,"
                     "reporters,first_seen,last_seen,policy_changes\r\n"
                     "example.com,2,1084,1034,quarantine,none,none,50,s,r,true,"
                     "Enterprise Outlook;google.com,2024-03-02T00:00:00Z,2024-03-02T23:59:59Z,"
                     "adkim=r->s on 2024-03-02\r\n");
  free(out);
  (void)T_MAR01;
}

static char *senders_trend(PGconn *c, dp_sender_fail_t fail, dp_period_t by, dp_qfmt_t fmt,
                           int *rc) {
  char *buf = NULL, err[512];
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  *rc = dp__query_senders_trend(c, &(dp_query_filter_t){"example.com", false, 0}, fail, by, fmt,
                                out, err, sizeof err);
  fclose(out);
  return buf;
}

TEST(query_senders_by_day) {
  NEED_DB();
  int rc;
  char *out = senders_trend(c, DP_FAIL_ALL, DP_PERIOD_DAY, DP_QFMT_JSON, &rc);
  ASSERT_OK(rc);
  /* example.com: Mar 1 = 1000 + 30 + 4 + 500, all aligned; Mar 2 = 800 + 11
   * (forwarded, DKIM only) + 200 + 13. Biggest sender first, then by day. */
  ASSERT_CONTAINS(out, "[\n{\"sender\":\"example.com\",\"period\":\"2024-03-01\",\"messages\":1534,"
                       "\"spf_aligned\":1534,\"dkim_aligned\":1534,\"dmarc_pass\":1534,"
                       "\"spf_aligned_rate\":100.0,\"dkim_aligned_rate\":100.0,"
                       "\"pass_rate\":100.0},\n"
                       "{\"sender\":\"example.com\",\"period\":\"2024-03-02\",\"messages\":1024,"
                       "\"spf_aligned\":1013,\"dkim_aligned\":1024,\"dmarc_pass\":1024,");
  ASSERT_CONTAINS(out, "{\"sender\":\"sendgrid.net\",\"period\":\"2024-03-01\",\"messages\":30,"
                       "\"spf_aligned\":0,\"dkim_aligned\":0,\"dmarc_pass\":0,");
  ASSERT_CONTAINS(out, "{\"sender\":\"sendgrid.net\",\"period\":\"2024-03-02\",\"messages\":15,");
  ASSERT_CONTAINS(out, "{\"sender\":\"unauthenticated 203.0.113.0/24\",\"period\":\"2024-03-01\","
                       "\"messages\":10,");
  free(out);

  /* --fail any drops the senders that always pass; the table folds the
   * unauthenticated networks per period. */
  out = senders_trend(c, DP_FAIL_ANY, DP_PERIOD_DAY, DP_QFMT_TABLE, &rc);
  ASSERT_OK(rc);
  ASSERT_TRUE(strstr(out, "example.com ") == NULL);
  ASSERT_TRUE(strstr(out, "mcsv.net") == NULL);
  ASSERT_CONTAINS(out, "SENDER                          PERIOD      MESSAGES  SPF ALIGNED  "
                       "DKIM ALIGNED  DMARC PASS\n"
                       "sendgrid.net                    2024-03-01        30         0.0%  "
                       "        0.0%        0.0%\n");
  ASSERT_CONTAINS(out, "unauthenticated (all networks)  2024-03-01        22");
  ASSERT_CONTAINS(out, "unauthenticated (all networks)  2024-03-02         7");
  free(out);

  out = senders_trend(c, DP_FAIL_ALL, DP_PERIOD_WEEK, DP_QFMT_CSV, &rc);
  ASSERT_OK(rc);
  ASSERT_CONTAINS(out, "sender,period,messages,spf_aligned,dkim_aligned,dmarc_pass,"
                       "spf_aligned_rate,dkim_aligned_rate,pass_rate\r\n"
                       "example.com,2024-02-26,2558,2547,2558,2558,99.5,100.0,100.0\r\n");
  free(out);
}

/* Rule 2 needs the failing signature's selector to verify elsewhere: one
 * receiver that omits selectors says d=sel.example passes, another reports
 * d=sel.example s=rotated2024 failing from a stranger. A pass without a
 * selector vouches for no selector in particular, so that is a key problem
 * (unauthenticated here), not forwarding; a failing signature without a
 * selector is still judged by its domain alone. Report 6, for its own
 * domain, removed again at the end. */
TEST(query_readiness_selector_must_verify) {
  NEED_DB();
  ASSERT_TRUE(exec(c, "INSERT INTO report (id, org_name, report_id, domain, begin_ts, end_ts,"
                      " p, schema_version, source, content_hash, n_records, messages) VALUES"
                      " (6, 'mail.ru', 'r6', 'sel.example', '" MAR01 "', '" MAR01E "', 'none',"
                      " 1, 'f', 6, 3, 1110)"));
  ASSERT_TRUE(exec(c, REC_COLS
                   /* passes, no selector reported */
                   " (6, '" MAR01 "', 1, '192.0.2.8', 1000, 'pass', 'pass', '{}', 'sel.example',"
                   "  '{sel.example}', '{\"\"}', '{pass}', '{sel.example}', '{pass}', true, true,"
                   "  true, true, 'sel.example', false),"
                   /* an old selector failing from elsewhere: never seen verifying */
                   " (6, '" MAR01 "', 2, '203.0.113.50', 100, 'fail', 'fail', '{}', 'sel.example',"
                   "  '{sel.example}', '{rotated2024}', '{fail}', '{sel.example}', '{fail}', false,"
                   "  false, false, false, 'unauthenticated 203.0.113.0/24', false),"
                   /* a failing signature without a selector: its domain decides */
                   " (6, '" MAR01 "', 3, '198.18.0.9', 10, 'fail', 'fail', '{}', 'sel.example',"
                   "  '{sel.example}', '{\"\"}', '{fail}', '{sel.example}', '{fail}', false,"
                   "  false, false, false, 'unauthenticated 198.18.0.0/24', false)"));
  dp_query_filter_t f = {"sel.example", false, 0};
  dp_readiness_t r;
  char err[512] = "";
  ASSERT_OK(dp__query_readiness_fetch(c, &f, DP_PERIOD_NONE, &r, err, sizeof err));
  ASSERT_COUNTS(r.total, 1110, 1000, 0, 10, 100, 110);
  dp__query_readiness_free(&r);
  ASSERT_TRUE(exec(c, "DELETE FROM record WHERE report_key = 6"));
  ASSERT_TRUE(exec(c, "DELETE FROM report WHERE id = 6"));
  ASSERT_TRUE(exec(c, "SELECT dp_agg_rebuild()"));
}
