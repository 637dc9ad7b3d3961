/* SPDX-License-Identifier: MIT */
/* tests/store/test_copy_binary.c - the COPY binary record encoder, decoded
 * here field by field against the documented layouts (int8/int4/bool, text,
 * inet, timestamptz, text[]); edge values; the worst-case reservation and the
 * exact one near a buffer's cap. What the server stores from these rows is
 * checked in tests/store/test_pg_roundtrip.c. */
#include "store/store.h"

#include <arpa/inet.h>

#include "tests/test.h"

/* One decoded row: each field's length (-1 NULL) and bytes. */
struct brow {
  int64_t len[27];
  const unsigned char *val[27];
  size_t size;
};

static uint64_t be(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Decode the row at p; 0 when it is not one whole row of 27 fields. */
static int decode(const char *p, size_t n, struct brow *r) {
  const unsigned char *u = (const unsigned char *)p;
  if (n < 2 || be(u, 2) != 27) return 0;
  size_t off = 2;
  for (int f = 0; f < 27; f++) {
    if (n - off < 4) return 0;
    uint32_t l = (uint32_t)be(u + off, 4);
    off += 4;
    r->len[f] = l == UINT32_MAX ? -1 : (int64_t)l;
    r->val[f] = u + off;
    if (l != UINT32_MAX) {
      if (l > n - off) return 0;
      off += l;
    }
  }
  r->size = off;
  return 1;
}

static bool text_is(const struct brow *r, int f, const char *want) {
  size_t n = strlen(want);
  bool ok = r->len[f] == (int64_t)n && !memcmp(r->val[f], want, n);
  if (!ok) fprintf(stderr, "  field %d: length %lld, want \"%s\"\n", f, (long long)r->len[f], want);
  return ok;
}

/* A text[] field: header as array_send writes it, then the n elements. */
static bool array_is(const struct brow *r, int f, const char *const *want, size_t n) {
  const unsigned char *p = r->val[f];
  int64_t len = r->len[f];
  if (len < 12 || be(p, 4) != (n ? 1u : 0u) || be(p + 4, 4) != 0 || be(p + 8, 4) != 25) return false;
  size_t off = 12;
  if (n) {
    if (len < 20 || be(p + 12, 4) != n || be(p + 16, 4) != 1) return false;
    off = 20;
  }
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(want[i]);
    if ((size_t)len - off < 4 || be(p + off, 4) != l) return false;
    off += 4;
    if ((size_t)len - off < l || memcmp(p + off, want[i], l)) return false;
    off += l;
  }
  return off == (size_t)len;
}

static bool int_is(const struct brow *r, int f, int bytes, uint64_t want) {
  return r->len[f] == bytes && be(r->val[f], bytes) == want;
}

static dp_report_t sample_report(void) {
  dp_report_t r = {0};
  r.org_name = "google.com";
  r.report_id = "1";
  r.domain = "example.com";
  r.begin = 1709251200; /* 2024-03-01 00:00:00 UTC */
  r.end = 1709337599;
  return r;
}

static const dp_reason_t test_reasons[] = {{"forwarded", "via list\tX"}, {"other", ""}};
static const dp_dkim_auth_t test_dkim[] = {{"example.com", "s1", "pass", ""},
                                           {"esp.net", "sel\\2", "fail", "bad \"sig\"\n"}};
static const dp_spf_auth_t test_spf[] = {{"bounce.esp.net", "mfrom", "pass", ""}};

static dp_record_t sample_record(void) {
  dp_record_t rec = {0};
  rec.index = 1;
  snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "2001:db8::1");
  rec.ip_family = 6;
  rec.count = 3;
  rec.disposition = "none";
  rec.pe_dkim = "pass";
  rec.pe_spf = "fail";
  rec.reasons = test_reasons;
  rec.n_reasons = 2;
  rec.header_from = "example.com";
  rec.envelope_from = "bounce.esp.net";
  rec.envelope_to = "";
  rec.dkim = test_dkim;
  rec.n_dkim = 2;
  rec.spf = test_spf;
  rec.n_spf = 1;
  rec.dkim_aligned = true;
  rec.dkim_aligned_strict = true;
  rec.sender = "example.com";
  return rec;
}

TEST(store_bin_header_and_trailer) {
  /* PostgreSQL manual, COPY "File Formats": signature, flags, extension length */
  ASSERT_EQ(DP_STORE_COPY_BIN_HEADER_LEN, 19);
  ASSERT_TRUE(!memcmp(dp_store_copy_bin_header, "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19));
  ASSERT_EQ(DP_STORE_COPY_BIN_TRAILER_LEN, 2);
  ASSERT_TRUE(!memcmp(dp_store_copy_bin_trailer, "\377\377", 2));
}

TEST(store_bin_record_row) {
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_record(&b, -42, &r, &rec));
  struct brow w;
  ASSERT_TRUE(decode(b.data, b.len, &w));
  ASSERT_EQ(w.size, b.len);
  ASSERT_EQ(dp_store_record_bin_row_len(b.data, b.len), b.len);
  ASSERT_EQ(dp_store_record_bin_row_len(b.data, b.len - 1), 0);
  ASSERT_TRUE(int_is(&w, 0, 8, (uint64_t)-42));
  /* 2024-03-01 is 8826 days after 2000-01-01 */
  ASSERT_TRUE(int_is(&w, 1, 8, UINT64_C(8826) * 86400 * 1000000));
  ASSERT_TRUE(int_is(&w, 2, 4, 1));
  ASSERT_EQ(w.len[3], 20);
  ASSERT_TRUE(!memcmp(w.val[3], "\x03\x80\x00\x10\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01", 20));
  ASSERT_TRUE(int_is(&w, 4, 8, 3));
  ASSERT_TRUE(text_is(&w, 5, "none"));
  ASSERT_TRUE(text_is(&w, 6, "pass"));
  ASSERT_TRUE(text_is(&w, 7, "fail"));
  const char *const rt[] = {"forwarded", "other"}, *const rc[] = {"via list\tX", ""};
  ASSERT_TRUE(array_is(&w, 8, rt, 2));
  ASSERT_TRUE(array_is(&w, 9, rc, 2));
  ASSERT_TRUE(text_is(&w, 10, "example.com"));
  ASSERT_TRUE(text_is(&w, 11, "bounce.esp.net"));
  ASSERT_TRUE(text_is(&w, 12, ""));
  const char *const dd[] = {"example.com", "esp.net"}, *const ds[] = {"s1", "sel\\2"},
                    *const dr[] = {"pass", "fail"}, *const dh[] = {"", "bad \"sig\"\n"};
  ASSERT_TRUE(array_is(&w, 13, dd, 2));
  ASSERT_TRUE(array_is(&w, 14, ds, 2));
  ASSERT_TRUE(array_is(&w, 15, dr, 2));
  ASSERT_TRUE(array_is(&w, 16, dh, 2));
  const char *const sd[] = {"bounce.esp.net"}, *const ss[] = {"mfrom"}, *const sr[] = {"pass"},
                    *const sh[] = {""};
  ASSERT_TRUE(array_is(&w, 17, sd, 1));
  ASSERT_TRUE(array_is(&w, 18, ss, 1));
  ASSERT_TRUE(array_is(&w, 19, sr, 1));
  ASSERT_TRUE(array_is(&w, 20, sh, 1));
  ASSERT_TRUE(int_is(&w, 21, 1, 1));
  ASSERT_TRUE(int_is(&w, 22, 1, 1));
  ASSERT_TRUE(int_is(&w, 23, 1, 0));
  ASSERT_TRUE(int_is(&w, 24, 1, 0));
  ASSERT_TRUE(text_is(&w, 25, "example.com"));
  ASSERT_TRUE(int_is(&w, 26, 1, 0));

  /* rows append: a second one, IPv4, no auth results (empty arrays: ndim 0) */
  size_t first = b.len;
  rec.reasons = NULL;
  rec.dkim = NULL;
  rec.spf = NULL;
  rec.n_reasons = rec.n_dkim = rec.n_spf = 0;
  rec.index = 7;
  rec.count = UINT64_C(9223372036854775807);
  rec.third_party = true;
  snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "192.0.2.1");
  rec.ip_family = 4;
  ASSERT_OK(dp_store_encode_record(&b, INT64_MIN, &r, &rec));
  ASSERT_EQ(dp_store_record_bin_row_len(b.data, b.len), first);
  ASSERT_TRUE(decode(b.data + first, b.len - first, &w));
  ASSERT_EQ(first + w.size, b.len);
  ASSERT_TRUE(int_is(&w, 0, 8, UINT64_C(1) << 63));
  ASSERT_TRUE(int_is(&w, 2, 4, 7));
  ASSERT_EQ(w.len[3], 8);
  ASSERT_TRUE(!memcmp(w.val[3], "\x02\x20\x00\x04\xc0\x00\x02\x01", 8));
  ASSERT_TRUE(int_is(&w, 4, 8, UINT64_C(9223372036854775807)));
  for (int f = 8; f <= 20; f++) {
    if (f >= 10 && f <= 12) continue;
    ASSERT_TRUE(array_is(&w, f, NULL, 0));
    ASSERT_EQ(w.len[f], 12);
  }
  ASSERT_TRUE(int_is(&w, 26, 1, 1));
  dp_buf_free(&b);
}

/* The timestamptz field of a row for report begin t. */
static uint64_t ts_of(int64_t t) {
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  r.begin = t;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  struct brow w;
  uint64_t v = 0;
  if (!dp_store_encode_record(&b, 1, &r, &rec) && decode(b.data, b.len, &w) && w.len[1] == 8)
    v = be(w.val[1], 8);
  dp_buf_free(&b);
  return v;
}

TEST(store_bin_timestamps) {
  ASSERT_U64_EQ(ts_of(946684800), 0);
  ASSERT_U64_EQ(ts_of(0), (uint64_t)INT64_C(-946684800000000));
  ASSERT_U64_EQ(ts_of(-1), (uint64_t)INT64_C(-946684801000000));
  ASSERT_U64_EQ(ts_of(253402300799), (uint64_t)((INT64_C(253402300799) - 946684800) * 1000000));
  ASSERT_U64_EQ(ts_of(-62135596800 - 86400), (uint64_t)((INT64_C(-62135596800) - 86400 - 946684800) * 1000000));
  /* microseconds would overflow: a value past PostgreSQL's range, not +-infinity */
  ASSERT_U64_EQ(ts_of(INT64_MAX), (uint64_t)(INT64_MAX - 1));
  ASSERT_U64_EQ(ts_of(INT64_MIN), (uint64_t)(INT64_MIN + 1));
  ASSERT_U64_EQ(ts_of(INT64_C(9300000000000)), (uint64_t)(INT64_MAX - 1));
  ASSERT_U64_EQ(ts_of(-INT64_C(9300000000000)), (uint64_t)(INT64_MIN + 1));
}

TEST(store_bin_values_the_server_must_refuse) {
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  dp_buf_t b;
  dp_buf_init(&b, 0);
  struct brow w;
  /* seq past int4: an 8-byte field (int4recv refuses it), never truncated */
  rec.index = (uint64_t)INT32_MAX + 1;
  ASSERT_OK(dp_store_encode_record(&b, 1, &r, &rec));
  ASSERT_TRUE(decode(b.data, b.len, &w));
  ASSERT_TRUE(int_is(&w, 2, 8, (uint64_t)INT32_MAX + 1));
  dp_buf_reset(&b);
  rec.index = INT32_MAX;
  ASSERT_OK(dp_store_encode_record(&b, 1, &r, &rec));
  ASSERT_TRUE(decode(b.data, b.len, &w));
  ASSERT_TRUE(int_is(&w, 2, 4, INT32_MAX));
  /* an address that does not parse: an empty inet field (inet_recv refuses it) */
  dp_buf_reset(&b);
  snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "not-an-ip");
  ASSERT_OK(dp_store_encode_record(&b, 1, &r, &rec));
  ASSERT_TRUE(decode(b.data, b.len, &w));
  ASSERT_EQ(w.len[3], 0);
  dp_buf_free(&b);
}

TEST(store_bin_invalid_utf8_replaced) {
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  rec.disposition = "a\xff" "b";
  rec.header_from = "\xe2\x82";            /* truncated */
  rec.envelope_to = "x\xed\xa0\x80yyyyyyyyy"; /* surrogate, then a word of ASCII */
  rec.sender = "Z\xC3\xBCrich \xE2\x98\x83 \xf0\x9f\x98\x80"; /* valid: unchanged */
  const char *const dh[] = {"\xc0\xaf", "\x01\x1f\x7f\\\"\t\n\r"};
  dp_dkim_auth_t dk[2] = {{"d", "s", "r", dh[0]}, {"d", "s", "r", dh[1]}};
  rec.dkim = dk;
  rec.n_dkim = 2;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_record(&b, 1, &r, &rec));
  struct brow w;
  ASSERT_TRUE(decode(b.data, b.len, &w));
  ASSERT_TRUE(text_is(&w, 5, "a\xEF\xBF\xBD" "b"));
  ASSERT_TRUE(text_is(&w, 10, "\xEF\xBF\xBD\xEF\xBF\xBD"));
  ASSERT_TRUE(text_is(&w, 12, "x\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDyyyyyyyyy"));
  ASSERT_TRUE(text_is(&w, 25, rec.sender));
  const char *const want[] = {"\xEF\xBF\xBD\xEF\xBF\xBD", "\x01\x1f\x7f\\\"\t\n\r"};
  ASSERT_TRUE(array_is(&w, 16, want, 2));
  dp_buf_free(&b);
}

/* Random hostile strings: the row encoded with room for its worst case and
 * with room for exactly itself is the same, one byte less is DP_ELIMIT with
 * nothing written; the strings decode to their UTF-8-repaired selves. */
static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;
static unsigned rnd(unsigned n) {
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return (unsigned)(rnd_state % n);
}

/* Pieces whose repair does not depend on their neighbours (none starts with
 * a continuation byte), each with its repaired form. */
static const char *const piece[][2] = {
    {"a", "a"}, {"Z", "Z"}, {"\\", "\\"}, {"\"", "\""}, {"\t", "\t"}, {"\n", "\n"},
    {"\r", "\r"}, {"\x01", "\x01"}, {"\x7f", "\x7f"}, {"\xc3\xa9", "\xc3\xa9"},
    {"\xff", "\xEF\xBF\xBD"}, {"\xe2\x82", "\xEF\xBF\xBD\xEF\xBF\xBD"},
    {"\xed\xa0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, {",", ","}, {"{", "{"}, {" ", " "},
    {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"}, {"example.com", "example.com"},
    {"NULL", "NULL"}, {"\\N", "\\N"}};

struct rs {
  char in[96], out[256];
};

static const char *rnd_str(struct rs *s) {
  size_t n = 0, m = 0, k = rnd(9);
  s->in[0] = s->out[0] = '\0';
  for (size_t i = 0; i < k; i++) {
    unsigned j = rnd(sizeof piece / sizeof piece[0]);
    size_t l = strlen(piece[j][0]), lo = strlen(piece[j][1]);
    if (n + l + 1 > sizeof s->in) break;
    memcpy(s->in + n, piece[j][0], l + 1);
    memcpy(s->out + m, piece[j][1], lo + 1);
    n += l;
    m += lo;
  }
  return s->in;
}

TEST(store_bin_reservation_exact_near_cap) {
  static struct rs pool[40];
  for (int round = 0; round < 3000; round++) {
    size_t np = 0;
#define S() rnd_str(&pool[np++])
    dp_report_t r = sample_report();
    r.begin = round % 3 ? 1709251200 : -62135596800 - 86400 * (int64_t)round;
    dp_reason_t rs[3];
    dp_dkim_auth_t dk[3];
    dp_spf_auth_t sp[3];
    dp_record_t rec = sample_record();
    rec.index = round % 7 ? (uint64_t)round * 7919u : (uint64_t)INT32_MAX + (uint64_t)round;
    rec.count = round % 5 ? (uint64_t)round : UINT64_MAX >> 1;
    if (round % 4 == 1) {
      snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "::ffff:192.0.2.1");
    } else if (round % 4 == 2) {
      snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "10.0.0.255");
      rec.ip_family = 4;
    } else if (round % 4 == 3) {
      snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "bogus");
    }
    rec.disposition = S();
    rec.pe_dkim = S();
    rec.pe_spf = S();
    rec.header_from = S();
    rec.envelope_from = S();
    rec.envelope_to = S();
    rec.sender = S();
    rec.n_reasons = rnd(4);
    rec.n_dkim = rnd(4);
    rec.n_spf = rnd(4);
    for (size_t i = 0; i < 3; i++) {
      rs[i].type = S();
      rs[i].comment = S();
      dk[i].domain = S();
      dk[i].selector = S();
      dk[i].result = S();
      dk[i].human_result = S();
      sp[i].domain = S();
      sp[i].scope = S();
      sp[i].result = S();
      sp[i].human_result = S();
    }
#undef S
    rec.reasons = rec.n_reasons ? rs : NULL;
    rec.dkim = rec.n_dkim ? dk : NULL;
    rec.spf = rec.n_spf ? sp : NULL;
    int64_t key = round % 2 ? -(int64_t)round * 1000003 : INT64_MIN + round;

    dp_buf_t fast, exact, less;
    dp_buf_init(&fast, 0);
    ASSERT_OK(dp_buf_puts(&fast, "x\n"));
    ASSERT_OK(dp_store_encode_record(&fast, key, &r, &rec));
    dp_buf_init(&exact, fast.len); /* room for the row and no more */
    ASSERT_OK(dp_buf_puts(&exact, "x\n"));
    ASSERT_OK(dp_store_encode_record(&exact, key, &r, &rec));
    ASSERT_EQ(exact.len, fast.len);
    ASSERT_TRUE(memcmp(exact.data, fast.data, fast.len) == 0);
    dp_buf_init(&less, fast.len - 1);
    ASSERT_OK(dp_buf_puts(&less, "x\n"));
    ASSERT_EQ(dp_store_encode_record(&less, key, &r, &rec), DP_ELIMIT);
    ASSERT_EQ(less.len, 2);
    ASSERT_STR_EQ(less.data, "x\n");

    struct brow w;
    ASSERT_TRUE(decode(fast.data + 2, fast.len - 2, &w));
    ASSERT_EQ(w.size, fast.len - 2);
    ASSERT_TRUE(text_is(&w, 5, pool[0].out));
    ASSERT_TRUE(text_is(&w, 25, pool[6].out));
    const char *want[3];
    for (size_t i = 0; i < rec.n_dkim; i++) want[i] = pool[7 + 10 * i + 5].out; /* human_result */
    ASSERT_TRUE(array_is(&w, 16, rec.n_dkim ? want : NULL, rec.n_dkim));
    dp_buf_free(&fast);
    dp_buf_free(&exact);
    dp_buf_free(&less);
  }
}

/* The IPv4 fast path agrees with inet_pton on what it accepts and what not. */
TEST(store_bin_ipv4_like_inet_pton) {
  static const char *const v4[] = {"0.0.0.0", "1.2.3.4", "255.255.255.255", "10.0.0.255",
                                   "192.0.2.100", "01.2.3.4", "1.2.3.04", "256.1.1.1",
                                   "1.2.3.256", "1.2.3", "1.2.3.4.5", "1.2.3.4 ", " 1.2.3.4",
                                   "1..2.3", "1.2.3.", "a.b.c.d", "1.2.3.4/32", "999.1.1.1",
                                   "100.200.250.199", "0.00.0.0", "", "2001:db8::1"};
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  rec.ip_family = 4;
  for (size_t i = 0; i < sizeof v4 / sizeof v4[0]; i++) {
    snprintf(rec.source_ip, sizeof rec.source_ip, "%s", v4[i]);
    unsigned char a[4];
    bool ok = inet_pton(AF_INET, v4[i], a) == 1;
    dp_buf_t b;
    dp_buf_init(&b, 0);
    ASSERT_OK(dp_store_encode_record(&b, 1, &r, &rec));
    struct brow w;
    ASSERT_TRUE(decode(b.data, b.len, &w));
    if (!ok) {
      ASSERT_EQ(w.len[3], 0);
    } else {
      ASSERT_EQ(w.len[3], 8);
      ASSERT_TRUE(!memcmp(w.val[3], "\x02\x20\x00\x04", 4));
      ASSERT_TRUE(!memcmp(w.val[3] + 4, a, 4));
    }
    dp_buf_free(&b);
  }
}
