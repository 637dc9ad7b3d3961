/* SPDX-License-Identifier: MIT */
/* ingest/unpack_adler.c - zlib's Adler-32 (RFC 1950), 32 bytes a step with
 * SSE2. The content fingerprint of every report is an Adler-32 of its
 * bytes; zlib's own loop costs ~3.5 instructions a byte, more than a
 * tenth of parsing a plain XML report. Same value as zlib, to the bit. */
#include "ingest/unpack_int.h"

#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define ADLER_MOD 65521u
/* zlib's NMAX: the most bytes after which b, starting below ADLER_MOD,
 * would still fit 32 bits (here b is summed in 64 bits; the vector lanes
 * are what this bounds) */
#define ADLER_BLOCK 5552u

unsigned long dp__adler32(unsigned long adler, const unsigned char *buf, size_t len) {
  uint32_t a = (uint32_t)(adler & 0xffff), b = (uint32_t)(adler >> 16 & 0xffff);
  while (len) {
    size_t n = len < ADLER_BLOCK ? len : ADLER_BLOCK;
    len -= n;
    uint64_t bb = b;
#if defined(__SSE2__)
    size_t steps = n / 32;
    if (steps) {
      /* Over one step of 32 bytes x0..x31 starting with a:
       *   b += 32 * a + (32 * x0 + 31 * x1 + ... + 1 * x31),  a += x0 + ... + x31;
       * so over the steps: b += 32 * steps * a0 + 32 * (the sums of the
       * bytes before each step) + (each step's weighted sum). */
      const __m128i zero = _mm_setzero_si128();
      const __m128i w0 = _mm_set_epi16(25, 26, 27, 28, 29, 30, 31, 32);
      const __m128i w1 = _mm_set_epi16(17, 18, 19, 20, 21, 22, 23, 24);
      const __m128i w2 = _mm_set_epi16(9, 10, 11, 12, 13, 14, 15, 16);
      const __m128i w3 = _mm_set_epi16(1, 2, 3, 4, 5, 6, 7, 8);
      __m128i vsum = zero, vprev = zero, vw = zero;
      for (size_t s = 0; s < steps; s++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(buf + 32 * s));
        __m128i y = _mm_loadu_si128((const __m128i *)(const void *)(buf + 32 * s + 16));
        vprev = _mm_add_epi32(vprev, vsum);
        /* two 64-bit lanes, each < 2^32 */
        vsum = _mm_add_epi32(vsum, _mm_add_epi32(_mm_sad_epu8(x, zero), _mm_sad_epu8(y, zero)));
        __m128i m = _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi8(x, zero), w0),
                                  _mm_madd_epi16(_mm_unpackhi_epi8(x, zero), w1));
        m = _mm_add_epi32(m, _mm_madd_epi16(_mm_unpacklo_epi8(y, zero), w2));
        m = _mm_add_epi32(m, _mm_madd_epi16(_mm_unpackhi_epi8(y, zero), w3));
        vw = _mm_add_epi32(vw, m);
      }
      uint32_t lanes[4];
      _mm_storeu_si128((__m128i *)(void *)lanes, vsum);
      uint64_t sum = (uint64_t)lanes[0] + lanes[2];
      _mm_storeu_si128((__m128i *)(void *)lanes, vprev);
      uint64_t prev = (uint64_t)lanes[0] + lanes[2];
      _mm_storeu_si128((__m128i *)(void *)lanes, vw);
      uint64_t w = (uint64_t)lanes[0] + lanes[1] + lanes[2] + lanes[3];
      bb += 32 * (uint64_t)steps * a + 32 * prev + w;
      a += (uint32_t)sum; /* < 65521 + 5552 * 255 */
      buf += 32 * steps;
      n -= 32 * steps;
    }
#endif
    for (size_t i = 0; i < n; i++) {
      a += buf[i];
      bb += a;
    }
    buf += n;
    a %= ADLER_MOD;
    b = (uint32_t)(bb % ADLER_MOD);
  }
  return (unsigned long)b << 16 | a;
}
