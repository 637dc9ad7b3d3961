/* SPDX-License-Identifier: MIT */
/* tests/query/test_senders_fix.c - the "what to fix" advice derived from a
 * sender's evidence, without a database. */
#include "query/query_int.h"
#include "../test.h"

static char *fix(dp_sender_t *s) { return dp__query_senders_fix(s, "example.com"); }

TEST(senders_fix_all_aligned_is_ok) {
  dp_sender_t s = {.sender = "example.com", .messages = 10, .dmarc_pass = 10};
  char *f = fix(&s);
  ASSERT_STR_EQ(f, "ok");
  free(f);
}

TEST(senders_fix_mailing_list_is_not_a_dns_fix) {
  /* a list re-signs as itself and breaks d=example.com: receivers flagged
   * most of it; the advice must not be "sign with d=example.com" */
  dp_sender_t s = {.sender = "groups.io", .third_party = true, .messages = 100, .dmarc_pass = 0,
                   .dkim_foreign = "groups.io", .dkim_own_fail = "example.com",
                   .spf_foreign = "groups.io", .relayed = 40};
  char *f = fix(&s);
  ASSERT_CONTAINS(f, "mailing list or forwarder");
  ASSERT_CONTAINS(f, "40 of 100 failing messages");
  ASSERT_TRUE(strstr(f, "sign with d=") == NULL);
  free(f);
}

TEST(senders_fix_few_relayed_does_not_hide_a_real_fix) {
  dp_sender_t s = {.sender = "sendgrid.net", .third_party = true, .messages = 100,
                   .dmarc_pass = 0, .dkim_foreign = "sendgrid.net", .relayed = 3};
  char *f = fix(&s);
  ASSERT_CONTAINS(f, "DKIM signs as sendgrid.net, not example.com: sign with d=example.com");
  free(f);
}

TEST(senders_fix_own_dkim_failing_comes_first) {
  /* the service already signs as the domain: the key is the problem */
  dp_sender_t s = {.sender = "zendesk.com", .third_party = true, .messages = 10,
                   .dmarc_pass = 0, .dkim_foreign = "zendesk.com",
                   .dkim_own_fail = "example.com", .dkim_own_sel = "zendesk1"};
  char *f = fix(&s);
  ASSERT_CONTAINS(f, "DKIM for d=example.com fails for selector zendesk1: key mismatch or rotation");
  ASSERT_TRUE(strstr(f, "DKIM signs as") == NULL);
  free(f);
}

TEST(senders_fix_unauthenticated) {
  dp_sender_t s = {.sender = "unauthenticated 192.0.2.0/24", .messages = 5};
  char *f = fix(&s);
  ASSERT_CONTAINS(f, "spoofing");
  free(f);
}

TEST(senders_table_folds_small_unauthenticated_networks) {
  dp_sender_t rows[9];
  char names[9][64];
  memset(rows, 0, sizeof rows);
  rows[0].sender = "example.com";
  rows[0].messages = rows[0].dmarc_pass = 1000;
  rows[0].fix = "ok";
  for (int i = 1; i < 9; i++) {
    snprintf(names[i], sizeof names[i], "unauthenticated 192.0.%d.0/24", i);
    rows[i].sender = names[i];
    rows[i].messages = 10 - i;
    rows[i].fix = "spoofing";
  }
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  ASSERT_OK(dp__query_senders_write(rows, 9, "example.com", DP_QFMT_TABLE, f));
  fclose(f);
  ASSERT_CONTAINS(buf, "unauthenticated 192.0.5.0/24");
  ASSERT_TRUE(strstr(buf, "unauthenticated 192.0.6.0/24") == NULL);
  ASSERT_CONTAINS(buf, "unauthenticated (3 more networks)");
  /* the folded line has no reporter count: "-", not 0 */
  const char *fl = strstr(buf, "unauthenticated (3 more networks)");
  const char *pct = NULL;
  for (const char *q = fl; *q && *q != '\n'; q++)
    if (*q == '%') pct = q;
  ASSERT_TRUE(pct != NULL);
  pct++;
  while (*pct == ' ') pct++;
  ASSERT_TRUE(*pct == '-');
  ASSERT_CONTAINS(buf, "1044 messages from 9 senders"); /* totals keep every row */
  free(buf);
  /* JSON lists every network */
  buf = NULL;
  f = open_memstream(&buf, &len);
  ASSERT_OK(dp__query_senders_write(rows, 9, "example.com", DP_QFMT_JSON, f));
  fclose(f);
  ASSERT_CONTAINS(buf, "unauthenticated 192.0.8.0/24");
  ASSERT_TRUE(strstr(buf, "more networks") == NULL);
  free(buf);
}

/* Known services: the advice names the service and its concrete setup. */
static const dp_service_t sendgrid = {
    .pattern = "sendgrid.net", .name = "SendGrid", .kind = "esp",
    .dkim = "Sender Authentication: CNAME s1._domainkey.{domain} → s1.domainkey.uNNN.wlNNN.sendgrid.net",
    .return_path = "CNAME em123.{domain} → uNNN.wlNNN.sendgrid.net",
    .spf = "include:sendgrid.net"};

TEST(senders_fix_service_dkim_and_return_path) {
  dp_sender_t s = {.sender = "sendgrid.net", .third_party = true, .messages = 10,
                   .dkim_foreign = "sendgrid.net", .spf_foreign = "sendgrid.net",
                   .service = &sendgrid};
  char *f = fix(&s);
  ASSERT_STR_EQ(f, "DKIM signs as sendgrid.net, not example.com: sign with d=example.com at "
                   "SendGrid (Sender Authentication: CNAME s1._domainkey.example.com → "
                   "s1.domainkey.uNNN.wlNNN.sendgrid.net); SPF passes for sendgrid.net "
                   "(return-path), not example.com: set a custom return-path under example.com "
                   "at SendGrid (CNAME em123.example.com → uNNN.wlNNN.sendgrid.net) or rely on "
                   "aligned DKIM");
  free(f);
}

TEST(senders_fix_service_spf_include) {
  /* the return-path is already under the domain, but SPF fails for it */
  dp_sender_t s = {.sender = "sendgrid.net", .third_party = true, .messages = 10,
                   .spf_own_fail = true, .service = &sendgrid};
  char *f = fix(&s);
  ASSERT_STR_EQ(f, "add include:sendgrid.net to example.com's SPF record (SendGrid's servers "
                   "fail it)");
  free(f);
}

TEST(senders_fix_service_without_offers) {
  static const dp_service_t mc = {.pattern = "mcsv.net", .name = "Mailchimp", .kind = "esp",
                                  .dkim = NULL, .return_path = "-", .spf = "-"};
  dp_sender_t s = {.sender = "mcsv.net", .third_party = true, .messages = 10, .dmarc_pass = 4,
                   .dkim_foreign = "mcsv.net", .spf_foreign = "mcsv.net", .service = &mc};
  char *f = fix(&s);
  ASSERT_STR_EQ(f, "DKIM signs as mcsv.net, not example.com: sign with d=example.com at Mailchimp "
                   "(custom DKIM); SPF passes for mcsv.net (return-path), not example.com: "
                   "Mailchimp keeps its own return-path, so DMARC needs aligned DKIM");
  free(f);
  s.spf_foreign = NULL;
  s.spf_own_fail = true; /* spf "-": no include to suggest */
  f = fix(&s);
  ASSERT_CONTAINS(f, "; add this sender's IPs/include to example.com's SPF record");
  free(f);
}

/* The same key verifies on other mail (readiness's rule 2): the messages
 * were changed on the way, and a key to compare would send the admin after
 * a DNS record that is right. */
TEST(senders_fix_own_key_good_elsewhere) {
  dp_sender_t s = {.sender = "fwd.test", .third_party = true, .messages = 10,
                   .dkim_own_fail = "rules.test", .dkim_own_sel = "s1", .dkim_own_key_good = true,
                   .spf_foreign = "fwd.test"};
  char *f = dp__query_senders_fix(&s, "rules.test");
  ASSERT_STR_EQ(f, "forwarded: DKIM for d=rules.test (selector s1) verifies on other mail but "
                   "fails on this path, so a forwarder or list changes the messages: not fixable "
                   "in rules.test's DNS; the forwarder must not alter them or receivers must "
                   "trust its ARC seal");
  free(f);
  s.dkim_own_key_good = false;
  f = dp__query_senders_fix(&s, "rules.test");
  ASSERT_CONTAINS(f, "key mismatch or rotation");
  free(f);
}

TEST(senders_fix_own_selector_wording) {
  dp_sender_t s = {.sender = "example.com", .messages = 10, .dkim_own_fail = "example.com",
                   .dkim_own_sel = "s2"};
  char *f = fix(&s);
  ASSERT_STR_EQ(f, "DKIM for d=example.com fails for selector s2: key mismatch or rotation "
                   "(compare the key at s2._domainkey.example.com with the one the signer signs "
                   "with)");
  free(f);
  s.dkim_own_sel = "";
  s.service = &sendgrid;
  f = fix(&s);
  ASSERT_STR_EQ(f, "DKIM for d=example.com fails (selector not reported): key mismatch or "
                   "rotation (compare the published key with the one SendGrid signs with)");
  free(f);
}

TEST(senders_fix_known_list_is_not_a_dns_fix) {
  static const dp_service_t gio = {.pattern = "groups.io", .name = "Groups.io", .kind = "list",
                                   .dkim = "-", .return_path = "-", .spf = "-"};
  dp_sender_t s = {.sender = "groups.io", .third_party = true, .messages = 10,
                   .dkim_foreign = "groups.io", .spf_foreign = "groups.io", .service = &gio};
  char *f = fix(&s);
  ASSERT_CONTAINS(f, "Groups.io is a mailing list: not fixable in example.com's DNS");
  ASSERT_TRUE(strstr(f, "sign with d=example.com at") == NULL);
  free(f);
}

TEST(senders_service_matching_order) {
  dp_services_t *m = dp__query_services_create();
  static const char tsv[] = "sendgrid.net\tSendGrid\tesp\n"
                            "amazonses.com\tAmazon SES\tesp\n"
                            "example.com\tNot us\tesp\n";
  char err[128];
  ASSERT_OK(dp__query_services_add_tsv(m, tsv, sizeof tsv - 1, "t", err, sizeof err));
  char *dk[] = {"example.com:pass", "sendgrid.net:pass"};
  char *sp[] = {"bounce.amazonses.com:pass"};
  dp_sender_t s = {.sender = "example.com", .third_party = false, .messages = 1,
                   .dkim_domains = dk, .n_dkim_domains = 2, .spf_domains = sp,
                   .n_spf_domains = 1};
  /* own sender: its name is never matched, D's own domains are skipped */
  ASSERT_STR_EQ(dp__query_senders_service(m, &s, "example.com")->name, "SendGrid");
  s.sender = "amazonses.com";
  s.third_party = true;
  ASSERT_STR_EQ(dp__query_senders_service(m, &s, "example.com")->name, "Amazon SES");
  s.sender = "unauthenticated 192.0.2.0/24";
  ASSERT_TRUE(dp__query_senders_service(m, &s, "example.com") == NULL);
  dp__query_services_destroy(m);
}
