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
  ASSERT_CONTAINS(f, "DKIM for d=example.com fails (selector zendesk1)");
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
