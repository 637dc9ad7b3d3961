/* SPDX-License-Identifier: MIT */
/* core/utf8_json.c - UTF-8 decoding with U+FFFD repair and JSON string
 * escaping, shared by the JSON-lines sink (ingest/) and the query output
 * (query/), which must agree on what a JSON string looks like. */
#include <stdbool.h>
#include <string.h>

#include "core.h"

/* Decode one code point from s (n > 0 bytes left). Returns the bytes used; an
 * ill-formed sequence yields U+FFFD for its maximal valid prefix (at least one
 * byte), as Unicode recommends, so "\xE2\x82" + "A" is one U+FFFD then "A". */
size_t dp_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
  unsigned char c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t need;
  uint32_t v;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    need = 1, v = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) {
    need = 2, v = c & 0x0F;
    if (c == 0xE0)
      lo = 0xA0; /* no overlongs */
    else if (c == 0xED)
      hi = 0x9F; /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3, v = c & 0x07;
    if (c == 0xF0)
      lo = 0x90; /* no overlongs */
    else if (c == 0xF4)
      hi = 0x8F; /* <= U+10FFFF */
  } else {
    *cp = 0xFFFD;
    return 1;
  }
  size_t k = 1;
  for (; k <= need; k++) {
    if (k >= n || s[k] < lo || s[k] > hi) {
      *cp = 0xFFFD;
      return k;
    }
    v = (v << 6) | (s[k] & 0x3F);
    lo = 0x80, hi = 0xBF;
  }
  *cp = v;
  return k;
}


int dp_utf8_put(dp_buf_t *b, uint32_t cp) {
  char t[4];
  size_t n;
  if (cp < 0x80)
    t[0] = (char)cp, n = 1;
  else if (cp < 0x800)
    t[0] = (char)(0xC0 | cp >> 6), t[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000)
    t[0] = (char)(0xE0 | cp >> 12), t[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
    t[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  else
    t[0] = (char)(0xF0 | cp >> 18), t[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
    t[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), t[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  return dp_buf_append(b, t, n);
}

/* Printable ASCII other than the quote and the backslash: copied as it is. */
static inline bool json_plain(unsigned char c) {
  return c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
}

/* How many bytes from p on go into a JSON string as they are: plain ASCII and
 * well-formed UTF-8 sequences. dp_utf8_next accepts a sequence only in its
 * shortest form, so its bytes are what dp_utf8_put would write for it; U+FFFD
 * (also what it returns for invalid bytes), U+2028 and U+2029 are left to the
 * caller. */
static size_t json_run(const unsigned char *p, size_t n) {
  size_t i = 0;
  for (;;) {
    while (i < n && json_plain(p[i])) i++;
    if (i == n || p[i] < 0x80) return i;
    uint32_t cp;
    size_t k = dp_utf8_next(p + i, n - i, &cp);
    if (cp == 0xFFFD || cp == 0x2028 || cp == 0x2029 || (cp >= 0x80 && cp <= 0x9F)) return i;
    i += k;
  }
}

/* A JSON string: quote, backslash and control characters escaped (DEL, the
 * C1 controls and U+2028/U+2029 too, so the output is also safe as
 * JavaScript and in a terminal), other
 * characters as UTF-8, invalid bytes as U+FFFD. Runs that need nothing are
 * appended whole: this encodes every value of `--output jsonl`. */
int dp_json_string(dp_buf_t *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  int rc = dp_buf_putc(b, '"');
  while (n && !rc) {
    size_t run = json_run(p, n);
    if (run) {
      rc = dp_buf_append(b, p, run);
      p += run, n -= run;
      continue;
    }
    uint32_t cp;
    size_t k = dp_utf8_next(p, n, &cp);
    p += k, n -= k;
    switch (cp) {
    case '"':
      rc = dp_buf_puts(b, "\\\"");
      break;
    case '\\':
      rc = dp_buf_puts(b, "\\\\");
      break;
    case '\b':
      rc = dp_buf_puts(b, "\\b");
      break;
    case '\f':
      rc = dp_buf_puts(b, "\\f");
      break;
    case '\n':
      rc = dp_buf_puts(b, "\\n");
      break;
    case '\r':
      rc = dp_buf_puts(b, "\\r");
      break;
    case '\t':
      rc = dp_buf_puts(b, "\\t");
      break;
    default:
      if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029)
        rc = dp_buf_printf(b, "\\u%04x", (unsigned)cp);
      else
        rc = dp_utf8_put(b, cp);
    }
  }
  return rc ? rc : dp_buf_putc(b, '"');
}

/* Characters a terminal or a browser acts on instead of showing. */
bool dp_cp_display_unsafe(uint32_t cp) {
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

const char *dp_term_copy(const char *in, char *out, size_t outlen) {
  const unsigned char *p = (const unsigned char *)in;
  size_t n = strlen(in), o = 0;
  while (n) {
    uint32_t cp;
    size_t k = dp_utf8_next(p, n, &cp);
    /* an ill-formed sequence decodes as U+FFFD: shown as '?' too, since a
     * real U+FFFD is shown as it is */
    bool bad = dp_cp_display_unsafe(cp) ||
               (cp == 0xFFFD && !(k == 3 && p[0] == 0xEF && p[1] == 0xBF && p[2] == 0xBD));
    size_t w = bad ? 1 : k;
    if (o + w >= outlen) break; /* cut before a character, never inside one */
    if (bad)
      out[o] = '?';
    else
      memcpy(out + o, p, k);
    o += w;
    p += k, n -= k;
  }
  if (outlen) out[o] = '\0';
  return out;
}

int dp_buf_put_term(dp_buf_t *b, const char *s) {
  size_t n = strlen(s) + 1; /* never longer: each unsafe sequence becomes one byte */
  int rc = dp_buf_reserve(b, n);
  if (rc) return rc;
  dp_term_copy(s, b->data + b->len, n);
  b->len += strlen(b->data + b->len);
  return 0;
}
