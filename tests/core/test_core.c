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

TEST(core_buf_grows) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  for (int i = 0; i < 100000; i++) ASSERT_OK(dp_buf_putc(&b, (char)('a' + i % 26)));
  ASSERT_EQ(b.len, 100000);
  ASSERT_EQ(b.data[26], 'a');
  ASSERT_EQ(b.data[100000], '\0');
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
