/* SPDX-License-Identifier: MIT */
/* parse/ipaddr.c - IP address text <-> bytes for source_ip and the sender
 * network of every record. glibc's inet_ntop formats through sprintf, which
 * cost more per record than the rest of the record's checks together. */
#include "parse/parse_int.h"

#include <arpa/inet.h>
#include <string.h>

size_t dp__ip_quad_canon(const char *s, unsigned char a[4]) {
  const char *e = s;
  for (int part = 0; part < 4; part++) {
    if (*e < '0' || *e > '9') return 0;
    unsigned v = (unsigned)(*e++ - '0');
    if (v && *e >= '0' && *e <= '9') {
      v = v * 10 + (unsigned)(*e++ - '0');
      if (*e >= '0' && *e <= '9') v = v * 10 + (unsigned)(*e++ - '0');
    }
    if (v > 255) return 0;
    a[part] = (unsigned char)v;
    if (part < 3 && *e++ != '.') return 0;
  }
  return *e == '\0' ? (size_t)(e - s) : 0;
}

int dp__ip_parse(const char *s, unsigned char a[16]) {
  if (dp__ip_quad_canon(s, a) || inet_pton(AF_INET, s, a) == 1) return 4;
  if (inet_pton(AF_INET6, s, a) == 1) return 6;
  return 0;
}

static size_t put_dec(char *o, unsigned v) {
  size_t n = 0;
  if (v >= 100) o[n++] = (char)('0' + v / 100);
  if (v >= 10) o[n++] = (char)('0' + v / 10 % 10);
  o[n++] = (char)('0' + v % 10);
  return n;
}

static size_t put_quad(char *o, const unsigned char *a) {
  size_t n = 0;
  for (int i = 0; i < 4; i++) {
    if (i) o[n++] = '.';
    n += put_dec(o + n, a[i]);
  }
  o[n] = '\0';
  return n;
}

static size_t put_hex(char *o, unsigned v) {
  static const char hex[] = "0123456789abcdef";
  size_t n = 0;
  for (int sh = 12; sh >= 0; sh -= 4)
    if (v >> sh || sh == 0 || n) o[n++] = hex[(v >> sh) & 15];
  return n;
}

size_t dp__ip_format(const unsigned char *a, int family, char *out) {
  if (family == 4) return put_quad(out, a);
  unsigned w[8];
  for (int i = 0; i < 8; i++) w[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (w[i]) {
      i++;
      continue;
    }
    int j = i;
    while (j < 8 && !w[j]) j++;
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  if (best_len < 2) best = -1;
  size_t n = 0;
  for (int i = 0; i < 8; i++) {
    if (best >= 0 && i >= best && i < best + best_len) {
      if (i == best) out[n++] = ':';
      continue;
    }
    if (i) out[n++] = ':';
    if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff)))
      return n + put_quad(out + n, a + 12);
    n += put_hex(out + n, w[i]);
  }
  if (best >= 0 && best + best_len == 8) out[n++] = ':';
  out[n] = '\0';
  return n;
}
