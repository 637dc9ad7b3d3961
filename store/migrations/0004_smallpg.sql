-- dmarcpipe schema, version 4: the aggregates' pending marks are written once
-- per statement instead of once per report row.
--
-- Migration 0003's row trigger ran a plpgsql function, and with it an
-- INSERT through SPI, for every stored report: about a third of the
-- server's cost of claiming a small report. A statement trigger with a
-- transition table inserts the marks of all the rows the statement stored
-- in one INSERT ... SELECT. The contract is unchanged: one agg_pending row
-- (report_key, begin_ts) per newly stored report, in the storing
-- transaction. The transition table of INSERT ... ON CONFLICT DO NOTHING
-- holds only the rows actually inserted, and COPY FROM fills it too.
DROP TRIGGER report_agg_pending ON report;
DROP FUNCTION dp_agg_report_insert();

CREATE FUNCTION dp_agg_reports_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO agg_pending SELECT id, begin_ts FROM dp_new_reports;
    RETURN NULL;
END $$;

CREATE TRIGGER report_agg_pending AFTER INSERT ON report
    REFERENCING NEW TABLE AS dp_new_reports
    FOR EACH STATEMENT EXECUTE FUNCTION dp_agg_reports_inserted();

-- Record partitions are created by one session at a time. Two sessions
-- creating partitions at once (two ingesters, or one ingester's two batch
-- connections) took their locks on record, record_default and the new
-- table in different orders and deadlocked: the loser's batch was rolled
-- back and retried after a pause. A transaction-level advisory lock, taken
-- only when the month is missing, queues them instead; the check is
-- repeated under the lock, whose holder may have created it meanwhile.
CREATE OR REPLACE FUNCTION dp_ensure_record_partition(ts timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m    timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text := format('record_%s', to_char(m AT TIME ZONE 'UTC', 'YYYY_MM'));
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(7236547320176535912);
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    -- Rows of that month that went to the default partition must move first.
    IF EXISTS (SELECT 1 FROM record_default WHERE begin_ts >= m AND begin_ts < m + interval '1 month') THEN
        RETURN; -- keep them in the default partition; a later maintenance can split it
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF record FOR VALUES FROM (%L) TO (%L)',
                   name, m, m + interval '1 month');
EXCEPTION WHEN duplicate_table OR unique_violation THEN
    NULL; -- another ingester created it first
END $$;
