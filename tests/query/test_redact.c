/* SPDX-License-Identifier: MIT */
/* tests/query/test_redact.c - --redact: IPv4 keeps its /24, IPv6 its /48,
 * e-mail addresses lose the local part, networks and other text are kept. */
#include "../test.h"
#include "query/query_int.h"

static void check(const char *in, const char *want) {
  char *got = dp__query_redact(in);
  if (!got || strcmp(got, want)) {
    fprintf(stderr, "redact(\"%s\") = \"%s\", want \"%s\"\n", in, got ? got : "(null)", want);
    free(got);
    ASSERT_TRUE(false);
  }
  free(got);
}

TEST(redact_ipv4) {
  check("192.0.2.17", "192.0.2.x");
  check("from 198.51.100.7, 203.0.113.255.", "from 198.51.100.x, 203.0.113.x.");
  check("192.0.2.1:25", "192.0.2.x:25");
  check("unauthenticated 192.0.2.0/24", "unauthenticated 192.0.2.0/24"); /* a network */
  check("1.2.3.4.5 and 256.1.1.1 and 10.0.0", "1.2.3.4.5 and 256.1.1.1 and 10.0.0");
  /* after any character but a digit or a dot, even a letter: a version
   * number loses its last part rather than an address slipping through */
  check("mx:192.0.2.5 relay_10.1.2.3 ip=198.51.100.9", "mx:192.0.2.x relay_10.1.2.x ip=198.51.100.x");
  check("v1.2.3.4", "v1.2.3.x");
  check("11.2.3.4.5", "11.2.3.4.5");
}

TEST(redact_ipv6) {
  check("2001:db8:1:2::5", "2001:db8:1::x");
  check("[2001:db8:abcd:12:0:0:0:1]", "[2001:db8:abcd::x]");
  check("::1", "0:0:0::x");
  check("unauthenticated 2001:db8:1::/48", "unauthenticated 2001:db8:1::/48");
  check("at 12:30:45 UTC", "at 12:30:45 UTC"); /* a time is not an address */
  check("sendgrid.net:pass", "sendgrid.net:pass");
}

TEST(redact_email) {
  check("noreply-dmarc-support@google.com", "redacted@google.com");
  check("<alice.o'neil+dmarc@example.com>", "<redacted@example.com>");
  check("a@b", "redacted@b");
  check("user@ and @host and x@.y", "user@ and @host and x@.y");
  /* internationalised (RFC 6531) and quoted local parts */
  check("j\xC3\xB6hn.doe@ex\xC3\xA4mple.com", "redacted@ex\xC3\xA4mple.com");
  check("\xCE\xB4\xCE\xBF\xCE\xBA@\xCF\x80\xCE\xB1.test", "redacted@\xCF\x80\xCE\xB1.test");
  check("<\"john doe\"@evil.test>", "<redacted@evil.test>");
  check("\"a\\\"b\"@x.test and \"@y", "redacted@x.test and \"@y");
  check("", "");
  ASSERT_TRUE(dp__query_redact(NULL) == NULL);
}

TEST(redact_senders_rows) {
  dp_sender_t s;
  memset(&s, 0, sizeof s);
  s.sender = strdup("unauthenticated 192.0.2.0/24");
  s.source_ips = calloc(2, sizeof *s.source_ips);
  s.source_ips[0] = strdup("192.0.2.10");
  s.source_ips[1] = strdup("2001:db8:5:6::1");
  s.n_source_ips = 2;
  s.reporters = calloc(1, sizeof *s.reporters);
  s.reporters[0] = strdup("dmarc@example.net");
  s.n_reporters = 1;
  s.fix = strdup("ok");
  dp_sender_t *rows = malloc(sizeof *rows);
  rows[0] = s;
  ASSERT_OK(dp__query_senders_redact(rows, 1));
  ASSERT_STR_EQ(rows[0].sender, "unauthenticated 192.0.2.0/24");
  ASSERT_STR_EQ(rows[0].source_ips[0], "192.0.2.x");
  ASSERT_STR_EQ(rows[0].source_ips[1], "2001:db8:5::x");
  ASSERT_STR_EQ(rows[0].reporters[0], "redacted@example.net");
  dp__query_senders_free(rows, 1);
}
