-- dmarcpipe schema, version 1. Applied by `dmarcpipe db migrate` (and on first use).
-- One row per stored aggregate report. id is a 64-bit hash of the identity so
-- that workers can encode record rows before the claim comes back; the unique
-- identity constraint is what makes ingestion idempotent.
CREATE TABLE report (
    id               bigint PRIMARY KEY,
    org_name         text NOT NULL,
    email            text NOT NULL DEFAULT '',
    extra_contact    text NOT NULL DEFAULT '',
    report_id        text NOT NULL,
    domain           text NOT NULL,            -- policy_published/domain
    begin_ts         timestamptz NOT NULL,
    end_ts           timestamptz NOT NULL,
    errors           text[] NOT NULL DEFAULT '{}',
    adkim            text NOT NULL DEFAULT '',
    aspf             text NOT NULL DEFAULT '',
    p                text NOT NULL DEFAULT '',
    sp               text NOT NULL DEFAULT '',
    np               text NOT NULL DEFAULT '',
    pct              smallint,                 -- NULL when not published
    fo               text NOT NULL DEFAULT '',
    testing          text NOT NULL DEFAULT '',
    discovery_method text NOT NULL DEFAULT '',
    schema_version   smallint NOT NULL,        -- 1 = RFC 7489, 2 = RFC 9990
    version          text NOT NULL DEFAULT '',
    generator        text NOT NULL DEFAULT '',
    source           text NOT NULL,            -- file (and part inside it) it came from
    content_hash     bigint NOT NULL,          -- XML length << 32 | Adler-32 of the XML bytes
    n_records        integer NOT NULL,
    messages         bigint NOT NULL,
    ingested_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT report_identity UNIQUE (org_name, report_id, domain, begin_ts, end_ts)
);
CREATE INDEX report_domain_begin ON report (domain, begin_ts);

-- One row per <record>. record.report_key has no FOREIGN KEY constraint on
-- purpose: the loader writes records only for reports it claimed in the same
-- transaction, and a per-row RI check would cost a third of COPY throughput.
-- Delete a report's records explicitly (DELETE FROM record WHERE report_key = ...).
-- Auth results are kept as parallel arrays in document
-- order (dkim_* share an index, spf_* share an index) so that a report's rows go
-- to the database in one COPY stream. Partitioned by the report's begin time so
-- old months can be detached; partitions are created on demand by
-- dp_ensure_record_partition().
CREATE TABLE record (
    report_key          bigint NOT NULL,       -- report.id; no FOREIGN KEY: see below
    begin_ts            timestamptz NOT NULL,  -- copy of report.begin_ts: partition key
    seq                 integer NOT NULL,      -- 1-based position in the report
    source_ip           inet NOT NULL,
    count               bigint NOT NULL CHECK (count >= 0),
    disposition         text NOT NULL DEFAULT '',
    pe_dkim             text NOT NULL DEFAULT '',
    pe_spf              text NOT NULL DEFAULT '',
    reason_types        text[] NOT NULL DEFAULT '{}',
    reason_comments     text[] NOT NULL DEFAULT '{}',
    header_from         text NOT NULL DEFAULT '',
    envelope_from       text NOT NULL DEFAULT '',
    envelope_to         text NOT NULL DEFAULT '',
    dkim_domains        text[] NOT NULL DEFAULT '{}',
    dkim_selectors      text[] NOT NULL DEFAULT '{}',
    dkim_results        text[] NOT NULL DEFAULT '{}',
    dkim_human          text[] NOT NULL DEFAULT '{}',
    spf_domains         text[] NOT NULL DEFAULT '{}',
    spf_scopes          text[] NOT NULL DEFAULT '{}',
    spf_results         text[] NOT NULL DEFAULT '{}',
    spf_human           text[] NOT NULL DEFAULT '{}',
    dkim_aligned        boolean NOT NULL,      -- relaxed, recomputed from auth_results
    dkim_aligned_strict boolean NOT NULL,
    spf_aligned         boolean NOT NULL,
    spf_aligned_strict  boolean NOT NULL,
    sender              text NOT NULL,         -- grouping key (see parse.h dp_align_record)
    third_party         boolean NOT NULL,
    PRIMARY KEY (report_key, seq, begin_ts)
) PARTITION BY RANGE (begin_ts);
CREATE TABLE record_default PARTITION OF record DEFAULT;

-- Creates the monthly partition of record holding ts, if missing. Safe to run
-- concurrently from several ingesters (a lost race is not an error).
CREATE FUNCTION dp_ensure_record_partition(ts timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m    timestamptz := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    name text := format('record_%s', to_char(m AT TIME ZONE 'UTC', 'YYYY_MM'));
BEGIN
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

-- Every refused input, part or report, with why.
CREATE TABLE ingest_error (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    source     text NOT NULL,      -- file, message or mailbox it came from
    part       text NOT NULL DEFAULT '', -- where inside the source ("entry a.xml")
    org_name   text NOT NULL DEFAULT '', -- when known
    report_id  text NOT NULL DEFAULT '',
    code       text NOT NULL,      -- DP_E* name
    reason     text NOT NULL
);
CREATE INDEX ingest_error_at ON ingest_error (at);
