/* SPDX-License-Identifier: MIT */
/* parse/xml_stream.c - streaming DMARC aggregate report parser. Bytes go
 * through an encoding sniffer, a prolog scanner (wraps the document so junk
 * before <feedback> is tolerated) and a UTF-8 repair pass into a libxml2 SAX2
 * push parser; a path state machine fills one record at a time. No DOM. */
#include "parse/parse.h"
#include "parse/parse_int.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/xmlerror.h>

/* ======================================================================== */
/* Vocabulary                                                               */

#define RFC9990_NS "urn:ietf:params:xml:ns:dmarc-2.0"

/* Element local names we know, matched case-insensitively. */
enum tok {
  T_UNKNOWN, T_FEEDBACK, T_VERSION, T_REPORT_METADATA, T_ORG_NAME, T_EMAIL,
  T_EXTRA_CONTACT_INFO, T_REPORT_ID, T_DATE_RANGE, T_BEGIN, T_END, T_ERROR,
  T_GENERATOR, T_POLICY_PUBLISHED, T_DOMAIN, T_ADKIM, T_ASPF, T_P, T_SP, T_NP,
  T_PCT, T_FO, T_TESTING, T_DISCOVERY_METHOD, T_RECORD, T_ROW, T_SOURCE_IP,
  T_COUNT, T_POLICY_EVALUATED, T_DISPOSITION, T_DKIM, T_SPF, T_REASON, T_TYPE,
  T_COMMENT, T_IDENTIFIERS, T_HEADER_FROM, T_ENVELOPE_FROM, T_ENVELOPE_TO,
  T_AUTH_RESULTS, T_SELECTOR, T_RESULT, T_HUMAN_RESULT, T_SCOPE, T__N
};

static const char *const tok_names[T__N] = {
  "", "feedback", "version", "report_metadata", "org_name", "email",
  "extra_contact_info", "report_id", "date_range", "begin", "end", "error",
  "generator", "policy_published", "domain", "adkim", "aspf", "p", "sp", "np",
  "pct", "fo", "testing", "discovery_method", "record", "row", "source_ip",
  "count", "policy_evaluated", "disposition", "dkim", "spf", "reason", "type",
  "comment", "identifiers", "header_from", "envelope_from", "envelope_to",
  "auth_results", "selector", "result", "human_result", "scope",
};

/* Text fields. Report-level ones come first, record-level from F_SOURCE_IP. */
enum fld {
  F_VERSION, F_ORG_NAME, F_EMAIL, F_EXTRA, F_REPORT_ID, F_BEGIN, F_END, F_ERROR,
  F_GENERATOR, F_POL_DOMAIN, F_ADKIM, F_ASPF, F_P, F_SP, F_NP, F_PCT, F_FO,
  F_TESTING, F_DISCOVERY,
  F_SOURCE_IP, F_COUNT, F_DISPOSITION, F_PE_DKIM, F_PE_SPF, F_REASON_TYPE,
  F_REASON_COMMENT, F_HEADER_FROM, F_ENV_FROM, F_ENV_TO, F_DKIM_DOMAIN,
  F_DKIM_SELECTOR, F_DKIM_RESULT, F_DKIM_HUMAN, F_SPF_DOMAIN, F_SPF_SCOPE,
  F_SPF_RESULT, F_SPF_HUMAN, F__N
};

#define FL_LOWER 1u  /* ASCII lower-case the value */
#define FL_DOMAIN 2u /* drop one trailing dot */

static const struct {
  const char *name;
  unsigned flags;
} fld_info[F__N] = {
  [F_VERSION] = {"version", 0},
  [F_ORG_NAME] = {"org_name", 0},
  [F_EMAIL] = {"email", 0},
  [F_EXTRA] = {"extra_contact_info", 0},
  [F_REPORT_ID] = {"report_id", 0},
  [F_BEGIN] = {"begin", 0},
  [F_END] = {"end", 0},
  [F_ERROR] = {"error", 0},
  [F_GENERATOR] = {"generator", 0},
  [F_POL_DOMAIN] = {"domain", FL_LOWER | FL_DOMAIN},
  [F_ADKIM] = {"adkim", FL_LOWER},
  [F_ASPF] = {"aspf", FL_LOWER},
  [F_P] = {"p", FL_LOWER},
  [F_SP] = {"sp", FL_LOWER},
  [F_NP] = {"np", FL_LOWER},
  [F_PCT] = {"pct", 0},
  [F_FO] = {"fo", FL_LOWER},
  [F_TESTING] = {"testing", FL_LOWER},
  [F_DISCOVERY] = {"discovery_method", FL_LOWER},
  [F_SOURCE_IP] = {"source_ip", 0},
  [F_COUNT] = {"count", 0},
  [F_DISPOSITION] = {"disposition", FL_LOWER},
  [F_PE_DKIM] = {"dkim", FL_LOWER},
  [F_PE_SPF] = {"spf", FL_LOWER},
  [F_REASON_TYPE] = {"type", FL_LOWER},
  [F_REASON_COMMENT] = {"comment", 0},
  [F_HEADER_FROM] = {"header_from", FL_LOWER | FL_DOMAIN},
  [F_ENV_FROM] = {"envelope_from", FL_LOWER | FL_DOMAIN},
  [F_ENV_TO] = {"envelope_to", FL_LOWER | FL_DOMAIN},
  [F_DKIM_DOMAIN] = {"domain", FL_LOWER | FL_DOMAIN},
  [F_DKIM_SELECTOR] = {"selector", 0},
  [F_DKIM_RESULT] = {"result", FL_LOWER},
  [F_DKIM_HUMAN] = {"human_result", 0},
  [F_SPF_DOMAIN] = {"domain", FL_LOWER | FL_DOMAIN},
  [F_SPF_SCOPE] = {"scope", FL_LOWER},
  [F_SPF_RESULT] = {"result", FL_LOWER},
  [F_SPF_HUMAN] = {"human_result", 0},
};

/* Element states: containers we descend into, S_SKIP for ignored subtrees,
 * and S_LEAF + field for text fields. S_OUT is outside <feedback>. S_OUTER
 * is never on the stack: in g_trans it marks a child of S_OUT, decided in
 * on_start's slow path (the injected wrapper, the first <feedback>, junk
 * around it). */
enum st {
  S_OUT, S_FEEDBACK, S_META, S_DATE, S_POLICY, S_RECORD, S_ROW, S_PE,
  S_REASON, S_IDENT, S_AUTH, S_ADKIM, S_ASPF, S_OUTER, S_SKIP, S_LEAF
};
#define LEAF(f) (S_LEAF + (f))

#define S__N (S_LEAF + F__N)
/* States below S_SKIP with work on entry (on_start's slow path: a child of
 * S_OUT, containers that allocate or check something); every other state
 * needs nothing beyond the stack and the text callbacks. */
#define START_WORK ((1u << S_OUTER) | (1u << S_RECORD) | (1u << S_ADKIM) | (1u << S_ASPF) | \
                    (1u << S_REASON))

/* child_state() as a table over every parent state, filled once by
 * xml_global_init: one load per element, and ignored subtrees and leaves'
 * children (S_SKIP) take the same path as everything else. */
static unsigned char g_trans[S__N][T__N];
/* Leaf states whose text is lower-cased (FL_LOWER), by state. */
static bool g_lower[S__N];

static int child_state(int parent, int tok) {
  switch (parent) {
  case S_FEEDBACK:
    switch (tok) {
    case T_VERSION: return LEAF(F_VERSION);
    case T_REPORT_METADATA: return S_META;
    case T_POLICY_PUBLISHED: return S_POLICY;
    case T_RECORD: return S_RECORD;
    default: break;
    }
    break;
  case S_META:
    switch (tok) {
    case T_ORG_NAME: return LEAF(F_ORG_NAME);
    case T_EMAIL: return LEAF(F_EMAIL);
    case T_EXTRA_CONTACT_INFO: return LEAF(F_EXTRA);
    case T_REPORT_ID: return LEAF(F_REPORT_ID);
    case T_DATE_RANGE: return S_DATE;
    case T_ERROR: return LEAF(F_ERROR);
    case T_GENERATOR: return LEAF(F_GENERATOR);
    default: break;
    }
    break;
  case S_DATE:
    if (tok == T_BEGIN) return LEAF(F_BEGIN);
    if (tok == T_END) return LEAF(F_END);
    break;
  case S_POLICY:
    switch (tok) {
    case T_DOMAIN: return LEAF(F_POL_DOMAIN);
    case T_ADKIM: return LEAF(F_ADKIM);
    case T_ASPF: return LEAF(F_ASPF);
    case T_P: return LEAF(F_P);
    case T_SP: return LEAF(F_SP);
    case T_NP: return LEAF(F_NP);
    case T_PCT: return LEAF(F_PCT);
    case T_FO: return LEAF(F_FO);
    case T_TESTING: return LEAF(F_TESTING);
    case T_DISCOVERY_METHOD: return LEAF(F_DISCOVERY);
    default: break;
    }
    break;
  case S_RECORD:
    if (tok == T_ROW) return S_ROW;
    if (tok == T_IDENTIFIERS) return S_IDENT;
    if (tok == T_AUTH_RESULTS) return S_AUTH;
    break;
  case S_ROW:
    if (tok == T_SOURCE_IP) return LEAF(F_SOURCE_IP);
    if (tok == T_COUNT) return LEAF(F_COUNT);
    if (tok == T_POLICY_EVALUATED) return S_PE;
    break;
  case S_PE:
    if (tok == T_DISPOSITION) return LEAF(F_DISPOSITION);
    if (tok == T_DKIM) return LEAF(F_PE_DKIM);
    if (tok == T_SPF) return LEAF(F_PE_SPF);
    if (tok == T_REASON) return S_REASON;
    break;
  case S_REASON:
    if (tok == T_TYPE) return LEAF(F_REASON_TYPE);
    if (tok == T_COMMENT) return LEAF(F_REASON_COMMENT);
    break;
  case S_IDENT:
    if (tok == T_HEADER_FROM) return LEAF(F_HEADER_FROM);
    if (tok == T_ENVELOPE_FROM) return LEAF(F_ENV_FROM);
    if (tok == T_ENVELOPE_TO) return LEAF(F_ENV_TO);
    break;
  case S_AUTH:
    if (tok == T_DKIM) return S_ADKIM;
    if (tok == T_SPF) return S_ASPF;
    break;
  case S_ADKIM:
    if (tok == T_DOMAIN) return LEAF(F_DKIM_DOMAIN);
    if (tok == T_SELECTOR) return LEAF(F_DKIM_SELECTOR);
    if (tok == T_RESULT) return LEAF(F_DKIM_RESULT);
    if (tok == T_HUMAN_RESULT) return LEAF(F_DKIM_HUMAN);
    break;
  case S_ASPF:
    if (tok == T_DOMAIN) return LEAF(F_SPF_DOMAIN);
    if (tok == T_SCOPE) return LEAF(F_SPF_SCOPE);
    if (tok == T_RESULT) return LEAF(F_SPF_RESULT);
    if (tok == T_HUMAN_RESULT) return LEAF(F_SPF_HUMAN);
    break;
  default: break;
  }
  return S_SKIP;
}

/* ======================================================================== */
/* Parser state                                                             */

/* Per-record limits beyond the configurable ones: no real record carries more
 * than a handful of results, so these only stop hostile repetition. */
#define MAX_AUTH_PER_RECORD 1000
#define MAX_REPORT_ERRORS 1000
#define HEAD_MAX 512          /* bytes sniffed for the encoding declaration */
#define NAME_CACHE_BITS 8     /* direct-mapped cache: dict name -> token */
#define WRAP_OPEN "<dmarcpipe-document>"
#define WRAP_CLOSE "</dmarcpipe-document>"

enum mode { M_SNIFF, M_UTF8, M_BYTE, M_RAW };
/* bytes kept between chunks when looking for a second <feedback> */
#define TAIL_MAX 63
enum prolog {
  PS_MISC, PS_LT, PS_BANG, PS_BANG_DASH, PS_PI, PS_PI_Q, PS_COMMENT,
  PS_COMMENT_D1, PS_COMMENT_D2, PS_DECL, PS_DONE
};

struct dkim_off { size_t domain, selector, result, human; };
struct spf_off { size_t domain, scope, result, human; };
struct reason_off { size_t type, comment; };

/* Report strings live in blocks that never move, so pointers handed out in
 * dp_report_t stay valid for the parser's life. */
struct blk {
  struct blk *next;
  size_t used, size;
  char data[];
};

struct dp_parser {
  dp_limits_t lim;
  dp_parse_cb_t cb;
  void *ud;
  xmlParserCtxtPtr ctxt;
  int rc;
  char err[512];

  /* input pipeline */
  int mode;
  int prolog;
  bool wrapped;        /* WRAP_OPEN was injected; the document is one level deeper */
  bool emitted;        /* some byte reached libxml2 */
  unsigned char head[HEAD_MAX];
  size_t head_len;
  unsigned char carry[4]; /* incomplete UTF-8 sequence at a chunk end */
  size_t carry_len;
  char decl_quote;
  bool decl_cmt;        /* inside a comment of the internal subset */
  unsigned decl_depth, decl_match;

  /* element stack */
  uint32_t depth, max_depth;
  unsigned char *stack;        /* state of the element at each depth; [0] = document */
  const xmlChar **names;       /* local name at each depth (dict-owned) */
  struct { const xmlChar *name; int tok; } cache[1u << NAME_CACHE_BITS];
  bool seen_feedback, done, begun;
  /* after the report's end: another <feedback> start tag follows in the
   * document (not read); the last bytes looked at, for a tag cut in two */
  bool more_reports;
  unsigned char tail[TAIL_MAX];
  size_t tail_len;
  char root_name[64];
  dp_buf_t text;               /* text of the current leaf */

  /* report */
  dp_report_t rep;
  struct blk *blocks;
  size_t arena_total, arena_cap;
  const char **errors;
  size_t a_errors;
  const char *begin_txt, *end_txt;
  bool have_begin, have_end;
  uint32_t mseen; /* report-level fields seen (bit 1 << F_*), for repeats */
  /* what libxml2 wrote to its generic error channel during this document:
   * an encoding error is reported only there, with no parser error */
  char generr[384];
  size_t generr_len;

  /* current record: strings at offsets in rbuf (offset 0 is "") */
  dp_buf_t rbuf;               /* its cap leaves room for one open leaf past rcap */
  size_t rcap;                 /* the record's limit: stored strings end within it */
  size_t leaf_off;             /* where the open record-level leaf's text starts */
  size_t roff[F__N];
  unsigned rseen;              /* bitmask: source_ip, count seen */
  size_t rused;                /* bytes of the stored strings a field points to (dp_record_t.text_used) */
  struct dkim_off *dk;
  size_t n_dk, a_dk;
  struct spf_off *sp;
  size_t n_sp, a_sp;
  struct reason_off *rs;
  size_t n_rs, a_rs;
  dp_dkim_auth_t *dk_out;
  size_t a_dk_out;
  dp_spf_auth_t *sp_out;
  size_t a_sp_out;
  dp_reason_t *rs_out;
  size_t a_rs_out;
  dp_record_t rec;
  char sender[320];
};

#define SEEN_IP 1u
#define SEEN_COUNT 2u

/* ======================================================================== */
/* Errors                                                                   */

static int utf8_seq(const unsigned char *s, size_t avail);
static int fail(dp_parser_t *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(dp_parser_t *p, int rc, const char *fmt, ...) {
  if (p->rc) return p->rc;
  p->rc = rc;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err, sizeof p->err, fmt, ap);
  va_end(ap);
  /* one line of valid UTF-8, whatever libxml2 or the document put into it */
  unsigned char *e = (unsigned char *)p->err;
  size_t n = strlen(p->err);
  for (size_t i = 0; i < n;) {
    int r = e[i] < 0x80 ? 1 : utf8_seq(e + i, n - i);
    if (r <= 0) e[i] = '?';
    else if (r == 1 && (e[i] < 0x20 || e[i] == 0x7f)) e[i] = ' ';
    i += r > 0 ? (size_t)r : 1;
  }
  if (p->ctxt) xmlStopParser(p->ctxt);
  return rc;
}

/* A short printable rendering of a hostile value for an error message. */
static const char *quote_value(const char *s, char *out, size_t outlen) {
  size_t n = strlen(s), max = outlen > 4 ? outlen - 4 : 0, j = 0;
  bool cut = n > max;
  if (cut) {
    n = max;
    while (n && ((unsigned char)s[n] & 0xC0) == 0x80) n--; /* keep UTF-8 whole */
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    out[j++] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
  }
  if (cut) { memcpy(out + j, "...", 3); j += 3; }
  out[j] = '\0';
  return out;
}

static int field_fail(dp_parser_t *p, int rc, int f, const char *what, const char *val) {
  char q[96];
  const char *vq = val ? quote_value(val, q, sizeof q) : NULL;
  if (f >= F_SOURCE_IP)
    return vq ? fail(p, rc, "record %" PRIu64 ": <%s> %s: \"%s\"", p->rep.n_records + 1,
                     fld_info[f].name, what, vq)
              : fail(p, rc, "record %" PRIu64 ": <%s> %s", p->rep.n_records + 1,
                     fld_info[f].name, what);
  return vq ? fail(p, rc, "<%s> %s: \"%s\"", fld_info[f].name, what, vq)
            : fail(p, rc, "<%s> %s", fld_info[f].name, what);
}

/* ======================================================================== */
/* Memory                                                                   */

static int arena_dup(dp_parser_t *p, const char *s, size_t n, const char **out) {
  if (p->arena_total + n + 1 > p->arena_cap) return DP_ELIMIT;
  struct blk *b = p->blocks;
  if (!b || b->size - b->used < n + 1) {
    size_t sz = n + 1 > 4000 ? n + 1 : 4000;
    b = malloc(sizeof *b + sz);
    if (!b) return DP_ENOMEM;
    b->size = sz;
    b->used = 0;
    b->next = p->blocks;
    p->blocks = b;
  }
  char *d = b->data + b->used;
  memcpy(d, s, n);
  d[n] = '\0';
  b->used += n + 1;
  p->arena_total += n + 1;
  *out = d;
  return 0;
}

/* Grow *arr (of elsize-byte items) geometrically to hold at least need items. */
static int grow(void *arrp, size_t *alloc, size_t need, size_t elsize) {
  void **arr = arrp;
  if (need <= *alloc) return 0;
  size_t na = *alloc ? *alloc * 2 : 8;
  while (na < need) na *= 2;
  void *n = realloc(*arr, na * elsize);
  if (!n) return DP_ENOMEM;
  *arr = n;
  *alloc = na;
  return 0;
}

/* ======================================================================== */
/* Value parsing                                                            */

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Count: digits only, exact, <= DP_MAX_REPORT_MESSAGES. 0 ok, else a
 * reason. */
static const char *parse_count(const char *s, uint64_t *out) {
  if (!*s) return "is empty";
  if (*s == '-') return "is negative";
  uint64_t v = 0;
  for (const char *c = s; *c; c++) {
    if (*c < '0' || *c > '9') return "is not an integer";
    v = v * 10 + (unsigned)(*c - '0');
    if (v > DP_MAX_REPORT_MESSAGES) return "is more than any real report's (limit 10^12)";
  }
  *out = v;
  return NULL;
}

/* Epoch seconds. Some generators write "1536105600.0" or a fractional part,
 * which is dropped. Years beyond 9999 are refused: no real report has them and
 * they do not fit an ISO 8601 or SQL timestamp cleanly. */
static const char *parse_epoch(const char *s, int64_t *out) {
  if (!*s) return "is empty";
  const char *c = s;
  if (*c == '-') return "is negative";
  int64_t v = 0;
  if (*c < '0' || *c > '9') return "is not an integer";
  for (; *c >= '0' && *c <= '9'; c++) {
    v = v * 10 + (*c - '0');
    if (v > INT64_C(253402300799)) return "is out of range";
  }
  if (*c == '.') {
    for (c++; *c >= '0' && *c <= '9'; c++) {}
  }
  if (*c) return "is not an integer";
  *out = v;
  return NULL;
}

/* Whether end (a date_range end, epoch seconds) lies more than
 * max_future_days after the clock, read per report: `watch` runs for months. */
static bool beyond_future_limit(const dp_parser_t *p, int64_t end) {
  if (!p->lim.max_future_days) return false;
  return end > (int64_t)time(NULL) + (int64_t)p->lim.max_future_days * 86400;
}

/* inet_pton in either family; IPv4-mapped IPv6 (::ffff:a.b.c.d) is the IPv4
 * sender itself, so it is stored as IPv4 and groups with its /24. */
static int canon_ip(const char *s, char *out, size_t outlen, int *family) {
  unsigned char a[16];
  static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (outlen < DP__IP_TEXT_MAX) return -1;
  size_t n = dp__ip_quad_canon(s, a);
  if (n) { /* the common case: s is its own canonical form */
    *family = 4;
    memcpy(out, s, n + 1);
    return 0;
  }
  int fam = dp__ip_parse(s, a);
  if (!fam) return -1;
  if (fam == 6 && memcmp(a, mapped, 12) == 0) {
    fam = 4;
    memmove(a, a + 12, 4);
  }
  *family = fam;
  dp__ip_format(a, fam, out);
  return 0;
}

/* ======================================================================== */
/* Report and record completion                                             */

static int cb_fail(dp_parser_t *p, int rc, const char *which) {
  return fail(p, rc, "aborted by the %s callback (%s)", which, dp_err_name(rc));
}

/* Validate the report identity and announce the report. org_name fallback:
 * some generators (seen in parsedmarc's corpus) send an empty <org_name>;
 * such a report is still identifiable, so the domain of <email> stands in
 * for the organisation name. Without either, the report is refused. */
static int report_begin(dp_parser_t *p, bool at_record) {
  dp_report_t *r = &p->rep;
  if (p->begun) return 0;
  /* at the first record, a field that may still come later (a report with
   * its metadata or policy after its records) is missing *there* */
  const char *when = at_record ? " before the first record" : "";
  if (!*r->org_name) {
    const char *at = strrchr(r->email, '@');
    const char *d = at ? at + 1 : r->email;
    size_t n = strlen(d);
    while (n && d[n - 1] == '.') n--;
    if (n == 0)
      return fail(p, DP_EREPORT,
                  "report_metadata/org_name is required%s (and there is no <email> to stand in)",
                  when);
    const char *o;
    int rc = arena_dup(p, d, n, &o);
    if (rc) return fail(p, rc, "out of memory");
    for (char *c = (char *)o; *c; c++)
      if (*c >= 'A' && *c <= 'Z') *c += 32;
    r->org_name = o;
  }
  if (!*r->report_id) return fail(p, DP_EREPORT, "report_metadata/report_id is required%s", when);
  if (!*r->domain) return fail(p, DP_EREPORT, "policy_published/domain is required%s", when);
  if (!p->have_begin || !*p->begin_txt)
    return fail(p, DP_EREPORT, "report_metadata/date_range/begin is required%s", when);
  if (!p->have_end || !*p->end_txt)
    return fail(p, DP_EREPORT, "report_metadata/date_range/end is required%s", when);
  const char *why;
  char q[96];
  if ((why = parse_epoch(p->begin_txt, &r->begin)))
    return fail(p, DP_EREPORT, "<begin> %s: \"%s\"", why, quote_value(p->begin_txt, q, sizeof q));
  if ((why = parse_epoch(p->end_txt, &r->end)))
    return fail(p, DP_EREPORT, "<end> %s: \"%s\"", why, quote_value(p->end_txt, q, sizeof q));
  if (r->begin > r->end)
    return fail(p, DP_EREPORT, "date_range begin %" PRId64 " is after end %" PRId64, r->begin, r->end);
  if (beyond_future_limit(p, r->end)) {
    dp_time_iso8601(r->end, q, sizeof q);
    return fail(p, DP_EREPORT,
                "date_range end %s is more than %" PRIu32 " days after this machine's clock "
                "(--max-future-days)",
                q, p->lim.max_future_days);
  }
  p->begun = true;
  if (p->cb.report_begin) {
    int rc = p->cb.report_begin(p->ud, r);
    if (rc) return cb_fail(p, rc, "report_begin");
  }
  return 0;
}

static int record_reset(dp_parser_t *p) {
  dp_buf_reset(&p->rbuf);
  memset(p->roff, 0, sizeof p->roff);
  p->rseen = 0;
  p->rused = 0;
  p->n_dk = p->n_sp = p->n_rs = 0;
  return dp_buf_putc(&p->rbuf, '\0'); /* offset 0 is the empty string */
}

static __attribute__((noinline)) int record_end(dp_parser_t *p) {
  dp_record_t *rec = &p->rec;
  const char *base = p->rbuf.data;
  uint64_t idx = p->rep.n_records + 1;
  char q[96];

  const char *ip = base + p->roff[F_SOURCE_IP];
  if (!(p->rseen & SEEN_IP) || !*ip) return field_fail(p, DP_EREPORT, F_SOURCE_IP, "is missing", NULL);
  if (canon_ip(ip, rec->source_ip, sizeof rec->source_ip, &rec->ip_family))
    return field_fail(p, DP_EREPORT, F_SOURCE_IP, "is not an IP address", ip);
  const char *cnt = base + p->roff[F_COUNT];
  if (!(p->rseen & SEEN_COUNT)) return field_fail(p, DP_EREPORT, F_COUNT, "is missing", NULL);
  const char *why = parse_count(cnt, &rec->count);
  if (why) return field_fail(p, DP_EREPORT, F_COUNT, why, *cnt ? cnt : NULL);
  if (rec->count > DP_MAX_REPORT_MESSAGES - p->rep.messages)
    return fail(p, DP_EREPORT,
                "record %" PRIu64 ": the sum of <count> exceeds %" PRIu64
                ", more than any real report's (count \"%s\")",
                idx, DP_MAX_REPORT_MESSAGES, quote_value(cnt, q, sizeof q));

  rec->index = idx;
  rec->text = base;
  rec->text_len = p->rbuf.len;
  rec->text_used = p->rused;
  rec->disposition = base + p->roff[F_DISPOSITION];
  rec->pe_dkim = base + p->roff[F_PE_DKIM];
  rec->pe_spf = base + p->roff[F_PE_SPF];
  rec->header_from = base + p->roff[F_HEADER_FROM];
  rec->envelope_from = base + p->roff[F_ENV_FROM];
  rec->envelope_to = base + p->roff[F_ENV_TO];

  if (grow(&p->dk_out, &p->a_dk_out, p->n_dk, sizeof *p->dk_out) ||
      grow(&p->sp_out, &p->a_sp_out, p->n_sp, sizeof *p->sp_out) ||
      grow(&p->rs_out, &p->a_rs_out, p->n_rs, sizeof *p->rs_out))
    return fail(p, DP_ENOMEM, "out of memory");
  for (size_t i = 0; i < p->n_dk; i++) {
    p->dk_out[i].domain = base + p->dk[i].domain;
    p->dk_out[i].selector = base + p->dk[i].selector;
    p->dk_out[i].result = base + p->dk[i].result;
    p->dk_out[i].human_result = base + p->dk[i].human;
  }
  for (size_t i = 0; i < p->n_sp; i++) {
    p->sp_out[i].domain = base + p->sp[i].domain;
    p->sp_out[i].scope = base + p->sp[i].scope;
    p->sp_out[i].result = base + p->sp[i].result;
    p->sp_out[i].human_result = base + p->sp[i].human;
  }
  for (size_t i = 0; i < p->n_rs; i++) {
    p->rs_out[i].type = base + p->rs[i].type;
    p->rs_out[i].comment = base + p->rs[i].comment;
  }
  rec->dkim = p->dk_out;
  rec->n_dkim = p->n_dk;
  rec->spf = p->sp_out;
  rec->n_spf = p->n_sp;
  rec->reasons = p->rs_out;
  rec->n_reasons = p->n_rs;

  int rc = report_begin(p, true);
  if (rc) return rc;
  dp_align_record(rec, p->rep.domain, p->sender, sizeof p->sender);
  p->rep.n_records = idx;
  p->rep.messages += rec->count;
  if (p->cb.record) {
    rc = p->cb.record(p->ud, &p->rep, rec);
    if (rc) return cb_fail(p, rc, "record");
  }
  return 0;
}

/* Whether s[i] ('<') opens a <feedback> element, any prefix, any case (as
 * the parser matches names), judged on the n bytes there are. */
static bool feedback_tag_at(const unsigned char *s, size_t n, size_t i) {
  size_t j = i + 1, k = j;
  while (k < n && (((s[k] | 0x20) >= 'a' && (s[k] | 0x20) <= 'z') || (s[k] >= '0' && s[k] <= '9') ||
                   s[k] == '_' || s[k] == '-' || s[k] == '.'))
    k++;
  if (k > j && k < n && s[k] == ':') j = k + 1;
  if (n - j < 9) return false;
  for (size_t m = 0; m < 8; m++)
    if ((s[j + m] | 0x20) != (unsigned char)"feedback"[m]) return false;
  unsigned char c = s[j + 8];
  return c == '>' || c == '/' || is_ws(c);
}

/* Bytes after the report's end, in document order, looked at as ASCII: a
 * second report there is not read (the document is one report), but it
 * must not vanish without a word (dp_parser_more_reports). A tag cut
 * between two calls is found through the kept tail. */
static void trailing_scan(dp_parser_t *p, const unsigned char *s, size_t n) {
  if (p->more_reports || n == 0) return;
  unsigned char w[2 * TAIL_MAX];
  size_t t = p->tail_len, m = n < TAIL_MAX ? n : TAIL_MAX;
  memcpy(w, p->tail, t);
  memcpy(w + t, s, m);
  for (size_t i = 0; i < t && !p->more_reports; i++)
    if (w[i] == '<' && feedback_tag_at(w, t + m, i)) p->more_reports = true;
  for (const unsigned char *q = s; !p->more_reports && (q = memchr(q, '<', n - (size_t)(q - s)));
       q++)
    if (feedback_tag_at(s, n, (size_t)(q - s))) p->more_reports = true;
  if (n >= TAIL_MAX) {
    memcpy(p->tail, s + n - TAIL_MAX, TAIL_MAX);
    p->tail_len = TAIL_MAX;
  } else {
    size_t keep = t + n > TAIL_MAX ? TAIL_MAX - n : t;
    memmove(p->tail, p->tail + t - keep, keep);
    memcpy(p->tail + keep, s, n);
    p->tail_len = keep + n;
  }
}

static __attribute__((noinline)) int feedback_end(dp_parser_t *p) {
  int rc = report_begin(p, false);
  if (rc) return rc;
  p->done = true;
  if (p->cb.report_end) {
    rc = p->cb.report_end(p->ud, &p->rep);
    if (rc) {
      p->done = false;
      return cb_fail(p, rc, "report_end");
    }
  }
  /* The report is complete: whatever follows (an unclosed wrapper element,
   * trailing garbage) cannot change it, so parsing stops here; what libxml2
   * holds of the document past this end tag is looked at for another
   * report, as is everything fed later. */
  xmlParserInputPtr in = p->ctxt->input;
  if (in && in->cur && in->end > in->cur) trailing_scan(p, in->cur, (size_t)(in->end - in->cur));
  xmlStopParser(p->ctxt);
  return 0;
}

/* ASCII lower-case s[0..n) in place, 8 bytes at a time: values are mostly
 * lower-case already, and a word without 'A'..'Z' is left alone. room is
 * how many bytes from s on belong to the buffer (>= n): a last part shorter
 * than 8 bytes is still done as one word when the buffer has room for it,
 * with the bytes past n masked out of the change (they are written back as
 * they were). Most values ("pass", "none", "fail") are shorter than 8. */
static inline __attribute__((always_inline)) void ascii_lower(char *s, size_t n, size_t room) {
  const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
  size_t i = 0;
  for (; i < n; i += 8) {
    if (room - i < 8) break;
    uint64_t x;
    memcpy(&x, s + i, 8);
    uint64_t t = x & ~highs; /* low 7 bits: no carry between bytes below */
    uint64_t upper = ((t + ones * (0x80 - 'A')) & ~(t + ones * (0x80 - 'Z' - 1)) & ~x) & highs;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* carries only move up, so the bytes below n are exact; mask the rest */
    if (n - i < 8) upper &= (UINT64_C(1) << (8 * (n - i))) - 1;
#else
    if (n - i < 8) break;
#endif
    if (upper) {
      x += upper >> 2; /* +0x20 in each upper-case byte */
      memcpy(s + i, &x, 8);
    }
  }
  for (; i < n; i++)
    if (s[i] >= 'A' && s[i] <= 'Z') s[i] += 32;
}

/* Trim s[0..*n) of leaf field f and apply its flags, in place; room is as
 * for ascii_lower. Returns the value's start. */
static inline __attribute__((always_inline)) char *leaf_value(int f, char *s, size_t *np, size_t room,
                                                             bool lower) {
  size_t n = *np;
  while (n && is_ws((unsigned char)s[n - 1])) n--;
  while (n && is_ws((unsigned char)*s)) { s++; n--; room--; }
  unsigned fl = fld_info[f].flags;
  if (fl & FL_DOMAIN && n && s[n - 1] == '.') n--;
  if (lower && fl & FL_LOWER) ascii_lower(s, n, room);
  *np = n;
  return s;
}

/* Where report-level field f's text is kept; NULL for <pct> (kept as a
 * number) and <error> (a list). */
static const char **report_slot(dp_parser_t *p, int f) {
  dp_report_t *r = &p->rep;
  switch (f) {
  case F_VERSION: return &r->version;
  case F_ORG_NAME: return &r->org_name;
  case F_EMAIL: return &r->email;
  case F_EXTRA: return &r->extra_contact;
  case F_REPORT_ID: return &r->report_id;
  case F_BEGIN: return &p->begin_txt;
  case F_END: return &p->end_txt;
  case F_GENERATOR: return &r->generator;
  case F_POL_DOMAIN: return &r->domain;
  case F_ADKIM: return &r->adkim;
  case F_ASPF: return &r->aspf;
  case F_P: return &r->p;
  case F_SP: return &r->sp;
  case F_NP: return &r->np;
  case F_FO: return &r->fo;
  case F_TESTING: return &r->testing;
  case F_DISCOVERY: return &r->discovery_method;
  default: return NULL;
  }
}

/* <pct> is advisory: a malformed one is kept as absent (-1) rather than
 * refusing the whole report. */
static int pct_value(const char *v) {
  uint64_t pct;
  return (!parse_count(v, &pct) && pct <= 100) ? (int)pct : -1;
}

/* Where report-level field f sits, for messages. */
static const char *report_field_where(int f) {
  return f == F_BEGIN || f == F_END ? "report_metadata/date_range/"
         : f < F_POL_DOMAIN         ? "report_metadata/"
                                    : "policy_published/";
}

/* Does report-level field f decide the report's identity or policy (so a
 * second, different value of it makes the report ambiguous)? */
static bool report_field_decides(int f) {
  return f != F_ERROR && f != F_VERSION && f != F_GENERATOR && f != F_EXTRA;
}

/* The value report-level field f holds now, quoted into was. */
static const char *report_value_now(dp_parser_t *p, int f, char *was, size_t waslen) {
  const char *const *slot = report_slot(p, f);
  if (slot) return quote_value(*slot, was, waslen);
  if (p->rep.pct < 0)
    snprintf(was, waslen, "absent");
  else
    snprintf(was, waslen, "%d", p->rep.pct);
  return was;
}

/* Does report-level field f hold v already? */
static bool report_value_is(dp_parser_t *p, int f, const char *v) {
  const char *const *slot = report_slot(p, f);
  return slot ? !strcmp(*slot, v) : pct_value(v) == p->rep.pct;
}

/* A report-level element after the first record (rare: out of line); v is
 * its trimmed text. The first record fixed the report's identity and
 * policy: its key, its records' alignment and their JSON lines were made
 * from them, so a later element may repeat such a value but not change it;
 * otherwise the report would be stored under one identity with the fields
 * of another. What nothing depends on (<error>, which only adds, the
 * version, the generator, extra contact information) is taken as before.
 * Returns 1 when the value is the same (nothing to store), 0 to store it. */
static __attribute__((noinline)) int report_leaf_late(dp_parser_t *p, int f, const char *v) {
  if (!report_field_decides(f)) return 0;
  if (report_value_is(p, f, v)) return 1;
  const char *where = report_field_where(f);
  char was[96], now[96];
  report_value_now(p, f, was, sizeof was);
  return fail(p, DP_EREPORT,
              "%s%s after the first record changes it (\"%s\" -> \"%s\"): a report's metadata "
              "and policy come before its records",
              where, fld_info[f].name, was, quote_value(v, now, sizeof now));
}

/* Store the finished text of report-level leaf field f (in p->text) in the
 * arena and the report. */
static __attribute__((noinline)) int report_leaf_end(dp_parser_t *p, int f) {
  size_t n = p->text.len;
  char *s = p->text.data ? leaf_value(f, p->text.data, &n, p->text.alloc, true) : (char *)"";
  if (p->text.data) s[n] = '\0'; /* trimmed in place: within the text */
  dp_report_t *r = &p->rep;
  if (p->begun) {
    int late = report_leaf_late(p, f, s);
    if (late) return late > 0 ? 0 : late;
  } else if (report_field_decides(f) && (p->mseen >> f & 1u)) {
    /* a second <policy_published>, <date_range>, <report_id> ...: the same
     * value again is harmless, and an empty one on either side fills in or
     * adds nothing; two values make the report ambiguous (taking the last
     * let a report slip to another policy domain) */
    const char **slot = report_slot(p, f);
    bool had = slot ? **slot != '\0' : p->rep.pct >= 0;
    if (!*s && had) return 0;
    char was[96], now[96];
    if (had && !report_value_is(p, f, s))
      return fail(p, DP_EREPORT, "%s%s appears twice with different values (\"%s\", then \"%s\")",
                  report_field_where(f), fld_info[f].name, report_value_now(p, f, was, sizeof was),
                  quote_value(s, now, sizeof now));
  }
  p->mseen |= 1u << f;
  const char *v;
  int rc = arena_dup(p, s, n, &v);
  if (rc == DP_ELIMIT) return fail(p, rc, "report metadata larger than %zu bytes", p->arena_cap);
  if (rc) return fail(p, rc, "out of memory");
  const char **slot = report_slot(p, f);
  if (slot) {
    *slot = v;
    if (f == F_BEGIN) p->have_begin = true;
    if (f == F_END) p->have_end = true;
  } else if (f == F_PCT) {
    r->pct = pct_value(v);
  } else if (f == F_ERROR) {
    if (r->n_errors >= MAX_REPORT_ERRORS)
      return fail(p, DP_ELIMIT, "more than %d <error> elements", MAX_REPORT_ERRORS);
    if (grow(&p->errors, &p->a_errors, r->n_errors + 1, sizeof *p->errors))
      return fail(p, DP_ENOMEM, "out of memory");
    p->errors[r->n_errors++] = v;
    r->errors = p->errors;
  }
  return 0;
}

/* Where record-level field f's offset goes: the record's own fields, or the
 * last open <reason>, auth_results <dkim> or <spf>. */
static inline __attribute__((always_inline)) size_t *field_slot(dp_parser_t *p, int f) {
  switch (f) {
  case F_REASON_TYPE: return &p->rs[p->n_rs - 1].type;
  case F_REASON_COMMENT: return &p->rs[p->n_rs - 1].comment;
  case F_DKIM_DOMAIN: return &p->dk[p->n_dk - 1].domain;
  case F_DKIM_SELECTOR: return &p->dk[p->n_dk - 1].selector;
  case F_DKIM_RESULT: return &p->dk[p->n_dk - 1].result;
  case F_DKIM_HUMAN: return &p->dk[p->n_dk - 1].human;
  case F_SPF_DOMAIN: return &p->sp[p->n_sp - 1].domain;
  case F_SPF_SCOPE: return &p->sp[p->n_sp - 1].scope;
  case F_SPF_RESULT: return &p->sp[p->n_sp - 1].result;
  case F_SPF_HUMAN: return &p->sp[p->n_sp - 1].human;
  default: return &p->roff[f];
  }
}

/* The record buffer keeps room for one more byte after each leaf: the next
 * leaf's NUL is written at its start offset even when it gets no text (an
 * empty element), which the leaf's own text would otherwise have reserved. */
static __attribute__((noinline)) int rbuf_room(dp_parser_t *p) {
  return dp_buf_reserve(&p->rbuf, 1) ? fail(p, DP_ENOMEM, "out of memory") : 0;
}

/* record_leaf_end's rare cases, out of line: the record's limit, leading
 * blanks (the value moves to where the leaf's text began), a repeated
 * element (it replaces the first one's string, which no longer counts). */
static __attribute__((noinline)) int record_leaf_rare(dp_parser_t *p, int f, const char *s, size_t n) {
  /* the trimmed value and its NUL must end within the record's limit; the
   * bytes are already in place (on_chars reserved them) */
  size_t off = p->leaf_off;
  if (n + 1 > p->rcap || off > p->rcap - (n + 1))
    return fail(p, DP_ELIMIT, "record %" PRIu64 ": larger than %zu bytes", p->rep.n_records + 1, p->rcap);
  if (s != p->rbuf.data + off) memmove(p->rbuf.data + off, s, n);
  p->rbuf.data[off + n] = '\0';
  p->rbuf.len = off + n + 1;
  /* a repeated element: the same value again is harmless; another one (two
   * <row>s, two <count>s, a second <header_from>) makes the record
   * ambiguous, and taking the last lost the first one's messages */
  size_t prev = *field_slot(p, f);
  if (prev && p->rbuf.data[prev] && !n) /* an empty repeat adds nothing */
    return p->rbuf.len < p->rbuf.alloc ? 0 : rbuf_room(p);
  if (prev && p->rbuf.data[prev] && strcmp(p->rbuf.data + prev, p->rbuf.data + off)) {
    char was[96], now[96];
    return fail(
        p, DP_EREPORT,
        "record %" PRIu64 ": <%s> appears twice with different values (\"%s\", then \"%s\")",
        p->rep.n_records + 1, fld_info[f].name, quote_value(p->rbuf.data + prev, was, sizeof was),
        quote_value(p->rbuf.data + off, now, sizeof now));
  }
  if (f == F_SOURCE_IP || f == F_COUNT) { /* parsed, not handed out as stored */
    p->rseen |= f == F_SOURCE_IP ? SEEN_IP : SEEN_COUNT;
    p->roff[f] = off;
  } else {
    size_t *slot = field_slot(p, f);
    if (*slot) p->rused -= strlen(p->rbuf.data + *slot);
    *slot = off;
    p->rused += n;
  }
  return p->rbuf.len < p->rbuf.alloc ? 0 : rbuf_room(p);
}

/* Store the finished text of record-level leaf field f: it was appended to
 * the record buffer as it came (on_chars), and is trimmed there, in place.
 * Its rare cases are out of line, so that the common path saves no registers. */
static __attribute__((noinline)) int record_leaf_end(dp_parser_t *p, int f) {
  size_t off = p->leaf_off, n = p->rbuf.len - off;
  char *base = p->rbuf.data; /* exists: record_reset stored "" */
  /* lower-cased already, as it came (on_chars) */
  char *s = leaf_value(f, base + off, &n, p->rbuf.alloc - off, false);
  if (s != base + off || n + 1 > p->rcap || off > p->rcap - (n + 1)) return record_leaf_rare(p, f, s, n);
  base[off + n] = '\0';
  p->rbuf.len = off + n + 1;
  size_t *slot = field_slot(p, f);
  if (*slot) return record_leaf_rare(p, f, s, n);
  *slot = off;
  /* source_ip and count are parsed, not handed out as stored: not in text_used */
  if ((unsigned)(f - F_SOURCE_IP) > F_COUNT - F_SOURCE_IP) p->rused += n;
  else p->rseen |= f == F_SOURCE_IP ? SEEN_IP : SEEN_COUNT;
  return p->rbuf.len < p->rbuf.alloc ? 0 : rbuf_room(p);
}

/* ======================================================================== */
/* SAX2 handlers                                                            */

/* name_token's cache miss: match the name case-insensitively against the
 * vocabulary and remember the answer. Out of line, so that the callbacks'
 * common path saves no registers. */
static __attribute__((noinline)) int name_token_slow(dp_parser_t *p, const xmlChar *name, size_t h) {
  char low[24];
  size_t i = 0;
  int tok = T_UNKNOWN;
  for (; name[i] && i < sizeof low - 1; i++) {
    unsigned char c = name[i];
    low[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  low[i] = '\0';
  if (!name[i]) {
    for (int t = 1; t < T__N; t++)
      if (strcmp(low, tok_names[t]) == 0) { tok = t; break; }
    if (tok == T_UNKNOWN && strcmp(low, "identities") == 0) tok = T_IDENTIFIERS; /* old drafts */
  }
  p->cache[h].name = name;
  p->cache[h].tok = tok;
  return tok;
}

static inline size_t name_slot(const xmlChar *name) {
  return (size_t)(((uint64_t)(uintptr_t)name * UINT64_C(0x9E3779B97F4A7C15)) >> (64 - NAME_CACHE_BITS));
}

static void on_chars(void *ud, const xmlChar *ch, int len);

/* Text matters only inside leaf fields. Elsewhere the text callbacks are
 * unset, so libxml2 neither checks the whitespace between elements for
 * "ignorable" blanks nor calls us with it (as for the bare SAX ceiling).
 * They are set exactly while the innermost element is a leaf: entering a
 * leaf (whose parent is never one) sets them, entering a leaf's child
 * (S_SKIP) unsets them, and leaving either undoes it. ctxt->sax is the
 * parser's own copy. */
static inline void text_set(dp_parser_t *p, bool on) {
  xmlSAXHandlerPtr sax = p->ctxt->sax;
  sax->characters = sax->cdataBlock = sax->ignorableWhitespace = on ? on_chars : NULL;
}

/* on_start for what the table does not decide alone: children of S_OUT
 * (st is S_OUTER) and containers with work on entry (START_WORK). */
static void start_slow(dp_parser_t *p, int st, int tok, const xmlChar *localname, const xmlChar *uri) {
  if (st == S_OUTER) {
    uint32_t top = p->wrapped ? 2 : 1;
    if (p->depth < top) {
      st = S_OUT; /* the injected wrapper */
    } else if (tok == T_FEEDBACK && !p->seen_feedback) {
      st = S_FEEDBACK;
      p->seen_feedback = true;
      p->rep.schema = uri && strcasecmp((const char *)uri, RFC9990_NS) == 0 ? 2 : 1; /* URNs: case-insensitive */
    } else {
      /* Not (yet) the report: keep looking inside, since real files wrap
       * <feedback> in junk such as an unclosed <xs:schema>. */
      st = S_OUT;
      if (p->depth == top && !p->root_name[0])
        snprintf(p->root_name, sizeof p->root_name, "%s", (const char *)localname);
    }
    p->stack[p->depth] = (unsigned char)st;
    return;
  }
  switch (st) {
  case S_RECORD:
    if (p->lim.max_records && p->rep.n_records >= p->lim.max_records) {
      fail(p, DP_ELIMIT, "more than %" PRIu64 " records", p->lim.max_records);
      return;
    }
    if (record_reset(p)) goto oom;
    break;
  case S_ADKIM:
    if (p->n_dk >= MAX_AUTH_PER_RECORD) goto too_many;
    if (grow(&p->dk, &p->a_dk, p->n_dk + 1, sizeof *p->dk)) goto oom;
    memset(&p->dk[p->n_dk++], 0, sizeof *p->dk);
    break;
  case S_ASPF:
    if (p->n_sp >= MAX_AUTH_PER_RECORD) goto too_many;
    if (grow(&p->sp, &p->a_sp, p->n_sp + 1, sizeof *p->sp)) goto oom;
    memset(&p->sp[p->n_sp++], 0, sizeof *p->sp);
    break;
  case S_REASON:
    if (p->n_rs >= MAX_AUTH_PER_RECORD) goto too_many;
    if (grow(&p->rs, &p->a_rs, p->n_rs + 1, sizeof *p->rs)) goto oom;
    memset(&p->rs[p->n_rs++], 0, sizeof *p->rs);
    break;
  default: break;
  }
  return;
too_many:
  fail(p, DP_ELIMIT, "record %" PRIu64 ": more than %d <%s> elements", p->rep.n_records + 1,
       MAX_AUTH_PER_RECORD, (const char *)localname);
  return;
oom:
  fail(p, DP_ENOMEM, "out of memory");
}

/* on_start once the element's token is known. */
static inline __attribute__((always_inline)) void start_tok(dp_parser_t *p, const xmlChar *localname,
                                                            const xmlChar *uri, int tok) {
  uint32_t d = p->depth;
  if (d >= p->max_depth) {
    fail(p, DP_ELIMIT, "XML elements nested deeper than %u levels", p->lim.max_xml_depth);
    return;
  }
  int parent = p->stack[d];
  int st = g_trans[parent][tok];
  p->depth = ++d;
  p->names[d] = localname;
  p->stack[d] = (unsigned char)st;
  if (st >= S_LEAF) {
    text_set(p, true);
    if (st >= S_LEAF + F_SOURCE_IP) {
      p->leaf_off = p->rbuf.len; /* its text goes straight to the record buffer */
    } else { /* dp_buf_reset inline */
      p->text.len = 0;
      if (p->text.data) p->text.data[0] = '\0';
    }
  } else if (parent >= S_LEAF) {
    text_set(p, false); /* st is S_SKIP: a leaf's child */
  } else if (st < S_SKIP && (START_WORK >> st & 1u)) {
    start_slow(p, st, tok, localname, uri);
  }
}

/* on_start for a name not in the cache yet: look it up, then go on as for
 * a cached one (a tail call, so on_start's own path saves no registers). */
static __attribute__((noinline)) void start_miss(dp_parser_t *p, const xmlChar *localname,
                                                 const xmlChar *uri, size_t h) {
  start_tok(p, localname, uri, name_token_slow(p, localname, h));
}

static void on_start(void *ud, const xmlChar *localname, const xmlChar *prefix,
                     const xmlChar *uri, int nb_ns, const xmlChar **ns, int nb_attr,
                     int nb_def, const xmlChar **attrs) {
  (void)prefix; (void)nb_ns; (void)ns; (void)nb_attr; (void)nb_def; (void)attrs;
  dp_parser_t *p = ud;
  if (p->rc || p->done) return;
  /* libxml2 interns names in the parser's dictionary, so a pointer seen once
   * always names the same string: its token is cached */
  size_t h = name_slot(localname);
  if (p->cache[h].name != localname) {
    start_miss(p, localname, uri, h);
    return;
  }
  start_tok(p, localname, uri, p->cache[h].tok);
}

static void on_end(void *ud, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri) {
  (void)localname; (void)prefix; (void)uri;
  dp_parser_t *p = ud;
  uint32_t d = p->depth;
  if (p->rc || p->done || d == 0) return;
  int st = p->stack[d];
  p->depth = d - 1;
  if (st >= S_LEAF) {
    text_set(p, false); /* back in a container */
    if (st >= S_LEAF + F_SOURCE_IP) record_leaf_end(p, st - S_LEAF);
    else report_leaf_end(p, st - S_LEAF);
  } else if (st == S_SKIP) {
    if (p->stack[d - 1] >= S_LEAF) text_set(p, true); /* back in the leaf */
  } else if (st == S_RECORD) {
    record_end(p);
  } else if (st == S_FEEDBACK) {
    feedback_end(p);
  }
}

/* One word of ascii_lower: +0x20 in each byte 'A'..'Z'. */
static inline uint64_t lower_word(uint64_t x) {
  const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
  uint64_t t = x & ~highs;
  return x + ((((t + ones * (0x80 - 'A')) & ~(t + ones * (0x80 - 'Z' - 1)) & ~x) & highs) >> 2);
}

/* Copy n <= 16 bytes inline, as two overlapping words (never past either
 * end): values are short, and memcpy's call cost more than the copy. With
 * lower, ASCII upper case is lower-cased on the way (bytes copied twice
 * are lower-cased twice, which changes nothing). */
static inline __attribute__((always_inline)) void copy_short(char *d, const xmlChar *s, size_t n, bool lower) {
  if (n >= 8) {
    uint64_t x, y;
    memcpy(&x, s, 8);
    memcpy(&y, s + n - 8, 8);
    if (lower) {
      x = lower_word(x);
      y = lower_word(y);
    }
    memcpy(d, &x, 8);
    memcpy(d + n - 8, &y, 8);
  } else if (n >= 4) {
    uint32_t x, y;
    memcpy(&x, s, 4);
    memcpy(&y, s + n - 4, 4);
    if (lower) {
      x = (uint32_t)lower_word(x);
      y = (uint32_t)lower_word(y);
    }
    memcpy(d, &x, 4);
    memcpy(d + n - 4, &y, 4);
  } else {
    for (size_t i = 0; i < n; i++) {
      unsigned char c = s[i];
      d[i] = (char)(lower && c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
  }
}

static __attribute__((noinline)) void chars_too_long(dp_parser_t *p, int f) {
  char what[64];
  snprintf(what, sizeof what, "is longer than %u bytes", p->lim.max_field_len);
  field_fail(p, DP_ELIMIT, f, what, NULL);
}

/* on_chars for more than 16 bytes or when the record buffer must grow. */
static __attribute__((noinline)) void record_chars_long(dp_parser_t *p, const xmlChar *ch, size_t n) {
  dp_buf_t *r = &p->rbuf;
  if (r->len + n >= r->alloc && dp_buf_reserve(r, n)) {
    fail(p, DP_ENOMEM, "out of memory"); /* never DP_ELIMIT: its cap has room */
    return;
  }
  memcpy(r->data + r->len, ch, n);
  if (fld_info[p->stack[p->depth] - S_LEAF].flags & FL_LOWER)
    ascii_lower(r->data + r->len, n, r->alloc - r->len);
  r->len += n;
  r->data[r->len] = '\0';
}

/* on_chars for a report-level leaf: into p->text. */
static __attribute__((noinline)) void report_chars(dp_parser_t *p, int f, const xmlChar *ch, size_t n) {
  dp_buf_t *t = &p->text;
  int rc = dp_buf_append(t, ch, n);
  if (rc == DP_ELIMIT) chars_too_long(p, f);
  else if (rc) fail(p, rc, "out of memory");
}

static void on_chars(void *ud, const xmlChar *ch, int len) {
  dp_parser_t *p = ud;
  int st = p->stack[p->depth];
  if (st < S_LEAF || p->rc) return;
  size_t n = (size_t)len;
  if (st < S_LEAF + F_SOURCE_IP) {
    report_chars(p, st - S_LEAF, ch, n);
    return;
  }
  /* record-level: straight into the record buffer, untrimmed; the field
   * limit is on the untrimmed text as for p->text (whose cap it is), the
   * record's own limit is checked on the trimmed value at leaf end */
  dp_buf_t *r = &p->rbuf;
  size_t have = r->len - p->leaf_off;
  if (n > p->text.cap - have) {
    chars_too_long(p, st - S_LEAF);
    return;
  }
  if (n > 16 || r->len + n >= r->alloc) {
    record_chars_long(p, ch, n);
    return;
  }
  copy_short(r->data + r->len, ch, n, g_lower[st]);
  r->len += n;
  r->data[r->len] = '\0';
}

static void on_entity_decl(void *ud, const xmlChar *name, int type, const xmlChar *pub,
                           const xmlChar *sys, xmlChar *content) {
  (void)type; (void)pub; (void)sys; (void)content;
  dp_parser_t *p = ud;
  char q[64];
  fail(p, DP_EXML, "refused: the document declares the entity \"%s\" (entities are never expanded "
       "or loaded: entity expansion and external entity attacks)",
       quote_value((const char *)name, q, sizeof q));
}

static void on_unparsed_entity_decl(void *ud, const xmlChar *name, const xmlChar *pub,
                                    const xmlChar *sys, const xmlChar *notation) {
  (void)notation;
  on_entity_decl(ud, name, 0, pub, sys, NULL);
}

static xmlEntityPtr on_get_entity(void *ud, const xmlChar *name) {
  (void)ud; (void)name;
  return NULL; /* only the five predefined entities exist */
}

static xmlParserInputPtr on_resolve_entity(void *ud, const xmlChar *pub, const xmlChar *sys) {
  (void)ud; (void)pub; (void)sys;
  return NULL; /* nothing external is ever read */
}

static void on_external_subset(void *ud, const xmlChar *name, const xmlChar *ext, const xmlChar *sys) {
  (void)ud; (void)name; (void)ext; (void)sys;
}

static void on_internal_subset(void *ud, const xmlChar *name, const xmlChar *ext, const xmlChar *sys) {
  (void)ud; (void)name; (void)ext; (void)sys;
}

#if LIBXML_VERSION >= 21200
static void on_xml_error(void *ud, const xmlError *e) {
#else
static void on_xml_error(void *ud, xmlErrorPtr e) {
#endif
  dp_parser_t *p = ud;
  /* Namespace and validity problems are recoverable (level ERROR); only
   * well-formedness errors end a report. */
  if (!e || e->level != XML_ERR_FATAL || p->rc || p->done) return;
  char msg[256];
  snprintf(msg, sizeof msg, "%s", e->message ? e->message : "unknown error");
  msg[strcspn(msg, "\n")] = '\0'; /* what follows is a raw snippet of the input */
  size_t n = strlen(msg);
  while (n && is_ws((unsigned char)msg[n - 1])) msg[--n] = '\0';
  /* The wrapper is ours; do not blame the sender's document for its name. */
  if (strstr(msg, "dmarcpipe-document"))
    fail(p, DP_EXML, "malformed XML at line %d: elements are not properly nested or closed", e->line);
  else
    fail(p, DP_EXML, "malformed XML at line %d: %s", e->line, msg);
}

/* libxml2's generic error channel: nothing reaches stderr; the text is
 * kept (bounded) for the reason of a failure libxml2 gives no parser error
 * for, as for an input that is not in its declared encoding. */
static void capture_generic(void *ctx, const char *msg, ...) {
  dp_parser_t *p = ctx;
  size_t room = sizeof p->generr - p->generr_len;
  if (room <= 1) return;
  va_list ap;
  va_start(ap, msg);
  int k = vsnprintf(p->generr + p->generr_len, room, msg, ap);
  va_end(ap);
  if (k > 0) p->generr_len += (size_t)k < room ? (size_t)k : room - 1;
}

/* The reason for a failure without a parser error: the first line libxml2
 * wrote to its generic channel (for an encoding error "input conversion
 * failed due to input error, bytes 0x81 0x2E ..."), or NULL. Writes into
 * out. */
static const char *generic_reason(const dp_parser_t *p, char *out, size_t outlen) {
  const char *e = p->generr + strspn(p->generr, "\r\n ");
  size_t n = strcspn(e, "\r\n");
  if (!n) return NULL;
  snprintf(out, outlen, "%.*s", (int)n, e);
  return out;
}

static xmlParserInputPtr no_external_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt) {
  (void)url; (void)id; (void)ctxt;
  return NULL;
}

static pthread_once_t g_xml_once = PTHREAD_ONCE_INIT;
static void xml_global_init(void) {
  for (int f = 0; f < F__N; f++) g_lower[S_LEAF + f] = fld_info[f].flags & FL_LOWER;
  for (int st = 0; st < S__N; st++)
    for (int t = 0; t < T__N; t++)
      g_trans[st][t] = st == S_OUT ? S_OUTER : (unsigned char)child_state(st, t);
  xmlInitParser();
  /* Defence in depth: even if some code path asked, no URL or file is ever
   * loaded by libxml2 in this process (dmarcpipe never needs one). */
  xmlSetExternalEntityLoader(no_external_loader);
}

/* ======================================================================== */
/* Input pipeline: sniff -> prolog scanner -> UTF-8 repair -> libxml2        */

/* libxml2 (2.9) moves the unparsed part of its input buffer to the front
 * when a parse step starts past its first 4 kB, and a chunk is appended
 * before that step: the whole chunk was copied once more. An empty step
 * right after a chunk has been parsed moves only the unparsed tail. */
#define SHRINK_AFTER 4096

static int push(dp_parser_t *p, const void *buf, size_t n, int terminate) {
  const char *b = buf;
  if (p->done) {
    /* the rest of a chunk whose first part ended the report */
    if (p->mode != M_RAW) trailing_scan(p, buf, n);
    return 0;
  }
  do {
    int c = n > (1u << 30) ? (1 << 30) : (int)n;
    int last = (size_t)c == n;
    xmlGenericErrorFunc old = xmlGenericError;
    void *oldctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(p, capture_generic);
    int r = xmlParseChunk(p->ctxt, b, c, last ? terminate : 0);
    if (!r && c >= SHRINK_AFTER && !(last && terminate) && !p->rc && !p->done)
      r = xmlParseChunk(p->ctxt, NULL, 0, 0);
    xmlSetGenericErrorFunc(oldctx, old);
    if (c) p->emitted = true;
    if (p->rc) return p->rc;
    if (p->done) return 0;
    if (r != 0 && p->ctxt->disableSAX) {
      char why[200];
      if (generic_reason(p, why, sizeof why))
        return fail(p, DP_EXML, "malformed XML: %s (is the document in its declared encoding?)",
                    why);
      return fail(p, DP_EXML, "malformed XML (libxml2 error %d)", r);
    }
    b += c;
    n -= (size_t)c;
  } while (n > 0);
  return 0;
}

static const char fffd[] = "\xEF\xBF\xBD";

/* Length of a well-formed UTF-8 sequence at s (> 0), 0 if the available bytes
 * are a valid but incomplete prefix, or -k: replace the first k bytes.
 * U+FFFE and U+FFFF are valid UTF-8 but not XML characters. */
static int utf8_seq(const unsigned char *s, size_t avail) {
  unsigned c = s[0], lo = 0x80, hi = 0xBF;
  int len;
  if (c < 0xC2) return -1;
  if (c < 0xE0) len = 2;
  else if (c < 0xF0) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    else if (c == 0xED) hi = 0x9F;
  } else if (c < 0xF5) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < len; k++) {
    if ((size_t)k >= avail) return 0;
    if (s[k] < lo || s[k] > hi) return -k;
    lo = 0x80;
    hi = 0xBF;
  }
  if (c == 0xEF && s[1] == 0xBF && s[2] >= 0xBE) return -3;
  return len;
}

/* Length of the leading run of bytes that need no check: printable ASCII,
 * DEL, TAB, LF and CR. Reports are almost all such bytes, with a line break
 * every ~25 bytes, so the run is found 16 bytes at a time (SSE2 is in every
 * x86-64) and the repair pass below only looks closer at what stops it. */
static size_t clean_run(const unsigned char *s, size_t n) {
  size_t i = 0;
#if defined(__SSE2__)
  const __m128i sp = _mm_set1_epi8(0x20), lf = _mm_set1_epi8('\n'), tab = _mm_set1_epi8('\t'),
                cr = _mm_set1_epi8('\r');
  for (; i + 16 <= n; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
    /* signed compare: bytes >= 0x80 are negative, so they are caught as well;
     * LF (in nearly every step) is let through at once, TAB and CR only
     * when something else stopped the step */
    __m128i odd = _mm_andnot_si128(_mm_cmpeq_epi8(v, lf), _mm_cmplt_epi8(v, sp));
    if (!_mm_movemask_epi8(odd)) continue;
    __m128i ok = _mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, cr));
    unsigned m = (unsigned)_mm_movemask_epi8(_mm_andnot_si128(ok, odd));
    if (m) return i + (size_t)__builtin_ctz(m);
  }
#else
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    memcpy(&x, s + i, 8);
    /* all 8 bytes in 0x20..0x7f */
    if ((x | (x - UINT64_C(0x2020202020202020))) & UINT64_C(0x8080808080808080)) break;
  }
#endif
  for (; i < n; i++) {
    unsigned char c = s[i];
    if (c >= 0x80 || (c < 0x20 && c != '\t' && c != '\n' && c != '\r')) break;
  }
  return i;
}

/* Pass bytes to libxml2, replacing invalid UTF-8 and characters XML forbids
 * (C0 controls other than TAB, LF, CR) with U+FFFD, so a report with one bad
 * byte is salvaged instead of refused. Streaming: at most 3 bytes carried. */
static int repair(dp_parser_t *p, const unsigned char *s, size_t n) {
  if (p->mode != M_UTF8) return n ? push(p, s, n, 0) : 0;
  int rc;
  if (p->carry_len && n) {
    unsigned char tmp[8];
    size_t take = n < 4 - p->carry_len ? n : 4 - p->carry_len;
    memcpy(tmp, p->carry, p->carry_len);
    memcpy(tmp + p->carry_len, s, take);
    int r = utf8_seq(tmp, p->carry_len + take);
    if (r == 0) { /* still incomplete: all of s joins the carry */
      memcpy(p->carry + p->carry_len, s, take);
      p->carry_len += take;
      return 0;
    }
    size_t used = (size_t)(r > 0 ? r : -r) - p->carry_len;
    rc = r > 0 ? push(p, tmp, (size_t)r, 0) : push(p, fffd, 3, 0);
    p->carry_len = 0;
    if (rc) return rc;
    s += used;
    n -= used;
  }
  size_t i = 0, from = 0;
  while (i < n) {
    i += clean_run(s + i, n - i);
    if (i >= n) break;
    unsigned char c = s[i];
    if (c < 0x80) {
      if (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') {
        i++;
        continue;
      }
      if ((rc = push(p, s + from, i - from, 0)) || (rc = push(p, fffd, 3, 0))) return rc;
      from = ++i;
      continue;
    }
    int r = utf8_seq(s + i, n - i);
    if (r > 0) {
      i += (size_t)r;
      continue;
    }
    if (i > from && (rc = push(p, s + from, i - from, 0))) return rc;
    if (r == 0) {
      p->carry_len = n - i;
      memcpy(p->carry, s + i, p->carry_len);
      return 0;
    }
    if ((rc = push(p, fffd, 3, 0))) return rc;
    i += (size_t)-r;
    from = i;
  }
  return i > from ? push(p, s + from, i - from, 0) : 0;
}

static int inject_wrapper(dp_parser_t *p) {
  p->wrapped = true;
  p->prolog = PS_DONE;
  return repair(p, (const unsigned char *)WRAP_OPEN, sizeof WRAP_OPEN - 1);
}

/* Scan the prolog (XML declaration, comments, PIs, DOCTYPE) and insert an
 * element wrapping the rest of the document right before its first element
 * or text: then a junk element or text before <feedback>, or a second root
 * after it, is ordinary content instead of a fatal "extra content" error.
 * Leading whitespace before anything is dropped (libxml2 refuses an XML
 * declaration that does not start the document). */
static int scan(dp_parser_t *p, const unsigned char *s, size_t n) {
  if (p->mode == M_RAW || p->prolog == PS_DONE) return repair(p, s, n);
  size_t i = 0, from = 0;
  int rc;
  for (; i < n && p->prolog != PS_DONE; i++) {
    unsigned char c = s[i];
    switch (p->prolog) {
    case PS_MISC:
      if (c == '<') {
        if ((rc = repair(p, s + from, i - from))) return rc;
        from = i + 1; /* held back until we know what it opens */
        p->prolog = PS_LT;
      } else if (is_ws(c)) {
        if (!p->emitted && i == from) from = i + 1;
      } else {
        if ((rc = repair(p, s + from, i - from)) || (rc = inject_wrapper(p))) return rc;
        from = i; /* the loop ends here; the rest is passed below */
      }
      break;
    case PS_LT: /* here from == i: the held '<' is emitted first */
      if (c == '?' || c == '!') {
        if ((rc = repair(p, (const unsigned char *)"<", 1))) return rc;
        p->prolog = c == '?' ? PS_PI : PS_BANG;
      } else if ((rc = inject_wrapper(p)) || (rc = repair(p, (const unsigned char *)"<", 1))) {
        return rc;
      }
      break;
    case PS_BANG:
      p->prolog = c == '-' ? PS_BANG_DASH : PS_DECL;
      if (c != '-') {
        p->decl_depth = p->decl_match = 0;
        p->decl_quote = 0;
        p->decl_cmt = false;
        i--; /* let PS_DECL see it */
      }
      break;
    case PS_BANG_DASH: p->prolog = c == '-' ? PS_COMMENT : PS_DECL; break;
    case PS_PI: if (c == '?') p->prolog = PS_PI_Q; break;
    case PS_PI_Q: p->prolog = c == '>' ? PS_MISC : c == '?' ? PS_PI_Q : PS_PI; break;
    case PS_COMMENT: if (c == '-') p->prolog = PS_COMMENT_D1; break;
    case PS_COMMENT_D1: p->prolog = c == '-' ? PS_COMMENT_D2 : PS_COMMENT; break;
    case PS_COMMENT_D2: p->prolog = c == '>' ? PS_MISC : c == '-' ? PS_COMMENT_D2 : PS_COMMENT; break;
    case PS_DECL: /* DOCTYPE: skip quoted strings, comments and the [internal subset] */
      if (p->decl_cmt) {
        if (c == '>' && p->decl_match >= 2) p->decl_cmt = false;
        p->decl_match = c == '-' ? p->decl_match + 1 : 0;
      } else if (c == (unsigned char)"<!--"[p->decl_match] && !p->decl_quote) {
        if (++p->decl_match == 4) {
          p->decl_cmt = true;
          p->decl_match = 0;
        }
      } else if ((p->decl_match = c == '<'), p->decl_quote) {
        if (c == (unsigned char)p->decl_quote) p->decl_quote = 0;
      } else if (c == '"' || c == '\'') {
        p->decl_quote = (char)c;
      } else if (c == '[') {
        p->decl_depth++;
      } else if (c == ']') {
        if (p->decl_depth) p->decl_depth--;
      } else if (c == '>' && !p->decl_depth) {
        p->prolog = PS_MISC;
      }
      break;
    default: break;
    }
  }
  return n > from ? repair(p, s + from, n - from) : 0;
}

static bool prefix_nocase(const unsigned char *s, size_t n, const char *pre) {
  for (size_t i = 0; pre[i]; i++) {
    if (i >= n) return false;
    unsigned char c = s[i];
    if (c >= 'A' && c <= 'Z') c += 32;
    if (c != (unsigned char)pre[i]) return false;
  }
  return true;
}

/* Decide how bytes reach libxml2 from the head of the document: UTF-16/32 and
 * EBCDIC go untouched (libxml2 converts them); a declared ASCII-compatible
 * encoding (ISO-8859-1, windows-1252, ...) gets the prolog scanner only;
 * UTF-8 (declared or default) also gets the repair pass. Returns false when
 * more bytes are needed to decide and force is not set. */
static bool sniff(dp_parser_t *p, bool force, size_t *skip) {
  const unsigned char *h = p->head;
  size_t n = p->head_len;
  *skip = 0;
  if (n < 4 && !force) return false;
  if (n >= 2 && ((h[0] == 0xFE && h[1] == 0xFF) || (h[0] == 0xFF && h[1] == 0xFE))) goto raw;
  if (n >= 4 && ((!h[0] && !h[1] && h[2] == 0xFE && h[3] == 0xFF) || (!h[0] && h[1] == '<') ||
                 (h[0] == '<' && !h[1]) || (h[0] == 0x4C && h[1] == 0x6F && h[2] == 0xA7 && h[3] == 0x94)))
    goto raw;
  size_t k = 0;
  if (n >= 3 && h[0] == 0xEF && h[1] == 0xBB && h[2] == 0xBF) k = 3; /* libxml2 needs no UTF-8 BOM */
  while (k < n && is_ws(h[k])) k++;
  *skip = k;
  if (k == n && !force && n < HEAD_MAX) return false;
  /* fewer than 5 bytes that may still become "<?xml": wait */
  if (n - k < 5 && !force && memcmp(h + k, "<?xml", n - k) == 0) return false;
  if (n - k >= 5 && memcmp(h + k, "<?xml", 5) == 0) {
    const unsigned char *end = NULL;
    for (size_t i = k + 5; i + 1 < n; i++)
      if (h[i] == '?' && h[i + 1] == '>') { end = h + i; break; }
    if (!end && !force && n < HEAD_MAX) return false;
    if (!end) end = h + n;
    const unsigned char *e = h + k + 5;
    for (; e + 8 <= end; e++)
      if (memcmp(e, "encoding", 8) == 0) break;
    if (e + 8 <= end) {
      e += 8;
      while (e < end && is_ws(*e)) e++;
      if (e < end && *e == '=') e++;
      while (e < end && is_ws(*e)) e++;
      if (e < end && (*e == '"' || *e == '\'')) e++;
      size_t vl = (size_t)(end - e);
      if (prefix_nocase(e, vl, "utf-8") || prefix_nocase(e, vl, "utf8")) {
        p->mode = M_UTF8;
      } else if (prefix_nocase(e, vl, "utf-16") || prefix_nocase(e, vl, "utf16") ||
                 prefix_nocase(e, vl, "utf-32") || prefix_nocase(e, vl, "ucs") ||
                 prefix_nocase(e, vl, "ebcdic") || prefix_nocase(e, vl, "ibm") ||
                 prefix_nocase(e, vl, "cp0") || prefix_nocase(e, vl, "utf-7")) {
        p->mode = M_RAW;
        *skip = 0;
      } else {
        p->mode = M_BYTE;
      }
      return true;
    }
  }
  p->mode = M_UTF8;
  return true;
raw:
  p->mode = M_RAW;
  return true;
}

/* ======================================================================== */
/* Public API                                                               */

/* The per-document state, as a fresh parser has it. Buffers, the element
 * stack and the arena's first block are kept; strings handed out for the
 * previous document are dead from here on. */
static void doc_state_init(dp_parser_t *p) {
  static const char empty[] = "";
  p->rc = 0;
  p->err[0] = '\0';
  p->mode = M_SNIFF;
  p->prolog = PS_MISC;
  p->wrapped = p->emitted = false;
  p->head_len = p->carry_len = 0;
  p->decl_quote = 0;
  p->decl_cmt = false;
  p->decl_depth = p->decl_match = 0;
  p->depth = 0;
  p->stack[0] = S_OUT;
  p->seen_feedback = p->done = p->begun = p->more_reports = false;
  p->tail_len = 0;
  p->root_name[0] = '\0';
  dp_buf_reset(&p->text);
  memset(&p->rep, 0, sizeof p->rep);
  dp_report_t *r = &p->rep;
  r->schema = 1;
  r->version = r->org_name = r->email = r->extra_contact = r->report_id = empty;
  r->generator = r->domain = r->adkim = r->aspf = r->p = r->sp = r->np = empty;
  r->fo = r->testing = r->discovery_method = empty;
  r->pct = -1;
  p->arena_total = 0;
  p->begin_txt = p->end_txt = empty;
  p->have_begin = p->have_end = false;
  p->mseen = 0;
  p->generr_len = 0;
  p->generr[0] = '\0';
  dp_buf_reset(&p->rbuf);
  memset(p->roff, 0, sizeof p->roff);
  p->rseen = 0;
  p->rused = 0;
  p->n_dk = p->n_sp = p->n_rs = 0;
  memset(&p->rec, 0, sizeof p->rec);
  p->sender[0] = '\0';
}

/* A new libxml2 push context with dmarcpipe's handlers and options. */
static xmlParserCtxtPtr new_ctxt(dp_parser_t *p) {
  xmlSAXHandler sax;
  memset(&sax, 0, sizeof sax);
  sax.initialized = XML_SAX2_MAGIC;
  sax.startElementNs = on_start;
  sax.endElementNs = on_end;
  /* characters, cdataBlock, ignorableWhitespace: set by text_set() */
  sax.serror = on_xml_error;
  sax.entityDecl = on_entity_decl;
  sax.unparsedEntityDecl = on_unparsed_entity_decl;
  sax.getEntity = on_get_entity;
  sax.getParameterEntity = on_get_entity;
  sax.resolveEntity = on_resolve_entity;
  sax.externalSubset = on_external_subset;
  sax.internalSubset = on_internal_subset;
  return xmlCreatePushParserCtxt(&sax, p, NULL, 0, NULL);
}

/* The options every document is parsed with, on a new or a reset context. */
static void ctxt_options(xmlParserCtxtPtr c) {
  /* Never XML_PARSE_NOENT (substitution), DTDLOAD, DTDATTR, XINCLUDE or HUGE. */
  xmlCtxtUseOptions(c, XML_PARSE_NONET | XML_PARSE_NOXINCNODE);
  c->replaceEntities = 0;
  c->loadsubset = 0;
  c->validate = 0;
}

static void free_ctxt(dp_parser_t *p) {
  if (!p->ctxt) return;
  /* libxml2 keeps declared entities in a fake document even in SAX mode
   * ("expat compatibility"); the context does not own it. */
  if (p->ctxt->myDoc) xmlFreeDoc(p->ctxt->myDoc);
  xmlFreeParserCtxt(p->ctxt);
  p->ctxt = NULL;
}

dp_parser_t *dp_parser_create(const dp_limits_t *lim, const dp_parse_cb_t *cb, void *ud) {
  pthread_once(&g_xml_once, xml_global_init);
  dp_align_global_init();
  dp_parser_t *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  if (lim) p->lim = *lim;
  else dp_limits_default(&p->lim);
  dp_limits_t def;
  dp_limits_default(&def);
  if (!p->lim.max_xml_depth) p->lim.max_xml_depth = def.max_xml_depth;
  if (cb) p->cb = *cb;
  p->ud = ud;
  /* +1 for the injected wrapper element */
  p->max_depth = p->lim.max_xml_depth + 1;
  p->stack = calloc((size_t)p->max_depth + 1, 1);
  p->names = calloc((size_t)p->max_depth + 1, sizeof *p->names);
  size_t fl = p->lim.max_field_len ? p->lim.max_field_len : (size_t)1 << 30;
  dp_buf_init(&p->text, fl);
  /* A record holds a handful of fields; 64 maximal fields is far beyond any
   * real one and still bounded. The same for the report's metadata. */
  size_t big = fl > ((size_t)1 << 24) ? (size_t)1 << 30 : fl * 64;
  /* stored strings stay within rcap; the open leaf's untrimmed text (at
   * most fl bytes) may pass it until leaf_end trims and checks it */
  p->rcap = big + 1024;
  dp_buf_init(&p->rbuf, p->rcap + fl + 1);
  p->arena_cap = big + 4096;
  if (p->stack && p->names) {
    doc_state_init(p);
    p->ctxt = new_ctxt(p);
  }
  if (!p->ctxt) {
    dp_parser_destroy(p);
    return NULL;
  }
  ctxt_options(p->ctxt);
  return p;
}

/* What a reused parser may keep from one document to the next. Past these,
 * the memory goes back (a hostile document must not pin its peak). */
#define REUSE_KEEP_BUF ((size_t)64 * 1024)
#define REUSE_MAX_DICT ((size_t)256 * 1024) /* bytes of names interned by libxml2 */

static void shrink_buf(dp_buf_t *b) {
  if (b->alloc <= REUSE_KEEP_BUF) return;
  size_t cap = b->cap;
  dp_buf_free(b);
  dp_buf_init(b, cap);
}

int dp_parser_reset(dp_parser_t *p, const dp_parse_cb_t *cb, void *ud) {
  p->cb = cb ? *cb : (dp_parse_cb_t){0};
  p->ud = ud;
  /* arena: keep one standard block, free the rest */
  struct blk *keep = NULL;
  for (struct blk *b = p->blocks, *nx; b; b = nx) {
    nx = b->next;
    if (!keep && b->size == 4000) {
      keep = b;
    } else {
      free(b);
    }
  }
  if (keep) {
    keep->next = NULL;
    keep->used = 0;
  }
  p->blocks = keep;
  shrink_buf(&p->text);
  shrink_buf(&p->rbuf);
  doc_state_init(p);
  /* The context is reset in place (xmlCtxtResetPush: its input, entities,
   * errors and state go; its dictionary stays, and so does the name cache,
   * which maps dictionary pointers). A context that converted an encoding
   * (UTF-16, ...) or interned many names is replaced by a new one. */
  bool fresh = !p->ctxt ||
               (p->ctxt->input && p->ctxt->input->buf && p->ctxt->input->buf->encoder) ||
               xmlDictGetUsage(p->ctxt->dict) > REUSE_MAX_DICT;
  if (!fresh) {
    if (p->ctxt->myDoc) {
      xmlFreeDoc(p->ctxt->myDoc);
      p->ctxt->myDoc = NULL;
    }
    if (xmlCtxtResetPush(p->ctxt, NULL, 0, NULL, NULL)) fresh = true;
  }
  if (fresh) {
    free_ctxt(p);
    memset(p->cache, 0, sizeof p->cache);
    p->ctxt = new_ctxt(p);
    if (!p->ctxt) {
      p->rc = DP_ENOMEM;
      snprintf(p->err, sizeof p->err, "out of memory");
      return DP_ENOMEM;
    }
  } else {
    /* as xmlCreatePushParserCtxt leaves it: detect the encoding from the
     * first bytes (a reset context assumes UTF-8) */
    p->ctxt->charset = XML_CHAR_ENCODING_NONE;
    xmlSAXHandlerPtr sax = p->ctxt->sax;
    sax->characters = sax->cdataBlock = sax->ignorableWhitespace = NULL;
  }
  ctxt_options(p->ctxt);
  /* The dictionary's size limit (set when the context was made) is meant
   * for one document: the names kept from earlier ones do not count. */
  if (!fresh) xmlDictSetLimit(p->ctxt->dict, XML_MAX_DICTIONARY_LIMIT + xmlDictGetUsage(p->ctxt->dict));
  return 0;
}

int dp_parser_feed(dp_parser_t *p, const char *buf, size_t n) {
  if (p->rc) return p->rc;
  if (p->done) {
    if (p->mode != M_RAW) trailing_scan(p, (const unsigned char *)buf, n);
    return 0;
  }
  if (n == 0) return 0;
  const unsigned char *s = (const unsigned char *)buf;
  if (p->mode == M_SNIFF) {
    size_t take = HEAD_MAX - p->head_len < n ? HEAD_MAX - p->head_len : n;
    memcpy(p->head + p->head_len, s, take);
    p->head_len += take;
    s += take;
    n -= take;
    size_t skip;
    if (!sniff(p, p->head_len == HEAD_MAX, &skip)) return 0;
    int rc = scan(p, p->head + skip, p->head_len - skip);
    if (rc) return rc;
    if (p->done) return 0;
  }
  return n ? scan(p, s, n) : 0;
}

static uint32_t cur_line(const dp_parser_t *p) {
  return p->ctxt && p->ctxt->input ? (uint32_t)p->ctxt->input->line : 0;
}

int dp_parser_finish(dp_parser_t *p) {
  int rc;
  if (p->rc) return p->rc;
  if (p->done) return 0;
  if (p->mode == M_SNIFF) {
    size_t skip;
    sniff(p, true, &skip);
    if ((rc = scan(p, p->head + skip, p->head_len - skip))) return rc;
    if (p->done) return 0;
  }
  if (p->mode != M_RAW && p->prolog != PS_DONE) {
    if (!p->emitted && p->prolog == PS_MISC)
      return fail(p, DP_EREPORT, "no <feedback> report in document (empty document)");
    if (p->prolog == PS_MISC || p->prolog == PS_LT) {
      bool lt = p->prolog == PS_LT;
      if ((rc = inject_wrapper(p))) return rc;
      if (lt && (rc = repair(p, (const unsigned char *)"<", 1))) return rc;
    }
  }
  if (p->carry_len) { /* truncated multi-byte sequence at the very end */
    p->carry_len = 0;
    if ((rc = push(p, fffd, 3, 0))) return rc;
  }
  if (p->wrapped && p->depth > 1)
    return fail(p, DP_EXML, "malformed XML at line %" PRIu32 ": document ends inside <%s>",
                cur_line(p), (const char *)p->names[p->depth]);
  if (p->wrapped) rc = push(p, WRAP_CLOSE, sizeof WRAP_CLOSE - 1, 1);
  else rc = push(p, "", 0, 1);
  if (rc) {
    if (!p->emitted || (!p->wrapped && !p->depth && !p->root_name[0] && !p->seen_feedback &&
                        p->ctxt->errNo == XML_ERR_DOCUMENT_EMPTY)) {
      p->rc = 0;
      return fail(p, DP_EREPORT, "no <feedback> report in document (empty document)");
    }
    return rc;
  }
  if (p->done) return 0;
  if (p->seen_feedback)
    return fail(p, DP_EXML, "malformed XML at line %" PRIu32 ": document ends inside <feedback>", cur_line(p));
  if (p->root_name[0])
    return fail(p, DP_EREPORT, "root element <%s> is not <feedback>", p->root_name);
  return fail(p, DP_EREPORT, "no <feedback> report in document");
}

const char *dp_parser_error(const dp_parser_t *p) { return p->err; }

bool dp_parser_more_reports(const dp_parser_t *p) { return p->more_reports; }

void dp_parser_destroy(dp_parser_t *p) {
  if (!p) return;
  free_ctxt(p);
  for (struct blk *b = p->blocks, *nx; b; b = nx) {
    nx = b->next;
    free(b);
  }
  free(p->stack);
  free(p->names);
  free(p->errors);
  dp_buf_free(&p->text);
  dp_buf_free(&p->rbuf);
  free(p->dk);
  free(p->sp);
  free(p->rs);
  free(p->dk_out);
  free(p->sp_out);
  free(p->rs_out);
  free(p);
}
