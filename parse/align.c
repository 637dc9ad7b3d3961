/* SPDX-License-Identifier: MIT */
/* parse/align.c - DMARC identifier alignment (RFC 7489 section 3.1):
 * organizational domains from the Public Suffix List (libpsl), relaxed and
 * strict domain alignment, and the per-record alignment flags, sender key and
 * third-party verdict that the parser attaches to every record. */
#include "parse/parse.h"
#include "parse/parse_int.h"

#include <libpsl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Longest domain name we align (RFC 1035: 253 characters + a trailing dot);
 * anything longer is not a domain and never aligns. */
#define DOMAIN_MAX 255

/* The list is published once with a compare-and-swap so that lazy
 * initialisation from several worker threads is safe without a lock. */
static _Atomic(const psl_ctx_t *) g_psl;

int dp_align_global_init(void) {
  if (atomic_load(&g_psl)) return 0;
  /* psl_latest(NULL) picks the newest of the built-in list and the distro
   * file (Debian: /usr/share/publicsuffix/public_suffix_list.dafsa). */
  psl_ctx_t *own = psl_latest(NULL);
  const psl_ctx_t *ctx = own ? own : psl_builtin();
  if (!ctx) return DP_EIO;
  const psl_ctx_t *expected = NULL;
  if (!atomic_compare_exchange_strong(&g_psl, &expected, ctx) && own) psl_free(own);
  return 0;
}

void dp_align_global_cleanup(void) {
  const psl_ctx_t *ctx = atomic_exchange(&g_psl, NULL);
  /* psl_builtin() is a static context that must never be freed. */
  if (ctx && ctx != psl_builtin()) psl_free((psl_ctx_t *)ctx);
}

static const psl_ctx_t *get_psl(void) {
  const psl_ctx_t *ctx = atomic_load(&g_psl);
  if (!ctx) {
    dp_align_global_init();
    ctx = atomic_load(&g_psl);
  }
  return ctx;
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Copy domain into out lower-cased, trimmed, without one trailing dot.
 * Returns the length, or 0 for an empty or over-long name. */
static size_t norm_domain(const char *d, char out[DOMAIN_MAX + 1]) {
  if (!d) return 0;
  size_t n = strlen(d);
  while (n && is_space((unsigned char)*d)) { d++; n--; }
  while (n && is_space((unsigned char)d[n - 1])) n--;
  if (n && d[n - 1] == '.') n--;
  if (n == 0 || n > DOMAIN_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)d[i];
    out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  out[n] = '\0';
  return n;
}

/* Organizational domain of an already normalised name; a public suffix or a
 * name libpsl rejects is its own organizational domain. */
static const char *org_lookup(const char *norm) {
  const psl_ctx_t *ctx = get_psl();
  const char *r = ctx ? psl_registrable_domain(ctx, norm) : NULL;
  return r ? r : norm;
}

/* PSL lookups are the most expensive step per record, and a report repeats
 * the same few domains in every record, so each thread keeps a small
 * direct-mapped cache of recent answers (short names only). */
#define ORG_SETS 256 /* two ways each: ~33 KiB per thread */
#define ORG_CACHE_NAME 64
struct org_entry {
  char name[ORG_CACHE_NAME];
  unsigned char org_off; /* the org domain is a suffix of name */
};
static _Thread_local struct org_entry org_cache[ORG_SETS][2];

/* Cache slot hash: the first and last 8 bytes and the length (a byte-wise
 * hash cost more than the lookup it saves). Names are < ORG_CACHE_NAME. */
static size_t name_hash(const char *s, size_t len) {
  uint64_t a = len, b = 0;
  if (len >= 8) {
    memcpy(&a, s, 8);
    memcpy(&b, s + len - 8, 8);
  } else {
    for (size_t i = 0; i < len; i++) b = b << 8 | (unsigned char)s[i];
  }
  uint64_t h = (a ^ (b * UINT64_C(0x9E3779B97F4A7C15)) ^ len) * UINT64_C(0xff51afd7ed558ccd);
  return (size_t)(h >> 32);
}

/* Copy the organizational domain of norm (length len) into out (DOMAIN_MAX+1). */
static void org_into(const char *norm, size_t len, char *out) {
  if (len >= ORG_CACHE_NAME) {
    strcpy(out, org_lookup(norm));
    return;
  }
  struct org_entry *set = org_cache[name_hash(norm, len) % ORG_SETS];
  if (strcmp(set[0].name, norm) != 0) {
    struct org_entry hit;
    if (strcmp(set[1].name, norm) == 0) {
      hit = set[1];
    } else {
      const char *org = org_lookup(norm);
      memcpy(hit.name, norm, len + 1);
      /* psl_registrable_domain returns a pointer into its argument */
      hit.org_off = (unsigned char)(org >= norm && org <= norm + len ? org - norm : 0);
    }
    set[1] = set[0]; /* most recent first */
    set[0] = hit;
  }
  memcpy(out, set[0].name + set[0].org_off, len - set[0].org_off + 1);
}

int dp_align_org_domain(const char *domain, char *out, size_t outlen) {
  char n[DOMAIN_MAX + 1], org[DOMAIN_MAX + 1] = "";
  size_t len = norm_domain(domain, n);
  if (len) org_into(n, len, org);
  size_t olen = strlen(org);
  if (olen + 1 > outlen) return DP_ELIMIT;
  memcpy(out, org, olen + 1);
  return 0;
}

bool dp_align_domains(const char *a, const char *b, bool strict) {
  char na[DOMAIN_MAX + 1], nb[DOMAIN_MAX + 1], oa[DOMAIN_MAX + 1], ob[DOMAIN_MAX + 1];
  size_t la = norm_domain(a, na), lb = norm_domain(b, nb);
  if (!la || !lb) return false;
  if (strcmp(na, nb) == 0) return true;
  if (strict) return false;
  org_into(na, la, oa);
  org_into(nb, lb, ob);
  return strcmp(oa, ob) == 0;
}

static bool eq_nocase(const char *a, const char *b) {
  if (!a) return false;
  for (; *a && *b; a++, b++) {
    unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
    if (x >= 'A' && x <= 'Z') x += 32;
    if (x != y) return false;
  }
  return *a == *b;
}

/* SPF results in the mfrom scope (or with no scope given, as RFC 7489 reports
 * usually omit it) are the ones DMARC uses; a HELO pass authenticates the
 * sending host, not the RFC5321.MailFrom domain, so it never aligns. */
static bool spf_counts(const dp_spf_auth_t *s) {
  return eq_nocase(s->result, "pass") &&
         (!s->scope || !*s->scope || eq_nocase(s->scope, "mfrom"));
}

/* "unauthenticated <network>" for the record's source: IPv4 /24, IPv6 /48. */
static void unauth_sender(const dp_record_t *rec, char *buf, size_t len) {
  static const char pre[] = "unauthenticated ";
  unsigned char a[16];
  char txt[sizeof pre - 1 + DP__IP_TEXT_MAX + 4];
  memcpy(txt, pre, sizeof pre - 1);
  size_t n = sizeof pre - 1;
  int fam = dp__ip_parse(rec->source_ip, a);
  if (fam == 4) {
    a[3] = 0;
    n += dp__ip_format(a, 4, txt + n);
    memcpy(txt + n, "/24", 4);
  } else if (fam == 6) {
    memset(a + 6, 0, 10);
    n += dp__ip_format(a, 6, txt + n);
    memcpy(txt + n, "/48", 4);
  } else {
    txt[n - 1] = '\0'; /* "unauthenticated" */
  }
  size_t tl = strlen(txt);
  if (!len) return;
  if (tl >= len) tl = len - 1;
  memcpy(buf, txt, tl);
  buf[tl] = '\0';
}

void dp_align_record(dp_record_t *rec, const char *policy_domain, char *sender_buf,
                     size_t sender_len) {
  const char *target = rec->header_from && *rec->header_from ? rec->header_from : policy_domain;
  char tnorm[DOMAIN_MAX + 1], torg[DOMAIN_MAX + 1], dnorm[DOMAIN_MAX + 1], dorg[DOMAIN_MAX + 1];
  size_t tlen = norm_domain(target, tnorm);
  bool have_target = tlen > 0;
  if (have_target) org_into(tnorm, tlen, torg);

  const char *sender_dom = NULL; /* points to sdom once set */
  char sdom[DOMAIN_MAX + 1];
  rec->dkim_aligned = rec->dkim_aligned_strict = false;
  rec->spf_aligned = rec->spf_aligned_strict = false;

  for (size_t i = 0; i < rec->n_spf; i++) {
    const dp_spf_auth_t *s = &rec->spf[i];
    size_t dlen;
    if (!spf_counts(s) || !(dlen = norm_domain(s->domain, dnorm))) continue;
    org_into(dnorm, dlen, dorg);
    if (!sender_dom) sender_dom = strcpy(sdom, dorg);
    if (!have_target) continue;
    if (strcmp(dnorm, tnorm) == 0) rec->spf_aligned_strict = true;
    if (strcmp(dorg, torg) == 0) rec->spf_aligned = true;
  }
  for (size_t i = 0; i < rec->n_dkim; i++) {
    const dp_dkim_auth_t *d = &rec->dkim[i];
    size_t dlen;
    if (!eq_nocase(d->result, "pass") || !(dlen = norm_domain(d->domain, dnorm))) continue;
    org_into(dnorm, dlen, dorg);
    if (!sender_dom) sender_dom = strcpy(sdom, dorg);
    if (!have_target) continue;
    if (strcmp(dnorm, tnorm) == 0) rec->dkim_aligned_strict = true;
    if (strcmp(dorg, torg) == 0) rec->dkim_aligned = true;
  }

  if (sender_dom) {
    size_t sl = strlen(sender_dom);
    if (sl >= sender_len) sl = sender_len ? sender_len - 1 : 0;
    if (sender_len) {
      memcpy(sender_buf, sender_dom, sl);
      sender_buf[sl] = '\0';
    }
    rec->third_party = !have_target || strcmp(sender_dom, torg) != 0;
  } else {
    unauth_sender(rec, sender_buf, sender_len);
    rec->third_party = false;
  }
  rec->sender = sender_buf;
}
