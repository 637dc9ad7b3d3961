/* SPDX-License-Identifier: MIT */
/* ingest/mbox.c - split an mbox file (mboxo/mboxrd, RFC 4155) into its
 * messages: recognise "From " separator lines precisely, slice each message
 * out of the input without copying, and undo mboxrd ">From " quoting (a copy
 * of that one message only). What a message holds is mime.c's business. */
#include "ingest/unpack_int.h"

#include <stdlib.h>
#include <string.h>

/* A separator line is short; longer lines are body text. */
#define MBOX_MAX_FROM_LINE 1000

static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

int dp_mbox_from_line(const void *line, size_t n) {
  const unsigned char *s = line;
  if (n && s[n - 1] == '\r') n--;
  if (n < 5 || n > MBOX_MAX_FROM_LINE || memcmp(s, "From ", 5) != 0) return 0;
  /* the envelope sender: one token; a header "From : x" has ':' here */
  size_t i = 5, t = 5;
  while (i < n && s[i] != ' ' && s[i] != '\t')
    i++;
  if (i == t || s[t] == ':') return 0;
  while (i < n && (s[i] == ' ' || s[i] == '\t'))
    i++;
  if (i == n) return 0;
  /* the date, in whatever layout the writer chose (ctime's "Mon Jan  1
   * 00:00:00 2024" mostly, "+0000 2024" or RFC 5322 dates too): it must hold
   * a time and a year; plain prose after a blank line rarely holds both */
  int time_seen = 0, year_seen = 0;
  for (size_t k = i; k < n; k++) {
    if (!is_digit(s[k]) || (k > i && is_digit(s[k - 1]))) continue;
    size_t e = k;
    while (e < n && is_digit(s[e]))
      e++;
    size_t dl = e - k;
    if ((dl == 1 || dl == 2) && e + 2 < n && s[e] == ':' && is_digit(s[e + 1]) &&
        is_digit(s[e + 2]))
      time_seen = 1;
    else if (dl == 4 && (e == n || s[e] != ':'))
      year_seen = 1;
  }
  return time_seen && year_seen;
}

/* Does a line (without its break) match ^>+From ? */
static int quoted_from(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && s[i] == '>')
    i++;
  return i > 0 && n - i >= 5 && memcmp(s + i, "From ", 5) == 0;
}

/* Call cb for the message in [p, p+n): sliced when no line needs
 * un-escaping, else from a copy with one '>' removed from each such line. */
static int deliver(const char *p, size_t n, size_t index,
                   int (*cb)(void *ud, size_t index, const char *msg, size_t n), void *ud) {
  int quoted = 0;
  for (size_t i = 0; i < n && !quoted;) {
    const char *nl = memchr(p + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - p) : n;
    if (p[i] == '>' && quoted_from(p + i, end - i)) quoted = 1;
    i = end + 1;
  }
  if (!quoted) return cb(ud, index, p, n);
  char *c = malloc(n ? n : 1);
  if (!c) return DP_ENOMEM;
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    const char *nl = memchr(p + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - p) + 1 : n;
    size_t skip = (p[i] == '>' && quoted_from(p + i, end - i)) ? 1 : 0;
    memcpy(c + o, p + i + skip, end - i - skip);
    o += end - i - skip;
    i = end;
  }
  int rc = cb(ud, index, c, o);
  free(c);
  return rc;
}

int dp_mbox_split(const void *buf, size_t len,
                  int (*cb)(void *ud, size_t index, const char *msg, size_t n), void *ud) {
  const char *p = buf;
  size_t start = 0, index = 0, i = 0;
  int prev_blank = 1; /* the start of the file counts as after a blank line */
  int in_msg = 0;
  while (i < len) {
    const char *nl = memchr(p + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - p) : len;
    size_t ll = end - i;
    if (prev_blank && ll >= 5 && p[i] == 'F' && dp_mbox_from_line(p + i, ll)) {
      if (in_msg || i > 0) {
        /* the blank line before the separator belongs to the separator */
        size_t e = i;
        if (e > start && p[e - 1] == '\n') e--;
        if (e > start && p[e - 1] == '\r') e--;
        int rc = deliver(p + start, e - start, ++index, cb, ud);
        if (rc) return rc;
      }
      in_msg = 1;
      start = nl ? end + 1 : len;
      prev_blank = 0;
      i = start;
      continue;
    }
    prev_blank = ll == 0 || (ll == 1 && p[i] == '\r');
    i = nl ? end + 1 : len;
  }
  if (!in_msg && len == 0) return 0;
  /* the last message: writers end every message with a blank line */
  size_t e = len;
  if (e >= start + 2 && p[e - 1] == '\n' && p[e - 2] == '\n')
    e--;
  else if (e >= start + 4 && !memcmp(p + e - 4, "\r\n\r\n", 4))
    e -= 2;
  return deliver(p + start, e - start, ++index, cb, ud);
}
