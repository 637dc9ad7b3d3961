/* SPDX-License-Identifier: MIT */
/* parse/parse.h - the DMARC aggregate report model, the streaming XML parser
 * that fills it (libxml2 SAX2 push parser, RFC 7489 + drafts + RFC 9990), and
 * alignment computation (libpsl). Knows nothing of files or databases. */
#ifndef DP_PARSE_H
#define DP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* The most messages one report may cover, its records' counts summed: more
 * than the whole world's mail of a day (~3.5e11), so no real report comes
 * near it, while the sums across reports that the aggregates and queries
 * keep in 64-bit integers cannot overflow before ~9 million such reports.
 * Accepting counts up to INT64_MAX let two hostile reports break every
 * query that added them up. */
#define DP_MAX_REPORT_MESSAGES UINT64_C(1000000000000)

/* All strings in the model are NUL-terminated UTF-8 (invalid bytes repaired
 * with U+FFFD), trimmed of surrounding whitespace, and never NULL: an absent
 * element is "". Enumerated values (adkim, p, disposition, results, ...) are
 * lower-cased. Strings are borrowed from the parser: report fields stay valid
 * until report_end returns, record fields until the record callback returns. */

typedef struct dp_dkim_auth {
  const char *domain;       /* d= (lower-cased) */
  const char *selector;     /* s= */
  const char *result;       /* none|pass|fail|policy|neutral|temperror|permerror */
  const char *human_result;
} dp_dkim_auth_t;

typedef struct dp_spf_auth {
  const char *domain; /* lower-cased */
  const char *scope;  /* helo|mfrom or "" */
  const char *result; /* none|neutral|pass|fail|softfail|temperror|permerror */
  const char *human_result; /* RFC 9990 only; "" otherwise */
} dp_spf_auth_t;

typedef struct dp_reason {
  const char *type;    /* forwarded|sampled_out|trusted_forwarder|mailing_list|local_policy|other|... */
  const char *comment;
} dp_reason_t;

typedef struct dp_record {
  uint64_t index;          /* 1-based position of the record in its report */
  char source_ip[48];      /* canonical text form (inet_ntop of the parsed address) */
  int ip_family;           /* 4 or 6 */
  uint64_t count;          /* exact; always <= DP_MAX_REPORT_MESSAGES */
  const char *disposition; /* none|quarantine|reject (policy_evaluated) */
  const char *pe_dkim;     /* pass|fail (policy_evaluated) */
  const char *pe_spf;      /* pass|fail (policy_evaluated) */
  const dp_reason_t *reasons;
  size_t n_reasons;
  const char *header_from;   /* lower-cased; "" when absent */
  const char *envelope_from; /* lower-cased */
  const char *envelope_to;   /* lower-cased */
  const dp_dkim_auth_t *dkim; /* in document order */
  size_t n_dkim;
  const dp_spf_auth_t *spf;   /* in document order */
  size_t n_spf;
  /* Filled by the parser through dp_align_record() before the callback. */
  bool dkim_aligned;        /* relaxed: a passing DKIM d= shares header_from's org domain */
  bool dkim_aligned_strict; /* strict: a passing DKIM d= equals header_from */
  bool spf_aligned;         /* relaxed: passing SPF domain shares the org domain */
  bool spf_aligned_strict;  /* strict: passing SPF domain equals header_from */
  const char *sender;       /* grouping key, see dp_align_record() */
  bool third_party;         /* sender is not header_from's own organization */
  /* The record's leaf text, NUL-separated, text_len bytes: every string
   * above except source_ip and sender points into it (NULL when unknown),
   * and text_used is the sum of their lengths (strlen; a string pointed to
   * twice counts twice). Lets a consumer size a record in one pass. */
  const char *text;
  size_t text_len;
  size_t text_used;
} dp_record_t;

typedef struct dp_report {
  int schema;               /* 1: RFC 7489 and drafts; 2: RFC 9990 namespace */
  const char *version;      /* <version>, "" if absent */
  const char *org_name;
  const char *email;
  const char *extra_contact;
  const char *report_id;
  int64_t begin;            /* date_range, UTC epoch seconds */
  int64_t end;
  const char *const *errors; /* <error> elements of report_metadata */
  size_t n_errors;
  const char *generator;    /* RFC 9990 report_metadata/generator */
  /* policy_published */
  const char *domain;       /* lower-cased policy domain */
  const char *adkim, *aspf; /* r|s or "" */
  const char *p, *sp, *np;  /* none|quarantine|reject or "" */
  int pct;                  /* 0..100, -1 when absent */
  const char *fo;
  const char *testing;          /* RFC 9990: y|n or "" */
  const char *discovery_method; /* RFC 9990: psl|treewalk or "" */
  /* running totals, final at report_end */
  uint64_t n_records;
  uint64_t messages; /* sum of counts; DP_EREPORT past DP_MAX_REPORT_MESSAGES */
} dp_report_t;

/* Callbacks. A non-zero return aborts the parse: dp_parser_feed/finish then
 * return that value. report_begin is called once, as soon as the report's
 * identity (org_name, report_id, policy domain, begin, end) is known, that is
 * before the first record (or at </feedback> for a report without records);
 * the identity is validated first (all present, begin <= end). From then on
 * the identity and the policy stay as report_begin saw them: a later element
 * that would change one refuses the report (only <error>, the version, the
 * generator and extra contact information may still come or change). */
typedef struct dp_parse_cb {
  int (*report_begin)(void *ud, const dp_report_t *r);
  int (*record)(void *ud, const dp_report_t *r, const dp_record_t *rec);
  int (*report_end)(void *ud, const dp_report_t *r);
} dp_parse_cb_t;

typedef struct dp_parser dp_parser_t;

/** Create a push parser for one XML document (one report). lim is copied; cb
 *  and ud are borrowed for the parser's life. Caller owns result; free with
 *  dp_parser_destroy. NULL on out of memory. Not thread-safe; one parser per
 *  thread at a time, many parsers may run in parallel. */
dp_parser_t *dp_parser_create(const dp_limits_t *lim, const dp_parse_cb_t *cb, void *ud);
/** Push the next n bytes of the document. 0, or DP_EXML/DP_EREPORT/DP_ELIMIT
 *  (see dp_parser_error) or a callback's non-zero value. After a failure every
 *  later call returns the same error. */
int dp_parser_feed(dp_parser_t *p, const char *buf, size_t n);
/** Signal end of document; runs the final checks (a report was found, it was
 *  complete). Same returns as dp_parser_feed. */
int dp_parser_finish(dp_parser_t *p);
/** The reason of the last failure as one line naming the record number and
 *  field where there is one, e.g. "record 3: <count> is not an integer: \"x\"";
 *  borrowed, valid until the parser is destroyed. "" when no failure. */
const char *dp_parser_error(const dp_parser_t *p);
/** True when, after the report's end, the document opens another <feedback>
 *  (a second report, which is not read: one document, one report). Only
 *  ASCII-compatible documents are searched past the chunk that ended the
 *  report. */
bool dp_parser_more_reports(const dp_parser_t *p);
/** Make p ready for the next document, exactly as dp_parser_create(same
 *  limits, cb, ud) would, but keeping its libxml2 context (reset with
 *  xmlCtxtResetPush: same options, no entities, fresh input) and buffers,
 *  which saves most of a small report's setup. Everything borrowed from the
 *  previous document dies. 0, or DP_ENOMEM (then only destroy p). */
int dp_parser_reset(dp_parser_t *p, const dp_parse_cb_t *cb, void *ud);
/** Destroy the parser and everything it allocated. NULL is allowed. */
void dp_parser_destroy(dp_parser_t *p);

/* ------------------------------------------------------------------------ */
/* Alignment (RFC 7489 section 3.1). The Public Suffix List is loaded once per
 * process from the system copy (Debian package publicsuffix) by
 * dp_align_global_init(); afterwards all functions are thread-safe. */

/** Load the system Public Suffix List; 0 or DP_EIO when it cannot be read. Idempotent. */
int dp_align_global_init(void);
/** Free the Public Suffix List. */
void dp_align_global_cleanup(void);
/** Write the organizational domain of domain (lower-case, no trailing dot)
 *  into out; when domain is itself a public suffix or invalid, out is the
 *  domain itself. Returns 0, or DP_ELIMIT if outlen is too small. */
int dp_align_org_domain(const char *domain, char *out, size_t outlen);
/** true when a and b are aligned: strict means equal (case-insensitive, trailing
 *  dot ignored); relaxed means same organizational domain. Empty never aligns. */
bool dp_align_domains(const char *a, const char *b, bool strict);
/** Compute rec's alignment flags, sender and third_party from its auth results
 *  against its header_from (or policy_domain when header_from is empty). The
 *  sender string is written into sender_buf (>= 300 bytes) and rec->sender
 *  points there. Sender is the organizational domain of, in order: the
 *  passing SPF domain, else the first passing DKIM d=, else (nothing passes:
 *  spoofing or broken forwarding) "unauthenticated <network>" for the source
 *  network, e.g. "unauthenticated 192.0.2.0/24" (IPv4 /24, IPv6 /48). third_party is true when the sender is a domain whose
 *  org domain differs from header_from's and is not the unauthenticated group. */
void dp_align_record(dp_record_t *rec, const char *policy_domain, char *sender_buf, size_t sender_len);

#endif
