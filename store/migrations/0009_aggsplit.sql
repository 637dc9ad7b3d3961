-- dmarcpipe schema, version 9: the catch-up in two halves that two
-- aggregators fold at once (docs/decisions.md, decision 53).
--
-- One batch was folded by one backend: after a load of small reports (a
-- batch of 16,500 records from 3,000 reports takes ~0.75 s) the catch-up
-- used one server core however many the server had, and `ingest` made
-- its user wait for it. Splitting a batch's reports between two
-- aggregators did not help: both upsert the same aggregate rows (the
-- all-time ones at least), so the second waits for the first to commit.
-- The aggregates are split instead: half A (agg_sender, agg_sender_all,
-- agg_ip, agg_dkim, agg_spf, agg_report) and half B (agg_class,
-- agg_fail_ip, agg_fwd_ip, agg_good_sig, agg_dis_pair, agg_dis_detail),
-- about even in cost, share no table, so two aggregators never wait for
-- each other. Each half has its own queue of pending marks, written by the
-- same statement trigger in the storing transaction: agg_pending for A
-- (the table queries and older binaries look at) and agg_pending_b for B.
-- A half's batch is claimed, folded and unmarked in one transaction, as a
-- whole batch was; a report is folded into both halves exactly once, in
-- either order, and "nothing pending" means both queues are empty.
-- dp_agg_catch_up_batch(n) keeps its meaning: it folds both halves.

-- Made once: a database whose migrations table was rolled back by hand
-- (as a test does) runs this again, and must not mark again for half B
-- what half B has folded since.
DO $$
BEGIN
    IF to_regclass('agg_pending_b') IS NULL THEN
        CREATE TABLE agg_pending_b (
            report_key bigint PRIMARY KEY,
            begin_ts   timestamptz NOT NULL
        );
        CREATE INDEX agg_pending_b_order ON agg_pending_b (begin_ts, report_key);
        -- what was pending is pending in both halves
        INSERT INTO agg_pending_b SELECT report_key, begin_ts FROM agg_pending ORDER BY report_key;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION dp_agg_reports_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agg_pending SELECT id, begin_ts FROM dp_new_reports;
    INSERT INTO agg_pending_b SELECT id, begin_ts FROM dp_new_reports;
    RETURN NULL;
END $$;

-- Every pending mark with its half: what "is anything pending?" and "how
-- many reports wait?" read, so no caller has to know the queues.
CREATE OR REPLACE VIEW agg_pending_any AS
    SELECT 'a'::text AS half, report_key, begin_ts FROM agg_pending
    UNION ALL
    SELECT 'b'::text, report_key, begin_ts FROM agg_pending_b;

-- A half's queue table.
CREATE OR REPLACE FUNCTION dp_agg_queue(part text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF part = 'a' THEN
        RETURN 'agg_pending';
    ELSIF part = 'b' THEN
        RETURN 'agg_pending_b';
    END IF;
    RAISE EXCEPTION 'no half % of the aggregates', part;
END $$;

-- Waits, in the caller's transaction, until the half's first mark is free:
-- an aggregator that found nothing free to take but marks still there waits
-- this way for the batch another aggregator holds.
CREATE OR REPLACE FUNCTION dp_agg_wait_for(part text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT 1 FROM (SELECT report_key FROM %I ORDER BY report_key LIMIT 1'
                   ' FOR UPDATE) w', dp_agg_queue(part));
END $$;

-- The CTEs both halves read (migration 0008's `b` and `la`, text unchanged):
-- the batch's records joined to their reports, and grouped by list texts.
-- A format() string: %s is the batch's source, %% a literal percent.
CREATE OR REPLACE FUNCTION dp_agg_ctes_shared() RETURNS text
LANGUAGE sql IMMUTABLE AS $f$ SELECT $q$
b AS MATERIALIZED (
  SELECT r.id AS rid, r.domain, x.header_from, r.begin_ts, r.end_ts, r.org_name,
         x.sender, x.third_party, x.count, x.source_ip,
         x.spf_aligned, x.dkim_aligned, x.spf_aligned_strict, x.dkim_aligned_strict,
         NOT (x.spf_aligned OR x.dkim_aligned) AS failing,
         (x.spf_aligned_strict OR x.dkim_aligned_strict) AS pass_strict,
         (x.pe_dkim = 'pass' OR x.pe_spf = 'pass') AS policy_pass,
         -- most records have no reason at all: no subplan for them
         CASE WHEN x.reasons = '' THEN false
         ELSE EXISTS (SELECT 1 FROM dp_auth_reasons(x.reasons) t
                       WHERE t.type IN ('forwarded', 'mailing_list', 'trusted_forwarder')) END
           AS relayed,
         CASE WHEN x.reasons = '' THEN false
         ELSE EXISTS (SELECT 1 FROM dp_auth_reasons(x.reasons) t
                       WHERE lower(t.type) IN ('forwarded', 'mailing_list', 'trusted_forwarder')
                          OR lower(t.comment) LIKE '%%arc=pass%%') END AS fwd_reason,
         x.dkim, x.spf,
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
         policy_pass, relayed, fwd_reason, authenticated, dkim, spf,
         sum(count) AS count
    FROM b
   GROUP BY rid, domain, header_from, begin_ts, end_ts, org_name, sender, third_party,
            spf_aligned, dkim_aligned, spf_aligned_strict, dkim_aligned_strict,
            policy_pass, relayed, fwd_reason, authenticated, dkim, spf
)
$q$::text $f$;

-- Half A of migration 0008's catch-up statement: its CTEs for agg_sender,
-- agg_sender_all, agg_ip, agg_dkim, agg_spf and agg_report, text unchanged.
CREATE OR REPLACE FUNCTION dp_agg_sql_a(src text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$ SELECT format('WITH ' || dp_agg_ctes_shared() || $q$,
s AS (
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
    FROM (SELECT la.*, d.domain AS dom, d.result AS res, d.selector AS sel
            FROM la, dp_auth_dkim(la.dkim) d
           WHERE d.domain <> '') u
   GROUP BY domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sel ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), sp AS (
  INSERT INTO agg_spf AS a
  SELECT sha256(textsend(ARRAY[domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender, failing::text, dom, res]::text)),
         domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sum(count)
    FROM (SELECT la.*, s.domain AS dom, s.result AS res
            FROM la, dp_auth_spf(la.spf) s
           WHERE s.domain <> '') u
   GROUP BY domain, header_from, begin_ts, end_ts, sender, failing, dom, res ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
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

-- Half B: the CTEs for agg_class, agg_fail_ip, agg_fwd_ip, agg_good_sig,
-- agg_dis_pair and agg_dis_detail, and what only they read (fsm, gd, gq).
CREATE OR REPLACE FUNCTION dp_agg_sql_b(src text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$ SELECT format('WITH ' || dp_agg_ctes_shared() || $q$,
fsm AS MATERIALIZED (
  SELECT u.dk,
         ARRAY(SELECT q.dm FROM (SELECT DISTINCT lower(d.domain) AS dm, d.selector AS sl
                                   FROM dp_auth_dkim(u.dk) d
                                  WHERE lower(d.result) NOT IN ('pass', 'none', '')) q
                ORDER BY q.dm, q.sl) AS fs_dom,
         ARRAY(SELECT q.sl FROM (SELECT DISTINCT lower(d.domain) AS dm, d.selector AS sl
                                   FROM dp_auth_dkim(u.dk) d
                                  WHERE lower(d.result) NOT IN ('pass', 'none', '')) q
                ORDER BY q.dm, q.sl) AS fs_sel
    FROM (SELECT DISTINCT dkim AS dk FROM la WHERE failing AND NOT fwd_reason AND dkim <> '') u
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
                 ON la.failing AND NOT la.fwd_reason AND f.dk = la.dkim) u
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
                 ON f.dk = b.dkim
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
                 lower(d.domain) AS dom, d.selector AS sel
            FROM la, dp_auth_dkim(la.dkim) d
           WHERE lower(d.result) = 'pass') u
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
)
SELECT 1
$q$, src) $f$;

-- One batch of one half: about n records of the half's pending reports,
-- oldest first, claimed with SKIP LOCKED (so aggregators of the same half
-- take different reports), folded and unmarked in the caller's transaction.
CREATE OR REPLACE FUNCTION dp_agg_catch_up_part(part text, n integer,
                                                OUT reports integer, OUT records bigint)
LANGUAGE plpgsql AS $$
DECLARE
    keys bigint[] := '{}';
    m record;
    queue text;
    src constant text := '(SELECT x.* FROM report rr JOIN record x ON x.report_key = rr.id'
                         ' AND x.begin_ts = rr.begin_ts WHERE rr.id = ANY ($1))';
BEGIN
    queue := dp_agg_queue(part);
    records := 0;
    -- Rows are locked as the loop fetches them (a few ahead): those fetched
    -- but not taken stay locked, unfolded, until this transaction ends.
    FOR m IN EXECUTE format('SELECT p.report_key, coalesce(r.n_records, 0) AS nr'
                            '  FROM %I p LEFT JOIN report r ON r.id = p.report_key'
                            ' ORDER BY p.begin_ts, p.report_key FOR UPDATE OF p SKIP LOCKED',
                            queue) LOOP
        keys := keys || m.report_key;
        records := records + m.nr;
        EXIT WHEN records >= n;
    END LOOP;
    reports := cardinality(keys);
    IF reports = 0 THEN
        RETURN;
    END IF;
    -- The batch's sorts and hashes fit in memory instead of spilling to disk.
    PERFORM set_config('work_mem', '256MB', true);
    -- A mark without its report (deleted by hand): nothing to fold.
    IF part = 'a' THEN
        EXECUTE dp_agg_sql_a(src) USING keys;
    ELSE
        EXECUTE dp_agg_sql_b(src) USING keys;
    END IF;
    EXECUTE format('DELETE FROM %I WHERE report_key = ANY ($1)', queue) USING keys;
END $$;

-- Both halves in the caller's transaction, as one batch was before: the
-- larger of the two halves' counts (they take the same reports unless an
-- aggregator of one half ran ahead).
CREATE OR REPLACE FUNCTION dp_agg_catch_up_batch(n integer, OUT reports integer, OUT records bigint)
LANGUAGE plpgsql AS $$
DECLARE
    a record;
    b record;
BEGIN
    SELECT * INTO a FROM dp_agg_catch_up_part('a', n);
    SELECT * INTO b FROM dp_agg_catch_up_part('b', n);
    IF a.reports >= b.reports THEN
        reports := a.reports;
        records := a.records;
    ELSE
        reports := b.reports;
        records := b.records;
    END IF;
END $$;

-- Empties every aggregate and marks every report pending in both halves:
-- the next catch-up recomputes everything from `record`.
CREATE OR REPLACE FUNCTION dp_agg_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE agg_sender, agg_sender_all, agg_ip, agg_dkim, agg_spf, agg_class, agg_fail_ip, agg_fwd_ip,
             agg_good_sig, agg_dis_pair, agg_dis_detail, agg_report, agg_pending, agg_pending_b;
    INSERT INTO agg_pending SELECT id, begin_ts FROM report ORDER BY id;
    INSERT INTO agg_pending_b SELECT id, begin_ts FROM report ORDER BY id;
END $$;
