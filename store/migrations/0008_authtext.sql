-- SPDX-License-Identifier: MIT
-- 0008_authtext.sql - a record's auth results as three text columns instead
-- of ten text[] (docs/decisions.md, decision 45, branch authtext): parsing
-- the arrays was 44 % of the server's COPY cost per record row. `record` is
-- rebuilt with the new columns (its partitions, constraints, indexes and
-- grants carried over as they are), the catch-up is restated for them, and
-- the view record_arrays shows the old columns for ad-hoc SQL.
--
-- The encoding (written by store/copy_encode.c; decoded here):
--   reasons  entries "type US comment"
--   dkim     entries "domain US selector US result US human_result"
--   spf      entries "domain US scope US result US human_result"
-- entries joined by RS (U+001E), fields by US (U+001F), in document order;
-- no entry is '' (so a list of one entry of empty fields is not the empty
-- list). In a value, U+001C, U+001E and U+001F are escaped as U+001C followed
-- by U+0001, U+0003, U+0002: the parser never lets them through (XML 1.0
-- forbids them, as raw bytes and as character references, and the repair
-- pass turns raw ones into U+FFFD), but a value written by hand still
-- round-trips exactly.

-- A value as a list field: the three separator characters escaped.
CREATE OR REPLACE FUNCTION dp_auth_esc(s text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT replace(replace(replace(coalesce(s, ''), E'\x1C', E'\x1C\x01'), E'\x1F', E'\x1C\x02'),
                 E'\x1E', E'\x1C\x03')
$$;

-- A list field as the value: dp_auth_esc undone (a field without U+001C is
-- its value; the escapes are undone leader last, so an escaped leader
-- followed by 1-3 is not read as an escape).
CREATE OR REPLACE FUNCTION dp_auth_unesc(s text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN strpos(s, E'\x1C') = 0 THEN s
              ELSE replace(replace(replace(s, E'\x1C\x02', E'\x1F'), E'\x1C\x03', E'\x1E'),
                           E'\x1C\x01', E'\x1C') END
$$;

-- The entries of a reasons list, in order. Not STRICT, so that the planner
-- inlines these three into the queries that call them. unnest of an array
-- rather than string_to_table: the planner takes the former for 10 rows, the
-- latter for 1000, and at 1000 it sorted agg_dkim's and agg_spf's input
-- (estimated 1.5M rows for 1.5k) instead of hashing it.
CREATE OR REPLACE FUNCTION dp_auth_reasons(list text)
RETURNS TABLE (ord bigint, type text, comment text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT u.o, dp_auth_unesc(split_part(u.e, E'\x1F', 1)), dp_auth_unesc(split_part(u.e, E'\x1F', 2))
    FROM unnest(string_to_array(list, E'\x1E')) WITH ORDINALITY AS u(e, o)
$$;

-- The entries of a dkim list, in order.
CREATE OR REPLACE FUNCTION dp_auth_dkim(list text)
RETURNS TABLE (ord bigint, domain text, selector text, result text, human_result text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT u.o, dp_auth_unesc(split_part(u.e, E'\x1F', 1)), dp_auth_unesc(split_part(u.e, E'\x1F', 2)),
         dp_auth_unesc(split_part(u.e, E'\x1F', 3)), dp_auth_unesc(split_part(u.e, E'\x1F', 4))
    FROM unnest(string_to_array(list, E'\x1E')) WITH ORDINALITY AS u(e, o)
$$;

-- The entries of an spf list, in order.
CREATE OR REPLACE FUNCTION dp_auth_spf(list text)
RETURNS TABLE (ord bigint, domain text, scope text, result text, human_result text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT u.o, dp_auth_unesc(split_part(u.e, E'\x1F', 1)), dp_auth_unesc(split_part(u.e, E'\x1F', 2)),
         dp_auth_unesc(split_part(u.e, E'\x1F', 3)), dp_auth_unesc(split_part(u.e, E'\x1F', 4))
    FROM unnest(string_to_array(list, E'\x1E')) WITH ORDINALITY AS u(e, o)
$$;

-- A list from parallel arrays (as record's columns were): the i-th entry
-- holds the i-th element of each; a shorter array or a NULL element gives ''
-- (the loader always wrote arrays of one length without NULLs).
CREATE OR REPLACE FUNCTION dp_auth_list(a text[], b text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(string_agg(dp_auth_esc(x) || E'\x1F' || dp_auth_esc(y), E'\x1E' ORDER BY o), '')
    FROM unnest(a, b) WITH ORDINALITY AS u(x, y, o)
$$;

CREATE OR REPLACE FUNCTION dp_auth_list(a text[], b text[], c text[], d text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(string_agg(dp_auth_esc(x) || E'\x1F' || dp_auth_esc(y) || E'\x1F' || dp_auth_esc(z)
                             || E'\x1F' || dp_auth_esc(w), E'\x1E' ORDER BY o), '')
    FROM unnest(a, b, c, d) WITH ORDINALITY AS u(x, y, z, w, o)
$$;

-- record rebuilt: ADD/DROP COLUMN would leave ten dropped columns in every
-- row to come (a null bitmap per row) and an UPDATE would write every row
-- twice. The old table is renamed away with its partitions; the new one gets
-- the same partitions, then the rows, then the old table's constraints,
-- indexes and grants under their own names (whatever earlier or later
-- migrations made them). Like every statement here, it can run again on a
-- database whose migrations table was rolled back by hand: a record that
-- already has its lists is left as it is.
DO $m$
DECLARE
    p record;
    d record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'record'::regclass
                                            AND attname = 'dkim' AND NOT attisdropped) THEN
        RETURN;
    END IF;
    CREATE TEMP TABLE dp_mig_parts ON COMMIT DROP AS
        SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'record'::regclass;
    CREATE TEMP TABLE dp_mig_defs ON COMMIT DROP AS
        SELECT 1 AS step, format('ALTER TABLE record ADD CONSTRAINT %I %s', conname,
                                 pg_get_constraintdef(oid)) AS sql
          FROM pg_constraint
         WHERE conrelid = 'record'::regclass AND contype <> 'n'
        UNION ALL
        SELECT 2, replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')
          FROM pg_index i
         WHERE i.indrelid = 'record'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                                                           AND k.conrelid = 'record'::regclass)
        UNION ALL
        SELECT 3, format('GRANT %s ON %s TO %s', a.privilege_type,
                         CASE WHEN a.privilege_type = 'SELECT' THEN 'record, record_arrays'
                              ELSE 'record' END,
                         CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.rolname) END)
          FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
               LEFT JOIN pg_roles g ON g.oid = a.grantee
         WHERE c.oid = 'record'::regclass AND a.grantee <> c.relowner;
    FOR p IN SELECT * FROM dp_mig_parts LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', p.name, 'dp_arrays_' || p.name);
    END LOOP;
    ALTER TABLE record RENAME TO dp_arrays_record;

    CREATE TABLE record (
        report_key          bigint NOT NULL,       -- report.id; no FOREIGN KEY (0001_init.sql)
        begin_ts            timestamptz NOT NULL,  -- copy of report.begin_ts: partition key
        seq                 integer NOT NULL,      -- 1-based position in the report
        source_ip           inet NOT NULL,
        count               bigint NOT NULL,
        disposition         text NOT NULL DEFAULT '',
        pe_dkim             text NOT NULL DEFAULT '',
        pe_spf              text NOT NULL DEFAULT '',
        reasons             text NOT NULL DEFAULT '', -- type US comment, RS between
        header_from         text NOT NULL DEFAULT '',
        envelope_from       text NOT NULL DEFAULT '',
        envelope_to         text NOT NULL DEFAULT '',
        dkim                text NOT NULL DEFAULT '', -- domain US selector US result US human
        spf                 text NOT NULL DEFAULT '', -- domain US scope US result US human
        dkim_aligned        boolean NOT NULL,
        dkim_aligned_strict boolean NOT NULL,
        spf_aligned         boolean NOT NULL,
        spf_aligned_strict  boolean NOT NULL,
        sender              text NOT NULL,
        third_party         boolean NOT NULL
    ) PARTITION BY RANGE (begin_ts);
    FOR p IN SELECT * FROM dp_mig_parts LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF record %s', p.name, p.bound);
    END LOOP;

    -- Lists of none and of one entry (most) without the unnest and string_agg
    -- of dp_auth_list: 200k rows in 2 s instead of 8.
    INSERT INTO record
    SELECT report_key, begin_ts, seq, source_ip, count, disposition, pe_dkim, pe_spf,
           CASE WHEN reason_types = '{}' AND reason_comments = '{}' THEN ''
                ELSE dp_auth_list(reason_types, reason_comments) END,
           header_from, envelope_from, envelope_to,
           CASE WHEN dkim_domains = '{}' AND dkim_selectors = '{}' AND dkim_results = '{}'
                     AND dkim_human = '{}' THEN ''
                WHEN cardinality(dkim_domains) = 1 AND cardinality(dkim_selectors) = 1
                     AND cardinality(dkim_results) = 1 AND cardinality(dkim_human) = 1
                  THEN dp_auth_esc(dkim_domains[1]) || E'\x1F' || dp_auth_esc(dkim_selectors[1])
                       || E'\x1F' || dp_auth_esc(dkim_results[1]) || E'\x1F'
                       || dp_auth_esc(dkim_human[1])
                ELSE dp_auth_list(dkim_domains, dkim_selectors, dkim_results, dkim_human) END,
           CASE WHEN spf_domains = '{}' AND spf_scopes = '{}' AND spf_results = '{}'
                     AND spf_human = '{}' THEN ''
                WHEN cardinality(spf_domains) = 1 AND cardinality(spf_scopes) = 1
                     AND cardinality(spf_results) = 1 AND cardinality(spf_human) = 1
                  THEN dp_auth_esc(spf_domains[1]) || E'\x1F' || dp_auth_esc(spf_scopes[1])
                       || E'\x1F' || dp_auth_esc(spf_results[1]) || E'\x1F'
                       || dp_auth_esc(spf_human[1])
                ELSE dp_auth_list(spf_domains, spf_scopes, spf_results, spf_human) END,
           dkim_aligned, dkim_aligned_strict, spf_aligned, spf_aligned_strict, sender, third_party
      FROM dp_arrays_record;
    DROP TABLE dp_arrays_record;

    -- The view, for the grants (step 3) to find.
    CREATE VIEW record_arrays AS
    SELECT x.report_key, x.begin_ts, x.seq, x.source_ip, x.count, x.disposition, x.pe_dkim,
           x.pe_spf,
           ARRAY(SELECT t.type FROM dp_auth_reasons(x.reasons) t ORDER BY t.ord) AS reason_types,
           ARRAY(SELECT t.comment FROM dp_auth_reasons(x.reasons) t ORDER BY t.ord)
             AS reason_comments,
           x.header_from, x.envelope_from, x.envelope_to,
           ARRAY(SELECT d.domain FROM dp_auth_dkim(x.dkim) d ORDER BY d.ord) AS dkim_domains,
           ARRAY(SELECT d.selector FROM dp_auth_dkim(x.dkim) d ORDER BY d.ord) AS dkim_selectors,
           ARRAY(SELECT d.result FROM dp_auth_dkim(x.dkim) d ORDER BY d.ord) AS dkim_results,
           ARRAY(SELECT d.human_result FROM dp_auth_dkim(x.dkim) d ORDER BY d.ord) AS dkim_human,
           ARRAY(SELECT s.domain FROM dp_auth_spf(x.spf) s ORDER BY s.ord) AS spf_domains,
           ARRAY(SELECT s.scope FROM dp_auth_spf(x.spf) s ORDER BY s.ord) AS spf_scopes,
           ARRAY(SELECT s.result FROM dp_auth_spf(x.spf) s ORDER BY s.ord) AS spf_results,
           ARRAY(SELECT s.human_result FROM dp_auth_spf(x.spf) s ORDER BY s.ord) AS spf_human,
           x.dkim_aligned, x.dkim_aligned_strict, x.spf_aligned, x.spf_aligned_strict, x.sender,
           x.third_party
      FROM record x;

    FOR d IN SELECT * FROM dp_mig_defs ORDER BY step LOOP
        EXECUTE d.sql;
    END LOOP;
END $m$;
ANALYZE record;

COMMENT ON VIEW record_arrays IS
    'record with its auth results as the parallel text[] columns of schemas 1-7 (decoded '
    'from reasons, dkim and spf); inserting into it stores the arrays encoded';
COMMENT ON COLUMN record.reasons IS
    'policy_evaluated reasons: "type US comment" entries joined by RS (see record_arrays)';
COMMENT ON COLUMN record.dkim IS
    'DKIM results: "domain US selector US result US human_result" entries joined by RS';
COMMENT ON COLUMN record.spf IS
    'SPF results: "domain US scope US result US human_result" entries joined by RS';

-- Rows in the old form (hand-written SQL, the tests' fixtures) go in through
-- the view: omitted arrays are '{}', as the old columns' defaults were.
CREATE OR REPLACE FUNCTION dp_record_arrays_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record VALUES (
        NEW.report_key, NEW.begin_ts, NEW.seq, NEW.source_ip, NEW.count,
        coalesce(NEW.disposition, ''), coalesce(NEW.pe_dkim, ''), coalesce(NEW.pe_spf, ''),
        dp_auth_list(coalesce(NEW.reason_types, '{}'), coalesce(NEW.reason_comments, '{}')),
        coalesce(NEW.header_from, ''), coalesce(NEW.envelope_from, ''),
        coalesce(NEW.envelope_to, ''),
        dp_auth_list(coalesce(NEW.dkim_domains, '{}'), coalesce(NEW.dkim_selectors, '{}'),
                     coalesce(NEW.dkim_results, '{}'), coalesce(NEW.dkim_human, '{}')),
        dp_auth_list(coalesce(NEW.spf_domains, '{}'), coalesce(NEW.spf_scopes, '{}'),
                     coalesce(NEW.spf_results, '{}'), coalesce(NEW.spf_human, '{}')),
        NEW.dkim_aligned, NEW.dkim_aligned_strict, NEW.spf_aligned, NEW.spf_aligned_strict,
        NEW.sender, NEW.third_party);
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS record_arrays_insert ON record_arrays;
CREATE TRIGGER record_arrays_insert INSTEAD OF INSERT ON record_arrays
    FOR EACH ROW EXECUTE FUNCTION dp_record_arrays_insert();

-- The catch-up's statement (migration 0006's, same aggregates, keys and
-- values) on the lists: `la` groups by the two list texts instead of five
-- arrays, fsm's distinct DKIM lists are texts, and agg_dkim, agg_spf,
-- agg_good_sig and fsm split only la's (or fsm's) rows; the reasons are
-- split only for the records that have one.
CREATE OR REPLACE FUNCTION dp_agg_sql(src text) RETURNS text
LANGUAGE sql IMMUTABLE AS $f$ SELECT format($q$
WITH b AS MATERIALIZED (
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
), fsm AS MATERIALIZED (
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
