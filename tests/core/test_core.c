/* SPDX-License-Identifier: MIT */
/* tests/core/test_core.c - error table, capped buffers, hash and time helpers. */
#include "core/core.h"
#include "../test.h"

TEST(core_strerror) {
  ASSERT_STR_EQ(dp_strerror(0), "success");
  ASSERT_STR_EQ(dp_strerror(DP_EGZIP), "corrupt or truncated gzip stream");
  ASSERT_STR_EQ(dp_err_name(DP_ELIMIT), "DP_ELIMIT");
  ASSERT_STR_EQ(dp_err_name(-4999), "DP_UNKNOWN");
  ASSERT_STR_EQ(dp_err_name(-2), "ENOENT"); /* libuv codes pass through */
}

TEST(core_buf_cap) {
  dp_buf_t b;
  dp_buf_init(&b, 8);
  ASSERT_OK(dp_buf_puts(&b, "abcd"));
  ASSERT_OK(dp_buf_append(&b, "efgh", 4));
  ASSERT_EQ(dp_buf_putc(&b, 'x'), DP_ELIMIT);
  ASSERT_EQ(b.len, 8);
  ASSERT_STR_EQ(b.data, "abcdefgh"); /* unchanged by the failed append */
  dp_buf_reset(&b);
  ASSERT_OK(dp_buf_printf(&b, "%d-%s", 42, "ok"));
  ASSERT_STR_EQ(b.data, "42-ok");
  size_t n;
  char *s = dp_buf_steal(&b, &n);
  ASSERT_EQ(n, 5);
  ASSERT_TRUE(b.data == NULL && b.len == 0);
  free(s);
  dp_buf_free(&b);
}

TEST(core_buf_truncate) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_truncate(&b, 0); /* nothing allocated yet: nothing to do */
  ASSERT_EQ(b.len, 0);
  ASSERT_OK(dp_buf_puts(&b, "row one\n"));
  size_t mark = b.len;
  ASSERT_OK(dp_buf_puts(&b, "half a r"));
  dp_buf_truncate(&b, mark);
  ASSERT_EQ(b.len, mark);
  ASSERT_STR_EQ(b.data, "row one\n");
  dp_buf_truncate(&b, mark + 5); /* past the end: unchanged */
  ASSERT_STR_EQ(b.data, "row one\n");
  dp_buf_free(&b);
}

TEST(core_buf_grows) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  for (int i = 0; i < 100000; i++) ASSERT_OK(dp_buf_putc(&b, (char)('a' + i % 26)));
  ASSERT_EQ(b.len, 100000);
  ASSERT_EQ(b.data[26], 'a');
  ASSERT_EQ(b.data[100000], '\0');
  dp_buf_free(&b);
}

TEST(core_buf_put_u64) {
  dp_buf_t b;
  dp_buf_init(&b, 24);
  const uint64_t v[] = {0, 7, 10, 99, 1000000, UINT64_MAX};
  const char *want[] = {"0", "7", "10", "99", "1000000", "18446744073709551615"};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    dp_buf_reset(&b);
    ASSERT_OK(dp_buf_put_u64(&b, v[i]));
    ASSERT_STR_EQ(b.data, want[i]);
  }
  /* all or nothing at the cap */
  dp_buf_reset(&b);
  ASSERT_OK(dp_buf_puts(&b, "0123456789"));
  ASSERT_EQ(dp_buf_put_u64(&b, UINT64_MAX), DP_ELIMIT);
  ASSERT_STR_EQ(b.data, "0123456789");
  dp_buf_free(&b);
}

TEST(core_hash) {
  /* FNV-1a 64 test vectors */
  ASSERT_U64_EQ(dp_hash64(DP_HASH_INIT, "", 0), UINT64_C(0xcbf29ce484222325));
  ASSERT_U64_EQ(dp_hash64(DP_HASH_INIT, "a", 1), UINT64_C(0xaf63dc4c8601ec8c));
  ASSERT_U64_EQ(dp_hash64(DP_HASH_INIT, "foobar", 6), UINT64_C(0x85944171f73967e8));
}

TEST(core_time) {
  char t[32];
  dp_time_iso8601(0, t, sizeof t);
  ASSERT_STR_EQ(t, "1970-01-01T00:00:00Z");
  dp_time_iso8601(1711897200, t, sizeof t);
  ASSERT_STR_EQ(t, "2024-03-31T15:00:00Z");
}

TEST(core_limits_default) {
  dp_limits_t l;
  dp_limits_default(&l);
  ASSERT_TRUE(l.max_zip_entries < 20000);  /* the hostile zip has 20000 */
  ASSERT_TRUE(l.max_xml_depth < 1000);
  ASSERT_TRUE(l.max_ratio > 0 && l.max_ratio < 1000);
}

/* dp_json_string's contract spelled one code point at a time: the reference
 * the run-copying encoder must match byte for byte. */
static void json_reference(dp_buf_t *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  dp_buf_putc(b, '"');
  while (n) {
    uint32_t cp;
    size_t k = dp_utf8_next(p, n, &cp);
    p += k, n -= k;
    if (cp == '"') dp_buf_puts(b, "\\\"");
    else if (cp == '\\') dp_buf_puts(b, "\\\\");
    else if (cp == '\b') dp_buf_puts(b, "\\b");
    else if (cp == '\f') dp_buf_puts(b, "\\f");
    else if (cp == '\n') dp_buf_puts(b, "\\n");
    else if (cp == '\r') dp_buf_puts(b, "\\r");
    else if (cp == '\t') dp_buf_puts(b, "\\t");
    else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029)
      dp_buf_printf(b, "\\u%04x", (unsigned)cp);
    else
      dp_utf8_put(b, cp);
  }
  dp_buf_putc(b, '"');
}

static const char *json_of(dp_buf_t *b, const char *s) {
  dp_buf_reset(b);
  return dp_json_string(b, s) ? "<error>" : b->data;
}

TEST(core_json_string) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_STR_EQ(json_of(&b, ""), "\"\"");
  ASSERT_STR_EQ(json_of(&b, "mail.example.com"), "\"mail.example.com\"");
  ASSERT_STR_EQ(json_of(&b, "a\"b\\c"), "\"a\\\"b\\\\c\"");
  ASSERT_STR_EQ(json_of(&b, "\t\n\r\b\f\x01\x1f\x7f"), "\"\\t\\n\\r\\b\\f\\u0001\\u001f\\u007f\"");
  /* well-formed UTF-8 is kept, U+2028/U+2029 are escaped */
  ASSERT_STR_EQ(json_of(&b, "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7"),
                "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7\"");
  ASSERT_STR_EQ(json_of(&b, "a\xE2\x80\xA8" "b\xE2\x80\xA9"), "\"a\\u2028b\\u2029\"");
  /* the C1 controls (U+0080-U+009F: 8-bit CSI is U+009B) are escaped */
  ASSERT_STR_EQ(json_of(&b, "a\xC2\x9B"
                            "31m\xC2\x80\xC2\x9F\xC2\xA0"),
                "\"a\\u009b31m\\u0080\\u009f\xC2\xA0\"");
  /* ill-formed: lone continuation, truncated, overlong, surrogate, > U+10FFFF */
  ASSERT_STR_EQ(json_of(&b, "x\x80y"), "\"x\xEF\xBF\xBDy\"");
  ASSERT_STR_EQ(json_of(&b, "x\xE2\x82"), "\"x\xEF\xBF\xBD\"");
  ASSERT_STR_EQ(json_of(&b, "\xC0\xAF"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\"");
  ASSERT_STR_EQ(json_of(&b, "\xED\xA0\x80"), "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
  ASSERT_STR_EQ(json_of(&b, "\xF4\x90\x80\x80"),
                "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
  ASSERT_STR_EQ(json_of(&b, "\xEF\xBF\xBD"), "\"\xEF\xBF\xBD\"");

  /* random strings over the bytes that matter, against the reference */
  static const unsigned char alphabet[] = {
      'a',  'Z',  '0',  ' ',  '~',  '"',  '\\', '\n', 0x01, 0x1f, 0x7f, 0x80, 0x82, 0xA0, 0xA8,
      0xA9, 0xBF, 0xC0, 0xC2, 0xC3, 0xDF, 0xE0, 0xE2, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0x9B};
  dp_buf_t ref;
  dp_buf_init(&ref, 0);
  uint64_t x = 88172645463325252u;
  char s[40];
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    size_t len = (size_t)(x % (sizeof s - 1));
    for (size_t j = 0; j < len; j++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      s[j] = (char)alphabet[x % sizeof alphabet];
    }
    s[len] = '\0';
    dp_buf_reset(&ref);
    json_reference(&ref, s);
    const char *got = json_of(&b, s);
    if (strcmp(got, ref.data)) {
      fprintf(stderr, "input %d: \"%s\": got %s, want %s\n", i, s, got, ref.data);
      ASSERT_TRUE(0);
    }
  }
  dp_buf_free(&ref);
  dp_buf_free(&b);
}

static const char *term_of(const char *s) {
  static char out[256];
  return dp_term_copy(s, out, sizeof out);
}

/* dp_term_copy: what could drive a terminal or forge a line becomes '?'
 * (C0, DEL, C1, bidirectional controls, bytes that are not UTF-8); other
 * text, U+FFFD itself included, is kept; a cut never splits a character.
 * dp_buf_put_term appends the same. */
TEST(core_term_text) {
  ASSERT_STR_EQ(term_of(""), "");
  ASSERT_STR_EQ(term_of("reports/google.com!example.com!1!2.zip"),
                "reports/google.com!example.com!1!2.zip");
  ASSERT_STR_EQ(term_of("a\nfake: 9 reports\r\t\x1b]0;T\x07\x7f"), "a?fake: 9 reports???]0;T??");
  ASSERT_STR_EQ(term_of("c1\xC2\x9B"
                        "31m \xC2\x85"),
                "c1?31m ?");
  ASSERT_STR_EQ(term_of("rtl\xE2\x80\xAE"
                        "KCAP \xE2\x80\x8F \xE2\x81\xA6x\xE2\x81\xA9"),
                "rtl?KCAP ? ?x?");
  ASSERT_STR_EQ(term_of("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7 \xEF\xBF\xBD"),
                "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA7 \xEF\xBF\xBD");
  ASSERT_STR_EQ(term_of("x\xFFy\xE2\x82"), "x?y?");
  char small[6];
  ASSERT_STR_EQ(dp_term_copy("ab\xE2\x82\xAC"
                             "c",
                             small, sizeof small),
                "ab\xE2\x82\xAC");
  ASSERT_STR_EQ(dp_term_copy("abcd\xE2\x82\xAC", small, sizeof small), "abcd");
  ASSERT_STR_EQ(dp_term_copy("a\nbcdef", small, sizeof small), "a?bcd");
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_buf_puts(&b, "x: "));
  ASSERT_OK(dp_buf_put_term(&b, "two\nlines\xC2\x9B"));
  ASSERT_OK(dp_buf_put_term(&b, ""));
  ASSERT_STR_EQ(b.data, "x: two?lines?");
  ASSERT_EQ(b.len, strlen(b.data));
  dp_buf_free(&b);
}
