/* SPDX-License-Identifier: MIT */
/* query/errors.c - `dmarcpipe errors`: the inputs, parts and reports that
 * ingestion refused (table ingest_error), newest first, with the reason. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "query/query.h"
#include "query/query_int.h"

static const dp_qcol_t error_cols[] = {
    {"at", "AT (UTC)", DP_QT_TIME, 0, 0},          {"source", "SOURCE", DP_QT_TEXT, 0, 40},
    {"part", "PART", DP_QT_TEXT, 0, 24},           {"org_name", "ORG", DP_QT_TEXT, 0, 20},
    {"report_id", "REPORT ID", DP_QT_TEXT, 0, 24}, {"code", "CODE", DP_QT_TEXT, 0, 16},
    {"reason", "REASON", DP_QT_TEXT, 0, 0},
};
#define N_ERROR_COLS (sizeof error_cols / sizeof error_cols[0])

static const char errors_sql[] =
    "SELECT floor(extract(epoch FROM at))::bigint, source, part, org_name, report_id, code, reason"
    "  FROM ingest_error"
    " WHERE ($1::bigint IS NULL OR at > to_timestamp($1::bigint))"
    " ORDER BY at DESC, id DESC";

int dp__query_errors(PGconn *c, const dp_query_filter_t *f, dp_qfmt_t fmt, FILE *out, char *err,
                     size_t errlen) {
  char since[32];
  const char *params[1] = {NULL};
  if (f->has_since) {
    snprintf(since, sizeof since, "%" PRId64, f->since);
    params[0] = since;
  }
  PGresult *res = PQexecParams(c, errors_sql, 1, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return DP_EPG;
  }
  dp_qres_t *r = dp__query_res_create(error_cols, N_ERROR_COLS);
  int rc = r ? dp__query_res_append_pg(r, res) : DP_ENOMEM;
  PQclear(res);
  if (!rc) {
    char line[64];
    size_t n = dp__query_res_rows(r);
    snprintf(line, sizeof line, "%zu refused input%s", n, n == 1 ? "" : "s");
    rc = dp__query_res_add_footer(r, line);
  }
  if (!rc) rc = dp__query_res_write(r, fmt, out);
  if (rc == DP_EPG)
    snprintf(err, errlen, "unexpected value in the errors query result");
  else if (rc)
    snprintf(err, errlen, "%s", dp_strerror(rc));
  dp__query_res_destroy(r);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f, "usage: dmarcpipe errors [--since S] [--format table|csv|json] [--db DSN]\n"
             "\n"
             "List inputs and reports that ingestion refused, newest first, with the reason.\n"
             "\n"
             "  --since S      only errors recorded after S: a duration back from now\n"
             "                 (90m, 12h, 30d, 2w) or a date (2024-03-01, 2024-03-01T12:00Z)\n"
             "  --format F     table (default, for people), csv or json\n"
             "  --db DSN       libpq connection string or URI (default: PG* environment,\n"
             "                 else the embedded cluster)\n"
             "  -h, --help     show this help\n");
}

int dp_errors_cmd(int argc, char **argv) {
  static const struct option longopts[] = {
      {"db", required_argument, NULL, 'd'},
      {"format", required_argument, NULL, 'f'},
      {"since", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  int st = dp__query_args(&o, "errors", argc, argv, longopts, usage, false);
  if (st >= 0) return st;
  PGconn *c = dp__query_connect("errors", o.db);
  if (!c) return 2;
  char err[512] = "";
  int rc = dp__query_errors(c, &o.filter, o.fmt, stdout, err, sizeof err);
  return dp__query_done("errors", c, rc, err);
}
