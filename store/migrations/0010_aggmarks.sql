-- SPDX-License-Identifier: MIT
-- 0010_aggmarks.sql - a storing statement marks its reports pending with one
-- row per half, not one row per report and half (docs/decisions.md,
-- decision 54).
--
-- The statement trigger wrote two index-bearing rows per report (migration
-- 0009: agg_pending and agg_pending_b, each with its primary key and its
-- (begin_ts, report_key) index): for 3,000 small reports loaded in one COPY
-- the server spent 53-63 ms in the report COPY against 30-38 ms with one
-- row per statement and half, the largest cost of a small report on the
-- server after its record rows. A mark is now the set of reports one
-- statement stored (a loader batch), as two arrays in one row of
-- agg_marks_a (half A) or agg_marks_b (half B); the catch-up claims,
-- folds and deletes whole marks as it did single reports, so each report is
-- still folded into each half exactly once, in the transaction that deletes
-- its mark. A batch is claimed mark by mark in the order they were written
-- until its records reach the budget. dp_agg_rebuild writes one mark per
-- report, oldest first, as the old queues were read, so a big backlog's
-- batches keep to few report periods.
--
-- agg_pending and agg_pending_b become views with their old columns, one
-- row per pending report: what "is anything pending", "how many reports
-- wait" and ad-hoc SQL read is unchanged.

-- A half's table of marks.
CREATE OR REPLACE FUNCTION dp_agg_queue(part text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF part = 'a' THEN
        RETURN 'agg_marks_a';
    ELSIF part = 'b' THEN
        RETURN 'agg_marks_b';
    END IF;
    RAISE EXCEPTION 'no half % of the aggregates', part;
END $$;

-- Marks the reports `filter` (a condition on report) selects pending for
-- half `part`, one mark per report, oldest first.
CREATE OR REPLACE FUNCTION dp_agg_mark_each(part text, filter text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I (report_keys, begin_tss)'
                   ' SELECT ARRAY[id], ARRAY[begin_ts] FROM report WHERE %s'
                   ' ORDER BY begin_ts, id', dp_agg_queue(part), filter);
END $$;

-- Made once: a database whose migrations table was rolled back by hand (as
-- a test does) runs this again, and its marks are already in agg_marks_*.
-- The views replace tables (and 0009's view) that a DBA may have granted to
-- a reporting role: the grants are carried over, SELECT to the views and
-- every privilege to the tables behind them, or that role's queries would
-- fail on a permission the DBA had given.
DO $$
DECLARE
    g record;
BEGIN
    IF to_regclass('agg_marks_a') IS NULL THEN
        CREATE TABLE agg_marks_a (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            report_keys bigint[] NOT NULL,
            begin_tss   timestamptz[] NOT NULL
        );
        CREATE TABLE agg_marks_b (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            report_keys bigint[] NOT NULL,
            begin_tss   timestamptz[] NOT NULL
        );
        CREATE TEMP TABLE dp_mig_grants ON COMMIT DROP AS
            SELECT DISTINCT a.privilege_type AS priv,
                   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS who
              FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
                   LEFT JOIN pg_roles r ON r.oid = a.grantee
             WHERE c.oid IN ('agg_pending'::regclass, 'agg_pending_b'::regclass,
                             'agg_pending_any'::regclass)
               AND a.grantee <> c.relowner;
        DROP VIEW agg_pending_any;
        ALTER TABLE agg_pending RENAME TO agg_pending_v9;
        ALTER TABLE agg_pending_b RENAME TO agg_pending_b_v9;
        -- one row per report pending in each half, as 0009's tables
        CREATE VIEW agg_pending AS
            SELECT u.report_key, u.begin_ts
              FROM agg_marks_a m, unnest(m.report_keys, m.begin_tss) AS u(report_key, begin_ts);
        CREATE VIEW agg_pending_b AS
            SELECT u.report_key, u.begin_ts
              FROM agg_marks_b m, unnest(m.report_keys, m.begin_tss) AS u(report_key, begin_ts);
        CREATE VIEW agg_pending_any AS
            SELECT 'a'::text AS half, report_key, begin_ts FROM agg_pending
            UNION ALL
            SELECT 'b'::text, report_key, begin_ts FROM agg_pending_b;
        FOR g IN SELECT * FROM dp_mig_grants LOOP
            EXECUTE format('GRANT %s ON agg_marks_a, agg_marks_b TO %s', g.priv, g.who);
            IF g.priv = 'SELECT' THEN
                EXECUTE format('GRANT SELECT ON agg_pending, agg_pending_b, agg_pending_any TO %s',
                               g.who);
            END IF;
        END LOOP;
        -- what was pending stays pending, in each half (a mark whose report
        -- was deleted by hand had nothing to fold)
        PERFORM dp_agg_mark_each('a', 'id IN (SELECT report_key FROM agg_pending_v9)');
        PERFORM dp_agg_mark_each('b', 'id IN (SELECT report_key FROM agg_pending_b_v9)');
        DROP TABLE agg_pending_v9, agg_pending_b_v9;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION dp_agg_reports_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH m AS (
        SELECT array_agg(id) AS k, array_agg(begin_ts) AS t FROM dp_new_reports HAVING count(*) > 0
    ), a AS (
        INSERT INTO agg_marks_a (report_keys, begin_tss) SELECT k, t FROM m
    )
    INSERT INTO agg_marks_b (report_keys, begin_tss) SELECT k, t FROM m;
    RETURN NULL;
END $$;

-- Waits, in the caller's transaction, until the half's first mark is free.
CREATE OR REPLACE FUNCTION dp_agg_wait_for(part text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT 1 FROM (SELECT id FROM %I ORDER BY id LIMIT 1 FOR UPDATE) w',
                   dp_agg_queue(part));
END $$;

-- One batch of one half: the half's marks in the order they were written,
-- claimed with SKIP LOCKED (so aggregators of the same half take different
-- marks) until their reports' records reach about n, folded and deleted in
-- the caller's transaction.
CREATE OR REPLACE FUNCTION dp_agg_catch_up_part(part text, n integer,
                                                OUT reports integer, OUT records bigint)
LANGUAGE plpgsql AS $$
DECLARE
    ids bigint[] := '{}';
    keys bigint[] := '{}';
    m record;
    queue text;
    src constant text := '(SELECT x.* FROM report rr JOIN record x ON x.report_key = rr.id'
                         ' AND x.begin_ts = rr.begin_ts WHERE rr.id = ANY ($1))';
BEGIN
    queue := dp_agg_queue(part);
    records := 0;
    -- Rows are locked as the loop fetches them (a few ahead): those fetched
    -- but not taken stay locked, unfolded, until this transaction ends. A
    -- report's n_records is read here, not kept in its mark: a streamed
    -- report's row is stored before its count is known.
    FOR m IN EXECUTE format('SELECT q.id, q.report_keys,'
                            ' (SELECT coalesce(sum(r.n_records), 0) FROM report r'
                            '   WHERE r.id = ANY (q.report_keys)) AS nr'
                            '  FROM %I q ORDER BY q.id FOR UPDATE OF q SKIP LOCKED',
                            queue) LOOP
        ids := ids || m.id;
        keys := keys || m.report_keys;
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
    EXECUTE format('DELETE FROM %I WHERE id = ANY ($1)', queue) USING ids;
END $$;

-- Empties every aggregate and marks every report pending in both halves:
-- the next catch-up recomputes everything from `record`.
CREATE OR REPLACE FUNCTION dp_agg_rebuild() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE agg_sender, agg_sender_all, agg_ip, agg_dkim, agg_spf, agg_class, agg_fail_ip, agg_fwd_ip,
             agg_good_sig, agg_dis_pair, agg_dis_detail, agg_report, agg_marks_a, agg_marks_b;
    PERFORM dp_agg_mark_each('a', 'true');
    PERFORM dp_agg_mark_each('b', 'true');
END $$;
