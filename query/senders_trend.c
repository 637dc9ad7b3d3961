/* SPDX-License-Identifier: MIT */
/* query/senders_trend.c - `dmarcpipe senders --by day|week`: per sender and
 * period (UTC, by report begin), messages and SPF/DKIM/DMARC alignment, so an
 * admin can watch a fix take effect. One GROUP BY statement. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "query/query_int.h"

/* $1 domain, $2 since, $3 'day'|'week', $4 fail filter (on the sender's
 * totals over the window, as in senders), $5 fold: the unauthenticated
 * networks become one row per period (table form). Reads agg_sender
 * (migration 0003), whose dmarc_pass is the spf_aligned OR dkim_aligned sum. */
static const char *const trend_sql[] = {
    "WITH per AS ("
    "  SELECT CASE WHEN $5::boolean AND a.sender LIKE 'unauthenticated %'"
    "              THEN 'unauthenticated (all networks)' ELSE a.sender END AS sender,"
    "         date_trunc($3::text, a.begin_ts AT TIME ZONE 'UTC') AS period,"
    "         sum(a.messages)::bigint AS messages, sum(a.spf_aligned)::bigint AS spf,"
    "         sum(a.dkim_aligned)::bigint AS dkim, sum(a.dmarc_pass)::bigint AS pass"
    "    FROM agg_sender a" DP_AGG_WHERE
    "   GROUP BY 1, 2"
    "), tot AS ("
    "  SELECT sender, sum(messages) AS m, sum(spf) AS s, sum(dkim) AS d, sum(pass) AS p"
    "    FROM per GROUP BY sender"
    ")"
    " SELECT per.sender, floor(extract(epoch FROM per.period))::bigint, per.messages,"
    "        per.spf, per.dkim, per.pass"
    "   FROM per JOIN tot USING (sender)"
    "  WHERE $4::text = 'all' OR ($4::text = 'spf' AND tot.m > tot.s)"
    "     OR ($4::text = 'dkim' AND tot.m > tot.d) OR ($4::text = 'any' AND tot.m > tot.p)"
    "  ORDER BY tot.m DESC, per.sender, per.period",
};

enum { C_SENDER, C_PERIOD, C_MESSAGES, C_SPF, C_DKIM, C_PASS, C_NCOLS };

enum { T_SENDER, T_PERIOD, T_MESSAGES, T_SPF, T_DKIM, T_PASS, T_SPF_PCT, T_DKIM_PCT, T_PASS_PCT };
static const dp_qcol_t cols[] = {
    {"sender", "SENDER", DP_QT_TEXT, 0, 40},
    {"period", "PERIOD", DP_QT_TEXT, 0, 0},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},
    {"spf_aligned", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"dkim_aligned", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"dmarc_pass", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"spf_aligned_rate", "SPF ALIGNED", DP_QT_PCT, 0, 0},
    {"dkim_aligned_rate", "DKIM ALIGNED", DP_QT_PCT, 0, 0},
    {"pass_rate", "DMARC PASS", DP_QT_PCT, 0, 0},
};

static bool int_of(const PGresult *res, int i, int j, int64_t *v) {
  char *end;
  const char *s = PQgetvalue(res, i, j);
  *v = (int64_t)strtoll(s, &end, 10);
  return !PQgetisnull(res, i, j) && *s && !*end;
}

int dp__query_senders_trend(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                            dp_period_t by, dp_qfmt_t fmt, FILE *out, char *err, size_t errlen) {
  static const char *const fail_names[] = {"all", "spf", "dkim", "any"};
  if (!f->domain || !*f->domain || by == DP_PERIOD_NONE) {
    snprintf(err, errlen, "--domain and --by are required");
    return DP_EUSAGE;
  }
  char since[32];
  const char *params[5] = {f->domain, NULL, by == DP_PERIOD_DAY ? "day" : "week", fail_names[fail],
                           fmt == DP_QFMT_TABLE ? "true" : "false"};
  if (f->has_since) {
    snprintf(since, sizeof since, "%" PRId64, f->since);
    params[1] = since;
  }
  bool opened;
  if (dp__query_agg_begin(c, &opened, err, errlen)) return DP_EPG;
  PGresult *res = PQexecParams(c, trend_sql[0], 5, NULL, params, NULL, NULL, 0);
  dp__query_agg_end(c, opened);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return DP_EPG;
  }
  dp_qres_t *r = dp__query_res_create(cols, sizeof cols / sizeof cols[0]);
  int rc = r ? 0 : DP_ENOMEM;
  if (!rc && PQnfields(res) != C_NCOLS) rc = DP_EPG;
  for (int i = 0; i < PQntuples(res) && !rc; i++) {
    int64_t t, m, spf, dkim, pass;
    if (!int_of(res, i, C_PERIOD, &t) || !int_of(res, i, C_MESSAGES, &m) ||
        !int_of(res, i, C_SPF, &spf) || !int_of(res, i, C_DKIM, &dkim) ||
        !int_of(res, i, C_PASS, &pass)) {
      rc = DP_EPG;
      break;
    }
    char label[32];
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(label, sizeof label, "%Y-%m-%d", &tm))
      snprintf(label, sizeof label, "?");
    rc = dp__query_res_add_row(r);
    if (!rc) rc = dp__query_res_set_text(r, T_SENDER, PQgetvalue(res, i, C_SENDER));
    if (!rc) rc = dp__query_res_set_text(r, T_PERIOD, label);
    dp__query_res_set_int(r, T_MESSAGES, m);
    dp__query_res_set_int(r, T_SPF, spf);
    dp__query_res_set_int(r, T_DKIM, dkim);
    dp__query_res_set_int(r, T_PASS, pass);
    dp__query_res_set_pct(r, T_SPF_PCT, spf, m);
    dp__query_res_set_pct(r, T_DKIM_PCT, dkim, m);
    dp__query_res_set_pct(r, T_PASS_PCT, pass, m);
  }
  PQclear(res);
  if (!rc) rc = dp__query_res_write(r, fmt, out);
  dp__query_res_destroy(r);
  if (rc)
    snprintf(err, errlen, "%s",
             rc == DP_EPG ? "unexpected value in the senders trend result" : dp_strerror(rc));
  return rc;
}
