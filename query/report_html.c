/* SPDX-License-Identifier: MIT */
/* query/report_html.c - `dmarcpipe report --html FILE`: one self-contained
 * HTML page (inline CSS and SVG, no script, no external resource, a CSP that
 * forbids fetching anything) with the readiness verdict, charts over time,
 * the senders with their fixes, the receivers and the published policy: what
 * an admin attaches to a change request. Every value from a report is
 * escaped; with --redact, addresses are cut to their network. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "query/query.h"
#include "query/query_int.h"

/* Lines of the per-sender charts; the rest is folded into "other senders". */
#define TOP_SENDERS 8
/* Rows of the senders table; the rest is summed in one line. */
#define MAX_SENDER_ROWS 100
/* A continuous x axis (every day or week from first to last) unless longer. */
#define MAX_PERIODS 1000

static const char *const palette[TOP_SENDERS + 1] = {"#2563eb", "#16a34a", "#d97706",
                                                     "#9333ea", "#0891b2", "#db2777",
                                                     "#65a30d", "#b45309", "#64748b"};

/* ======================================================================== */
/* SQL */

/* Per sender (unauthenticated networks folded) and period: $3 'day'|'week'. */
static const char trend_sql[] =
    "SELECT CASE WHEN a.sender LIKE 'unauthenticated %' THEN 'unauthenticated (all networks)'"
    "            ELSE a.sender END AS s,"
    "       floor(extract(epoch FROM date_trunc($3::text, a.begin_ts AT TIME ZONE 'UTC')))::bigint"
    "         AS p,"
    "       sum(a.messages)::bigint, sum(a.dmarc_pass)::bigint"
    "  FROM agg_sender a" DP_AGG_WHERE " GROUP BY 1, 2 ORDER BY 1, 2";

/* Per reporting organization: reports, messages, recomputed DMARC pass, the
 * receiver's own verdict (policy_evaluated), first/last, contact; from the
 * per-report aggregate agg_report (migration 0003). */
static const char receivers_sql[] =
    "SELECT r.org_name, count(DISTINCT r.id)::bigint, sum(h.messages)::bigint,"
    "       sum(h.dmarc_pass)::bigint, sum(h.policy_pass)::bigint,"
    "       floor(extract(epoch FROM min(r.begin_ts)))::bigint,"
    "       floor(extract(epoch FROM max(r.end_ts)))::bigint, min(r.email)"
    "  FROM agg_report h JOIN report r ON r.id = h.report_key"
    " WHERE (r.domain = $1::text OR h.header_from = $1::text"
    "        OR right(h.header_from, length($1::text) + 1) = '.' || $1::text)"
    "   AND ($2::bigint IS NULL OR r.end_ts > to_timestamp($2::bigint))"
    " GROUP BY r.org_name ORDER BY 3 DESC, 1";

/* Policy domains D and under D: the policy as last reported, field by field
 * (receivers omit fields), and each field's changes (as in `domains`). */
static const char policy_sql[] =
    "WITH rep AS MATERIALIZED ("
    "  SELECT r.* FROM report r"
    "   WHERE (r.domain = $1::text OR right(r.domain, length($1::text) + 1) = '.' || $1::text)"
    "     AND ($2::bigint IS NULL OR r.end_ts > to_timestamp($2::bigint))"
    "), fv AS ("
    DP_POLICY_FIELDS_SQL
    "), firsts AS ("
    "  SELECT domain, ord, k, v, min(begin_ts) AS first_seen FROM fv GROUP BY 1, 2, 3, 4"
    "), chg AS ("
    "  SELECT domain, ord, first_seen, lag(v) OVER w AS prev,"
    "         k || '=' || lag(v) OVER w || '->' || v || ' on '"
    "           || to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS txt"
    "    FROM firsts WINDOW w AS (PARTITION BY domain, ord ORDER BY first_seen, v)"
    ")"
    " SELECT d.domain, d.reports, d.messages,"
    "        (SELECT v FROM lastv l WHERE l.domain = d.domain AND ord = 1),"
    "        (SELECT v FROM lastv l WHERE l.domain = d.domain AND ord = 2),"
    "        (SELECT v FROM lastv l WHERE l.domain = d.domain AND ord = 3),"
    "        (SELECT v FROM lastv l WHERE l.domain = d.domain AND ord = 4),"
    "        (SELECT v FROM lastv l WHERE l.domain = d.domain AND ord = 5),"
    "        (SELECT v FROM lastv l WHERE l.domain = d.domain AND ord = 6),"
    "        coalesce((SELECT string_agg(txt, '; ' ORDER BY first_seen, ord) FROM chg"
    "                   WHERE chg.domain = d.domain AND prev IS NOT NULL), '')"
    "   FROM (SELECT domain, count(*)::bigint AS reports, sum(messages)::bigint AS messages"
    "           FROM rep GROUP BY domain) d"
    "  ORDER BY d.messages DESC, d.domain";

/* ======================================================================== */
/* Page pieces */

struct page {
  dp_buf_t b;
  int rc;
};

static void put(struct page *p, const char *s) {
  if (!p->rc) p->rc = dp_buf_puts(&p->b, s);
}

static void putf(struct page *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct page *p, const char *fmt, ...) {
  if (p->rc) return;
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) {
    p->rc = DP_ENOMEM;
    return;
  }
  p->rc = dp_buf_puts(&p->b, tmp);
}

/* Escaped text; redacted first when asked. */
static void esc(struct page *p, const char *s) {
  if (!p->rc) p->rc = dp__html_escape(&p->b, s);
}

static void esc_red(struct page *p, const char *s, bool redact) {
  if (!redact) {
    esc(p, s);
    return;
  }
  char *r = dp__query_redact(s);
  if (!r && s) {
    p->rc = DP_ENOMEM;
    return;
  }
  esc(p, r);
  free(r);
}

static void pct_text(char *out, size_t len, int64_t num, int64_t den) {
  if (den <= 0) {
    snprintf(out, len, "–");
    return;
  }
  char v[16];
  dp__query_pct(v, sizeof v, num, den);
  snprintf(out, len, "%s%%", v);
}

static void num_text(char *out, size_t len, int64_t v) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%" PRId64, v);
  size_t n = strlen(tmp), o = 0;
  for (size_t i = 0; i < n && o + 2 < len; i++) {
    if (i && tmp[i - 1] != '-' && (n - i) % 3 == 0) out[o++] = ',';
    out[o++] = tmp[i];
  }
  out[o] = '\0';
}

static void date_text(char *out, size_t len, int64_t t, bool with_time) {
  time_t tt = (time_t)t;
  struct tm tm;
  if (!gmtime_r(&tt, &tm) ||
      !strftime(out, len, with_time ? "%Y-%m-%d %H:%M UTC" : "%Y-%m-%d", &tm))
    snprintf(out, len, "?");
}

static const char css[] =
    "<style>"
    ":root{--fg:#1f2937;--mut:#6b7280;--bd:#e5e7eb;--bg:#f8fafc;--ok:#15803d;--warn:#b45309;"
    "--bad:#b91c1c}"
    "*{box-sizing:border-box}"
    "body{margin:0;background:var(--bg);color:var(--fg);"
    "font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}"
    "main{max-width:1100px;margin:0 auto;padding:28px 24px 48px}"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;padding-bottom:6px;"
    "border-bottom:1px solid var(--bd)}"
    ".sub{color:var(--mut);margin:0 0 20px}"
    ".verdict{border-radius:10px;padding:16px 20px;margin:16px 0 20px;border:1px solid;"
    "background:#fff}"
    ".verdict .line{font-size:22px;font-weight:650}.verdict "
    ".line::first-letter{text-transform:uppercase}"
    ".verdict.ready{border-color:#86efac;background:#f0fdf4}.verdict.ready .line{color:var(--ok)}"
    ".verdict.fix{border-color:#fcd34d;background:#fffbeb}.verdict.fix .line{color:var(--warn)}"
    ".verdict.not{border-color:#fca5a5;background:#fef2f2}.verdict.not .line{color:var(--bad)}"
    ".kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}"
    ".kpi{background:#fff;border:1px solid var(--bd);border-radius:8px;padding:10px 12px}"
    ".kpi .v{font-size:20px;font-weight:650}.kpi .k{color:var(--mut);font-size:12px}"
    ".kpi .s{color:var(--mut);font-size:12px}"
    "figure{background:#fff;border:1px solid var(--bd);border-radius:8px;margin:0 0 14px;"
    "padding:12px 14px}"
    "figcaption{font-weight:600;margin-bottom:4px}"
    "svg.chart{width:100%;height:auto;display:block}"
    "svg .grid{stroke:#eef0f3}svg .axis{stroke:#9ca3af}"
    "svg text{font-size:11px;fill:#6b7280}svg .ylab{text-anchor:end}"
    "svg .xlab{text-anchor:middle}svg .empty{text-anchor:middle;font-size:14px}"
    "svg .line{fill:none;stroke-width:2}svg .line.em{stroke-width:3.5;stroke-dasharray:6 3}"
    ".legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:var(--mut)}"
    ".legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;"
    "vertical-align:-1px}"
    "table{width:100%;border-collapse:collapse;background:#fff;border:1px solid var(--bd);"
    "font-size:13px}"
    "th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--bd);vertical-align:top}"
    "th{background:#f1f5f9;font-weight:600;white-space:nowrap}"
    "td.n,th.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}"
    "td.fix{min-width:300px}td.mono{font-family:ui-monospace,Menlo,Consolas,monospace;"
    "font-size:12px;white-space:nowrap}td.small{font-size:12px;color:#4b5563}"
    ".svc{display:inline-block;background:#eef2ff;color:#3730a3;border-radius:4px;"
    "padding:0 5px;font-size:12px;margin-left:4px}"
    ".tag{display:inline-block;border-radius:4px;padding:0 5px;font-size:12px}"
    ".tag.ok{background:#dcfce7;color:#166534}.tag.bad{background:#fee2e2;color:#991b1b}"
    ".note{color:var(--mut);font-size:12px;margin:6px 0 0}"
    "footer{color:var(--mut);font-size:12px;margin-top:36px}"
    "@media print{body{background:#fff}main{padding:0}figure,table{break-inside:avoid}}"
    "</style>";

static void th(struct page *p, const char *const *heads, size_t n) {
  put(p, "<thead><tr>");
  for (size_t i = 0; i < n; i++) {
    /* A leading '#' marks a numeric (right-aligned) column. */
    bool num = heads[i][0] == '#';
    put(p, num ? "<th class=\"n\">" : "<th>");
    esc(p, heads[i] + (num ? 1 : 0));
    put(p, "</th>");
  }
  put(p, "</tr></thead><tbody>");
}

static void td_num(struct page *p, int64_t v) {
  char t[32];
  num_text(t, sizeof t, v);
  putf(p, "<td class=\"n\">%s</td>", t);
}

static void td_pct(struct page *p, int64_t num, int64_t den) {
  char t[32];
  pct_text(t, sizeof t, num, den);
  putf(p, "<td class=\"n\">%s</td>", t);
}

static void kpi(struct page *p, const char *label, int64_t v, int64_t den, const char *note) {
  char n[32], s[32];
  num_text(n, sizeof n, v);
  put(p, "<div class=\"kpi\"><div class=\"k\">");
  esc(p, label);
  putf(p, "</div><div class=\"v\">%s</div><div class=\"s\">", n);
  if (den >= 0) {
    pct_text(s, sizeof s, v, den);
    put(p, s);
    if (note) put(p, " · ");
  }
  if (note) esc(p, note);
  put(p, "</div></div>");
}

static void sender_cell(struct page *p, const dp_sender_t *s, bool redact) {
  put(p, "<td>");
  esc_red(p, s->sender, redact);
  if (s->service) {
    put(p, "<span class=\"svc\">");
    esc(p, s->service->name);
    put(p, "</span>");
  }
  put(p, "</td>");
}

/* ======================================================================== */
/* Sections */

static void section_verdict(struct page *p, const dp_readiness_t *r) {
  const char *cls = !strcmp(r->verdict, "ready")       ? "ready"
                    : !strcmp(r->verdict, "not ready") ? "not"
                                                       : "fix";
  putf(p, "<section class=\"verdict %s\" id=\"verdict\"><div class=\"line\">", cls);
  esc(p, r->verdict_line);
  put(p, "</div><div>");
  esc(p, r->verdict_reason);
  put(p, "</div></section>");
  const dp_readiness_counts_t *t = &r->total;
  put(p, "<div class=\"kpis\">");
  kpi(p, "Messages", t->messages, -1, NULL);
  kpi(p, "DMARC pass", t->dmarc_pass, t->messages, NULL);
  kpi(p, "Would be rejected", t->dmarc_fail, t->messages, "under p=reject");
  kpi(p, "Fixable", t->fail_fixable, t->messages, "a service, not aligned");
  kpi(p, "Forwarded", t->fail_forwarded, t->messages, "lists, forwarders");
  kpi(p, "Unauthenticated", t->fail_unauthenticated, t->messages, "likely spoofing");
  kpi(p, "Fail if strict", t->dmarc_fail_if_strict, t->messages, "adkim=s; aspf=s");
  kpi(p, "Reports", r->reports, -1, NULL);
  kpi(p, "Receivers", r->receivers, -1, NULL);
  put(p, "</div>");
}

struct series {
  char *name;
  int64_t total;
  double *msgs, *rate; /* per period */
  int64_t *m, *pass;
};

struct trend {
  int64_t *periods;
  char **labels;
  size_t n;
  struct series *s; /* top senders, then "other senders" when any */
  size_t ns;
  double *all_rate;
};

static void trend_free(struct trend *t) {
  for (size_t i = 0; i < t->n; i++)
    free(t->labels[i]);
  free(t->labels);
  free(t->periods);
  for (size_t k = 0; k < t->ns; k++) {
    free(t->s[k].name);
    free(t->s[k].msgs);
    free(t->s[k].rate);
    free(t->s[k].m);
    free(t->s[k].pass);
  }
  free(t->s);
  free(t->all_rate);
}

static size_t period_index(const struct trend *t, int64_t start) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (t->periods[mid] < start)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < t->n && t->periods[lo] == start ? lo : SIZE_MAX;
}

/* The x axis: every day (week) from the first to the last period of the
 * readiness trend, so gaps show as gaps; the periods present when that would
 * be too many. */
static int trend_axis(struct trend *t, const dp_readiness_t *r, dp_period_t by) {
  int64_t step = by == DP_PERIOD_WEEK ? 7 * 86400 : 86400;
  size_t n = r->n_trend;
  bool fill = n && (r->trend[n - 1].start - r->trend[0].start) / step + 1 <= MAX_PERIODS;
  if (fill) n = (size_t)((r->trend[n - 1].start - r->trend[0].start) / step + 1);
  t->periods = n ? calloc(n, sizeof *t->periods) : NULL;
  t->labels = n ? calloc(n, sizeof *t->labels) : NULL;
  if (n && (!t->periods || !t->labels)) return DP_ENOMEM;
  t->n = n;
  for (size_t i = 0; i < n; i++) {
    t->periods[i] = fill ? r->trend[0].start + (int64_t)i * step : r->trend[i].start;
    char lab[32];
    date_text(lab, sizeof lab, t->periods[i], false);
    if (!(t->labels[i] = strdup(lab))) return DP_ENOMEM;
  }
  return 0;
}

static int trend_fetch(PGconn *c, const char *const *params, const dp_readiness_t *r,
                       dp_period_t by, struct trend *t, char *err, size_t errlen) {
  int rc = trend_axis(t, r, by);
  if (rc) return rc;
  PGresult *res = PQexecParams(c, trend_sql, 3, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 4) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return DP_EPG;
  }
  /* Totals per sender, to pick the top ones (rows are ordered by sender). */
  int nt = PQntuples(res);
  struct tot {
    const char *name;
    int64_t m;
  } *tots = nt ? calloc((size_t)nt, sizeof *tots) : NULL;
  size_t ntot = 0;
  if (nt && !tots) rc = DP_ENOMEM;
  for (int i = 0; i < nt && !rc; i++) {
    const char *nm = PQgetvalue(res, i, 0);
    if (!ntot || strcmp(tots[ntot - 1].name, nm)) tots[ntot++].name = nm;
    tots[ntot - 1].m += strtoll(PQgetvalue(res, i, 2), NULL, 10);
  }
  /* Selection of the TOP_SENDERS largest (stable by name on ties). */
  size_t ntop = ntot < TOP_SENDERS ? ntot : TOP_SENDERS;
  bool other = ntot > TOP_SENDERS;
  t->ns = ntop + (other ? 1 : 0);
  if (!rc && t->ns && !(t->s = calloc(t->ns, sizeof *t->s))) rc = DP_ENOMEM;
  for (size_t k = 0; k < ntop && !rc; k++) {
    size_t best = SIZE_MAX;
    for (size_t j = 0; j < ntot; j++)
      if (tots[j].name && (best == SIZE_MAX || tots[j].m > tots[best].m)) best = j;
    if (!(t->s[k].name = strdup(tots[best].name))) rc = DP_ENOMEM;
    t->s[k].total = tots[best].m;
    tots[best].name = NULL;
  }
  if (!rc && other && !(t->s[ntop].name = strdup("other senders"))) rc = DP_ENOMEM;
  for (size_t k = 0; k < t->ns && !rc; k++) {
    struct series *s = &t->s[k];
    size_t n = t->n ? t->n : 1;
    s->msgs = calloc(n, sizeof *s->msgs);
    s->rate = calloc(n, sizeof *s->rate);
    s->m = calloc(n, sizeof *s->m);
    s->pass = calloc(n, sizeof *s->pass);
    if (!s->msgs || !s->rate || !s->m || !s->pass) rc = DP_ENOMEM;
  }
  for (int i = 0; i < nt && !rc; i++) {
    const char *nm = PQgetvalue(res, i, 0);
    size_t pi = period_index(t, strtoll(PQgetvalue(res, i, 1), NULL, 10));
    if (pi == SIZE_MAX) continue;
    size_t k = 0;
    while (k < ntop && strcmp(t->s[k].name, nm))
      k++;
    if (k == ntop && !other) continue;
    t->s[k].m[pi] += strtoll(PQgetvalue(res, i, 2), NULL, 10);
    t->s[k].pass[pi] += strtoll(PQgetvalue(res, i, 3), NULL, 10);
  }
  free(tots);
  PQclear(res);
  if (!rc && t->n && !(t->all_rate = calloc(t->n, sizeof *t->all_rate))) rc = DP_ENOMEM;
  if (rc) return rc;
  for (size_t i = 0; i < t->n; i++)
    t->all_rate[i] = NAN;
  for (size_t i = 0; i < r->n_trend; i++) {
    size_t pi = period_index(t, r->trend[i].start);
    if (pi != SIZE_MAX && r->trend[i].c.messages > 0)
      t->all_rate[pi] = 100.0 * (double)r->trend[i].c.dmarc_pass / (double)r->trend[i].c.messages;
  }
  for (size_t k = 0; k < t->ns; k++)
    for (size_t i = 0; i < t->n; i++) {
      struct series *s = &t->s[k];
      s->msgs[i] = (double)s->m[i];
      s->rate[i] = s->m[i] > 0 ? 100.0 * (double)s->pass[i] / (double)s->m[i] : NAN;
    }
  return 0;
}

static void legend(struct page *p, const dp_chart_series_t *se, size_t n) {
  put(p, "<div class=\"legend\">");
  for (size_t i = 0; i < n; i++) {
    putf(p, "<span><i style=\"background:%s\"></i>", se[i].color);
    esc(p, se[i].name);
    put(p, "</span>");
  }
  put(p, "</div>");
}

static void figure(struct page *p, const char *caption, const dp_chart_t *ch) {
  put(p, "<figure><figcaption>");
  esc(p, caption);
  put(p, "</figcaption>");
  if (!p->rc) p->rc = dp__svg_chart(&p->b, ch);
  legend(p, ch->series, ch->n_series);
  put(p, "</figure>");
}

static void section_charts(struct page *p, const dp_readiness_t *r, const struct trend *t,
                           dp_period_t by) {
  const char *per = by == DP_PERIOD_WEEK ? "week" : "day";
  char cap[128];
  put(p, "<h2 id=\"trends\">Over time</h2>");
  size_t n = t->n;
  double *cls[4] = {NULL};
  for (size_t k = 0; k < 4 && !p->rc; k++)
    if (!(cls[k] = calloc(n ? n : 1, sizeof(double)))) p->rc = DP_ENOMEM;
  if (!p->rc) {
    for (size_t i = 0; i < r->n_trend; i++) {
      size_t pi = period_index(t, r->trend[i].start);
      if (pi == SIZE_MAX) continue;
      const dp_readiness_counts_t *c = &r->trend[i].c;
      cls[0][pi] = (double)c->dmarc_pass;
      cls[1][pi] = (double)c->fail_fixable;
      cls[2][pi] = (double)c->fail_forwarded;
      cls[3][pi] = (double)c->fail_unauthenticated;
    }
    dp_chart_series_t st[4] = {
        {"DMARC pass", cls[0], "#16a34a", false},
        {"fails: fixable", cls[1], "#f59e0b", false},
        {"fails: forwarded", cls[2], "#8b5cf6", false},
        {"fails: unauthenticated", cls[3], "#dc2626", false},
    };
    dp_chart_t ch = {DP_CHART_STACKED,
                     "Messages by DMARC outcome",
                     (const char *const *)t->labels,
                     n,
                     st,
                     4,
                     false};
    snprintf(cap, sizeof cap, "All mail: messages per %s by DMARC outcome", per);
    figure(p, cap, &ch);
  }
  for (size_t k = 0; k < 4; k++)
    free(cls[k]);
  dp_chart_series_t *se = calloc(t->ns + 1, sizeof *se);
  if (!se) {
    p->rc = DP_ENOMEM;
    return;
  }
  for (size_t k = 0; k < t->ns; k++)
    se[k] = (dp_chart_series_t){t->s[k].name, t->s[k].msgs,
                                palette[k < TOP_SENDERS ? k : TOP_SENDERS], false};
  dp_chart_t vol = {
      DP_CHART_LINE, "Messages per sender", (const char *const *)t->labels, n, se, t->ns, false};
  snprintf(cap, sizeof cap, "Messages per %s, top %d senders", per, TOP_SENDERS);
  figure(p, cap, &vol);
  se[t->ns] = (dp_chart_series_t){"all mail", t->all_rate, "#111827", true};
  for (size_t k = 0; k < t->ns; k++)
    se[k].y = t->s[k].rate;
  /* "all mail" first in the legend, drawn last (on top). */
  dp_chart_t rate = {
      DP_CHART_LINE, "DMARC pass rate", (const char *const *)t->labels, n, se, t->ns + 1, true};
  snprintf(cap, sizeof cap, "DMARC pass rate per %s: all mail and top senders", per);
  figure(p, cap, &rate);
  free(se);
}

static void section_to_fix(struct page *p, const dp_readiness_t *r, bool redact) {
  put(p, "<h2 id=\"to-fix\">Senders to fix</h2>");
  if (!r->n_to_fix) {
    put(p, "<p>No sender authenticates without alignment: nothing to fix.</p>");
    return;
  }
  static const char *const heads[] = {"Sender", "#Messages", "#Fixable failing", "Blocking",
                                      "What to fix"};
  put(p, "<table>");
  th(p, heads, 5);
  for (size_t i = 0; i < r->n_to_fix; i++) {
    const dp_sender_t *s = &r->to_fix[i];
    bool blocking = r->to_fix_fixable[i] * 1000 >= r->total.messages;
    put(p, "<tr>");
    sender_cell(p, s, redact);
    td_num(p, s->messages);
    td_num(p, r->to_fix_fixable[i]);
    put(p, blocking ? "<td><span class=\"tag bad\">yes</span></td>"
                    : "<td><span class=\"tag ok\">no</span></td>");
    put(p, "<td class=\"fix\">");
    esc_red(p, s->fix, redact);
    put(p, "</td></tr>");
  }
  put(p, "</tbody></table><p class=\"note\">Blocking: fixable failures of at least 0.1% of the "
         "domain's mail; below that it is usually spam passing SPF for its own domain.</p>");
}

static void section_senders(struct page *p, const dp_sender_t *rows, size_t n, bool redact) {
  put(p, "<h2 id=\"senders\">All senders</h2>");
  static const char *const heads[] = {"Sender",      "#Messages", "#SPF aligned", "#DKIM aligned",
                                      "#DMARC pass", "Sources",   "Reporters",    "What to fix"};
  put(p, "<table>");
  th(p, heads, 8);
  int64_t rest_m = 0, rest_pass = 0;
  size_t rest = 0;
  for (size_t i = 0; i < n; i++) {
    const dp_sender_t *s = &rows[i];
    if (s->folded_networks) {
      /* the senders past DP_SENDERS_TOP, summed by dp__query_senders_fetch_top */
      rest += s->folded_networks;
      rest_m += s->messages;
      rest_pass += s->dmarc_pass;
      continue;
    }
    if (i >= MAX_SENDER_ROWS) {
      rest++;
      rest_m += s->messages;
      rest_pass += s->dmarc_pass;
      continue;
    }
    put(p, "<tr>");
    sender_cell(p, s, redact);
    td_num(p, s->messages);
    td_pct(p, s->spf_aligned, s->messages);
    td_pct(p, s->dkim_aligned, s->messages);
    td_pct(p, s->dmarc_pass, s->messages);
    put(p, "<td class=\"mono\">");
    for (size_t k = 0; k < s->n_source_ips && k < 3; k++) {
      if (k) put(p, "<br>");
      esc_red(p, s->source_ips[k], redact);
    }
    if (s->n_source_ips > 3) putf(p, "<br>+%zu more", s->n_source_ips - 3);
    put(p, "</td><td class=\"small\">");
    for (size_t k = 0; k < s->n_reporters; k++) {
      if (k) put(p, ", ");
      esc_red(p, s->reporters[k], redact);
    }
    put(p, "</td><td class=\"fix\">");
    esc_red(p, s->fix, redact);
    put(p, "</td></tr>");
  }
  if (rest) {
    char m[32];
    num_text(m, sizeof m, rest_m);
    putf(p, "<tr><td>%zu more senders</td><td class=\"n\">%s</td><td></td><td></td>", rest, m);
    td_pct(p, rest_pass, rest_m);
    put(p, "<td></td><td></td><td>see <code>dmarcpipe senders --format csv</code></td></tr>");
  }
  put(p, "</tbody></table>");
}

static void section_receivers(struct page *p, const PGresult *res, bool redact) {
  put(p, "<h2 id=\"receivers\">Receivers (reporters)</h2>");
  static const char *const heads[] = {
      "Reporter", "#Reports", "#Messages", "#DMARC pass", "#Receiver verdict pass",
      "First",    "Last",     "Contact"};
  put(p, "<table>");
  th(p, heads, 8);
  for (int i = 0; i < PQntuples(res); i++) {
    int64_t v[6];
    for (int k = 0; k < 6; k++)
      v[k] = strtoll(PQgetvalue(res, i, k + 1), NULL, 10);
    put(p, "<tr><td>");
    /* a reporter's name is free text of the report: it may hold an address */
    esc_red(p, PQgetvalue(res, i, 0), redact);
    put(p, "</td>");
    td_num(p, v[0]);
    td_num(p, v[1]);
    td_pct(p, v[2], v[1]);
    td_pct(p, v[3], v[1]);
    char d1[32], d2[32];
    date_text(d1, sizeof d1, v[4], false);
    date_text(d2, sizeof d2, v[5], false);
    putf(p, "<td>%s</td><td>%s</td><td class=\"mono\">", d1, d2);
    esc_red(p, PQgetvalue(res, i, 7), redact);
    put(p, "</td></tr>");
  }
  put(p, "</tbody></table><p class=\"note\">DMARC pass is recomputed from each record's SPF "
         "and DKIM results; receiver verdict pass is what the receiver's policy_evaluated "
         "said.</p>");
}

static void section_disagree(struct page *p, const dp_readiness_t *r, bool redact) {
  if (!r->n_disagree) return;
  put(p, "<h2 id=\"disagree\">Receivers that disagree</h2>");
  static const char *const heads[] = {"Source", "Header from", "#Messages", "Why", "Verdicts"};
  put(p, "<table>");
  th(p, heads, 5);
  for (size_t i = 0; i < r->n_disagree; i++) {
    const dp_disagreement_t *d = &r->disagree[i];
    put(p, "<tr><td class=\"mono\">");
    esc_red(p, d->source_ip, redact);
    put(p, "</td><td>");
    esc_red(p, d->header_from, redact);
    put(p, "</td>");
    td_num(p, d->messages);
    put(p, "<td>");
    for (size_t k = 0; k < d->n_reasons; k++) {
      if (k) put(p, "<br>");
      esc(p, d->reasons[k]);
    }
    put(p, "</td><td>");
    for (size_t k = 0; k < d->n_verdicts; k++) {
      if (k) put(p, "<br>");
      esc_red(p, d->verdicts[k], redact);
    }
    put(p, "</td></tr>");
  }
  putf(p,
       "</tbody></table><p class=\"note\">%" PRId64 " source(s) flagged; the top %zu by "
       "messages are shown.</p>",
       r->disagree_sources, r->n_disagree);
}

static void section_policy(struct page *p, const PGresult *res) {
  put(p, "<h2 id=\"policy\">Domains and published policy</h2>");
  static const char *const heads[] = {
      "Policy domain", "#Reports", "#Messages", "p",      "sp", "np",
      "#pct",          "adkim",    "aspf",      "Changes"};
  put(p, "<table>");
  th(p, heads, 10);
  for (int i = 0; i < PQntuples(res); i++) {
    put(p, "<tr><td>");
    esc(p, PQgetvalue(res, i, 0));
    put(p, "</td>");
    td_num(p, strtoll(PQgetvalue(res, i, 1), NULL, 10));
    td_num(p, strtoll(PQgetvalue(res, i, 2), NULL, 10));
    for (int k = 3; k <= 8; k++) {
      put(p, k == 6 ? "<td class=\"n\">" : "<td>");
      esc(p, PQgetisnull(res, i, k) ? "–" : PQgetvalue(res, i, k));
      put(p, "</td>");
    }
    put(p, "<td>");
    esc(p, PQgetvalue(res, i, 9));
    put(p, "</td></tr>");
  }
  put(p, "</tbody></table><p class=\"note\">The policy as receivers last reported it, field by "
         "field; – means no receiver reported the field.</p>");
}

/* ======================================================================== */
/* The report */

static PGresult *query(PGconn *c, const char *sql, int n, const char *const *params, int nfields,
                       char *err, size_t errlen) {
  PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != nfields) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return NULL;
  }
  return res;
}

static int report_html(PGconn *c, const dp_query_filter_t *f, dp_period_t by, bool redact,
                       int64_t generated, FILE *out, char *err, size_t errlen) {
  dp_readiness_t r;
  int rc = dp__query_readiness_fetch(c, f, by, &r, err, errlen);
  if (rc) return rc;
  char since[32];
  const char *params[3] = {f->domain, NULL, by == DP_PERIOD_WEEK ? "week" : "day"};
  if (f->has_since) {
    snprintf(since, sizeof since, "%" PRId64, f->since);
    params[1] = since;
  }
  dp_sender_t *rows = NULL;
  size_t nrows = 0;
  struct trend t;
  memset(&t, 0, sizeof t);
  PGresult *rcv = NULL, *pol = NULL;
  rc = dp__query_senders_fetch_top(c, f, DP_FAIL_ALL, MAX_SENDER_ROWS, &rows, &nrows, err, errlen);
  if (!rc) rc = trend_fetch(c, params, &r, by, &t, err, errlen);
  /* the charts' series are senders, named as in the tables */
  for (size_t k = 0; k < t.ns && !rc && redact; k++)
    rc = dp__query_redact_inplace(&t.s[k].name);
  if (!rc && !(rcv = query(c, receivers_sql, 2, params, 8, err, errlen))) rc = DP_EPG;
  if (!rc && !(pol = query(c, policy_sql, 2, params, 10, err, errlen))) rc = DP_EPG;
  if (rc == DP_ENOMEM) snprintf(err, errlen, "%s", dp_strerror(rc));

  struct page p = {.rc = rc};
  dp_buf_init(&p.b, 0);
  if (!p.rc) {
    /* The CSP forbids every fetch: even a value that escaped escaping could
     * not make the browser load anything. */
    put(&p, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>DMARC report: ");
    esc(&p, f->domain);
    put(&p, "</title>");
    put(&p, css);
    put(&p, "</head><body><main><h1>DMARC report for ");
    esc(&p, f->domain);
    put(&p, "</h1><p class=\"sub\">");
    char d1[40], d2[40], g[40];
    if (r.n_trend) {
      date_text(d1, sizeof d1, r.trend[0].start, false);
      date_text(d2, sizeof d2, r.trend[r.n_trend - 1].start, false);
      putf(&p, "Reports from %s to %s (by report begin, UTC)", d1, d2);
    } else {
      put(&p, "No reports in the window");
    }
    if (f->has_since) {
      date_text(d1, sizeof d1, f->since, true);
      putf(&p, " · window: reports ending after %s", d1);
    }
    date_text(g, sizeof g, generated, true);
    putf(&p, " · generated %s%s</p>", g, redact ? " · addresses redacted" : "");
    section_verdict(&p, &r);
    section_charts(&p, &r, &t, by);
    section_to_fix(&p, &r, redact);
    section_senders(&p, rows, nrows, redact);
    section_receivers(&p, rcv, redact);
    section_disagree(&p, &r, redact);
    section_policy(&p, pol);
    put(&p, "<footer>Generated by dmarcpipe 0.1.0 from the stored DMARC aggregate reports. "
            "Counts are messages; alignment is recomputed from the reported SPF and DKIM "
            "results (relaxed unless stated). This file is self-contained: it loads nothing "
            "from anywhere.</footer></main></body></html>\n");
    if (p.rc) snprintf(err, errlen, "%s", dp_strerror(p.rc));
  }
  rc = p.rc;
  if (!rc && (fwrite(p.b.data, 1, p.b.len, out) != p.b.len || fflush(out))) {
    rc = DP_EIO;
    snprintf(err, errlen, "write failed");
  }
  dp_buf_free(&p.b);
  PQclear(rcv);
  PQclear(pol);
  trend_free(&t);
  dp__query_senders_free(rows, nrows);
  dp__query_readiness_free(&r);
  return rc;
}

/* ======================================================================== */
/* Command */

static void usage(FILE *f) {
  fprintf(f, "usage: dmarcpipe report --domain D --html FILE [--since S] [--by day|week]\n"
             "                        [--redact] [--db DSN]\n"
             "\n"
             "Write one self-contained HTML file (inline CSS and SVG; it loads nothing) for D:\n"
             "the p=reject readiness verdict and numbers, charts of volume and DMARC pass\n"
             "rate over time (all mail and the top senders), the senders to fix and all\n"
             "senders with what to fix, the receivers, and the published policy.\n"
             "\n"
             "  --domain D     the domain (required)\n"
             "  --html FILE    where to write the report (required; - for standard output)\n"
             "  --since S      only reports whose period ends after S: a duration back from\n"
             "                 now (90m, 12h, 30d, 2w) or a date (2024-03-01, 2024-03-01T12:00Z)\n"
             "  --by P         chart per day (default) or week (UTC)\n"
             "  --redact       hide IP addresses (keeping the /24 or /48) and the local part\n"
             "                 of e-mail addresses\n"
             "  --db DSN       libpq connection string or URI (default: PG* environment,\n"
             "                 else the embedded cluster)\n"
             "  -h, --help     show this help\n");
}

int dp_report_cmd(int argc, char **argv) {
  static const struct option longopts[] = {
      {"db", required_argument, NULL, 'd'},    {"domain", required_argument, NULL, 'D'},
      {"since", required_argument, NULL, 's'}, {"by", required_argument, NULL, 'b'},
      {"html", required_argument, NULL, 'H'},  {"redact", no_argument, NULL, 'R'},
      {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
  };
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  o.by = DP_PERIOD_DAY; /* a report always shows a trend */
  int st = dp__query_args(&o, "report", argc, argv, longopts, usage, true);
  if (st >= 0) return st;
  const char *html = o.html;
  if (!html || !*html) {
    fprintf(stderr, "dmarcpipe report: --html FILE is required (see 'dmarcpipe report --help')\n");
    return 2;
  }
  char err[512] = "";
  int src = dp__query_services_init(NULL, err, sizeof err);
  if (src) return dp__query_done("report", NULL, src, err);
  PGconn *c = dp__query_connect("report", o.db);
  if (!c) {
    dp__query_services_set(NULL);
    return 2;
  }
  /* Written to FILE.tmp and renamed, so a failed run leaves no half page. */
  bool to_stdout = !strcmp(html, "-");
  char *tmp = NULL;
  FILE *out = stdout;
  if (!to_stdout) {
    size_t n = strlen(html) + 8;
    tmp = malloc(n);
    if (tmp) snprintf(tmp, n, "%s.tmp", html);
    out = tmp ? fopen(tmp, "w") : NULL;
    if (!out) {
      fprintf(stderr, "dmarcpipe report: cannot write %s.tmp\n", html);
      free(tmp);
      PQfinish(c);
      dp__query_services_set(NULL);
      return 2;
    }
  }
  /* SOURCE_DATE_EPOCH pins "generated" for reproducible files. */
  const char *sde = getenv("SOURCE_DATE_EPOCH");
  int64_t now = sde && *sde ? (int64_t)strtoll(sde, NULL, 10) : (int64_t)time(NULL);
  int rc = dp__report_html(c, &o.filter, o.by, o.redact, now, out, err, sizeof err);
  PQfinish(c);
  dp__query_services_set(NULL);
  if (!to_stdout) {
    if (fclose(out) && !rc) {
      rc = DP_EIO;
      snprintf(err, sizeof err, "cannot write %s", tmp);
    }
    if (!rc && rename(tmp, html)) {
      rc = DP_EIO;
      snprintf(err, sizeof err, "cannot rename %s to %s", tmp, html);
    }
    if (rc) remove(tmp);
    free(tmp);
  }
  if (rc) {
    fprintf(stderr, "dmarcpipe report: %s\n", err);
    return 2;
  }
  return 0;
}

int dp__report_html(PGconn *c, const dp_query_filter_t *f, dp_period_t by, bool redact,
                    int64_t generated, FILE *out, char *err, size_t errlen) {
  if (by == DP_PERIOD_NONE) by = DP_PERIOD_DAY;
  /* One snapshot for every part of the page, as in readiness. */
  bool opened;
  if (dp__query_agg_begin(c, &opened, err, errlen)) return DP_EPG;
  int rc = report_html(c, f, by, redact, generated, out, err, errlen);
  if (opened) PQclear(PQexec(c, rc ? "ROLLBACK" : "COMMIT"));
  return rc;
}
