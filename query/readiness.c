/* SPDX-License-Identifier: MIT */
/* query/readiness.c - `dmarcpipe readiness`: how much of a domain's mail
 * p=reject would block today, split into fixable (a service authenticates
 * but not aligned), forwarded (forwarding, mailing lists) and unauthenticated
 * (likely spoofing), the strict-alignment what-if, receivers that disagree,
 * the senders to fix, an optional day/week trend, and a verdict. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "query/query.h"
#include "query/query_int.h"

/* Verdict thresholds (docs/queries.md "Verdict"). A sender to fix blocks the
 * move when its fixable failures reach 0.1% of D's mail: below that it is
 * noise (often spam whose own domain passes SPF). Forwarded mail cannot be
 * fixed by D; above 2% of D's mail p=reject would lose too much of it. */
#define BLOCKING_PERMILLE 1
#define MAX_FORWARDED_PERMILLE 20
#define DISAGREE_TOP 10

/* ======================================================================== */
/* SQL */

/* Both statements read the aggregates maintained at ingest (migration 0003)
 * through DP_AGG_WHERE ($1 domain, $2 since); the record-level forms are kept
 * in tests/query/test_aggregates.c, which checks that both give the same answers. */
/* $3 period ('day', 'week' or NULL). Classification of a failing record
 * (NOT (spf_aligned OR dkim_aligned)), first rule that applies:
 *   1. forwarded: a receiver gave it a forwarding reason (forwarded,
 *      mailing_list, trusted_forwarder, or a comment "arc=pass"), or gave one
 *      to another of D's records from the same source_ip in the window;
 *   2. forwarded: it carries a failing DKIM signature of D (or a subdomain)
 *      whose domain and selector verify in other records of the window: D's
 *      own signature, broken in transit (a failing signature without a
 *      selector goes by its domain; a pass without one vouches for no
 *      selector: a key that never verified is not forwarding);
 *   3. fixable: some SPF or DKIM result passes (the sender is a domain, as
 *      dp_align_record found at ingest);
 *   4. unauthenticated: nothing passes. */
/* The aggregates keep no source address in agg_class: rule 1's "same
 * source_ip" is applied by taking the agg_fail_ip rows (failing mail without a
 * forwarding reason, per address) of the addresses that had a forwarding
 * reason in the window out of the class rules 2-4 gave them (count negated)
 * and adding them back as forwarded. */
#define CLASS_OF(x)                                                                                \
  "CASE WHEN " x ".pass THEN 'pass' WHEN " x ".fwd_reason THEN 'forwarded'"                        \
  "     WHEN EXISTS (SELECT 1 FROM unnest(" x ".fs_dom, " x ".fs_sel) AS f(dom, sel)"              \
  "                    JOIN good_sig g ON " DP_GOOD_SIG_HAS("f.dom", "f.sel") ")"                  \
  "       THEN 'forwarded'"                                                                        \
  "     WHEN " x ".authenticated THEN 'fixable' ELSE 'unauthenticated' END"
#define PERIOD_OF(x)                                                                               \
  "CASE WHEN $3::text IS NULL THEN NULL"                                                         \
  "     ELSE date_trunc($3::text, " x ".begin_ts AT TIME ZONE 'UTC') END"
static const char *const class_sql[] = {
    "WITH fwd_ip AS MATERIALIZED ("
    "  SELECT DISTINCT a.source_ip FROM agg_fwd_ip a" DP_AGG_WHERE
    "), " DP_GOOD_SIG_CTE
    ", moved AS MATERIALIZED ("
    "  SELECT a.* FROM agg_fail_ip a" DP_AGG_WHERE
    "     AND a.source_ip IN (SELECT source_ip FROM fwd_ip)"
    /* unauthenticated senders are never fixable: one NULL group for them all
     * (HAVING drops it) instead of one per network */
    "), cls AS ("
    "  SELECT CASE WHEN a.authenticated THEN a.csender END AS sender, a.messages AS count,"
    "         " PERIOD_OF("a") " AS period, a.pass, a.pass_strict, " CLASS_OF("a") " AS class"
    "    FROM agg_class a" DP_AGG_WHERE
    "   UNION ALL"
    "  SELECT CASE WHEN m.authenticated THEN m.csender END, -m.messages, " PERIOD_OF("m") ","
    "         false, m.pass_strict, " CLASS_OF("m")
    "    FROM (SELECT moved.*, false AS pass, false AS fwd_reason FROM moved) m"
    "   UNION ALL"
    "  SELECT CASE WHEN m.authenticated THEN m.csender END, m.messages, " PERIOD_OF("m") ","
    "         false, m.pass_strict, 'forwarded'"
    "    FROM moved m"
    "), rep AS ("
    "  SELECT count(DISTINCT r.id) AS reports, count(DISTINCT r.org_name) AS orgs"
    "    FROM agg_report h JOIN report r ON r.id = h.report_key"
    "   WHERE (r.domain = $1::text OR h.header_from = $1::text"
    "          OR right(h.header_from, length($1::text) + 1) = '.' || $1::text)"
    "     AND ($2::bigint IS NULL OR r.end_ts > to_timestamp($2::bigint))"
    ")",
    " SELECT GROUPING(period, sender),"
    "        floor(extract(epoch FROM period))::bigint, sender,"
    "        coalesce(sum(count), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE pass), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE class = 'fixable'), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE class = 'forwarded'), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE class = 'unauthenticated'), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE NOT pass_strict), 0)::bigint,"
    "        (SELECT reports FROM rep), (SELECT orgs FROM rep)"
    "   FROM cls"
    "  GROUP BY GROUPING SETS ((), (period), (sender))"
    " HAVING GROUPING(sender) = 1 OR sum(count) FILTER (WHERE class = 'fixable') > 0"
    "  ORDER BY 1, 2, 3",
};

enum {
  K_GROUPING,
  K_PERIOD,
  K_SENDER,
  K_MSG,
  K_PASS,
  K_FIX,
  K_FWD,
  K_UNAUTH,
  K_STRICT,
  K_REPORTS,
  K_ORGS,
  K_NCOLS
};

/* Receivers that disagree, $1 domain, $2 since. Per (source_ip, header_from):
 * two different receivers' policy_evaluated say pass and fail for the same
 * mechanism, or a receiver's verdict differs from the alignment recomputed
 * from its own auth results (strict when the report's adkim/aspf is s). */
static const char *const disagree_sql[] = {
    /* Only pairs flagged over everything stored can be flagged here
     * (agg_dis_pair in migration 0003): their details alone are read, from
     * the side table of a row per pair and batch (migration 0005). */
    "WITH rec AS MATERIALIZED ("
    "  SELECT p.header_from, p.source_ip, a.* FROM agg_dis_pair p"
    "    JOIN agg_dis_detail dd ON dd.k = p.k,"
    "         unnest(dd.d_domain, dd.d_begin, dd.d_end, dd.d_org, dd.d_pd, dd.d_ps, dd.d_dk_re,"
    "                dd.d_sp_re, dd.d_messages)"
    "           AS a(domain, begin_ts, end_ts, org_name, pd, ps, dk_re, sp_re, messages)"
    "   WHERE p.flagged AND (a.domain = $1::text OR p.header_from = $1::text"
    "         OR right(p.header_from, length($1::text) + 1) = '.' || $1::text)"
    "     AND ($2::bigint IS NULL OR a.end_ts > to_timestamp($2::bigint))"
    ")",
    ", src AS ("
    "  SELECT source_ip, header_from, sum(messages)::bigint AS messages,"
    "         (bool_or(pd = 'pass') AND bool_or(pd = 'fail')"
    "          AND count(DISTINCT org_name) FILTER (WHERE pd IN ('pass', 'fail')) > 1) AS dk_rcv,"
    "         (bool_or(ps = 'pass') AND bool_or(ps = 'fail')"
    "          AND count(DISTINCT org_name) FILTER (WHERE ps IN ('pass', 'fail')) > 1) AS sp_rcv,"
    "         coalesce(bool_or(dk_re), false) AS dk_re, coalesce(bool_or(sp_re), false) AS sp_re,"
    "         array_agg(DISTINCT org_name || ': dkim=' || coalesce(nullif(pd, ''), '-')"
    "                   || ' spf=' || coalesce(nullif(ps, ''), '-')) AS verdicts"
    "    FROM rec GROUP BY source_ip, header_from"
    "), flagged AS (SELECT * FROM src WHERE dk_rcv OR sp_rcv OR dk_re OR sp_re)",
    " SELECT (SELECT count(DISTINCT source_ip) FROM flagged),"
    "        host(source_ip), header_from, messages,"
    "        array_remove(ARRAY["
    "          CASE WHEN dk_rcv THEN 'dkim: receivers disagree' END,"
    "          CASE WHEN sp_rcv THEN 'spf: receivers disagree' END,"
    "          CASE WHEN dk_re THEN 'dkim: receiver verdict differs from its auth results' END,"
    "          CASE WHEN sp_re THEN 'spf: receiver verdict differs from its auth results' END"
    "        ], NULL),"
    "        verdicts"
    "   FROM flagged ORDER BY messages DESC, source_ip, header_from LIMIT 10",
};

/* ======================================================================== */
/* Fetch */

void dp__query_readiness_free(dp_readiness_t *r) {
  if (!r) return;
  dp__query_senders_free(r->to_fix, r->n_to_fix);
  free(r->to_fix_fixable);
  free(r->trend);
  for (size_t i = 0; i < r->n_disagree; i++) {
    dp_disagreement_t *d = &r->disagree[i];
    free(d->source_ip);
    free(d->header_from);
    for (size_t k = 0; k < d->n_reasons; k++)
      free(d->reasons[k]);
    free(d->reasons);
    for (size_t k = 0; k < d->n_verdicts; k++)
      free(d->verdicts[k]);
    free(d->verdicts);
  }
  free(r->disagree);
  memset(r, 0, sizeof *r);
}

static int64_t ival(const PGresult *res, int i, int j, bool *bad) {
  char *end;
  const char *s = PQgetvalue(res, i, j);
  long long v = strtoll(s, &end, 10);
  if (PQgetisnull(res, i, j) || !*s || *end) *bad = true;
  return (int64_t)v;
}

static void counts_from(const PGresult *res, int i, dp_readiness_counts_t *c, bool *bad) {
  c->messages = ival(res, i, K_MSG, bad);
  c->dmarc_pass = ival(res, i, K_PASS, bad);
  c->dmarc_fail = c->messages - c->dmarc_pass;
  c->fail_fixable = ival(res, i, K_FIX, bad);
  c->fail_forwarded = ival(res, i, K_FWD, bad);
  c->fail_unauthenticated = ival(res, i, K_UNAUTH, bad);
  c->dmarc_fail_if_strict = ival(res, i, K_STRICT, bad);
}

static PGresult *run(PGconn *c, const char *const *parts, size_t nparts, int nparams,
                     const char *const *params, char *err, size_t errlen) {
  dp_buf_t sql;
  dp_buf_init(&sql, 0);
  for (size_t k = 0; k < nparts; k++)
    if (dp_buf_puts(&sql, parts[k])) {
      dp_buf_free(&sql);
      snprintf(err, errlen, "%s", dp_strerror(DP_ENOMEM));
      return NULL;
    }
  PGresult *res = PQexecParams(c, sql.data, nparams, NULL, params, NULL, NULL, 0);
  dp_buf_free(&sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return NULL;
  }
  return res;
}

/* Per-sender fixable counts from the class query, matched to senders rows. */
struct fixable {
  const char *sender;
  int64_t n;
};

static int fetch_classes(PGconn *c, const char *const *params, dp_period_t by, dp_readiness_t *r,
                         struct fixable **fx, size_t *nfx, PGresult **keep, char *err,
                         size_t errlen) {
  PGresult *res = run(c, class_sql, sizeof class_sql / sizeof class_sql[0], 3, params, err, errlen);
  if (!res) return DP_EPG;
  int nt = PQntuples(res);
  bool bad = PQnfields(res) != K_NCOLS;
  *fx = nt ? calloc((size_t)nt, sizeof **fx) : NULL;
  r->trend = nt && by != DP_PERIOD_NONE ? calloc((size_t)nt, sizeof *r->trend) : NULL;
  if (nt && (!*fx || (by != DP_PERIOD_NONE && !r->trend))) {
    PQclear(res);
    snprintf(err, errlen, "%s", dp_strerror(DP_ENOMEM));
    return DP_ENOMEM;
  }
  for (int i = 0; i < nt && !bad; i++) {
    /* GROUPING(period, sender): 3 total, 1 per period, 2 per sender. */
    int64_t g = ival(res, i, K_GROUPING, &bad);
    if (g == 3) {
      counts_from(res, i, &r->total, &bad);
      r->reports = ival(res, i, K_REPORTS, &bad);
      r->receivers = ival(res, i, K_ORGS, &bad);
    } else if (g == 1) {
      if (by == DP_PERIOD_NONE) continue;
      dp_readiness_period_t *p = &r->trend[r->n_trend++];
      p->start = ival(res, i, K_PERIOD, &bad);
      counts_from(res, i, &p->c, &bad);
    } else if (g == 2) {
      (*fx)[*nfx].sender = PQgetvalue(res, i, K_SENDER);
      (*fx)[*nfx].n = ival(res, i, K_FIX, &bad);
      (*nfx)++;
    } else {
      bad = true;
    }
  }
  *keep = res;
  if (bad) {
    snprintf(err, errlen, "unexpected value in the readiness query result");
    return DP_EPG;
  }
  return 0;
}

static int cmp_fix(const void *a, const void *b) {
  const struct fixable *x = a, *y = b;
  if (x->n != y->n) return x->n > y->n ? -1 : 1;
  return strcmp(x->sender, y->sender);
}

/* Keep the senders rows that have fixable failures, in fx order. */
static int pick_senders(dp_readiness_t *r, dp_sender_t *rows, size_t n, struct fixable *fx,
                        size_t nfx) {
  if (nfx) qsort(fx, nfx, sizeof *fx, cmp_fix);
  r->to_fix = nfx ? calloc(nfx, sizeof *r->to_fix) : NULL;
  r->to_fix_fixable = nfx ? calloc(nfx, sizeof *r->to_fix_fixable) : NULL;
  if (nfx && (!r->to_fix || !r->to_fix_fixable)) return DP_ENOMEM;
  for (size_t k = 0; k < nfx; k++)
    for (size_t i = 0; i < n; i++) {
      if (!rows[i].sender || strcmp(rows[i].sender, fx[k].sender)) continue;
      /* Move the row: its slot in rows is cleared so freeing rows skips it. */
      r->to_fix[r->n_to_fix] = rows[i];
      r->to_fix_fixable[r->n_to_fix++] = fx[k].n;
      memset(&rows[i], 0, sizeof rows[i]);
      break;
    }
  return 0;
}

static int fetch_disagree(PGconn *c, const char *const *params, dp_readiness_t *r, char *err,
                          size_t errlen) {
  PGresult *res =
      run(c, disagree_sql, sizeof disagree_sql / sizeof disagree_sql[0], 2, params, err, errlen);
  if (!res) return DP_EPG;
  int nt = PQntuples(res);
  bool bad = PQnfields(res) != 6;
  int rc = 0;
  if (nt && !(r->disagree = calloc((size_t)nt, sizeof *r->disagree))) rc = DP_ENOMEM;
  for (int i = 0; i < nt && !bad && !rc; i++) {
    dp_disagreement_t *d = &r->disagree[r->n_disagree++];
    r->disagree_sources = ival(res, i, 0, &bad);
    d->messages = ival(res, i, 3, &bad);
    if (!(d->source_ip = strdup(PQgetvalue(res, i, 1))) ||
        !(d->header_from = strdup(PQgetvalue(res, i, 2))))
      rc = DP_ENOMEM;
    else if (dp__query_pgarray_parse(PQgetvalue(res, i, 4), &d->reasons, &d->n_reasons) ||
             dp__query_pgarray_parse(PQgetvalue(res, i, 5), &d->verdicts, &d->n_verdicts))
      bad = true;
  }
  PQclear(res);
  if (!rc && bad) rc = DP_EPG;
  if (rc)
    snprintf(err, errlen, "%s",
             rc == DP_EPG ? "unexpected value in the disagreement query result" : dp_strerror(rc));
  return rc;
}

int dp__query_readiness_fetch(PGconn *c, const dp_query_filter_t *f, dp_period_t by,
                              dp_readiness_t *r, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  if (!f->domain || !*f->domain) {
    snprintf(err, errlen, "--domain is required");
    return DP_EUSAGE;
  }
  char since[32];
  const char *params[3] = {f->domain, NULL,
                           by == DP_PERIOD_DAY    ? "day"
                           : by == DP_PERIOD_WEEK ? "week"
                                                  : NULL};
  if (f->has_since) {
    snprintf(since, sizeof since, "%" PRId64, f->since);
    params[1] = since;
  }
  /* One snapshot: the totals, the senders and the disagreements must add up
   * even while an ingest is committing. */
  bool opened;
  if (dp__query_agg_begin(c, &opened, err, errlen)) return DP_EPG;
  struct fixable *fx = NULL;
  size_t nfx = 0;
  PGresult *cls = NULL;
  dp_sender_t *rows = NULL;
  size_t n = 0;
  int rc = fetch_classes(c, params, by, r, &fx, &nfx, &cls, err, errlen);
  if (!rc && nfx) {
    /* the details of the senders with fixable mail only */
    const char **names = calloc(nfx, sizeof *names);
    if (!names) {
      rc = DP_ENOMEM;
      snprintf(err, errlen, "%s", dp_strerror(rc));
    }
    for (size_t i = 0; names && i < nfx; i++)
      names[i] = fx[i].sender;
    if (names)
      rc = dp__query_senders_fetch_named(c, f, DP_FAIL_ANY, names, nfx, &rows, &n, err, errlen);
    free(names);
  }
  if (!rc && (rc = pick_senders(r, rows, n, fx, nfx))) snprintf(err, errlen, "%s", dp_strerror(rc));
  dp__query_senders_free(rows, n);
  free(fx);
  PQclear(cls);
  if (!rc) rc = fetch_disagree(c, params, r, err, errlen);
  if (opened) PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT"));
  if (rc) {
    dp__query_readiness_free(r);
    return rc;
  }
  dp__query_readiness_verdict(r, f->domain);
  return 0;
}

/* ======================================================================== */
/* Verdict */

/* "12.5%" of num/den into out. */
static void pct_str(char *out, size_t len, int64_t num, int64_t den) {
  char p[16];
  dp__query_pct(p, sizeof p, num, den);
  snprintf(out, len, "%s%%", den > 0 ? p : "0.0");
}

void dp__query_readiness_verdict(dp_readiness_t *r, const char *domain) {
  const dp_readiness_counts_t *t = &r->total;
  r->n_blocking = 0;
  /* Senders below the blocking share are left out of the verdict (mostly
   * spam passing its own SPF), but their sum is said: many of them can add
   * up to mail an admin would not want to block unseen. */
  int64_t small = 0;
  size_t n_small = 0;
  for (size_t i = 0; i < r->n_to_fix; i++) {
    if (r->to_fix_fixable[i] * 1000 >= t->messages * BLOCKING_PERMILLE) {
      r->n_blocking++;
    } else if (r->to_fix_fixable[i] > 0) {
      small += r->to_fix_fixable[i];
      n_small++;
    }
  }
  char fwd[32], fail[32], unauth[32], smallp[32], tail[160] = "";
  pct_str(fwd, sizeof fwd, t->fail_forwarded, t->messages);
  pct_str(fail, sizeof fail, t->dmarc_fail, t->messages);
  pct_str(unauth, sizeof unauth, t->fail_unauthenticated, t->messages);
  pct_str(smallp, sizeof smallp, small, t->messages);
  if (n_small)
    snprintf(tail, sizeof tail,
             "; %s from %zu small sender%s, each under %.1f%% (usually spam passing its own SPF: "
             "check the list below)",
             smallp, n_small, n_small == 1 ? "" : "s", BLOCKING_PERMILLE / 10.0);
  size_t nb = r->n_blocking;
  if (t->messages <= 0) {
    r->verdict = "not ready";
    snprintf(r->verdict_line, sizeof r->verdict_line, "not ready");
    snprintf(r->verdict_reason, sizeof r->verdict_reason,
             "no mail of %s in the stored reports (in the window): nothing to judge", domain);
    return;
  }
  if (t->fail_forwarded * 1000 > t->messages * MAX_FORWARDED_PERMILLE) {
    r->verdict = "not ready";
    snprintf(r->verdict_line, sizeof r->verdict_line, "not ready");
    snprintf(r->verdict_reason, sizeof r->verdict_reason,
             "%s of the mail is forwarded or mailing-list mail that fails DMARC (more than %d%%): "
             "p=reject would lose it; sign all mail with d=%s (DKIM survives plain forwarding)%s",
             fwd, MAX_FORWARDED_PERMILLE / 10, domain, nb ? ", and fix the senders below" : "");
    return;
  }
  if (nb) {
    r->verdict = "ready after fixing";
    snprintf(r->verdict_line, sizeof r->verdict_line, "ready after fixing %zu sender%s", nb,
             nb == 1 ? "" : "s");
    snprintf(r->verdict_reason, sizeof r->verdict_reason,
             "%zu legitimate-looking sender%s authenticate%s but not aligned with %s; once "
             "fixed, what fails is forwarding (%s) and unauthenticated mail (%s)%s",
             nb, nb == 1 ? "" : "s", nb == 1 ? "s" : "", domain, fwd, unauth, tail);
    return;
  }
  r->verdict = "ready";
  snprintf(r->verdict_line, sizeof r->verdict_line, "ready");
  snprintf(r->verdict_reason, sizeof r->verdict_reason,
           "%s fails DMARC: %s unauthenticated (what p=reject is for), %s forwarded; no sender "
           "to fix%s",
           fail, unauth, fwd, tail);
}

/* ======================================================================== */
/* Output */

static void period_label(char *out, size_t len, int64_t t) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm)) {
    snprintf(out, len, "?");
    return;
  }
  strftime(out, len, "%Y-%m-%d", &tm);
}

static const char *by_name(dp_period_t by) {
  return by == DP_PERIOD_DAY ? "day" : by == DP_PERIOD_WEEK ? "week" : NULL;
}

/* Summary: one row, machine formats. */
enum {
  S_DOMAIN,
  S_SINCE,
  S_BY,
  S_REPORTS,
  S_RECEIVERS,
  S_MESSAGES,
  S_PASS,
  S_FAIL,
  S_FIX,
  S_FWD,
  S_UNAUTH,
  S_STRICT,
  S_NFIX,
  S_NBLOCK,
  S_DISAGREE,
  S_VERDICT,
  S_VLINE,
  S_REASON,
  S_NCOLS
};
static const dp_qcol_t summary_cols[] = {
    {"domain", NULL, DP_QT_TEXT, 0, 0},
    {"since", NULL, DP_QT_TIME, 0, 0},
    {"by", NULL, DP_QT_TEXT, 0, 0},
    {"reports", NULL, DP_QT_INT, 0, 0},
    {"receivers", NULL, DP_QT_INT, 0, 0},
    {"messages", NULL, DP_QT_INT, 0, 0},
    {"dmarc_pass", NULL, DP_QT_INT, 0, 0},
    {"dmarc_fail", NULL, DP_QT_INT, 0, 0},
    {"fail_fixable", NULL, DP_QT_INT, 0, 0},
    {"fail_forwarded", NULL, DP_QT_INT, 0, 0},
    {"fail_unauthenticated", NULL, DP_QT_INT, 0, 0},
    {"dmarc_fail_if_strict", NULL, DP_QT_INT, 0, 0},
    {"senders_to_fix_count", NULL, DP_QT_INT, 0, 0},
    {"senders_blocking", NULL, DP_QT_INT, 0, 0},
    {"receivers_disagree", NULL, DP_QT_INT, 0, 0},
    {"verdict", NULL, DP_QT_TEXT, 0, 0},
    {"verdict_line", NULL, DP_QT_TEXT, 0, 0},
    {"verdict_reason", NULL, DP_QT_TEXT, 0, 0},
};

/* The senders to fix: the senders JSON keys plus fail_fixable and blocking. */
enum {
  F_SENDER,
  F_THIRD,
  F_MESSAGES,
  F_FIXABLE,
  F_BLOCKING,
  F_SPF,
  F_DKIM,
  F_DMARC,
  F_SPF_S,
  F_DKIM_S,
  F_POLICY,
  F_IPS,
  F_DKIM_DOMS,
  F_SPF_DOMS,
  F_REPORTERS,
  F_FIRST,
  F_LAST,
  F_FIX,
  F_SERVICE,
  F_SERVICE_KIND
};
static const dp_qcol_t fix_cols[] = {
    {"sender", "SENDER", DP_QT_TEXT, 0, 40},
    {"third_party", NULL, DP_QT_BOOL, DP_QCOL_NOTABLE, 0},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},
    {"fail_fixable", "FIXABLE FAILING", DP_QT_INT, 0, 0},
    {"blocking", "BLOCKING", DP_QT_BOOL, 0, 0},
    {"spf_aligned", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"dkim_aligned", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"dmarc_pass", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"spf_aligned_strict", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"dkim_aligned_strict", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"policy_pass", NULL, DP_QT_INT, DP_QCOL_NOTABLE, 0},
    {"source_ips", NULL, DP_QT_LIST, DP_QCOL_NOTABLE, 0},
    {"dkim_domains", NULL, DP_QT_LIST, DP_QCOL_NOTABLE, 0},
    {"spf_domains", NULL, DP_QT_LIST, DP_QCOL_NOTABLE, 0},
    {"reporters", NULL, DP_QT_LIST, DP_QCOL_NOTABLE, 0},
    {"first_seen", NULL, DP_QT_TIME, DP_QCOL_NOTABLE, 0},
    {"last_seen", NULL, DP_QT_TIME, DP_QCOL_NOTABLE, 0},
    {"fix", "WHAT TO FIX", DP_QT_TEXT, 0, 0},
    {"service", NULL, DP_QT_TEXT, DP_QCOL_NOTABLE, 0},
    {"service_kind", NULL, DP_QT_TEXT, DP_QCOL_NOTABLE, 0},
};

enum { P_PERIOD, P_MESSAGES, P_PASS, P_RATE, P_FIX, P_FWD, P_UNAUTH, P_STRICT };
static const dp_qcol_t trend_cols[] = {
    {"period", "PERIOD", DP_QT_TEXT, 0, 0},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},
    {"dmarc_pass", "DMARC PASS", DP_QT_INT, 0, 0},
    {"pass_rate", "PASS RATE", DP_QT_PCT, 0, 0},
    {"fail_fixable", "FIXABLE", DP_QT_INT, 0, 0},
    {"fail_forwarded", "FORWARDED", DP_QT_INT, 0, 0},
    {"fail_unauthenticated", "UNAUTHENTICATED", DP_QT_INT, 0, 0},
    {"dmarc_fail_if_strict", "FAIL IF STRICT", DP_QT_INT, 0, 0},
};

enum { D_IP, D_FROM, D_MESSAGES, D_REASONS, D_VERDICTS };
static const dp_qcol_t disagree_cols[] = {
    {"source_ip", "SOURCE", DP_QT_TEXT, 0, 40}, {"header_from", "HEADER FROM", DP_QT_TEXT, 0, 40},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},  {"reasons", "WHY", DP_QT_LIST, 0, 0},
    {"verdicts", "VERDICTS", DP_QT_LIST, 0, 0},
};

/* The admin's block in table form: label, messages, share, note. */
enum { B_LABEL, B_MESSAGES, B_SHARE, B_NOTE };
static const dp_qcol_t block_cols[] = {
    {"what", "", DP_QT_TEXT, 0, 0},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},
    {"share", "SHARE", DP_QT_PCT, 0, 0},
    {"note", "", DP_QT_TEXT, 0, 0},
};

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

static int build_summary(dp_qres_t *s, const dp_readiness_t *r, const dp_query_filter_t *f,
                         dp_period_t by) {
  const dp_readiness_counts_t *t = &r->total;
  int rc = dp__query_res_add_row(s);
  if (!rc) rc = dp__query_res_set_text(s, S_DOMAIN, f->domain);
  if (f->has_since) dp__query_res_set_int(s, S_SINCE, f->since);
  if (!rc) rc = dp__query_res_set_text(s, S_BY, by_name(by));
  dp__query_res_set_int(s, S_REPORTS, r->reports);
  dp__query_res_set_int(s, S_RECEIVERS, r->receivers);
  dp__query_res_set_int(s, S_MESSAGES, t->messages);
  dp__query_res_set_int(s, S_PASS, t->dmarc_pass);
  dp__query_res_set_int(s, S_FAIL, t->dmarc_fail);
  dp__query_res_set_int(s, S_FIX, t->fail_fixable);
  dp__query_res_set_int(s, S_FWD, t->fail_forwarded);
  dp__query_res_set_int(s, S_UNAUTH, t->fail_unauthenticated);
  dp__query_res_set_int(s, S_STRICT, t->dmarc_fail_if_strict);
  dp__query_res_set_int(s, S_NFIX, (int64_t)r->n_to_fix);
  dp__query_res_set_int(s, S_NBLOCK, (int64_t)r->n_blocking);
  dp__query_res_set_int(s, S_DISAGREE, r->disagree_sources);
  if (!rc) rc = dp__query_res_set_text(s, S_VERDICT, r->verdict);
  if (!rc) rc = dp__query_res_set_text(s, S_VLINE, r->verdict_line);
  if (!rc) rc = dp__query_res_set_text(s, S_REASON, r->verdict_reason);
  return rc;
}

static const dp_sender_cols_t fix_map = {
    F_SENDER, F_THIRD, F_MESSAGES, F_SPF, F_DKIM, F_DMARC, F_SPF_S, F_DKIM_S, F_POLICY,
    F_IPS, F_DKIM_DOMS, F_SPF_DOMS, F_REPORTERS, F_FIRST, F_LAST, F_FIX, F_SERVICE,
    F_SERVICE_KIND,
};

static int build_fix(dp_qres_t *q, const dp_readiness_t *r) {
  int rc = 0;
  for (size_t i = 0; i < r->n_to_fix && !rc; i++) {
    rc = dp__query_res_add_row(q);
    if (!rc) rc = dp__query_senders_set_row(q, &fix_map, &r->to_fix[i]);
    dp__query_res_set_int(q, F_FIXABLE, r->to_fix_fixable[i]);
    dp__query_res_set_int(q, F_BLOCKING,
                          r->to_fix_fixable[i] * 1000 >= r->total.messages * BLOCKING_PERMILLE);
  }
  return rc;
}

static int build_trend(dp_qres_t *q, const dp_readiness_t *r) {
  int rc = 0;
  for (size_t i = 0; i < r->n_trend && !rc; i++) {
    const dp_readiness_period_t *p = &r->trend[i];
    char label[32];
    period_label(label, sizeof label, p->start);
    rc = dp__query_res_add_row(q);
    if (!rc) rc = dp__query_res_set_text(q, P_PERIOD, label);
    dp__query_res_set_int(q, P_MESSAGES, p->c.messages);
    dp__query_res_set_int(q, P_PASS, p->c.dmarc_pass);
    dp__query_res_set_pct(q, P_RATE, p->c.dmarc_pass, p->c.messages);
    dp__query_res_set_int(q, P_FIX, p->c.fail_fixable);
    dp__query_res_set_int(q, P_FWD, p->c.fail_forwarded);
    dp__query_res_set_int(q, P_UNAUTH, p->c.fail_unauthenticated);
    dp__query_res_set_int(q, P_STRICT, p->c.dmarc_fail_if_strict);
  }
  return rc;
}

static int build_disagree(dp_qres_t *q, const dp_readiness_t *r) {
  int rc = 0;
  for (size_t i = 0; i < r->n_disagree && !rc; i++) {
    const dp_disagreement_t *d = &r->disagree[i];
    rc = dp__query_res_add_row(q);
    if (!rc) rc = dp__query_res_set_text(q, D_IP, d->source_ip);
    if (!rc) rc = dp__query_res_set_text(q, D_FROM, d->header_from);
    dp__query_res_set_int(q, D_MESSAGES, d->messages);
    if (!rc)
      rc = dp__query_res_set_list(q, D_REASONS, (const char *const *)d->reasons, d->n_reasons);
    if (!rc)
      rc = dp__query_res_set_list(q, D_VERDICTS, (const char *const *)d->verdicts, d->n_verdicts);
  }
  return rc;
}

static int block_row(dp_qres_t *q, const char *label, int64_t n, int64_t den, const char *note) {
  int rc = dp__query_res_add_row(q);
  if (!rc) rc = dp__query_res_set_text(q, B_LABEL, label);
  dp__query_res_set_int(q, B_MESSAGES, n);
  dp__query_res_set_pct(q, B_SHARE, n, den);
  if (!rc) rc = dp__query_res_set_text(q, B_NOTE, note);
  return rc;
}

static int build_block(dp_qres_t *q, const dp_readiness_t *r) {
  const dp_readiness_counts_t *t = &r->total;
  char n1[128], n2[128], n3[160];
  snprintf(n1, sizeof n1, "%" PRId64 " report%s from %" PRId64 " receiver%s", r->reports,
           r->reports == 1 ? "" : "s", r->receivers, r->receivers == 1 ? "" : "s");
  snprintf(n2, sizeof n2, "%zu sender%s to fix (below)", r->n_to_fix, r->n_to_fix == 1 ? "" : "s");
  int64_t extra = t->dmarc_fail_if_strict - t->dmarc_fail;
  snprintf(n3, sizeof n3, "fail DMARC if adkim=s and aspf=s (%s%" PRId64 " vs relaxed)",
           extra >= 0 ? "+" : "", extra);
  int rc = block_row(q, "all mail", t->messages, t->messages, n1);
  if (!rc) rc = block_row(q, "DMARC pass", t->dmarc_pass, t->messages, "aligned SPF or DKIM");
  if (!rc)
    rc = block_row(q, "would be rejected", t->dmarc_fail, t->messages,
                   "fail DMARC: blocked under p=reject");
  if (!rc) rc = block_row(q, "  fixable", t->fail_fixable, t->messages, n2);
  if (!rc)
    rc =
        block_row(q, "  forwarded", t->fail_forwarded, t->messages, "forwarding and mailing lists");
  if (!rc)
    rc = block_row(q, "  unauthenticated", t->fail_unauthenticated, t->messages,
                   "likely spoofing: what p=reject is for");
  if (!rc) rc = block_row(q, "if strict", t->dmarc_fail_if_strict, t->messages, n3);
  return rc;
}

/* Write the result set as JSON into a string (caller owns; free()). */
static int json_of(const dp_qres_t *q, char **out) {
  size_t len = 0;
  *out = NULL;
  FILE *m = open_memstream(out, &len);
  if (!m) return DP_ENOMEM;
  int rc = dp__query_res_write(q, DP_QFMT_JSON, m);
  if (fclose(m) && !rc) rc = DP_ENOMEM;
  if (!rc && !*out) rc = DP_ENOMEM;
  return rc;
}

/* One JSON object: the summary row's fields, then the named arrays. */
static int write_json_object(FILE *out, const dp_qres_t *summary, const char *const *keys,
                             const dp_qres_t *const *arrays, size_t n) {
  char *s;
  int rc = json_of(summary, &s);
  if (rc) return rc;
  /* "[\n{...}\n]\n": keep "{..." without the closing brace. */
  size_t len = strlen(s);
  if (len < 7 || strncmp(s, "[\n{", 3) || strcmp(s + len - 4, "}\n]\n")) {
    free(s);
    return DP_EIO;
  }
  s[len - 4] = '\0';
  if (fputs(s + 2, out) == EOF) rc = DP_EIO;
  free(s);
  for (size_t k = 0; k < n && !rc; k++) {
    char *a;
    if ((rc = json_of(arrays[k], &a))) break;
    size_t al = strlen(a);
    if (al && a[al - 1] == '\n') a[--al] = '\0';
    if (fprintf(out, ",\"%s\":%s", keys[k], a) < 0) rc = DP_EIO;
    free(a);
  }
  if (!rc && fputs("}\n", out) == EOF) rc = DP_EIO;
  return rc;
}

/* A line of the table form that may carry the domain: it was checked by
 * dp__query_opt, but anything outside printable ASCII is replaced anyway so
 * no terminal control sequence gets through. */
static int clean_line(FILE *out, const char *prefix, const char *text) {
  if (fputs(prefix, out) == EOF) return DP_EIO;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++)
    if (fputc(*p < 0x20 || *p >= 0x7F ? '?' : *p, out) == EOF) return DP_EIO;
  return fputc('\n', out) == EOF ? DP_EIO : 0;
}

int dp__query_readiness_write(const dp_readiness_t *r, const dp_query_filter_t *f, dp_period_t by,
                              dp_qfmt_t fmt, FILE *out) {
  dp_qres_t *sum = dp__query_res_create(summary_cols, NCOLS(summary_cols));
  dp_qres_t *fix = dp__query_res_create(fix_cols, NCOLS(fix_cols));
  dp_qres_t *tr = dp__query_res_create(trend_cols, NCOLS(trend_cols));
  dp_qres_t *dis = dp__query_res_create(disagree_cols, NCOLS(disagree_cols));
  dp_qres_t *blk = dp__query_res_create(block_cols, NCOLS(block_cols));
  int rc = sum && fix && tr && dis && blk ? 0 : DP_ENOMEM;
  if (!rc) rc = build_summary(sum, r, f, by);
  if (!rc) rc = build_fix(fix, r);
  if (!rc) rc = build_trend(tr, r);
  if (!rc) rc = build_disagree(dis, r);
  if (!rc && fmt == DP_QFMT_JSON) {
    const char *keys[] = {"disagreements", "senders_to_fix", "trend"};
    const dp_qres_t *arrays[] = {dis, fix, tr};
    rc = write_json_object(out, sum, keys, arrays, by == DP_PERIOD_NONE ? 2 : 3);
  } else if (!rc && fmt == DP_QFMT_CSV) {
    /* CSV is one table: the summary row, or the trend when asked for. */
    rc = dp__query_res_write(by == DP_PERIOD_NONE ? sum : tr, DP_QFMT_CSV, out);
  } else if (!rc) {
    rc = build_block(blk, r);
    char head[384];
    snprintf(head, sizeof head, "readiness of %s for p=reject", f->domain);
    if (f->has_since) {
      char iso[32];
      dp_time_iso8601(f->since, iso, sizeof iso);
      size_t hl = strlen(head);
      snprintf(head + hl, sizeof head - hl, " (reports ending after %s)", iso);
    }
    if (!rc) rc = clean_line(out, "", head);
    if (!rc && fputc('\n', out) == EOF) rc = DP_EIO;
    if (!rc) rc = dp__query_res_write(blk, DP_QFMT_TABLE, out);
    if (!rc) rc = clean_line(out, "\nverdict: ", r->verdict_line);
    if (!rc) rc = clean_line(out, "  ", r->verdict_reason);
    if (!rc && r->n_to_fix) {
      if (fputs("\nsenders to fix (most fixable failing mail first):\n", out) == EOF) rc = DP_EIO;
      if (!rc) rc = dp__query_res_write(fix, DP_QFMT_TABLE, out);
    }
    if (!rc && r->disagree_sources) {
      if (fprintf(out, "\nreceivers disagree on %" PRId64 " source%s (top %zu):\n",
                  r->disagree_sources, r->disagree_sources == 1 ? "" : "s", r->n_disagree) < 0)
        rc = DP_EIO;
      if (!rc) rc = dp__query_res_write(dis, DP_QFMT_TABLE, out);
    }
    if (!rc && by != DP_PERIOD_NONE) {
      if (fprintf(out, "\ntrend by %s (UTC, by report begin):\n", by_name(by)) < 0) rc = DP_EIO;
      if (!rc) rc = dp__query_res_write(tr, DP_QFMT_TABLE, out);
    }
  }
  dp__query_res_destroy(sum);
  dp__query_res_destroy(fix);
  dp__query_res_destroy(tr);
  dp__query_res_destroy(dis);
  dp__query_res_destroy(blk);
  return rc;
}

static int redact_items(char **items, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (dp__query_redact_inplace(&items[k])) return DP_ENOMEM;
  return 0;
}

int dp__query_readiness_redact(dp_readiness_t *r) {
  int rc = dp__query_senders_redact(r->to_fix, r->n_to_fix);
  for (size_t i = 0; i < r->n_disagree && !rc; i++) {
    dp_disagreement_t *d = &r->disagree[i];
    if (dp__query_redact_inplace(&d->source_ip) || dp__query_redact_inplace(&d->header_from) ||
        redact_items(d->reasons, d->n_reasons) || redact_items(d->verdicts, d->n_verdicts))
      rc = DP_ENOMEM;
  }
  if (!rc) {
    char *reason = dp__query_redact(r->verdict_reason);
    if (!reason) return DP_ENOMEM;
    snprintf(r->verdict_reason, sizeof r->verdict_reason, "%s", reason);
    free(reason);
  }
  return rc;
}

int dp__query_readiness(PGconn *c, const dp_query_filter_t *f, dp_period_t by, dp_qfmt_t fmt,
                        FILE *out, char *err, size_t errlen) {
  return dp__query_readiness_redacted(c, f, by, fmt, false, out, err, errlen);
}

int dp__query_readiness_redacted(PGconn *c, const dp_query_filter_t *f, dp_period_t by,
                                 dp_qfmt_t fmt, bool redact, FILE *out, char *err, size_t errlen) {
  dp_readiness_t r;
  int rc = dp__query_readiness_fetch(c, f, by, &r, err, errlen);
  if (rc) return rc;
  if (redact) rc = dp__query_readiness_redact(&r);
  if (!rc) rc = dp__query_readiness_write(&r, f, by, fmt, out);
  if (rc) snprintf(err, errlen, "%s", dp_strerror(rc));
  dp__query_readiness_free(&r);
  return rc;
}

/* ======================================================================== */
/* Command */

static void usage(FILE *f) {
  fprintf(f, "usage: dmarcpipe readiness --domain D [--since S] [--by day|week]\n"
             "                           [--format table|csv|json] [--redact] [--db DSN]\n"
             "\n"
             "Is D ready for p=reject? How much of D's mail would be rejected today, split\n"
             "into fixable (a service authenticates, but not aligned with D: the senders to\n"
             "fix are listed), forwarded (forwarding, mailing lists) and unauthenticated\n"
             "(likely spoofing); the same under strict alignment; receivers that disagree;\n"
             "and a verdict. See docs/queries.md for the rules.\n"
             "\n"
             "  --domain D     the domain (required)\n"
             "  --since S      only reports whose period ends after S: a duration back from\n"
             "                 now (90m, 12h, 30d, 2w) or a date (2024-03-01, 2024-03-01T12:00Z)\n"
             "  --by P         add a trend per day or week (UTC)\n"
             "  --redact       hide IP addresses (keeping the /24 or /48) and the local part\n"
             "                 of e-mail addresses in the output\n"
             "  --format F     table (default, for people), csv (the summary row, or the\n"
             "                 trend with --by) or json (one object)\n"
             "  --db DSN       libpq connection string or URI (default: PG* environment,\n"
             "                 else the embedded cluster)\n"
             "  -h, --help     show this help\n");
}

int dp_readiness_cmd(int argc, char **argv) {
  static const struct option longopts[] = {
      {"db", required_argument, NULL, 'd'},     {"format", required_argument, NULL, 'f'},
      {"domain", required_argument, NULL, 'D'}, {"since", required_argument, NULL, 's'},
      {"by", required_argument, NULL, 'b'},     {"redact", no_argument, NULL, 'R'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
  };
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  int st = dp__query_args(&o, "readiness", argc, argv, longopts, usage, true);
  if (st >= 0) return st;
  char err[512] = "";
  int rc = dp__query_services_init(NULL, err, sizeof err);
  if (rc) return dp__query_done("readiness", NULL, rc, err);
  PGconn *c = dp__query_connect("readiness", o.db);
  if (!c) {
    dp__query_services_set(NULL);
    return 2; /* dp__query_connect said why */
  }
  rc = dp__query_readiness_redacted(c, &o.filter, o.by, o.fmt, o.redact, stdout, err, sizeof err);
  return dp__query_done("readiness", c, rc, err);
}
