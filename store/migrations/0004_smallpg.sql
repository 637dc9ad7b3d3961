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
