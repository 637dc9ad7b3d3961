-- SPDX-License-Identifier: MIT
-- 0006_aggfast3.sql - a cheaper catch-up again (docs/decisions.md, decision
-- 35, branch aggfast3): the statement of migration 0005 with the same
-- aggregates, keys and values; only how two of them are computed changes.
-- Each distinct, sorted set (agg_sender's reporters, agg_dis_pair's four
-- receiver sets) was a sort per group: agg_sender grouped by sorting because
-- of array_agg(DISTINCT ... ORDER BY), and every pair ran four sorting
-- subqueries. Now the groups are hashed, their members collected unsorted,
-- and a set is made distinct and sorted only when it holds two members or
-- more; a set of one is its own distinct sorted form, and most sets hold one
-- (a sender or an address is mostly seen by one receiver in a batch).

-- The statement that adds the records of relation `src` to every aggregate
-- (as in migration 0005, which explains b, la and fsm).
CREATE OR REPLACE FUNCTION dp_agg_sql(src text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$ SELECT format($q$
WITH b AS MATERIALIZED (
  SELECT r.id AS rid, r.domain, x.header_from, r.begin_ts, r.end_ts, r.org_name,
         x.sender, x.third_party, x.count, x.source_ip,
         x.spf_aligned, x.dkim_aligned, x.spf_aligned_strict, x.dkim_aligned_strict,
         NOT (x.spf_aligned OR x.dkim_aligned) AS failing,
         (x.spf_aligned_strict OR x.dkim_aligned_strict) AS pass_strict,
         (x.pe_dkim = 'pass' OR x.pe_spf = 'pass') AS policy_pass,
         x.reason_types && ARRAY['forwarded', 'mailing_list', 'trusted_forwarder'] AS relayed,
         -- most records have no reason at all: skip the two subplans for them
         CASE WHEN x.reason_types = '{}' AND x.reason_comments = '{}' THEN false
         ELSE (EXISTS (SELECT 1 FROM unnest(x.reason_types) t
                        WHERE lower(t) IN ('forwarded', 'mailing_list', 'trusted_forwarder'))
               OR EXISTS (SELECT 1 FROM unnest(x.reason_comments) m
                           WHERE lower(m) LIKE '%%arc=pass%%')) END AS fwd_reason,
         x.dkim_domains, x.dkim_selectors, x.dkim_results, x.spf_domains, x.spf_results,
         x.sender NOT LIKE 'unauthenticated %%' AS authenticated,
         lower(x.pe_dkim) AS pd, lower(x.pe_spf) AS ps,
         CASE WHEN lower(r.adkim) = 's' THEN x.dkim_aligned_strict
              ELSE x.dkim_aligned END AS dk_ok,
         CASE WHEN lower(r.aspf) = 's' THEN x.spf_aligned_strict
              ELSE x.spf_aligned END AS sp_ok
    FROM report r JOIN %s x ON x.report_key = r.id AND x.begin_ts = r.begin_ts
), la AS MATERIALIZED (
  SELECT rid, domain, header_from, begin_ts, end_ts, org_name, sender, third_party,
         spf_aligned, dkim_aligned, spf_aligned_strict, dkim_aligned_strict,
         NOT (spf_aligned OR dkim_aligned) AS failing,
         (spf_aligned_strict OR dkim_aligned_strict) AS pass_strict,
         policy_pass, relayed, fwd_reason, authenticated,
         dkim_domains, dkim_selectors, dkim_results, spf_domains, spf_results,
         sum(count) AS count
    FROM b
   GROUP BY rid, domain, header_from, begin_ts, end_ts, org_name, sender, third_party,
            spf_aligned, dkim_aligned, spf_aligned_strict, dkim_aligned_strict,
            policy_pass, relayed, fwd_reason, authenticated,
            dkim_domains, dkim_selectors, dkim_results, spf_domains, spf_results
), fsm AS MATERIALIZED (
  SELECT u.dd, u.ds, u.dr,
         ARRAY(SELECT q.dm FROM (SELECT DISTINCT lower(d.dom) AS dm, coalesce(d.sel, '') AS sl
                                   FROM unnest(u.dd, u.ds, u.dr) AS d(dom, sel, res)
                                  WHERE d.dom IS NOT NULL
                                    AND lower(coalesce(d.res, '')) NOT IN ('pass', 'none', '')) q
                ORDER BY q.dm, q.sl) AS fs_dom,
         ARRAY(SELECT q.sl FROM (SELECT DISTINCT lower(d.dom) AS dm, coalesce(d.sel, '') AS sl
                                   FROM unnest(u.dd, u.ds, u.dr) AS d(dom, sel, res)
                                  WHERE d.dom IS NOT NULL
                                    AND lower(coalesce(d.res, '')) NOT IN ('pass', 'none', '')) q
                ORDER BY q.dm, q.sl) AS fs_sel
    FROM (SELECT DISTINCT dkim_domains AS dd, dkim_selectors AS ds, dkim_results AS dr
            FROM la WHERE failing AND NOT fwd_reason AND dkim_domains <> '{}') u
), s AS (
  INSERT INTO agg_sender AS a
  -- reporters made distinct and sorted afterwards, only for the senders with
  -- more than one `la` row in the batch (several reports, or one report's
  -- records in several shapes): the groups are hashed, not sorted
  SELECT k, domain, header_from, begin_ts, end_ts, sender, third_party, messages, spf_aligned,
         dkim_aligned, dmarc_pass, spf_strict, dkim_strict, policy_pass, relayed, fail_strict,
         CASE WHEN cardinality(orgs) = 1 THEN orgs
              ELSE ARRAY(SELECT DISTINCT o FROM unnest(orgs) o ORDER BY o) END
    FROM (SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                          extract(epoch FROM end_ts)::text, sender]::text)) AS k,
                 domain, header_from, begin_ts, end_ts, sender, bool_or(third_party) AS third_party,
                 sum(count) AS messages,
                 coalesce(sum(count) FILTER (WHERE spf_aligned), 0) AS spf_aligned,
                 coalesce(sum(count) FILTER (WHERE dkim_aligned), 0) AS dkim_aligned,
                 coalesce(sum(count) FILTER (WHERE NOT failing), 0) AS dmarc_pass,
                 coalesce(sum(count) FILTER (WHERE spf_aligned_strict), 0) AS spf_strict,
                 coalesce(sum(count) FILTER (WHERE dkim_aligned_strict), 0) AS dkim_strict,
                 coalesce(sum(count) FILTER (WHERE policy_pass), 0) AS policy_pass,
                 coalesce(sum(count) FILTER (WHERE failing AND relayed), 0) AS relayed,
                 coalesce(sum(count) FILTER (WHERE NOT pass_strict), 0) AS fail_strict,
                 array_agg(org_name) AS orgs
            FROM la GROUP BY domain, header_from, begin_ts, end_ts, sender) q
   ORDER BY k
  ON CONFLICT (k) DO UPDATE SET
         third_party = a.third_party OR EXCLUDED.third_party,
         messages = a.messages + EXCLUDED.messages,
         spf_aligned = a.spf_aligned + EXCLUDED.spf_aligned,
         dkim_aligned = a.dkim_aligned + EXCLUDED.dkim_aligned,
         dmarc_pass = a.dmarc_pass + EXCLUDED.dmarc_pass,
         spf_strict = a.spf_strict + EXCLUDED.spf_strict,
         dkim_strict = a.dkim_strict + EXCLUDED.dkim_strict,
         policy_pass = a.policy_pass + EXCLUDED.policy_pass,
         relayed = a.relayed + EXCLUDED.relayed,
         fail_strict = a.fail_strict + EXCLUDED.fail_strict,
         reporters = CASE WHEN a.reporters @> EXCLUDED.reporters THEN a.reporters
                     ELSE dp_agg_union(a.reporters, EXCLUDED.reporters) END
  RETURNING 1
), sa AS (
  INSERT INTO agg_sender_all AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, sender]::text)), domain, header_from, sender, sum(count),
         coalesce(sum(count) FILTER (WHERE spf_aligned), 0),
         coalesce(sum(count) FILTER (WHERE dkim_aligned), 0),
         coalesce(sum(count) FILTER (WHERE NOT failing), 0)
    FROM la GROUP BY domain, header_from, sender ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET
         messages = a.messages + EXCLUDED.messages,
         spf_aligned = a.spf_aligned + EXCLUDED.spf_aligned,
         dkim_aligned = a.dkim_aligned + EXCLUDED.dkim_aligned,
         dmarc_pass = a.dmarc_pass + EXCLUDED.dmarc_pass
  RETURNING 1
), i AS (
  INSERT INTO agg_ip AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender, source_ip::text]::text)),
         domain, header_from, begin_ts, end_ts, sender, source_ip, sum(count)
    FROM b GROUP BY domain, header_from, begin_ts, end_ts, sender, source_ip ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), dk AS (
  INSERT INTO agg_dkim AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender, failing::text, dom, res, sel]::text)),
         domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sel, sum(count)
    FROM (SELECT la.*, d.dom, coalesce(d.res, '') AS res, coalesce(d.sel, '') AS sel
            FROM la, unnest(la.dkim_domains, la.dkim_results, la.dkim_selectors) AS d(dom, res, sel)
           WHERE coalesce(d.dom, '') <> '') u
   GROUP BY domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sel ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), sp AS (
  INSERT INTO agg_spf AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender, failing::text, dom, res]::text)),
         domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sum(count)
    FROM (SELECT la.*, s.dom, coalesce(s.res, '') AS res
            FROM la, unnest(la.spf_domains, la.spf_results) AS s(dom, res)
           WHERE coalesce(s.dom, '') <> '') u
   GROUP BY domain, header_from, begin_ts, end_ts, sender, failing, dom, res ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), c AS (
  INSERT INTO agg_class AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, authenticated::text, csender, pass::text,
                    pass_strict::text, fwd_reason::text, fs_dom::text, fs_sel::text]::text)),
         domain, header_from, begin_ts, end_ts, authenticated, csender, pass, pass_strict,
         fwd_reason, fs_dom, fs_sel, sum(count)
    FROM (SELECT la.domain, la.header_from, la.begin_ts, la.end_ts, la.authenticated,
                 CASE WHEN la.authenticated THEN la.sender ELSE '' END AS csender,
                 NOT la.failing AS pass, la.pass_strict, la.fwd_reason, la.count,
                 coalesce(f.fs_dom, '{}') AS fs_dom, coalesce(f.fs_sel, '{}') AS fs_sel
            FROM la LEFT JOIN fsm f
                 ON la.failing AND NOT la.fwd_reason AND f.dd = la.dkim_domains
                    AND f.ds = la.dkim_selectors AND f.dr = la.dkim_results) u
   GROUP BY domain, header_from, begin_ts, end_ts, authenticated, csender, pass, pass_strict,
            fwd_reason, fs_dom, fs_sel
   ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), fi AS (
  INSERT INTO agg_fail_ip AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, source_ip::text, authenticated::text,
                    csender, pass_strict::text, fs_dom::text, fs_sel::text]::text)),
         domain, header_from, begin_ts, end_ts, source_ip, authenticated, csender, pass_strict,
         fs_dom, fs_sel, sum(count)
    FROM (SELECT b.domain, b.header_from, b.begin_ts, b.end_ts, b.source_ip, b.authenticated,
                 CASE WHEN b.authenticated THEN b.sender ELSE '' END AS csender,
                 b.pass_strict, b.count,
                 coalesce(f.fs_dom, '{}') AS fs_dom, coalesce(f.fs_sel, '{}') AS fs_sel
            FROM b LEFT JOIN fsm f
                 ON f.dd = b.dkim_domains AND f.ds = b.dkim_selectors AND f.dr = b.dkim_results
           WHERE b.failing AND NOT b.fwd_reason) u
   GROUP BY domain, header_from, begin_ts, end_ts, source_ip, authenticated, csender,
            pass_strict, fs_dom, fs_sel
   ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), fw AS (
  INSERT INTO agg_fwd_ip AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, source_ip::text]::text)),
         domain, header_from, begin_ts, end_ts, source_ip
    FROM (SELECT DISTINCT domain, header_from, begin_ts, end_ts, source_ip
            FROM b WHERE fwd_reason) u
   ORDER BY 1
  ON CONFLICT (k) DO NOTHING
  RETURNING 1
), gs AS (
  INSERT INTO agg_good_sig AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, dom, sel]::text)),
         domain, header_from, begin_ts, end_ts, dom, sel
    FROM (SELECT DISTINCT la.domain, la.header_from, la.begin_ts, la.end_ts,
                 lower(d.dom) AS dom, coalesce(d.sel, '') AS sel
            FROM la, unnest(la.dkim_domains, la.dkim_selectors, la.dkim_results)
                     AS d(dom, sel, res)
           WHERE lower(d.res) = 'pass' AND d.dom IS NOT NULL) u
   ORDER BY 1
  ON CONFLICT (k) DO NOTHING
  RETURNING 1
), gd AS (
  SELECT header_from, source_ip, domain, begin_ts, end_ts, org_name, pd, ps,
         coalesce(bool_or(pd IN ('pass', 'fail') AND (pd = 'pass') <> dk_ok), false) AS dk_re,
         coalesce(bool_or(ps IN ('pass', 'fail') AND (ps = 'pass') <> sp_ok), false) AS sp_re,
         sum(count) AS messages
    FROM b GROUP BY header_from, source_ip, domain, begin_ts, end_ts, org_name, pd, ps
), gq AS MATERIALIZED (
  -- receiver sets made distinct and sorted per pair afterwards: aggregates
  -- without DISTINCT let the 400k-odd rows of gd be hashed instead of sorted;
  -- and only when the set has two entries or more (most have none or one:
  -- the sorting subquery per set and pair was 6 %% of the catch-up's CPU)
  SELECT sha256(textsend(ARRAY[header_from, source_ip::text]::text)) AS k, header_from, source_ip,
         CASE WHEN dpo IS NULL THEN '{}' WHEN cardinality(dpo) = 1 THEN dpo
              ELSE ARRAY(SELECT DISTINCT o FROM unnest(dpo) o ORDER BY o) END AS dk_pass_orgs,
         CASE WHEN dfo IS NULL THEN '{}' WHEN cardinality(dfo) = 1 THEN dfo
              ELSE ARRAY(SELECT DISTINCT o FROM unnest(dfo) o ORDER BY o) END AS dk_fail_orgs,
         CASE WHEN spo IS NULL THEN '{}' WHEN cardinality(spo) = 1 THEN spo
              ELSE ARRAY(SELECT DISTINCT o FROM unnest(spo) o ORDER BY o) END AS sp_pass_orgs,
         CASE WHEN sfo IS NULL THEN '{}' WHEN cardinality(sfo) = 1 THEN sfo
              ELSE ARRAY(SELECT DISTINCT o FROM unnest(sfo) o ORDER BY o) END AS sp_fail_orgs,
         dk_re, sp_re, d_domain, d_begin, d_end, d_org, d_pd, d_ps, d_dk_re, d_sp_re, d_messages
    FROM (SELECT header_from, source_ip,
                 array_agg(org_name) FILTER (WHERE pd = 'pass') AS dpo,
                 array_agg(org_name) FILTER (WHERE pd = 'fail') AS dfo,
                 array_agg(org_name) FILTER (WHERE ps = 'pass') AS spo,
                 array_agg(org_name) FILTER (WHERE ps = 'fail') AS sfo,
                 bool_or(dk_re) AS dk_re, bool_or(sp_re) AS sp_re,
                 array_agg(domain) AS d_domain, array_agg(begin_ts) AS d_begin,
                 array_agg(end_ts) AS d_end, array_agg(org_name) AS d_org, array_agg(pd) AS d_pd,
                 array_agg(ps) AS d_ps, array_agg(dk_re) AS d_dk_re, array_agg(sp_re) AS d_sp_re,
                 array_agg(messages) AS d_messages
            FROM gd GROUP BY header_from, source_ip) q
), gp AS (
  INSERT INTO agg_dis_pair AS a
  SELECT k, header_from, source_ip, dk_pass_orgs, dk_fail_orgs, sp_pass_orgs, sp_fail_orgs,
         dk_re, sp_re
    FROM gq ORDER BY k
  ON CONFLICT (k) DO UPDATE SET
         dk_pass_orgs = CASE WHEN a.dk_pass_orgs @> EXCLUDED.dk_pass_orgs THEN a.dk_pass_orgs
                        ELSE dp_agg_union(a.dk_pass_orgs, EXCLUDED.dk_pass_orgs) END,
         dk_fail_orgs = CASE WHEN a.dk_fail_orgs @> EXCLUDED.dk_fail_orgs THEN a.dk_fail_orgs
                        ELSE dp_agg_union(a.dk_fail_orgs, EXCLUDED.dk_fail_orgs) END,
         sp_pass_orgs = CASE WHEN a.sp_pass_orgs @> EXCLUDED.sp_pass_orgs THEN a.sp_pass_orgs
                        ELSE dp_agg_union(a.sp_pass_orgs, EXCLUDED.sp_pass_orgs) END,
         sp_fail_orgs = CASE WHEN a.sp_fail_orgs @> EXCLUDED.sp_fail_orgs THEN a.sp_fail_orgs
                        ELSE dp_agg_union(a.sp_fail_orgs, EXCLUDED.sp_fail_orgs) END,
         dk_re = a.dk_re OR EXCLUDED.dk_re,
         sp_re = a.sp_re OR EXCLUDED.sp_re
   -- the row is locked either way; it is rewritten only when something changes
   WHERE NOT (a.dk_pass_orgs @> EXCLUDED.dk_pass_orgs AND a.dk_fail_orgs @> EXCLUDED.dk_fail_orgs
              AND a.sp_pass_orgs @> EXCLUDED.sp_pass_orgs
              AND a.sp_fail_orgs @> EXCLUDED.sp_fail_orgs
              AND (a.dk_re OR NOT EXCLUDED.dk_re) AND (a.sp_re OR NOT EXCLUDED.sp_re))
  RETURNING 1
), gdd AS (
  INSERT INTO agg_dis_detail
  SELECT k, d_domain, d_begin, d_end, d_org, d_pd, d_ps, d_dk_re, d_sp_re, d_messages
    FROM gq ORDER BY k
  RETURNING 1
), rp AS (
  INSERT INTO agg_report
  SELECT rid, header_from, sum(count),
         coalesce(sum(count) FILTER (WHERE NOT failing), 0),
         coalesce(sum(count) FILTER (WHERE policy_pass), 0)
    FROM la GROUP BY rid, header_from
  RETURNING 1
)
SELECT 1
$q$, src) $f$;
