/* SPDX-License-Identifier: MIT */
/* store/copy_encode.c - PostgreSQL COPY text encoding of reports, records and
 * ingest errors, and the report key (hash of the report's identity). Runs in
 * worker threads: pure functions of their arguments, no shared state. */
#include "store/store.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Must list the columns in the order the encoders below write them. */
const char dp_store_report_columns[] =
    "id, org_name, email, extra_contact, report_id, domain, begin_ts, end_ts, "
    "errors, adkim, aspf, p, sp, np, pct, fo, testing, discovery_method, "
    "schema_version, version, generator, source, content_hash, n_records, messages";
const char dp_store_record_columns[] =
    "report_key, begin_ts, seq, source_ip, count, disposition, pe_dkim, pe_spf, "
    "reasons, header_from, envelope_from, envelope_to, dkim, spf, "
    "dkim_aligned, dkim_aligned_strict, spf_aligned, spf_aligned_strict, "
    "sender, third_party";
const char dp_store_error_columns[] = "source, part, org_name, report_id, code, reason";

/* U+FFFD in UTF-8: what an invalid byte becomes, so that one badly encoded
 * file name cannot make the server reject a whole COPY batch. */
static const char dp_replacement[] = "\xEF\xBF\xBD";

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when s starts an
 * invalid one (overlong, surrogate, > U+10FFFF, truncated). s[0] >= 0x80. */
static size_t utf8_seq_len(const unsigned char *s) {
  unsigned c = s[0];
  if (c >= 0xC2 && c <= 0xDF) return (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    if (s[1] < lo || s[1] > hi) return 0;
    return (s[2] & 0xC0) == 0x80 ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    if (s[1] < lo || s[1] > hi) return 0;
    if ((s[2] & 0xC0) != 0x80) return 0;
    return (s[3] & 0xC0) == 0x80 ? 4 : 0;
  }
  return 0;
}

/* The auth lists of a record (columns reasons, dkim, spf; migration 0008):
 * entries joined by RS, their fields by US. A value's own FS, RS and US are
 * written as FS and a digit byte (1, 3, 2), so that the separators stay
 * unambiguous whatever the value holds (the parser lets none of the three
 * through: XML forbids them). */
#define LIST_FS '\x1c'
#define LIST_RS '\x1e'
#define LIST_US '\x1f'

/* The two bytes a list value's FS, RS or US becomes; NULL for other bytes. */
static const char *list_esc(unsigned c) {
  return c == 0x1c ? "\x1c\x01" : c == 0x1f ? "\x1c\x02" : c == 0x1e ? "\x1c\x03" : NULL;
}

/* How copy_escape writes a string: a COPY text field, an element of an array
 * literal, or a field of an auth list. */
enum esc_mode { ESC_TEXT, ESC_ARRAY, ESC_LIST };

/* Append s COPY-escaped. Inside an array literal (ESC_ARRAY), " and \ are first
 * escaped for the array parser, and that backslash is then escaped for COPY;
 * inside an auth list (ESC_LIST), the separators are escaped (list_esc).
 * Runs of plain bytes are appended in one call: this is the hot path. */
static int copy_escape(dp_buf_t *b, const char *str, enum esc_mode mode) {
  bool in_array = mode == ESC_ARRAY;
  const unsigned char *s = (const unsigned char *)(str ? str : "");
  const unsigned char *run = s;
  int rc;
  for (;;) {
    unsigned c = *s;
    const char *rep = NULL;
    if (c >= 0x20 && c < 0x80 && c != '\\' && c != '"') {
      s++;
      continue;
    }
    if (c >= 0x80) {
      size_t n = utf8_seq_len(s);
      if (n) {
        s += n;
        continue;
      }
      rep = dp_replacement;
    } else if (c == '\0') {
      break;
    } else if (c == '\\') {
      rep = in_array ? "\\\\\\\\" : "\\\\";
    } else if (c == '"') {
      if (!in_array) {
        s++;
        continue;
      }
      rep = "\\\\\"";
    } else if (c == '\t') {
      rep = "\\t";
    } else if (c == '\n') {
      rep = "\\n";
    } else if (c == '\r') {
      rep = "\\r";
    } else if (mode == ESC_LIST && list_esc(c)) {
      rep = list_esc(c);
    } else {
      /* Other control characters are taken literally by COPY. */
      s++;
      continue;
    }
    if (s > run && (rc = dp_buf_append(b, run, (size_t)(s - run)))) return rc;
    if ((rc = dp_buf_append(b, rep, strlen(rep)))) return rc;
    s++;
    run = s;
  }
  if (s > run) return dp_buf_append(b, run, (size_t)(s - run));
  return 0;
}

/** Append s as one COPY text field (no separator); NULL is written as "". */
int dp_copy_text(dp_buf_t *b, const char *s) { return copy_escape(b, s, ESC_TEXT); }

/** Append a text[] field of n strings taken stride bytes apart from first. */
int dp_copy_array(dp_buf_t *b, const char *const *first, size_t n, size_t stride) {
  int rc = dp_buf_putc(b, '{');
  const char *p = (const char *)first;
  for (size_t i = 0; i < n && !rc; i++, p += stride) {
    const char *s;
    memcpy(&s, p, sizeof s);
    if (i && (rc = dp_buf_putc(b, ','))) break;
    if ((rc = dp_buf_putc(b, '"'))) break;
    if ((rc = copy_escape(b, s, ESC_ARRAY))) break;
    rc = dp_buf_putc(b, '"');
  }
  return rc ? rc : dp_buf_putc(b, '}');
}

/* The fields of each auth list's entries: offsets of const char * members. */
static const size_t reason_fields[] = {offsetof(dp_reason_t, type), offsetof(dp_reason_t, comment)};
static const size_t dkim_fields[] = {offsetof(dp_dkim_auth_t, domain), offsetof(dp_dkim_auth_t, selector),
                                     offsetof(dp_dkim_auth_t, result),
                                     offsetof(dp_dkim_auth_t, human_result)};
static const size_t spf_fields[] = {offsetof(dp_spf_auth_t, domain), offsetof(dp_spf_auth_t, scope),
                                    offsetof(dp_spf_auth_t, result),
                                    offsetof(dp_spf_auth_t, human_result)};
#define NFIELDS(f) (sizeof(f) / sizeof(f)[0])

/* The string at offset off of the entry at p (NULL stays NULL). */
static const char *field_at(const char *p, size_t off) {
  const char *s;
  memcpy(&s, p + off, sizeof s);
  return s;
}

/* Append an auth list field: n entries stride bytes apart from first, each
 * the nf strings at the offsets in fields. */
static int copy_list(dp_buf_t *b, const void *first, size_t n, size_t stride, const size_t *fields,
                     size_t nf) {
  int rc = 0;
  const char *p = first;
  for (size_t i = 0; i < n && !rc; i++, p += stride)
    for (size_t k = 0; k < nf && !rc; k++) {
      if ((i || k) && (rc = dp_buf_putc(b, k ? LIST_US : LIST_RS))) break;
      rc = copy_escape(b, field_at(p, fields[k]), ESC_LIST);
    }
  return rc;
}

/* uint64 -> int64 two's complement without implementation-defined conversion. */
static int64_t u64_to_i64(uint64_t u) {
  return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

static uint64_t hash_u64(uint64_t h, uint64_t v) {
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = (unsigned char)(v >> (8 * i));
  return dp_hash64(h, le, sizeof le);
}

/* Length-prefixed, so that ("ab","c") and ("a","bc") hash differently. */
static uint64_t hash_str(uint64_t h, const char *s) {
  size_t n = s ? strlen(s) : 0;
  h = hash_u64(h, n);
  return dp_hash64(h, s ? s : "", n);
}

/** The report's key: FNV-1a 64 over its length-prefixed identity, as bigint. */
int64_t dp_store_report_key(const dp_report_t *r) {
  uint64_t h = dp_hash64(DP_HASH_INIT, "dmarcpipe report v1", 19);
  h = hash_str(h, r->org_name);
  h = hash_str(h, r->report_id);
  h = hash_str(h, r->domain);
  h = hash_u64(h, (uint64_t)r->begin);
  h = hash_u64(h, (uint64_t)r->end);
  return u64_to_i64(h);
}

/* Decimal digits by hand (dp_buf_put_u64): printf is a fifth of the
 * encoding time on the record hot path. */
static int put_i64(dp_buf_t *b, int64_t v) {
  if (v >= 0) return dp_buf_put_u64(b, (uint64_t)v);
  int rc = dp_buf_putc(b, '-');
  return rc ? rc : dp_buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
}

static int put_ts_uncached(dp_buf_t *b, int64_t t);

/* UTC timestamp PostgreSQL reads back exactly, whatever the session TimeZone.
 * Every record of a report repeats the report's begin: the last one formatted
 * is kept per thread. */
static int put_ts(dp_buf_t *b, int64_t t) {
  static _Thread_local int64_t last_t;
  static _Thread_local char last[48];
  static _Thread_local size_t last_len;
  if (last_len && last_t == t) return dp_buf_append(b, last, last_len);
  size_t mark = b->len;
  int rc = put_ts_uncached(b, t);
  if (!rc && b->len - mark < sizeof last) {
    last_len = b->len - mark;
    memcpy(last, b->data + mark, last_len);
    last_t = t;
  }
  return rc;
}

static int put_ts_uncached(dp_buf_t *b, int64_t t) {
  /* Days/seconds split by hand: gmtime_r fails on some platforms for years
   * past 9999 and before 1900, and the civil-from-days algorithm is exact. */
  int64_t days = t / 86400, secs = t % 86400;
  if (secs < 0) {
    secs += 86400;
    days--;
  }
  int64_t z = days + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5 + 1;
  int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) y++;
  /* "YYYY-MM-DD hh:mm:ss+00", by hand (printf was the most of a small
   * report's row); year 0 is 1 BC in PostgreSQL's (proleptic Gregorian)
   * notation, and a year has at least four digits. */
  uint64_t year = (uint64_t)(y > 0 ? y : 1 - y);
  char tmp[48], *e = tmp + sizeof tmp, *p = e;
  if (y <= 0) {
    p -= 3;
    memcpy(p, " BC", 3);
  }
  int64_t tail[] = {secs % 60, secs / 60 % 60, secs / 3600};
  const char sep[] = {':', ':', ' '};
  p -= 3;
  memcpy(p, "+00", 3);
  for (int i = 0; i < 3; i++) {
    *--p = (char)('0' + tail[i] % 10);
    *--p = (char)('0' + tail[i] / 10);
    *--p = sep[i];
  }
  *--p = (char)('0' + d % 10);
  *--p = (char)('0' + d / 10);
  *--p = '-';
  *--p = (char)('0' + m % 10);
  *--p = (char)('0' + m / 10);
  *--p = '-';
  int digits = 0;
  do {
    *--p = (char)('0' + year % 10);
    year /= 10;
    digits++;
  } while (year || digits < 4);
  return dp_buf_append(b, p, (size_t)(e - p));
}

static int put_bool(dp_buf_t *b, bool v) { return dp_buf_putc(b, v ? 't' : 'f'); }

/* text field followed by a tab */
static int put_text(dp_buf_t *b, const char *s) {
  int rc = dp_copy_text(b, s);
  return rc ? rc : dp_buf_putc(b, '\t');
}

/** Append the report's COPY row (columns as in dp_store_report_columns). */
int dp_store_encode_report(dp_buf_t *b, const dp_report_t *r, int64_t key,
                           const char *source, uint64_t content_hash) {
  /* no printf: its format parsing cost more than the rest of the row */
  size_t mark = b->len;
  int rc = put_i64(b, key);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, r->org_name);
  if (!rc) rc = put_text(b, r->email);
  if (!rc) rc = put_text(b, r->extra_contact);
  if (!rc) rc = put_text(b, r->report_id);
  if (!rc) rc = put_text(b, r->domain);
  if (!rc) rc = put_ts(b, r->begin);
  if (!rc) rc = dp_buf_putc(b, '\t');
  /* uncached: the next report's records often repeat this one's begin */
  if (!rc) rc = put_ts_uncached(b, r->end);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = dp_copy_array(b, r->errors, r->errors ? r->n_errors : 0, sizeof r->errors[0]);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, r->adkim);
  if (!rc) rc = put_text(b, r->aspf);
  if (!rc) rc = put_text(b, r->p);
  if (!rc) rc = put_text(b, r->sp);
  if (!rc) rc = put_text(b, r->np);
  if (!rc && r->pct < 0) rc = dp_buf_puts(b, "\\N");
  if (!rc && r->pct >= 0) rc = put_i64(b, r->pct);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, r->fo);
  if (!rc) rc = put_text(b, r->testing);
  if (!rc) rc = put_text(b, r->discovery_method);
  if (!rc) rc = put_i64(b, r->schema);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, r->version);
  if (!rc) rc = put_text(b, r->generator);
  if (!rc) rc = put_text(b, source);
  if (!rc) rc = put_i64(b, u64_to_i64(content_hash));
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = dp_buf_put_u64(b, r->n_records);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = dp_buf_put_u64(b, r->messages);
  if (!rc) rc = dp_buf_putc(b, '\n');
  if (rc) dp_buf_truncate(b, mark); /* a half-written row would corrupt the stream */
  return rc;
}

/* The reference encoder: appends field by field through the capped buffer,
 * so it fails only when the row itself does not fit. */
static int encode_record_exact(dp_buf_t *b, int64_t key, const dp_report_t *r, const dp_record_t *rec) {
  size_t mark = b->len;
  int rc = put_i64(b, key);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_ts(b, r->begin);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = dp_buf_put_u64(b, rec->index);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, rec->source_ip);
  if (!rc) rc = dp_buf_put_u64(b, rec->count);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, rec->disposition);
  if (!rc) rc = put_text(b, rec->pe_dkim);
  if (!rc) rc = put_text(b, rec->pe_spf);
#define LIST(base, n, fields)                                                                  \
  if (!rc) rc = copy_list(b, base, (base) ? (n) : 0, sizeof (base)[0], fields, NFIELDS(fields));  \
  if (!rc) rc = dp_buf_putc(b, '\t');
  LIST(rec->reasons, rec->n_reasons, reason_fields)
  if (!rc) rc = put_text(b, rec->header_from);
  if (!rc) rc = put_text(b, rec->envelope_from);
  if (!rc) rc = put_text(b, rec->envelope_to);
  LIST(rec->dkim, rec->n_dkim, dkim_fields)
  LIST(rec->spf, rec->n_spf, spf_fields)
#undef LIST
  if (!rc) rc = put_bool(b, rec->dkim_aligned);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_bool(b, rec->dkim_aligned_strict);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_bool(b, rec->spf_aligned);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_bool(b, rec->spf_aligned_strict);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, rec->sender);
  if (!rc) rc = put_bool(b, rec->third_party);
  if (!rc) rc = dp_buf_putc(b, '\n');
  if (rc) dp_buf_truncate(b, mark);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The record hot path: one reservation per row for its worst case, then
 * plain stores. Every field expands at most 3x (an invalid byte becomes
 * U+FFFD's 3 bytes; a backslash, TAB, LF, CR or a list separator 2), so 4x
 * the text plus the fixed parts is a safe bound. Output is byte-identical to
 * encode_record_exact. */

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* High bit set in each byte of x that is zero (exact, no false positives). */
static uint64_t zero_bytes(uint64_t x) {
  return ~(((x & ~HIGHS) + ~HIGHS) | x) & HIGHS;
}

/* Non-zero when one of the 8 bytes in x needs more than a plain copy:
 * >= 0x80, < 0x20 or a backslash. */
static uint64_t word_special(uint64_t x) {
  uint64_t ge20 = ((x & ~HIGHS) + ONES * (0x80 - 0x20)) & HIGHS; /* low 7 bits >= 0x20 */
  return (x & HIGHS) | (~ge20 & HIGHS) | zero_bytes(x ^ (ONES * '\\'));
}

/* 1 for a byte that needs a look (control, backslash, non-ASCII); 0 for one
 * copied as is, in a text field and in a list field alike. */
static const unsigned char needs_look[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* Write s (n bytes, NUL-terminated) COPY-escaped at o, as a list field when
 * in_list; returns the new end. */
static char *esc_fast(char *o, const char *str, size_t n, bool in_list) {
  const unsigned char *s = (const unsigned char *)str, *end = s + n;
  while (s < end) {
    /* eight plain bytes at a time: the output stays within the bound
     * because a word is copied only when all 8 input bytes are there */
    while (end - s >= 8) {
      uint64_t x;
      memcpy(&x, s, 8);
      if (word_special(x)) break;
      memcpy(o, &x, 8);
      o += 8;
      s += 8;
    }
    if (s >= end) break;
    if (n >= 8 && end - s < 8) {
      /* the tail as the last 8 bytes of the string: when all are plain, the
       * ones before s were copied 1:1 to just before o, so rewriting them
       * with the same bytes is harmless */
      uint64_t x;
      memcpy(&x, end - 8, 8);
      if (!word_special(x)) {
        size_t back = (size_t)(s - (end - 8));
        memcpy(o - back, &x, 8);
        o += 8 - back;
        break;
      }
    }
    unsigned c = *s;
    if (!needs_look[c]) {
      *o++ = (char)c;
      s++;
      continue;
    }
    if (c >= 0x80) {
      size_t k = utf8_seq_len(s);
      if (k) {
        memcpy(o, s, k); /* k <= 4 and s has its NUL: no over-read past it */
        o += k;
        s += k;
      } else {
        memcpy(o, dp_replacement, 3);
        o += 3;
        s++;
      }
      continue;
    }
    const char *rep;
    if (c == '\\') {
      rep = "\\\\";
    } else if (c == '\t') {
      rep = "\\t";
    } else if (c == '\n') {
      rep = "\\n";
    } else if (c == '\r') {
      rep = "\\r";
    } else if (in_list && list_esc(c)) {
      rep = list_esc(c);
    } else {
      *o++ = (char)c; /* other control characters are taken literally */
      s++;
      continue;
    }
    memcpy(o, rep, 2);
    o += 2;
    s++;
  }
  return o;
}

static char *u64_fast(char *o, uint64_t v) {
  char tmp[24];
  char *p = tmp + sizeof tmp;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  size_t n = (size_t)(tmp + sizeof tmp - p);
  memcpy(o, p, n);
  return o + n;
}

static size_t slen(const char *s) { return s ? strlen(s) : 0; }

/* An auth list field and its tab (see copy_list). */
static char *list_fast(char *o, const void *first, size_t n, size_t stride, const size_t *fields,
                       size_t nf) {
  const char *p = first;
  for (size_t i = 0; i < n; i++, p += stride)
    for (size_t k = 0; k < nf; k++) {
      if (i || k) *o++ = k ? LIST_US : LIST_RS;
      const char *s = field_at(p, fields[k]);
      o = esc_fast(o, s ? s : "", slen(s), true);
    }
  *o++ = '\t';
  return o;
}

static char *text_fast(char *o, const char *s) {
  o = esc_fast(o, s ? s : "", slen(s), false);
  *o++ = '\t';
  return o;
}

#define LIST_ARGS(base, n, fields) (base), (base) ? (n) : 0, sizeof(base)[0], fields, NFIELDS(fields)

/* 0, DP_ENOMEM, or DP_ELIMIT when the worst case does not fit under the
 * buffer's cap (the caller then retries with the exact encoder). */
static int encode_record_fast(dp_buf_t *b, int64_t key, const dp_report_t *r, const dp_record_t *rec) {
  /* the begin timestamp, formatted once per thread and report */
  static _Thread_local int64_t ts_t;
  static _Thread_local char ts[48];
  static _Thread_local size_t ts_len;
  if (!ts_len || ts_t != r->begin) {
    dp_buf_t tb;
    dp_buf_init(&tb, sizeof ts - 1);
    int rc = put_ts_uncached(&tb, r->begin);
    if (!rc) {
      memcpy(ts, tb.data, tb.len);
      ts_len = tb.len;
      ts_t = r->begin;
    }
    dp_buf_free(&tb);
    if (rc) return rc;
  }
  size_t nr = rec->reasons ? rec->n_reasons : 0, nd = rec->dkim ? rec->n_dkim : 0,
         ns = rec->spf ? rec->n_spf : 0;
  size_t text = slen(rec->source_ip) + slen(rec->disposition) + slen(rec->pe_dkim) +
                slen(rec->pe_spf) + slen(rec->header_from) + slen(rec->envelope_from) +
                slen(rec->envelope_to) + slen(rec->sender);
  for (size_t i = 0; i < nr; i++) text += slen(rec->reasons[i].type) + slen(rec->reasons[i].comment);
  for (size_t i = 0; i < nd; i++)
    text += slen(rec->dkim[i].domain) + slen(rec->dkim[i].selector) + slen(rec->dkim[i].result) +
            slen(rec->dkim[i].human_result);
  for (size_t i = 0; i < ns; i++)
    text += slen(rec->spf[i].domain) + slen(rec->spf[i].scope) + slen(rec->spf[i].result) +
            slen(rec->spf[i].human_result);
  /* 3 numbers of <= 20 digits, the timestamp, 19 tabs and the newline, 5
   * booleans, and a separator per list field */
  size_t bound = 4 * text + 3 * 24 + ts_len + 32 + 5 + 2 * nr + 4 * nd + 4 * ns;
  int rc = dp_buf_reserve(b, bound);
  if (rc) return rc;
  char *o = b->data + b->len;
  if (key < 0) {
    *o++ = '-';
    o = u64_fast(o, (uint64_t)0 - (uint64_t)key);
  } else {
    o = u64_fast(o, (uint64_t)key);
  }
  *o++ = '\t';
  memcpy(o, ts, ts_len);
  o += ts_len;
  *o++ = '\t';
  o = u64_fast(o, rec->index);
  *o++ = '\t';
  o = text_fast(o, rec->source_ip);
  o = u64_fast(o, rec->count);
  *o++ = '\t';
  o = text_fast(o, rec->disposition);
  o = text_fast(o, rec->pe_dkim);
  o = text_fast(o, rec->pe_spf);
  o = list_fast(o, LIST_ARGS(rec->reasons, nr, reason_fields));
  o = text_fast(o, rec->header_from);
  o = text_fast(o, rec->envelope_from);
  o = text_fast(o, rec->envelope_to);
  o = list_fast(o, LIST_ARGS(rec->dkim, nd, dkim_fields));
  o = list_fast(o, LIST_ARGS(rec->spf, ns, spf_fields));
  *o++ = rec->dkim_aligned ? 't' : 'f';
  *o++ = '\t';
  *o++ = rec->dkim_aligned_strict ? 't' : 'f';
  *o++ = '\t';
  *o++ = rec->spf_aligned ? 't' : 'f';
  *o++ = '\t';
  *o++ = rec->spf_aligned_strict ? 't' : 'f';
  *o++ = '\t';
  o = text_fast(o, rec->sender);
  *o++ = rec->third_party ? 't' : 'f';
  *o++ = '\n';
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
  return 0;
}

/** Append one record's COPY row (columns as in dp_store_record_columns). */
int dp_store_encode_record(dp_buf_t *b, int64_t key, const dp_report_t *r, const dp_record_t *rec) {
  int rc = encode_record_fast(b, key, r, rec);
  /* near the cap the worst case may not fit where the row itself does */
  return rc == DP_ELIMIT ? encode_record_exact(b, key, r, rec) : rc;
}

/* ------------------------------------------------------------------------ */
/* Row lengths without the rows: what a sink that stores nothing needs to
 * apply the same size limit (the report's rows are capped like its XML) as
 * the sinks that build them. Must agree with esc_fast byte for byte. */

static size_t esc_len(const char *str, size_t n, bool in_list) {
  const unsigned char *s = (const unsigned char *)str, *end = s + n;
  size_t len = n;
  while (s < end) {
    while (end - s >= 8) {
      uint64_t x;
      memcpy(&x, s, 8);
      if (word_special(x)) break;
      s += 8;
    }
    if (s >= end) break;
    if (n >= 8 && end - s < 8) {
      uint64_t x;
      memcpy(&x, end - 8, 8);
      if (!word_special(x)) break;
    }
    unsigned c = *s;
    if (!needs_look[c]) {
      s++;
      continue;
    }
    if (c >= 0x80) {
      size_t k = utf8_seq_len(s);
      if (k) {
        s += k;
      } else {
        len += 2; /* one byte becomes U+FFFD's three */
        s++;
      }
      continue;
    }
    if (c == '\\' || c == '\t' || c == '\n' || c == '\r' || (in_list && list_esc(c))) len += 1;
    s++;
  }
  return len;
}

/* True when no byte of s[0..n) but NUL needs escaping (as text or as a list
 * field): then every string inside s is its own COPY text. */
static bool block_plain(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i sp = _mm_set1_epi8(0x20), bs = _mm_set1_epi8('\\'), zero = _mm_setzero_si128();
  for (;;) {
    if (i + 16 > n) {
      if (n < 16 || i == n) break;
      i = n - 16; /* the tail as the last 16 bytes, read again in part */
    }
    __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
    /* signed: bytes >= 0x80 are negative, so "< 0x20" takes them too */
    __m128i m = _mm_andnot_si128(_mm_cmpeq_epi8(v, zero), _mm_cmplt_epi8(v, sp));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, bs));
    if (_mm_movemask_epi8(m)) return false;
    i += 16;
  }
#endif
  for (; i < n; i++)
    if (s[i] && needs_look[s[i]]) return false;
  return true;
}

static size_t field_len(const char *s, bool in_list) {
  if (!s) return 0;
  return esc_len(s, strlen(s), in_list);
}

/* An auth list field with its tab (see list_fast). */
static size_t list_len(const void *first, size_t n, size_t stride, const size_t *fields, size_t nf) {
  size_t len = 1;
  const char *p = first;
  for (size_t i = 0; i < n; i++, p += stride)
    for (size_t k = 0; k < nf; k++) len += (i || k) + field_len(field_at(p, fields[k]), true);
  return len;
}

static size_t text_len(const char *s) { return 1 + field_len(s, false); }

/* The separators of a list of n entries of nf fields. */
static size_t seps_len(size_t n, size_t nf) { return n ? n * nf - 1 : 0; }

static size_t u64_len(uint64_t v) {
  size_t n = 1;
  for (uint64_t p = 10; v >= p; p *= 10)
    if (++n == 20) break; /* 10^19 <= v: 20 digits; 10^20 would overflow */
  return n;
}

/** Bytes dp_store_encode_record would append for rec (no buffer, no cap). */
size_t dp_store_record_row_len(int64_t key, const dp_report_t *r, const dp_record_t *rec) {
  /* the begin timestamp's length, once per thread and report */
  static _Thread_local int64_t ts_t;
  static _Thread_local size_t ts_len;
  if (!ts_len || ts_t != r->begin) {
    dp_buf_t tb;
    dp_buf_init(&tb, 0);
    size_t l = put_ts_uncached(&tb, r->begin) ? 0 : tb.len;
    dp_buf_free(&tb);
    if (!l) return SIZE_MAX; /* out of memory: no row fits */
    ts_len = l;
    ts_t = r->begin;
  }
  size_t nr = rec->reasons ? rec->n_reasons : 0, nd = rec->dkim ? rec->n_dkim : 0,
         ns = rec->spf ? rec->n_spf : 0;
  /* the key's length, once per report */
  static _Thread_local int64_t key_v;
  static _Thread_local size_t key_len;
  if (!key_len || key_v != key) {
    key_len = key < 0 ? 1 + u64_len((uint64_t)0 - (uint64_t)key) : u64_len((uint64_t)key);
    key_v = key;
  }
  /* key, timestamp, index, count and their four tabs; the four booleans
   * with their tabs; third_party and the newline; source_ip and sender
   * (outside the text block) with their tabs */
  size_t len = key_len + ts_len + u64_len(rec->index) + u64_len(rec->count) + 4 + 8 + 2 +
               text_len(rec->source_ip) + text_len(rec->sender);
  if (rec->text && block_plain(rec->text, rec->text_len)) {
    /* every string in the block is its own COPY text, and the parser summed
     * their lengths: only the six text fields' and three lists' tabs and the
     * lists' separators */
    return len + rec->text_used + 6 + 3 + seps_len(nr, NFIELDS(reason_fields)) +
           seps_len(nd, NFIELDS(dkim_fields)) + seps_len(ns, NFIELDS(spf_fields));
  }
  len += text_len(rec->disposition) + text_len(rec->pe_dkim) + text_len(rec->pe_spf) +
         text_len(rec->header_from) + text_len(rec->envelope_from) + text_len(rec->envelope_to);
  len += list_len(LIST_ARGS(rec->reasons, nr, reason_fields)) +
         list_len(LIST_ARGS(rec->dkim, nd, dkim_fields)) + list_len(LIST_ARGS(rec->spf, ns, spf_fields));
  return len;
}
#undef LIST_ARGS

/** Append one ingest_error COPY row (columns as in dp_store_error_columns). */
int dp_store_encode_error(dp_buf_t *b, const char *source, const char *part,
                          const char *org_name, const char *report_id, int code,
                          const char *reason) {
  size_t mark = b->len;
  int rc = put_text(b, source);
  if (!rc) rc = put_text(b, part);
  if (!rc) rc = put_text(b, org_name);
  if (!rc) rc = put_text(b, report_id);
  if (!rc) rc = put_text(b, dp_err_name(code));
  if (!rc) rc = dp_copy_text(b, reason);
  if (!rc) rc = dp_buf_putc(b, '\n');
  if (rc) dp_buf_truncate(b, mark);
  return rc;
}
