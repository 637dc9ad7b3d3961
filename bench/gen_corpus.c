/* SPDX-License-Identifier: MIT */
/* bench/gen_corpus.c - deterministic generator of realistic DMARC aggregate
 * reports: a sender population (own servers, ESPs, forwarders, spoofers), the
 * styles and delivery formats of real receivers, and the known answers that
 * tests compare dmarcpipe's results with. Used by `sample` and `bench`. */
#include "bench/bench_int.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>
#include <zlib.h>

/* ======================================================================== */
/* PRNG                                                                     */

void dp_gen_rng_seed(dp_gen_rng_t *r, uint64_t seed) { r->s = seed; }

uint64_t dp_gen_rng_next(dp_gen_rng_t *r) {
  uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
  return z ^ (z >> 31);
}

uint64_t dp_gen_rng_range(dp_gen_rng_t *r, uint64_t lo, uint64_t hi) {
  if (hi <= lo) return lo;
  uint64_t span = hi - lo + 1;
  if (span == 0) return dp_gen_rng_next(r); /* the full 64-bit range */
  return lo + dp_gen_rng_next(r) % span;    /* bias is irrelevant here */
}

double dp_gen_rng_unit(dp_gen_rng_t *r) {
  return (double)(dp_gen_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* An independent stream per (seed, purpose, index), so that adding output in
 * one place (e.g. --corrupt) never shifts the numbers drawn elsewhere. */
static void rng_derive(dp_gen_rng_t *r, uint64_t seed, uint64_t purpose, uint64_t idx) {
  dp_gen_rng_t t;
  dp_gen_rng_seed(&t, seed ^ (purpose * UINT64_C(0xd1b54a32d192ed03)));
  dp_gen_rng_seed(r, dp_gen_rng_next(&t) ^ (idx * UINT64_C(0x9e3779b97f4a7c15)));
}

/* ======================================================================== */
/* Dates (proleptic Gregorian, UTC, no time zone involved)                  */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = (unsigned)(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *py, unsigned *pm, unsigned *pd) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = (unsigned)(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  *py = (int)((int64_t)yoe + era * 400 + (m <= 2));
  *pm = m;
  *pd = d;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

int dp_gen_parse_date(const char *s, int64_t *out) {
  if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-') return DP_EUSAGE;
  for (int i = 0; i < 10; i++)
    if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9')) return DP_EUSAGE;
  int y = atoi(s);
  unsigned m = (unsigned)atoi(s + 5), d = (unsigned)atoi(s + 8);
  static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1971 || y > 9999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1]) return DP_EUSAGE;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (m == 2 && d == 29 && !leap) return DP_EUSAGE;
  *out = days_from_civil(y, m, d) * 86400;
  return 0;
}

void dp_gen_format_date(int64_t t, char *out, size_t outlen) {
  int y;
  unsigned m, d;
  civil_from_days(floor_div(t, 86400), &y, &m, &d);
  snprintf(out, outlen, "%04d-%02u-%02u", y, m, d);
}

/* RFC 5322 date, always +0000; built by hand so the C locale never matters. */
static void rfc5322_date(int64_t t, char *out, size_t outlen) {
  static const char *const wd[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
  static const char *const mn[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  int64_t days = floor_div(t, 86400), sec = t - days * 86400;
  int y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  snprintf(out, outlen, "%s, %02u %s %04d %02d:%02d:%02d +0000", wd[((days % 7) + 7) % 7], d,
           mn[m - 1], y, (int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60));
}

/* 0 = Sunday ... 6 = Saturday */
static int weekday(int64_t t) { return (int)(((floor_div(t, 86400) + 4) % 7 + 7) % 7); }

/* ======================================================================== */
/* Receivers and their styles                                               */

struct style {
  const char *org, *file_org, *email, *extra; /* extra may be NULL */
  enum dp_gen_format fmt;
  const char *prolog, *feedback;
  const char *version;    /* <version> value or NULL */
  const char *generator;  /* RFC 9990 generator or NULL */
  const char *indent, *nl;
  bool final_nl;
  int64_t span;           /* end - begin of the date_range */
  const char *pp;         /* policy_published fields after <domain>, in order */
  const char *ident;      /* identifiers: t envelope_to, f envelope_from, h header_from */
  const char *dkim, *spf; /* d domain, s selector/scope, r result, h human_result */
  double share;           /* share of the domain's mail that this receiver sees */
};

static const struct style styles[DP_GEN_N_RECEIVERS] = {
  [DP_GEN_GOOGLE] = {"google.com", "google.com", "noreply-dmarc-support@google.com",
                     "https://support.google.com/a/answer/2466580", DP_GEN_FMT_ZIP,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n", "<feedback>", NULL, NULL,
                     "  ", "\n", true, 86399, "adkim aspf p sp pct np", "h", "drs", "dr", 0.40},
  [DP_GEN_OUTLOOK] = {"Enterprise Outlook", "enterprise.protection.outlook.com",
                      "dmarcreport@microsoft.com", NULL, DP_GEN_FMT_GZIP, "<?xml version=\"1.0\"?>\n",
                      "<feedback xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" "
                      "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">",
                      "1.0", NULL, "  ", "\n", false, 86400, "adkim aspf p sp pct fo", "tfh", "dsr",
                      "dsr", 0.22},
  [DP_GEN_YAHOO] = {"Yahoo", "yahoo.com", "dmarchelp@yahooinc.com", NULL, DP_GEN_FMT_GZIP,
                    "<?xml version=\"1.0\"?>\n", "<feedback>", NULL, NULL, "  ", "\n", true, 86399,
                    "adkim aspf p pct", "h", "dsr", "dr", 0.12},
  [DP_GEN_MAILRU] = {"Mail.Ru", "mail.ru", "dmarc_support@corp.mail.ru",
                     "http://help.mail.ru/mail-help", DP_GEN_FMT_XML,
                     "<?xml version='1.0' encoding='utf-8'?>", "<feedback>", NULL, NULL, "", "",
                     false, 86400, "adkim aspf p sp pct", "h", "dsr", "dsr", 0.03},
  [DP_GEN_GMX] = {"GMX", "gmx.net", "noreply-dmarc@sicher.gmx.net",
                  "https://postmaster.gmx.net/en/case?c=r2002", DP_GEN_FMT_GZIP,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                  "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">", "1.0",
                  "GMX DMARC Aggregate Reporter 2.1", "   ", "\n", true, 86399,
                  "discovery_method adkim aspf p sp np testing", "fh", "dsr", "dsr", 0.06},
  [DP_GEN_MIMECAST] = {"Mimecast", "mimecast.org", "no-reply@us-1.mimecastreport.com",
                       "https://community.mimecast.com/s/knowledge", DP_GEN_FMT_EML_GZIP,
                       "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n",
                       "<feedback>", NULL, NULL, "  ", "\n", true, 86399, "adkim aspf p sp pct",
                       "h", "dsrh", "dr", 0.10},
  [DP_GEN_AOL] = {"AOL", "aol.com", "postmaster@aol.com", NULL, DP_GEN_FMT_EML_ZIP,
                  "<?xml version=\"1.0\"?>\n", "<feedback>", NULL, NULL, "  ", "\n", true, 86399,
                  "adkim aspf p pct", "h", "dsr", "dr", 0.07},
};

const char *dp_gen_receiver_org(enum dp_gen_receiver r) { return styles[r].org; }
enum dp_gen_format dp_gen_receiver_format(enum dp_gen_receiver r) { return styles[r].fmt; }

/* ======================================================================== */
/* Records, alignment (the oracle) and reports                              */

static bool is_pass(const char *r) { return r && !strcmp(r, "pass"); }

/* "unauthenticated <network>": IPv4 /24, IPv6 /48, the text form inet_ntop
 * gives for the masked address (as parse.h documents for dp_align_record). */
static void unauth_group(const char *ip, int family, char *out, size_t outlen) {
  unsigned char a[16];
  char txt[INET6_ADDRSTRLEN];
  if (family == 6 && inet_pton(AF_INET6, ip, a) == 1) {
    memset(a + 6, 0, 10);
    inet_ntop(AF_INET6, a, txt, sizeof txt);
    snprintf(out, outlen, "unauthenticated %s/48", txt);
  } else if (inet_pton(AF_INET, ip, a) == 1) {
    a[3] = 0;
    inet_ntop(AF_INET, a, txt, sizeof txt);
    snprintf(out, outlen, "unauthenticated %s/24", txt);
  } else {
    snprintf(out, outlen, "unauthenticated %s", ip);
  }
}

void dp_gen_record_finish(dp_gen_record_t *rec) {
  const dp_gen_auth_t *s = &rec->spf;
  bool spf_pass = s->domain && s->domain[0] && is_pass(s->result);
  rec->spf_aligned = spf_pass && !strcmp(s->org, rec->header_org);
  rec->spf_aligned_strict = spf_pass && !strcmp(s->domain, rec->header_from);
  rec->dkim_aligned = rec->dkim_aligned_strict = false;
  const char *first_dkim = NULL;
  for (int i = 0; i < rec->n_dkim; i++) {
    const dp_gen_auth_t *k = &rec->dkim[i];
    if (!is_pass(k->result) || !k->domain[0]) continue;
    if (!first_dkim) first_dkim = k->org;
    if (!strcmp(k->org, rec->header_org)) rec->dkim_aligned = true;
    if (!strcmp(k->domain, rec->header_from)) rec->dkim_aligned_strict = true;
  }
  rec->dmarc_pass = rec->spf_aligned || rec->dkim_aligned;
  const char *who = spf_pass ? s->org : first_dkim;
  if (who) {
    snprintf(rec->sender, sizeof rec->sender, "%s", who);
    rec->third_party = strcmp(who, rec->header_org) != 0;
  } else {
    unauth_group(rec->source_ip, rec->family, rec->sender, sizeof rec->sender);
    rec->third_party = false;
  }
}

int dp_gen_report_add(dp_gen_report_t *rep, const dp_gen_record_t *rec) {
  if (rep->n == rep->alloc) {
    size_t na = rep->alloc ? rep->alloc * 2 : 64;
    dp_gen_record_t *p = realloc(rep->recs, na * sizeof *p);
    if (!p) return DP_ENOMEM;
    rep->recs = p;
    rep->alloc = na;
  }
  rep->recs[rep->n++] = *rec;
  rep->messages += rec->count;
  return 0;
}

void dp_gen_report_free(dp_gen_report_t *rep) {
  free(rep->recs);
  rep->recs = NULL;
  rep->n = rep->alloc = 0;
  rep->messages = 0;
}

/* ======================================================================== */
/* XML rendering                                                            */

struct xw {
  dp_buf_t *b;
  const struct style *st;
  int depth;
  int rc;
};

/* The writer avoids printf: rendering a 200k-record report is dominated by
 * formatting otherwise, and bench generates many of those. */
static void xw_append(struct xw *w, const char *s, size_t n) {
  if (!w->rc) w->rc = dp_buf_append(w->b, s, n);
}

static void xw_put(struct xw *w, const char *s) { xw_append(w, s, strlen(s)); }

static void xw_indent(struct xw *w) {
  for (int i = 0; i < w->depth && w->st->indent[0]; i++) xw_put(w, w->st->indent);
}

static void xw_tag(struct xw *w, const char *open, const char *tag, const char *close) {
  xw_put(w, open);
  xw_put(w, tag);
  xw_put(w, close);
}

static void xw_open(struct xw *w, const char *tag) {
  xw_indent(w);
  xw_tag(w, "<", tag, ">");
  xw_put(w, w->st->nl);
  w->depth++;
}

static void xw_close(struct xw *w, const char *tag) {
  w->depth--;
  xw_indent(w);
  xw_tag(w, "</", tag, ">");
  xw_put(w, w->st->nl);
}

/* A text element; the value is escaped (only the user's --domain can carry
 * characters that matter, and it is validated, but the renderer stays safe). */
static void xw_leaf(struct xw *w, const char *tag, const char *val) {
  xw_indent(w);
  if (!val[0]) {
    xw_tag(w, "<", tag, "/>");
    xw_put(w, w->st->nl);
    return;
  }
  xw_tag(w, "<", tag, ">");
  for (const char *p = val; *p;) {
    size_t n = strcspn(p, "<>&");
    xw_append(w, p, n);
    p += n;
    if (!*p) break;
    xw_put(w, *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : "&amp;");
    p++;
  }
  xw_tag(w, "</", tag, ">");
  xw_put(w, w->st->nl);
}

static void xw_leaf_u64(struct xw *w, const char *tag, uint64_t v) {
  char num[24], *p = num + sizeof num;
  *--p = '\0';
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  xw_leaf(w, tag, p);
}

/* The policy the sample domain publishes: "v=DMARC1; p=none; fo=1; rua=..." */
static const char *policy_value(const char *field) {
  static const struct { const char *k, *v; } pol[] = {
    {"adkim", "r"}, {"aspf", "r"}, {"p", "none"}, {"sp", "none"}, {"np", "none"},
    {"pct", "100"}, {"fo", "1"}, {"testing", "n"}, {"discovery_method", "psl"},
  };
  for (size_t i = 0; i < sizeof pol / sizeof pol[0]; i++)
    if (!strcmp(pol[i].k, field)) return pol[i].v;
  return "";
}

static void render_auth(struct xw *w, const char *tag, const char *order, const dp_gen_auth_t *a,
                        bool is_spf) {
  xw_open(w, tag);
  for (const char *o = order; *o; o++) {
    switch (*o) {
    case 'd': xw_leaf(w, "domain", a->domain); break;
    case 's': xw_leaf(w, is_spf ? "scope" : "selector", is_spf ? "mfrom" : a->selector); break;
    case 'r': xw_leaf(w, "result", a->result); break;
    case 'h': xw_leaf(w, "human_result", ""); break;
    default: break;
    }
  }
  xw_close(w, tag);
}

static void render_record(struct xw *w, const dp_gen_record_t *r) {
  const struct style *st = w->st;
  xw_open(w, "record");
  xw_open(w, "row");
  xw_leaf(w, "source_ip", r->source_ip);
  xw_leaf_u64(w, "count", r->count);
  xw_open(w, "policy_evaluated");
  xw_leaf(w, "disposition", "none"); /* p=none: nothing is quarantined or rejected */
  xw_leaf(w, "dkim", r->dkim_aligned ? "pass" : "fail");
  xw_leaf(w, "spf", r->spf_aligned ? "pass" : "fail");
  if (r->reason) {
    xw_open(w, "reason");
    xw_leaf(w, "type", r->reason);
    xw_close(w, "reason");
  }
  xw_close(w, "policy_evaluated");
  xw_close(w, "row");
  xw_open(w, "identifiers");
  for (const char *o = st->ident; *o; o++) {
    if (*o == 't' && r->envelope_to) xw_leaf(w, "envelope_to", r->envelope_to);
    if (*o == 'f' && r->envelope_from) xw_leaf(w, "envelope_from", r->envelope_from);
    if (*o == 'h') xw_leaf(w, "header_from", r->header_from);
  }
  xw_close(w, "identifiers");
  xw_open(w, "auth_results");
  for (int i = 0; i < r->n_dkim; i++) render_auth(w, "dkim", st->dkim, &r->dkim[i], false);
  render_auth(w, "spf", st->spf, &r->spf, true);
  xw_close(w, "auth_results");
  xw_close(w, "record");
}

int dp_gen_render_xml(const dp_gen_report_t *rep, dp_buf_t *out) {
  const struct style *st = &styles[rep->rcv];
  struct xw w = {out, st, 0, 0};
  xw_put(&w, st->prolog);
  xw_put(&w, st->feedback);
  xw_put(&w, st->nl);
  w.depth = 1;
  if (st->version) xw_leaf(&w, "version", st->version);
  xw_open(&w, "report_metadata");
  xw_leaf(&w, "org_name", st->org);
  xw_leaf(&w, "email", st->email);
  if (st->extra) xw_leaf(&w, "extra_contact_info", st->extra);
  xw_leaf(&w, "report_id", rep->report_id);
  xw_open(&w, "date_range");
  xw_leaf_u64(&w, "begin", (uint64_t)rep->begin); /* dates are after 1970 */
  xw_leaf_u64(&w, "end", (uint64_t)rep->end);
  xw_close(&w, "date_range");
  if (st->generator) xw_leaf(&w, "generator", st->generator);
  xw_close(&w, "report_metadata");
  xw_open(&w, "policy_published");
  xw_leaf(&w, "domain", rep->domain);
  char field[32];
  for (const char *p = st->pp; *p;) {
    size_t n = strcspn(p, " ");
    snprintf(field, sizeof field, "%.*s", (int)n, p);
    xw_leaf(&w, field, policy_value(field));
    p += n;
    p += *p == ' ';
  }
  xw_close(&w, "policy_published");
  for (size_t i = 0; i < rep->n; i++) render_record(&w, &rep->recs[i]);
  w.depth = 0;
  xw_put(&w, "</feedback>");
  if (st->final_nl) xw_put(&w, "\n");
  return w.rc;
}

void dp_gen_report_basename(const dp_gen_report_t *rep, char *out, size_t outlen) {
  snprintf(out, outlen, "%s!%s!%lld!%lld", styles[rep->rcv].file_org, rep->domain,
           (long long)rep->begin, (long long)rep->end);
}

/* ======================================================================== */
/* Packing: gzip, zip, base64, mail                                         */

int dp_gen_gzip(const void *data, size_t len, const char *name, int64_t mtime, dp_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return DP_ENOMEM;
  gz_header h;
  memset(&h, 0, sizeof h);
  h.time = (uLong)mtime;
  h.os = 3; /* Unix, like gzip(1) on the receivers' servers */
  h.name = (Bytef *)(uintptr_t)name;
  int rc = deflateSetHeader(&z, &h) == Z_OK ? 0 : DP_EGZIP;
  const unsigned char *in = data;
  size_t left = len;
  int zr = Z_OK;
  while (!rc && zr != Z_STREAM_END) {
    if (z.avail_in == 0 && left) {
      z.next_in = (Bytef *)(uintptr_t)in;
      z.avail_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
      in += z.avail_in;
      left -= z.avail_in;
    }
    if ((rc = dp_buf_reserve(out, 65536))) break;
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = 65536;
    zr = deflate(&z, left ? Z_NO_FLUSH : Z_FINISH);
    if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) rc = DP_EGZIP;
    out->len += 65536 - z.avail_out;
    out->data[out->len] = '\0';
  }
  deflateEnd(&z);
  return rc;
}

int dp_gen_zip(const void *data, size_t len, const char *entry, int64_t mtime, dp_buf_t *out) {
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t *mem = zip_source_buffer_create(NULL, 0, 0, &ze);
  if (!mem) {
    zip_error_fini(&ze);
    return DP_ENOMEM;
  }
  zip_source_keep(mem); /* survive zip_close so the archive bytes can be read back */
  zip_t *za = zip_open_from_source(mem, ZIP_TRUNCATE, &ze);
  zip_error_fini(&ze);
  if (!za) {
    zip_source_free(mem);
    return DP_EZIP;
  }
  int rc = DP_EZIP;
  zip_source_t *src = zip_source_buffer(za, data, len, 0);
  zip_int64_t idx = src ? zip_file_add(za, entry, src, ZIP_FL_ENC_UTF_8) : -1;
  if (idx < 0) {
    if (src) zip_source_free(src);
    zip_discard(za);
    zip_source_free(mem);
    return DP_EZIP;
  }
  /* DOS time in UTC fields: zip_file_set_mtime would go through localtime(). */
  int y;
  unsigned mo, d;
  int64_t days = floor_div(mtime, 86400), sec = mtime - days * 86400;
  civil_from_days(days, &y, &mo, &d);
  zip_uint16_t dtime = (zip_uint16_t)((sec / 3600) << 11 | (sec / 60 % 60) << 5 | (sec % 60) / 2);
  zip_uint16_t ddate = (zip_uint16_t)((unsigned)(y - 1980) << 9 | mo << 5 | d);
  if (zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_DEFLATE, 6) < 0 ||
      zip_file_set_dostime(za, (zip_uint64_t)idx, dtime, ddate, 0) < 0 || zip_close(za) < 0) {
    zip_discard(za);
    zip_source_free(mem);
    return DP_EZIP;
  }
  if (zip_source_open(mem) == 0) {
    if (zip_source_seek(mem, 0, SEEK_END) == 0) {
      zip_int64_t sz = zip_source_tell(mem);
      if (sz >= 0 && zip_source_seek(mem, 0, SEEK_SET) == 0) {
        rc = dp_buf_reserve(out, (size_t)sz);
        if (!rc && zip_source_read(mem, out->data + out->len, (zip_uint64_t)sz) == sz) {
          out->len += (size_t)sz;
          out->data[out->len] = '\0';
        } else if (!rc) {
          rc = DP_EZIP;
        }
      }
    }
    zip_source_close(mem);
  }
  zip_source_free(mem);
  return rc;
}

int dp_gen_base64(const void *data, size_t len, dp_buf_t *out) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *p = data;
  int rc = dp_buf_reserve(out, (len + 2) / 3 * 4 + (len / 57 + 1) * 2);
  if (rc) return rc;
  char *o = out->data + out->len;
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned)p[i] << 16;
    if (i + 1 < len) v |= (unsigned)p[i + 1] << 8;
    if (i + 2 < len) v |= p[i + 2];
    *o++ = tab[v >> 18 & 63];
    *o++ = tab[v >> 12 & 63];
    *o++ = i + 1 < len ? tab[v >> 6 & 63] : '=';
    *o++ = i + 2 < len ? tab[v & 63] : '=';
    if ((i / 3 + 1) % 19 == 0 || i + 3 >= len) { /* 19 groups = 76 characters */
      *o++ = '\r';
      *o++ = '\n';
    }
  }
  out->len = (size_t)(o - out->data);
  out->data[out->len] = '\0';
  return 0;
}

/* The report as the receiver mails it (RFC 5322, CRLF). Mimecast sends a
 * single-part application/gzip message; Yahoo/AOL and Google a
 * multipart/mixed one with a short text part and the archive. */
static int render_eml(const dp_gen_report_t *rep, bool zip, const char *att_name,
                      const void *att, size_t att_len, dp_buf_t *out) {
  const struct style *st = &styles[rep->rcv];
  char date[48], rdate[48];
  rfc5322_date(rep->sent, date, sizeof date);
  rfc5322_date(rep->sent + 2, rdate, sizeof rdate);
  uint64_t h = dp_hash64(DP_HASH_INIT, rep->report_id, strlen(rep->report_id));
  h = dp_hash64(h, &rep->begin, sizeof rep->begin);
  const char *from_domain = strchr(st->email, '@') + 1;
  const char *ctype = zip ? "application/zip" : "application/gzip";
  int rc = dp_buf_printf(
      out,
      "Return-Path: <%s>\r\n"
      "Delivered-To: dmarc-reports@%s\r\n"
      "Received: from mta%u.%s (mta%u.%s [%u.%u.%u.%u])\r\n"
      "\tby mx1.%s (Postfix) with ESMTPS id %08llX\r\n"
      "\tfor <dmarc-reports@%s>; %s\r\n"
      "From: %s <%s>\r\n"
      "To: dmarc-reports@%s\r\n"
      "Subject: Report domain: %s Submitter: %s Report-ID: %s\r\n"
      "Date: %s\r\n"
      "Message-ID: <%016llx.%lld@%s>\r\n"
      "MIME-Version: 1.0\r\n",
      st->email, rep->domain, (unsigned)(h % 90 + 10), from_domain, (unsigned)(h % 90 + 10),
      from_domain, 198, 18, (unsigned)(h >> 8 & 1), (unsigned)(h >> 16 & 0x7f) + 1, rep->domain,
      (unsigned long long)(h >> 32), rep->domain, rdate, st->org, st->email, rep->domain,
      rep->domain, st->file_org, rep->report_id, date, (unsigned long long)h,
      (long long)rep->sent, from_domain);
  if (rc) return rc;
  char boundary[64] = "";
  if (zip) {
    snprintf(boundary, sizeof boundary, "----=_Part_%u_%u.%lld", (unsigned)(h & 0xfffff),
             (unsigned)(h >> 20 & 0xfffffff), (long long)rep->sent * 1000);
    rc = dp_buf_printf(out,
                       "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n"
                       "--%s\r\n"
                       "Content-Type: text/plain; charset=UTF-8\r\n"
                       "Content-Transfer-Encoding: 7bit\r\n\r\n"
                       "This is an aggregate report from %s.\r\n\r\n"
                       "Report domain: %s\r\nSubmitter: %s\r\nReport-ID: %s\r\n\r\n"
                       "--%s\r\n",
                       boundary, boundary, st->file_org, rep->domain, st->file_org,
                       rep->report_id, boundary);
    if (rc) return rc;
  }
  rc = dp_buf_printf(out,
                     "Content-Type: %s; name=\"%s\"\r\n"
                     "Content-Transfer-Encoding: base64\r\n"
                     "Content-Disposition: attachment;\r\n filename=\"%s\"\r\n\r\n",
                     ctype, att_name, att_name);
  if (!rc) rc = dp_gen_base64(att, att_len, out);
  if (!rc && zip) rc = dp_buf_printf(out, "\r\n--%s--\r\n", boundary);
  return rc;
}

int dp_gen_pack(const dp_gen_report_t *rep, enum dp_gen_format fmt, const char *xml,
                size_t xml_len, dp_buf_t *out, char *file_name, size_t name_len) {
  char base[256], inner[300], att[400];
  dp_gen_report_basename(rep, base, sizeof base);
  snprintf(inner, sizeof inner, "%s.xml", base);
  dp_buf_t tmp;
  dp_buf_init(&tmp, 0);
  int rc = 0;
  switch (fmt) {
  case DP_GEN_FMT_XML:
    snprintf(file_name, name_len, "%s", inner);
    rc = dp_buf_append(out, xml, xml_len);
    break;
  case DP_GEN_FMT_GZIP:
    snprintf(file_name, name_len, "%s.xml.gz", base);
    rc = dp_gen_gzip(xml, xml_len, inner, rep->sent, out);
    break;
  case DP_GEN_FMT_ZIP:
    snprintf(file_name, name_len, "%s.zip", base);
    rc = dp_gen_zip(xml, xml_len, inner, rep->sent, out);
    break;
  case DP_GEN_FMT_EML_GZIP:
    /* Mimecast names its attachment with the report_id too. */
    snprintf(att, sizeof att, "%s!%.64s.xml.gz", base, rep->report_id);
    snprintf(file_name, name_len, "%s.eml", base);
    rc = dp_gen_gzip(xml, xml_len, inner, rep->sent, &tmp);
    if (!rc) rc = render_eml(rep, false, att, tmp.data, tmp.len, out);
    break;
  case DP_GEN_FMT_EML_ZIP:
    snprintf(att, sizeof att, "%s.zip", base);
    snprintf(file_name, name_len, "%s.eml", base);
    rc = dp_gen_zip(xml, xml_len, inner, rep->sent, &tmp);
    if (!rc) rc = render_eml(rep, true, att, tmp.data, tmp.len, out);
    break;
  default:
    rc = DP_EUSAGE;
    break;
  }
  dp_buf_free(&tmp);
  return rc;
}

/* ======================================================================== */
/* Expected answers                                                         */

void dp_gen_expect_init(dp_gen_expect_t *e) { memset(e, 0, sizeof *e); }

void dp_gen_expect_free(dp_gen_expect_t *e) {
  free(e->senders);
  e->senders = NULL;
  e->n_senders = e->senders_alloc = 0;
}

static size_t sender_slot(const dp_gen_sender_stats_t *tab, size_t alloc, const char *key) {
  size_t i = (size_t)dp_hash64(DP_HASH_INIT, key, strlen(key)) & (alloc - 1);
  while (tab[i].sender[0] && strcmp(tab[i].sender, key)) i = (i + 1) & (alloc - 1);
  return i;
}

static dp_gen_sender_stats_t *sender_get(dp_gen_expect_t *e, const char *key) {
  if ((e->n_senders + 1) * 2 > e->senders_alloc) {
    size_t na = e->senders_alloc ? e->senders_alloc * 2 : 64;
    dp_gen_sender_stats_t *t = calloc(na, sizeof *t);
    if (!t) return NULL;
    for (size_t i = 0; i < e->senders_alloc; i++)
      if (e->senders[i].sender[0]) t[sender_slot(t, na, e->senders[i].sender)] = e->senders[i];
    free(e->senders);
    e->senders = t;
    e->senders_alloc = na;
  }
  dp_gen_sender_stats_t *s = &e->senders[sender_slot(e->senders, e->senders_alloc, key)];
  if (!s->sender[0]) {
    snprintf(s->sender, sizeof s->sender, "%s", key);
    e->n_senders++;
  }
  return s;
}

int dp_gen_expect_add_record(dp_gen_expect_t *e, enum dp_gen_receiver rcv, const dp_gen_record_t *r) {
  dp_gen_sender_stats_t *s = sender_get(e, r->sender);
  if (!s) return DP_ENOMEM;
  s->third_party = r->third_party;
  s->records++;
  s->messages += r->count;
  if (r->spf_aligned) s->spf_aligned += r->count;
  if (r->dkim_aligned) s->dkim_aligned += r->count;
  if (r->spf_aligned_strict) s->spf_aligned_strict += r->count;
  if (r->dkim_aligned_strict) s->dkim_aligned_strict += r->count;
  if (r->dmarc_pass) s->dmarc_pass += r->count;
  if (r->reason) s->overridden += r->count;
  e->records++;
  e->messages += r->count;
  e->rcv_records[rcv]++;
  e->rcv_messages[rcv] += r->count;
  return 0;
}

int dp_gen_expect_add(dp_gen_expect_t *e, const dp_gen_report_t *rep) {
  e->files++;
  e->reports++;
  e->rcv_reports[rep->rcv]++;
  for (size_t i = 0; i < rep->n; i++) {
    int rc = dp_gen_expect_add_record(e, rep->rcv, &rep->recs[i]);
    if (rc) return rc;
  }
  return 0;
}

const dp_gen_sender_stats_t *dp_gen_expect_find(const dp_gen_expect_t *e, const char *sender) {
  if (!e->senders_alloc) return NULL;
  const dp_gen_sender_stats_t *s = &e->senders[sender_slot(e->senders, e->senders_alloc, sender)];
  return s->sender[0] ? s : NULL;
}

static int cmp_sender(const void *a, const void *b) {
  const dp_gen_sender_stats_t *x = a, *y = b;
  if (x->messages != y->messages) return x->messages > y->messages ? -1 : 1;
  return strcmp(x->sender, y->sender);
}

dp_gen_sender_stats_t *dp_gen_expect_sorted(const dp_gen_expect_t *e, size_t *n) {
  dp_gen_sender_stats_t *v = malloc((e->n_senders ? e->n_senders : 1) * sizeof *v);
  if (!v) return NULL;
  size_t k = 0;
  for (size_t i = 0; i < e->senders_alloc; i++)
    if (e->senders[i].sender[0]) v[k++] = e->senders[i];
  qsort(v, k, sizeof *v, cmp_sender);
  *n = k;
  return v;
}

static int json_str(dp_buf_t *b, const char *s) {
  int rc = dp_buf_putc(b, '"');
  for (; *s && !rc; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') rc = dp_buf_printf(b, "\\%c", c);
    else if (c < 0x20) rc = dp_buf_printf(b, "\\u%04x", c);
    else rc = dp_buf_putc(b, (char)c);
  }
  return rc ? rc : dp_buf_putc(b, '"');
}

#define U64(x) ((unsigned long long)(x))

int dp_gen_expect_json(const dp_gen_expect_t *e, const dp_gen_sample_opts_t *o, dp_buf_t *out) {
  int rc = dp_buf_puts(out, "{\n");
  if (o && !rc) {
    char first[16], last[16];
    dp_gen_format_date(o->last_day - (int64_t)(o->days - 1) * 86400, first, sizeof first);
    dp_gen_format_date(o->last_day, last, sizeof last);
    rc = dp_buf_printf(out, "  \"generator\": \"dmarcpipe sample\",\n  \"seed\": %llu,\n  \"domain\": ",
                       U64(o->seed));
    if (!rc) rc = json_str(out, o->domain);
    if (!rc)
      rc = dp_buf_printf(out,
                         ",\n  \"first_day\": \"%s\",\n  \"last_day\": \"%s\",\n  \"days\": %d,\n"
                         "  \"scale\": %u,\n  \"policy\": \"v=DMARC1; p=none; fo=1\",\n",
                         first, last, o->days, o->scale);
  }
  if (!rc)
    rc = dp_buf_printf(out,
                       "  \"totals\": {\"files\": %llu, \"reports\": %llu, \"records\": %llu, "
                       "\"messages\": %llu, \"senders\": %llu},\n  \"receivers\": [",
                       U64(e->files), U64(e->reports), U64(e->records), U64(e->messages),
                       U64(e->n_senders));
  bool first_item = true;
  for (int r = 0; r < DP_GEN_N_RECEIVERS && !rc; r++) {
    if (!e->rcv_reports[r]) continue;
    rc = dp_buf_printf(out,
                       "%s\n    {\"org_name\": \"%s\", \"reports\": %llu, \"records\": %llu, "
                       "\"messages\": %llu}",
                       first_item ? "" : ",", styles[r].org, U64(e->rcv_reports[r]),
                       U64(e->rcv_records[r]), U64(e->rcv_messages[r]));
    first_item = false;
  }
  if (!rc) rc = dp_buf_puts(out, "\n  ],\n  \"senders\": [");
  size_t n = 0;
  dp_gen_sender_stats_t *v = rc ? NULL : dp_gen_expect_sorted(e, &n);
  if (!rc && !v) rc = DP_ENOMEM;
  for (size_t i = 0; i < n && !rc; i++) {
    const dp_gen_sender_stats_t *s = &v[i];
    rc = dp_buf_printf(out, "%s\n    {\"sender\": ", i ? "," : "");
    if (!rc) rc = json_str(out, s->sender);
    if (!rc)
      rc = dp_buf_printf(out,
                         ", \"third_party\": %s, \"records\": %llu, \"messages\": %llu, "
                         "\"spf_aligned\": %llu, \"dkim_aligned\": %llu, \"dmarc_pass\": %llu, "
                         "\"spf_aligned_strict\": %llu, \"dkim_aligned_strict\": %llu, "
                         "\"overridden\": %llu}",
                         s->third_party ? "true" : "false", U64(s->records), U64(s->messages),
                         U64(s->spf_aligned), U64(s->dkim_aligned), U64(s->dmarc_pass),
                         U64(s->spf_aligned_strict), U64(s->dkim_aligned_strict),
                         U64(s->overridden));
  }
  free(v);
  if (!rc) rc = dp_buf_puts(out, "\n  ],\n  \"rejected\": [");
  for (size_t i = 0; i < e->n_rejected && !rc; i++) {
    rc = dp_buf_printf(out, "%s\n    {\"file\": ", i ? "," : "");
    if (!rc) rc = json_str(out, e->rejected[i].file);
    if (!rc) rc = dp_buf_puts(out, ", \"reason\": ");
    if (!rc) rc = json_str(out, e->rejected[i].reason);
    if (!rc) rc = dp_buf_putc(out, '}');
  }
  if (!rc) rc = dp_buf_puts(out, e->n_rejected ? "\n  ]\n}\n" : "]\n}\n");
  return rc;
}

int dp_gen_expect_tsv(const dp_gen_expect_t *e, dp_buf_t *out) {
  int rc = dp_buf_puts(out, "sender\tthird_party\trecords\tmessages\tspf_aligned\tdkim_aligned\t"
                            "dmarc_pass\tspf_aligned_strict\tdkim_aligned_strict\toverridden\n");
  size_t n = 0;
  dp_gen_sender_stats_t *v = rc ? NULL : dp_gen_expect_sorted(e, &n);
  if (!rc && !v) rc = DP_ENOMEM;
  for (size_t i = 0; i < n && !rc; i++) {
    const dp_gen_sender_stats_t *s = &v[i];
    rc = dp_buf_printf(out, "%s\t%s\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\n", s->sender,
                       s->third_party ? "yes" : "no", U64(s->records), U64(s->messages),
                       U64(s->spf_aligned), U64(s->dkim_aligned), U64(s->dmarc_pass),
                       U64(s->spf_aligned_strict), U64(s->dkim_aligned_strict),
                       U64(s->overridden));
  }
  free(v);
  return rc;
}

/* ======================================================================== */
/* The sender population                                                    */

enum kind {
  K_OWN,            /* the domain's own servers: SPF + DKIM aligned */
  K_WORKSPACE,      /* Google Workspace for the domain: aligned */
  K_NEWSLETTER,     /* Mailchimp: SPF for mcsv.net, DKIM d=news.D aligned */
  K_SENDGRID,       /* SendGrid: SPF + DKIM for sendgrid.net only: fails */
  K_SES,            /* Amazon SES: SPF + DKIM for amazonses.com only: fails */
  K_ZENDESK,        /* Zendesk: SPF zendesk.com, DKIM d=D fails (stale key): fails */
  K_FORWARD,        /* forwarded: SPF softfail, DKIM d=D survives: passes */
  K_FORWARD_BROKEN, /* forwarded with a footer: SPF softfail, DKIM broken */
  K_LIST,           /* mailing list (groups.io): SPF groups.io, DKIM d=D broken */
  K_SPOOF,          /* spoofers: nothing passes */
  N_KINDS
};

struct kind_def {
  unsigned sources;        /* sources at scale 1 (spoofers: drawn per day) */
  unsigned vol_lo, vol_hi; /* messages per source per weekday */
  double weekend;          /* volume factor on Saturday and Sunday */
  unsigned bench_weight;   /* relative number of records in the bench corpus */
};

static const struct kind_def kinds[N_KINDS] = {
  [K_OWN] = {3, 200, 900, 0.4, 30},     [K_WORKSPACE] = {8, 20, 120, 0.3, 20},
  [K_NEWSLETTER] = {4, 0, 12, 1.0, 8},  [K_SENDGRID] = {3, 15, 150, 0.7, 8},
  [K_SES] = {4, 20, 220, 0.9, 8},       [K_ZENDESK] = {2, 5, 60, 0.2, 4},
  [K_FORWARD] = {2, 2, 30, 1.0, 5},     [K_FORWARD_BROKEN] = {1, 1, 12, 1.0, 2},
  [K_LIST] = {2, 1, 20, 0.5, 3},        [K_SPOOF] = {0, 1, 6, 1.0, 12},
};

static const char *const mc_bounce[] = {"mail181.suw121.mcsv.net", "mail96.atl121.mcsv.net",
                                        "mail233.sea91.mcsv.net", "mail140.suw21.mcsv.net"};
static const char *const ses_bounce[] = {"us-west-2.amazonses.com", "eu-west-1.amazonses.com"};
static const char *const ms_tenants[] = {"contoso.com", "fabrikam.com"};

struct gen {
  uint64_t seed;
  unsigned scale;
  char d[128];       /* the policy domain (its own organizational domain) */
  char news[160];    /* news.D: the newsletter's From domain */
  char billing[160]; /* secure-billing.D: a non-existent subdomain spoofers use */
};

/* a.b.c.d stepping through host numbers 10..249 of consecutive /24s */
static void v4seq(char *out, unsigned a, unsigned b, unsigned c, unsigned j) {
  snprintf(out, 48, "%u.%u.%u.%u", a, b, (c + j / 240) & 255, 10 + j % 240);
}

/* The i-th source address of a kind; spoofers draw from rng instead. */
static void kind_ip(enum kind k, unsigned i, dp_gen_rng_t *rng, dp_gen_record_t *r) {
  r->family = 4;
  char *o = r->source_ip;
  switch (k) {
  case K_OWN:
    if (i % 3 == 2) {
      r->family = 6;
      snprintf(o, 48, "2001:db8:25::%x", 0x10 + i / 3);
    } else {
      v4seq(o, 192, 0, 2, i - i / 3);
    }
    break;
  case K_WORKSPACE:
    if (i % 4 == 3) {
      r->family = 6;
      snprintf(o, 48, "2607:f8b0:4864:20::%x", 0x22a + i);
    } else {
      v4seq(o, 209, 85, 220, 31 + (i - i / 4) * 7);
    }
    break;
  case K_NEWSLETTER:
    if (i % 2) v4seq(o, 205, 201, 131, (i / 2) * 37 + 5);
    else v4seq(o, 198, 2, 136, (i / 2) * 37 + 17);
    break;
  case K_SENDGRID:
    if (i % 2) v4seq(o, 149, 72, 120, (i / 2) * 53 + 44);
    else v4seq(o, 167, 89, 100, (i / 2) * 53 + 3);
    break;
  case K_SES:
    if (i % 2) v4seq(o, 23, 251, 226, (i / 2) * 29 + 12);
    else v4seq(o, 54, 240, 8, (i / 2) * 29 + 70);
    break;
  case K_ZENDESK:
    if (i % 2) v4seq(o, 216, 198, 0, (i / 2) * 11 + 60);
    else v4seq(o, 192, 161, 147, (i / 2) * 11 + 1);
    break;
  case K_FORWARD: v4seq(o, 198, 51, 100, 15 + i); break;
  case K_FORWARD_BROKEN: v4seq(o, 198, 51, 100, 200 + i); break;
  case K_LIST: v4seq(o, 66, 175, 222, 98 + i); break;
  case K_SPOOF: {
    static const unsigned first[] = {5, 31, 45, 77, 91, 103, 113, 177, 185, 186, 190, 196, 200, 212};
    uint64_t x = dp_gen_rng_next(rng);
    if (i == UINT_MAX) { /* a burst from one botnet /24 */
      snprintf(o, 48, "203.0.113.%u", (unsigned)((x >> 8) % 254) + 1);
    } else if (x % 10 == 0) {
      r->family = 6;
      snprintf(o, 48, "2a02:%x:%x::%x", (unsigned)(x >> 8 & 0xfff) + 0x100,
               (unsigned)(x >> 20 & 0xffff), (unsigned)(x >> 36 & 0xfff) + 1);
    } else {
      snprintf(o, 48, "%u.%u.%u.%u", first[(x >> 8) % (sizeof first / sizeof first[0])],
               (unsigned)(x >> 16 & 255), (unsigned)(x >> 24 & 255),
               (unsigned)(x >> 32) % 254 + 1);
    }
    break;
  }
  default: break;
  }
}

static dp_gen_auth_t auth(const char *domain, const char *org, const char *sel, const char *res) {
  dp_gen_auth_t a = {domain, org, sel, res};
  return a;
}

/* The authentication results a kind produces (receiver independent). */
static void kind_record(const struct gen *g, enum kind k, unsigned i, dp_gen_rng_t *rng,
                        dp_gen_record_t *r) {
  memset(r, 0, sizeof *r);
  kind_ip(k, i, rng, r);
  const char *d = g->d;
  r->header_from = d;
  r->header_org = d;
  r->envelope_from = d;
  switch (k) {
  case K_OWN:
    r->spf = auth(d, d, NULL, "pass");
    r->dkim[r->n_dkim++] = auth(d, d, "mail", "pass");
    break;
  case K_WORKSPACE:
    r->spf = auth(d, d, NULL, "pass");
    r->dkim[r->n_dkim++] = auth(d, d, "google", "pass");
    break;
  case K_NEWSLETTER:
    r->header_from = g->news;
    r->envelope_from = mc_bounce[i % 4];
    r->spf = auth(mc_bounce[i % 4], "mcsv.net", NULL, "pass");
    r->dkim[r->n_dkim++] = auth(g->news, d, "k2", "pass");
    r->dkim[r->n_dkim++] = auth("mcsv.net", "mcsv.net", "k3", "pass");
    break;
  case K_SENDGRID:
    r->envelope_from = "sendgrid.net";
    r->spf = auth("sendgrid.net", "sendgrid.net", NULL, "pass");
    r->dkim[r->n_dkim++] = auth("sendgrid.net", "sendgrid.net", "smtpapi", "pass");
    break;
  case K_SES:
    r->envelope_from = ses_bounce[i % 2];
    r->spf = auth(ses_bounce[i % 2], "amazonses.com", NULL, "pass");
    r->dkim[r->n_dkim++] =
        auth("amazonses.com", "amazonses.com", "224i4yxa5dv7c2xz3womw6peuasteono", "pass");
    break;
  case K_ZENDESK:
    r->envelope_from = "zendesk.com";
    r->spf = auth("zendesk.com", "zendesk.com", NULL, "pass");
    r->dkim[r->n_dkim++] = auth(d, d, "zendesk1", "fail");
    r->dkim[r->n_dkim++] = auth("zendesk.com", "zendesk.com", "zendesk2", "pass");
    break;
  case K_FORWARD:
    r->spf = auth(d, d, NULL, "softfail");
    r->dkim[r->n_dkim++] = auth(d, d, "mail", "pass");
    break;
  case K_FORWARD_BROKEN:
    r->spf = auth(d, d, NULL, "softfail");
    r->dkim[r->n_dkim++] = auth(d, d, "mail", "fail");
    break;
  case K_LIST:
    r->envelope_from = "groups.io";
    r->spf = auth("groups.io", "groups.io", NULL, "pass");
    r->dkim[r->n_dkim++] = auth(d, d, "mail", "fail");
    r->dkim[r->n_dkim++] = auth("groups.io", "groups.io", "20240825", "pass");
    break;
  case K_SPOOF: {
    uint64_t x = dp_gen_rng_next(rng);
    if (x % 10 < 2) r->header_from = g->billing; /* non-existent subdomain: np applies */
    else if (x % 10 == 2) r->header_from = g->news;
    r->envelope_from = r->header_from;
    /* only D itself publishes SPF (~all); its subdomains have none */
    r->spf = auth(r->header_from, d, NULL, r->header_from == d ? "softfail" : "none");
    if (x >> 8 & 1) r->dkim[r->n_dkim++] = auth(r->header_from, d, "default", "fail");
    break;
  }
  default: break;
  }
  dp_gen_record_finish(r);
}

/* What a receiver adds to a kind's record: override reasons where it writes them. */
static const char *receiver_reason(enum kind k, enum dp_gen_receiver rcv) {
  if (k == K_FORWARD && rcv == DP_GEN_OUTLOOK) return "forwarded";
  if (k == K_FORWARD_BROKEN &&
      (rcv == DP_GEN_OUTLOOK || rcv == DP_GEN_GOOGLE || rcv == DP_GEN_GMX))
    return "forwarded";
  if (k == K_LIST && (rcv == DP_GEN_OUTLOOK || rcv == DP_GEN_YAHOO || rcv == DP_GEN_AOL))
    return "mailing_list";
  return NULL;
}

/* Add rec (already carrying count c) to the receiver's report; Enterprise
 * Outlook reports per recipient tenant (envelope_to), so it splits in two. */
static int add_for_receiver(dp_gen_report_t *rep, dp_gen_record_t *rec, enum kind k,
                            uint64_t c, dp_gen_rng_t *rng) {
  rec->reason = receiver_reason(k, rep->rcv);
  rec->envelope_to = NULL;
  if (rep->rcv != DP_GEN_OUTLOOK) {
    rec->count = c;
    return dp_gen_report_add(rep, rec);
  }
  uint64_t c1 = (uint64_t)((double)c * 0.6 + dp_gen_rng_unit(rng));
  if (c1 > c) c1 = c;
  int rc = 0;
  for (int t = 0; t < 2 && !rc; t++) {
    uint64_t n = t ? c - c1 : c1;
    if (!n) continue;
    rec->envelope_to = ms_tenants[t];
    rec->count = n;
    rc = dp_gen_report_add(rep, rec);
  }
  return rc;
}

static void hex_id(dp_gen_rng_t *rng, char *out, int nhex) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < nhex; i++) out[i] = hx[dp_gen_rng_next(rng) & 15];
  out[nhex] = '\0';
}

/* Identity and timing of one receiver's report for the day starting at t0. */
static void report_init(const struct gen *g, dp_gen_report_t *rep, enum dp_gen_receiver rcv,
                        int64_t t0, dp_gen_rng_t *rng) {
  memset(rep, 0, sizeof *rep);
  rep->rcv = rcv;
  rep->domain = g->d;
  rep->begin = t0;
  rep->end = t0 + styles[rcv].span;
  rep->sent = t0 + 86400 + (int64_t)dp_gen_rng_range(rng, 1800, 8 * 3600);
  switch (rcv) {
  case DP_GEN_GOOGLE:
    snprintf(rep->report_id, sizeof rep->report_id, "%llu",
             U64(dp_gen_rng_range(rng, UINT64_C(100000000000000000), UINT64_C(999999999999999999))));
    break;
  case DP_GEN_MAILRU:
    snprintf(rep->report_id, sizeof rep->report_id, "%llu%011llu",
             U64(dp_gen_rng_range(rng, UINT64_C(100000000000000000), UINT64_C(999999999999999999))),
             U64(dp_gen_rng_range(rng, 0, UINT64_C(99999999999))));
    break;
  case DP_GEN_YAHOO:
  case DP_GEN_AOL:
    snprintf(rep->report_id, sizeof rep->report_id, "%lld.%06u", (long long)rep->sent,
             (unsigned)dp_gen_rng_range(rng, 0, 999999));
    break;
  case DP_GEN_MIMECAST: {
    /* Mimecast reuses one report_id for a domain's reports of a whole week:
     * only the date range tells them apart. */
    dp_gen_rng_t wr;
    rng_derive(&wr, g->seed, 7, (uint64_t)floor_div(floor_div(t0, 86400) + 3, 7));
    hex_id(&wr, rep->report_id, 64);
    break;
  }
  default:
    hex_id(rng, rep->report_id, 32);
    break;
  }
}

/* A share of c messages for one receiver, randomly rounded. */
static uint64_t split(uint64_t c, double share, dp_gen_rng_t *rng) {
  double x = (double)c * share * (0.75 + 0.5 * dp_gen_rng_unit(rng));
  return (uint64_t)(x + dp_gen_rng_unit(rng));
}

static unsigned day_volume(enum kind k, int wd, dp_gen_rng_t *rng) {
  const struct kind_def *kd = &kinds[k];
  if (k == K_NEWSLETTER && wd == 2) /* the newsletter goes out on Tuesdays */
    return (unsigned)dp_gen_rng_range(rng, 300, 900);
  unsigned v = (unsigned)dp_gen_rng_range(rng, kd->vol_lo, kd->vol_hi);
  if (wd == 0 || wd == 6) v = (unsigned)((double)v * kd->weekend + 0.5);
  return v;
}

/* Fill one report per receiver with the day's mail; reports may stay empty. */
static int build_day(const struct gen *g, int64_t t0, dp_gen_rng_t *rng,
                     dp_gen_report_t reps[DP_GEN_N_RECEIVERS]) {
  for (int r = 0; r < DP_GEN_N_RECEIVERS; r++)
    report_init(g, &reps[r], (enum dp_gen_receiver)r, t0, rng);
  int wd = weekday(t0);
  dp_gen_record_t rec;
  int rc = 0;
  for (int k = 0; k < N_KINDS && !rc; k++) {
    unsigned n = kinds[k].sources * g->scale;
    unsigned burst = 0;
    if (k == K_SPOOF) {
      n = (unsigned)dp_gen_rng_range(rng, 3, 10) * g->scale;
      if (dp_gen_rng_unit(rng) < 0.3) burst = (unsigned)dp_gen_rng_range(rng, 8, 25) * g->scale;
    }
    for (unsigned i = 0; i < n + burst && !rc; i++) {
      unsigned total = day_volume((enum kind)k, wd, rng);
      kind_record(g, (enum kind)k, i < n ? i : UINT_MAX, rng, &rec);
      if (i >= n) total = (unsigned)dp_gen_rng_range(rng, 1, 3);
      if (!total) continue;
      for (int r = 0; r < DP_GEN_N_RECEIVERS && !rc; r++) {
        uint64_t c = split(total, styles[r].share, rng);
        if (c) rc = add_for_receiver(&reps[r], &rec, (enum kind)k, c, rng);
      }
    }
  }
  /* Receivers list records in no particular order. */
  for (int r = 0; r < DP_GEN_N_RECEIVERS; r++) {
    dp_gen_report_t *rep = &reps[r];
    for (size_t i = rep->n; i > 1; i--) {
      size_t j = (size_t)dp_gen_rng_range(rng, 0, i - 1);
      dp_gen_record_t t = rep->recs[i - 1];
      rep->recs[i - 1] = rep->recs[j];
      rep->recs[j] = t;
    }
  }
  return rc;
}

bool dp_gen_domain_ok(const char *domain) {
  size_t n = strlen(domain);
  if (n < 3 || n >= 100 || domain[0] == '.' || domain[0] == '-' || domain[n - 1] == '.' ||
      !strchr(domain, '.') || strstr(domain, ".."))
    return false;
  for (const char *p = domain; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
      return false;
  return true;
}

static int gen_init(struct gen *g, uint64_t seed, const char *domain, unsigned scale) {
  if (!dp_gen_domain_ok(domain) || scale < 1 || scale > 64) return DP_EUSAGE;
  g->seed = seed;
  g->scale = scale;
  snprintf(g->d, sizeof g->d, "%s", domain);
  snprintf(g->news, sizeof g->news, "news.%s", domain);
  snprintf(g->billing, sizeof g->billing, "secure-billing.%s", domain);
  return 0;
}

/* Render, pack and emit one report; expect (if any) counts it. */
static int emit_report(const dp_gen_report_t *rep, enum dp_gen_format fmt, dp_buf_t *xml,
                       dp_buf_t *file, dp_gen_emit_fn emit, void *ud, dp_gen_expect_t *exp) {
  char name[400];
  dp_buf_reset(xml);
  dp_buf_reset(file);
  int rc = dp_gen_render_xml(rep, xml);
  if (!rc) rc = dp_gen_pack(rep, fmt, xml->data, xml->len, file, name, sizeof name);
  if (!rc) rc = emit(ud, name, file->data, file->len);
  if (!rc && exp) rc = dp_gen_expect_add(exp, rep);
  return rc;
}

void dp_gen_sample_defaults(dp_gen_sample_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->seed = 1;
  o->domain = "example.com";
  o->days = 14;
  dp_gen_parse_date("2026-11-01", &o->last_day);
  o->scale = 1;
}

static void add_rejected(dp_gen_expect_t *e, const char *file, const char *reason) {
  if (e->n_rejected >= sizeof e->rejected / sizeof e->rejected[0]) return;
  snprintf(e->rejected[e->n_rejected].file, sizeof e->rejected[0].file, "%s", file);
  snprintf(e->rejected[e->n_rejected].reason, sizeof e->rejected[0].reason, "%s", reason);
  e->n_rejected++;
}

/* Broken inputs for --corrupt: reports of the day before the range, so they
 * never collide with a good report and the good files stay byte-identical. */
static int emit_corrupt(const struct gen *g, int64_t t0, dp_buf_t *xml, dp_buf_t *file,
                        dp_gen_emit_fn emit, void *ud, dp_gen_expect_t *exp) {
  dp_gen_report_t reps[DP_GEN_N_RECEIVERS];
  dp_gen_rng_t rng;
  rng_derive(&rng, g->seed, 3, 0);
  int rc = build_day(g, t0, &rng, reps);
  char name[400];
  /* 1. a gzip cut in the middle (an interrupted download or save) */
  if (!rc) {
    dp_buf_reset(xml);
    dp_buf_reset(file);
    rc = dp_gen_render_xml(&reps[DP_GEN_YAHOO], xml);
    if (!rc) rc = dp_gen_pack(&reps[DP_GEN_YAHOO], DP_GEN_FMT_GZIP, xml->data, xml->len, file,
                              name, sizeof name);
    if (!rc) rc = emit(ud, name, file->data, file->len / 2);
    if (!rc) add_rejected(exp, name, "gzip stream truncated");
  }
  /* 2. a zip without its central directory */
  if (!rc) {
    dp_buf_reset(xml);
    dp_buf_reset(file);
    rc = dp_gen_render_xml(&reps[DP_GEN_GOOGLE], xml);
    if (!rc) rc = dp_gen_pack(&reps[DP_GEN_GOOGLE], DP_GEN_FMT_ZIP, xml->data, xml->len, file,
                              name, sizeof name);
    if (!rc) rc = emit(ud, name, file->data, file->len * 2 / 3);
    if (!rc) add_rejected(exp, name, "not a valid zip archive (no central directory)");
  }
  /* 3. a report whose second record has a count that is not a number */
  if (!rc) {
    dp_buf_reset(xml);
    rc = dp_gen_render_xml(&reps[DP_GEN_OUTLOOK], xml);
    char *p = xml->data ? strstr(xml->data, "<count>") : NULL;
    if (p && strstr(p + 1, "<count>")) p = strstr(p + 1, "<count>");
    if (!rc && p) {
      p += strlen("<count>");
      size_t digits = strspn(p, "0123456789");
      memmove(p + 2, p + digits, xml->len - (size_t)(p - xml->data) - digits + 1);
      xml->len = xml->len - digits + 2;
      memcpy(p, "1O", 2); /* letter O: a typo a hand-made report could carry */
      char base[256];
      dp_gen_report_basename(&reps[DP_GEN_OUTLOOK], base, sizeof base);
      snprintf(name, sizeof name, "%s.xml", base);
      rc = emit(ud, name, xml->data, xml->len);
      if (!rc) add_rejected(exp, name, "record 2: <count> is not an integer: \"1O\"");
    }
  }
  for (int r = 0; r < DP_GEN_N_RECEIVERS; r++) dp_gen_report_free(&reps[r]);
  return rc;
}

int dp_gen_sample(const dp_gen_sample_opts_t *o, dp_gen_emit_fn emit, void *ud,
                  dp_gen_expect_t *exp) {
  struct gen g;
  if (!o->domain || o->days < 1 || o->days > 3660 || gen_init(&g, o->seed, o->domain, o->scale))
    return DP_EUSAGE;
  dp_buf_t xml, file;
  dp_buf_init(&xml, 0);
  dp_buf_init(&file, 0);
  int64_t first = o->last_day - (int64_t)(o->days - 1) * 86400;
  int rc = 0;
  for (int day = 0; day < o->days && !rc; day++) {
    int64_t t0 = first + (int64_t)day * 86400;
    dp_gen_rng_t rng;
    rng_derive(&rng, o->seed, 1, (uint64_t)floor_div(t0, 86400));
    dp_gen_report_t reps[DP_GEN_N_RECEIVERS];
    rc = build_day(&g, t0, &rng, reps);
    for (int r = 0; r < DP_GEN_N_RECEIVERS && !rc; r++)
      if (reps[r].n) /* receivers send nothing for a day without mail */
        rc = emit_report(&reps[r], styles[r].fmt, &xml, &file, emit, ud, exp);
    for (int r = 0; r < DP_GEN_N_RECEIVERS; r++) dp_gen_report_free(&reps[r]);
  }
  if (!rc && o->corrupt) rc = emit_corrupt(&g, first - 86400, &xml, &file, emit, ud, exp);
  dp_buf_free(&xml);
  dp_buf_free(&file);
  return rc;
}

/* ======================================================================== */
/* The bench corpus                                                         */

uint64_t dp_gen_size_mix(dp_gen_rng_t *r) {
  double u = dp_gen_rng_unit(r);
  if (u < 0.70) return dp_gen_rng_range(r, 1, 10);
  if (u < 0.95) return dp_gen_rng_range(r, 11, 100);
  if (u < 0.995) return dp_gen_rng_range(r, 101, 1000);
  if (u < 0.9995) return dp_gen_rng_range(r, 1001, 20000);
  return dp_gen_rng_range(r, 100000, 200000);
}

int64_t dp_gen_bench_begin(const dp_gen_bench_opts_t *o, uint64_t i) {
  int64_t first = o->first_day;
  if (!first) dp_gen_parse_date("2026-01-01", &first);
  return first + (int64_t)(i / DP_GEN_N_RECEIVERS) * 86400;
}

int dp_gen_bench(const dp_gen_bench_opts_t *o, dp_gen_emit_fn emit, void *ud, dp_gen_expect_t *exp) {
  struct gen g;
  if (gen_init(&g, o->seed, o->domain ? o->domain : "example.com", 1)) return DP_EUSAGE;
  unsigned wsum = 0;
  for (int k = 0; k < N_KINDS; k++) wsum += kinds[k].bench_weight;
  enum dp_gen_format fmts[DP_GEN_N_FORMATS];
  int nf = 0;
  for (int f = 0; f < DP_GEN_N_FORMATS; f++)
    if (o->formats & (1u << f)) fmts[nf++] = (enum dp_gen_format)f;
  dp_buf_t xml, file;
  dp_buf_init(&xml, 0);
  dp_buf_init(&file, 0);
  dp_gen_rng_t rng;
  rng_derive(&rng, o->seed, 2, 0);
  dp_gen_record_t rec;
  int rc = 0;
  for (uint64_t i = 0; i < o->n_reports && !rc; i++) {
    enum dp_gen_receiver rcv = (enum dp_gen_receiver)(i % DP_GEN_N_RECEIVERS);
    int64_t t0 = dp_gen_bench_begin(o, i);
    dp_gen_report_t rep;
    report_init(&g, &rep, rcv, t0, &rng);
    uint64_t n = o->records ? o->records : dp_gen_size_mix(&rng);
    while (rep.n < n && !rc) {
      unsigned w = (unsigned)dp_gen_rng_range(&rng, 0, wsum - 1);
      int k = 0;
      while (w >= kinds[k].bench_weight) w -= kinds[k++].bench_weight;
      unsigned src = (unsigned)dp_gen_rng_range(&rng, 0, 4095);
      kind_record(&g, (enum kind)k, src, &rng, &rec);
      uint64_t c = dp_gen_rng_range(&rng, 1, k == K_OWN ? 500 : 40);
      rc = add_for_receiver(&rep, &rec, (enum kind)k, c, &rng);
    }
    if (rep.n > n) rep.n = n; /* an Outlook split may add one record too many */
    rep.messages = 0;
    for (size_t j = 0; j < rep.n; j++) rep.messages += rep.recs[j].count;
    if (!rc)
      rc = emit_report(&rep, nf ? fmts[i % (uint64_t)nf] : styles[rcv].fmt, &xml, &file, emit,
                       ud, exp);
    dp_gen_report_free(&rep);
  }
  dp_buf_free(&xml);
  dp_buf_free(&file);
  return rc;
}
