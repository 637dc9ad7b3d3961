/* SPDX-License-Identifier: MIT */
/* query/redact.c - --redact: hide the host part of IP addresses and the local
 * part of e-mail addresses in any text written by the query commands, so
 * exported tables can be handed on as evidence. Networks stay visible: the
 * point is "which provider", not "which machine" or "which person". */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "query/query_int.h"

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
static bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
/* A byte of a UTF-8 sequence: internationalised addresses (RFC 6531) and
 * domain names carry them in both parts. */
static bool is_utf8(char c) {
  return (unsigned char)c >= 0x80;
}
/* Characters of an unquoted local part (RFC 5322 atext and '.'). */
static bool is_local(char c) {
  return is_alnum(c) || is_utf8(c) || (c && strchr(".!#$%&'*+/=?^_`{|}~-", c));
}
static bool is_domain_char(char c) {
  return is_alnum(c) || is_utf8(c) || c == '-' || c == '.';
}

/* Where the local part ending at b's end begins: a quoted string
 * ("john doe"@, with \" inside) or a run of atext. */
static size_t local_start(const dp_buf_t *b) {
  size_t k = b->len;
  if (k && b->data[k - 1] == '"') {
    for (size_t q = k - 1; q-- > 0;) {
      if (b->data[q] != '"') continue;
      size_t bs = 0;
      while (q - bs > 0 && b->data[q - bs - 1] == '\\') bs++;
      if (bs % 2 == 0) return q;
    }
    return k; /* no opening quote: not an address */
  }
  while (k && is_local(b->data[k - 1]))
    k--;
  return k;
}

/* An IPv4 address at s: its length, else 0. */
static size_t ipv4_at(const char *s, size_t *last_octet) {
  size_t i = 0;
  for (int part = 0; part < 4; part++) {
    if (part) {
      if (s[i] != '.') return 0;
      i++;
    }
    if (part == 3) *last_octet = i;
    size_t st = i;
    unsigned v = 0;
    while (is_digit(s[i]) && i - st < 3)
      v = v * 10 + (unsigned)(s[i++] - '0');
    if (i == st || v > 255) return 0;
  }
  /* 1.2.3.4.5 or 1.2.3.4567 is not an address. */
  if (is_digit(s[i]) || (s[i] == '.' && is_digit(s[i + 1]))) return 0;
  return i;
}

/* An IPv6 address at s (a maximal run of hex digits, ':' and '.' that
 * inet_pton accepts): its length, else 0. */
static size_t ipv6_at(const char *s, unsigned char addr[16]) {
  size_t n = 0, colons = 0;
  while (is_hex(s[n]) || s[n] == ':' || s[n] == '.') {
    if (s[n] == ':') colons++;
    n++;
  }
  if (colons < 2 || n >= 64) return 0;
  char tmp[64];
  /* Trailing punctuation ("see 2001:db8::1.") is not part of it. */
  while (n && (s[n - 1] == '.' || (s[n - 1] == ':' && !(n >= 2 && s[n - 2] == ':'))))
    n--;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  return inet_pton(AF_INET6, tmp, addr) == 1 ? n : 0;
}

char *dp__query_redact(const char *s) {
  if (!s) return NULL;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int rc = dp_buf_puts(&b, "");
  size_t len = strlen(s);
  for (size_t i = 0; i < len && !rc;) {
    char prev = i ? s[i - 1] : '\0';
    /* An IPv4 address counts after anything but a digit or a dot
     * ("mx:192.0.2.5", "relay_10.1.2.3"): hiding a version number's last
     * part too costs nothing, missing an address would. An IPv6 address
     * must not start inside a longer run of hex digits and colons. */
    bool boundary4 = !(is_digit(prev) || prev == '.');
    bool boundary = !(is_alnum(prev) || prev == '.' || prev == ':');
    size_t last = 0, n;
    unsigned char a6[16];
    if (boundary4 && is_digit(s[i]) && (n = ipv4_at(s + i, &last)) && s[i + n] != '/') {
      rc = dp_buf_append(&b, s + i, last);
      if (!rc) rc = dp_buf_putc(&b, 'x');
      i += n;
      continue;
    }
    if (boundary && (is_hex(s[i]) || s[i] == ':') && (n = ipv6_at(s + i, a6)) && s[i + n] != '/') {
      rc = dp_buf_printf(&b, "%x:%x:%x::x", (unsigned)(a6[0] << 8 | a6[1]),
                         (unsigned)(a6[2] << 8 | a6[3]), (unsigned)(a6[4] << 8 | a6[5]));
      i += n;
      continue;
    }
    size_t k;
    if (s[i] == '@' && is_domain_char(s[i + 1]) && s[i + 1] != '.' &&
        (k = local_start(&b)) < b.len) {
      /* Drop the local part already copied. */
      b.len = k;
      b.data[k] = '\0';
      rc = dp_buf_puts(&b, "redacted@");
      i++;
      continue;
    }
    rc = dp_buf_putc(&b, s[i]);
    i++;
  }
  if (rc) {
    dp_buf_free(&b);
    return NULL;
  }
  return dp_buf_steal(&b, NULL);
}

int dp__query_redact_inplace(char **s) {
  if (!*s) return 0;
  char *r = dp__query_redact(*s);
  if (!r) return DP_ENOMEM;
  free(*s);
  *s = r;
  return 0;
}
