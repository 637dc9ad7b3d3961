/* SPDX-License-Identifier: MIT */
/* tests/parse/test_align.c - organizational domains from the Public Suffix
 * List, relaxed and strict alignment, and the per-record flags, sender key
 * and third-party verdict of dp_align_record(). */
#include "parse/parse.h"
#include "tests/test.h"

static void org(const char *in, const char *want) {
  char out[256];
  int rc = dp_align_org_domain(in, out, sizeof out);
  if (rc || strcmp(out, want) != 0) {
    fprintf(stderr, "org(\"%s\") = \"%s\" (rc %d), want \"%s\"\n", in, out, rc, want);
    dp_test_failed = 1;
  }
}

TEST(align_org_domain) {
  ASSERT_OK(dp_align_global_init());
  ASSERT_OK(dp_align_global_init()); /* idempotent */
  org("example.com", "example.com");
  org("mail.example.com", "example.com");
  org("a.b.c.example.com", "example.com");
  org("a.example.co.uk", "example.co.uk");
  org("example.co.uk", "example.co.uk");
  org("co.uk", "co.uk");   /* a public suffix is its own org domain */
  org("com", "com");
  org("MAIL.Example.COM.", "example.com");
  org(" example.org ", "example.org");
  org("foo.bar.s3.amazonaws.com", "bar.s3.amazonaws.com"); /* private section */
  org("", "");
  /* an address literal where a domain belongs is itself, not "2.1" */
  org("192.0.2.1", "192.0.2.1");
  org("2001:db8::1", "2001:db8::1");
  org("1.2.3.example.com", "example.com");
  org("mail.b\xC3\xBC"
      "cher.example",
      "xn--bcher-kva.example"); /* A-labels */
  org("b\xC3\xBC"
      "cher.\xFF",
      "b\xC3\xBC"
      "cher.\xFF"); /* not IDNA: as it is */
  char small[8];
  ASSERT_EQ(dp_align_org_domain("mail.example.com", small, sizeof small), DP_ELIMIT);
  char ok[12];
  ASSERT_OK(dp_align_org_domain("mail.example.com", ok, sizeof ok));
  ASSERT_STR_EQ(ok, "example.com");
}

TEST(align_domains_relaxed_and_strict) {
  ASSERT_TRUE(dp_align_domains("example.com", "example.com", true));
  ASSERT_TRUE(dp_align_domains("Example.COM.", "example.com", true));
  ASSERT_FALSE(dp_align_domains("mail.example.com", "example.com", true));
  ASSERT_TRUE(dp_align_domains("mail.example.com", "example.com", false));
  ASSERT_TRUE(dp_align_domains("a.example.co.uk", "b.example.co.uk", false));
  ASSERT_FALSE(dp_align_domains("a.example.co.uk", "b.example.co.uk", true));
  ASSERT_FALSE(dp_align_domains("example.co.uk", "other.co.uk", false));
  ASSERT_FALSE(dp_align_domains("example.com", "example.net", false));
  ASSERT_FALSE(dp_align_domains("notexample.com", "example.com", false));
  ASSERT_FALSE(dp_align_domains("", "", false));
  ASSERT_FALSE(dp_align_domains("", "", true));
  ASSERT_FALSE(dp_align_domains(".", "example.com", false));
  ASSERT_FALSE(dp_align_domains(NULL, "example.com", false));
  ASSERT_FALSE(dp_align_domains("example.com", "", false));
  /* a Unicode name and its A-labels are one domain; case is folded in both
   * scripts */
  ASSERT_TRUE(dp_align_domains("b\xC3\xBC"
                               "cher.example",
                               "xn--bcher-kva.example", true));
  ASSERT_TRUE(dp_align_domains("\xC3\x89XAMPLE.fr", "mail.\xC3\xA9xample.fr", false));
  ASSERT_FALSE(dp_align_domains("\xC3\x89XAMPLE.fr", "mail.\xC3\xA9xample.fr", true));
  ASSERT_TRUE(dp_align_domains("mail.xn--xample-9ua.fr", "\xC3\xA9xample.fr", false));
  ASSERT_FALSE(dp_align_domains("b\xC3\xBC"
                                "cher.example",
                                "bucher.example", false));
  /* the cache must not confuse names that share a slot: many distinct ones */
  char a[64], b[64];
  for (int i = 0; i < 1000; i++) {
    snprintf(a, sizeof a, "h%d.d%d.example.co.uk", i, i % 37);
    snprintf(b, sizeof b, "d%d.example.co.uk", i % 37);
    ASSERT_TRUE(dp_align_domains(a, b, false));
    snprintf(b, sizeof b, "other%d.co.uk", i);
    ASSERT_FALSE(dp_align_domains(a, b, false));
  }
}

static dp_record_t make(const char *ip, const char *hfrom, const dp_dkim_auth_t *dk, size_t ndk,
                        const dp_spf_auth_t *sp, size_t nsp) {
  dp_record_t r;
  memset(&r, 0, sizeof r);
  snprintf(r.source_ip, sizeof r.source_ip, "%s", ip);
  r.ip_family = strchr(ip, ':') ? 6 : 4;
  r.header_from = hfrom;
  r.dkim = dk;
  r.n_dkim = ndk;
  r.spf = sp;
  r.n_spf = nsp;
  return r;
}

#define FLAGS(r) ((r).dkim_aligned * 1000 + (r).dkim_aligned_strict * 100 + (r).spf_aligned * 10 + (r).spf_aligned_strict)

TEST(align_record_dkim) {
  char sb[300];
  dp_dkim_auth_t dk[] = {
    {"sendgrid.net", "s1", "pass", ""},
    {"mail.example.com", "s2", "pass", ""},
  };
  dp_record_t r = make("192.0.2.10", "example.com", dk, 2, NULL, 0);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 1000);
  ASSERT_STR_EQ(r.sender, "sendgrid.net"); /* first passing DKIM d= */
  ASSERT_TRUE(r.sender == sb);
  ASSERT_TRUE(r.third_party);
  /* strict needs the exact domain; result "PASS" counts too */
  dp_dkim_auth_t dk2[] = {{"EXAMPLE.com.", "s", "PASS", ""}};
  r = make("192.0.2.10", "example.com", dk2, 1, NULL, 0);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 1100);
  ASSERT_STR_EQ(r.sender, "example.com");
  ASSERT_FALSE(r.third_party);
  /* a failing aligned signature never aligns */
  dp_dkim_auth_t dk3[] = {{"example.com", "s", "fail", ""}, {"esp.test", "s", "pass", ""}};
  r = make("192.0.2.10", "example.com", dk3, 2, NULL, 0);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 0);
  ASSERT_STR_EQ(r.sender, "esp.test");
  ASSERT_TRUE(r.third_party);
}

TEST(align_record_spf_scopes) {
  char sb[300];
  /* helo pass does not count; mfrom pass does; absent scope counts */
  dp_spf_auth_t helo[] = {{"example.com", "helo", "pass", ""}};
  dp_record_t r = make("192.0.2.10", "example.com", NULL, 0, helo, 1);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 0);
  ASSERT_STR_EQ(r.sender, "unauthenticated 192.0.2.0/24");
  ASSERT_FALSE(r.third_party);
  dp_spf_auth_t mfrom[] = {{"bounce.example.com", "mfrom", "pass", ""}};
  r = make("192.0.2.10", "example.com", NULL, 0, mfrom, 1);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 10);
  ASSERT_STR_EQ(r.sender, "example.com");
  dp_spf_auth_t noscope[] = {{"example.com", "", "pass", ""}};
  r = make("192.0.2.10", "example.com", NULL, 0, noscope, 1);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 11);
  dp_spf_auth_t softfail[] = {{"example.com", "mfrom", "softfail", ""}};
  r = make("192.0.2.10", "example.com", NULL, 0, softfail, 1);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 0);
}

TEST(align_record_sender_prefers_spf) {
  char sb[300];
  dp_dkim_auth_t dk[] = {{"example.com", "s", "pass", ""}};
  dp_spf_auth_t sp[] = {{"bounces.mailgun.org", "mfrom", "pass", ""}};
  dp_record_t r = make("203.0.113.5", "example.com", dk, 1, sp, 1);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 1100);
  ASSERT_STR_EQ(r.sender, "mailgun.org");
  ASSERT_TRUE(r.third_party);
}

TEST(align_record_psl_edges) {
  char sb[300];
  dp_dkim_auth_t dk[] = {{"b.example.co.uk", "s", "pass", ""}};
  dp_record_t r = make("192.0.2.1", "a.example.co.uk", dk, 1, NULL, 0);
  dp_align_record(&r, "example.co.uk", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 1000);
  ASSERT_STR_EQ(r.sender, "example.co.uk");
  ASSERT_FALSE(r.third_party);
  dp_dkim_auth_t dk2[] = {{"other.co.uk", "s", "pass", ""}};
  r = make("192.0.2.1", "example.co.uk", dk2, 1, NULL, 0);
  dp_align_record(&r, "example.co.uk", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 0);
  ASSERT_STR_EQ(r.sender, "other.co.uk");
  ASSERT_TRUE(r.third_party);
  /* an empty passing domain neither aligns nor names a sender */
  dp_dkim_auth_t dk3[] = {{"", "s", "pass", ""}};
  dp_spf_auth_t sp3[] = {{"", "mfrom", "pass", ""}};
  r = make("192.0.2.1", "example.com", dk3, 1, sp3, 1);
  dp_align_record(&r, "example.com", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 0);
  ASSERT_STR_EQ(r.sender, "unauthenticated 192.0.2.0/24");
}

TEST(align_record_header_from_fallback_and_unauth_v6) {
  char sb[300];
  dp_dkim_auth_t dk[] = {{"news.example.org", "s", "pass", ""}};
  /* no header_from: the policy domain is the target */
  dp_record_t r = make("192.0.2.1", "", dk, 1, NULL, 0);
  dp_align_record(&r, "example.org", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 1000);
  ASSERT_FALSE(r.third_party);
  r = make("2001:db8:abcd:1234::1", "example.org", NULL, 0, NULL, 0);
  dp_align_record(&r, "example.org", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r), 0);
  ASSERT_STR_EQ(r.sender, "unauthenticated 2001:db8:abcd::/48");
  ASSERT_FALSE(r.third_party);
  /* flags from a previous use of the struct are cleared */
  dp_record_t r2 = make("192.0.2.200", "example.org", NULL, 0, NULL, 0);
  r2.dkim_aligned = r2.spf_aligned_strict = true;
  dp_align_record(&r2, "example.org", sb, sizeof sb);
  ASSERT_EQ(FLAGS(r2), 0);
  ASSERT_STR_EQ(r2.sender, "unauthenticated 192.0.2.0/24");
}

/* Results are cached per thread by the inputs alignment reads. A record with
 * more than 8 SPF results is never cached; nine extra failing results change
 * nothing else, so each random record is checked against its uncached twin,
 * in an order where most lookups hit the cache, and the unauthenticated
 * sender always follows the record's own address. */
TEST(align_record_cache_matches_uncached) {
  static const char *const doms[] = {"example.com", "Mail.Example.COM.", "example.co.uk",
                                     "co.uk", "esp.net", "bounce.esp.net", "", "com",
                                     "a.b.example.org", "EXAMPLE.com", "x.s3.amazonaws.com"};
  static const char *const res[] = {"pass", "fail", "PASS", "softfail", ""};
  static const char *const scopes[] = {"", "mfrom", "helo", "MFROM"};
  static const char *const ips[] = {"192.0.2.7", "198.51.100.9", "2001:db8:1:2::3", "10.1.2.3"};
  uint64_t st = 7;
#define R(n) (st = st * 6364136223846793005ull + 1442695040888963407ull, (size_t)((st >> 33) % (n)))
  for (int round = 0; round < 20000; round++) {
    dp_spf_auth_t sp[12];
    dp_dkim_auth_t dk[3];
    size_t nsp = R(3), ndk = R(3);
    for (size_t i = 0; i < nsp; i++) {
      sp[i].domain = doms[R(11)];
      sp[i].scope = scopes[R(4)];
      sp[i].result = res[R(5)];
      sp[i].human_result = "";
    }
    for (size_t i = 0; i < ndk; i++) {
      dk[i].domain = doms[R(11)];
      dk[i].result = res[R(5)];
      dk[i].selector = dk[i].human_result = "";
    }
    for (size_t i = nsp; i < nsp + 9; i++) {
      sp[i].domain = "example.com";
      sp[i].scope = "mfrom";
      sp[i].result = "fail";
      sp[i].human_result = "";
    }
    const char *hf = doms[R(11)], *pol = doms[R(4)], *ip = ips[R(4)];
    dp_record_t a, b;
    memset(&a, 0, sizeof a);
    snprintf(a.source_ip, sizeof a.source_ip, "%s", ip);
    a.header_from = hf;
    a.dkim = dk;
    a.n_dkim = ndk;
    a.spf = sp;
    a.n_spf = nsp;
    b = a;
    b.n_spf = nsp + 9; /* uncached */
    char sa[300], sb[300];
    dp_align_record(&a, pol, sa, sizeof sa);
    dp_align_record(&b, pol, sb, sizeof sb);
    ASSERT_STR_EQ(a.sender, b.sender);
    ASSERT_EQ(a.dkim_aligned, b.dkim_aligned);
    ASSERT_EQ(a.dkim_aligned_strict, b.dkim_aligned_strict);
    ASSERT_EQ(a.spf_aligned, b.spf_aligned);
    ASSERT_EQ(a.spf_aligned_strict, b.spf_aligned_strict);
    ASSERT_EQ(a.third_party, b.third_party);
  }
#undef R
}

TEST(align_global_cleanup_and_reinit) {
  dp_align_global_cleanup();
  dp_align_global_cleanup(); /* twice is harmless */
  ASSERT_TRUE(dp_align_domains("x.example.com", "example.com", false)); /* lazy re-init */
  ASSERT_OK(dp_align_global_init());
  dp_align_global_cleanup();
}
