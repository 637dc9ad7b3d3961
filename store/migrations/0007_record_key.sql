-- dmarcpipe schema, version 7: record's primary key becomes a plain index on
-- report_key (docs/decisions.md, decision 36).
--
-- The primary key (report_key, seq, begin_ts) was a third of the server's
-- CPU per stored record row: a unique check and a 20-byte entry for every
-- row, written inside the one transaction that takes a big report. Nothing
-- needs that uniqueness from the database: the loader writes a report's
-- records only in the transaction that claimed the report (whose identity is
-- unique), numbering them 1..n itself. What readers need is the access path
-- by report: the catch-up joins its batch's reports to their records, and a
-- report's records are deleted by report_key. A non-unique btree on
-- report_key gives that path; all rows of a report share one key, which
-- btree deduplication stores once per leaf page, so the index is a fraction
-- of the primary key's size and costs no uniqueness check.
-- IF [NOT] EXISTS: a database whose migrations table was rolled back by hand
-- (as the backfill test does) can run this again.
ALTER TABLE record DROP CONSTRAINT IF EXISTS record_pkey;
CREATE INDEX IF NOT EXISTS record_report_key ON record (report_key);
