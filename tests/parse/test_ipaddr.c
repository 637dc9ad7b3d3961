/* SPDX-License-Identifier: MIT */
/* tests/parse/test_ipaddr.c - parse/ipaddr.c against libc's inet_pton and
 * inet_ntop, whose output it must reproduce byte for byte (stored source_ip
 * and sender networks must not change): edge cases and random addresses. */
#include "parse/parse_int.h"
#include "tests/test.h"

#include <arpa/inet.h>
#include <stdint.h>

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Both directions for one text: same family, bytes and canonical text. */
static int same_as_libc(const char *s) {
  unsigned char a[16], b[16];
  int fam = dp__ip_parse(s, a);
  int want = inet_pton(AF_INET, s, b) == 1 ? 4 : inet_pton(AF_INET6, s, b) == 1 ? 6 : 0;
  if (fam != want) {
    fprintf(stderr, "family of \"%s\": %d, libc %d\n", s, fam, want);
    return 0;
  }
  if (!fam) return 1;
  if (memcmp(a, b, fam == 4 ? 4 : 16)) {
    fprintf(stderr, "bytes of \"%s\" differ\n", s);
    return 0;
  }
  char t1[DP__IP_TEXT_MAX], t2[DP__IP_TEXT_MAX];
  size_t n = dp__ip_format(a, fam, t1);
  inet_ntop(fam == 4 ? AF_INET : AF_INET6, a, t2, sizeof t2);
  if (strcmp(t1, t2) || n != strlen(t2)) {
    fprintf(stderr, "text of \"%s\": \"%s\", libc \"%s\"\n", s, t1, t2);
    return 0;
  }
  return 1;
}

TEST(ipaddr_edge_cases_match_libc) {
  static const char *const cases[] = {
      "0.0.0.0", "255.255.255.255", "192.0.2.1", "10.0.0.10", "1.2.3.4", "01.2.3.4",
      "1.2.3.04", "1.2.3.256", "1.2.3", "1.2.3.4.5", "1.2.3.4.", ".1.2.3", "1..2.3",
      "1234.1.1.1", "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4", "", "0", "a.b.c.d", "1.2.3.0x1",
      "::", "::1", "1::", "::ffff:1.2.3.4", "::1.2.3.4", "::0.0.0.1", "::ffff:0.0.0.0",
      "2001:db8::1", "2001:DB8:0:0:1:0:0:1", "2001:db8:0:1:1:1:1:1", "0:0:1:0:0:0:1:0",
      "1:0:0:1:0:0:1:0", "fe80::1%eth0", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", ":::",
      "0:0:0:0:0:1:0:0", "0:0:0:0:0:0:0:1", "0:0:0:0:0:ffff:102:304", "0:0:0:0:1:ffff:102:304",
      "0:0:0:0:0:fffe:102:304", "64:ff9b::192.0.2.33", "0:0:0:0:0:0:1:0", "1::2:3",
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "00001::", "12345::"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) ASSERT_TRUE(same_as_libc(cases[i]));
  char t[DP__IP_TEXT_MAX];
  unsigned char a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1};
  ASSERT_EQ(dp__ip_format(a, 6, t), 17);
  ASSERT_STR_EQ(t, "2001:db8::1:0:0:1");
}

TEST(ipaddr_random_match_libc) {
  for (int round = 0; round < 200000; round++) {
    unsigned char a[16];
    uint64_t r = next(), z = next();
    for (int i = 0; i < 8; i++) {
      /* mostly zero groups so that every run length and position occurs */
      unsigned w = (z >> (2 * i) & 3) ? 0 : (unsigned)(r >> (8 * i)) & 0xffff;
      if ((z >> 20 & 7) == 0 && i == 5) w = 0xffff;
      a[2 * i] = (unsigned char)(w >> 8);
      a[2 * i + 1] = (unsigned char)w;
    }
    if (round & 1) { /* small v4 octets too */
      for (int i = 12; i < 16; i++) a[i] = (unsigned char)(next() % (i & 1 ? 256 : 12));
    }
    char t1[DP__IP_TEXT_MAX], t2[DP__IP_TEXT_MAX];
    dp__ip_format(a, 6, t1);
    inet_ntop(AF_INET6, a, t2, sizeof t2);
    ASSERT_STR_EQ(t1, t2);
    ASSERT_TRUE(same_as_libc(t2));
    dp__ip_format(a + 12, 4, t1);
    inet_ntop(AF_INET, a + 12, t2, sizeof t2);
    ASSERT_STR_EQ(t1, t2);
    ASSERT_TRUE(same_as_libc(t2));
  }
}


/* The parser stores a dotted quad dp__ip_quad_canon accepts as it came,
 * without formatting it: that is only right if the text is exactly what
 * inet_ntop writes for its bytes, and if everything it accepts libc does. */
static int quad_canon_ok(const char *s) {
  unsigned char a[16], b[4];
  size_t n = dp__ip_quad_canon(s, a);
  if (!n) return same_as_libc(s); /* refused: the parser goes on as before */
  char t[INET_ADDRSTRLEN];
  if (inet_pton(AF_INET, s, b) != 1 || memcmp(a, b, 4) || !inet_ntop(AF_INET, b, t, sizeof t) ||
      strcmp(t, s) || n != strlen(s)) {
    fprintf(stderr, "quad \"%s\" accepted but not canonical\n", s);
    return 0;
  }
  return 1;
}

TEST(ipaddr_quad_canon_is_inet_ntop_text) {
  static const char *const accepted[] = {"0.0.0.0", "255.255.255.255", "192.0.2.1", "10.0.0.10",
                                         "1.2.3.4", "100.20.3.0", "9.99.199.249"};
  static const char *const refused[] = {"01.2.3.4", "1.2.3.04", "1.2.3.00", "1.2.3.256",
                                        "1.2.3", "1.2.3.4.5", "1.2.3.4.", "1.2.3.4 ", " 1.2.3.4",
                                        "", "1..2.3", "::1", "::ffff:1.2.3.4", "1234.1.1.1"};
  for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
    unsigned char a[16];
    ASSERT_EQ(dp__ip_quad_canon(accepted[i], a), strlen(accepted[i]));
    ASSERT_EQ(quad_canon_ok(accepted[i]), 1);
  }
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    unsigned char a[16];
    ASSERT_EQ(dp__ip_quad_canon(refused[i], a), 0);
    ASSERT_EQ(quad_canon_ok(refused[i]), 1);
  }
  /* every address libc formats is accepted as itself */
  for (int round = 0; round < 200000; round++) {
    unsigned char b[4];
    uint32_t r = (uint32_t)next();
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(round & 1 ? r >> (8 * i) : (r >> (8 * i)) % 12);
    char t[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, b, t, sizeof t);
    unsigned char a[16];
    ASSERT_EQ(dp__ip_quad_canon(t, a), strlen(t));
    ASSERT_TRUE(memcmp(a, b, 4) == 0);
    ASSERT_EQ(quad_canon_ok(t), 1);
  }
}
