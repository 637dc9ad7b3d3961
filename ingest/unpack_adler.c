/* SPDX-License-Identifier: MIT */
/* ingest/unpack_adler.c - zlib's Adler-32 (RFC 1950), 16 bytes a step with
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
 * still fits 32 bits; a multiple of 16 (347 steps) */
#define ADLER_BLOCK 5552u

unsigned long dp__adler32(unsigned long adler, const unsigned char *buf, size_t len) {
  uint32_t a = (uint32_t)(adler & 0xffff), b = (uint32_t)(adler >> 16 & 0xffff);
  while (len) {
    size_t n = len < ADLER_BLOCK ? len : ADLER_BLOCK;
    len -= n;
    uint64_t bb = b;
#if defined(__SSE2__)
    size_t steps = n / 16;
    if (steps) {
      /* Over one step of 16 bytes x0..x15 starting with a:
       *   b += 16 * a + (16 * x0 + 15 * x1 + ... + 1 * x15),  a += x0 + ... + x15;
       * so over the steps: b += 16 * steps * a0 + 16 * (the sums of the
       * bytes before each step) + (each step's weighted sum). */
      const __m128i zero = _mm_setzero_si128();
      const __m128i w_lo = _mm_set_epi16(9, 10, 11, 12, 13, 14, 15, 16);
      const __m128i w_hi = _mm_set_epi16(1, 2, 3, 4, 5, 6, 7, 8);
      __m128i vsum = zero, vprev = zero, vw = zero;
      for (size_t s = 0; s < steps; s++) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(buf + 16 * s));
        vprev = _mm_add_epi32(vprev, vsum);
        vsum = _mm_add_epi32(vsum, _mm_sad_epu8(x, zero)); /* two 64-bit lanes, each < 2^32 */
        __m128i lo = _mm_unpacklo_epi8(x, zero), hi = _mm_unpackhi_epi8(x, zero);
        vw = _mm_add_epi32(vw, _mm_add_epi32(_mm_madd_epi16(lo, w_lo), _mm_madd_epi16(hi, w_hi)));
      }
      uint32_t lanes[4];
      _mm_storeu_si128((__m128i *)(void *)lanes, vsum);
      uint64_t sum = (uint64_t)lanes[0] + lanes[2];
      _mm_storeu_si128((__m128i *)(void *)lanes, vprev);
      uint64_t prev = (uint64_t)lanes[0] + lanes[2];
      _mm_storeu_si128((__m128i *)(void *)lanes, vw);
      uint64_t w = (uint64_t)lanes[0] + lanes[1] + lanes[2] + lanes[3];
      bb += 16 * (uint64_t)steps * a + 16 * prev + w;
      a += (uint32_t)sum; /* < 65521 + 5552 * 255 */
      buf += 16 * steps;
      n -= 16 * steps;
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
