/* SPDX-License-Identifier: MIT */
/* core/core.c - error table, capped buffers, limits defaults and small helpers
 * shared by all modules. */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

const char *dp_strerror(int err) {
  switch (err) {
  case 0: return "success";
#define XX(name, val, msg) case DP_##name: return msg;
    DP_ERRNO_MAP(XX)
#undef XX
  default: break;
  }
  if (err < 0 && err > -4000) return uv_strerror(err);
  return "unknown error";
}

const char *dp_err_name(int err) {
  switch (err) {
  case 0: return "DP_OK";
#define XX(name, val, msg) case DP_##name: return "DP_" #name;
    DP_ERRNO_MAP(XX)
#undef XX
  default: break;
  }
  if (err < 0 && err > -4000) return uv_err_name(err);
  return "DP_UNKNOWN";
}

void dp_buf_init(dp_buf_t *b, size_t cap) {
  b->data = NULL;
  b->len = 0;
  b->alloc = 0;
  b->cap = cap ? cap : SIZE_MAX;
}

void dp_buf_free(dp_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->alloc = 0;
}

void dp_buf_reset(dp_buf_t *b) { dp_buf_truncate(b, 0); }

void dp_buf_truncate(dp_buf_t *b, size_t len) {
  if (len > b->len) return;
  b->len = len;
  if (b->data) b->data[len] = '\0';
}

int dp_buf_reserve(dp_buf_t *b, size_t n) {
  if (n > b->cap || b->len > b->cap - n) return DP_ELIMIT;
  size_t need = b->len + n + 1; /* room for the NUL */
  if (need <= b->alloc) return 0;
  size_t na = b->alloc ? b->alloc : 256;
  while (na < need) {
    if (na > SIZE_MAX / 2) { na = need; break; }
    na *= 2;
  }
  char *p = realloc(b->data, na);
  if (!p) return DP_ENOMEM;
  b->data = p;
  b->alloc = na;
  return 0;
}

int dp_buf_append(dp_buf_t *b, const void *p, size_t n) {
  int rc = dp_buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int dp_buf_puts(dp_buf_t *b, const char *s) { return dp_buf_append(b, s, strlen(s)); }

int dp_buf_putc(dp_buf_t *b, char c) {
  if (b->len + 1 < b->alloc && b->len < b->cap) {
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
    return 0;
  }
  return dp_buf_append(b, &c, 1);
}

int dp_buf_put_u64(dp_buf_t *b, uint64_t v) {
  char tmp[24];
  char *p = tmp + sizeof tmp;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return dp_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

int dp_buf_printf(dp_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return DP_ENOMEM;
  int rc = dp_buf_reserve(b, (size_t)n);
  if (rc) return rc;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

char *dp_buf_steal(dp_buf_t *b, size_t *plen) {
  char *p = b->data;
  if (plen) *plen = b->len;
  if (!p) p = calloc(1, 1);
  b->data = NULL;
  b->len = 0;
  b->alloc = 0;
  return p;
}

void dp_limits_default(dp_limits_t *l) {
  l->max_input_size = UINT64_C(1) << 30;  /* 1 GiB */
  l->max_report_size = UINT64_C(1) << 30; /* 1 GiB of XML: ~2M records */
  l->max_ratio = 250;   /* real gzip'd reports stay under ~50x; bombs reach 1000x */
  l->max_zip_entries = 1000;
  l->max_nesting = 4;
  l->max_xml_depth = 64; /* a report is at most ~6 levels deep */
  l->max_field_len = 64 * 1024;
  l->max_records = 10 * 1000 * 1000;
  /* reports describe the past; a week covers clock skew and time zones, and a
   * report dated years ahead would create partitions and skew "last seen" */
  l->max_future_days = 7;
}

uint64_t dp_hash64(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= UINT64_C(0x100000001b3);
  }
  return h;
}

void dp_time_iso8601(int64_t t, char *out, size_t outlen) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm)) {
    snprintf(out, outlen, "invalid");
    return;
  }
  strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
