/* SPDX-License-Identifier: MIT */
/* ingest/mime.c - a small RFC 5322 / MIME (RFC 2045-2049) walker: header
 * fields with folding, Content-Type parameters (quoted, RFC 2231 extended and
 * continued, RFC 2047 encoded-words in file names), multipart bodies with
 * boundaries, forwarded message/rfc822, base64 and quoted-printable. It only
 * finds and decodes leaf parts; deciding what is a report is unpack.c's job. */
#define _GNU_SOURCE /* memmem */
#include "ingest/unpack_int.h"

#include <errno.h>
#include <iconv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Multipart levels inside one message: they are not containers for the
 * max_nesting limit (a forwarded report is easily mixed > rfc822 > mixed), so
 * they get their own fixed cap against stack exhaustion. */
#define MIME_MAX_MULTIPART_DEPTH 16
/* Leaf parts in one message (forwarded ones included). */
#define MIME_MAX_PARTS 1000
/* Bytes kept of one unfolded header field value; everything derived from a
 * field (parameters, decoded names) is bounded by a small multiple of it, so
 * those buffers need no cap of their own. */
#define MIME_MAX_FIELD (16 * 1024)
/* Bytes kept of a decoded file name. */
#define MIME_MAX_FILENAME 255
#define MIME_MAX_PARAMS 64

struct walk {
  const dp_limits_t *lim;
  int (*cb)(void *ud, const dp_mime_part_t *part);
  void *ud;
  unsigned nparts;
  int full;     /* part cap reached: the rest is skipped */
  char *err;
  size_t errlen;
};

/* ======================================================================== */
/* Characters and small strings                                             */

static int is_wsp(char c) { return c == ' ' || c == '\t'; }
static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int ieq(const char *a, size_t alen, const char *b) {
  size_t bl = strlen(b);
  if (alen != bl) return 0;
  for (size_t i = 0; i < bl; i++)
    if (lower(a[i]) != lower(b[i])) return 0;
  return 1;
}

/* Skip whitespace (folding included) and RFC 5322 comments "(...)". */
static size_t skip_cfws(const char *s, size_t n, size_t i) {
  while (i < n) {
    if (is_wsp(s[i]) || s[i] == '\r' || s[i] == '\n') {
      i++;
    } else if (s[i] == '(') {
      int d = 0;
      while (i < n) {
        if (s[i] == '\\' && i + 1 < n) { i += 2; continue; }
        if (s[i] == '(') d++;
        if (s[i] == ')' && --d == 0) { i++; break; }
        i++;
      }
    } else {
      break;
    }
  }
  return i;
}

/* Append valid UTF-8 from p, replacing each invalid byte with '?'. */
static int append_utf8_clean(dp_buf_t *out, const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned c = p[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    int ok = len && i + len <= n && !(c >= 0xc0 && c <= 0xc1) && c <= 0xf4;
    for (size_t k = 1; ok && k < len; k++)
      if ((p[i + k] & 0xc0) != 0x80) ok = 0;
    int rc = ok ? dp_buf_append(out, p + i, len) : dp_buf_putc(out, '?');
    if (rc) return rc;
    i += ok ? len : 1;
  }
  return 0;
}

/* Convert bytes in charset cs to UTF-8 (glibc iconv); unknown charsets keep
 * ASCII and turn other bytes into '?'. */
static int to_utf8(const char *cs, const unsigned char *p, size_t n, dp_buf_t *out) {
  if (!cs || !*cs || strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "utf8") == 0 ||
      strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "ascii") == 0)
    return append_utf8_clean(out, p, n);
  iconv_t cd = iconv_open("UTF-8", cs);
  if (cd == (iconv_t)-1) {
    for (size_t i = 0; i < n; i++) {
      int rc = dp_buf_putc(out, p[i] < 0x80 ? (char)p[i] : '?');
      if (rc) return rc;
    }
    return 0;
  }
  char tmp[256];
  char *in = (char *)p;
  size_t inleft = n;
  int rc = 0;
  while (inleft && !rc) {
    char *o = tmp;
    size_t oleft = sizeof tmp;
    size_t r = iconv(cd, &in, &inleft, &o, &oleft);
    int e = errno;
    rc = dp_buf_append(out, tmp, sizeof tmp - oleft);
    if (r == (size_t)-1 && !rc && e != E2BIG) {
      rc = dp_buf_putc(out, '?');
      in++;
      inleft--;
    }
  }
  iconv_close(cd);
  return rc;
}

/* ======================================================================== */
/* Header block                                                             */

struct entity {
  const char *hdr, *body;
  size_t hlen, blen;
};

/* The header block ends at the first empty line; without one the whole text
 * is header and the body is empty. */
static void split_entity(const char *p, size_t n, struct entity *e) {
  size_t i = 0;
  e->hdr = p;
  while (i < n) {
    const char *nl = memchr(p + i, '\n', n - i);
    if (!nl) break;
    size_t end = (size_t)(nl - p);
    size_t len = end - i;
    if (len == 0 || (len == 1 && p[i] == '\r')) {
      e->hlen = i;
      e->body = nl + 1;
      e->blen = n - end - 1;
      return;
    }
    i = end + 1;
  }
  e->hlen = n;
  e->body = p + n;
  e->blen = 0;
}

/* Unfolded value of the first field called name; 1 found, 0 absent, <0 error. */
static int hdr_get(const struct entity *e, const char *name, dp_buf_t *out) {
  const char *h = e->hdr;
  size_t n = e->hlen, i = 0, nl = strlen(name);
  dp_buf_reset(out);
  while (i < n) {
    const char *q = memchr(h + i, '\n', n - i);
    size_t end = q ? (size_t)(q - h) : n;
    size_t j = i;
    if (!is_wsp(h[i]) && end - i > nl && ieq(h + i, nl, name)) {
      j = i + nl;
      while (j < end && is_wsp(h[j])) j++;
      if (j < end && h[j] == ':') {
        j++;
        /* this line's rest, then every continuation line, CRLFs removed */
        for (;;) {
          size_t le = end;
          if (le > j && h[le - 1] == '\r') le--;
          size_t take = le - j;
          if (out->len + take > MIME_MAX_FIELD) take = MIME_MAX_FIELD - out->len;
          int rc = dp_buf_append(out, h + j, take);
          if (rc) return rc;
          if (end >= n) break;
          size_t ni = end + 1;
          if (ni >= n || !is_wsp(h[ni])) break;
          q = memchr(h + ni, '\n', n - ni);
          j = ni;
          end = q ? (size_t)(q - h) : n;
        }
        return 1;
      }
    }
    i = end + 1;
  }
  return 0;
}

/* "type/subtype" lower-cased into out, or "" when the value is not one. */
static void parse_type(const char *v, size_t n, char *out, size_t outlen) {
  size_t i = skip_cfws(v, n, 0), o = 0;
  int slash = 0;
  while (i < n && v[i] != ';' && v[i] != '(' && !is_wsp(v[i]) && v[i] != '\r' && v[i] != '\n') {
    if (v[i] == '/') slash++;
    if (o + 1 < outlen) out[o++] = lower(v[i]);
    i++;
  }
  out[o] = '\0';
  if (slash != 1 || out[0] == '/' || (o && out[o - 1] == '/')) out[0] = '\0';
}

/* ======================================================================== */
/* Parameters (RFC 2045 5.1, RFC 2231)                                      */

struct params {
  dp_buf_t arena;
  size_t n;
  struct { char attr[80]; size_t off, len; } p[MIME_MAX_PARAMS];
};

/* Split "type/sub; a=b; c="d e"" into attribute/value pairs. Values are
 * unquoted; unquoted values run to ';' (broken mailers put spaces in them). */
static int params_parse(const char *v, size_t n, struct params *ps) {
  ps->n = 0;
  size_t i = 0;
  int inq = 0;
  while (i < n && (inq || v[i] != ';')) { /* skip the type itself */
    if (v[i] == '"') inq = !inq;
    i++;
  }
  while (i < n && ps->n < MIME_MAX_PARAMS) {
    while (i < n && v[i] == ';') i = skip_cfws(v, n, i + 1);
    size_t a = i;
    while (i < n && v[i] != '=' && v[i] != ';' && !is_wsp(v[i])) i++;
    size_t alen = i - a;
    i = skip_cfws(v, n, i);
    if (i >= n || v[i] != '=') { /* attribute without a value: skip it */
      while (i < n && v[i] != ';') i++;
      continue;
    }
    i = skip_cfws(v, n, i + 1);
    size_t off = ps->arena.len;
    int rc = 0;
    if (i < n && v[i] == '"') {
      i++;
      while (i < n && v[i] != '"' && !rc) {
        if (v[i] == '\\' && i + 1 < n) i++;
        if (v[i] != '\r' && v[i] != '\n') rc = dp_buf_putc(&ps->arena, v[i]);
        i++;
      }
      if (i < n) i++;
      while (i < n && v[i] != ';') i++;
    } else {
      size_t s = i;
      while (i < n && v[i] != ';') i++;
      size_t e = i;
      while (e > s && is_wsp(v[e - 1])) e--;
      /* a trailing comment " (...)" is not part of the value */
      if (e > s && v[e - 1] == ')') {
        for (size_t k = s; k + 1 < e; k++)
          if (is_wsp(v[k]) && v[k + 1] == '(') { e = k; break; }
        while (e > s && is_wsp(v[e - 1])) e--;
      }
      rc = dp_buf_append(&ps->arena, v + s, e - s);
    }
    if (!rc) rc = dp_buf_putc(&ps->arena, '\0');
    if (rc) return rc;
    if (alen == 0 || alen >= sizeof ps->p[0].attr) continue;
    for (size_t k = 0; k < alen; k++) ps->p[ps->n].attr[k] = lower(v[a + k]);
    ps->p[ps->n].attr[alen] = '\0';
    ps->p[ps->n].off = off;
    ps->p[ps->n].len = ps->arena.len - off - 1;
    ps->n++;
  }
  return 0;
}

static int param_idx(const struct params *ps, const char *attr) {
  for (size_t i = 0; i < ps->n; i++)
    if (strcmp(ps->p[i].attr, attr) == 0) return (int)i;
  return -1;
}

static const char *pval(const struct params *ps, int i) { return ps->arena.data + ps->p[i].off; }

/* RFC 2231 %XX decoding of an extended value. */
static int pct_decode(const char *s, size_t n, dp_buf_t *out) {
  for (size_t i = 0; i < n; i++) {
    int rc;
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      rc = dp_buf_putc(out, (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2])));
      i += 2;
    } else {
      rc = dp_buf_putc(out, s[i]);
    }
    if (rc) return rc;
  }
  return 0;
}

/* The value of parameter name in UTF-8. Returns 2 when it came from RFC 2231
 * (already decoded), 1 for a plain value (may still hold RFC 2047 words), 0
 * when absent, <0 on error. */
static int param_value(const struct params *ps, const char *name, dp_buf_t *out) {
  char key[96];
  dp_buf_reset(out);
  snprintf(key, sizeof key, "%s*", name);
  int i = param_idx(ps, key);
  if (i >= 0) { /* name*=charset'lang'%XX */
    const char *v = pval(ps, i), *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
    char cs[64] = "";
    const char *data = v;
    if (q1 && q2) {
      snprintf(cs, sizeof cs, "%.*s", (int)(q1 - v), v);
      data = q2 + 1;
    }
    dp_buf_t raw;
    dp_buf_init(&raw, 0);
    int rc = pct_decode(data, strlen(data), &raw);
    if (!rc) rc = to_utf8(cs, (const unsigned char *)(raw.data ? raw.data : ""), raw.len, out);
    dp_buf_free(&raw);
    return rc ? rc : 2;
  }
  /* continuations: name*0, name*0*, name*1 ... in order; missing ends them */
  dp_buf_t raw;
  dp_buf_init(&raw, 0);
  char cs[64] = "";
  int found = 0, rc = 0;
  for (int k = 0; k < MIME_MAX_PARAMS && !rc; k++) {
    snprintf(key, sizeof key, "%s*%d", name, k);
    int ext = 0;
    i = param_idx(ps, key);
    if (i < 0) {
      snprintf(key, sizeof key, "%s*%d*", name, k);
      i = param_idx(ps, key);
      ext = 1;
    }
    if (i < 0) break;
    found = 1;
    const char *v = pval(ps, i);
    if (ext) {
      if (k == 0) {
        const char *q1 = strchr(v, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
        if (q1 && q2) {
          snprintf(cs, sizeof cs, "%.*s", (int)(q1 - v), v);
          v = q2 + 1;
        }
      }
      rc = pct_decode(v, strlen(v), &raw);
    } else {
      rc = dp_buf_puts(&raw, v);
    }
  }
  if (found && !rc) rc = to_utf8(cs, (const unsigned char *)(raw.data ? raw.data : ""), raw.len, out);
  dp_buf_free(&raw);
  if (rc) return rc;
  if (found) return cs[0] ? 2 : 1;
  i = param_idx(ps, name);
  if (i < 0) return 0;
  rc = dp_buf_append(out, pval(ps, i), ps->p[i].len);
  return rc ? rc : 1;
}

/* ======================================================================== */
/* Transfer encodings                                                       */

/* Base64 symbols as their value + 1; 0 is a byte outside the alphabet. */
#define B64_WS 65  /* whitespace: skipped */
#define B64_PAD 66 /* '=' */
static const unsigned char b64_tab[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
    ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15,
    ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22,
    ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29,
    ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36,
    ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42, ['q'] = 43,
    ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50,
    ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56, ['4'] = 57,
    ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
    [' '] = B64_WS, ['\t'] = B64_WS, ['\r'] = B64_WS, ['\n'] = B64_WS, ['\f'] = B64_WS,
    ['\v'] = B64_WS, ['='] = B64_PAD
};

/* Base64: whitespace and line breaks anywhere are fine, anything else outside
 * the alphabet is an error (a wrong boundary or a cut message shows up here).
 * Missing final padding is tolerated. */
static int b64_decode(const char *s, size_t n, dp_buf_t *out, char *why, size_t whylen) {
  /* Room for the most a body of n bytes can decode to (within the buffer's
   * cap), reserved once: the bytes are stored directly, not one call each. */
  size_t room = n / 4 * 3 + 3;
  if (room > out->cap - out->len) room = out->cap - out->len;
  int rc = dp_buf_reserve(out, room);
  if (rc) return rc;
  unsigned char *o = (unsigned char *)out->data + out->len, *end = o + room;
  unsigned acc = 0;
  int bits = 0, pad = 0;
  size_t q = 0; /* symbols in the current quantum */
  for (size_t i = 0; i < n && !rc; i++) {
    unsigned char c = (unsigned char)s[i];
    unsigned v = b64_tab[c];
    if (v == B64_WS) continue;
    if (v == B64_PAD) {
      pad++;
      continue;
    }
    if (v == 0) {
      snprintf(why, whylen, "invalid base64: byte 0x%02x at offset %zu", c, i);
      rc = DP_EMIME;
      break;
    }
    if (pad) {
      snprintf(why, whylen, "invalid base64: data after '=' padding at offset %zu", i);
      rc = DP_EMIME;
      break;
    }
    acc = (acc << 6) | (v - 1);
    bits += 6;
    q = (q + 1) % 4;
    if (bits >= 8) {
      bits -= 8;
      if (o == end) {
        /* only when the cap cut the room short: the buffer's own check */
        out->len = (size_t)((char *)o - out->data);
        rc = dp_buf_putc(out, (char)((acc >> bits) & 0xff));
        o = (unsigned char *)out->data + out->len;
        end = o;
        continue;
      }
      *o++ = (unsigned char)((acc >> bits) & 0xff);
    }
  }
  if (o != (unsigned char *)out->data + out->len) {
    out->len = (size_t)((char *)o - out->data);
    out->data[out->len] = '\0';
  }
  if (rc) return rc;
  if (q == 1) {
    snprintf(why, whylen, "invalid base64: truncated (a lone final symbol)");
    return DP_EMIME;
  }
  return 0;
}

/* Quoted-printable (RFC 2045 6.7): =XX, soft line breaks, trailing
 * whitespace removed; a malformed '=' is kept as is (the RFC's advice). */
static int qp_decode(const char *s, size_t n, dp_buf_t *out) {
  size_t i = 0;
  while (i < n) {
    const char *nl = memchr(s + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - s) : n;
    size_t le = end;
    if (le > i && s[le - 1] == '\r') le--;
    while (le > i && is_wsp(s[le - 1])) le--;
    int soft = 0;
    for (size_t j = i; j < le; j++) {
      int rc;
      if (s[j] == '=') {
        if (j + 1 == le) { soft = 1; break; }
        if (j + 2 < le && hexval(s[j + 1]) >= 0 && hexval(s[j + 2]) >= 0) {
          rc = dp_buf_putc(out, (char)(hexval(s[j + 1]) * 16 + hexval(s[j + 2])));
          j += 2;
        } else {
          rc = dp_buf_putc(out, '=');
        }
      } else {
        rc = dp_buf_putc(out, s[j]);
      }
      if (rc) return rc;
    }
    if (!nl) break;
    if (!soft) {
      int rc = (end > 0 && s[end - 1] == '\r') ? dp_buf_puts(out, "\r\n") : dp_buf_putc(out, '\n');
      if (rc) return rc;
    }
    i = end + 1;
  }
  return 0;
}

/* RFC 2047 encoded-words ("=?utf-8?B?...?=") in a file name, decoded to
 * UTF-8; whitespace between two adjacent words disappears. Anything that is
 * not a well-formed word stays literal. */
static int rfc2047_decode(const char *s, size_t n, dp_buf_t *out) {
  size_t i = 0;
  int prev_word = 0;
  dp_buf_t raw;
  dp_buf_init(&raw, 0);
  int rc = 0;
  while (i < n && !rc) {
    if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
      /* =?charset?X?text?= */
      size_t c0 = i + 2, c1 = c0;
      while (c1 < n && s[c1] != '?' && !is_wsp(s[c1])) c1++;
      if (c1 + 3 < n && s[c1] == '?' && s[c1 + 2] == '?' && c1 > c0) {
        char enc = lower(s[c1 + 1]);
        size_t t0 = c1 + 3, t1 = t0;
        while (t1 + 1 < n && !(s[t1] == '?' && s[t1 + 1] == '=') && !is_wsp(s[t1])) t1++;
        if ((enc == 'b' || enc == 'q') && t1 + 1 < n && s[t1] == '?' && s[t1 + 1] == '=') {
          char cs[64];
          size_t cl = c1 - c0 < sizeof cs - 1 ? c1 - c0 : sizeof cs - 1;
          memcpy(cs, s + c0, cl);
          cs[cl] = '\0';
          char *star = strchr(cs, '*'); /* RFC 2231 language suffix */
          if (star) *star = '\0';
          dp_buf_reset(&raw);
          char why[8];
          int drc = 0;
          if (enc == 'b') {
            drc = b64_decode(s + t0, t1 - t0, &raw, why, sizeof why);
          } else {
            for (size_t k = t0; k < t1 && !drc; k++) {
              if (s[k] == '_') drc = dp_buf_putc(&raw, ' ');
              else if (s[k] == '=' && k + 2 < t1 && hexval(s[k + 1]) >= 0 && hexval(s[k + 2]) >= 0) {
                drc = dp_buf_putc(&raw, (char)(hexval(s[k + 1]) * 16 + hexval(s[k + 2])));
                k += 2;
              } else drc = dp_buf_putc(&raw, s[k]);
            }
          }
          if (drc == 0) {
            rc = to_utf8(cs, (const unsigned char *)(raw.data ? raw.data : ""), raw.len, out);
            i = t1 + 2;
            prev_word = 1;
            continue;
          }
          if (drc != DP_EMIME) rc = drc;
        }
      }
    }
    if (prev_word && is_wsp(s[i])) {
      size_t k = i;
      while (k < n && is_wsp(s[k])) k++;
      if (k + 1 < n && s[k] == '=' && s[k + 1] == '?') { /* maybe another word: drop the gap */
        i = k;
        continue;
      }
    }
    prev_word = 0;
    rc = dp_buf_putc(out, s[i]);
    i++;
  }
  dp_buf_free(&raw);
  return rc;
}

/* ======================================================================== */
/* The walk                                                                 */

static int emit(struct walk *w, dp_mime_part_t *mp) {
  if (w->full) return 0;
  if (++w->nparts > MIME_MAX_PARTS) {
    w->full = 1;
    char r[96];
    snprintf(r, sizeof r, "more than %d MIME parts: the rest is ignored", MIME_MAX_PARTS);
    mp->status = DP_ELIMIT;
    mp->reason = r;
    mp->data = NULL;
    mp->len = 0;
    return w->cb(w->ud, mp);
  }
  return w->cb(w->ud, mp);
}

/* The part's file name: Content-Disposition filename, else Content-Type
 * name; RFC 2231 or RFC 2047 decoded; one line, at most 255 bytes. */
static int get_filename(const struct entity *e, const char *ctval, size_t ctlen, dp_buf_t *fv,
                        dp_buf_t *out) {
  struct params ps;
  dp_buf_t tmp;
  int rc = 0, got = 0;
  dp_buf_init(&tmp, 0);
  dp_buf_reset(out);
  int h = hdr_get(e, "Content-Disposition", fv);
  if (h < 0) return h;
  if (h > 0) {
    dp_buf_init(&ps.arena, MIME_MAX_FIELD * 2);
    rc = params_parse(fv->data, fv->len, &ps);
    if (!rc) got = param_value(&ps, "filename", &tmp);
    dp_buf_free(&ps.arena);
  }
  if (!rc && got <= 0 && ctval) {
    dp_buf_init(&ps.arena, MIME_MAX_FIELD * 2);
    rc = params_parse(ctval, ctlen, &ps);
    if (!rc) got = param_value(&ps, "name", &tmp);
    dp_buf_free(&ps.arena);
  }
  if (got < 0) rc = got;
  if (!rc && got > 0) {
    dp_buf_t dec;
    dp_buf_init(&dec, 0);
    if (got == 1) { /* raw 8-bit header bytes may sit between the words */
      dp_buf_t words;
      dp_buf_init(&words, 0);
      rc = rfc2047_decode(tmp.data, tmp.len, &words);
      if (!rc) rc = append_utf8_clean(&dec, (const unsigned char *)(words.data ? words.data : ""), words.len);
      dp_buf_free(&words);
    } else {
      rc = dp_buf_append(&dec, tmp.data, tmp.len);
    }
    /* keep it on one line and short, cutting on a character boundary */
    for (size_t i = 0; !rc && i < dec.len; i++) {
      unsigned char c = (unsigned char)dec.data[i];
      size_t seq = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4; /* dec is valid UTF-8 */
      if ((c & 0xc0) != 0x80 && out->len + seq > MIME_MAX_FILENAME) break;
      rc = dp_buf_putc(out, (c < 0x20 || c == 0x7f) ? '?' : (char)c);
    }
    dp_buf_free(&dec);
  }
  dp_buf_free(&tmp);
  return rc;
}

/* Transfer-decode a body. data and len point into the message for identity
 * encodings, or into dec. Returns 0, DP_EMIME (why filled) or an error. */
static int decode_body(const struct entity *e, dp_buf_t *fv, dp_buf_t *dec, const unsigned char **data,
                       size_t *len, char *why, size_t whylen) {
  char cte[40] = "";
  int h = hdr_get(e, "Content-Transfer-Encoding", fv);
  if (h < 0) return h;
  if (h > 0) { /* a bare token, lower-cased */
    size_t i = skip_cfws(fv->data, fv->len, 0), o = 0;
    while (i < fv->len && !is_wsp(fv->data[i]) && fv->data[i] != ';' && fv->data[i] != '(' &&
           o + 1 < sizeof cte)
      cte[o++] = lower(fv->data[i++]);
    cte[o] = '\0';
  }
  if (strcmp(cte, "base64") == 0) {
    int rc = b64_decode(e->body, e->blen, dec, why, whylen);
    if (rc) return rc;
  } else if (strcmp(cte, "quoted-printable") == 0) {
    int rc = qp_decode(e->body, e->blen, dec);
    if (rc) return rc;
  } else if (!cte[0] || strcmp(cte, "7bit") == 0 || strcmp(cte, "8bit") == 0 ||
             strcmp(cte, "binary") == 0) {
    *data = (const unsigned char *)e->body;
    *len = e->blen;
    return 0;
  } else {
    char c[sizeof cte];
    snprintf(why, whylen, "unsupported Content-Transfer-Encoding %s",
             dp_term_copy(cte, c, sizeof c));
    return DP_EMIME;
  }
  *data = (const unsigned char *)(dec->data ? dec->data : "");
  *len = dec->len;
  return 0;
}

static int walk_entity(struct walk *w, const char *p, size_t n, const char *prefix, const char *num,
                       unsigned depth, unsigned mpdepth, int digest);

/* Find the next delimiter line "--boundary" from 'from'. On success *cend is
 * where the previous part's content ends (before the line break that belongs
 * to the delimiter), *next where the following part starts, *close whether it
 * was the close delimiter. */
static int find_delim(const char *b, size_t n, size_t from, const char *needle, size_t nl, size_t *cend,
                      size_t *next, int *close) {
  size_t pos = from;
  while (pos < n) {
    const char *q = memmem(b + pos, n - pos, needle, nl);
    if (!q) return 0;
    size_t at = (size_t)(q - b);
    pos = at + 1;
    if (at > 0 && b[at - 1] != '\n') continue;
    size_t k = at + nl;
    int cl = 0;
    if (k + 1 < n && b[k] == '-' && b[k + 1] == '-') {
      cl = 1;
      k += 2;
    }
    while (k < n && is_wsp(b[k])) k++;
    if (cl) { /* after a close delimiter anything may follow on the line */
      while (k < n && b[k] != '\n') k++;
    } else if (k < n && b[k] == '\r' && k + 1 < n && b[k + 1] == '\n') {
      k++;
    } else if (k < n && b[k] != '\n') {
      continue; /* "--boundaryX": another boundary that starts the same way */
    }
    size_t ce = at;
    if (ce > from && b[ce - 1] == '\n') ce--;
    if (ce > from && b[ce - 1] == '\r') ce--;
    *cend = ce;
    *next = k < n ? k + 1 : n;
    *close = cl;
    return 1;
  }
  return 0;
}

static int walk_multipart(struct walk *w, const struct entity *e, const char *boundary, const char *prefix,
                          const char *num, unsigned depth, unsigned mpdepth, int digest, char *why,
                          size_t whylen) {
  size_t bl = strlen(boundary);
  char *needle = malloc(bl + 3);
  if (!needle) return DP_ENOMEM;
  memcpy(needle, "--", 2);
  memcpy(needle + 2, boundary, bl + 1);
  size_t cend, next, start;
  int close = 0, rc = 0;
  if (!find_delim(e->body, e->blen, 0, needle, bl + 2, &cend, &next, &close)) {
    char b[81];
    snprintf(why, whylen, "multipart boundary \"%s\" never found",
             dp_term_copy(boundary, b, sizeof b));
    free(needle);
    return DP_EMIME;
  }
  for (unsigned k = 1; !close && !rc && !w->full; k++) {
    start = next;
    size_t end;
    if (find_delim(e->body, e->blen, start, needle, bl + 2, &cend, &next, &close)) {
      end = cend;
    } else { /* no close delimiter (a cut message): the part runs to the end */
      end = e->blen;
      close = 1;
    }
    char cnum[64];
    if (num[0])
      snprintf(cnum, sizeof cnum, "%s.%u", num, k);
    else
      snprintf(cnum, sizeof cnum, "%u", k);
    rc = walk_entity(w, e->body + start, end - start, prefix, cnum, depth, mpdepth + 1, digest);
  }
  free(needle);
  return rc;
}

/* One entity (a message or a body part) at message depth 'depth'. */
static int walk_entity(struct walk *w, const char *p, size_t n, const char *prefix, const char *num,
                       unsigned depth, unsigned mpdepth, int digest) {
  struct entity e;
  split_entity(p, n, &e);
  dp_buf_t ct, fv, fname, dec;
  dp_buf_init(&ct, 0);
  dp_buf_init(&fv, 0);
  dp_buf_init(&fname, 0);
  dp_buf_init(&dec, n + 1);
  char type[96] = "", why[200] = "", path[600];
  int rc = hdr_get(&e, "Content-Type", &ct);
  if (rc > 0) parse_type(ct.data, ct.len, type, sizeof type);
  if (rc >= 0) rc = 0;
  if (!type[0]) snprintf(type, sizeof type, "%s", digest ? "message/rfc822" : "text/plain");
  snprintf(path, sizeof path, "%spart %s", prefix, num[0] ? num : "1");
  dp_mime_part_t mp;
  memset(&mp, 0, sizeof mp);
  mp.path = path;
  mp.content_type = type;
  mp.filename = "";
  mp.depth = depth + 1;
  if (rc) goto out;

  if (strncmp(type, "multipart/", 10) == 0) {
    struct params ps;
    dp_buf_init(&ps.arena, MIME_MAX_FIELD * 2);
    rc = params_parse(ct.data, ct.len, &ps);
    int got = rc ? rc : param_value(&ps, "boundary", &fv);
    dp_buf_free(&ps.arena);
    if (got < 0) {
      rc = got;
      goto out;
    }
    int status = 0;
    if (mpdepth >= MIME_MAX_MULTIPART_DEPTH) {
      snprintf(why, sizeof why, "multipart nested deeper than %d levels", MIME_MAX_MULTIPART_DEPTH);
      status = DP_ELIMIT;
    } else if (got == 0 || fv.len == 0) {
      char t[128];
      snprintf(why, sizeof why, "%s without a boundary parameter", dp_term_copy(type, t, sizeof t));
      status = DP_EMIME;
    } else {
      char *bnd = strdup(fv.data);
      if (!bnd) {
        rc = DP_ENOMEM;
        goto out;
      }
      status = walk_multipart(w, &e, bnd, prefix, num, depth, mpdepth, strcmp(type, "multipart/digest") == 0,
                              why, sizeof why);
      free(bnd);
      if (status != DP_EMIME) { /* 0, a callback's value or ENOMEM */
        rc = status;
        goto out;
      }
    }
    if (!prefix[0] && !num[0] && status == DP_EMIME) { /* the message itself is unusable */
      snprintf(w->err, w->errlen, "%s", why);
      rc = DP_EMIME;
      goto out;
    }
    mp.status = status;
    mp.reason = why;
    rc = emit(w, &mp);
    goto out;
  }

  rc = get_filename(&e, ct.data, ct.len, &fv, &fname);
  if (rc) goto out;
  mp.filename = fname.data ? fname.data : "";
  const unsigned char *data = NULL;
  size_t len = 0;
  int drc = decode_body(&e, &fv, &dec, &data, &len, why, sizeof why);
  if (drc && drc != DP_EMIME) {
    rc = drc;
    goto out;
  }
  int is_msg = strcmp(type, "message/rfc822") == 0 || strcmp(type, "message/global") == 0;
  if (drc == 0 && is_msg) {
    if (depth + 1 >= w->lim->max_nesting) {
      snprintf(why, sizeof why, "nesting limit exceeded: forwarded message inside %u containers (limit %u)",
               depth + 1, (unsigned)w->lim->max_nesting);
      mp.status = DP_ELIMIT;
      mp.reason = why;
      rc = emit(w, &mp);
      goto out;
    }
    char inner[620];
    snprintf(inner, sizeof inner, "%s (message) > ", path);
    rc = walk_entity(w, (const char *)data, len, inner, "", depth + 1, 0, 0);
    goto out;
  }
  if (drc) {
    mp.status = DP_EMIME;
    mp.reason = why;
  } else {
    mp.data = data;
    mp.len = len;
  }
  rc = emit(w, &mp);
out:
  dp_buf_free(&ct);
  dp_buf_free(&fv);
  dp_buf_free(&fname);
  dp_buf_free(&dec);
  return rc;
}

int dp_mime_walk(const dp_limits_t *lim, const void *buf, size_t len, unsigned depth,
                 int (*cb)(void *ud, const dp_mime_part_t *part), void *ud, char *err, size_t errlen) {
  char dummy[8];
  struct walk w = {lim, cb, ud, 0, 0, err && errlen ? err : dummy, err && errlen ? errlen : sizeof dummy};
  w.err[0] = '\0';
  if (depth >= lim->max_nesting) {
    snprintf(w.err, w.errlen, "nesting limit exceeded: mail inside %u containers (limit %u)", depth,
             (unsigned)lim->max_nesting);
    return DP_ELIMIT;
  }
  int rc = walk_entity(&w, buf, len, "", "", depth, 0, 0);
  if (rc == DP_ENOMEM && !w.err[0]) snprintf(w.err, w.errlen, "out of memory");
  return rc;
}
