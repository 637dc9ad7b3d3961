/* SPDX-License-Identifier: MIT */
/* query/query_int.h - internals shared by the query/ files and their tests:
 * the typed result set and its table/CSV/JSON writer (format.c), --since
 * parsing (since.c), and the query functions behind each command, factored so
 * that a test can run them against a PGconn and a FILE*. Never installed. */
#ifndef DP_QUERY_INT_H
#define DP_QUERY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <getopt.h>
#include <libpq-fe.h>

#include "core/core.h"

/* ------------------------------------------------------------------------ */
/* Result sets (query/format.c). */

typedef enum dp_qtype {
  DP_QT_TEXT, /* UTF-8 text (repaired on output) */
  DP_QT_INT,  /* int64 */
  DP_QT_BOOL, /* true/false; "yes"/"no" in tables */
  DP_QT_TIME, /* UTC epoch seconds; ISO 8601 "2024-03-01T00:00:00Z" */
  DP_QT_LIST, /* list of text items (a text[]); items may be NULL */
  DP_QT_PCT   /* a ratio num/den shown as a percentage; NULL when den == 0 */
} dp_qtype_t;

typedef enum dp_qfmt { DP_QFMT_TABLE, DP_QFMT_CSV, DP_QFMT_JSON } dp_qfmt_t;

/* Column flags. */
#define DP_QCOL_NOTABLE 1u   /* machine formats only (CSV, JSON) */
#define DP_QCOL_TABLEONLY 2u /* table only */

/** One column: name is the JSON key and CSV header, label the table header
 *  (NULL: name); max_width truncates table cells (code points, 0 = none). */
typedef struct dp_qcol {
  const char *name;
  const char *label;
  dp_qtype_t type;
  unsigned flags;
  unsigned max_width;
} dp_qcol_t;

/** One cell. Which fields are meaningful depends on the column type. */
typedef struct dp_qval {
  bool null;
  char *s;      /* TEXT: owned by the result set */
  int64_t i;    /* INT, BOOL (0/1), TIME, PCT numerator */
  int64_t den;  /* PCT denominator */
  char **items; /* LIST: owned by the result set; items may be NULL */
  size_t n_items;
} dp_qval_t;

typedef struct dp_qres dp_qres_t;

/** Create an empty result set over cols (borrowed: must outlive the result
 *  set, normally a static array). Caller owns result; free with
 *  dp__query_res_destroy. NULL on out of memory. */
dp_qres_t *dp__query_res_create(const dp_qcol_t *cols, size_t ncols);
/** Free the result set and every value in it. NULL is allowed. */
void dp__query_res_destroy(dp_qres_t *r);
/** Append a row whose cells are all NULL; setters then fill the last row.
 *  0 or DP_ENOMEM. */
int dp__query_res_add_row(dp_qres_t *r);
/** Number of rows. */
size_t dp__query_res_rows(const dp_qres_t *r);
/** Set column col of the last row to a copy of s (NULL: SQL NULL). 0 or DP_ENOMEM. */
int dp__query_res_set_text(dp_qres_t *r, size_t col, const char *s);
/** Set an INT, BOOL (v != 0) or TIME (epoch seconds) cell of the last row. */
void dp__query_res_set_int(dp_qres_t *r, size_t col, int64_t v);
/** Set a PCT cell of the last row to num/den (NULL when den == 0). */
void dp__query_res_set_pct(dp_qres_t *r, size_t col, int64_t num, int64_t den);
/** Set a LIST cell of the last row to copies of n items (an item may be NULL). 0 or DP_ENOMEM. */
int dp__query_res_set_list(dp_qres_t *r, size_t col, const char *const *items, size_t n);
/** Set a LIST cell from a PostgreSQL text[] literal such as {a,"b c",NULL}
 *  (NULL literal: SQL NULL). A literal that cannot be parsed becomes a
 *  one-item list holding it verbatim. 0 or DP_ENOMEM. */
int dp__query_res_set_pgarray(dp_qres_t *r, size_t col, const char *literal);
/** Add a footer line, printed under the table in table format only (copied). 0 or DP_ENOMEM. */
int dp__query_res_add_footer(dp_qres_t *r, const char *line);
/** Append one row per row of res, converting PostgreSQL text-format values by
 *  the column types: res must have one column per entry of cols, in order;
 *  TIME columns are epoch seconds (bigint), LIST columns text[], PCT columns
 *  are not allowed. 0, DP_ENOMEM, or DP_EPG when a value does not convert. */
int dp__query_res_append_pg(dp_qres_t *r, const PGresult *res);
/** Write the result set to out in fmt. 0, or DP_EIO when writing failed. */
int dp__query_res_write(const dp_qres_t *r, dp_qfmt_t fmt, FILE *out);

/** Parse a one-dimensional PostgreSQL text[] literal ({a,"b c",NULL}) into
 *  *items/ *n (caller owns both; free each item, then the vector; NULL
 *  elements stay NULL). 0, or -1 when the literal has another shape or on
 *  out of memory (nothing allocated). */
int dp__query_pgarray_parse(const char *literal, char ***items, size_t *n);
/** Write num/den as a percentage with one decimal, no '%' ("97.5"): rounded
 *  down, except that a non-zero share is at least "0.1" and only all of it
 *  is "100.0". */
void dp__query_pct(char *out, size_t outlen, int64_t num, int64_t den);

/** Parse "table", "csv" or "json"; 0 or DP_EUSAGE. */
int dp__query_parse_format(const char *s, dp_qfmt_t *fmt);

/* ------------------------------------------------------------------------ */
/* --since (query/since.c). */

/** Parse a --since value relative to now (epoch seconds) into *out (epoch
 *  seconds, UTC): a duration N followed by m (minutes), h, d or w, meaning
 *  "now minus that"; a date YYYY-MM-DD (midnight UTC); or an ISO 8601
 *  timestamp YYYY-MM-DDTHH:MM[:SS[.fraction]] with Z, +HH:MM, -HH:MM, +HHMM or
 *  no zone (UTC); a space may replace the T. 0, or DP_EUSAGE with a one-line
 *  reason in err. */
int dp__query_since_parse(const char *s, int64_t now, int64_t *out, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* The queries (reports.c, senders.c, errors.c). Every function takes a
 * connected PGconn (blocking mode), runs parameterised SQL, writes the whole
 * output to out, and returns 0, DP_EPG (reason in err) or DP_EIO. */

/* The rows of an agg_* table (alias a, migration 0003) that are D's in the
 * window: $1 domain, $2 since (epoch seconds or NULL). Same rule as the record
 * level: policy domain D, or header_from D or under D; report end after since. */
#define DP_AGG_WHERE                                                                               \
  " WHERE (a.domain = $1::text OR a.header_from = $1::text"                                        \
  "        OR right(a.header_from, length($1::text) + 1) = '.' || $1::text)"                       \
  "   AND ($2::bigint IS NULL OR a.end_ts > to_timestamp($2::bigint))"

/* CTE good_sig: the (domain, selector) pairs of D's DKIM signatures (D or
 * under D) that verified in the window ($1, $2 as DP_AGG_WHERE). A failing
 * signature of D whose key is in it (DP_GOOD_SIG_HAS) was changed in
 * transit: readiness's rule 2 counts such mail as forwarded, and senders
 * does not advise fixing the key. */
#define DP_GOOD_SIG_CTE                                                                            \
  "good_sig AS MATERIALIZED ("                                                                     \
  "  SELECT DISTINCT a.dom, a.sel FROM agg_good_sig a" DP_AGG_WHERE                                \
  "     AND (a.dom = $1::text OR right(a.dom, length($1::text) + 1) = '.' || $1::text))"
/* Condition: good_sig g holds domain dom with selector sel (SQL expressions);
 * a failing signature reported without a selector goes by its domain. */
#define DP_GOOD_SIG_HAS(dom, sel) "g.dom = " dom " AND (g.sel = " sel " OR " sel " = '')"

/* The body of CTE fv (one row per published policy field of each report of
 * CTE rep: p, sp, np, pct, adkim, aspf, lower-cased, empty ones dropped)
 * followed by CTE lastv (each domain's latest value of each field), shared by
 * `domains` and the HTML report so both read the policy the same way. */
#define DP_POLICY_FIELDS_SQL                                                                       \
  "  SELECT rep.domain, f.ord, f.k, f.v, rep.begin_ts, rep.end_ts, rep.ingested_at, rep.id"      \
  "    FROM rep CROSS JOIN LATERAL (VALUES (1, 'p', lower(rep.p)), (2, 'sp', lower(rep.sp)),"    \
  "         (3, 'np', lower(rep.np)), (4, 'pct', rep.pct::text),"                                 \
  "         (5, 'adkim', lower(rep.adkim)), (6, 'aspf', lower(rep.aspf))) AS f(ord, k, v)"       \
  "   WHERE coalesce(f.v, '') <> ''"                                                              \
  "), lastv AS ("                                                                                 \
  "  SELECT DISTINCT ON (domain, ord) domain, ord, v FROM fv"                                     \
  "   ORDER BY domain, ord, begin_ts DESC, end_ts DESC, ingested_at DESC, id DESC"

/** Make the aggregates (migration 0003) current before reading them: when c
 *  is idle, open a REPEATABLE READ READ ONLY transaction whose snapshot has
 *  no pending report (*opened true), folding pending reports first
 *  (dp_agg_catch_up) only when there are some, so a read-only role can query
 *  current aggregates; inside a transaction already, do nothing (*opened
 *  false). 0 or DP_EPG with reason in err. */
int dp__query_agg_begin(PGconn *c, bool *opened, char *err, size_t errlen);
/** Commit the transaction dp__query_agg_begin opened, if it opened one. */
void dp__query_agg_end(PGconn *c, bool opened);

/** Filters shared by the commands; since is ignored unless has_since. */
typedef struct dp_query_filter {
  const char *domain; /* lower-case, no trailing dot; NULL = all (reports) */
  bool has_since;
  int64_t since; /* epoch seconds: reports whose period ends after it */
} dp_query_filter_t;

/** --fail values of `senders`. */
typedef enum dp_sender_fail {
  DP_FAIL_ALL = 0,
  DP_FAIL_SPF,
  DP_FAIL_DKIM,
  DP_FAIL_ANY
} dp_sender_fail_t;

/* ------------------------------------------------------------------------ */
/* Known services (query/services.c): data/services.tsv, compiled in, plus the
 * user's file. docs/queries.md "Known services" has the format. */

/** One known service pattern. Strings are owned by the map. Hints contain
 *  "{domain}" where the analysed domain goes; NULL = not known, "-" = not
 *  offered (dkim, return_path) or not needed (spf). */
typedef struct dp_service {
  char *pattern;     /* domain; matches itself and subdomains */
  char *name;        /* "SendGrid" */
  char *kind;        /* esp, crm, helpdesk, workspace, list, forwarder */
  char *dkim;        /* how to sign with d={domain} there */
  char *return_path; /* how to get a MAIL FROM under {domain} there */
  char *spf;         /* "include:sendgrid.net" */
} dp_service_t;

typedef struct dp_services dp_services_t;

/** Create an empty map. Caller owns result; free with
 *  dp__query_services_destroy. NULL on out of memory. */
dp_services_t *dp__query_services_create(void);
/** Free the map and its entries. NULL is allowed. */
void dp__query_services_destroy(dp_services_t *m);
/** Add the lines of a services TSV text (len bytes; origin names it in
 *  errors). A pattern already in the map is replaced. 0, DP_ENOMEM, or
 *  DP_EUSAGE with "origin:LINE: reason" in err; on failure lines before the
 *  bad one stay added. */
int dp__query_services_add_tsv(dp_services_t *m, const char *text, size_t len, const char *origin,
                               char *err, size_t errlen);
/** Number of patterns in the map. */
size_t dp__query_services_count(const dp_services_t *m);
/** The service whose pattern is domain or its longest suffix on a label
 *  boundary (case-insensitive, a trailing dot ignored); NULL when none.
 *  Borrowed from m. */
const dp_service_t *dp__query_services_match(const dp_services_t *m, const char *domain);
/** Load the built-in map plus the user's file (path, else the config key
 *  `services`, else $XDG_CONFIG_HOME/dmarcpipe/services.tsv or
 *  ~/.config/dmarcpipe/services.tsv, where a missing file is fine) and make it
 *  the process map used by the senders query. 0, DP_ENOMEM or DP_EUSAGE
 *  (reason in err; the process map is then the built-in one). Not
 *  thread-safe. */
int dp__query_services_init(const char *path, char *err, size_t errlen);
/** Make m the process map (takes ownership; NULL: back to lazily loaded
 *  built-in). Services borrowed from the previous map become invalid. */
void dp__query_services_set(dp_services_t *m);
/** The process map: as set or initialised, else the built-in map loaded on
 *  first use. Never NULL unless out of memory. Borrowed. */
const dp_services_t *dp__query_services(void);

/** Write the text of hint with every "{domain}" replaced by domain to b.
 *  0 or DP_ENOMEM. */
int dp__query_services_expand(dp_buf_t *b, const char *hint, const char *domain);

/* ------------------------------------------------------------------------ */
/* Redaction (query/redact.c) for --redact: report data given as evidence to
 * others without the addresses in it. */

/** A copy of s with every IPv4 address's last octet replaced by "x"
 *  (192.0.2.x), every IPv6 address cut to its /48 ("2001:db8:1::x"), and
 *  the local part of every e-mail address replaced by "redacted"; networks
 *  written with a prefix length ("192.0.2.0/24") are kept. Caller owns
 *  result; free(). NULL when s is NULL or on out of memory. */
char *dp__query_redact(const char *s);
/** Redact the string *s in place (replace it with dp__query_redact's result).
 *  0 or DP_ENOMEM (then *s is unchanged). */
int dp__query_redact_inplace(char **s);

/* ------------------------------------------------------------------------ */
/* HTML escaping and inline SVG charts (query/svg_chart.c). */

/** Append s to b escaped for HTML text and attribute values (& < > " '),
 *  control characters as '?', invalid UTF-8 as U+FFFD. NULL appends nothing.
 *  0 or DP_ENOMEM. */
int dp__html_escape(dp_buf_t *b, const char *s);

typedef enum dp_chart_kind { DP_CHART_LINE, DP_CHART_STACKED } dp_chart_kind_t;

/** One series: n values (NAN: no value for that x), drawn in color (a CSS
 *  color from our code, never from data: it is not escaped). */
typedef struct dp_chart_series {
  const char *name;
  const double *y;
  const char *color;
  bool emphasis; /* thicker line */
} dp_chart_series_t;

/** A chart over n categories (x_labels, e.g. days). Lines: one path and one
 *  point (with a <title> tooltip) per series; stacked: one bar per x with a
 *  segment per series. percent: the y axis is 0..100%. */
typedef struct dp_chart {
  dp_chart_kind_t kind;
  const char *title; /* aria-label */
  const char *const *x_labels;
  size_t n;
  const dp_chart_series_t *series;
  size_t n_series;
  bool percent;
} dp_chart_t;

/** Append c as one self-contained <svg> element (no external reference; text
 *  escaped) to b. 0 or DP_ENOMEM. */
int dp__svg_chart(dp_buf_t *b, const dp_chart_t *c);

/** One row of `senders`, as computed by the SQL (all counts are messages). */
typedef struct dp_sender {
  char *sender;
  bool third_party;
  int64_t messages, spf_aligned, dkim_aligned, dmarc_pass;
  int64_t spf_aligned_strict, dkim_aligned_strict, policy_pass;
  char **source_ips;
  size_t n_source_ips; /* top 10 by volume */
  char **dkim_domains;
  size_t n_dkim_domains; /* "domain:result", by volume */
  char **spf_domains;
  size_t n_spf_domains; /* "domain:result", by volume */
  char **reporters;
  size_t n_reporters; /* distinct org_name, sorted */
  int64_t first_seen, last_seen;
  /* Evidence for the fix, from records that fail DMARC (NULL when none). */
  char *dkim_foreign;          /* most frequent passing, unaligned DKIM d= */
  char *dkim_own_fail;         /* most frequent failing DKIM d= under the domain */
  char *dkim_own_sel;          /* its selector */
  bool dkim_own_key_good;      /* that key verifies on other mail of the window */
  char *spf_foreign;           /* most frequent passing, unaligned SPF domain */
  bool spf_own_fail;           /* an SPF check for a domain under D did not pass */
  int64_t relayed;             /* failing messages with a forwarded/mailing_list override */
  char *fix;                   /* derived by dp__query_senders_fix() */
  const dp_service_t *service; /* known service (borrowed from the process map) or NULL */
  size_t folded_networks;      /* >0: this row is that many senders (networks), summed */
} dp_sender_t;

/** Where each field of a sender goes in a result set: the column indexes
 *  used by dp__query_senders_set_row (senders' JSON/CSV and readiness's
 *  senders_to_fix share the fields, not the column order). */
typedef struct dp_sender_cols {
  size_t sender, third_party, messages, spf_aligned, dkim_aligned, dmarc_pass;
  size_t spf_aligned_strict, dkim_aligned_strict, policy_pass;
  size_t source_ips, dkim_domains, spf_domains, reporters, first_seen, last_seen;
  size_t fix, service, service_kind;
} dp_sender_cols_t;

/** Set s's fields in the current row of q at the columns c names. 0 or DP_ENOMEM. */
int dp__query_senders_set_row(dp_qres_t *q, const dp_sender_cols_t *c, const dp_sender_t *s);

/** Run the senders query for f->domain (required) and fail. On success
 *  *rows/ *n are the senders, most volume first (caller owns; free with
 *  dp__query_senders_free). DP_EPG with reason in err, DP_ENOMEM. */
int dp__query_senders_fetch(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                            dp_sender_t **rows, size_t *n, char *err, size_t errlen);
/** dp__query_senders_fetch for the n senders in names only (readiness: the
 *  senders with fixable mail), in the same order and with the same fields. */
int dp__query_senders_fetch_named(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                                  const char *const *names, size_t n_names, dp_sender_t **rows,
                                  size_t *n, char *err, size_t errlen);
/** What the table form of `senders` shows, for dp__query_senders_write with
 *  DP_QFMT_TABLE (same output as from dp__query_senders_fetch's rows): every
 *  sender that is a domain and the first DP_SENDERS_UNAUTH_SHOWN
 *  unauthenticated networks, without source_ips, then one row for all other
 *  networks (folded_networks > 0, counts summed). Caller owns *rows; free
 *  with dp__query_senders_free. */
int dp__query_senders_fetch_table(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                                  dp_sender_t **rows, size_t *n, char *err, size_t errlen);
/** Unauthenticated networks the table form of `senders` shows one by one. */
#define DP_SENDERS_UNAUTH_SHOWN 5
/** The first top senders of dp__query_senders_fetch, in its order and with
 *  the same fields, then one row for all others (folded_networks = how many,
 *  counts summed). Caller owns *rows; free with dp__query_senders_free. */
int dp__query_senders_fetch_top(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                                int top, dp_sender_t **rows, size_t *n, char *err, size_t errlen);
/** Free rows from dp__query_senders_fetch. NULL is allowed. */
void dp__query_senders_free(dp_sender_t *rows, size_t n);
/** The "what to fix" text for s as mail of domain (caller owns; free()); NULL on ENOMEM. */
char *dp__query_senders_fix(const dp_sender_t *s, const char *domain);
/** The known service of s as a sender of domain: the first of its sender
 *  domain (third party only), failing-mail DKIM and SPF domains, then every
 *  DKIM and SPF domain seen, that is not under domain and matches m. NULL
 *  when none. Borrowed from m. */
const dp_service_t *dp__query_senders_service(const dp_services_t *m, const dp_sender_t *s,
                                              const char *domain);
/** Redact every address in rows (source IPs, texts; see dp__query_redact).
 *  0 or DP_ENOMEM. */
int dp__query_senders_redact(dp_sender_t *rows, size_t n);
/** Write rows (senders of domain) in fmt: a table with the totals footer, or
 *  CSV/JSON. 0, DP_ENOMEM or DP_EIO. */
int dp__query_senders_write(const dp_sender_t *rows, size_t n, const char *domain, dp_qfmt_t fmt,
                            FILE *out);
/** Fetch and write: the body of `dmarcpipe senders`. */
int dp__query_senders(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail, dp_qfmt_t fmt,
                      FILE *out, char *err, size_t errlen);
/** dp__query_senders, with every address redacted when redact (--redact). */
int dp__query_senders_redacted(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                               dp_qfmt_t fmt, bool redact, FILE *out, char *err, size_t errlen);
/** The body of `dmarcpipe reports` (f->domain may be NULL). */
int dp__query_reports(PGconn *c, const dp_query_filter_t *f, dp_qfmt_t fmt, FILE *out, char *err,
                      size_t errlen);
/** The body of `dmarcpipe errors` (f->domain ignored). */
int dp__query_errors(PGconn *c, const dp_query_filter_t *f, dp_qfmt_t fmt, FILE *out, char *err,
                     size_t errlen);

/* ------------------------------------------------------------------------ */
/* Command-line plumbing shared by the commands (query/cli.c). */

/** Trend periods for --by. */
typedef enum dp_period { DP_PERIOD_NONE = 0, DP_PERIOD_DAY, DP_PERIOD_WEEK } dp_period_t;

/** Options common to every query command, filled by dp__query_opt(). */
typedef struct dp_query_opts {
  const char *db;
  dp_qfmt_t fmt;
  dp_query_filter_t filter;
  char domain_buf[256];
  dp_period_t by;         /* --by day|week */
  bool redact;            /* --redact */
  dp_sender_fail_t fail;  /* --fail spf|dkim|any */
  const char *html;       /* --html FILE */
} dp_query_opts_t;

/** Handle one of the shared options (c is the getopt_long value: 'd' --db,
 *  'f' --format, 'D' --domain, 's' --since, 'b' --by, 'R' --redact, 'F'
 *  --fail, 'H' --html) with its argument. 0, or DP_EUSAGE after printing
 *  "dmarcpipe CMD: reason" to stderr. */
int dp__query_opt(dp_query_opts_t *o, const char *cmd, int c, const char *arg);
/** Report an unknown option or a missing argument (argv[optind_ - 1], after
 *  getopt_long returned '?') as one line on stderr. */
void dp__query_bad_opt(const char *cmd, char **argv, int optind_);
/** Parse a query command's argv (argv[0] is the command) with longopts, whose
 *  values are the dp__query_opt letters plus 'h'; o keeps the defaults the
 *  caller set. Prints usage for --help; with need_domain, --domain is
 *  required. Returns -1 to go on, else the exit status to return (0 after
 *  --help, 2 after a one-line error on stderr). */
int dp__query_args(dp_query_opts_t *o, const char *cmd, int argc, char **argv,
                   const struct option *longopts, void (*usage)(FILE *f), bool need_domain);
/** End a command: close c (may be NULL) and the services map; print
 *  "dmarcpipe CMD: err" when rc is not 0. Returns the exit status (0 or 2). */
int dp__query_done(const char *cmd, PGconn *c, int rc, const char *err);
/** Connect as the --db option / environment / embedded cluster say; NULL after
 *  printing "dmarcpipe CMD: reason" to stderr. Caller owns result; PQfinish(). */
PGconn *dp__query_connect(const char *cmd, const char *db);
/** Copy the first line of PQerrorMessage(c) (or of res) into err. */
void dp__query_pgerr(PGconn *c, const PGresult *res, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* readiness and domains (query/readiness.c, query/domains.c). */

/** --by values of `readiness`. */

/** Message counts of one readiness scope (all of D's mail, or one period).
 *  fail_fixable + fail_forwarded + fail_unauthenticated == dmarc_fail. */
typedef struct dp_readiness_counts {
  int64_t messages, dmarc_pass, dmarc_fail;
  int64_t fail_fixable, fail_forwarded, fail_unauthenticated;
  int64_t dmarc_fail_if_strict; /* NOT (spf_aligned_strict OR dkim_aligned_strict) */
} dp_readiness_counts_t;

/** One row of the --by trend: period start (UTC epoch seconds) and counts. */
typedef struct dp_readiness_period {
  int64_t start;
  dp_readiness_counts_t c;
} dp_readiness_period_t;

/** One (source_ip, header_from) that receivers judged differently. */
typedef struct dp_disagreement {
  char *source_ip, *header_from;
  int64_t messages;
  char **reasons; /* "dkim: receivers disagree", "spf: receiver vs auth results" */
  size_t n_reasons;
  char **verdicts; /* distinct "org: dkim=pass spf=fail" */
  size_t n_verdicts;
} dp_disagreement_t;

/** Everything `readiness` reports (caller owns; free with dp__query_readiness_free). */
typedef struct dp_readiness {
  int64_t reports, receivers; /* reports / reporting orgs with mail of D */
  dp_readiness_counts_t total;
  dp_sender_t *to_fix;     /* senders with fixable failures, most fixable first */
  int64_t *to_fix_fixable; /* their fixable failing messages */
  size_t n_to_fix;
  size_t n_blocking; /* to_fix senders at or above the noise floor (docs/queries.md) */
  dp_readiness_period_t *trend;
  size_t n_trend;
  int64_t disagree_sources;    /* distinct source_ip flagged */
  dp_disagreement_t *disagree; /* top 10 by messages */
  size_t n_disagree;
  const char *verdict;   /* "ready", "ready after fixing", "not ready" (static) */
  char verdict_line[64]; /* "ready after fixing 3 senders" */
  char verdict_reason[512];
} dp_readiness_t;

/** Fetch the readiness of f->domain (required) with a trend when by != NONE,
 *  in one read-only snapshot. 0, DP_EUSAGE, DP_EPG or DP_ENOMEM (reason in
 *  err). *r is always initialised; free with dp__query_readiness_free. */
int dp__query_readiness_fetch(PGconn *c, const dp_query_filter_t *f, dp_period_t by,
                              dp_readiness_t *r, char *err, size_t errlen);
/** Free what dp__query_readiness_fetch allocated in r. */
void dp__query_readiness_free(dp_readiness_t *r);
/** Redact every address in r (senders to fix, disagreements, texts; see
 *  dp__query_redact). 0 or DP_ENOMEM. */
int dp__query_readiness_redact(dp_readiness_t *r);
/** Set r's verdict fields from its counts and senders (thresholds in docs/queries.md). */
void dp__query_readiness_verdict(dp_readiness_t *r, const char *domain);
/** Write r in fmt (JSON: one object). 0, DP_ENOMEM or DP_EIO. */
int dp__query_readiness_write(const dp_readiness_t *r, const dp_query_filter_t *f, dp_period_t by,
                              dp_qfmt_t fmt, FILE *out);
/** Fetch and write: the body of `dmarcpipe readiness`. */
int dp__query_readiness(PGconn *c, const dp_query_filter_t *f, dp_period_t by, dp_qfmt_t fmt,
                        FILE *out, char *err, size_t errlen);
/** dp__query_readiness, with every address redacted when redact (--redact). */
int dp__query_readiness_redacted(PGconn *c, const dp_query_filter_t *f, dp_period_t by,
                                 dp_qfmt_t fmt, bool redact, FILE *out, char *err, size_t errlen);
/** The body of `dmarcpipe senders --by day|week` (query/senders_trend.c): per
 *  sender and period, messages and alignment; fail filters on the sender's
 *  totals over the window. by must not be DP_PERIOD_NONE. */
int dp__query_senders_trend(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                            dp_period_t by, dp_qfmt_t fmt, FILE *out, char *err, size_t errlen);
/** The body of `dmarcpipe domains` (f->domain ignored). */
int dp__query_domains(PGconn *c, const dp_query_filter_t *f, dp_qfmt_t fmt, FILE *out, char *err,
                      size_t errlen);

/* ------------------------------------------------------------------------ */
/* The HTML report (query/report_html.c). */

/** Write the HTML report of f->domain (required) to out: readiness, charts
 *  per `by` (DP_PERIOD_NONE: day), senders, receivers, policy; addresses
 *  redacted when redact. generated is the "generated at" time (epoch s).
 *  0, DP_EUSAGE, DP_EPG, DP_ENOMEM or DP_EIO (reason in err). */
int dp__report_html(PGconn *c, const dp_query_filter_t *f, dp_period_t by, bool redact,
                    int64_t generated, FILE *out, char *err, size_t errlen);

#endif
