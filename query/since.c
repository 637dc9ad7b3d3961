/* SPDX-License-Identifier: MIT */
/* query/since.c - the --since argument of the query commands: a duration back
 * from now (30d, 12h, 2w, 90m) or an absolute date / ISO 8601 timestamp.
 * Anything else is refused: a typo must not silently widen or empty a report. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "query/query_int.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so that no time zone or locale is involved. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m) {
  static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : dm[m - 1];
}

/* Read exactly n digits. */
static bool digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*p)[i])) return false;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return true;
}

static int usage(char *err, size_t errlen, const char *s) {
  snprintf(err, errlen,
           "invalid --since '%s': use a duration (90m, 12h, 30d, 2w) or a date "
           "(2024-03-01, 2024-03-01T12:00:00Z)",
           s);
  return DP_EUSAGE;
}

static int parse_duration(const char *s, int64_t now, int64_t *out, char *err, size_t errlen) {
  const char *p = s;
  int64_t n = 0;
  while (isdigit((unsigned char)*p)) {
    n = n * 10 + (*p++ - '0');
    if (n > 1000000) return usage(err, errlen, s); /* no overflow below */
  }
  if (p == s || !p[0] || p[1]) return usage(err, errlen, s);
  int64_t unit;
  switch (*p) {
  case 'm':
    unit = 60;
    break;
  case 'h':
    unit = 3600;
    break;
  case 'd':
    unit = 86400;
    break;
  case 'w':
    unit = 7 * 86400;
    break;
  default:
    return usage(err, errlen, s);
  }
  /* back before 1970 (no report is older): everything, as a time
   * PostgreSQL can hold (a million weeks back is beyond its range) */
  *out = now - n * unit < 0 ? 0 : now - n * unit;
  return 0;
}

int dp__query_since_parse(const char *s, int64_t now, int64_t *out, char *err, size_t errlen) {
  if (!s || !*s) return usage(err, errlen, s ? s : "");
  size_t len = strlen(s);
  /* A date starts with four digits and a dash; everything else is a duration. */
  if (!(len >= 10 && isdigit((unsigned char)s[0]) && s[4] == '-'))
    return parse_duration(s, now, out, err, errlen);
  const char *p = s;
  int y, mo, d, h = 0, mi = 0, sec = 0;
  if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d))
    return usage(err, errlen, s);
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
    return usage(err, errlen, s);
  int64_t off = 0;
  if (*p == 'T' || *p == 't' || *p == ' ') {
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi)) return usage(err, errlen, s);
    if (*p == ':') {
      p++;
      if (!digits(&p, 2, &sec)) return usage(err, errlen, s);
      if (*p == '.' || *p == ',') { /* fraction: the second is enough */
        p++;
        if (!isdigit((unsigned char)*p)) return usage(err, errlen, s);
        while (isdigit((unsigned char)*p))
          p++;
      }
    }
    if (h > 23 || mi > 59 || sec > 60) return usage(err, errlen, s);
    if (*p == 'Z' || *p == 'z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      int sign = *p++ == '-' ? -1 : 1, oh, om;
      if (!digits(&p, 2, &oh)) return usage(err, errlen, s);
      if (*p == ':') p++;
      if (!digits(&p, 2, &om) || oh > 23 || om > 59) return usage(err, errlen, s);
      off = sign * (oh * 3600 + om * 60);
    }
  }
  if (*p) return usage(err, errlen, s);
  *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
  return 0;
}
