/* SPDX-License-Identifier: MIT */
/* bench/bench_int.h - the deterministic report generator shared by `sample`
 * and `bench`: a seeded PRNG, a small report model, XML rendering in the
 * styles of real receivers, gzip/zip/mail packing, and the known answers
 * (expected totals and sender groups) computed from what was generated. */
#ifndef DP_BENCH_INT_H
#define DP_BENCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ------------------------------------------------------------------------ */
/* PRNG: splitmix64. Never rand() or time(): a seed fully determines output. */

typedef struct dp_gen_rng {
  uint64_t s;
} dp_gen_rng_t;

/** Seed r; any value (including 0) is fine. */
void dp_gen_rng_seed(dp_gen_rng_t *r, uint64_t seed);
/** Next 64 random bits. */
uint64_t dp_gen_rng_next(dp_gen_rng_t *r);
/** Uniform integer in [lo, hi] (inclusive); lo when hi <= lo. */
uint64_t dp_gen_rng_range(dp_gen_rng_t *r, uint64_t lo, uint64_t hi);
/** Uniform double in [0, 1). */
double dp_gen_rng_unit(dp_gen_rng_t *r);

/* ------------------------------------------------------------------------ */
/* Receivers and how each one delivers its reports. */

enum dp_gen_receiver {
  DP_GEN_GOOGLE,   /* google.com: .zip, no namespace, numeric report_id */
  DP_GEN_OUTLOOK,  /* Enterprise Outlook: .xml.gz, xmlns:xsd/xsi, envelope_to */
  DP_GEN_YAHOO,    /* Yahoo: .xml.gz */
  DP_GEN_MAILRU,   /* Mail.Ru: plain one-line .xml */
  DP_GEN_GMX,      /* GMX: RFC 9990 namespace, np/testing/discovery_method/generator, .xml.gz */
  DP_GEN_MIMECAST, /* Mimecast: .eml, single-part base64 gzip; report_id reused for a week */
  DP_GEN_AOL,      /* AOL: .eml, multipart/mixed text + base64 zip */
  DP_GEN_N_RECEIVERS
};

enum dp_gen_format {
  DP_GEN_FMT_XML,      /* bare XML file */
  DP_GEN_FMT_GZIP,     /* .xml.gz */
  DP_GEN_FMT_ZIP,      /* .zip with one .xml entry */
  DP_GEN_FMT_EML_GZIP, /* RFC 5322 message, base64 gzip attachment */
  DP_GEN_FMT_EML_ZIP,  /* RFC 5322 multipart/mixed, text part + base64 zip */
  DP_GEN_N_FORMATS
};

/** org_name as the receiver writes it, e.g. "Enterprise Outlook"; static. */
const char *dp_gen_receiver_org(enum dp_gen_receiver r);
/** The receiver's usual delivery format. */
enum dp_gen_format dp_gen_receiver_format(enum dp_gen_receiver r);

/* ------------------------------------------------------------------------ */
/* Report model. Strings are borrowed: static tables or the generator's own
 * domain strings, which live as long as the dp_gen_t that made them. */

typedef struct dp_gen_auth {
  const char *domain;   /* DKIM d= or SPF domain */
  const char *org;      /* its organizational domain, known by construction */
  const char *selector; /* DKIM selector; NULL for SPF */
  const char *result;   /* pass|fail|softfail|none|... */
} dp_gen_auth_t;

typedef struct dp_gen_record {
  char source_ip[48]; /* canonical inet_ntop form */
  int family;         /* 4 or 6 */
  uint64_t count;
  const char *header_from, *header_org; /* header_org: org domain of header_from */
  const char *envelope_from;            /* NULL when the receiver omits it */
  const char *envelope_to;              /* NULL when the receiver omits it */
  dp_gen_auth_t dkim[3];
  int n_dkim;
  dp_gen_auth_t spf;
  const char *reason; /* override reason type or NULL */
  /* Derived by dp_gen_record_finish() */
  bool spf_aligned, dkim_aligned, spf_aligned_strict, dkim_aligned_strict;
  bool dmarc_pass, third_party;
  char sender[128]; /* grouping key, see parse.h dp_align_record() */
} dp_gen_record_t;

typedef struct dp_gen_report {
  enum dp_gen_receiver rcv;
  const char *domain; /* policy domain */
  char report_id[80];
  int64_t begin, end; /* date_range as written */
  int64_t sent;       /* when the receiver "mailed" it (mtime, Date:) */
  dp_gen_record_t *recs;
  size_t n, alloc;
  uint64_t messages;
} dp_gen_report_t;

/** Compute the alignment flags, dmarc_pass, sender and third_party of rec from
 *  its auth results alone (relaxed = same org domain), independently of
 *  parse/: this is the test oracle dmarcpipe's own computation is checked against. */
void dp_gen_record_finish(dp_gen_record_t *rec);
/** Append a copy of rec to rep; DP_ENOMEM. */
int dp_gen_report_add(dp_gen_report_t *rep, const dp_gen_record_t *rec);
/** Free rep's records and leave it empty. */
void dp_gen_report_free(dp_gen_report_t *rep);

/** Append rep as XML in its receiver's style to out; DP_ENOMEM/DP_ELIMIT. */
int dp_gen_render_xml(const dp_gen_report_t *rep, dp_buf_t *out);
/** The base name of rep's files without extension, e.g.
 *  "google.com!example.com!1700000000!1700086399", into out. */
void dp_gen_report_basename(const dp_gen_report_t *rep, char *out, size_t outlen);
/** Wrap xml as fmt into out (appended); file_name receives the file name with
 *  its extension. Deterministic: fixed gzip/zip timestamps (rep->sent).
 *  0, DP_ENOMEM, DP_EGZIP or DP_EZIP. */
int dp_gen_pack(const dp_gen_report_t *rep, enum dp_gen_format fmt, const char *xml,
                size_t xml_len, dp_buf_t *out, char *file_name, size_t name_len);

/** gzip (RFC 1952) data into out (appended) with a fixed header: mtime,
 *  OS unix, the original file name. 0, DP_ENOMEM or DP_EGZIP. */
int dp_gen_gzip(const void *data, size_t len, const char *name, int64_t mtime, dp_buf_t *out);
/** A zip archive with one deflated entry into out (appended), entry time set
 *  from mtime in UTC so the bytes do not depend on the time zone. 0, DP_ENOMEM or DP_EZIP. */
int dp_gen_zip(const void *data, size_t len, const char *entry, int64_t mtime, dp_buf_t *out);
/** Append base64 of data in lines of 76 characters ended by CRLF. */
int dp_gen_base64(const void *data, size_t len, dp_buf_t *out);

/* ------------------------------------------------------------------------ */
/* Known answers, accumulated from every report as it is generated. */

typedef struct dp_gen_sender_stats {
  char sender[128];
  bool third_party;
  uint64_t records, messages;
  uint64_t spf_aligned, dkim_aligned;               /* messages, relaxed */
  uint64_t spf_aligned_strict, dkim_aligned_strict; /* messages, strict */
  uint64_t dmarc_pass;                              /* messages, relaxed */
  uint64_t overridden;                              /* messages with an override reason */
} dp_gen_sender_stats_t;

typedef struct dp_gen_rejected {
  char file[400];
  char reason[120];
} dp_gen_rejected_t;

typedef struct dp_gen_expect {
  uint64_t files, reports, records, messages;
  uint64_t rcv_reports[DP_GEN_N_RECEIVERS], rcv_records[DP_GEN_N_RECEIVERS],
      rcv_messages[DP_GEN_N_RECEIVERS];
  dp_gen_sender_stats_t *senders; /* open-addressing table, see gen_corpus.c */
  size_t n_senders, senders_alloc;
  dp_gen_rejected_t rejected[8];
  size_t n_rejected;
} dp_gen_expect_t;

/** Initialise an empty expectation; allocates nothing. */
void dp_gen_expect_init(dp_gen_expect_t *e);
/** Free the sender table. */
void dp_gen_expect_free(dp_gen_expect_t *e);
/** Count rep (one report in one file) into e; DP_ENOMEM. */
int dp_gen_expect_add(dp_gen_expect_t *e, const dp_gen_report_t *rep);
/** Count one record of receiver rcv into e (records, messages, its sender
 *  group); dp_gen_expect_add calls it for each record. DP_ENOMEM. */
int dp_gen_expect_add_record(dp_gen_expect_t *e, enum dp_gen_receiver rcv, const dp_gen_record_t *r);
/** The sender groups sorted by messages (desc) then name; caller owns result
 *  (free with free()); *n receives the count. NULL on out of memory. */
dp_gen_sender_stats_t *dp_gen_expect_sorted(const dp_gen_expect_t *e, size_t *n);
/** Look one sender group up by key; NULL when absent. Borrowed. */
const dp_gen_sender_stats_t *dp_gen_expect_find(const dp_gen_expect_t *e, const char *sender);

/* ------------------------------------------------------------------------ */
/* Scenarios. Output goes through emit, called once per file in a fixed order;
 * a non-zero return stops generation and is returned. */

typedef int (*dp_gen_emit_fn)(void *ud, const char *name, const void *data, size_t len);

typedef struct dp_gen_sample_opts {
  uint64_t seed;
  const char *domain; /* registrable policy domain, lower case; borrowed */
  int days;           /* >= 1 */
  int64_t last_day;   /* 00:00:00 UTC of the last day reported */
  unsigned scale;     /* 1..64: multiplies the sending sources of every group */
  bool corrupt;       /* also emit a few broken inputs (listed in rejected) */
} dp_gen_sample_opts_t;

/** Fill o with the defaults: seed 1, example.com, 14 days ending 2026-11-01, scale 1. */
void dp_gen_sample_defaults(dp_gen_sample_opts_t *o);
/** The `sample` scenario: one report per receiver per day for the policy
 *  domain, from the sender population described in docs/sample-data.md.
 *  exp (initialised by the caller) receives the answers. 0, DP_EUSAGE for bad
 *  options, DP_ENOMEM, DP_EGZIP/DP_EZIP, or emit's value. */
int dp_gen_sample(const dp_gen_sample_opts_t *o, dp_gen_emit_fn emit, void *ud,
                  dp_gen_expect_t *exp);

typedef struct dp_gen_bench_opts {
  uint64_t seed;
  const char *domain;  /* borrowed; NULL means example.com */
  uint64_t n_reports;
  uint64_t records;    /* records per report; 0 = the realistic size mix */
  unsigned formats;    /* bit mask of 1u << DP_GEN_FMT_*; 0 = each receiver's own */
  int64_t first_day;   /* 00:00:00 UTC of the first report's day; 0 = 2026-01-01 */
} dp_gen_bench_opts_t;

/** The date_range begin (epoch seconds) of report i of the throughput corpus
 *  o describes: receivers in turn, one day per round of them. */
int64_t dp_gen_bench_begin(const dp_gen_bench_opts_t *o, uint64_t i);
/** A report size from the realistic mix: most 1-10 records, some 10-1000,
 *  rare 10k, about 1 in 2000 100k+. */
uint64_t dp_gen_size_mix(dp_gen_rng_t *r);
/** The throughput corpus: n_reports reports (receivers in turn, one day
 *  each) whose records are drawn from the same sender population as
 *  `sample`. exp may be NULL. Errors as dp_gen_sample. */
int dp_gen_bench(const dp_gen_bench_opts_t *o, dp_gen_emit_fn emit, void *ud, dp_gen_expect_t *exp);

/** Append the answers as JSON (see docs/sample-data.md) to out. opts may be
 *  NULL (bench); DP_ENOMEM. */
int dp_gen_expect_json(const dp_gen_expect_t *e, const dp_gen_sample_opts_t *opts, dp_buf_t *out);
/** Append the sender groups as TSV with a header line to out; DP_ENOMEM. */
int dp_gen_expect_tsv(const dp_gen_expect_t *e, dp_buf_t *out);

/** true when domain is usable as the policy domain: lower-case letters,
 *  digits, '-' and '.', at least two labels, under 100 bytes. */
bool dp_gen_domain_ok(const char *domain);
/** Parse "YYYY-MM-DD" into 00:00:00 UTC epoch seconds; DP_EUSAGE if invalid. */
int dp_gen_parse_date(const char *s, int64_t *out);
/** Format epoch seconds as "YYYY-MM-DD" (UTC) into out (>= 11 bytes). */
void dp_gen_format_date(int64_t t, char *out, size_t outlen);

#endif
