/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_adler.c - dp__adler32 (ingest/unpack_adler.c) against
 * zlib's adler32_z, whose values are stored as report fingerprints: every
 * length around the 16-byte steps and the 5552-byte blocks, unaligned
 * starts, chained calls, all-0xff worst cases and random data. */
#include "ingest/unpack_int.h"
#include "tests/test.h"

#include <stdint.h>
#include <zlib.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

TEST(adler_every_length_and_start_matches_zlib) {
  enum { MAX = 12000 };
  unsigned char *buf = malloc(MAX + 16);
  ASSERT_TRUE(buf != NULL);
  for (size_t i = 0; i < MAX + 16; i++) buf[i] = (unsigned char)next();
  for (size_t len = 0; len <= MAX; len += len < 64 ? 1 : len < 5600 ? 7 : 331) {
    for (size_t off = 0; off < 16; off += 5) {
      unsigned long want = adler32_z(1, buf + off, len), got = dp__adler32(1, buf + off, len);
      if (want != got) {
        free(buf);
        DP_FAIL_("len %zu off %zu: %08lx, zlib %08lx", len, off, got, want);
      }
    }
  }
  /* the block edge exactly */
  for (size_t len = 5536; len <= 5600; len++) ASSERT_EQ(dp__adler32(1, buf, len), adler32_z(1, buf, len));
  free(buf);
}

TEST(adler_worst_case_bytes_and_start_values) {
  enum { LEN = 200000 };
  unsigned char *ff = malloc(LEN);
  ASSERT_TRUE(ff != NULL);
  memset(ff, 0xff, LEN);
  /* the largest a and b a previous sum can leave */
  static const unsigned long starts[] = {1, 0, 65520ul << 16 | 65520ul, 65520ul, 65520ul << 16, 0x12345678ul % (65521ul << 16)};
  for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
    unsigned long s = starts[i];
    ASSERT_EQ(dp__adler32(s, ff, LEN), adler32_z(s, ff, LEN));
    ASSERT_EQ(dp__adler32(s, ff, 5552), adler32_z(s, ff, 5552));
    ASSERT_EQ(dp__adler32(s, ff, 5553), adler32_z(s, ff, 5553));
    ASSERT_EQ(dp__adler32(s, ff, 0), adler32_z(s, ff, 0));
  }
  free(ff);
}

TEST(adler_chained_random_matches_zlib) {
  enum { LEN = 1 << 20 };
  unsigned char *buf = malloc(LEN);
  ASSERT_TRUE(buf != NULL);
  for (size_t i = 0; i < LEN; i++) buf[i] = (unsigned char)(next() >> 11);
  for (int round = 0; round < 10; round++) { /* whole 1 MiB chains in random pieces */
    unsigned long want = 1, got = 1;
    size_t pos = 0;
    while (pos < LEN) {
      size_t n = (size_t)(next() % 70000);
      if (n > LEN - pos) n = LEN - pos;
      want = adler32_z(want, buf + pos, n);
      got = dp__adler32(got, buf + pos, n);
      pos += n;
    }
    if (want != got) {
      free(buf);
      DP_FAIL_("round %d: %08lx, zlib %08lx", round, got, want);
    }
  }
  for (int round = 0; round < 20000; round++) {
    size_t off = (size_t)(next() % 4096), n = (size_t)(next() % 20000);
    unsigned long s = (unsigned long)(next() % 65521) << 16 | (unsigned long)(next() % 65521);
    if (adler32_z(s, buf + off, n) != dp__adler32(s, buf + off, n)) {
      free(buf);
      DP_FAIL_("off %zu len %zu start %08lx", off, n, s);
    }
  }
  free(buf);
}
