/* SPDX-License-Identifier: MIT */
/* query/reports.c - `dmarcpipe reports`: the inventory of stored aggregate
 * reports, newest first, optionally for one policy domain (and its
 * subdomains) and a time window. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "query/query.h"
#include "query/query_int.h"

static const dp_qcol_t report_cols[] = {
    {"org_name", "ORG", DP_QT_TEXT, 0, 24},
    {"report_id", "REPORT ID", DP_QT_TEXT, 0, 28},
    {"domain", "DOMAIN", DP_QT_TEXT, 0, 32},
    {"begin", "BEGIN (UTC)", DP_QT_TIME, 0, 0},
    {"end", "END (UTC)", DP_QT_TIME, 0, 0},
    {"records", "RECORDS", DP_QT_INT, 0, 0},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},
    {"p", "P", DP_QT_TEXT, 0, 10},
    {"email", "EMAIL", DP_QT_TEXT, DP_QCOL_NOTABLE, 0},
    {"source", "SOURCE", DP_QT_TEXT, DP_QCOL_NOTABLE, 0},
    {"ingested_at", "INGESTED", DP_QT_TIME, DP_QCOL_NOTABLE, 0},
};
#define N_REPORT_COLS (sizeof report_cols / sizeof report_cols[0])

/* Same column order as report_cols. Times as epoch seconds so that the
 * session's TimeZone/DateStyle cannot change the output. */
static const char reports_sql[] =
    "SELECT org_name, report_id, domain,"
    "       floor(extract(epoch FROM begin_ts))::bigint,"
    "       floor(extract(epoch FROM end_ts))::bigint,"
    "       n_records::bigint, messages, p, email, source,"
    "       floor(extract(epoch FROM ingested_at))::bigint"
    "  FROM report"
    " WHERE ($1::text IS NULL OR domain = $1 OR right(domain, length($1) + 1) = '.' || $1)"
    "   AND ($2::bigint IS NULL OR end_ts > to_timestamp($2::bigint))"
    " ORDER BY begin_ts DESC, end_ts DESC, org_name, report_id";

int dp__query_reports(PGconn *c, const dp_query_filter_t *f, dp_qfmt_t fmt, FILE *out, char *err,
                      size_t errlen) {
  char since[32];
  const char *params[2] = {f->domain, NULL};
  if (f->has_since) {
    snprintf(since, sizeof since, "%" PRId64, f->since);
    params[1] = since;
  }
  PGresult *res = PQexecParams(c, reports_sql, 2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return DP_EPG;
  }
  dp_qres_t *r = dp__query_res_create(report_cols, N_REPORT_COLS);
  int rc = r ? dp__query_res_append_pg(r, res) : DP_ENOMEM;
  int64_t messages = 0;
  for (int i = 0; i < PQntuples(res); i++)
    messages += strtoll(PQgetvalue(res, i, 6), NULL, 10);
  PQclear(res);
  if (!rc) {
    char line[128];
    size_t n = dp__query_res_rows(r);
    snprintf(line, sizeof line, "%zu report%s, %" PRId64 " message%s", n, n == 1 ? "" : "s",
             messages, messages == 1 ? "" : "s");
    rc = dp__query_res_add_footer(r, line);
  }
  if (!rc) rc = dp__query_res_write(r, fmt, out);
  if (rc == DP_EPG)
    snprintf(err, errlen, "unexpected value in the reports query result");
  else if (rc)
    snprintf(err, errlen, "%s", dp_strerror(rc));
  dp__query_res_destroy(r);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: dmarcpipe reports [--domain D] [--since S] [--format table|csv|json] [--db DSN]\n"
          "\n"
          "List stored aggregate reports, newest first.\n"
          "\n"
          "  --domain D     only reports whose policy domain is D or a subdomain of D\n"
          "  --since S      only reports whose period ends after S: a duration back from\n"
          "                 now (90m, 12h, 30d, 2w) or a date (2024-03-01, 2024-03-01T12:00Z)\n"
          "  --format F     table (default, for people), csv or json\n"
          "  --db DSN       libpq connection string or URI (default: PG* environment,\n"
          "                 else the embedded cluster)\n"
          "  -h, --help     show this help\n");
}

int dp_reports_cmd(int argc, char **argv) {
  static const struct option longopts[] = {
      {"db", required_argument, NULL, 'd'},     {"format", required_argument, NULL, 'f'},
      {"domain", required_argument, NULL, 'D'}, {"since", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
  };
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  int st = dp__query_args(&o, "reports", argc, argv, longopts, usage, false);
  if (st >= 0) return st;
  PGconn *c = dp__query_connect("reports", o.db);
  if (!c) return 2;
  char err[512] = "";
  int rc = dp__query_reports(c, &o.filter, o.fmt, stdout, err, sizeof err);
  return dp__query_done("reports", c, rc, err);
}
