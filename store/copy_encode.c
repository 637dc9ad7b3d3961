/* SPDX-License-Identifier: MIT */
/* store/copy_encode.c - PostgreSQL COPY encoding of reports and ingest errors
 * (text format), of records (binary format; the text twin stays as the
 * reference it is tested against) and the report key (hash of the report's
 * identity). Runs in worker threads: pure functions of their arguments. */
#include "store/store.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <string.h>

/* Must list the columns in the order the encoders below write them. */
const char dp_store_report_columns[] =
    "id, org_name, email, extra_contact, report_id, domain, begin_ts, end_ts, "
    "errors, adkim, aspf, p, sp, np, pct, fo, testing, discovery_method, "
    "schema_version, version, generator, source, content_hash, n_records, messages";
const char dp_store_record_columns[] =
    "report_key, begin_ts, seq, source_ip, count, disposition, pe_dkim, pe_spf, "
    "reason_types, reason_comments, header_from, envelope_from, envelope_to, "
    "dkim_domains, dkim_selectors, dkim_results, dkim_human, "
    "spf_domains, spf_scopes, spf_results, spf_human, "
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

/* Append s COPY-escaped. Inside an array literal (in_array), " and \ are first
 * escaped for the array parser, and that backslash is then escaped for COPY.
 * Runs of plain bytes are appended in one call: this is the hot path. */
static int copy_escape(dp_buf_t *b, const char *str, bool in_array) {
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
    } else {
      /* Other control characters are taken literally by COPY. */
      s++;
      continue;
    }
    if (s > run && (rc = dp_buf_append(b, run, (size_t)(s - run)))) return rc;
    if ((rc = dp_buf_puts(b, rep))) return rc;
    s++;
    run = s;
  }
  if (s > run) return dp_buf_append(b, run, (size_t)(s - run));
  return 0;
}

/** Append s as one COPY text field (no separator); NULL is written as "". */
int dp_copy_text(dp_buf_t *b, const char *s) { return copy_escape(b, s, false); }

/** Append a text[] field of n strings taken stride bytes apart from first. */
int dp_copy_array(dp_buf_t *b, const char *const *first, size_t n, size_t stride) {
  int rc = dp_buf_putc(b, '{');
  const char *p = (const char *)first;
  for (size_t i = 0; i < n && !rc; i++, p += stride) {
    const char *s;
    memcpy(&s, p, sizeof s);
    if (i && (rc = dp_buf_putc(b, ','))) break;
    if ((rc = dp_buf_putc(b, '"'))) break;
    if ((rc = copy_escape(b, s, true))) break;
    rc = dp_buf_putc(b, '"');
  }
  return rc ? rc : dp_buf_putc(b, '}');
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

/* Decimal digits by hand: printf is a fifth of the encoding time on the
 * record hot path. */
static int put_u64(dp_buf_t *b, uint64_t v) {
  char tmp[24];
  char *p = tmp + sizeof tmp;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return dp_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

static int put_i64(dp_buf_t *b, int64_t v) {
  if (v >= 0) return put_u64(b, (uint64_t)v);
  int rc = dp_buf_putc(b, '-');
  return rc ? rc : put_u64(b, (uint64_t)0 - (uint64_t)v);
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
  /* Year 0 is 1 BC in PostgreSQL's (proleptic Gregorian) notation. */
  return dp_buf_printf(b, "%04" PRId64 "-%02" PRId64 "-%02" PRId64 " %02d:%02d:%02d+00%s",
                       y > 0 ? y : 1 - y, m, d, (int)(secs / 3600), (int)(secs / 60 % 60),
                       (int)(secs % 60), y > 0 ? "" : " BC");
}

/* Drop everything appended after mark: a half-written row would corrupt the stream. */
static void buf_truncate(dp_buf_t *b, size_t mark) {
  b->len = mark;
  if (b->data) b->data[mark] = '\0';
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
  size_t mark = b->len;
  int rc = dp_buf_printf(b, "%" PRId64 "\t", key);
  if (!rc) rc = put_text(b, r->org_name);
  if (!rc) rc = put_text(b, r->email);
  if (!rc) rc = put_text(b, r->extra_contact);
  if (!rc) rc = put_text(b, r->report_id);
  if (!rc) rc = put_text(b, r->domain);
  if (!rc) rc = put_ts(b, r->begin);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_ts(b, r->end);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = dp_copy_array(b, r->errors, r->errors ? r->n_errors : 0, sizeof r->errors[0]);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, r->adkim);
  if (!rc) rc = put_text(b, r->aspf);
  if (!rc) rc = put_text(b, r->p);
  if (!rc) rc = put_text(b, r->sp);
  if (!rc) rc = put_text(b, r->np);
  if (!rc) rc = r->pct < 0 ? dp_buf_puts(b, "\\N\t") : dp_buf_printf(b, "%d\t", r->pct);
  if (!rc) rc = put_text(b, r->fo);
  if (!rc) rc = put_text(b, r->testing);
  if (!rc) rc = put_text(b, r->discovery_method);
  if (!rc) rc = dp_buf_printf(b, "%d\t", r->schema);
  if (!rc) rc = put_text(b, r->version);
  if (!rc) rc = put_text(b, r->generator);
  if (!rc) rc = put_text(b, source);
  if (!rc)
    rc = dp_buf_printf(b, "%" PRId64 "\t%" PRIu64 "\t%" PRIu64 "\n", u64_to_i64(content_hash),
                       r->n_records, r->messages);
  if (rc) buf_truncate(b, mark);
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
  if (!rc) rc = put_u64(b, rec->index);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, rec->source_ip);
  if (!rc) rc = put_u64(b, rec->count);
  if (!rc) rc = dp_buf_putc(b, '\t');
  if (!rc) rc = put_text(b, rec->disposition);
  if (!rc) rc = put_text(b, rec->pe_dkim);
  if (!rc) rc = put_text(b, rec->pe_spf);
#define ARR(base, n, member)                                                                   \
  if (!rc) rc = dp_copy_array(b, (base) ? &(base)[0].member : NULL, (base) ? (n) : 0,           \
                              sizeof (base)[0]);                                               \
  if (!rc) rc = dp_buf_putc(b, '\t');
  ARR(rec->reasons, rec->n_reasons, type)
  ARR(rec->reasons, rec->n_reasons, comment)
  if (!rc) rc = put_text(b, rec->header_from);
  if (!rc) rc = put_text(b, rec->envelope_from);
  if (!rc) rc = put_text(b, rec->envelope_to);
  ARR(rec->dkim, rec->n_dkim, domain)
  ARR(rec->dkim, rec->n_dkim, selector)
  ARR(rec->dkim, rec->n_dkim, result)
  ARR(rec->dkim, rec->n_dkim, human_result)
  ARR(rec->spf, rec->n_spf, domain)
  ARR(rec->spf, rec->n_spf, scope)
  ARR(rec->spf, rec->n_spf, result)
  ARR(rec->spf, rec->n_spf, human_result)
#undef ARR
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
  if (rc) buf_truncate(b, mark);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* The record hot path: one reservation per row for its worst case, then
 * plain stores. Every field expands at most 4x (a backslash inside an array
 * becomes 4 bytes, an invalid byte 3), so the bound is 4x the text plus the
 * fixed parts. Output is byte-identical to encode_record_exact. */

/* Write s (n bytes, NUL-terminated) COPY-escaped at o; returns the new end. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* High bit set in each byte of x that is zero (exact, no false positives). */
static uint64_t zero_bytes(uint64_t x) {
  return ~(((x & ~HIGHS) + ~HIGHS) | x) & HIGHS;
}

/* Non-zero when one of the 8 bytes in x needs more than a plain copy:
 * >= 0x80, < 0x20, a backslash, or (in an array) a double quote. */
static uint64_t word_special(uint64_t x, bool in_array) {
  uint64_t ge20 = ((x & ~HIGHS) + ONES * (0x80 - 0x20)) & HIGHS; /* low 7 bits >= 0x20 */
  uint64_t sp = (x & HIGHS) | (~ge20 & HIGHS) | zero_bytes(x ^ (ONES * '\\'));
  if (in_array) sp |= zero_bytes(x ^ (ONES * '"'));
  return sp;
}

/* 1 for a byte that needs a look (control, backslash, non-ASCII, and the
 * double quote inside arrays); 0 for one copied as is. [in_array][byte] */
static const unsigned char needs_look[2][256] = {
    {
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    },
    {
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    }
};

static char *esc_fast(char *o, const char *str, size_t n, bool in_array) {
  const unsigned char *s = (const unsigned char *)str, *end = s + n;
  while (s < end) {
    /* eight plain bytes at a time: the output stays within the 4x bound
     * because a word is copied only when all 8 input bytes are there */
    while (end - s >= 8) {
      uint64_t x;
      memcpy(&x, s, 8);
      if (word_special(x, in_array)) break;
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
      if (!word_special(x, in_array)) {
        size_t back = (size_t)(s - (end - 8));
        memcpy(o - back, &x, 8);
        o += 8 - back;
        break;
      }
    }
    unsigned c = *s;
    if (!needs_look[in_array][c]) {
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
    size_t rl = 2;
    if (c == '\\') {
      rep = in_array ? "\\\\\\\\" : "\\\\";
      rl = in_array ? 4 : 2;
    } else if (c == '"') {
      rep = "\\\\\"";
      rl = 3;
    } else if (c == '\t') {
      rep = "\\t";
    } else if (c == '\n') {
      rep = "\\n";
    } else if (c == '\r') {
      rep = "\\r";
    } else {
      *o++ = (char)c; /* other control characters are taken literally */
      s++;
      continue;
    }
    memcpy(o, rep, rl);
    o += rl;
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

static char *arr_fast(char *o, const char *first, size_t n, size_t stride) {
  *o++ = '{';
  for (size_t i = 0; i < n; i++, first += stride) {
    const char *s;
    memcpy(&s, first, sizeof s);
    if (i) *o++ = ',';
    *o++ = '"';
    o = esc_fast(o, s ? s : "", slen(s), true);
    *o++ = '"';
  }
  *o++ = '}';
  *o++ = '\t';
  return o;
}

static char *text_fast(char *o, const char *s) {
  o = esc_fast(o, s ? s : "", slen(s), false);
  *o++ = '\t';
  return o;
}

#define ARR_ARGS(base, n, member) \
  (const char *)((base) ? &(base)[0].member : NULL), (base) ? (n) : 0, sizeof(base)[0]

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
  /* 3 numbers of <= 20 digits, the timestamp, 27 separators, 5 booleans,
   * 10 arrays of "{}" and 3 bytes per element ("",) */
  size_t bound = 4 * text + 3 * 24 + ts_len + 32 + 5 + 10 * 2 + 3 * (2 * nr + 4 * nd + 4 * ns);
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
  o = arr_fast(o, ARR_ARGS(rec->reasons, nr, type));
  o = arr_fast(o, ARR_ARGS(rec->reasons, nr, comment));
  o = text_fast(o, rec->header_from);
  o = text_fast(o, rec->envelope_from);
  o = text_fast(o, rec->envelope_to);
  o = arr_fast(o, ARR_ARGS(rec->dkim, nd, domain));
  o = arr_fast(o, ARR_ARGS(rec->dkim, nd, selector));
  o = arr_fast(o, ARR_ARGS(rec->dkim, nd, result));
  o = arr_fast(o, ARR_ARGS(rec->dkim, nd, human_result));
  o = arr_fast(o, ARR_ARGS(rec->spf, ns, domain));
  o = arr_fast(o, ARR_ARGS(rec->spf, ns, scope));
  o = arr_fast(o, ARR_ARGS(rec->spf, ns, result));
  o = arr_fast(o, ARR_ARGS(rec->spf, ns, human_result));
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
#undef ARR_ARGS

/** Append one record's COPY text row (columns as in dp_store_record_columns). */
int dp_store_encode_record_text(dp_buf_t *b, int64_t key, const dp_report_t *r,
                                const dp_record_t *rec) {
  int rc = encode_record_fast(b, key, r, rec);
  /* near the cap the worst case may not fit where the row itself does */
  return rc == DP_ELIMIT ? encode_record_exact(b, key, r, rec) : rc;
}

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
  if (rc) buf_truncate(b, mark);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Records in COPY binary format (PostgreSQL manual, COPY, "Binary Format",
 * and each type's send/recv function): per row an int16 field count, then
 * per field an int32 byte length and the value, all integers big-endian.
 * The server then runs no text input function (array_in, inet_in, the
 * timestamp parser, textin) on 27 fields per row. */

/* The signature, flags (no OIDs) and an empty header extension. */
const char dp_store_copy_bin_header[DP_STORE_COPY_BIN_HEADER_LEN] = {
    'P', 'G', 'C', 'O', 'P', 'Y', '\n', '\xff', '\r', '\n', '\0', 0, 0, 0, 0, 0, 0, 0, 0};
/* int16 -1 in place of a field count ends the data. */
const char dp_store_copy_bin_trailer[DP_STORE_COPY_BIN_TRAILER_LEN] = {'\xff', '\xff'};

#define REC_FIELDS 27
#define TEXT_OID 25 /* pg_type.oid of text: fixed in the catalog since PostgreSQL 6 */
/* PostgreSQL's own family codes in the inet binary format: PGSQL_AF_INET is
 * the server's AF_INET + 0, PGSQL_AF_INET6 AF_INET + 1; AF_INET is 2 on every
 * platform PostgreSQL runs on. */
#define PG_AF_INET 2
#define PG_AF_INET6 3
/* 2000-01-01 00:00:00 UTC, PostgreSQL's timestamp epoch, in Unix seconds. */
#define PG_EPOCH_UNIX INT64_C(946684800)

static char *be16(char *o, uint16_t v) {
  o[0] = (char)(v >> 8);
  o[1] = (char)v;
  return o + 2;
}

static char *be32(char *o, uint32_t v) {
  o[0] = (char)(v >> 24);
  o[1] = (char)(v >> 16);
  o[2] = (char)(v >> 8);
  o[3] = (char)v;
  return o + 4;
}

static char *be64(char *o, uint64_t v) {
  o = be32(o, (uint32_t)(v >> 32));
  return be32(o, (uint32_t)v);
}

/* An int8 field. */
static char *bin_i64(char *o, uint64_t v) {
  o = be32(o, 8);
  return be64(o, v);
}

static char *bin_bool(char *o, bool v) {
  o = be32(o, 1);
  *o++ = v ? 1 : 0;
  return o;
}

/* Bytes s (NUL-terminated, n = strlen) takes once invalid UTF-8 sequences
 * become U+FFFD, as the text encoder does: the server validates text in
 * binary COPY too and would refuse the whole COPY. */
static size_t utf8_fixed_len(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str, *end = s + n;
  size_t out = n;
  while (s < end) {
    if (*s < 0x80) {
      s++;
      continue;
    }
    size_t k = utf8_seq_len(s);
    if (k) {
      s += k;
    } else {
      out += 2; /* one byte becomes three */
      s++;
    }
  }
  return out;
}

/* Write s (n = strlen bytes) with invalid UTF-8 replaced at o; the new end.
 * Eight ASCII bytes are copied at a time: the common case. */
static char *utf8_copy(char *o, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str, *end = s + n;
  while (s < end) {
    while (end - s >= 8) {
      uint64_t x;
      memcpy(&x, s, 8);
      if (x & HIGHS) break;
      memcpy(o, &x, 8);
      o += 8;
      s += 8;
    }
    if (s >= end) break;
    if (n >= 8 && end - s < 8) {
      /* the tail as the string's last 8 bytes: when all are ASCII, the
       * ones before s were copied 1:1 to just before o */
      uint64_t x;
      memcpy(&x, end - 8, 8);
      if (!(x & HIGHS)) {
        size_t back = (size_t)(s - (end - 8));
        memcpy(o - back, &x, 8);
        o += 8 - back;
        break;
      }
    }
    if (*s < 0x80) {
      *o++ = (char)*s++;
      continue;
    }
    size_t k = utf8_seq_len(s); /* reads no further than the NUL */
    if (k) {
      memcpy(o, s, k);
      o += k;
      s += k;
    } else {
      memcpy(o, dp_replacement, 3);
      o += 3;
      s++;
    }
  }
  return o;
}

/* String lengths of one row in the order write_row writes the strings,
 * measured once by the reservation pass (the first DP_LENS of them; the
 * rest are measured again when written). */
#define DP_LENS 48
struct lens {
  size_t v[DP_LENS];
  size_t n, i;
  size_t total;
};

static void lens_add(struct lens *L, const char *s) {
  size_t l = slen(s);
  if (L->n < DP_LENS) L->v[L->n++] = l;
  L->total += l;
}

static size_t lens_next(struct lens *L, const char *s) {
  return L->i < L->n ? L->v[L->i++] : (L->i++, slen(s));
}

/* A text field: its length is known only once invalid bytes are replaced,
 * so it is written behind the bytes. */
static char *bin_text(char *o, const char *s, struct lens *L) {
  size_t n = lens_next(L, s);
  char *start = o + 4;
  char *end = n ? utf8_copy(start, s, n) : start;
  be32(o, (uint32_t)(end - start));
  return end;
}

/* A text[] field of n strings stride bytes apart from first (array_send's
 * layout): ndim, has-nulls flag, element type, then per dimension its size
 * and lower bound, then the elements; no elements is ndim 0, as '{}'. */
static char *bin_array(char *o, const char *first, size_t n, size_t stride, struct lens *L) {
  char *start = o + 4, *p = start;
  p = be32(p, n ? 1 : 0);
  p = be32(p, 0);
  p = be32(p, TEXT_OID);
  if (n) {
    p = be32(p, (uint32_t)n);
    p = be32(p, 1);
  }
  for (size_t i = 0; i < n; i++, first += stride) {
    const char *s;
    memcpy(&s, first, sizeof s);
    p = bin_text(p, s, L);
  }
  be32(o, (uint32_t)(p - start));
  return p;
}

/* Dotted quad without leading zeros, the parser's canonical IPv4 form; 0
 * for anything else (then inet_pton decides). inet_pton was a tenth of the
 * encoder's instructions. */
static int quad_fast(const char *s, unsigned char a[4]) {
  for (int i = 0; i < 4; i++) {
    if (i && *s++ != '.') return 0;
    if (*s < '0' || *s > '9') return 0;
    unsigned v = (unsigned)(*s++ - '0');
    if (v && *s >= '0' && *s <= '9') {
      v = v * 10 + (unsigned)(*s++ - '0');
      if (*s >= '0' && *s <= '9') v = v * 10 + (unsigned)(*s++ - '0');
    }
    if (v > 255 || (*s >= '0' && *s <= '9')) return 0;
    a[i] = (unsigned char)v;
  }
  return *s == '\0';
}

static bool ip_bytes(const char *ip, bool v6, unsigned char a[16]) {
  if (!v6 && quad_fast(ip, a)) return true;
  return inet_pton(v6 ? AF_INET6 : AF_INET, ip, a) == 1;
}

/* The inet field of a parsed (canonical) address. An address that does not
 * parse is sent as an empty field, which inet_recv refuses: the server then
 * rejects the row, as it rejects the same text through COPY text. */
static char *bin_inet(char *o, const char *ip, int family) {
  unsigned char a[16];
  bool v6 = family == 6;
  if (!ip_bytes(ip, v6, a)) return be32(o, 0);
  size_t nb = v6 ? 16 : 4;
  o = be32(o, (uint32_t)(4 + nb));
  *o++ = (char)(v6 ? PG_AF_INET6 : PG_AF_INET);
  *o++ = (char)(v6 ? 128 : 32); /* bits: a host address */
  *o++ = 0;                      /* is_cidr: inet, not cidr */
  *o++ = (char)nb;
  memcpy(o, a, nb);
  return o + nb;
}

/* timestamptz: int64 microseconds since 2000-01-01 UTC. Seconds too far out
 * for that are sent as a value past PostgreSQL's range (not its infinities),
 * which timestamptz_recv refuses like the text input refuses the year. */
static char *bin_ts(char *o, int64_t t) {
  const int64_t lim = INT64_MAX / 1000000;
  int64_t v;
  if (t < INT64_MIN + PG_EPOCH_UNIX)
    v = INT64_MIN + 1;
  else if (t - PG_EPOCH_UNIX > lim)
    v = INT64_MAX - 1;
  else if (t - PG_EPOCH_UNIX < -lim)
    v = INT64_MIN + 1;
  else
    v = (t - PG_EPOCH_UNIX) * 1000000;
  return bin_i64(o, (uint64_t)v);
}

/* seq is an integer column: a record index past INT32_MAX is sent as an
 * 8-byte field, which int4recv refuses, as the text input refuses the
 * number (out of range) instead of storing a truncated one. */
static char *bin_seq(char *o, uint64_t index) {
  if (index > (uint64_t)INT32_MAX) return bin_i64(o, index);
  o = be32(o, 4);
  return be32(o, (uint32_t)index);
}

struct row_arrays {
  const char *first[10];
  size_t n[10], stride[10];
};

#define SET_ARR(ra, i, base, cnt, member)                       \
  do {                                                          \
    (ra)->first[i] = (const char *)((base) ? &(base)[0].member : NULL); \
    (ra)->n[i] = (base) ? (cnt) : 0;                            \
    (ra)->stride[i] = sizeof(base)[0];                          \
  } while (0)

/* The ten arrays in column order (reasons; dkim; spf). */
static void row_arrays(struct row_arrays *ra, const dp_record_t *rec) {
  SET_ARR(ra, 0, rec->reasons, rec->n_reasons, type);
  SET_ARR(ra, 1, rec->reasons, rec->n_reasons, comment);
  SET_ARR(ra, 2, rec->dkim, rec->n_dkim, domain);
  SET_ARR(ra, 3, rec->dkim, rec->n_dkim, selector);
  SET_ARR(ra, 4, rec->dkim, rec->n_dkim, result);
  SET_ARR(ra, 5, rec->dkim, rec->n_dkim, human_result);
  SET_ARR(ra, 6, rec->spf, rec->n_spf, domain);
  SET_ARR(ra, 7, rec->spf, rec->n_spf, scope);
  SET_ARR(ra, 8, rec->spf, rec->n_spf, result);
  SET_ARR(ra, 9, rec->spf, rec->n_spf, human_result);
}
#undef SET_ARR

static const char *arr_str(const struct row_arrays *ra, int a, size_t i) {
  const char *s;
  memcpy(&s, ra->first[a] + i * ra->stride[a], sizeof s);
  return s;
}

/* Bytes of the row but for its text: field count, 27 lengths, int8 key,
 * timestamp and count, seq (4, or 8 when out of range), the inet payload
 * (exact: as bin_inet writes it; else its upper bound for the family),
 * 5 booleans, array headers (12, 20 with a dimension), element lengths. */
static size_t row_fixed(const struct row_arrays *ra, const dp_record_t *rec, bool exact) {
  size_t n = 2 + 4 * REC_FIELDS + 3 * 8 + (rec->index > (uint64_t)INT32_MAX ? 8 : 4) + 5;
  unsigned char a[16];
  bool v6 = rec->ip_family == 6;
  if (!exact || ip_bytes(rec->source_ip, v6, a)) n += v6 ? 20 : 8;
  for (int i = 0; i < 10; i++) n += (ra->n[i] ? 20 : 12) + 4 * ra->n[i];
  return n;
}

#define FOR_ROW_TEXT(rec, ra, s, BODY)                                                       \
  do {                                                                                       \
    const char *const scal_[7] = {(rec)->disposition, (rec)->pe_dkim, (rec)->pe_spf,         \
                                  (rec)->header_from, (rec)->envelope_from,                  \
                                  (rec)->envelope_to, (rec)->sender};                        \
    for (int k_ = 0; k_ < 7; k_++) {                                                         \
      const char *s = scal_[k_];                                                             \
      BODY;                                                                                  \
    }                                                                                        \
    for (int a_ = 0; a_ < 10; a_++)                                                          \
      for (size_t i_ = 0; i_ < (ra)->n[a_]; i_++) {                                          \
        const char *s = arr_str((ra), a_, i_);                                               \
        BODY;                                                                                \
      }                                                                                      \
  } while (0)

/* The text of the row in the order write_row writes it, into L. */
static void row_lens(struct lens *L, const dp_record_t *rec, const struct row_arrays *ra) {
  L->n = L->i = L->total = 0;
  lens_add(L, rec->disposition);
  lens_add(L, rec->pe_dkim);
  lens_add(L, rec->pe_spf);
  for (int a = 0; a < 10; a++) {
    if (a == 2) {
      lens_add(L, rec->header_from);
      lens_add(L, rec->envelope_from);
      lens_add(L, rec->envelope_to);
    }
    for (size_t i = 0; i < ra->n[a]; i++) lens_add(L, arr_str(ra, a, i));
  }
  lens_add(L, rec->sender);
}

/* The row, written at o (room for it was reserved); the new end. */
static char *write_row(char *o, int64_t key, int64_t begin, const dp_record_t *rec,
                       const struct row_arrays *ra, struct lens *L) {
  L->i = 0;
  o = be16(o, REC_FIELDS);
  o = bin_i64(o, (uint64_t)key);
  o = bin_ts(o, begin);
  o = bin_seq(o, rec->index);
  o = bin_inet(o, rec->source_ip, rec->ip_family);
  o = bin_i64(o, rec->count);
  o = bin_text(o, rec->disposition, L);
  o = bin_text(o, rec->pe_dkim, L);
  o = bin_text(o, rec->pe_spf, L);
  o = bin_array(o, ra->first[0], ra->n[0], ra->stride[0], L);
  o = bin_array(o, ra->first[1], ra->n[1], ra->stride[1], L);
  o = bin_text(o, rec->header_from, L);
  o = bin_text(o, rec->envelope_from, L);
  o = bin_text(o, rec->envelope_to, L);
  for (int a = 2; a < 10; a++) o = bin_array(o, ra->first[a], ra->n[a], ra->stride[a], L);
  o = bin_bool(o, rec->dkim_aligned);
  o = bin_bool(o, rec->dkim_aligned_strict);
  o = bin_bool(o, rec->spf_aligned);
  o = bin_bool(o, rec->spf_aligned_strict);
  o = bin_text(o, rec->sender, L);
  return bin_bool(o, rec->third_party);
}

/** Append one record's COPY binary tuple (columns as in dp_store_record_columns). */
int dp_store_encode_record(dp_buf_t *b, int64_t key, const dp_report_t *r, const dp_record_t *rec) {
  struct row_arrays ra;
  row_arrays(&ra, rec);
  struct lens L;
  row_lens(&L, rec, &ra);
  /* one reservation for the worst case (every text byte invalid: 3x) */
  int rc = dp_buf_reserve(b, row_fixed(&ra, rec, false) + 3 * L.total);
  if (rc == DP_ELIMIT) {
    /* near the cap: reserve what the row really takes, so that DP_ELIMIT
     * means the row does not fit, as with the text encoder */
    size_t exact = 0;
    FOR_ROW_TEXT(rec, &ra, s, exact += s ? utf8_fixed_len(s, strlen(s)) : 0);
    rc = dp_buf_reserve(b, row_fixed(&ra, rec, true) + exact);
  }
  if (rc) return rc;
  char *o = write_row(b->data + b->len, key, r->begin, rec, &ra, &L);
  b->len = (size_t)(o - b->data);
  b->data[b->len] = '\0';
  return 0;
}

/** Length of the whole binary record row at p (n bytes available), 0 when
 *  p holds no whole row (truncated, or not a row of 27 fields). */
size_t dp_store_record_bin_row_len(const char *p, size_t n) {
  const unsigned char *u = (const unsigned char *)p;
  if (n < 2 || ((unsigned)u[0] << 8 | u[1]) != REC_FIELDS) return 0;
  size_t off = 2;
  for (int f = 0; f < REC_FIELDS; f++) {
    if (n - off < 4) return 0;
    uint32_t len = (uint32_t)u[off] << 24 | (uint32_t)u[off + 1] << 16 |
                   (uint32_t)u[off + 2] << 8 | u[off + 3];
    off += 4;
    if (len == UINT32_MAX) continue; /* NULL */
    if (len > n - off) return 0;
    off += len;
  }
  return off;
}
