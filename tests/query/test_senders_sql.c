/* SPDX-License-Identifier: MIT */
/* tests/query/test_senders_sql.c - the senders, reports and errors queries
 * against a real PostgreSQL: a fresh database with the schema, a small
 * hand-made set of reports and records whose answers are worked out below,
 * and every number checked. Needs DP_TEST_DB (libpq conninfo of a server
 * where it may CREATE DATABASE); without it every case is skipped. */
#include "tests/test.h"

#include <unistd.h>

#include "core/core.h"
#include "query/query_int.h"
#include "store/store.h"

#include "query_test_db.h"

static bool setup_done, setup_failed;

/* Times used below (UTC). */
#define JAN10 "2024-01-10T00:00:00Z"
#define JAN11 "2024-01-10T23:59:59Z"
#define MAR01 "2024-03-01T00:00:00Z"
#define MAR01E "2024-03-01T23:59:59Z"
#define MAR02 "2024-03-02T00:00:00Z"
#define MAR02E "2024-03-02T23:59:59Z"
#define T_JAN10 INT64_C(1704844800)
#define T_MAR01 INT64_C(1709251200)
#define T_MAR02 INT64_C(1709337600)
#define T_MAR02E (T_MAR02 + 86399)

/* Reports: 1 google.com (example.com, Mar 1), 2 yahoo.com (example.com, Mar 2),
 * 3 google.com (other.org, Mar 1: only its news.example.com record is ours),
 * 4 mimecast.org (example.com, Jan 10: outside --since 2024-02-01). */
static const char fixture_reports[] =
    "INSERT INTO report (id, org_name, email, report_id, domain, begin_ts, end_ts, p,"
    "                    schema_version, source, content_hash, n_records, messages, ingested_at) "
    "VALUES"
    " (1, 'google.com', 'noreply-dmarc@google.com', 'r1', 'example.com', '" MAR01 "', '" MAR01E "',"
    "  'none', 1, 'a.xml', 11, 6, 185, '2024-03-03T10:00:00.5Z'),"
    " (2, 'yahoo.com', 'dmarc@yahoo.com', 'r2', 'example.com', '" MAR02 "', '" MAR02E "',"
    "  'quarantine', 1, 'mbox: msg 2', 22, 4, 63, '2024-03-03T10:00:01Z'),"
    " (3, 'google.com', 'noreply-dmarc@google.com', 'r3', 'other.org', '" MAR01 "', '" MAR01E "',"
    "  'reject', 1, 'b.xml', 33, 3, 1013, '2024-03-03T10:00:02Z'),"
    " (4, 'mimecast.org', '', 'r4', 'example.com', '" JAN10 "', '" JAN11 "',"
    "  'none', 2, 'c.xml.gz', 44, 2, 21, '2024-03-03T10:00:03Z')";

/* Columns: report, begin, seq, ip, count, pe_dkim, pe_spf, header_from,
 * dkim domains/selectors/results, spf domains/results, dkim_aligned,
 * dkim_strict, spf_aligned, spf_strict, sender, third_party. */
static const char fixture_records[] =
    "INSERT INTO record_arrays (report_key, begin_ts, seq, source_ip, count, pe_dkim, pe_spf,"
    "  header_from, dkim_domains, dkim_selectors, dkim_results, spf_domains, spf_results,"
    "  dkim_aligned, dkim_aligned_strict, spf_aligned, spf_aligned_strict, sender, third_party)"
    " VALUES"
    /* own mail, everything aligned */
    " (1, '" MAR01 "', 1, '203.0.113.5', 100, 'pass', 'pass', 'example.com', '{example.com}',"
    "  '{s1}', '{pass}', '{example.com}', '{pass}', true, true, true, true, 'example.com', false),"
    /* SendGrid without custom DKIM / return-path */
    " (1, '" MAR01 "', 2, '198.51.100.7', 40, 'fail', 'fail', 'example.com', '{sendgrid.net}',"
    "  '{smtpapi}', '{pass}', '{sendgrid.net}', '{pass}', false, false, false, false,"
    "  'sendgrid.net', true),"
    /* SendGrid with an aligned signature as well */
    " (1, '" MAR01 "', 3, '198.51.100.8', 10, 'pass', 'fail', 'example.com',"
    "  '{example.com,sendgrid.net}', '{s1,smtpapi}', '{pass,pass}', '{sendgrid.net}', '{pass}',"
    "  true, true, false, false, 'sendgrid.net', true),"
    /* Amazon SES, SPF for its bounce domain only */
    " (1, '" MAR01 "', 4, '192.0.2.10', 25, 'fail', 'fail', 'example.com', '{}', '{}', '{}',"
    "  '{us-east-1.amazonses.com}', '{pass}', false, false, false, false, 'amazonses.com', true),"
    /* spoofing */
    " (1, '" MAR01 "', 5, '192.0.2.99', 7, 'fail', 'fail', 'example.com', '{}', '{}', '{}',"
    "  '{example.com}', '{fail}', false, false, false, false,"
    "  'unauthenticated 192.0.2.0/24', false),"
    /* own mail over IPv6 not in SPF, DKIM aligned */
    " (1, '" MAR01 "', 6, '2001:db8::1', 3, 'pass', 'fail', 'example.com', '{example.com}',"
    "  '{s1}', '{pass}', '{example.com}', '{fail}', true, true, false, false, 'example.com', "
    "false),"
    /* own mail, DKIM broken (selector s2), SPF aligned */
    " (2, '" MAR02 "', 1, '203.0.113.6', 50, 'fail', 'pass', 'example.com', '{example.com}',"
    "  '{s2}', '{fail}', '{example.com}', '{pass}', false, false, true, true, 'example.com', "
    "false),"
    /* Mailchimp: own DKIM key fails, SPF passes for mcsv.net */
    " (2, '" MAR02 "', 2, '205.201.128.1', 5, 'fail', 'fail', 'example.com', '{example.com}',"
    "  '{k1}', '{fail}', '{mcsv.net}', '{pass}', false, false, false, false, 'mcsv.net', true),"
    " (2, '" MAR02 "', 4, '198.51.100.7', 2, 'fail', 'fail', 'example.com', '{sendgrid.net}',"
    "  '{smtpapi}', '{pass}', '{sendgrid.net}', '{pass}', false, false, false, false,"
    "  'sendgrid.net', true),"
    /* Salesforce signs as itself, SPF checked against example.com fails */
    " (2, '" MAR02 "', 5, '13.110.0.1', 6, 'fail', 'fail', 'example.com', '{salesforce.com}',"
    "  '{sf1}', '{pass}', '{example.com}', '{softfail}', false, false, false, false,"
    "  'salesforce.com', true),"
    /* report 3 is for other.org: only the news.example.com record is example.com's */
    " (3, '" MAR01 "', 1, '192.0.2.200', 1000, 'pass', 'pass', 'other.org', '{other.org}',"
    "  '{x}', '{pass}', '{other.org}', '{pass}', true, true, true, true, 'other.org', false),"
    " (3, '" MAR01 "', 2, '203.0.113.9', 4, 'pass', 'pass', 'news.example.com',"
    "  '{news.example.com}', '{s1}', '{pass}', '{example.com}', '{pass}', true, true, true, false,"
    "  'example.com', false),"
    " (3, '" MAR01 "', 3, '192.0.2.201', 9, 'pass', 'pass', 'notexample.com', '{notexample.com}',"
    "  '{x}', '{pass}', '{notexample.com}', '{pass}', true, true, true, true, 'notexample.com',"
    "  false),"
    /* January */
    " (4, '" JAN10 "', 1, '203.0.113.5', 20, 'pass', 'pass', 'example.com', '{example.com}',"
    "  '{s1}', '{pass}', '{example.com}', '{pass}', true, true, true, true, 'example.com', false),"
    " (4, '" JAN10 "', 2, '198.18.0.1', 1, 'fail', 'fail', 'example.com', '{}', '{}', '{}',"
    "  '{}', '{}', false, false, false, false, 'unauthenticated 198.18.0.0/24', false)";

static const char fixture_errors[] =
    "INSERT INTO ingest_error (at, source, part, org_name, report_id, code, reason) VALUES"
    " ('2024-03-03T09:00:00Z', 'bad.zip', 'entry x.xml', '', '', 'DP_EXML', 'malformed XML: line "
    "3'),"
    " ('2024-03-03T11:00:00Z', 'mbox: msg 7', '', 'Evil \"Corp\"', 'id,1', 'DP_EREPORT',"
    "  E'record 2: <count> is not an integer: \"x\\n\"')";

static PGconn *db(void) {
  if (setup_done) return setup_failed ? NULL : conn;
  setup_done = true;
  setup_failed = true;
  if (!query_test_db_create("dp_test_query")) return NULL;
  if (!exec(conn, fixture_reports) || !exec(conn, fixture_records) || !exec(conn, fixture_errors))
    return NULL;
  /* A services map of our own, so the expected advice does not change with
   * data/services.tsv: SendGrid and Mailchimp known, Salesforce and SES not. */
  static const char services[] =
      "sendgrid.net\tSendGrid\tesp\tCNAME s1._domainkey.{domain} → SendGrid\t"
      "CNAME em1.{domain} → SendGrid\tinclude:sendgrid.net\n"
      "mcsv.net\tMailchimp\tesp\t\t-\tinclude:servers.mcsv.net\n";
  char err[512];
  dp_services_t *m = dp__query_services_create();
  if (!m || dp__query_services_add_tsv(m, services, sizeof services - 1, "test", err, sizeof err)) {
    dp__query_services_destroy(m);
    return NULL;
  }
  dp__query_services_set(m);
  setup_failed = false;
  return conn;
}

static const dp_sender_t *find(const dp_sender_t *rows, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (!strcmp(rows[i].sender, name)) return &rows[i];
  return NULL;
}

/* Join a list for comparison: "a|b|c". */
static const char *joined(char **items, size_t n) {
  static char buf[1024];
  buf[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(buf, "|");
    strcat(buf, items[i] ? items[i] : "NULL");
  }
  return buf;
}

static char *capture(int (*fn)(FILE *, void *), void *arg, int *rc) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  *rc = fn(f, arg);
  fclose(f);
  return buf;
}

TEST(query_senders_all) {
  NEED_DB();
  dp_query_filter_t f = {"example.com", false, 0};
  dp_sender_t *rows;
  size_t n;
  char err[512] = "";
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_ALL, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 7);
  /* Most volume first. */
  const char *order[] = {"example.com",
                         "sendgrid.net",
                         "amazonses.com",
                         "unauthenticated 192.0.2.0/24",
                         "salesforce.com",
                         "mcsv.net",
                         "unauthenticated 198.18.0.0/24"};
  for (size_t i = 0; i < n; i++)
    ASSERT_STR_EQ(rows[i].sender, order[i]);

  const dp_sender_t *s = find(rows, n, "example.com");
  ASSERT_FALSE(s->third_party);
  ASSERT_EQ(s->messages, 177); /* 100 + 50 + 3 + 4 (news.example.com) + 20 */
  ASSERT_EQ(s->spf_aligned, 174);
  ASSERT_EQ(s->dkim_aligned, 127);
  ASSERT_EQ(s->dmarc_pass, 177);
  ASSERT_EQ(s->spf_aligned_strict, 170);
  ASSERT_EQ(s->dkim_aligned_strict, 127);
  ASSERT_EQ(s->policy_pass, 177);
  ASSERT_STR_EQ(joined(s->source_ips, s->n_source_ips),
                "203.0.113.5|203.0.113.6|203.0.113.9|2001:db8::1");
  ASSERT_STR_EQ(joined(s->dkim_domains, s->n_dkim_domains),
                "example.com:pass|example.com:fail|news.example.com:pass");
  ASSERT_STR_EQ(joined(s->spf_domains, s->n_spf_domains), "example.com:pass|example.com:fail");
  ASSERT_STR_EQ(joined(s->reporters, s->n_reporters), "google.com|mimecast.org|yahoo.com");
  ASSERT_EQ(s->first_seen, T_JAN10);
  ASSERT_EQ(s->last_seen, T_MAR02E);
  ASSERT_STR_EQ(s->fix, "ok");

  s = find(rows, n, "sendgrid.net");
  ASSERT_TRUE(s->third_party);
  ASSERT_EQ(s->messages, 52);
  ASSERT_EQ(s->spf_aligned, 0);
  ASSERT_EQ(s->dkim_aligned, 10);
  ASSERT_EQ(s->dmarc_pass, 10);
  ASSERT_EQ(s->spf_aligned_strict, 0);
  ASSERT_EQ(s->dkim_aligned_strict, 10);
  ASSERT_EQ(s->policy_pass, 10);
  ASSERT_STR_EQ(joined(s->source_ips, s->n_source_ips), "198.51.100.7|198.51.100.8");
  ASSERT_STR_EQ(joined(s->dkim_domains, s->n_dkim_domains), "sendgrid.net:pass|example.com:pass");
  ASSERT_STR_EQ(joined(s->spf_domains, s->n_spf_domains), "sendgrid.net:pass");
  ASSERT_STR_EQ(joined(s->reporters, s->n_reporters), "google.com|yahoo.com");
  ASSERT_EQ(s->first_seen, T_MAR01);
  ASSERT_EQ(s->last_seen, T_MAR02E);
  ASSERT_STR_EQ(s->service->name, "SendGrid");
  ASSERT_STR_EQ(
      s->fix, "DKIM signs as sendgrid.net, not example.com: sign with d=example.com at SendGrid "
              "(CNAME s1._domainkey.example.com → SendGrid); SPF passes for sendgrid.net "
              "(return-path), not example.com: set a custom return-path under example.com at "
              "SendGrid (CNAME em1.example.com → SendGrid) or rely on aligned DKIM");

  s = find(rows, n, "amazonses.com");
  ASSERT_TRUE(s->third_party);
  ASSERT_EQ(s->messages, 25);
  ASSERT_EQ(s->spf_aligned + s->dkim_aligned + s->dmarc_pass + s->policy_pass, 0);
  ASSERT_STR_EQ(joined(s->source_ips, s->n_source_ips), "192.0.2.10");
  ASSERT_EQ(s->n_dkim_domains, 0);
  ASSERT_STR_EQ(joined(s->spf_domains, s->n_spf_domains), "us-east-1.amazonses.com:pass");
  ASSERT_TRUE(s->service == NULL);
  ASSERT_STR_EQ(s->fix,
                "SPF passes for us-east-1.amazonses.com (return-path), not example.com: use a "
                "custom MAIL FROM under example.com or rely on aligned DKIM");

  s = find(rows, n, "unauthenticated 192.0.2.0/24");
  ASSERT_FALSE(s->third_party);
  ASSERT_EQ(s->messages, 7);
  ASSERT_EQ(s->dmarc_pass, 0);
  ASSERT_STR_EQ(joined(s->spf_domains, s->n_spf_domains), "example.com:fail");
  ASSERT_STR_EQ(s->fix, "no SPF/DKIM pass: spoofing or broken forwarding; p=reject would block it");

  s = find(rows, n, "salesforce.com");
  ASSERT_EQ(s->messages, 6);
  ASSERT_STR_EQ(joined(s->source_ips, s->n_source_ips), "13.110.0.1");
  ASSERT_STR_EQ(s->fix,
                "DKIM signs as salesforce.com, not example.com: sign with d=example.com (custom "
                "DKIM at the service); add this sender's IPs/include to example.com's SPF record");

  s = find(rows, n, "mcsv.net");
  ASSERT_EQ(s->messages, 5);
  ASSERT_STR_EQ(joined(s->dkim_domains, s->n_dkim_domains), "example.com:fail");
  ASSERT_STR_EQ(s->service->name, "Mailchimp");
  ASSERT_STR_EQ(
      s->fix, "DKIM for d=example.com fails for selector k1: key mismatch or rotation (compare the "
              "key at k1._domainkey.example.com with the one Mailchimp signs with); SPF passes for "
              "mcsv.net (return-path), not example.com: Mailchimp keeps its own return-path, so "
              "DMARC needs aligned DKIM");

  s = find(rows, n, "unauthenticated 198.18.0.0/24");
  ASSERT_EQ(s->messages, 1);
  ASSERT_EQ(s->n_dkim_domains + s->n_spf_domains, 0);
  ASSERT_STR_EQ(joined(s->reporters, s->n_reporters), "mimecast.org");
  ASSERT_EQ(s->first_seen, T_JAN10);
  dp__query_senders_free(rows, n);
}

TEST(query_senders_since_and_fail) {
  NEED_DB();
  char err[512] = "";
  dp_sender_t *rows;
  size_t n;
  /* --since 2024-02-01: the January report drops out. */
  dp_query_filter_t f = {"example.com", true, INT64_C(1706745600)};
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_ALL, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 6);
  ASSERT_STR_EQ(rows[0].sender, "example.com");
  ASSERT_EQ(rows[0].messages, 157);
  ASSERT_EQ(rows[0].first_seen, T_MAR01);
  ASSERT_STR_EQ(joined(rows[0].reporters, rows[0].n_reporters), "google.com|yahoo.com");
  ASSERT_TRUE(find(rows, n, "unauthenticated 198.18.0.0/24") == NULL);
  dp__query_senders_free(rows, n);

  /* --since 2024-03-02: only the Yahoo report (Mar 1 reports end before). */
  f.since = T_MAR02;
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_ALL, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 4);
  ASSERT_STR_EQ(rows[0].sender, "example.com");
  ASSERT_EQ(rows[0].messages, 50);
  ASSERT_EQ(rows[0].spf_aligned, 50);
  ASSERT_EQ(rows[0].dkim_aligned, 0);
  ASSERT_EQ(rows[0].dmarc_pass, 50);
  ASSERT_EQ(rows[0].policy_pass, 50);
  ASSERT_STR_EQ(joined(rows[0].dkim_domains, rows[0].n_dkim_domains), "example.com:fail");
  ASSERT_STR_EQ(rows[0].fix, "ok"); /* DMARC passes through SPF */
  dp__query_senders_free(rows, n);

  /* --fail spf: example.com is all SPF-aligned in that window. */
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_SPF, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 3);
  ASSERT_STR_EQ(rows[0].sender, "salesforce.com");
  ASSERT_STR_EQ(rows[1].sender, "mcsv.net");
  ASSERT_STR_EQ(rows[2].sender, "sendgrid.net");
  ASSERT_EQ(rows[2].messages, 2);
  dp__query_senders_free(rows, n);

  /* --fail dkim: none of example.com's 50 messages has aligned DKIM. */
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_DKIM, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 4);
  ASSERT_STR_EQ(rows[0].sender, "example.com");
  dp__query_senders_free(rows, n);

  /* --fail any: example.com passes DMARC. */
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_ANY, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 3);
  ASSERT_STR_EQ(rows[0].sender, "salesforce.com");
  dp__query_senders_free(rows, n);

  /* --fail any over everything: all but example.com. */
  f.has_since = false;
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_ANY, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 6);
  ASSERT_STR_EQ(rows[0].sender, "sendgrid.net");
  ASSERT_TRUE(find(rows, n, "example.com") == NULL);
  dp__query_senders_free(rows, n);

  /* A domain with no mail, and a hostile one: parameters, not SQL text. */
  dp_query_filter_t g = {"x'; DROP TABLE report; --", false, 0};
  ASSERT_OK(dp__query_senders_fetch(c, &g, DP_FAIL_ALL, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 0);
  ASSERT_TRUE(rows == NULL);
  /* The subdomain rule is a suffix on a label boundary: notexample.com is
   * not example.com's, and other.org's own mail stays out. */
  dp_query_filter_t h = {"other.org", false, 0};
  ASSERT_OK(dp__query_senders_fetch(c, &h, DP_FAIL_ALL, &rows, &n, err, sizeof err));
  ASSERT_EQ(n, 3); /* report 3 is for other.org: all its records are */
  ASSERT_STR_EQ(rows[0].sender, "other.org");
  ASSERT_EQ(rows[0].messages, 1000);
  dp__query_senders_free(rows, n);
}

static int senders_table(FILE *out, void *arg) {
  char err[512];
  return dp__query_senders((PGconn *)arg, &(dp_query_filter_t){"example.com", true, T_MAR02},
                           DP_FAIL_ALL, DP_QFMT_TABLE, out, err, sizeof err);
}
static int senders_json(FILE *out, void *arg) {
  char err[512];
  return dp__query_senders((PGconn *)arg, &(dp_query_filter_t){"example.com", true, T_MAR02},
                           DP_FAIL_ANY, DP_QFMT_JSON, out, err, sizeof err);
}
static int senders_csv(FILE *out, void *arg) {
  char err[512];
  return dp__query_senders((PGconn *)arg, &(dp_query_filter_t){"example.com", true, T_MAR02},
                           DP_FAIL_ANY, DP_QFMT_CSV, out, err, sizeof err);
}

TEST(query_senders_output) {
  NEED_DB();
  int rc;
  char *out = capture(senders_table, c, &rc);
  ASSERT_OK(rc);
  static const char want_table[] =
      "SENDER                   3RD PARTY  MESSAGES  SPF ALIGNED  DKIM ALIGNED  DMARC PASS  "
      "REPORTERS  WHAT TO FIX\n"
      "example.com              no               50       100.0%          0.0%      100.0%     "
      "     1  ok\n"
      "salesforce.com           yes               6         0.0%          0.0%        0.0%     "
      "     1  DKIM signs as salesforce.com, not example.com: sign with d=example.com (custom "
      "DKIM at the service); add this sender's IPs/include to example.com's SPF record\n"
      "mcsv.net (Mailchimp)     yes               5         0.0%          0.0%        0.0%     "
      "     1  DKIM for d=example.com fails for selector k1: key mismatch or rotation (compare "
      "the key at k1._domainkey.example.com with the one Mailchimp signs with); SPF passes for "
      "mcsv.net (return-path), not example.com: Mailchimp keeps its own return-path, so DMARC "
      "needs aligned DKIM\n"
      "sendgrid.net (SendGrid)  yes               2         0.0%          0.0%        0.0%     "
      "     1  DKIM signs as sendgrid.net, not example.com: sign with d=example.com at SendGrid "
      "(CNAME s1._domainkey.example.com → SendGrid); SPF passes for sendgrid.net (return-path), "
      "not example.com: set a custom return-path under example.com at SendGrid (CNAME "
      "em1.example.com → SendGrid) or rely on aligned DKIM\n"
      "63 messages from 4 senders of example.com; 13 fail DMARC (20.6%)\n";
  ASSERT_STR_EQ(out, want_table);
  free(out);

  out = capture(senders_json, c, &rc);
  ASSERT_OK(rc);
  ASSERT_CONTAINS(out,
                  "[\n{\"sender\":\"salesforce.com\",\"third_party\":true,\"messages\":6,"
                  "\"spf_aligned\":0,\"dkim_aligned\":0,\"dmarc_pass\":0,"
                  "\"spf_aligned_strict\":0,\"dkim_aligned_strict\":0,\"policy_pass\":0,"
                  "\"source_ips\":[\"13.110.0.1\"],\"dkim_domains\":[\"salesforce.com:pass\"],"
                  "\"spf_domains\":[\"example.com:softfail\"],\"reporters\":[\"yahoo.com\"],"
                  "\"first_seen\":\"2024-03-02T00:00:00Z\",\"last_seen\":\"2024-03-02T23:59:59Z\","
                  "\"fix\":\"DKIM signs as salesforce.com");
  ASSERT_CONTAINS(out, "},\n{\"sender\":\"mcsv.net\",");
  ASSERT_CONTAINS(out, "\"sender\":\"sendgrid.net\",\"third_party\":true,\"messages\":2,");
  ASSERT_CONTAINS(out, "or rely on aligned DKIM\",\"service\":\"SendGrid\",\"service_kind\":\"esp\"}");
  ASSERT_CONTAINS(out, "SPF record\",\"service\":null,\"service_kind\":null}");
  ASSERT_TRUE(strstr(out, "\"sender\":\"example.com\"") == NULL);
  ASSERT_STR_EQ(out + strlen(out) - 3, "\n]\n");
  free(out);

  out = capture(senders_csv, c, &rc);
  ASSERT_OK(rc);
  ASSERT_CONTAINS(out, "sender,third_party,messages,spf_aligned,dkim_aligned,dmarc_pass,"
                       "spf_aligned_strict,dkim_aligned_strict,policy_pass,source_ips,dkim_domains,"
                       "spf_domains,reporters,first_seen,last_seen,fix,service,service_kind\r\n"
                       "salesforce.com,true,6,0,0,0,0,0,0,13.110.0.1,salesforce.com:pass,"
                       "example.com:softfail,yahoo.com,2024-03-02T00:00:00Z,2024-03-02T23:59:59Z,");
  free(out);
}

static int reports_json(FILE *out, void *arg) {
  char err[512];
  return dp__query_reports((PGconn *)arg, &(dp_query_filter_t){"example.com", false, 0},
                           DP_QFMT_JSON, out, err, sizeof err);
}
static int reports_table(FILE *out, void *arg) {
  char err[512];
  return dp__query_reports((PGconn *)arg, &(dp_query_filter_t){NULL, true, T_MAR01}, DP_QFMT_TABLE,
                           out, err, sizeof err);
}

TEST(query_reports) {
  NEED_DB();
  int rc;
  char *out = capture(reports_json, c, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(
      out,
      "[\n"
      "{\"org_name\":\"yahoo.com\",\"report_id\":\"r2\",\"domain\":\"example.com\","
      "\"begin\":\"2024-03-02T00:00:00Z\",\"end\":\"2024-03-02T23:59:59Z\",\"records\":4,"
      "\"messages\":63,\"p\":\"quarantine\",\"email\":\"dmarc@yahoo.com\",\"source\":\"mbox: msg "
      "2\","
      "\"ingested_at\":\"2024-03-03T10:00:01Z\"},\n"
      "{\"org_name\":\"google.com\",\"report_id\":\"r1\",\"domain\":\"example.com\","
      "\"begin\":\"2024-03-01T00:00:00Z\",\"end\":\"2024-03-01T23:59:59Z\",\"records\":6,"
      "\"messages\":185,\"p\":\"none\",\"email\":\"noreply-dmarc@google.com\",\"source\":\"a.xml\","
      "\"ingested_at\":\"2024-03-03T10:00:00Z\"},\n"
      "{\"org_name\":\"mimecast.org\",\"report_id\":\"r4\",\"domain\":\"example.com\","
      "\"begin\":\"2024-01-10T00:00:00Z\",\"end\":\"2024-01-10T23:59:59Z\",\"records\":2,"
      "\"messages\":21,\"p\":\"none\",\"email\":\"\",\"source\":\"c.xml.gz\","
      "\"ingested_at\":\"2024-03-03T10:00:03Z\"}\n"
      "]\n");
  free(out);

  out = capture(reports_table, c, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(out, "ORG         REPORT ID  DOMAIN       BEGIN (UTC)       END (UTC)         "
                     "RECORDS  MESSAGES  P\n"
                     "yahoo.com   r2         example.com  2024-03-02 00:00  2024-03-02 23:59       "
                     " 4        63  quarantine\n"
                     "google.com  r1         example.com  2024-03-01 00:00  2024-03-01 23:59       "
                     " 6       185  none\n"
                     "google.com  r3         other.org    2024-03-01 00:00  2024-03-01 23:59       "
                     " 3      1013  reject\n"
                     "3 reports, 1261 messages\n");
  free(out);
}

static int errors_csv(FILE *out, void *arg) {
  char err[512];
  return dp__query_errors((PGconn *)arg, &(dp_query_filter_t){NULL, false, 0}, DP_QFMT_CSV, out,
                          err, sizeof err);
}
static int errors_recent(FILE *out, void *arg) {
  char err[512];
  return dp__query_errors((PGconn *)arg,
                          &(dp_query_filter_t){NULL, true, INT64_C(1709460000)}, /* 10:00Z */
                          DP_QFMT_JSON, out, err, sizeof err);
}

TEST(query_errors) {
  NEED_DB();
  int rc;
  char *out = capture(errors_csv, c, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(out,
                "at,source,part,org_name,report_id,code,reason\r\n"
                "2024-03-03T11:00:00Z,mbox: msg 7,,\"Evil \"\"Corp\"\"\",\"id,1\",DP_EREPORT,"
                "\"record 2: <count> is not an integer: \"\"x\n\"\"\"\r\n"
                "2024-03-03T09:00:00Z,bad.zip,entry x.xml,,,DP_EXML,malformed XML: line 3\r\n");
  free(out);
  out = capture(errors_recent, c, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(out,
                "[\n{\"at\":\"2024-03-03T11:00:00Z\",\"source\":\"mbox: msg 7\",\"part\":\"\","
                "\"org_name\":\"Evil \\\"Corp\\\"\",\"report_id\":\"id,1\",\"code\":\"DP_EREPORT\","
                "\"reason\":\"record 2: <count> is not an integer: \\\"x\\n\\\"\"}\n]\n");
  free(out);
}

TEST(query_sql_errors_reported) {
  NEED_DB();
  /* A broken connection gives DP_EPG and a one-line reason, not a crash. */
  PGconn *bad = PQconnectdb("host=/nonexistent-dir-dp port=1");
  char err[512] = "";
  dp_sender_t *rows;
  size_t n;
  dp_query_filter_t f = {"example.com", false, 0};
  ASSERT_EQ(dp__query_senders_fetch(bad, &f, DP_FAIL_ALL, &rows, &n, err, sizeof err), DP_EPG);
  ASSERT_TRUE(*err != '\0');
  ASSERT_TRUE(strchr(err, '\n') == NULL);
  PQfinish(bad);
  (void)c;
}

/* Last: it adds a report the tests above must not see. When the key that
 * fails for mcsv.net (example.com, selector k1) verifies on other mail of
 * the window, the advice is readiness's "forwarded", not a key to compare. */
TEST(query_senders_fix_key_good_elsewhere) {
  NEED_DB();
  ASSERT_TRUE(exec(c, "INSERT INTO report (id, org_name, email, report_id, domain, begin_ts,"
                      " end_ts, p, schema_version, source, content_hash, n_records, messages)"
                      " VALUES (5, 'outlook.com', '', 'r5', 'example.com', '" MAR02 "', '" MAR02E
                      "', 'none', 1, 'd.xml', 55, 1, 30)"));
  ASSERT_TRUE(exec(c, "INSERT INTO record_arrays (report_key, begin_ts, seq, source_ip, count,"
                      " pe_dkim, pe_spf, header_from, dkim_domains, dkim_selectors, dkim_results,"
                      " spf_domains, spf_results, dkim_aligned, dkim_aligned_strict, spf_aligned,"
                      " spf_aligned_strict, sender, third_party) VALUES"
                      " (5, '" MAR02 "', 1, '205.201.128.9', 30, 'pass', 'fail', 'example.com',"
                      " '{example.com}', '{k1}', '{pass}', '{mcsv.net}', '{pass}', true, true,"
                      " false, false, 'example.com', false)"));
  dp_query_filter_t f = {"example.com", false, 0};
  dp_sender_t *rows;
  size_t n;
  char err[512] = "";
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_ALL, &rows, &n, err, sizeof err));
  const dp_sender_t *s = find(rows, n, "mcsv.net");
  ASSERT_TRUE(s->dkim_own_key_good);
  ASSERT_CONTAINS(s->fix, "forwarded: DKIM for d=example.com (selector k1) verifies on other mail");
  /* example.com's own s2 failure has no good s2 anywhere: still a key to fix */
  s = find(rows, n, "example.com");
  ASSERT_FALSE(s->dkim_own_key_good);
  dp__query_senders_free(rows, n);
}
