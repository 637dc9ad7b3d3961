-- SPDX-License-Identifier: MIT
-- 0003_aggregates.sql - aggregates of `record`, so that senders, readiness,
-- domains and the HTML report read few rows instead of every record
-- (docs/decisions.md, "Aggregates caught up after ingest").
-- `record` stays the source of truth: each agg_* row is a GROUP BY of records,
-- keyed by the report fields the queries filter on (policy domain, begin_ts,
-- end_ts: exact, so --since and --by stay exact) plus the record fields they
-- group on; org_name and report identity are dropped, which is what folds the
-- same sender seen by many receivers into one row per range.
-- Ingest does not aggregate: a row trigger on `report` marks each new report
-- pending (agg_pending), in the loader's transaction, so a report and its
-- pending mark commit together. dp_agg_catch_up_batch() (called by
-- store/aggregate.c) later folds pending reports into the aggregates in bulk,
-- a batch per transaction, and deletes their marks in that same transaction:
-- each report is aggregated exactly once, and a snapshot without pending rows
-- sees aggregates that cover exactly the reports it sees. Rows are upserted in
-- key order so concurrent aggregators never deadlock on each other. Keys are a
-- SHA-256 of the key columns because a report field may be longer than a
-- btree entry allows.

-- A row key: SHA-256 of the text form of the parts (text[] output quotes and
-- escapes each element, so different part lists never give the same text).
CREATE FUNCTION dp_agg_key(VARIADIC parts text[]) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT sha256(textsend(parts::text)) $$;

-- Sorted distinct union of two text arrays (upserts call it only when the
-- new array holds something the stored one lacks: @> is much cheaper).
CREATE FUNCTION dp_agg_union(a text[], b text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT e ORDER BY e), '{}') FROM unnest(a || b) e $$;

-- Per sender: the sums of `senders` and of the trends. reporters: distinct
-- org_name. relayed: failing messages with a forwarding reason (as senders
-- defines it); fail_strict: NOT (spf_aligned_strict OR dkim_aligned_strict).
CREATE TABLE agg_sender (
    k            bytea PRIMARY KEY,
    domain       text NOT NULL,
    header_from  text NOT NULL,
    begin_ts     timestamptz NOT NULL,
    end_ts       timestamptz NOT NULL,
    sender       text NOT NULL,
    third_party  boolean NOT NULL,
    messages     numeric NOT NULL,
    spf_aligned  numeric NOT NULL,
    dkim_aligned numeric NOT NULL,
    dmarc_pass   numeric NOT NULL,
    spf_strict   numeric NOT NULL,
    dkim_strict  numeric NOT NULL,
    policy_pass  numeric NOT NULL,
    relayed      numeric NOT NULL,
    fail_strict  numeric NOT NULL,
    reporters    text[] NOT NULL
);

-- agg_sender's sums without the range (everything stored): what the table
-- form of `senders` ranks the unauthenticated networks by when there is no
-- --since (about half the rows: a network is mostly seen in one range, but
-- by receivers with different ranges).
CREATE TABLE agg_sender_all (
    k            bytea PRIMARY KEY,
    domain       text NOT NULL,
    header_from  text NOT NULL,
    sender       text NOT NULL,
    messages     numeric NOT NULL,
    spf_aligned  numeric NOT NULL,
    dkim_aligned numeric NOT NULL,
    dmarc_pass   numeric NOT NULL
);

-- Per sender and source address: the top source IPs of `senders`.
CREATE TABLE agg_ip (
    k           bytea PRIMARY KEY,
    domain      text NOT NULL,
    header_from text NOT NULL,
    begin_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    sender      text NOT NULL,
    source_ip   inet NOT NULL,
    messages    numeric NOT NULL
);

-- Per sender, DMARC outcome and DKIM signature (domain, result, selector as
-- unnested from the record, NULLs as ''; empty domains dropped): the DKIM
-- evidence of `senders` and the verifying signatures of `readiness`.
CREATE TABLE agg_dkim (
    k           bytea PRIMARY KEY,
    domain      text NOT NULL,
    header_from text NOT NULL,
    begin_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    sender      text NOT NULL,
    failing     boolean NOT NULL,
    dom         text NOT NULL,
    res         text NOT NULL,
    sel         text NOT NULL,
    messages    numeric NOT NULL
);

-- The same for SPF (domain, result).
CREATE TABLE agg_spf (
    k           bytea PRIMARY KEY,
    domain      text NOT NULL,
    header_from text NOT NULL,
    begin_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    sender      text NOT NULL,
    failing     boolean NOT NULL,
    dom         text NOT NULL,
    res         text NOT NULL,
    messages    numeric NOT NULL
);

-- What `readiness` classifies, without source addresses so that it stays
-- small: the unauthenticated networks (never fixable) are one group (csender
-- ''), and failing mail without a forwarding reason keeps only the DKIM
-- signatures that failed (lower-case domain, selector; sorted, distinct), the
-- evidence of rule 2 (query/readiness.c). Rule 1's "another record from the
-- same source address had a forwarding reason" is applied by moving the
-- agg_fail_ip rows of those addresses to "forwarded" at query time.
CREATE TABLE agg_class (
    k              bytea PRIMARY KEY,
    domain         text NOT NULL,
    header_from    text NOT NULL,
    begin_ts       timestamptz NOT NULL,
    end_ts         timestamptz NOT NULL,
    authenticated  boolean NOT NULL,
    csender        text NOT NULL,
    pass           boolean NOT NULL,
    pass_strict    boolean NOT NULL,
    fwd_reason     boolean NOT NULL,
    fs_dom         text[] NOT NULL,
    fs_sel         text[] NOT NULL,
    messages       numeric NOT NULL
);

-- The failing mail without a forwarding reason of agg_class again, per source
-- address: read only for the few addresses that had a forwarding reason.
CREATE TABLE agg_fail_ip (
    k              bytea PRIMARY KEY,
    domain         text NOT NULL,
    header_from    text NOT NULL,
    begin_ts       timestamptz NOT NULL,
    end_ts         timestamptz NOT NULL,
    source_ip      inet NOT NULL,
    authenticated  boolean NOT NULL,
    csender        text NOT NULL,
    pass_strict    boolean NOT NULL,
    fs_dom         text[] NOT NULL,
    fs_sel         text[] NOT NULL,
    messages       numeric NOT NULL
);
CREATE INDEX agg_fail_ip_ip ON agg_fail_ip (source_ip);

-- Source addresses of mail with a forwarding reason (rule 1).
CREATE TABLE agg_fwd_ip (
    k           bytea PRIMARY KEY,
    domain      text NOT NULL,
    header_from text NOT NULL,
    begin_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    source_ip   inet NOT NULL
);

-- DKIM signatures that verified (lower-case domain, selector): rule 2's
-- "verifies in other records of the window".
CREATE TABLE agg_good_sig (
    k           bytea PRIMARY KEY,
    domain      text NOT NULL,
    header_from text NOT NULL,
    begin_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL,
    dom         text NOT NULL,
    sel         text NOT NULL
);

-- Per (header_from, source_ip) over everything stored: what `readiness`
-- needs for the receivers that disagree. The org sets and re flags decide
-- `flagged`; whether receivers disagree can only grow with more records, so a
-- pair not flagged here is flagged in no window and no domain's selection.
-- The d_* arrays (parallel, appended batch after batch) keep, per report
-- domain, range, receiver and its verdicts, the messages and whether the
-- verdict contradicts the recomputed alignment: readiness unnests them for
-- the flagged pairs alone, so the window stays exact without a table of a
-- row per address and range (which was most of the catch-up's writes).
CREATE TABLE agg_dis_pair (
    k            bytea PRIMARY KEY,
    header_from  text NOT NULL,
    source_ip    inet NOT NULL,
    dk_pass_orgs text[] NOT NULL,
    dk_fail_orgs text[] NOT NULL,
    sp_pass_orgs text[] NOT NULL,
    sp_fail_orgs text[] NOT NULL,
    dk_re        boolean NOT NULL,
    sp_re        boolean NOT NULL,
    d_domain     text[] NOT NULL,
    d_begin      timestamptz[] NOT NULL,
    d_end        timestamptz[] NOT NULL,
    d_org        text[] NOT NULL,
    d_pd         text[] NOT NULL,     -- lower(pe_dkim)
    d_ps         text[] NOT NULL,     -- lower(pe_spf)
    d_dk_re      boolean[] NOT NULL,
    d_sp_re      boolean[] NOT NULL,
    d_messages   numeric[] NOT NULL,
    -- a pass and a fail, from two different orgs; or a verdict contradicted
    flagged      boolean GENERATED ALWAYS AS (
        (dk_pass_orgs <> '{}' AND dk_fail_orgs <> '{}'
         AND NOT (dk_pass_orgs = dk_fail_orgs AND cardinality(dk_pass_orgs) = 1))
        OR (sp_pass_orgs <> '{}' AND sp_fail_orgs <> '{}'
            AND NOT (sp_pass_orgs = sp_fail_orgs AND cardinality(sp_pass_orgs) = 1))
        OR dk_re OR sp_re) STORED
);
CREATE INDEX agg_dis_pair_flagged ON agg_dis_pair (source_ip) WHERE flagged;
-- The detail arrays of a pair seen in many reports are rewritten whole at
-- each batch: stored out of line uncompressed, they are not pglz-compressed
-- again each time (about a quarter of the catch-up's agg_dis_pair time).
ALTER TABLE agg_dis_pair ALTER d_domain SET STORAGE EXTERNAL, ALTER d_begin SET STORAGE EXTERNAL,
    ALTER d_end SET STORAGE EXTERNAL, ALTER d_org SET STORAGE EXTERNAL,
    ALTER d_pd SET STORAGE EXTERNAL, ALTER d_ps SET STORAGE EXTERNAL,
    ALTER d_dk_re SET STORAGE EXTERNAL, ALTER d_sp_re SET STORAGE EXTERNAL,
    ALTER d_messages SET STORAGE EXTERNAL;

-- Per report and header_from (written once, when the report is claimed):
-- report counts, receivers and per-domain volume.
CREATE TABLE agg_report (
    report_key  bigint NOT NULL,
    header_from text NOT NULL,
    messages    numeric NOT NULL,
    dmarc_pass  numeric NOT NULL,
    policy_pass numeric NOT NULL
);
CREATE INDEX agg_report_key ON agg_report (report_key);

-- The statement that adds the records of relation `src` (a transition table,
-- or a subquery of record) to every aggregate; their reports must be stored.
-- One statement, so the records are read once; each INSERT is ordered by its
-- conflict key.
CREATE FUNCTION dp_agg_sql(src text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$ SELECT format($q$
WITH b AS MATERIALIZED (
  SELECT r.id AS rid, r.domain, x.header_from, r.begin_ts, r.end_ts, r.org_name,
         x.sender, x.third_party, x.count, x.source_ip,
         x.spf_aligned, x.dkim_aligned, x.spf_aligned_strict, x.dkim_aligned_strict,
         NOT (x.spf_aligned OR x.dkim_aligned) AS failing,
         (x.spf_aligned_strict OR x.dkim_aligned_strict) AS pass_strict,
         (x.pe_dkim = 'pass' OR x.pe_spf = 'pass') AS policy_pass,
         x.reason_types && ARRAY['forwarded', 'mailing_list', 'trusted_forwarder'] AS relayed,
         (EXISTS (SELECT 1 FROM unnest(x.reason_types) t
                   WHERE lower(t) IN ('forwarded', 'mailing_list', 'trusted_forwarder'))
          OR EXISTS (SELECT 1 FROM unnest(x.reason_comments) m
                      WHERE lower(m) LIKE '%%arc=pass%%')) AS fwd_reason,
         x.dkim_domains, x.dkim_selectors, x.dkim_results, x.spf_domains, x.spf_results,
         x.sender NOT LIKE 'unauthenticated %%' AS authenticated,
         lower(x.pe_dkim) AS pd, lower(x.pe_spf) AS ps,
         CASE WHEN lower(r.adkim) = 's' THEN x.dkim_aligned_strict
              ELSE x.dkim_aligned END AS dk_ok,
         CASE WHEN lower(r.aspf) = 's' THEN x.spf_aligned_strict
              ELSE x.spf_aligned END AS sp_ok
    FROM report r JOIN %s x ON x.report_key = r.id AND x.begin_ts = r.begin_ts
), s AS (
  INSERT INTO agg_sender AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender) AS k,
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
    FROM b GROUP BY domain, header_from, begin_ts, end_ts, sender ORDER BY 1
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
  SELECT dp_agg_key(domain, header_from, sender), domain, header_from, sender, sum(count),
         coalesce(sum(count) FILTER (WHERE spf_aligned), 0),
         coalesce(sum(count) FILTER (WHERE dkim_aligned), 0),
         coalesce(sum(count) FILTER (WHERE NOT failing), 0)
    FROM b GROUP BY domain, header_from, sender ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET
         messages = a.messages + EXCLUDED.messages,
         spf_aligned = a.spf_aligned + EXCLUDED.spf_aligned,
         dkim_aligned = a.dkim_aligned + EXCLUDED.dkim_aligned,
         dmarc_pass = a.dmarc_pass + EXCLUDED.dmarc_pass
  RETURNING 1
), i AS (
  INSERT INTO agg_ip AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender, source_ip::text),
         domain, header_from, begin_ts, end_ts, sender, source_ip, sum(count)
    FROM b GROUP BY domain, header_from, begin_ts, end_ts, sender, source_ip ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), dk AS (
  INSERT INTO agg_dkim AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender, failing::text, dom, res, sel),
         domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sel, sum(count)
    FROM (SELECT b.*, d.dom, coalesce(d.res, '') AS res, coalesce(d.sel, '') AS sel
            FROM b, unnest(b.dkim_domains, b.dkim_results, b.dkim_selectors) AS d(dom, res, sel)
           WHERE coalesce(d.dom, '') <> '') u
   GROUP BY domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sel ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), sp AS (
  INSERT INTO agg_spf AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, sender, failing::text, dom, res),
         domain, header_from, begin_ts, end_ts, sender, failing, dom, res, sum(count)
    FROM (SELECT b.*, s.dom, coalesce(s.res, '') AS res
            FROM b, unnest(b.spf_domains, b.spf_results) AS s(dom, res)
           WHERE coalesce(s.dom, '') <> '') u
   GROUP BY domain, header_from, begin_ts, end_ts, sender, failing, dom, res ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), cb AS MATERIALIZED (
  SELECT b.domain, b.header_from, b.begin_ts, b.end_ts, b.source_ip, b.authenticated,
         CASE WHEN b.authenticated THEN b.sender ELSE '' END AS csender,
         NOT b.failing AS pass, b.pass_strict, b.fwd_reason, b.count,
         CASE WHEN b.failing AND NOT b.fwd_reason AND b.dkim_domains <> '{}' THEN ARRAY(
           SELECT q.dm FROM (SELECT DISTINCT lower(d.dom) AS dm, coalesce(d.sel, '') AS sl
                                  FROM unnest(b.dkim_domains, b.dkim_selectors, b.dkim_results)
                                       AS d(dom, sel, res)
                                 WHERE d.dom IS NOT NULL
                                   AND lower(coalesce(d.res, '')) NOT IN ('pass', 'none', '')) q
            ORDER BY q.dm, q.sl)
         ELSE '{}' END AS fs_dom,
         CASE WHEN b.failing AND NOT b.fwd_reason AND b.dkim_domains <> '{}' THEN ARRAY(
           SELECT q.sl FROM (SELECT DISTINCT lower(d.dom) AS dm, coalesce(d.sel, '') AS sl
                                  FROM unnest(b.dkim_domains, b.dkim_selectors, b.dkim_results)
                                       AS d(dom, sel, res)
                                 WHERE d.dom IS NOT NULL
                                   AND lower(coalesce(d.res, '')) NOT IN ('pass', 'none', '')) q
            ORDER BY q.dm, q.sl)
         ELSE '{}' END AS fs_sel
    FROM b
), c AS (
  INSERT INTO agg_class AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, authenticated::text, csender, pass::text,
                    pass_strict::text, fwd_reason::text, fs_dom::text, fs_sel::text),
         domain, header_from, begin_ts, end_ts, authenticated, csender, pass, pass_strict,
         fwd_reason, fs_dom, fs_sel, sum(count)
    FROM cb
   GROUP BY domain, header_from, begin_ts, end_ts, authenticated, csender, pass, pass_strict,
            fwd_reason, fs_dom, fs_sel
   ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), fi AS (
  INSERT INTO agg_fail_ip AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, source_ip::text, authenticated::text,
                    csender, pass_strict::text, fs_dom::text, fs_sel::text),
         domain, header_from, begin_ts, end_ts, source_ip, authenticated, csender, pass_strict,
         fs_dom, fs_sel, sum(count)
    FROM cb WHERE NOT pass AND NOT fwd_reason
   GROUP BY domain, header_from, begin_ts, end_ts, source_ip, authenticated, csender,
            pass_strict, fs_dom, fs_sel
   ORDER BY 1
  ON CONFLICT (k) DO UPDATE SET messages = a.messages + EXCLUDED.messages
  RETURNING 1
), fw AS (
  INSERT INTO agg_fwd_ip AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, source_ip::text),
         domain, header_from, begin_ts, end_ts, source_ip
    FROM (SELECT DISTINCT domain, header_from, begin_ts, end_ts, source_ip
            FROM b WHERE fwd_reason) u
   ORDER BY 1
  ON CONFLICT (k) DO NOTHING
  RETURNING 1
), gs AS (
  INSERT INTO agg_good_sig AS a
  SELECT dp_agg_key(domain, header_from, extract(epoch FROM begin_ts)::text,
                    extract(epoch FROM end_ts)::text, dom, sel),
         domain, header_from, begin_ts, end_ts, dom, sel
    FROM (SELECT DISTINCT b.domain, b.header_from, b.begin_ts, b.end_ts, lower(d.dom) AS dom,
                 coalesce(d.sel, '') AS sel
            FROM b, unnest(b.dkim_domains, b.dkim_selectors, b.dkim_results) AS d(dom, sel, res)
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
), gp AS (
  INSERT INTO agg_dis_pair AS a
  SELECT dp_agg_key(header_from, source_ip::text), header_from, source_ip,
         coalesce(array_agg(DISTINCT org_name ORDER BY org_name) FILTER (WHERE pd = 'pass'), '{}'),
         coalesce(array_agg(DISTINCT org_name ORDER BY org_name) FILTER (WHERE pd = 'fail'), '{}'),
         coalesce(array_agg(DISTINCT org_name ORDER BY org_name) FILTER (WHERE ps = 'pass'), '{}'),
         coalesce(array_agg(DISTINCT org_name ORDER BY org_name) FILTER (WHERE ps = 'fail'), '{}'),
         bool_or(dk_re), bool_or(sp_re),
         array_agg(domain), array_agg(begin_ts), array_agg(end_ts), array_agg(org_name),
         array_agg(pd), array_agg(ps), array_agg(dk_re), array_agg(sp_re), array_agg(messages)
    FROM gd GROUP BY header_from, source_ip ORDER BY 1
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
         sp_re = a.sp_re OR EXCLUDED.sp_re,
         d_domain = a.d_domain || EXCLUDED.d_domain,
         d_begin = a.d_begin || EXCLUDED.d_begin,
         d_end = a.d_end || EXCLUDED.d_end,
         d_org = a.d_org || EXCLUDED.d_org,
         d_pd = a.d_pd || EXCLUDED.d_pd,
         d_ps = a.d_ps || EXCLUDED.d_ps,
         d_dk_re = a.d_dk_re || EXCLUDED.d_dk_re,
         d_sp_re = a.d_sp_re || EXCLUDED.d_sp_re,
         d_messages = a.d_messages || EXCLUDED.d_messages
  RETURNING 1
), rp AS (
  INSERT INTO agg_report
  SELECT rid, header_from, sum(count),
         coalesce(sum(count) FILTER (WHERE NOT failing), 0),
         coalesce(sum(count) FILTER (WHERE policy_pass), 0)
    FROM b GROUP BY rid, header_from
  RETURNING 1
)
SELECT 1
$q$, src) $f$;

-- Reports stored but not yet in the aggregates (begin_ts: the partition key
-- of their records).
CREATE TABLE agg_pending (
    report_key bigint PRIMARY KEY,
    begin_ts   timestamptz NOT NULL
);
-- The catch-up's order: a batch holds the reports of a few ranges, so the
-- rows keyed by range are mostly inserted once, complete, instead of being
-- updated by batch after batch (report keys are random in time).
CREATE INDEX agg_pending_order ON agg_pending (begin_ts, report_key);

-- One row per stored report: cheap, and in the inserting transaction.
CREATE FUNCTION dp_agg_report_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agg_pending VALUES (NEW.id, NEW.begin_ts);
    RETURN NULL;
END $$;

CREATE TRIGGER report_agg_pending AFTER INSERT ON report
    FOR EACH ROW EXECUTE FUNCTION dp_agg_report_insert();

-- Folds pending reports (the first in (begin_ts, report_key) order not
-- locked by another aggregator) into the aggregates and removes their marks:
-- reports are claimed in that order until their records reach n (at least
-- one report, however big), so a transaction folds about n records whatever the report sizes. Returns how
-- many reports, and sets records to how many records, it folded. The caller
-- commits. Big batches are what make the catch-up fast: each agg_* table is
-- upserted once per batch in key order, so a batch walks each index once
-- instead of hitting random pages per report, and rows seen in many reports
-- (a sender, agg_dis_pair's details) are rewritten once per batch.
CREATE FUNCTION dp_agg_catch_up_batch(n integer, OUT reports integer, OUT records bigint)
LANGUAGE plpgsql AS $$
DECLARE
    keys bigint[] := '{}';
    m record;
BEGIN
    records := 0;
    -- Rows are locked as the loop fetches them (a few ahead): those fetched
    -- but not taken stay locked, unfolded, until this transaction ends.
    FOR m IN SELECT p.report_key, coalesce(r.n_records, 0) AS nr
               FROM agg_pending p LEFT JOIN report r ON r.id = p.report_key
              ORDER BY p.begin_ts, p.report_key FOR UPDATE OF p SKIP LOCKED LOOP
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
    EXECUTE dp_agg_sql('(SELECT x.* FROM report rr JOIN record x ON x.report_key = rr.id'
                       ' AND x.begin_ts = rr.begin_ts WHERE rr.id = ANY ($1))') USING keys;
    DELETE FROM agg_pending WHERE report_key = ANY (keys);
END $$;

-- Empties every aggregate and marks every report pending: the next catch-up
-- recomputes everything from `record` (after records were deleted or changed
-- by hand: only inserts are followed).
CREATE FUNCTION dp_agg_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE agg_sender, agg_sender_all, agg_ip, agg_dkim, agg_spf, agg_class, agg_fail_ip, agg_fwd_ip,
             agg_good_sig, agg_dis_pair, agg_report, agg_pending;
    INSERT INTO agg_pending SELECT id, begin_ts FROM report ORDER BY id;
END $$;

-- Backfill: the reports stored before this migration are pending; the first
-- query, ingest or `dmarcpipe db aggregate` folds them.
INSERT INTO agg_pending SELECT id, begin_ts FROM report ORDER BY id;
