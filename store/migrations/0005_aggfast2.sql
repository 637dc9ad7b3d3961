-- SPDX-License-Identifier: MIT
-- 0005_aggfast2.sql - a cheaper catch-up (docs/decisions.md, decision 34,
-- branch aggfast2): the same aggregates and keys, less work per record.
-- The batch's records are grouped once per report and record shape (`la`,
-- about a tenth of the records), and the tables without a source address are
-- derived from that; the failing-signature arrays are computed once per
-- distinct DKIM result list instead of per record; agg_dis_pair's detail
-- arrays move to an append-only side table (agg_dis_detail, a row per pair and
-- batch) so a pair seen again is no longer rewritten with its whole history,
-- and is not rewritten at all when its receiver sets and flags do not change.

-- agg_dis_pair's details: one row per pair (k = agg_dis_pair.k) and batch that
-- saw it, the d_* arrays of migration 0003 for that batch's records. The
-- details of a pair are the concatenation of its rows (order is irrelevant:
-- readiness unnests and groups them).
CREATE TABLE agg_dis_detail (
    k            bytea NOT NULL,
    d_domain     text[] NOT NULL,
    d_begin      timestamptz[] NOT NULL,
    d_end        timestamptz[] NOT NULL,
    d_org        text[] NOT NULL,
    d_pd         text[] NOT NULL,     -- lower(pe_dkim)
    d_ps         text[] NOT NULL,     -- lower(pe_spf)
    d_dk_re      boolean[] NOT NULL,
    d_sp_re      boolean[] NOT NULL,
    d_messages   numeric[] NOT NULL
);

-- Existing details move as they are (one row per pair): the answers do not
-- change and nothing is recomputed from `record`.
INSERT INTO agg_dis_detail
SELECT k, d_domain, d_begin, d_end, d_org, d_pd, d_ps, d_dk_re, d_sp_re, d_messages
  FROM agg_dis_pair ORDER BY k;
CREATE INDEX agg_dis_detail_k ON agg_dis_detail (k);
ALTER TABLE agg_dis_pair DROP COLUMN d_domain, DROP COLUMN d_begin, DROP COLUMN d_end,
    DROP COLUMN d_org, DROP COLUMN d_pd, DROP COLUMN d_ps, DROP COLUMN d_dk_re,
    DROP COLUMN d_sp_re, DROP COLUMN d_messages;
-- Dropped columns keep their space until the rows are rewritten: rewrite the
-- table now (CLUSTER, unlike VACUUM FULL, may run in the migration's
-- transaction). 2 inputs, 2.66M records: 351 MB to 24 MB in 0.9 s.
CLUSTER agg_dis_pair USING agg_dis_pair_pkey;

-- The statement that adds the records of relation `src` (a transition table,
-- or a subquery of record) to every aggregate; their reports must be stored.
-- One statement, so the records are read once; each INSERT that can meet
-- another aggregator's rows is ordered by its conflict key (no deadlock).
--   b   the records, with the per-record flags (read once);
--   la  b grouped by report and by everything but the source address and
--       count: what agg_sender, agg_sender_all, agg_dkim, agg_spf,
--       agg_class, agg_good_sig and agg_report are sums of (about a tenth of
--       b's rows: a report repeats the same sender and results for many
--       addresses);
--   fsm the failing DKIM signatures of each distinct (domains, selectors,
--       results) of failing mail without a forwarding reason, computed once
--       and joined to la (agg_class) and to b (agg_fail_ip).
-- Keys are dp_agg_key()'s expression written out: the function is not inlined
-- (array_out is STABLE, the function IMMUTABLE) and a SQL-function call per
-- row cost 7 % of the CPU; the values are the same, so rows folded before
-- this migration still meet the new ones on conflict.
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
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender]::text)) AS k,
         domain, header_from, begin_ts, end_ts, sender, bool_or(third_party),
         sum(count),
         coalesce(sum(count) FILTER (WHERE spf_aligned), 0),
         coalesce(sum(count) FILTER (WHERE dkim_aligned), 0),
         coalesce(sum(count) FILTER (WHERE NOT failing), 0),
         coalesce(sum(count) FILTER (WHERE spf_aligned_strict), 0),
         coalesce(sum(count) FILTER (WHERE dkim_aligned_strict), 0),
         coalesce(sum(count) FILTER (WHERE policy_pass), 0),
         coalesce(sum(count) FILTER (WHERE failing AND relayed), 0),
         coalesce(sum(count) FILTER (WHERE NOT pass_strict), 0),
         array_agg(DISTINCT org_name ORDER BY org_name)
    FROM la GROUP BY domain, header_from, begin_ts, end_ts, sender ORDER BY 1
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
  -- without DISTINCT let the 400k-odd rows of gd be hashed instead of sorted
  SELECT sha256(textsend(ARRAY[header_from, source_ip::text]::text)) AS k, header_from, source_ip,
         ARRAY(SELECT DISTINCT o FROM unnest(dpo) o ORDER BY o) AS dk_pass_orgs,
         ARRAY(SELECT DISTINCT o FROM unnest(dfo) o ORDER BY o) AS dk_fail_orgs,
         ARRAY(SELECT DISTINCT o FROM unnest(spo) o ORDER BY o) AS sp_pass_orgs,
         ARRAY(SELECT DISTINCT o FROM unnest(sfo) o ORDER BY o) AS sp_fail_orgs,
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

-- Empties every aggregate (now with agg_dis_detail) and marks every report
-- pending: the next catch-up recomputes everything from `record`.
CREATE OR REPLACE FUNCTION dp_agg_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE agg_sender, agg_sender_all, agg_ip, agg_dkim, agg_spf, agg_class, agg_fail_ip, agg_fwd_ip,
             agg_good_sig, agg_dis_pair, agg_dis_detail, agg_report, agg_pending;
    INSERT INTO agg_pending SELECT id, begin_ts FROM report ORDER BY id;
END $$;
