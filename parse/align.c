/* SPDX-License-Identifier: MIT */
/* parse/align.c - DMARC identifier alignment (RFC 7489 section 3.1):
 * organizational domains from the Public Suffix List (libpsl), relaxed and
 * strict domain alignment, and the per-record alignment flags, sender key and
 * third-party verdict that the parser attaches to every record. */
#include "parse/parse.h"
#include "parse/parse_int.h"

#include <idn2.h>
#include <libpsl.h>
#include <stdatomic.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

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

/* An internationalised name in its ASCII form (A-labels, "xn--..."), in
 * place; a name IDNA2008 refuses stays as it is. Receivers report a
 * message's From domain as its header had it, in Unicode under SMTPUTF8,
 * while DKIM's d= and DNS names are A-labels: "bücher.example" and
 * "xn--bcher-kva.example" are one domain and must align. */
static size_t idn_ascii(char out[DOMAIN_MAX + 1], size_t n) {
  char *ascii = NULL;
  if (idn2_to_ascii_8z(out, &ascii, IDN2_NONTRANSITIONAL) == IDN2_OK && ascii) {
    size_t an = strlen(ascii);
    if (an && an <= DOMAIN_MAX) {
      for (size_t i = 0; i < an; i++)
        out[i] = (char)(ascii[i] >= 'A' && ascii[i] <= 'Z' ? ascii[i] + 32 : ascii[i]);
      out[an] = '\0';
      n = an;
    }
  }
  idn2_free(ascii);
  return n;
}

/* Copy domain into out lower-cased, trimmed, without one trailing dot, a
 * Unicode name in A-labels. Returns the length, or 0 for an empty or
 * over-long name. */
static size_t norm_domain(const char *d, char out[DOMAIN_MAX + 1]) {
  if (!d) return 0;
  size_t n = strlen(d);
  while (n && is_space((unsigned char)*d)) { d++; n--; }
  while (n && is_space((unsigned char)d[n - 1])) n--;
  if (n && d[n - 1] == '.') n--;
  if (n == 0 || n > DOMAIN_MAX) return 0;
  unsigned char high = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)d[i];
    high |= c;
    out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  out[n] = '\0';
  return high & 0x80 ? idn_ascii(out, n) : n;
}

/* Organizational domain of an already normalised name; a public suffix, a
 * name libpsl rejects, and an address literal (some signers and SPF checks
 * report one where a domain belongs: "192.0.2.1" is not the name "2.1"
 * under the suffix "1") are their own organizational domain. */
static const char *org_lookup(const char *norm) {
  unsigned char addr[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, norm, addr) == 1 || inet_pton(AF_INET6, norm, addr) == 1) return norm;
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

/* What dp_align_record derives from a record's identifiers: a function of
 * the target domain and the auth results' domains, scopes and results only
 * (the PSL is fixed once loaded), so records repeating those share it. */
struct align_out {
  bool dkim, dkim_strict, spf, spf_strict, third_party;
  bool have_sender;             /* else the sender is the unauthenticated network */
  char sender[DOMAIN_MAX + 1];
};

static void align_compute(const dp_record_t *rec, const char *target, struct align_out *o) {
  char tnorm[DOMAIN_MAX + 1], torg[DOMAIN_MAX + 1], dnorm[DOMAIN_MAX + 1], dorg[DOMAIN_MAX + 1];
  size_t tlen = norm_domain(target, tnorm);
  bool have_target = tlen > 0;
  if (have_target) org_into(tnorm, tlen, torg);
  *o = (struct align_out){0};

  for (size_t i = 0; i < rec->n_spf; i++) {
    const dp_spf_auth_t *s = &rec->spf[i];
    size_t dlen;
    if (!spf_counts(s) || !(dlen = norm_domain(s->domain, dnorm))) continue;
    org_into(dnorm, dlen, dorg);
    if (!o->have_sender) {
      strcpy(o->sender, dorg);
      o->have_sender = true;
    }
    if (!have_target) continue;
    if (strcmp(dnorm, tnorm) == 0) o->spf_strict = true;
    if (strcmp(dorg, torg) == 0) o->spf = true;
  }
  for (size_t i = 0; i < rec->n_dkim; i++) {
    const dp_dkim_auth_t *d = &rec->dkim[i];
    size_t dlen;
    if (!eq_nocase(d->result, "pass") || !(dlen = norm_domain(d->domain, dnorm))) continue;
    org_into(dnorm, dlen, dorg);
    if (!o->have_sender) {
      strcpy(o->sender, dorg);
      o->have_sender = true;
    }
    if (!have_target) continue;
    if (strcmp(dnorm, tnorm) == 0) o->dkim_strict = true;
    if (strcmp(dorg, torg) == 0) o->dkim = true;
  }
  if (o->have_sender) o->third_party = !have_target || strcmp(o->sender, torg) != 0;
}

/* A small per-thread cache of align_compute results keyed by exactly the
 * inputs it reads, each length-prefixed (so the key is unambiguous); records
 * whose inputs do not fit a key are computed every time. */
#define ALIGN_SETS 64
#define ALIGN_KEY 200
struct align_entry {
  size_t klen; /* 0: empty */
  char key[ALIGN_KEY];
  struct align_out out;
};
static _Thread_local struct align_entry align_cache[ALIGN_SETS];

static bool key_add(char *key, size_t *kl, const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n > 255 || *kl + 1 + n > ALIGN_KEY) return false;
  key[(*kl)++] = (char)n;
  memcpy(key + *kl, s, n);
  *kl += n;
  return true;
}

static size_t align_key(const dp_record_t *rec, const char *target, char *key) {
  size_t kl = 0;
  if (rec->n_spf > 8 || rec->n_dkim > 8) return 0;
  key[kl++] = (char)rec->n_spf;
  key[kl++] = (char)rec->n_dkim;
  if (!key_add(key, &kl, target)) return 0;
  for (size_t i = 0; i < rec->n_spf; i++)
    if (!key_add(key, &kl, rec->spf[i].domain) || !key_add(key, &kl, rec->spf[i].scope) ||
        !key_add(key, &kl, rec->spf[i].result))
      return 0;
  for (size_t i = 0; i < rec->n_dkim; i++)
    if (!key_add(key, &kl, rec->dkim[i].domain) || !key_add(key, &kl, rec->dkim[i].result)) return 0;
  return kl;
}

static size_t key_slot(const char *k, size_t n) {
  uint64_t h = n;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, k + i, 8);
    h = (h ^ w) * UINT64_C(0x9E3779B97F4A7C15);
    h ^= h >> 29;
  }
  for (; i < n; i++) h = (h ^ (unsigned char)k[i]) * UINT64_C(0x100000001b3);
  h ^= h >> 32;
  return (size_t)(h % ALIGN_SETS);
}

void dp_align_record(dp_record_t *rec, const char *policy_domain, char *sender_buf,
                     size_t sender_len) {
  const char *target = rec->header_from && *rec->header_from ? rec->header_from : policy_domain;
  char key[ALIGN_KEY];
  struct align_out fresh;
  const struct align_out *o = &fresh;
  size_t kl = align_key(rec, target, key);
  if (kl) {
    struct align_entry *e = &align_cache[key_slot(key, kl)];
    if (e->klen != kl || memcmp(e->key, key, kl) != 0) {
      align_compute(rec, target, &e->out);
      memcpy(e->key, key, kl);
      e->klen = kl;
    }
    o = &e->out;
  } else {
    align_compute(rec, target, &fresh);
  }
  rec->dkim_aligned = o->dkim;
  rec->dkim_aligned_strict = o->dkim_strict;
  rec->spf_aligned = o->spf;
  rec->spf_aligned_strict = o->spf_strict;
  if (o->have_sender) {
    size_t sl = strlen(o->sender);
    if (sl >= sender_len) sl = sender_len ? sender_len - 1 : 0;
    if (sender_len) {
      memcpy(sender_buf, o->sender, sl);
      sender_buf[sl] = '\0';
    }
    rec->third_party = o->third_party;
  } else {
    unauth_sender(rec, sender_buf, sender_len);
    rec->third_party = false;
  }
  rec->sender = sender_buf;
}
