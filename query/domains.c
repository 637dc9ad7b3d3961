/* SPDX-License-Identifier: MIT */
/* query/domains.c - `dmarcpipe domains`: every policy domain in the stored
 * reports with its volume, recomputed DMARC pass rate, the policy receivers
 * last saw published (p, sp, np, pct, adkim, aspf), how that policy changed
 * over the window, and who reported it. One SQL statement. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "query/query.h"
#include "query/query_int.h"

/* $1 since (epoch seconds or NULL). Policy fields are taken one by one: a
 * receiver that does not report a field (Yahoo has no sp, GMX no pct) says
 * nothing about it, so an empty field is "not reported", never a value. The
 * value shown is the one of the latest report carrying the field; a change
 * is a value first reported after another one, at that first date. */
static const char *const domains_sql[] = {
    "WITH rep AS MATERIALIZED ("
    "  SELECT r.id, r.domain, r.org_name, r.begin_ts, r.end_ts, r.ingested_at,"
    "         r.p, r.sp, r.np, r.pct, r.adkim, r.aspf"
    "    FROM report r WHERE $1::bigint IS NULL OR r.end_ts > to_timestamp($1::bigint)"
    "), agg AS ("
    "  SELECT domain, count(*)::bigint AS reports,"
    "         array_agg(DISTINCT org_name ORDER BY org_name) AS reporters,"
    "         floor(extract(epoch FROM min(begin_ts)))::bigint AS first_seen,"
    "         floor(extract(epoch FROM max(end_ts)))::bigint AS last_seen"
    "    FROM rep GROUP BY domain"
    "), vol AS ("
    "  SELECT rep.domain, sum(h.messages)::bigint AS messages, sum(h.dmarc_pass)::bigint AS pass"
    "    FROM rep JOIN agg_report h ON h.report_key = rep.id"
    "   GROUP BY rep.domain"
    ")",
    ", fv AS ("
    DP_POLICY_FIELDS_SQL
    "), lastp AS ("
    "  SELECT domain, max(v) FILTER (WHERE ord = 1) AS p, max(v) FILTER (WHERE ord = 2) AS sp,"
    "         max(v) FILTER (WHERE ord = 3) AS np, max(v) FILTER (WHERE ord = 4) AS pct,"
    "         max(v) FILTER (WHERE ord = 5) AS adkim, max(v) FILTER (WHERE ord = 6) AS aspf"
    "    FROM lastv GROUP BY domain"
    "), firsts AS ("
    "  SELECT domain, ord, k, v, min(begin_ts) AS first_seen FROM fv GROUP BY 1, 2, 3, 4"
    "), chg AS ("
    "  SELECT domain, ord, first_seen, lag(v) OVER w AS prev,"
    "         k || '=' || lag(v) OVER w || '->' || v || ' on '"
    "           || to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS txt"
    "    FROM firsts WINDOW w AS (PARTITION BY domain, ord ORDER BY first_seen, v)"
    "), chl AS ("
    "  SELECT domain, array_agg(txt ORDER BY first_seen, ord) AS changes"
    "    FROM chg WHERE prev IS NOT NULL GROUP BY domain"
    ")",
    " SELECT a.domain, a.reports, coalesce(vol.messages, 0), coalesce(vol.pass, 0),"
    "        lp.p, lp.sp, lp.np, lp.pct, lp.adkim, lp.aspf,"
    "        chl.changes IS NOT NULL, coalesce(chl.changes, '{}'), a.reporters,"
    "        a.first_seen, a.last_seen"
    "   FROM agg a LEFT JOIN vol USING (domain) LEFT JOIN lastp lp USING (domain)"
    "   LEFT JOIN chl USING (domain)"
    "  ORDER BY 3 DESC, a.domain",
};

enum {
  Q_DOMAIN,
  Q_REPORTS,
  Q_MESSAGES,
  Q_PASS,
  Q_P,
  Q_SP,
  Q_NP,
  Q_PCT,
  Q_ADKIM,
  Q_ASPF,
  Q_CHANGED,
  Q_CHANGES,
  Q_REPORTERS,
  Q_FIRST,
  Q_LAST,
  Q_NCOLS
};

/* Output columns: machine formats carry counts and lists, the table shares
 * and the number of reporters. */
enum {
  O_DOMAIN,
  O_REPORTS,
  O_MESSAGES,
  O_PASS,
  O_RATE,
  O_P,
  O_SP,
  O_NP,
  O_PCT,
  O_ADKIM,
  O_ASPF,
  O_NREP,
  O_CHANGED,
  O_REPORTERS,
  O_FIRST,
  O_LAST,
  O_CHANGES
};
static const dp_qcol_t cols[] = {
    {"domain", "DOMAIN", DP_QT_TEXT, 0, 40},
    {"reports", "REPORTS", DP_QT_INT, 0, 0},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},
    {"dmarc_pass", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"dmarc_pass_rate", "DMARC PASS", DP_QT_PCT, DP_QCOL_TABLEONLY, 0},
    {"p", "P", DP_QT_TEXT, 0, 12},
    {"sp", "SP", DP_QT_TEXT, 0, 12},
    {"np", "NP", DP_QT_TEXT, 0, 12},
    {"pct", "PCT", DP_QT_INT, 0, 0},
    {"adkim", "ADKIM", DP_QT_TEXT, 0, 5},
    {"aspf", "ASPF", DP_QT_TEXT, 0, 5},
    {"n_reporters", "REPORTERS", DP_QT_INT, DP_QCOL_TABLEONLY, 0},
    {"policy_changed", NULL, DP_QT_BOOL, DP_QCOL_NOTABLE, 0},
    {"reporters", NULL, DP_QT_LIST, DP_QCOL_NOTABLE, 0},
    {"first_seen", NULL, DP_QT_TIME, DP_QCOL_NOTABLE, 0},
    {"last_seen", NULL, DP_QT_TIME, DP_QCOL_NOTABLE, 0},
    {"policy_changes", "POLICY CHANGES", DP_QT_LIST, 0, 0},
};

static bool int_of(const PGresult *res, int i, int j, int64_t *v) {
  char *end;
  const char *s = PQgetvalue(res, i, j);
  *v = (int64_t)strtoll(s, &end, 10);
  return !PQgetisnull(res, i, j) && *s && !*end;
}

static int text_of(dp_qres_t *r, size_t col, const PGresult *res, int i, int j) {
  return dp__query_res_set_text(r, col, PQgetisnull(res, i, j) ? NULL : PQgetvalue(res, i, j));
}

static int add_row(dp_qres_t *r, const PGresult *res, int i, int64_t *messages) {
  int64_t reports, pass, first, last, pct;
  if (!int_of(res, i, Q_REPORTS, &reports) || !int_of(res, i, Q_MESSAGES, messages) ||
      !int_of(res, i, Q_PASS, &pass) || !int_of(res, i, Q_FIRST, &first) ||
      !int_of(res, i, Q_LAST, &last))
    return DP_EPG;
  int rc = dp__query_res_add_row(r);
  if (!rc) rc = text_of(r, O_DOMAIN, res, i, Q_DOMAIN);
  dp__query_res_set_int(r, O_REPORTS, reports);
  dp__query_res_set_int(r, O_MESSAGES, *messages);
  dp__query_res_set_int(r, O_PASS, pass);
  dp__query_res_set_pct(r, O_RATE, pass, *messages);
  if (!rc) rc = text_of(r, O_P, res, i, Q_P);
  if (!rc) rc = text_of(r, O_SP, res, i, Q_SP);
  if (!rc) rc = text_of(r, O_NP, res, i, Q_NP);
  if (!PQgetisnull(res, i, Q_PCT)) {
    if (!int_of(res, i, Q_PCT, &pct)) return DP_EPG;
    dp__query_res_set_int(r, O_PCT, pct);
  }
  if (!rc) rc = text_of(r, O_ADKIM, res, i, Q_ADKIM);
  if (!rc) rc = text_of(r, O_ASPF, res, i, Q_ASPF);
  dp__query_res_set_int(r, O_CHANGED, !strcmp(PQgetvalue(res, i, Q_CHANGED), "t"));
  if (!rc) rc = dp__query_res_set_pgarray(r, O_CHANGES, PQgetvalue(res, i, Q_CHANGES));
  if (!rc) rc = dp__query_res_set_pgarray(r, O_REPORTERS, PQgetvalue(res, i, Q_REPORTERS));
  char **items;
  size_t n;
  if (!rc && dp__query_pgarray_parse(PQgetvalue(res, i, Q_REPORTERS), &items, &n) == 0) {
    dp__query_res_set_int(r, O_NREP, (int64_t)n);
    for (size_t k = 0; k < n; k++)
      free(items[k]);
    free(items);
  }
  dp__query_res_set_int(r, O_FIRST, first);
  dp__query_res_set_int(r, O_LAST, last);
  return rc;
}

int dp__query_domains(PGconn *c, const dp_query_filter_t *f, dp_qfmt_t fmt, FILE *out, char *err,
                      size_t errlen) {
  char since[32];
  const char *params[1] = {NULL};
  if (f->has_since) {
    snprintf(since, sizeof since, "%" PRId64, f->since);
    params[0] = since;
  }
  dp_buf_t sql;
  dp_buf_init(&sql, 0);
  for (size_t k = 0; k < sizeof domains_sql / sizeof domains_sql[0]; k++)
    if (dp_buf_puts(&sql, domains_sql[k])) {
      dp_buf_free(&sql);
      snprintf(err, errlen, "%s", dp_strerror(DP_ENOMEM));
      return DP_ENOMEM;
    }
  bool opened;
  if (dp__query_agg_begin(c, &opened, err, errlen)) {
    dp_buf_free(&sql);
    return DP_EPG;
  }
  PGresult *res = PQexecParams(c, sql.data, 1, NULL, params, NULL, NULL, 0);
  dp__query_agg_end(c, opened);
  dp_buf_free(&sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return DP_EPG;
  }
  dp_qres_t *r = dp__query_res_create(cols, sizeof cols / sizeof cols[0]);
  int rc = r ? 0 : DP_ENOMEM;
  if (!rc && PQnfields(res) != Q_NCOLS) rc = DP_EPG;
  int64_t total = 0, m = 0;
  int nt = PQntuples(res);
  for (int i = 0; i < nt && !rc; i++) {
    rc = add_row(r, res, i, &m);
    total += m;
  }
  PQclear(res);
  if (!rc && fmt == DP_QFMT_TABLE) {
    char line[128];
    snprintf(line, sizeof line, "%d domain%s, %" PRId64 " message%s", nt, nt == 1 ? "" : "s", total,
             total == 1 ? "" : "s");
    rc = dp__query_res_add_footer(r, line);
  }
  if (!rc) rc = dp__query_res_write(r, fmt, out);
  dp__query_res_destroy(r);
  if (rc)
    snprintf(err, errlen, "%s",
             rc == DP_EPG ? "unexpected value in the domains query result" : dp_strerror(rc));
  return rc;
}

static void usage(FILE *f) {
  fprintf(f, "usage: dmarcpipe domains [--since S] [--format table|csv|json] [--db DSN]\n"
             "\n"
             "Every policy domain in the stored reports, most mail first: reports, messages,\n"
             "DMARC pass rate (recomputed from the auth results), the policy receivers last\n"
             "saw published (p, sp, np, pct, adkim, aspf), how it changed, and reporters.\n"
             "\n"
             "  --since S      only reports whose period ends after S: a duration back from\n"
             "                 now (90m, 12h, 30d, 2w) or a date (2024-03-01, 2024-03-01T12:00Z)\n"
             "  --format F     table (default, for people), csv or json\n"
             "  --db DSN       libpq connection string or URI (default: PG* environment,\n"
             "                 else the embedded cluster)\n"
             "  -h, --help     show this help\n");
}

int dp_domains_cmd(int argc, char **argv) {
  static const struct option longopts[] = {
      {"db", required_argument, NULL, 'd'},
      {"format", required_argument, NULL, 'f'},
      {"since", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  int st = dp__query_args(&o, "domains", argc, argv, longopts, usage, false);
  if (st >= 0) return st;
  PGconn *c = dp__query_connect("domains", o.db);
  if (!c) return 2;
  char err[512] = "";
  int rc = dp__query_domains(c, &o.filter, o.fmt, stdout, err, sizeof err);
  return dp__query_done("domains", c, rc, err);
}
