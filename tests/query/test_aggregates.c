/* SPDX-License-Identifier: MIT */
/* tests/query/test_aggregates.c - the aggregates (migration 0003, caught up
 * from the pending reports before each query) give exactly the answers of the
 * record-level SQL they replaced: `senders` (every --fail, with and without
 * --since) and
 * `readiness` (classes, trend by day and week, reports, receivers,
 * disagreements) over a synthetic data set built to hit every branch (mixed
 * case, unequal DKIM arrays, forwarding reasons and ARC comments, strict
 * policies, several header_from and policy domains, overlapping ranges), and
 * the incrementally caught-up tables equal a rebuild from `record`; reports
 * stored after a catch-up are pending at query time and folded first; the
 * table form and the HTML report's pre-folded senders write the same; the
 * catch-up of migration 0005 writes the keys dp_agg_key() gives and
 * agg_dis_detail rows a pair and batch at a time; the sets migration 0006
 * makes distinct only when they hold two members or more are distinct, sorted.
 * Needs DP_TEST_DB; without it the database cases are skipped. */
#include "tests/test.h"

#include <unistd.h>

#include "core/core.h"
#include "query/query_int.h"
#include "store/store.h"

#include "query_test_db.h"

/* The record-level statements as they were before migration 0003
 * (query/senders.c and query/readiness.c), kept as the reference. */
#define REC_WHERE                                                                                  \
  "   WHERE (r.domain = $1::text OR x.header_from = $1::text"                                      \
  "          OR right(x.header_from, length($1::text) + 1) = '.' || $1::text)"                     \
  "     AND ($2::bigint IS NULL OR r.end_ts > to_timestamp($2::bigint))"

static const char *const rec_senders_sql[] = {
    "WITH rec AS MATERIALIZED ("
    "  SELECT x.sender, x.third_party, x.count, x.source_ip,"
    "         x.spf_aligned, x.dkim_aligned, x.spf_aligned_strict, x.dkim_aligned_strict,"
    "         (x.pe_dkim = 'pass' OR x.pe_spf = 'pass') AS policy_pass,"
    "         NOT (x.spf_aligned OR x.dkim_aligned) AS failing,"
    "         x.dkim_domains, x.dkim_results, x.dkim_selectors, x.spf_domains, x.spf_results,"
    "         x.reason_types && ARRAY['forwarded', 'mailing_list', 'trusted_forwarder'] AS relayed,"
    "         r.org_name, r.begin_ts, r.end_ts"
    "    FROM record_arrays x JOIN report r ON r.id = x.report_key"
    "   WHERE (r.domain = $1::text OR x.header_from = $1::text"
    "          OR right(x.header_from, length($1::text) + 1) = '.' || $1::text)"
    "     AND ($2::bigint IS NULL OR r.end_ts > to_timestamp($2::bigint))"
    ")",
    ", agg AS ("
    "  SELECT sender, bool_or(third_party) AS third_party,"
    "         sum(count)::bigint AS messages,"
    "         coalesce(sum(count) FILTER (WHERE spf_aligned), 0)::bigint AS spf_aligned,"
    "         coalesce(sum(count) FILTER (WHERE dkim_aligned), 0)::bigint AS dkim_aligned,"
    "         coalesce(sum(count) FILTER (WHERE NOT failing), 0)::bigint AS dmarc_pass,"
    "         coalesce(sum(count) FILTER (WHERE spf_aligned_strict), 0)::bigint AS spf_strict,"
    "         coalesce(sum(count) FILTER (WHERE dkim_aligned_strict), 0)::bigint AS dkim_strict,"
    "         coalesce(sum(count) FILTER (WHERE policy_pass), 0)::bigint AS policy_pass,"
    "         coalesce(sum(count) FILTER (WHERE failing AND relayed), 0)::bigint AS relayed,"
    "         array_agg(DISTINCT org_name ORDER BY org_name) AS reporters,"
    "         floor(extract(epoch FROM min(begin_ts)))::bigint AS first_seen,"
    "         floor(extract(epoch FROM max(end_ts)))::bigint AS last_seen"
    "    FROM rec GROUP BY sender"
    "), ips AS ("
    "  SELECT sender, array_agg(host(source_ip) ORDER BY n DESC, source_ip) AS ips"
    "    FROM (SELECT sender, source_ip, sum(count) AS n,"
    "                 row_number() OVER (PARTITION BY sender"
    "                                    ORDER BY sum(count) DESC, source_ip) AS rn"
    "            FROM rec GROUP BY sender, source_ip) t"
    "   WHERE rn <= 10 GROUP BY sender"
    ")",
    ", dk AS ("
    "  SELECT rec.sender, rec.failing, d.dom, coalesce(d.res, '') AS res,"
    "         coalesce(d.sel, '') AS sel, sum(rec.count) AS n"
    "    FROM rec,"
    "         unnest(rec.dkim_domains, rec.dkim_results, rec.dkim_selectors) AS d(dom, res, sel)"
    "   WHERE coalesce(d.dom, '') <> ''"
    "   GROUP BY 1, 2, 3, 4, 5"
    "), dkl AS ("
    "  SELECT sender, array_agg(item ORDER BY n DESC, item) AS doms"
    "    FROM (SELECT sender, dom || ':' || res AS item, sum(n) AS n FROM dk GROUP BY 1, 2) t"
    "   GROUP BY sender"
    "), dkf AS ("
    "  SELECT sender,"
    "         (array_agg(dom ORDER BY n DESC, dom)"
    "            FILTER (WHERE failing AND res = 'pass'))[1] AS foreign_pass,"
    "         (array_agg(dom ORDER BY n DESC, dom, sel)"
    "            FILTER (WHERE failing AND res <> 'pass' AND (dom = $1::text"
    "                    OR right(dom, length($1::text) + 1) = '.' || $1::text)))[1] AS own_fail,"
    "         (array_agg(sel ORDER BY n DESC, dom, sel)"
    "            FILTER (WHERE failing AND res <> 'pass' AND (dom = $1::text"
    "                    OR right(dom, length($1::text) + 1) = '.' || $1::text)))[1] AS own_sel"
    "    FROM dk GROUP BY sender"
    ")",
    ", sp AS ("
    "  SELECT rec.sender, rec.failing, s.dom, coalesce(s.res, '') AS res, sum(rec.count) AS n"
    "    FROM rec, unnest(rec.spf_domains, rec.spf_results) AS s(dom, res)"
    "   WHERE coalesce(s.dom, '') <> ''"
    "   GROUP BY 1, 2, 3, 4"
    "), spl AS ("
    "  SELECT sender, array_agg(item ORDER BY n DESC, item) AS doms"
    "    FROM (SELECT sender, dom || ':' || res AS item, sum(n) AS n FROM sp GROUP BY 1, 2) t"
    "   GROUP BY sender"
    "), spf AS ("
    "  SELECT sender,"
    "         (array_agg(dom ORDER BY n DESC, dom)"
    "            FILTER (WHERE failing AND res = 'pass'))[1] AS foreign_pass,"
    "         coalesce(bool_or(failing AND res <> 'pass' AND (dom = $1::text"
    "                  OR right(dom, length($1::text) + 1) = '.' || $1::text)), false) AS own_fail"
    "    FROM sp GROUP BY sender"
    ")",
    " SELECT a.sender, a.third_party, a.messages, a.spf_aligned, a.dkim_aligned, a.dmarc_pass,"
    "        a.spf_strict, a.dkim_strict, a.policy_pass,"
    "        coalesce(ips.ips, '{}'), coalesce(dkl.doms, '{}'), coalesce(spl.doms, '{}'),"
    "        a.reporters, a.first_seen, a.last_seen,"
    "        dkf.foreign_pass, dkf.own_fail, dkf.own_sel,"
    "        spf.foreign_pass, coalesce(spf.own_fail, false), a.relayed"
    "   FROM agg a"
    "   LEFT JOIN ips USING (sender) LEFT JOIN dkl USING (sender) LEFT JOIN dkf USING (sender)"
    "   LEFT JOIN spl USING (sender) LEFT JOIN spf USING (sender)"
    "  WHERE $3::text = 'all'"
    "     OR ($3::text = 'spf' AND a.messages > a.spf_aligned)"
    "     OR ($3::text = 'dkim' AND a.messages > a.dkim_aligned)"
    "     OR ($3::text = 'any' AND a.messages > a.dmarc_pass)"
    "  ORDER BY a.messages DESC, a.sender",
};

static const char *const rec_class_sql[] = {
    "WITH rec AS MATERIALIZED ("
    "  SELECT x.sender, x.count, x.source_ip, r.id AS rid, r.org_name,"
    "         (x.spf_aligned OR x.dkim_aligned) AS pass,"
    "         (x.spf_aligned_strict OR x.dkim_aligned_strict) AS pass_strict,"
    "         x.sender NOT LIKE 'unauthenticated %' AS authenticated,"
    "         x.dkim_domains, x.dkim_selectors, x.dkim_results,"
    "         CASE WHEN $3::text IS NULL THEN NULL"
    "              ELSE date_trunc($3::text, r.begin_ts AT TIME ZONE 'UTC') END AS period,"
    "         (EXISTS (SELECT 1 FROM unnest(x.reason_types) t"
    "                   WHERE lower(t) IN ('forwarded', 'mailing_list', 'trusted_forwarder'))"
    "          OR EXISTS (SELECT 1 FROM unnest(x.reason_comments) m"
    "                      WHERE lower(m) LIKE '%arc=pass%')) AS fwd_reason"
    "    FROM record_arrays x JOIN report r ON r.id = x.report_key" REC_WHERE ")",
    ", fwd_ip AS (SELECT DISTINCT source_ip FROM rec WHERE fwd_reason)"
    ", good_sig AS ("
    "  SELECT DISTINCT lower(d.dom) AS dom, coalesce(d.sel, '') AS sel"
    "    FROM rec, unnest(rec.dkim_domains, rec.dkim_selectors, rec.dkim_results)"
    "              AS d(dom, sel, res)"
    "   WHERE lower(d.res) = 'pass' AND (lower(d.dom) = $1::text"
    "         OR right(lower(d.dom), length($1::text) + 1) = '.' || $1::text)"
    "), cls AS ("
    "  SELECT rec.sender, rec.count, rec.period, rec.pass, rec.pass_strict, rec.rid, rec.org_name,"
    "         CASE WHEN rec.pass THEN 'pass'"
    "              WHEN rec.fwd_reason OR rec.source_ip IN (SELECT source_ip FROM fwd_ip)"
    "                THEN 'forwarded'"
    "              WHEN EXISTS ("
    "                SELECT 1 FROM unnest(rec.dkim_domains, rec.dkim_selectors, rec.dkim_results)"
    "                                AS d(dom, sel, res)"
    "                  JOIN good_sig g ON g.dom = lower(d.dom)"
    "                   AND (g.sel = coalesce(d.sel, '') OR coalesce(d.sel, '') = '')"
    "                 WHERE lower(coalesce(d.res, '')) NOT IN ('pass', 'none', ''))"
    "                THEN 'forwarded'"
    "              WHEN rec.authenticated THEN 'fixable'"
    "              ELSE 'unauthenticated' END AS class"
    "    FROM rec"
    ")",
    " SELECT GROUPING(period, sender),"
    "        floor(extract(epoch FROM period))::bigint, sender,"
    "        coalesce(sum(count), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE pass), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE class = 'fixable'), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE class = 'forwarded'), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE class = 'unauthenticated'), 0)::bigint,"
    "        coalesce(sum(count) FILTER (WHERE NOT pass_strict), 0)::bigint,"
    "        count(DISTINCT rid), count(DISTINCT org_name)"
    "   FROM cls"
    "  GROUP BY GROUPING SETS ((), (period), (sender))"
    " HAVING GROUPING(sender) = 1 OR sum(count) FILTER (WHERE class = 'fixable') > 0"
    "  ORDER BY 1, 2, 3",
};

static const char *const rec_disagree_sql[] = {
    "WITH rec AS MATERIALIZED ("
    "  SELECT x.source_ip, x.header_from, x.count, r.org_name,"
    "         lower(x.pe_dkim) AS pd, lower(x.pe_spf) AS ps,"
    "         CASE WHEN lower(r.adkim) = 's' THEN x.dkim_aligned_strict"
    "              ELSE x.dkim_aligned END AS dk_ok,"
    "         CASE WHEN lower(r.aspf) = 's' THEN x.spf_aligned_strict"
    "              ELSE x.spf_aligned END AS sp_ok"
    "    FROM record_arrays x JOIN report r ON r.id = x.report_key" REC_WHERE ")",
    ", src AS ("
    "  SELECT source_ip, header_from, sum(count)::bigint AS messages,"
    "         (bool_or(pd = 'pass') AND bool_or(pd = 'fail')"
    "          AND count(DISTINCT org_name) FILTER (WHERE pd IN ('pass', 'fail')) > 1) AS dk_rcv,"
    "         (bool_or(ps = 'pass') AND bool_or(ps = 'fail')"
    "          AND count(DISTINCT org_name) FILTER (WHERE ps IN ('pass', 'fail')) > 1) AS sp_rcv,"
    "         coalesce(bool_or(pd IN ('pass', 'fail') AND (pd = 'pass') <> dk_ok), false) AS dk_re,"
    "         coalesce(bool_or(ps IN ('pass', 'fail') AND (ps = 'pass') <> sp_ok), false) AS sp_re,"
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

static bool setup_done, setup_failed;

/* Reports $1..$2 (48 at first: 4 receivers over 12 days), some starting at
 * 06:00, ranges of 86399 and 86400 seconds, three policy domains, adkim/aspf
 * r, s and S. */
static const char fixture_reports[] =
    "INSERT INTO report (id, org_name, report_id, domain, begin_ts, end_ts, adkim, aspf,"
    "                    schema_version, source, content_hash, n_records, messages)"
    " SELECT i, (ARRAY['google.com', 'Yahoo', 'Enterprise Outlook', 'GMX'])[1 + i % 4], 'r' || i,"
    "        CASE WHEN i % 12 = 0 THEN 'other.org' WHEN i % 9 = 0 THEN 'news.example.com'"
    "             ELSE 'example.com' END, b,"
    "        b + CASE WHEN i % 2 = 0 THEN interval '86399 s' ELSE interval '1 day' END,"
    "        CASE i % 3 WHEN 0 THEN 's' WHEN 1 THEN '' ELSE 'r' END,"
    "        CASE WHEN i % 4 = 0 THEN 'S' ELSE 'r' END, 1, 'fixture', i, 60, 0"
    "   FROM generate_series($1::int, $2::int) i,"
    "        LATERAL (SELECT '2024-03-01T00:00:00Z'::timestamptz + ((i - 1) / 4) * interval '1 day'"
    "                        + CASE WHEN i % 5 = 0 THEN interval '6 h' ELSE interval '0' END) t(b)";

/* 60 records per report from the same sources, report after report. */
static const char fixture_records[] =
    "INSERT INTO record_arrays (report_key, begin_ts, seq, source_ip, count, pe_dkim, pe_spf,"
    "  reason_types, reason_comments, header_from, dkim_domains, dkim_selectors, dkim_results,"
    "  spf_domains, spf_results, dkim_aligned, dkim_aligned_strict, spf_aligned,"
    "  spf_aligned_strict, sender, third_party)"
    " SELECT r.id, r.begin_ts, j,"
    "        CASE WHEN j % 11 = 0 THEN ('2001:db8::' || (j % 3))::inet"
    "             ELSE ('192.0.2.' || (j % 17))::inet END,"
    "        (r.id * 7 + j * 13) % 40,"
    "        (ARRAY['pass', 'fail', '', 'Pass'])[1 + (r.id + j) % 4],"
    "        (ARRAY['fail', 'pass', 'pass', ''])[1 + (r.id * j) % 4],"
    "        CASE j % 9 WHEN 0 THEN '{forwarded}' WHEN 1 THEN '{Mailing_List}'"
    "                   WHEN 2 THEN '{local_policy}' ELSE '{}' END::text[],"
    "        CASE WHEN j % 13 = 0 THEN '{\"ARC=pass (i=1)\"}' ELSE '{}' END::text[],"
    "        (ARRAY['example.com', 'news.example.com', 'EXAMPLE.COM', 'notexample.com',"
    "               'other.org'])[1 + j % 5],"
    "        (ARRAY['{example.com}', '{example.com,sendgrid.net}', '{news.example.com}', '{}',"
    "               '{Example.com}', '{example.com,sendgrid.net}'])[1 + j % 6]::text[],"
    "        (ARRAY['{s1}', '{s1,sg}', '{\"\"}', '{}', '{s2}', '{s2}'])[1 + j % 6]::text[],"
    "        (ARRAY['{pass}', '{fail,pass}', '{fail}', '{}', '{Fail}',"
    "               CASE WHEN r.id % 2 = 0 THEN '{pass,pass}' ELSE '{fail,pass}' END])"
    "          [1 + j % 6]::text[],"
    "        (ARRAY['{example.com}', '{sendgrid.net}', '{example.com}', '{}'])[1 + j % 4]::text[],"
    "        (ARRAY['{pass}', '{pass}', '{softfail}', '{}'])[1 + j % 4]::text[],"
    "        j % 6 IN (0, 5) AND r.id % 2 = 0, j % 6 = 0, j % 4 = 0 AND r.id % 3 <> 0,"
    "        j % 4 = 0 AND r.id % 4 = 0,"
    "        CASE WHEN (j % 6 IN (0, 5) AND r.id % 2 = 0) OR (j % 4 = 0 AND r.id % 3 <> 0)"
    "               THEN 'example.com'"
    "             WHEN j % 6 IN (1, 5) OR j % 4 = 1 THEN 'sendgrid.net'"
    "             WHEN j % 11 = 0 THEN 'unauthenticated 2001:db8::/48'"
    "             ELSE 'unauthenticated 192.0.2.0/24' END,"
    "        j % 6 IN (1, 5) OR j % 4 = 1"
    "   FROM report r, generate_series(1, 60) j WHERE r.id BETWEEN $1::int AND $2::int";

/* Sources no receiver judged (no policy_evaluated verdict): pairs that are
 * never flagged as receivers disagreeing, for reports $1..$2. */
static const char fixture_quiet[] =
    "INSERT INTO record_arrays (report_key, begin_ts, seq, source_ip, count, header_from,"
    "  dkim_aligned, dkim_aligned_strict, spf_aligned, spf_aligned_strict, sender, third_party)"
    " SELECT r.id, r.begin_ts, j, ('198.51.100.' || (j + r.id % 3))::inet, j + r.id % 5,"
    "        'example.com', false, false, false, false,"
    "        'unauthenticated 198.51.' || ((r.id + j) % 9) || '.0/24', false"
    "   FROM report r, generate_series(61, 64) j WHERE r.id BETWEEN $1::int AND $2::int";

/* Add reports from..to with their records, in separate statements. */
static bool add_reports(PGconn *c, int from, int to) {
  char a[16], b[16];
  snprintf(a, sizeof a, "%d", from);
  snprintf(b, sizeof b, "%d", to);
  const char *p[2] = {a, b};
  const char *const stmts[] = {fixture_reports, fixture_records, fixture_quiet};
  for (size_t k = 0; k < 3; k++) {
    PGresult *res = PQexecParams(c, stmts[k], 2, NULL, p, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) fprintf(stderr, "fixture: %s", PQresultErrorMessage(res));
    PQclear(res);
    if (!ok) return false;
  }
  return true;
}

static PGconn *db(void) {
  if (setup_done) return setup_failed ? NULL : conn;
  setup_done = true;
  setup_failed = true;
  if (!query_test_db_create("dp_test_aggregates")) return NULL;
  bool ok;
  const char *all[2] = {"1", "48"};
  PGresult *rr = PQexecParams(conn, fixture_reports, 2, NULL, all, NULL, NULL, 0);
  ok = PQresultStatus(rr) == PGRES_COMMAND_OK;
  PQclear(rr);
  rr = ok ? PQexecParams(conn, fixture_quiet, 2, NULL, all, NULL, NULL, 0) : NULL;
  ok = ok && PQresultStatus(rr) == PGRES_COMMAND_OK;
  PQclear(rr);
  if (!ok) return NULL;
  /* three statements: later ones merge into the rows of earlier ones */
  static const char *const ranges[][2] = {{"1", "16"}, {"17", "40"}, {"41", "48"}};
  for (size_t k = 0; k < 3; k++) {
    PGresult *res = PQexecParams(conn, fixture_records, 2, NULL, ranges[k], NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) fprintf(stderr, "records: %s", PQresultErrorMessage(res));
    PQclear(res);
    if (!ok) return NULL;
  }
  setup_failed = false;
  return conn;
}


static PGresult *run(PGconn *c, const char *const *parts, size_t nparts, int nparams,
                     const char *const *params) {
  dp_buf_t sql;
  dp_buf_init(&sql, 0);
  for (size_t k = 0; k < nparts; k++)
    dp_buf_puts(&sql, parts[k]);
  PGresult *res = PQexecParams(c, sql.data, nparams, NULL, params, NULL, NULL, 0);
  dp_buf_free(&sql);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    fprintf(stderr, "reference query: %s", PQresultErrorMessage(res));
    PQclear(res);
    return NULL;
  }
  return res;
}

/* Lines are compared as sorted sets of text. */
typedef struct lines {
  char **v;
  size_t n;
} lines_t;

static void add_line(lines_t *l, dp_buf_t *b) {
  char **p = realloc(l->v, (l->n + 1) * sizeof *p);
  if (!p) abort();
  l->v = p;
  l->v[l->n++] = strdup(b->len ? b->data : "");
  dp_buf_reset(b);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Equal sets, sorted; the first difference is printed. */
static bool same(lines_t *a, lines_t *b, const char *what) {
  qsort(a->v, a->n, sizeof *a->v, cmp_str);
  qsort(b->v, b->n, sizeof *b->v, cmp_str);
  bool eq = a->n == b->n;
  for (size_t i = 0; eq && i < a->n; i++)
    eq = !strcmp(a->v[i], b->v[i]);
  if (!eq) {
    fprintf(stderr, "%s: %zu aggregate lines, %zu record-level lines\n", what, a->n, b->n);
    for (size_t i = 0; i < a->n || i < b->n; i++) {
      const char *x = i < a->n ? a->v[i] : "-", *y = i < b->n ? b->v[i] : "-";
      if (strcmp(x, y)) {
        fprintf(stderr, "  agg: %s\n  rec: %s\n", x, y);
        break;
      }
    }
  }
  for (size_t i = 0; i < a->n; i++)
    free(a->v[i]);
  for (size_t i = 0; i < b->n; i++)
    free(b->v[i]);
  free(a->v);
  free(b->v);
  a->v = b->v = NULL;
  a->n = b->n = 0;
  return eq;
}

static void put_list(dp_buf_t *b, char **items, size_t n) {
  dp_buf_putc(b, '[');
  for (size_t i = 0; i < n; i++)
    dp_buf_printf(b, "%s%s", i ? "," : "", items[i] ? items[i] : "NULL");
  dp_buf_puts(b, "]|");
}

static void put_pg_list(dp_buf_t *b, const char *lit) {
  char **items = NULL;
  size_t n = 0;
  if (dp__query_pgarray_parse(lit, &items, &n)) abort();
  put_list(b, items, n);
  for (size_t i = 0; i < n; i++)
    free(items[i]);
  free(items);
}

static const char *nz(const char *s) {
  return s ? s : "NULL";
}

/* One senders row as text, from the production fetch ... */
static void sender_line(dp_buf_t *b, const dp_sender_t *s) {
  dp_buf_printf(b, "%s|%d|%lld|%lld|%lld|%lld|%lld|%lld|%lld|", s->sender, s->third_party,
                (long long)s->messages, (long long)s->spf_aligned, (long long)s->dkim_aligned,
                (long long)s->dmarc_pass, (long long)s->spf_aligned_strict,
                (long long)s->dkim_aligned_strict, (long long)s->policy_pass);
  put_list(b, s->source_ips, s->n_source_ips);
  put_list(b, s->dkim_domains, s->n_dkim_domains);
  put_list(b, s->spf_domains, s->n_spf_domains);
  put_list(b, s->reporters, s->n_reporters);
  dp_buf_printf(b, "%lld|%lld|%s|%s|%s|%s|%d|%lld", (long long)s->first_seen,
                (long long)s->last_seen, nz(s->dkim_foreign), nz(s->dkim_own_fail),
                nz(s->dkim_own_sel), nz(s->spf_foreign), s->spf_own_fail, (long long)s->relayed);
}

/* ... and from the record-level statement (same column order). */
static void sender_line_ref(dp_buf_t *b, const PGresult *r, int i) {
  const char *t = PQgetvalue(r, i, 1);
  dp_buf_printf(b, "%s|%d|", PQgetvalue(r, i, 0), !strcmp(t, "t"));
  for (int j = 2; j <= 8; j++)
    dp_buf_printf(b, "%s|", PQgetvalue(r, i, j));
  for (int j = 9; j <= 12; j++)
    put_pg_list(b, PQgetvalue(r, i, j));
  dp_buf_printf(b, "%s|%s|", PQgetvalue(r, i, 13), PQgetvalue(r, i, 14));
  for (int j = 15; j <= 18; j++)
    dp_buf_printf(b, "%s|", PQgetisnull(r, i, j) ? "NULL" : PQgetvalue(r, i, j));
  dp_buf_printf(b, "%d|%s", !strcmp(PQgetvalue(r, i, 19), "t"), PQgetvalue(r, i, 20));
}

static const char *const domains[] = {"example.com", "news.example.com", "other.org",
                                      "nothing.example"};
/* 2024-03-06T12:00:00Z: reports starting before it end on both sides of it */
static const char *const sinces[] = {NULL, "1709726400"};

TEST(agg_senders_equal_record_level) {
  NEED_DB();
  static const char *const fails[] = {"all", "spf", "dkim", "any"};
  size_t compared = 0;
  for (size_t d = 0; d < sizeof domains / sizeof *domains; d++)
    for (size_t s = 0; s < 2; s++)
      for (int fl = 0; fl < 4; fl++) {
        dp_query_filter_t f = {domains[d], sinces[s] != NULL, sinces[s] ? atoll(sinces[s]) : 0};
        dp_sender_t *rows = NULL;
        size_t n = 0;
        char err[512] = "";
        ASSERT_OK(dp__query_senders_fetch(c, &f, (dp_sender_fail_t)fl, &rows, &n, err, sizeof err));
        const char *params[] = {domains[d], sinces[s], fails[fl]};
        PGresult *ref =
            run(c, rec_senders_sql, sizeof rec_senders_sql / sizeof *rec_senders_sql, 3, params);
        ASSERT_NOT_NULL(ref);
        if (!ref) {
          dp__query_senders_free(rows, n);
          return;
        }
        /* same order too: most messages first, then by name */
        ASSERT_EQ((size_t)PQntuples(ref), n);
        dp_buf_t a, b;
        dp_buf_init(&a, 0);
        dp_buf_init(&b, 0);
        for (size_t i = 0; i < n && i < (size_t)PQntuples(ref); i++) {
          sender_line(&a, &rows[i]);
          sender_line_ref(&b, ref, (int)i);
          if (strcmp(a.data, b.data))
            fprintf(stderr, "%s since=%s fail=%s\n  agg: %s\n  rec: %s\n", domains[d],
                    nz(sinces[s]), fails[fl], a.data, b.data);
          ASSERT_STR_EQ(a.data, b.data);
          dp_buf_reset(&a);
          dp_buf_reset(&b);
          compared++;
        }
        dp_buf_free(&a);
        dp_buf_free(&b);
        PQclear(ref);
        dp__query_senders_free(rows, n);
      }
  /* the data set is not trivial: many sender rows were compared */
  ASSERT_TRUE(compared > 40);
}

/* The table form reads the unauthenticated networks it folds as one summed
 * row (dp__query_senders_fetch_table): the text is the same as the one
 * written from every sender's row. */
TEST(agg_senders_table_prefolded) {
  NEED_DB();
  size_t folded = 0;
  for (size_t d = 0; d < sizeof domains / sizeof *domains; d++)
    for (size_t s = 0; s < 2; s++)
      for (int fl = 0; fl < 4; fl++) {
        dp_query_filter_t f = {domains[d], sinces[s] != NULL, sinces[s] ? atoll(sinces[s]) : 0};
        dp_sender_t *all = NULL, *tab = NULL;
        size_t na = 0, nt = 0;
        char err[512] = "";
        ASSERT_OK(dp__query_senders_fetch(c, &f, (dp_sender_fail_t)fl, &all, &na, err, sizeof err));
        ASSERT_OK(
            dp__query_senders_fetch_table(c, &f, (dp_sender_fail_t)fl, &tab, &nt, err, sizeof err));
        for (size_t i = 0; i < nt; i++)
          folded += tab[i].folded_networks;
        char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        FILE *fa = open_memstream(&a, &la), *fb = open_memstream(&b, &lb);
        ASSERT_OK(dp__query_senders_write(all, na, domains[d], DP_QFMT_TABLE, fa));
        ASSERT_OK(dp__query_senders_write(tab, nt, domains[d], DP_QFMT_TABLE, fb));
        fclose(fa);
        fclose(fb);
        if (strcmp(a, b))
          fprintf(stderr, "%s fail=%d\n--- all rows\n%s--- prefolded\n%s", domains[d], fl, a, b);
        ASSERT_STR_EQ(a, b);
        free(a);
        free(b);
        dp__query_senders_free(all, na);
        dp__query_senders_free(tab, nt);
      }
  /* networks were folded by the query in some of the cases */
  ASSERT_TRUE(folded > 0);
}

/* The HTML report's listing: the first senders as in the full fetch, the
 * others as one summed row. */
TEST(agg_senders_top_prefolded) {
  NEED_DB();
  dp_query_filter_t f = {"example.com", false, 0};
  dp_sender_t *all = NULL, *top = NULL;
  size_t na = 0, nt = 0;
  char err[512] = "";
  ASSERT_OK(dp__query_senders_fetch(c, &f, DP_FAIL_ALL, &all, &na, err, sizeof err));
  ASSERT_OK(dp__query_senders_fetch_top(c, &f, DP_FAIL_ALL, 4, &top, &nt, err, sizeof err));
  ASSERT_TRUE(na > 5);
  ASSERT_EQ(nt, (size_t)5);
  dp_buf_t a, b;
  dp_buf_init(&a, 0);
  dp_buf_init(&b, 0);
  for (size_t i = 0; i < 4 && i < nt && i < na; i++) {
    sender_line(&a, &all[i]);
    sender_line(&b, &top[i]);
    ASSERT_STR_EQ(a.data, b.data);
    ASSERT_STR_EQ(all[i].fix, top[i].fix);
    dp_buf_reset(&a);
    dp_buf_reset(&b);
  }
  dp_buf_free(&a);
  dp_buf_free(&b);
  int64_t m = 0, p = 0, sp = 0, dk = 0;
  for (size_t i = 4; i < na; i++) {
    m += all[i].messages;
    p += all[i].dmarc_pass;
    sp += all[i].spf_aligned;
    dk += all[i].dkim_aligned;
  }
  if (nt == 5) {
    ASSERT_EQ(top[4].folded_networks, na - 4);
    ASSERT_EQ(top[4].messages, m);
    ASSERT_EQ(top[4].dmarc_pass, p);
    ASSERT_EQ(top[4].spf_aligned, sp);
    ASSERT_EQ(top[4].dkim_aligned, dk);
  }
  dp__query_senders_free(all, na);
  dp__query_senders_free(top, nt);
}

TEST(agg_readiness_equal_record_level) {
  NEED_DB();
  static const dp_period_t bys[] = {DP_PERIOD_NONE, DP_PERIOD_DAY, DP_PERIOD_WEEK};
  static const char *const by_names[] = {NULL, "day", "week"};
  size_t flagged = 0, forwarded = 0;
  /* Reports stored after the senders test caught up: pending when the first
   * readiness query starts, which must fold them before reading. */
  ASSERT_TRUE(add_reports(c, 49, 56));
  PGresult *pend = PQexec(c, "SELECT count(*) FROM agg_pending");
  ASSERT_STR_EQ(PQgetvalue(pend, 0, 0), "8");
  PQclear(pend);
  for (size_t d = 0; d < sizeof domains / sizeof *domains; d++)
    for (size_t s = 0; s < 2; s++)
      for (size_t k = 0; k < 3; k++) {
        dp_query_filter_t f = {domains[d], sinces[s] != NULL, sinces[s] ? atoll(sinces[s]) : 0};
        dp_readiness_t r;
        char err[512] = "";
        int frc = dp__query_readiness_fetch(c, &f, bys[k], &r, err, sizeof err);
        if (frc) fprintf(stderr, "readiness: %s\n", err);
        ASSERT_OK(frc);
        const char *params[] = {domains[d], sinces[s], by_names[k]};
        PGresult *ref =
            run(c, rec_class_sql, sizeof rec_class_sql / sizeof *rec_class_sql, 3, params);
        PGresult *dis =
            run(c, rec_disagree_sql, sizeof rec_disagree_sql / sizeof *rec_disagree_sql, 2, params);
        ASSERT_NOT_NULL(ref);
        ASSERT_NOT_NULL(dis);
        if (!ref || !dis) {
          PQclear(ref);
          PQclear(dis);
          dp__query_readiness_free(&r);
          return;
        }
        lines_t la = {NULL, 0}, lb = {NULL, 0};
        dp_buf_t b;
        dp_buf_init(&b, 0);
        /* totals, periods, fixable senders */
        const dp_readiness_counts_t *t = &r.total;
        dp_buf_printf(&b, "total|%lld|%lld|%lld|%lld|%lld|%lld|%lld|%lld", (long long)t->messages,
                      (long long)t->dmarc_pass, (long long)t->fail_fixable,
                      (long long)t->fail_forwarded, (long long)t->fail_unauthenticated,
                      (long long)t->dmarc_fail_if_strict, (long long)r.reports,
                      (long long)r.receivers);
        add_line(&la, &b);
        forwarded += (size_t)t->fail_forwarded;
        for (size_t i = 0; i < r.n_trend; i++) {
          const dp_readiness_counts_t *p = &r.trend[i].c;
          dp_buf_printf(&b, "period|%lld|%lld|%lld|%lld|%lld|%lld|%lld",
                        (long long)r.trend[i].start, (long long)p->messages,
                        (long long)p->dmarc_pass, (long long)p->fail_fixable,
                        (long long)p->fail_forwarded, (long long)p->fail_unauthenticated,
                        (long long)p->dmarc_fail_if_strict);
          add_line(&la, &b);
        }
        for (size_t i = 0; i < r.n_to_fix; i++) {
          dp_buf_printf(&b, "fix|%s|%lld", r.to_fix[i].sender, (long long)r.to_fix_fixable[i]);
          add_line(&la, &b);
        }
        for (int i = 0; i < PQntuples(ref); i++) {
          int g = atoi(PQgetvalue(ref, i, 0));
          if (g == 3)
            dp_buf_printf(&b, "total|%s|%s|%s|%s|%s|%s|%s|%s", PQgetvalue(ref, i, 3),
                          PQgetvalue(ref, i, 4), PQgetvalue(ref, i, 5), PQgetvalue(ref, i, 6),
                          PQgetvalue(ref, i, 7), PQgetvalue(ref, i, 8), PQgetvalue(ref, i, 9),
                          PQgetvalue(ref, i, 10));
          else if (g == 1 && by_names[k])
            dp_buf_printf(&b, "period|%s|%s|%s|%s|%s|%s|%s", PQgetvalue(ref, i, 1),
                          PQgetvalue(ref, i, 3), PQgetvalue(ref, i, 4), PQgetvalue(ref, i, 5),
                          PQgetvalue(ref, i, 6), PQgetvalue(ref, i, 7), PQgetvalue(ref, i, 8));
          else if (g == 2)
            dp_buf_printf(&b, "fix|%s|%s", PQgetvalue(ref, i, 2), PQgetvalue(ref, i, 5));
          else
            continue;
          add_line(&lb, &b);
        }
        ASSERT_TRUE(same(&la, &lb, domains[d]));
        /* disagreements: the count and the top 10, in order */
        int64_t ref_sources = PQntuples(dis) ? atoll(PQgetvalue(dis, 0, 0)) : 0;
        ASSERT_EQ(r.disagree_sources, ref_sources);
        ASSERT_EQ((int)r.n_disagree, PQntuples(dis));
        for (int i = 0; i < PQntuples(dis) && (size_t)i < r.n_disagree; i++) {
          const dp_disagreement_t *x = &r.disagree[i];
          dp_buf_printf(&b, "%s|%s|%lld|", x->source_ip, x->header_from, (long long)x->messages);
          put_list(&b, x->reasons, x->n_reasons);
          put_list(&b, x->verdicts, x->n_verdicts);
          char *mine = strdup(b.data);
          dp_buf_reset(&b);
          dp_buf_printf(&b, "%s|%s|%s|", PQgetvalue(dis, i, 1), PQgetvalue(dis, i, 2),
                        PQgetvalue(dis, i, 3));
          put_pg_list(&b, PQgetvalue(dis, i, 4));
          put_pg_list(&b, PQgetvalue(dis, i, 5));
          ASSERT_STR_EQ(mine, b.data);
          free(mine);
          dp_buf_reset(&b);
        }
        flagged += r.n_disagree;
        dp_buf_free(&b);
        PQclear(ref);
        PQclear(dis);
        dp__query_readiness_free(&r);
      }
  /* the data set exercises the hard parts */
  ASSERT_TRUE(flagged > 10);
  ASSERT_TRUE(forwarded > 0);
}

#define DIS_PAIR_NORM                                                                              \
  "CREATE TEMP VIEW dis_pair_norm AS"                                                              \
  " SELECT k, header_from, source_ip, dk_pass_orgs, dk_fail_orgs, sp_pass_orgs, sp_fail_orgs,"     \
  "        dk_re, sp_re, flagged, d.dom, d.b, d.e, d.org, d.pd, d.ps, bool_or(d.dkre) AS dkre,"    \
  "        bool_or(d.spre) AS spre, sum(d.m) AS messages"                                          \
  "   FROM agg_dis_pair JOIN agg_dis_detail USING (k),"                                            \
  "        unnest(d_domain, d_begin, d_end, d_org, d_pd, d_ps, d_dk_re, d_sp_re,"                  \
  "               d_messages) AS d(dom, b, e, org, pd, ps, dkre, spre, m)"                         \
  "  GROUP BY k, header_from, source_ip, dk_pass_orgs, dk_fail_orgs, sp_pass_orgs, sp_fail_orgs,"  \
  "           dk_re, sp_re, flagged, d.dom, d.b, d.e, d.org, d.pd, d.ps"

/* The tables the trigger filled, statement after statement, equal the ones
 * computed from `record` in one go. */
TEST(agg_rebuild_equals_incremental) {
  NEED_DB();
  static const char *const tables[] = {
      "agg_sender",  "agg_sender_all", "agg_ip",       "agg_dkim",      "agg_spf",   "agg_class",
      "agg_fail_ip", "agg_fwd_ip",     "agg_good_sig", "dis_pair_norm", "agg_report"};
  const size_t ntables = sizeof tables / sizeof tables[0];
  char sql[512];
  ASSERT_TRUE(exec(c, "BEGIN"));
  /* agg_dis_pair's detail arrays grow batch after batch, in batch order:
   * compared as the sums per pair, domain, range, receiver and verdicts */
  ASSERT_TRUE(exec(c, DIS_PAIR_NORM));
  for (size_t i = 0; i < ntables; i++) {
    snprintf(sql, sizeof sql, "CREATE TEMP TABLE before_%s AS SELECT * FROM %s", tables[i],
             tables[i]);
    ASSERT_TRUE(exec(c, sql));
  }
  ASSERT_TRUE(exec(c, "SELECT dp_agg_rebuild()"));
  ASSERT_TRUE(exec(c, "SELECT * FROM dp_agg_catch_up_batch(2147483647)"));
  for (size_t i = 0; i < ntables; i++) {
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM %s), (SELECT count(*) FROM"
             " ((TABLE before_%s EXCEPT ALL TABLE %s) UNION ALL"
             "  (TABLE %s EXCEPT ALL TABLE before_%s)) d)",
             tables[i], tables[i], tables[i], tables[i], tables[i]);
    PGresult *res = PQexec(c, sql);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
      ASSERT_TRUE(atoll(PQgetvalue(res, 0, 0)) > 0);
      ASSERT_STR_EQ(PQgetvalue(res, 0, 1), "0");
    }
    PQclear(res);
  }
  /* the fixture exercises both ways of being forwarded without a reason of
   * its own: an address that had a forwarding reason elsewhere (agg_fail_ip
   * rows moved at query time), and a failing signature that verifies elsewhere */
  PGresult *ex = PQexec(c, "SELECT (SELECT count(*) FROM agg_fail_ip f"
                           "         WHERE f.source_ip IN (SELECT source_ip FROM agg_fwd_ip)),"
                           " (SELECT count(*) FROM agg_class a, unnest(a.fs_dom) d"
                           "   WHERE d IN (SELECT dom FROM agg_good_sig)),"
                           " (SELECT count(*) FROM agg_dis_pair WHERE flagged),"
                           " (SELECT count(*) FROM agg_dis_pair WHERE NOT flagged)");
  ASSERT_EQ(PQresultStatus(ex), PGRES_TUPLES_OK);
  if (PQresultStatus(ex) == PGRES_TUPLES_OK)
    for (int j = 0; j < 4; j++)
      if (atoll(PQgetvalue(ex, 0, j)) <= 0) {
        fprintf(stderr, "fixture exercise %d: none\n", j);
        ASSERT_TRUE(false);
      }
  PQclear(ex);
  /* message totals equal the records' */
  PGresult *res =
      PQexec(c, "SELECT (SELECT sum(count) FROM record),"
                " (SELECT sum(messages) FROM agg_sender),"
                " (SELECT sum(messages) FROM agg_ip), (SELECT sum(messages) FROM agg_class),"
                " (SELECT sum(messages) FROM dis_pair_norm),"
                " (SELECT sum(messages) FROM agg_report)");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  for (int j = 1; j < 6 && PQresultStatus(res) == PGRES_TUPLES_OK; j++)
    ASSERT_STR_EQ(PQgetvalue(res, 0, j), PQgetvalue(res, 0, 0));
  PQclear(res);
  ASSERT_TRUE(exec(c, "ROLLBACK"));
}

/* After a rebuild (one mark per report, oldest first), a catch-up batch
 * claims whole marks in (begin_ts, report_key) order until their records
 * reach its budget: at least one report, and the one that reaches the budget
 * is included. */
TEST(agg_batch_claims_by_records_in_range_order) {
  NEED_DB();
  ASSERT_TRUE(exec(c, "BEGIN"));
  ASSERT_TRUE(exec(c, "SELECT dp_agg_rebuild()"));
  PGresult *o = PQexec(c, "SELECT p.report_key, r.n_records FROM agg_pending p"
                          " JOIN report r ON r.id = p.report_key"
                          " ORDER BY p.begin_ts, p.report_key LIMIT 3");
  ASSERT_EQ(PQresultStatus(o), PGRES_TUPLES_OK);
  ASSERT_EQ(PQntuples(o), 3);
  if (PQresultStatus(o) == PGRES_TUPLES_OK && PQntuples(o) == 3) {
    long long n[3];
    for (int i = 0; i < 3; i++) n[i] = atoll(PQgetvalue(o, i, 1));
    ASSERT_TRUE(n[1] > 0 && n[2] > 0);
    char sql[256], want[64];
    /* a budget of 1 record: the first report alone */
    PGresult *b = PQexec(c, "SELECT reports, records FROM dp_agg_catch_up_batch(1)");
    ASSERT_EQ(PQresultStatus(b), PGRES_TUPLES_OK);
    if (PQresultStatus(b) == PGRES_TUPLES_OK) {
      ASSERT_STR_EQ(PQgetvalue(b, 0, 0), "1");
      snprintf(want, sizeof want, "%lld", n[0]);
      ASSERT_STR_EQ(PQgetvalue(b, 0, 1), want);
    }
    PQclear(b);
    /* one record more than the second holds: the second and the third */
    snprintf(sql, sizeof sql, "SELECT reports, records FROM dp_agg_catch_up_batch(%lld)",
             n[1] + 1);
    b = PQexec(c, sql);
    ASSERT_EQ(PQresultStatus(b), PGRES_TUPLES_OK);
    if (PQresultStatus(b) == PGRES_TUPLES_OK) {
      ASSERT_STR_EQ(PQgetvalue(b, 0, 0), "2");
      snprintf(want, sizeof want, "%lld", n[1] + n[2]);
      ASSERT_STR_EQ(PQgetvalue(b, 0, 1), want);
    }
    PQclear(b);
    /* exactly those three marks are gone */
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM agg_pending WHERE report_key IN (%s, %s, %s)),"
             " (SELECT count(*) FROM report) - (SELECT count(*) FROM agg_pending)",
             PQgetvalue(o, 0, 0), PQgetvalue(o, 1, 0), PQgetvalue(o, 2, 0));
    b = PQexec(c, sql);
    ASSERT_EQ(PQresultStatus(b), PGRES_TUPLES_OK);
    if (PQresultStatus(b) == PGRES_TUPLES_OK) {
      ASSERT_STR_EQ(PQgetvalue(b, 0, 0), "0");
      ASSERT_STR_EQ(PQgetvalue(b, 0, 1), "3");
    }
    PQclear(b);
  }
  PQclear(o);
  ASSERT_TRUE(exec(c, "ROLLBACK"));
}

/* Every row's key is dp_agg_key() of its key columns, as migration 0003
 * wrote them: the catch-up of migration 0005 spells the key expression out
 * (no SQL function call per row), and rows folded before and after that
 * migration must still meet on conflict. */
TEST(agg_keys_equal_dp_agg_key) {
  NEED_DB();
#define EP(x) "extract(epoch FROM " x ")::text"
  static const char *const checks[][2] = {
      {"agg_sender", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP("end_ts") ", sender)"},
      {"agg_sender_all", "dp_agg_key(domain, header_from, sender)"},
      {"agg_ip", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP(
                     "end_ts") ", sender, source_ip::text)"},
      {"agg_dkim", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP(
                       "end_ts") ", sender, failing::text, dom, res, sel)"},
      {"agg_spf", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP(
                      "end_ts") ", sender, failing::text, dom, res)"},
      {"agg_class", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP(
                        "end_ts") ", authenticated::text, csender, pass::text, pass_strict::text,"
                                  " fwd_reason::text, fs_dom::text, fs_sel::text)"},
      {"agg_fail_ip", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP(
                          "end_ts") ", source_ip::text, authenticated::text, csender,"
                                    " pass_strict::text, fs_dom::text, fs_sel::text)"},
      {"agg_fwd_ip", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP(
                         "end_ts") ", source_ip::text)"},
      {"agg_good_sig", "dp_agg_key(domain, header_from, " EP("begin_ts") ", " EP(
                           "end_ts") ", dom, sel)"},
      {"agg_dis_pair", "dp_agg_key(header_from, source_ip::text)"},
  };
#undef EP
  char sql[1024];
  ASSERT_TRUE(exec(c, "BEGIN"));
  ASSERT_TRUE(exec(c, "SELECT dp_agg_rebuild()"));
  ASSERT_TRUE(exec(c, "SELECT * FROM dp_agg_catch_up_batch(2147483647)"));
  for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
    snprintf(sql, sizeof sql, "SELECT count(*), count(*) FILTER (WHERE k <> %s) FROM %s",
             checks[i][1], checks[i][0]);
    PGresult *res = PQexec(c, sql);
    ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
      ASSERT_TRUE(atoll(PQgetvalue(res, 0, 0)) > 0);
      ASSERT_STR_EQ(PQgetvalue(res, 0, 1), "0");
    }
    PQclear(res);
  }
  ASSERT_TRUE(exec(c, "ROLLBACK"));
}

/* agg_dis_detail (migration 0005): a row per pair and batch that saw it, so a
 * pair seen by three batches has three rows whose details add up to the pair's
 * records; every pair has details and every detail row its pair. A pair whose
 * receiver sets and flags do not change is not rewritten (same row version). */
TEST(agg_dis_detail_row_per_pair_and_batch) {
  NEED_DB();
  ASSERT_TRUE(exec(c, "BEGIN"));
  ASSERT_TRUE(exec(c, "SELECT dp_agg_rebuild()"));
  /* three batches: 16 reports (the fixture's reports say n_records 60), 16,
   * and the rest */
  static const char *const budgets[] = {"960", "960", "2147483647"};
  for (int i = 0; i < 3; i++) {
    const char *p[1] = {budgets[i]};
    PGresult *b = PQexecParams(c, "SELECT reports FROM dp_agg_catch_up_batch($1::integer)", 1,
                               NULL, p, NULL, NULL, 0);
    ASSERT_EQ(PQresultStatus(b), PGRES_TUPLES_OK);
    if (PQresultStatus(b) == PGRES_TUPLES_OK) {
      if (i < 2)
        ASSERT_STR_EQ(PQgetvalue(b, 0, 0), "16");
      else
        ASSERT_TRUE(atoll(PQgetvalue(b, 0, 0)) >= 16); /* other cases add reports */
    }
    PQclear(b);
  }
  PGresult *res = PQexec(c, "SELECT count(*) FROM agg_pending");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  if (PQresultStatus(res) == PGRES_TUPLES_OK) ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "0");
  PQclear(res);
  /* the fixture's sources recur report after report: pairs seen by all three */
  res = PQexec(c, "SELECT (SELECT count(*) FROM agg_dis_pair),"
                  " (SELECT count(*) FROM agg_dis_detail),"
                  " (SELECT count(*) FROM (SELECT k FROM agg_dis_detail GROUP BY k"
                  "                         HAVING count(*) = 3) t),"
                  " (SELECT count(*) FROM agg_dis_detail d WHERE NOT EXISTS"
                  "    (SELECT 1 FROM agg_dis_pair p WHERE p.k = d.k)),"
                  " (SELECT count(*) FROM agg_dis_pair p WHERE NOT EXISTS"
                  "    (SELECT 1 FROM agg_dis_detail d WHERE d.k = p.k))");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    long long pairs = atoll(PQgetvalue(res, 0, 0));
    ASSERT_TRUE(pairs > 10);
    ASSERT_TRUE(atoll(PQgetvalue(res, 0, 2)) > 0);
    ASSERT_TRUE(atoll(PQgetvalue(res, 0, 1)) > pairs);
    ASSERT_STR_EQ(PQgetvalue(res, 0, 3), "0");
    ASSERT_STR_EQ(PQgetvalue(res, 0, 4), "0");
  }
  PQclear(res);
  /* per pair, the details' messages equal the records' */
  res = PQexec(c, "SELECT count(*) FROM"
                  " ((SELECT p.header_from, p.source_ip, sum(m) FROM agg_dis_pair p"
                  "    JOIN agg_dis_detail d USING (k), unnest(d.d_messages) m"
                  "   GROUP BY 1, 2"
                  "   EXCEPT ALL"
                  "   SELECT header_from, source_ip, sum(count) FROM record GROUP BY 1, 2)"
                  "  UNION ALL"
                  "  (SELECT header_from, source_ip, sum(count) FROM record GROUP BY 1, 2"
                  "   EXCEPT ALL"
                  "   SELECT p.header_from, p.source_ip, sum(m) FROM agg_dis_pair p"
                  "    JOIN agg_dis_detail d USING (k), unnest(d.d_messages) m"
                  "   GROUP BY 1, 2)) x");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  if (PQresultStatus(res) == PGRES_TUPLES_OK) ASSERT_STR_EQ(PQgetvalue(res, 0, 0), "0");
  PQclear(res);
  /* folding the same reports again (marks put back by hand, as if the
   * records were new) leaves the pairs' rows untouched: same tuple (ctid) */
  ASSERT_TRUE(
      exec(c, "CREATE TEMP TABLE pair_before AS SELECT k, ctid::text AS t FROM agg_dis_pair"));
  ASSERT_TRUE(exec(c, "SELECT dp_agg_mark_each('a', 'true')"));
  ASSERT_TRUE(exec(c, "SELECT * FROM dp_agg_catch_up_batch(2147483647)"));
  res = PQexec(c, "SELECT count(*), count(*) FILTER (WHERE b.t = p.ctid::text)"
                  "  FROM pair_before b JOIN agg_dis_pair p USING (k)");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  if (PQresultStatus(res) == PGRES_TUPLES_OK)
    ASSERT_STR_EQ(PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0));
  PQclear(res);
  ASSERT_TRUE(exec(c, "ROLLBACK"));
}

/* Migration 0006 collects agg_sender's reporters and agg_dis_pair's receiver
 * sets unsorted and makes a set distinct and sorted only when it holds two
 * members or more. Folded in one batch (no dp_agg_union of stored and new
 * sets), every set equals the record-level sorted distinct one, and the
 * fixture has sets of each kind: one report, the same org in several reports
 * (duplicates to drop), several orgs (to sort), and empty receiver sets. */
TEST(agg_sets_distinct_sorted_in_one_batch) {
  NEED_DB();
  ASSERT_TRUE(exec(c, "BEGIN"));
  /* the same org twice for the same senders and addresses: a copy of the
   * report with the most records (another report_id, its records again) */
  ASSERT_TRUE(exec(c, "CREATE TEMP TABLE rcopy ON COMMIT DROP AS SELECT * FROM report"
                      " ORDER BY n_records DESC, id LIMIT 1"));
  ASSERT_TRUE(exec(c, "CREATE TEMP TABLE xcopy ON COMMIT DROP AS SELECT x.* FROM record x"
                      " JOIN rcopy r ON x.report_key = r.id AND x.begin_ts = r.begin_ts"));
  ASSERT_TRUE(exec(c, "UPDATE rcopy SET id = (SELECT max(id) + 1 FROM report),"
                      " report_id = report_id || '-copy'"));
  ASSERT_TRUE(exec(c, "UPDATE xcopy SET report_key = (SELECT id FROM rcopy)"));
  /* and addresses seen by that copy alone: receiver sets of one member */
  ASSERT_TRUE(exec(c, "UPDATE xcopy SET source_ip = ('203.0.113.' || seq)::inet,"
                      " pe_dkim = CASE WHEN seq % 2 = 0 THEN 'pass' ELSE 'fail' END,"
                      " pe_spf = CASE WHEN seq % 3 = 0 THEN 'fail' ELSE 'pass' END"
                      " WHERE seq <= 6"));
  ASSERT_TRUE(exec(c, "INSERT INTO report SELECT * FROM rcopy"));
  ASSERT_TRUE(exec(c, "INSERT INTO record SELECT * FROM xcopy"));
  ASSERT_TRUE(exec(c, "SELECT dp_agg_rebuild()"));
  ASSERT_TRUE(exec(c, "SELECT * FROM dp_agg_catch_up_batch(2147483647)"));
  PGresult *res = PQexec(
      c, "WITH ref AS (SELECT dp_agg_key(r.domain, x.header_from,"
         "                   extract(epoch FROM r.begin_ts)::text,"
         "                   extract(epoch FROM r.end_ts)::text, x.sender) AS k,"
         "       array_agg(DISTINCT r.org_name ORDER BY r.org_name) AS reporters,"
         "       count(DISTINCT r.id) AS nrep, count(DISTINCT r.org_name) AS norg"
         "  FROM record x JOIN report r ON r.id = x.report_key AND r.begin_ts = x.begin_ts"
         " GROUP BY r.domain, x.header_from, r.begin_ts, r.end_ts, x.sender)"
         " SELECT (SELECT count(*) FROM ref),"
         "  (SELECT count(*) FROM ref JOIN agg_sender a USING (k)"
         "    WHERE a.reporters::text = ref.reporters::text),"
         "  (SELECT count(*) FROM agg_sender),"
         "  (SELECT count(*) FROM ref WHERE nrep = 1),"
         "  (SELECT count(*) FROM ref WHERE nrep > norg),"
         "  (SELECT count(*) FROM ref WHERE norg > 1)");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    ASSERT_TRUE(atoll(PQgetvalue(res, 0, 0)) > 0);
    ASSERT_STR_EQ(PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0));
    ASSERT_STR_EQ(PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0));
    ASSERT_TRUE(atoll(PQgetvalue(res, 0, 3)) > 0);
    ASSERT_TRUE(atoll(PQgetvalue(res, 0, 4)) > 0);
    ASSERT_TRUE(atoll(PQgetvalue(res, 0, 5)) > 0);
  }
  PQclear(res);
#define SET(col, cond)                                                                             \
  "coalesce(array_agg(DISTINCT r.org_name ORDER BY r.org_name) FILTER (WHERE " cond "), '{}') "   \
  "AS " col
#define NREP(col, cond)                                                                            \
  "count(DISTINCT r.id) FILTER (WHERE " cond ") AS " col "_nrep, "                                 \
  "count(DISTINCT r.org_name) FILTER (WHERE " cond ") AS " col "_norg"
  res = PQexec(
      c, "WITH ref AS (SELECT dp_agg_key(x.header_from, x.source_ip::text) AS k,"
         "  " SET("dpo", "lower(x.pe_dkim) = 'pass'") ", " SET("dfo", "lower(x.pe_dkim) = 'fail'")
         ", " SET("spo", "lower(x.pe_spf) = 'pass'") ", " SET("sfo", "lower(x.pe_spf) = 'fail'")
         ", " NREP("dp", "lower(x.pe_dkim) = 'pass'") ", " NREP("sp", "lower(x.pe_spf) = 'pass'")
         "  FROM record x JOIN report r ON r.id = x.report_key AND r.begin_ts = x.begin_ts"
         " GROUP BY x.header_from, x.source_ip)"
         " SELECT (SELECT count(*) FROM ref),"
         "  (SELECT count(*) FROM ref JOIN agg_dis_pair a USING (k)"
         "    WHERE a.dk_pass_orgs::text = ref.dpo::text AND a.dk_fail_orgs::text = ref.dfo::text"
         "      AND a.sp_pass_orgs::text = ref.spo::text AND a.sp_fail_orgs::text = ref.sfo::text),"
         "  (SELECT count(*) FROM agg_dis_pair),"
         "  (SELECT count(*) FROM ref WHERE dp_nrep = 1 OR sp_nrep = 1),"
         "  (SELECT count(*) FROM ref WHERE dp_nrep > dp_norg OR sp_nrep > sp_norg),"
         "  (SELECT count(*) FROM ref WHERE dp_norg > 1 OR sp_norg > 1),"
         "  (SELECT count(*) FROM ref WHERE dpo = '{}' OR dfo = '{}' OR spo = '{}' OR sfo = '{}')");
#undef SET
#undef NREP
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    ASSERT_TRUE(atoll(PQgetvalue(res, 0, 0)) > 0);
    ASSERT_STR_EQ(PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 0));
    ASSERT_STR_EQ(PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 0));
    for (int i = 3; i < 7; i++)
      ASSERT_TRUE(atoll(PQgetvalue(res, 0, i)) > 0);
  }
  PQclear(res);
  ASSERT_TRUE(exec(c, "ROLLBACK"));
}
