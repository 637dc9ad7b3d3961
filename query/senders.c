/* SPDX-License-Identifier: MIT */
/* query/senders.c - `dmarcpipe senders`: who sends mail as a domain, how much
 * of it passes SPF/DKIM alignment, and what to fix before moving to
 * p=reject. PostgreSQL does the aggregation (one GROUP BY query); C only
 * derives the "what to fix" advice from the evidence the query returns. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "query/query.h"
#include "query/query_int.h"

/* $1 domain, $2 since (epoch seconds or NULL), $3 fail filter (all|spf|dkim|any).
 * Reads the aggregates maintained at ingest (migration 0003): a record is D's
 * when its report's policy domain is D or its header_from is D or under D
 * (DP_AGG_WHERE). "own" auth domains are D and its subdomains. The fix
 * evidence (dkf, spf) comes from mail that fails DMARC only, so a sender whose
 * mail mostly passes is judged by the part that does not. Column order is the
 * order read by row_to_sender(). Kept in pieces because C11 compilers need
 * only accept string literals up to 4095 bytes. The record-level form of this
 * statement is kept in tests/query/test_aggregates.c, which checks both agree. */
/* $4 true: only the senders named in $5, plus (when $7) every sender that is
 * a domain (readiness asks for domains alone: the unauthenticated networks,
 * often hundreds of thousands, are never fixable; the table form adds the
 * few networks it shows one by one; the HTML report names the senders it
 * shows). $6 false: no source_ips (the table form does not show them). */
#define NAMED_ONLY                                                                                 \
  " AND (NOT $4::boolean OR ($7::boolean AND a.sender NOT LIKE 'unauthenticated %')"              \
  "      OR a.sender = ANY ($5::text[]))"

/* The senders a partial listing shows ($1 domain, $2 since, $3 fail filter,
 * on each sender's totals as in senders_sql; $5 false: the unauthenticated
 * networks only, true: every sender): the first $4 in output order (most
 * messages, then name), then one row (sender NULL) with the count and sums of
 * all the others, which the listing folds into one line anyway. */
/* Over t: agg_sender, or agg_sender_all when there is no --since (no range
 * to filter on: half the rows). */
#define PICK_WHERE(t)                                                                              \
  "    FROM " t " a WHERE (a.domain = $1::text OR a.header_from = $1::text"                        \
  "          OR right(a.header_from, length($1::text) + 1) = '.' || $1::text)"                     \
  "     AND ($2::bigint IS NULL OR a.end_ts > to_timestamp($2::bigint))"                           \
  "     AND ($5::boolean OR a.sender LIKE 'unauthenticated %')"
#define PICK_SQL(t)                                                                                \
  "WITH u AS MATERIALIZED ("                                                                       \
  "  SELECT sender, sum(messages) AS m,"                                                           \
  "         CASE WHEN $3::text <> 'all' THEN sum(spf_aligned) END AS s,"                           \
  "         CASE WHEN $3::text <> 'all' THEN sum(dkim_aligned) END AS d,"                          \
  "         CASE WHEN $3::text <> 'all' THEN sum(dmarc_pass) END AS p"                             \
  PICK_WHERE(t) "   GROUP BY sender"                                                               \
  "), f AS MATERIALIZED ("                                                                         \
  "  SELECT sender, m FROM u"                                                                      \
  "   WHERE $3::text = 'all' OR ($3::text = 'spf' AND m > s)"                                      \
  "      OR ($3::text = 'dkim' AND m > d) OR ($3::text = 'any' AND m > p)"                         \
  "), top AS MATERIALIZED (SELECT sender FROM f ORDER BY m DESC, sender LIMIT $4::bigint)"        \
  ", rest AS ("                                                                                    \
  "  SELECT sum(a.messages) AS m, sum(a.spf_aligned) AS s, sum(a.dkim_aligned) AS d,"              \
  "         sum(a.dmarc_pass) AS p" PICK_WHERE(t)                                                   \
  "     AND ($3::text = 'all' OR a.sender IN (SELECT sender FROM f))"                              \
  "     AND a.sender NOT IN (SELECT sender FROM top)"                                              \
  ")"                                                                                              \
  " SELECT sender, NULL, NULL, NULL, NULL, NULL FROM top"                                          \
  " UNION ALL"                                                                                     \
  " SELECT NULL, (SELECT count(*) FROM f) - (SELECT count(*) FROM top), m::bigint, s::bigint,"    \
  "        d::bigint, p::bigint"                                                                   \
  "   FROM rest WHERE (SELECT count(*) FROM f) > (SELECT count(*) FROM top)"
/* The window's sums need the range; everything stored does not. The
 * all-time table has no end_ts: its statement is given $2 NULL. */
static const char pick_sql[] = PICK_SQL("agg_sender");
static const char pick_all_sql[] =
    "WITH agg_sender_win AS NOT MATERIALIZED ("
    "  SELECT *, NULL::timestamptz AS end_ts FROM agg_sender_all) "
    "SELECT * FROM (" PICK_SQL("agg_sender_win") ") q";

static const char *const senders_sql[] = {
    "WITH s AS MATERIALIZED ("
    "  SELECT * FROM agg_sender a" DP_AGG_WHERE NAMED_ONLY
    "), " DP_GOOD_SIG_CTE
    ", agg AS ("
    "  SELECT sender, bool_or(third_party) AS third_party,"
    "         sum(messages)::bigint AS messages, sum(spf_aligned)::bigint AS spf_aligned,"
    "         sum(dkim_aligned)::bigint AS dkim_aligned, sum(dmarc_pass)::bigint AS dmarc_pass,"
    "         sum(spf_strict)::bigint AS spf_strict, sum(dkim_strict)::bigint AS dkim_strict,"
    "         sum(policy_pass)::bigint AS policy_pass, sum(relayed)::bigint AS relayed,"
    "         floor(extract(epoch FROM min(begin_ts)))::bigint AS first_seen,"
    "         floor(extract(epoch FROM max(end_ts)))::bigint AS last_seen"
    "    FROM s GROUP BY sender"
    "), rep AS ("
    "  SELECT sender, array_agg(DISTINCT o ORDER BY o) AS reporters"
    "    FROM s, unnest(s.reporters) o GROUP BY sender"
    "), ips AS ("
    "  SELECT sender, array_agg(host(source_ip) ORDER BY n DESC, source_ip) AS ips"
    "    FROM (SELECT sender, source_ip, sum(messages) AS n,"
    "                 row_number() OVER (PARTITION BY sender"
    "                                    ORDER BY sum(messages) DESC, source_ip) AS rn"
    "            FROM agg_ip a" DP_AGG_WHERE NAMED_ONLY " AND $6::boolean"
    "           GROUP BY sender, source_ip) t"
    "   WHERE rn <= 10 GROUP BY sender"
    ")",
    ", dk AS ("
    "  SELECT sender, failing, dom, res, sel, sum(messages) AS n"
    "    FROM agg_dkim a" DP_AGG_WHERE NAMED_ONLY
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
    "  SELECT sender, failing, dom, res, sum(messages) AS n"
    "    FROM agg_spf a" DP_AGG_WHERE NAMED_ONLY
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
    "        coalesce(rep.reporters, '{}'), a.first_seen, a.last_seen,"
    "        dkf.foreign_pass, dkf.own_fail, dkf.own_sel,"
    "        spf.foreign_pass, coalesce(spf.own_fail, false), a.relayed,"
    /* the failing signature's key verifies on other mail of the window
     * (readiness's rule 2: broken in transit, not a wrong key) */
    "        dkf.own_fail IS NOT NULL AND EXISTS ("
    "          SELECT 1 FROM good_sig g WHERE " DP_GOOD_SIG_HAS("dkf.own_fail", "dkf.own_sel") ")"
    "   FROM agg a LEFT JOIN rep USING (sender)"
    "   LEFT JOIN ips USING (sender) LEFT JOIN dkl USING (sender) LEFT JOIN dkf USING (sender)"
    "   LEFT JOIN spl USING (sender) LEFT JOIN spf USING (sender)"
    "  WHERE $3::text = 'all'"
    "     OR ($3::text = 'spf' AND a.messages > a.spf_aligned)"
    "     OR ($3::text = 'dkim' AND a.messages > a.dkim_aligned)"
    "     OR ($3::text = 'any' AND a.messages > a.dmarc_pass)"
    "  ORDER BY a.messages DESC, a.sender",
};

enum {
  C_SENDER,
  C_THIRD,
  C_MESSAGES,
  C_SPF,
  C_DKIM,
  C_DMARC,
  C_SPF_S,
  C_DKIM_S,
  C_POLICY,
  C_IPS,
  C_DKIM_DOMS,
  C_SPF_DOMS,
  C_REPORTERS,
  C_FIRST,
  C_LAST,
  C_DKIM_FOREIGN,
  C_DKIM_OWN,
  C_DKIM_SEL,
  C_SPF_FOREIGN,
  C_SPF_OWN,
  C_RELAYED,
  C_DKIM_KEY_GOOD,
  C_NCOLS
};

void dp__query_senders_free(dp_sender_t *rows, size_t n) {
  if (!rows) return;
  for (size_t i = 0; i < n; i++) {
    dp_sender_t *s = &rows[i];
    char **lists[] = {s->source_ips, s->dkim_domains, s->spf_domains, s->reporters};
    size_t ns[] = {s->n_source_ips, s->n_dkim_domains, s->n_spf_domains, s->n_reporters};
    for (size_t l = 0; l < 4; l++) {
      for (size_t k = 0; k < ns[l]; k++)
        free(lists[l][k]);
      free(lists[l]);
    }
    free(s->sender);
    free(s->dkim_foreign);
    free(s->dkim_own_fail);
    free(s->dkim_own_sel);
    free(s->spf_foreign);
    free(s->fix);
  }
  free(rows);
}

/* A copy of the value, or NULL for SQL NULL; *bad set on out of memory. */
static char *dup_val(const PGresult *res, int i, int j, bool *bad) {
  if (PQgetisnull(res, i, j)) return NULL;
  char *s = strdup(PQgetvalue(res, i, j));
  if (!s) *bad = true;
  return s;
}

static int64_t int_val(const PGresult *res, int i, int j, bool *bad) {
  char *end;
  const char *s = PQgetvalue(res, i, j);
  long long v = strtoll(s, &end, 10);
  if (PQgetisnull(res, i, j) || !*s || *end) *bad = true;
  return (int64_t)v;
}

static void list_val(const PGresult *res, int i, int j, char ***items, size_t *n, bool *bad) {
  if (PQgetisnull(res, i, j)) return;
  if (dp__query_pgarray_parse(PQgetvalue(res, i, j), items, n)) *bad = true;
}

static bool row_to_sender(const PGresult *res, int i, dp_sender_t *s) {
  bool bad = false;
  s->sender = dup_val(res, i, C_SENDER, &bad);
  if (!s->sender) bad = true;
  s->third_party = !strcmp(PQgetvalue(res, i, C_THIRD), "t");
  s->messages = int_val(res, i, C_MESSAGES, &bad);
  s->spf_aligned = int_val(res, i, C_SPF, &bad);
  s->dkim_aligned = int_val(res, i, C_DKIM, &bad);
  s->dmarc_pass = int_val(res, i, C_DMARC, &bad);
  s->spf_aligned_strict = int_val(res, i, C_SPF_S, &bad);
  s->dkim_aligned_strict = int_val(res, i, C_DKIM_S, &bad);
  s->policy_pass = int_val(res, i, C_POLICY, &bad);
  list_val(res, i, C_IPS, &s->source_ips, &s->n_source_ips, &bad);
  list_val(res, i, C_DKIM_DOMS, &s->dkim_domains, &s->n_dkim_domains, &bad);
  list_val(res, i, C_SPF_DOMS, &s->spf_domains, &s->n_spf_domains, &bad);
  list_val(res, i, C_REPORTERS, &s->reporters, &s->n_reporters, &bad);
  s->first_seen = int_val(res, i, C_FIRST, &bad);
  s->last_seen = int_val(res, i, C_LAST, &bad);
  s->dkim_foreign = dup_val(res, i, C_DKIM_FOREIGN, &bad);
  s->dkim_own_fail = dup_val(res, i, C_DKIM_OWN, &bad);
  s->dkim_own_sel = dup_val(res, i, C_DKIM_SEL, &bad);
  s->spf_foreign = dup_val(res, i, C_SPF_FOREIGN, &bad);
  s->spf_own_fail = !strcmp(PQgetvalue(res, i, C_SPF_OWN), "t");
  s->relayed = int_val(res, i, C_RELAYED, &bad);
  s->dkim_own_key_good = !strcmp(PQgetvalue(res, i, C_DKIM_KEY_GOOD), "t");
  return !bad;
}

static const char unauth_prefix[] = "unauthenticated ";

/* "under D": domain is D or a subdomain of D (case-insensitive). */
static bool under(const char *dom, size_t n, const char *domain) {
  size_t dl = strlen(domain);
  if (n == dl) return !strncasecmp(dom, domain, n);
  return n > dl && dom[n - dl - 1] == '.' && !strncasecmp(dom + n - dl, domain, dl);
}

/* Match one candidate domain (the first n bytes of dom) unless it is D's. */
static const dp_service_t *match_n(const dp_services_t *m, const char *dom, size_t n,
                                   const char *domain) {
  char buf[256];
  if (!dom || !n || n >= sizeof buf || under(dom, n, domain)) return NULL;
  memcpy(buf, dom, n);
  buf[n] = '\0';
  return dp__query_services_match(m, buf);
}

static const dp_service_t *match_one(const dp_services_t *m, const char *dom, const char *domain) {
  return dom ? match_n(m, dom, strlen(dom), domain) : NULL;
}

/* Items are "domain:result": match the domain part. */
static const dp_service_t *match_list(const dp_services_t *m, char **items, size_t n,
                                      const char *domain) {
  for (size_t i = 0; i < n; i++) {
    if (!items[i]) continue;
    const char *colon = strrchr(items[i], ':');
    const dp_service_t *sv =
        match_n(m, items[i], colon ? (size_t)(colon - items[i]) : strlen(items[i]), domain);
    if (sv) return sv;
  }
  return NULL;
}

const dp_service_t *dp__query_senders_service(const dp_services_t *m, const dp_sender_t *s,
                                              const char *domain) {
  if (!m || !s->sender || !strncmp(s->sender, unauth_prefix, sizeof unauth_prefix - 1)) return NULL;
  const dp_service_t *sv = s->third_party ? match_one(m, s->sender, domain) : NULL;
  if (!sv) sv = match_one(m, s->dkim_foreign, domain);
  if (!sv) sv = match_one(m, s->spf_foreign, domain);
  if (!sv) sv = match_list(m, s->dkim_domains, s->n_dkim_domains, domain);
  if (!sv) sv = match_list(m, s->spf_domains, s->n_spf_domains, domain);
  return sv;
}

/* A hint column: NULL = not known, "-" = not offered. */
static bool offered(const char *hint) {
  return hint && strcmp(hint, "-");
}

/* The DKIM half of the advice (nothing when DKIM gives no clue). */
static int fix_dkim(dp_buf_t *b, const dp_sender_t *s, const char *domain) {
  const dp_service_t *sv = s->service;
  if (s->dkim_own_fail) {
    /* The service already signs as the domain: the key (selector) is what is
     * broken, typically a rotation at the signer not followed in DNS. */
    const char *sel = s->dkim_own_sel && *s->dkim_own_sel ? s->dkim_own_sel : NULL;
    const char *who = sv ? sv->name : "the signer";
    if (sel)
      return dp_buf_printf(b,
                           "DKIM for d=%s fails for selector %s: key mismatch or rotation "
                           "(compare the key at %s._domainkey.%s with the one %s signs with)",
                           s->dkim_own_fail, sel, sel, s->dkim_own_fail, who);
    return dp_buf_printf(b,
                         "DKIM for d=%s fails (selector not reported): key mismatch or rotation "
                         "(compare the published key with the one %s signs with)",
                         s->dkim_own_fail, who);
  }
  if (!s->dkim_foreign) return 0;
  int rc = dp_buf_printf(b, "DKIM signs as %s, not %s: ", s->dkim_foreign, domain);
  if (rc) return rc;
  if (!sv) return dp_buf_printf(b, "sign with d=%s (custom DKIM at the service)", domain);
  if (!sv->dkim) return dp_buf_printf(b, "sign with d=%s at %s (custom DKIM)", domain, sv->name);
  if (!offered(sv->dkim))
    return dp_buf_printf(b, "%s offers no custom DKIM: send through a service that does", sv->name);
  rc = dp_buf_printf(b, "sign with d=%s at %s (", domain, sv->name);
  if (!rc) rc = dp__query_services_expand(b, sv->dkim, domain);
  if (!rc) rc = dp_buf_putc(b, ')');
  return rc;
}

/* The SPF half. A passing SPF for the service's own return-path is fixed by
 * moving the return-path under D (whose CNAME carries the service's SPF), not
 * by an include: SPF alignment is about the MAIL FROM domain. */
static int fix_spf(dp_buf_t *b, const dp_sender_t *s, const char *domain) {
  const dp_service_t *sv = s->service;
  if (s->spf_foreign) {
    int rc = dp_buf_printf(b, "SPF passes for %s (return-path), not %s: ", s->spf_foreign, domain);
    if (rc) return rc;
    if (!sv)
      return dp_buf_printf(b, "use a custom MAIL FROM under %s or rely on aligned DKIM", domain);
    if (!sv->return_path)
      return dp_buf_printf(b, "use a custom MAIL FROM under %s at %s or rely on aligned DKIM",
                           domain, sv->name);
    if (!offered(sv->return_path))
      return dp_buf_printf(b, "%s keeps its own return-path, so DMARC needs aligned DKIM",
                           sv->name);
    rc = dp_buf_printf(b, "set a custom return-path under %s at %s (", domain, sv->name);
    if (!rc) rc = dp__query_services_expand(b, sv->return_path, domain);
    if (!rc) rc = dp_buf_puts(b, ") or rely on aligned DKIM");
    return rc;
  }
  if (!s->spf_own_fail) return 0;
  if (sv && offered(sv->spf)) {
    int rc = dp_buf_puts(b, "add ");
    if (!rc) rc = dp__query_services_expand(b, sv->spf, domain);
    if (!rc) rc = dp_buf_printf(b, " to %s's SPF record (%s's servers fail it)", domain, sv->name);
    return rc;
  }
  return dp_buf_printf(b, "add this sender's IPs/include to %s's SPF record", domain);
}

char *dp__query_senders_fix(const dp_sender_t *s, const char *domain) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int rc = 0;
  const dp_service_t *sv = s->service;
  bool relay_kind = sv && (!strcmp(sv->kind, "list") || !strcmp(sv->kind, "forwarder"));
  if (s->dmarc_pass >= s->messages) {
    rc = dp_buf_puts(&b, "ok");
  } else if (!strncmp(s->sender, unauth_prefix, sizeof unauth_prefix - 1)) {
    rc =
        dp_buf_puts(&b, "no SPF/DKIM pass: spoofing or broken forwarding; p=reject would block it");
  } else if (s->relayed > 0 && s->relayed * 5 >= s->messages - s->dmarc_pass) {
    /* Receivers said so (override reason) for a good share of the failing
     * mail: a list or forwarder re-sends the domain's mail and breaks DKIM.
     * Nothing in the domain's DNS fixes that. */
    rc = dp_buf_printf(&b,
                       "mailing list or forwarder (receivers reported forwarded/mailing_list for "
                       "%" PRId64 " of %" PRId64 " failing messages): not fixable in %s's DNS; "
                       "the list must rewrite From or receivers must trust its ARC seal",
                       s->relayed, s->messages - s->dmarc_pass, domain);
  } else if (relay_kind) {
    /* A known list or forwarder, even when no receiver named it. */
    rc = dp_buf_printf(&b,
                       "%s is a %s: not fixable in %s's DNS; the list must rewrite From or "
                       "receivers must trust its ARC seal (sign everything with d=%s so plain "
                       "forwarding keeps passing)",
                       sv->name, !strcmp(sv->kind, "list") ? "mailing list" : "forwarding service",
                       domain, domain);
  } else if (s->dkim_own_fail && s->dkim_own_key_good) {
    /* The domain's own signature fails here with a key that verifies on
     * other mail: the messages were changed on the way (readiness counts
     * them as forwarded, its rule 2). No key or record to fix. */
    const char *sel = s->dkim_own_sel && *s->dkim_own_sel ? s->dkim_own_sel : NULL;
    rc = dp_buf_printf(&b, "forwarded: DKIM for d=%s", s->dkim_own_fail);
    if (!rc && sel) rc = dp_buf_printf(&b, " (selector %s)", sel);
    if (!rc)
      rc = dp_buf_printf(&b,
                         " verifies on other mail but fails on this path, so a forwarder or list "
                         "changes the messages: not fixable in %s's DNS; the forwarder must not "
                         "alter them or receivers must trust its ARC seal",
                         domain);
  } else {
    /* DKIM before SPF: an aligned signature survives forwarding, so it is
     * the better fix whenever the service offers it. */
    rc = fix_dkim(&b, s, domain);
    if (!rc && (s->spf_foreign || s->spf_own_fail) && b.len) rc = dp_buf_puts(&b, "; ");
    if (!rc) rc = fix_spf(&b, s, domain);
    if (!rc && !b.len) {
      if (sv)
        rc = dp_buf_printf(&b, "neither SPF nor DKIM aligned with %s: sign with d=%s at %s", domain,
                           domain, sv->name);
      else
        rc = dp_buf_printf(&b,
                           "neither SPF nor DKIM aligned with %s: sign with d=%s or use a "
                           "MAIL FROM under %s",
                           domain, domain, domain);
    }
  }
  if (rc) {
    dp_buf_free(&b);
    return NULL;
  }
  return dp_buf_steal(&b, NULL);
}

/* What fetch() returns: every sender; the senders named (readiness); what
 * the table form shows (domains, the first unauthenticated networks, and the
 * rest of those as one pre-folded row; no source_ips); or the first senders
 * and the rest as one pre-folded row (the HTML report). */
enum fetch_mode { MODE_ALL, MODE_NAMED, MODE_TABLE, MODE_TOP };

static int fetch(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail, enum fetch_mode mode,
                 int limit, const char *names, dp_sender_t **rows, size_t *n, char *err,
                 size_t errlen);

int dp__query_senders_fetch(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                            dp_sender_t **rows, size_t *n, char *err, size_t errlen) {
  return fetch(c, f, fail, MODE_ALL, 0, NULL, rows, n, err, errlen);
}

/* Append s to b as a quoted element of a text[] literal. */
static int array_item(dp_buf_t *b, const char *s);

int dp__query_senders_fetch_named(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                                  const char *const *names, size_t n_names, dp_sender_t **rows,
                                  size_t *n, char *err, size_t errlen) {
  dp_buf_t lit;
  dp_buf_init(&lit, 0);
  int rc = dp_buf_putc(&lit, '{');
  for (size_t i = 0; i < n_names && !rc; i++)
    rc = array_item(&lit, names[i]);
  if (!rc) rc = dp_buf_putc(&lit, '}');
  if (rc) {
    dp_buf_free(&lit);
    snprintf(err, errlen, "%s", dp_strerror(rc));
    return rc;
  }
  *rows = NULL;
  *n = 0;
  rc = fetch(c, f, fail, MODE_NAMED, 0, lit.data, rows, n, err, errlen);
  dp_buf_free(&lit);
  return rc;
}

int dp__query_senders_fetch_table(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                                  dp_sender_t **rows, size_t *n, char *err, size_t errlen) {
  return fetch(c, f, fail, MODE_TABLE, DP_SENDERS_UNAUTH_SHOWN, NULL, rows, n, err, errlen);
}

int dp__query_senders_fetch_top(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                                int top, dp_sender_t **rows, size_t *n, char *err, size_t errlen) {
  return fetch(c, f, fail, MODE_TOP, top, NULL, rows, n, err, errlen);
}

static int array_item(dp_buf_t *b, const char *s) {
  int rc = b->len > 1 ? dp_buf_putc(b, ',') : 0; /* b holds "{" and the items so far */
  if (!rc) rc = dp_buf_putc(b, '"');
  for (; *s && !rc; s++) {
    if (*s == '"' || *s == '\\') rc = dp_buf_putc(b, '\\');
    if (!rc) rc = dp_buf_putc(b, *s);
  }
  if (!rc) rc = dp_buf_putc(b, '"');
  return rc;
}

/* The senders a partial listing shows (pick_sql; every sender when all,
 * else the unauthenticated networks): the names of the first limit into
 * *shown (a text[] literal), the folded rest into *rest (folded_networks 0
 * when none). */
static int fetch_pick(PGconn *c, const char *const *params, int limit, bool all, dp_buf_t *shown,
                      dp_sender_t *rest, char *err, size_t errlen) {
  char lim[16];
  snprintf(lim, sizeof lim, "%d", limit);
  const char *p[5] = {params[0], params[1], params[2], lim, all ? "true" : "false"};
  PGresult *res = PQexecParams(c, params[1] ? pick_sql : pick_all_sql, 5, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return DP_EPG;
  }
  int rc = dp_buf_putc(shown, '{');
  bool bad = PQnfields(res) != 6;
  for (int i = 0; i < PQntuples(res) && !rc && !bad; i++) {
    if (!PQgetisnull(res, i, 0)) {
      rc = array_item(shown, PQgetvalue(res, i, 0));
      continue;
    }
    rest->folded_networks = (size_t)int_val(res, i, 1, &bad);
    rest->messages = int_val(res, i, 2, &bad);
    rest->spf_aligned = int_val(res, i, 3, &bad);
    rest->dkim_aligned = int_val(res, i, 4, &bad);
    rest->dmarc_pass = int_val(res, i, 5, &bad);
  }
  if (!rc) rc = dp_buf_putc(shown, '}');
  PQclear(res);
  if (rc || bad) {
    snprintf(err, errlen, "%s", rc ? dp_strerror(rc) : "unexpected value in the senders query result");
    return rc ? rc : DP_EPG;
  }
  return 0;
}

static int fetch(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail, enum fetch_mode mode,
                 int limit, const char *names, dp_sender_t **rows, size_t *n, char *err,
                 size_t errlen) {
  static const char *const fail_names[] = {"all", "spf", "dkim", "any"};
  char since[32];
  const char *params[7] = {f->domain,
                           NULL,
                           fail_names[fail],
                           mode == MODE_ALL ? "false" : "true",
                           names ? names : "{}",
                           mode == MODE_TABLE ? "false" : "true",
                           mode == MODE_TABLE ? "true" : "false"};
  *rows = NULL;
  *n = 0;
  if (!f->domain || !*f->domain) {
    snprintf(err, errlen, "--domain is required");
    return DP_EUSAGE;
  }
  if (f->has_since) {
    snprintf(since, sizeof since, "%" PRId64, f->since);
    params[1] = since;
  }
  dp_buf_t sql, shown;
  dp_buf_init(&sql, 0);
  dp_buf_init(&shown, 0);
  for (size_t k = 0; k < sizeof senders_sql / sizeof senders_sql[0]; k++)
    if (dp_buf_puts(&sql, senders_sql[k])) {
      dp_buf_free(&sql);
      snprintf(err, errlen, "%s", dp_strerror(DP_ENOMEM));
      return DP_ENOMEM;
    }
  bool opened;
  if (dp__query_agg_begin(c, &opened, err, errlen)) {
    dp_buf_free(&sql);
    return DP_EPG;
  }
  dp_sender_t rest;
  memset(&rest, 0, sizeof rest);
  int urc = 0;
  if (mode == MODE_TABLE)
    urc = fetch_pick(c, params, limit, false, &shown, &rest, err, errlen);
  else if (mode == MODE_TOP)
    urc = fetch_pick(c, params, limit, true, &shown, &rest, err, errlen);
  if ((mode == MODE_TABLE || mode == MODE_TOP) && !urc) params[4] = shown.data;
  PGresult *res = urc ? NULL : PQexecParams(c, sql.data, 7, NULL, params, NULL, NULL, 0);
  dp__query_agg_end(c, opened);
  dp_buf_free(&sql);
  dp_buf_free(&shown);
  if (urc) return urc;
  if (PQresultStatus(res) != PGRES_TUPLES_OK) {
    dp__query_pgerr(c, res, err, errlen);
    PQclear(res);
    return DP_EPG;
  }
  int nt = PQntuples(res);
  size_t extra = rest.folded_networks ? 1 : 0;
  dp_sender_t *out = nt || extra ? calloc((size_t)nt + extra, sizeof *out) : NULL;
  if ((nt || extra) && !out) {
    PQclear(res);
    snprintf(err, errlen, "%s", dp_strerror(DP_ENOMEM));
    return DP_ENOMEM;
  }
  int rc = PQnfields(res) == C_NCOLS ? 0 : DP_EPG;
  if (!rc && extra) {
    /* last: the table folds it into its "N more networks" line */
    out[nt] = rest;
    out[nt].sender = strdup(mode == MODE_TOP ? "(folded)" : "unauthenticated (folded)");
    out[nt].fix = strdup("");
    if (!out[nt].sender || !out[nt].fix) rc = DP_ENOMEM;
  }
  for (int i = 0; i < nt && !rc; i++) {
    if (!row_to_sender(res, i, &out[i])) {
      rc = DP_EPG;
      break;
    }
    out[i].service = dp__query_senders_service(dp__query_services(), &out[i], f->domain);
    if (!(out[i].fix = dp__query_senders_fix(&out[i], f->domain))) rc = DP_ENOMEM;
  }
  PQclear(res);
  if (rc) {
    dp__query_senders_free(out, (size_t)nt + extra);
    snprintf(err, errlen, "%s",
             rc == DP_EPG ? "unexpected value in the senders query result" : dp_strerror(rc));
    return rc;
  }
  *rows = out;
  *n = (size_t)nt + extra;
  return 0;
}

static int redact_list(char **items, size_t n) {
  for (size_t k = 0; k < n; k++)
    if (dp__query_redact_inplace(&items[k])) return DP_ENOMEM;
  return 0;
}

int dp__query_senders_redact(dp_sender_t *rows, size_t n) {
  for (size_t i = 0; i < n; i++) {
    dp_sender_t *s = &rows[i];
    char **texts[] = {&s->sender,       &s->dkim_foreign, &s->dkim_own_fail,
                      &s->dkim_own_sel, &s->spf_foreign,  &s->fix};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++)
      if (dp__query_redact_inplace(texts[k])) return DP_ENOMEM;
    if (redact_list(s->source_ips, s->n_source_ips) ||
        redact_list(s->dkim_domains, s->n_dkim_domains) ||
        redact_list(s->spf_domains, s->n_spf_domains) || redact_list(s->reporters, s->n_reporters))
      return DP_ENOMEM;
  }
  return 0;
}

/* ======================================================================== */
/* Output */

enum { T_SENDER, T_THIRD, T_MESSAGES, T_SPF, T_DKIM, T_DMARC, T_REPORTERS, T_FIX };
static const dp_qcol_t table_cols[] = {
    {"sender", "SENDER", DP_QT_TEXT, 0, 40},
    {"third_party", "3RD PARTY", DP_QT_BOOL, 0, 0},
    {"messages", "MESSAGES", DP_QT_INT, 0, 0},
    {"spf_aligned", "SPF ALIGNED", DP_QT_PCT, 0, 0},
    {"dkim_aligned", "DKIM ALIGNED", DP_QT_PCT, 0, 0},
    {"dmarc_pass", "DMARC PASS", DP_QT_PCT, 0, 0},
    {"reporters", "REPORTERS", DP_QT_INT, 0, 0},
    {"fix", "WHAT TO FIX", DP_QT_TEXT, 0, 0},
};

enum {
  M_SENDER,
  M_THIRD,
  M_MESSAGES,
  M_SPF,
  M_DKIM,
  M_DMARC,
  M_SPF_S,
  M_DKIM_S,
  M_POLICY,
  M_IPS,
  M_DKIM_DOMS,
  M_SPF_DOMS,
  M_REPORTERS,
  M_FIRST,
  M_LAST,
  M_FIX,
  M_SERVICE,
  M_SERVICE_KIND
};
static const dp_qcol_t machine_cols[] = {
    {"sender", NULL, DP_QT_TEXT, 0, 0},
    {"third_party", NULL, DP_QT_BOOL, 0, 0},
    {"messages", NULL, DP_QT_INT, 0, 0},
    {"spf_aligned", NULL, DP_QT_INT, 0, 0},
    {"dkim_aligned", NULL, DP_QT_INT, 0, 0},
    {"dmarc_pass", NULL, DP_QT_INT, 0, 0},
    {"spf_aligned_strict", NULL, DP_QT_INT, 0, 0},
    {"dkim_aligned_strict", NULL, DP_QT_INT, 0, 0},
    {"policy_pass", NULL, DP_QT_INT, 0, 0},
    {"source_ips", NULL, DP_QT_LIST, 0, 0},
    {"dkim_domains", NULL, DP_QT_LIST, 0, 0},
    {"spf_domains", NULL, DP_QT_LIST, 0, 0},
    {"reporters", NULL, DP_QT_LIST, 0, 0},
    {"first_seen", NULL, DP_QT_TIME, 0, 0},
    {"last_seen", NULL, DP_QT_TIME, 0, 0},
    {"fix", NULL, DP_QT_TEXT, 0, 0},
    {"service", NULL, DP_QT_TEXT, 0, 0},
    {"service_kind", NULL, DP_QT_TEXT, 0, 0},
};

static int add_table_row(dp_qres_t *r, const dp_sender_t *s) {
  int rc = dp__query_res_add_row(r);
  if (!rc && s->service) {
    /* "sendgrid.net (SendGrid)": the name people know next to the evidence. */
    char label[512];
    snprintf(label, sizeof label, "%s (%s)", s->sender, s->service->name);
    rc = dp__query_res_set_text(r, T_SENDER, label);
  } else if (!rc) {
    rc = dp__query_res_set_text(r, T_SENDER, s->sender);
  }
  /* Unauthenticated mail is nobody's: neither "yes" nor "no". */
  if (strncmp(s->sender, unauth_prefix, sizeof unauth_prefix - 1))
    dp__query_res_set_int(r, T_THIRD, s->third_party);
  dp__query_res_set_int(r, T_MESSAGES, s->messages);
  dp__query_res_set_pct(r, T_SPF, s->spf_aligned, s->messages);
  dp__query_res_set_pct(r, T_DKIM, s->dkim_aligned, s->messages);
  dp__query_res_set_pct(r, T_DMARC, s->dmarc_pass, s->messages);
  /* Every real sender has a reporter; the folded networks line has no
   * reporter count of its own, so it shows "-" rather than a false 0. */
  if (s->n_reporters) dp__query_res_set_int(r, T_REPORTERS, (int64_t)s->n_reporters);
  if (!rc) rc = dp__query_res_set_text(r, T_FIX, s->fix);
  return rc;
}

int dp__query_senders_set_row(dp_qres_t *q, const dp_sender_cols_t *c, const dp_sender_t *s) {
  int rc = dp__query_res_set_text(q, c->sender, s->sender);
  dp__query_res_set_int(q, c->third_party, s->third_party);
  dp__query_res_set_int(q, c->messages, s->messages);
  dp__query_res_set_int(q, c->spf_aligned, s->spf_aligned);
  dp__query_res_set_int(q, c->dkim_aligned, s->dkim_aligned);
  dp__query_res_set_int(q, c->dmarc_pass, s->dmarc_pass);
  dp__query_res_set_int(q, c->spf_aligned_strict, s->spf_aligned_strict);
  dp__query_res_set_int(q, c->dkim_aligned_strict, s->dkim_aligned_strict);
  dp__query_res_set_int(q, c->policy_pass, s->policy_pass);
  if (!rc)
    rc = dp__query_res_set_list(q, c->source_ips, (const char *const *)s->source_ips,
                                s->n_source_ips);
  if (!rc)
    rc = dp__query_res_set_list(q, c->dkim_domains, (const char *const *)s->dkim_domains,
                                s->n_dkim_domains);
  if (!rc)
    rc = dp__query_res_set_list(q, c->spf_domains, (const char *const *)s->spf_domains,
                                s->n_spf_domains);
  if (!rc)
    rc = dp__query_res_set_list(q, c->reporters, (const char *const *)s->reporters,
                                s->n_reporters);
  dp__query_res_set_int(q, c->first_seen, s->first_seen);
  dp__query_res_set_int(q, c->last_seen, s->last_seen);
  if (!rc) rc = dp__query_res_set_text(q, c->fix, s->fix);
  if (!rc && s->service) rc = dp__query_res_set_text(q, c->service, s->service->name);
  if (!rc && s->service) rc = dp__query_res_set_text(q, c->service_kind, s->service->kind);
  return rc;
}

static const dp_sender_cols_t machine_map = {
    M_SENDER, M_THIRD, M_MESSAGES, M_SPF, M_DKIM, M_DMARC, M_SPF_S, M_DKIM_S, M_POLICY,
    M_IPS, M_DKIM_DOMS, M_SPF_DOMS, M_REPORTERS, M_FIRST, M_LAST, M_FIX, M_SERVICE,
    M_SERVICE_KIND,
};

static int add_machine_row(dp_qres_t *r, const dp_sender_t *s) {
  int rc = dp__query_res_add_row(r);
  return rc ? rc : dp__query_senders_set_row(r, &machine_map, s);
}

int dp__query_senders_write(const dp_sender_t *rows, size_t n, const char *domain, dp_qfmt_t fmt,
                            FILE *out) {
  bool table = fmt == DP_QFMT_TABLE;
  dp_qres_t *r =
      table ? dp__query_res_create(table_cols, sizeof table_cols / sizeof table_cols[0])
            : dp__query_res_create(machine_cols, sizeof machine_cols / sizeof machine_cols[0]);
  if (!r) return DP_ENOMEM;
  int rc = 0;
  int64_t messages = 0, pass = 0;
  /* People read the table: past the largest few, unauthenticated networks
   * (spoofing, typically hundreds of tiny groups) are folded into one row so
   * the senders that need a fix stay on screen. CSV and JSON list them all. */
  size_t unauth_seen = 0;
  dp_sender_t folded = {.sender = NULL};
  size_t n_folded = 0;
  size_t n_senders = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    messages += rows[i].messages;
    pass += rows[i].dmarc_pass;
    if (rows[i].folded_networks) {
      /* networks folded by the query already (dp__query_senders_fetch_table) */
      folded.messages += rows[i].messages;
      folded.dmarc_pass += rows[i].dmarc_pass;
      folded.spf_aligned += rows[i].spf_aligned;
      folded.dkim_aligned += rows[i].dkim_aligned;
      n_folded += rows[i].folded_networks;
      n_senders += rows[i].folded_networks;
      continue;
    }
    n_senders++;
    bool unauth = !strncmp(rows[i].sender, unauth_prefix, sizeof unauth_prefix - 1);
    if (table && unauth && ++unauth_seen > DP_SENDERS_UNAUTH_SHOWN) {
      folded.messages += rows[i].messages;
      folded.dmarc_pass += rows[i].dmarc_pass;
      folded.spf_aligned += rows[i].spf_aligned;
      folded.dkim_aligned += rows[i].dkim_aligned;
      n_folded++;
      continue;
    }
    rc = table ? add_table_row(r, &rows[i]) : add_machine_row(r, &rows[i]);
  }
  char folded_name[96];
  if (!rc && n_folded) {
    snprintf(folded_name, sizeof folded_name, "unauthenticated (%zu more networks)", n_folded);
    folded.sender = folded_name;
    folded.fix = "no SPF/DKIM pass: spoofing or broken forwarding; --format json lists each";
    rc = add_table_row(r, &folded);
  }
  if (!rc && table) {
    char line[512], pct[32];
    dp__query_pct(pct, sizeof pct, messages - pass, messages);
    snprintf(line, sizeof line,
             "%" PRId64 " message%s from %zu sender%s of %s; %" PRId64 " fail DMARC (%s%%)",
             messages, messages == 1 ? "" : "s", n_senders, n_senders == 1 ? "" : "s", domain,
             messages - pass,
             pct);
    rc = dp__query_res_add_footer(r, line);
  }
  if (!rc) rc = dp__query_res_write(r, fmt, out);
  dp__query_res_destroy(r);
  return rc;
}

int dp__query_senders(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail, dp_qfmt_t fmt,
                      FILE *out, char *err, size_t errlen) {
  return dp__query_senders_redacted(c, f, fail, fmt, false, out, err, errlen);
}

int dp__query_senders_redacted(PGconn *c, const dp_query_filter_t *f, dp_sender_fail_t fail,
                               dp_qfmt_t fmt, bool redact, FILE *out, char *err, size_t errlen) {
  dp_sender_t *rows;
  size_t n;
  int rc = fmt == DP_QFMT_TABLE ? dp__query_senders_fetch_table(c, f, fail, &rows, &n, err, errlen)
                                : dp__query_senders_fetch(c, f, fail, &rows, &n, err, errlen);
  if (rc) return rc;
  if (redact && (rc = dp__query_senders_redact(rows, n))) {
    snprintf(err, errlen, "%s", dp_strerror(rc));
    dp__query_senders_free(rows, n);
    return rc;
  }
  rc = dp__query_senders_write(rows, n, f->domain, fmt, out);
  if (rc) snprintf(err, errlen, "%s", dp_strerror(rc));
  dp__query_senders_free(rows, n);
  return rc;
}

/* ======================================================================== */
/* Command */

static void usage(FILE *f) {
  fprintf(f, "usage: dmarcpipe senders --domain D [--since S] [--fail spf|dkim|any]\n"
             "                         [--by day|week] [--format table|csv|json] [--redact]\n"
             "                         [--db DSN]\n"
             "\n"
             "The senders of mail as D (From: D or a subdomain, or reports for D's policy),\n"
             "most volume first: how much of their mail passes SPF/DKIM alignment and DMARC,\n"
             "and what to fix before moving D to p=reject. Known services (SendGrid,\n"
             "Amazon SES, ...) are named from data/services.tsv, extended by\n"
             "$XDG_CONFIG_HOME/dmarcpipe/services.tsv or the config key 'services'.\n"
             "\n"
             "  --domain D     the domain (required)\n"
             "  --since S      only reports whose period ends after S: a duration back from\n"
             "                 now (90m, 12h, 30d, 2w) or a date (2024-03-01, 2024-03-01T12:00Z)\n"
             "  --fail W       only senders with mail that is not SPF-aligned (spf), not\n"
             "                 DKIM-aligned (dkim), or fails DMARC (any)\n"
             "  --by P         per sender and day or week (UTC): messages and pass rates\n"
             "  --redact       hide IP addresses (keeping the /24 or /48) and the local part\n"
             "                 of e-mail addresses in the output\n"
             "  --format F     table (default, for people), csv or json\n"
             "  --db DSN       libpq connection string or URI (default: PG* environment,\n"
             "                 else the embedded cluster)\n"
             "  -h, --help     show this help\n");
}

int dp_senders_cmd(int argc, char **argv) {
  static const struct option longopts[] = {
      {"db", required_argument, NULL, 'd'},
      {"format", required_argument, NULL, 'f'},
      {"domain", required_argument, NULL, 'D'},
      {"since", required_argument, NULL, 's'},
      {"fail", required_argument, NULL, 'F'},
      {"by", required_argument, NULL, 'b'},
      {"redact", no_argument, NULL, 'R'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  int st = dp__query_args(&o, "senders", argc, argv, longopts, usage, true);
  if (st >= 0) return st;
  char err[512] = "";
  int rc = dp__query_services_init(NULL, err, sizeof err);
  if (rc) return dp__query_done("senders", NULL, rc, err);
  PGconn *c = dp__query_connect("senders", o.db);
  if (!c) {
    dp__query_services_set(NULL);
    return 2; /* dp__query_connect said why */
  }
  rc = o.by == DP_PERIOD_NONE
               ? dp__query_senders_redacted(c, &o.filter, o.fail, o.fmt, o.redact, stdout, err,
                                            sizeof err)
               : dp__query_senders_trend(c, &o.filter, o.fail, o.by, o.fmt, stdout, err,
                                         sizeof err);
  return dp__query_done("senders", c, rc, err);
}
