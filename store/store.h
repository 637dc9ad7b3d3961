/* SPDX-License-Identifier: MIT */
/* store/store.h - everything dmarcpipe keeps in PostgreSQL: choosing the
 * database (--db, PG* environment, embedded cluster), the embedded cluster
 * itself, schema migrations, COPY text encoding of reports/records/errors, and
 * the non-blocking batch loader. Knows nothing of where reports came from. */
#ifndef DP_STORE_H
#define DP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "core/core.h"
#include "parse/parse.h"

/* ------------------------------------------------------------------------ */
/* Database selection and the embedded cluster (store/pg_embed.c,
 * store/db_select.c). */

/** Directory of the embedded cluster: $DMARCPIPE_HOME, else
 *  $XDG_DATA_HOME/dmarcpipe, else ~/.local/share/dmarcpipe; as root (where the
 *  cluster runs as the unprivileged 'postgres' user, who cannot enter /root)
 *  /var/lib/dmarcpipe unless DMARCPIPE_HOME is set. Caller owns result; free(). */
char *dp_embed_home(void);
/** Create (initdb, first time only) and start the embedded cluster under home
 *  (Unix socket in home/run, listen_addresses='', no TCP) and create the
 *  "dmarcpipe" database. Idempotent: an already running cluster is fine. As
 *  root the cluster's files belong to and the server runs as 'postgres'.
 *  On success *conninfo is a libpq string for it (caller owns; free()).
 *  DP_EEMBED with a one-line reason in err otherwise (e.g. no PostgreSQL server
 *  package installed). */
int dp_embed_start(const char *home, char **conninfo, char *err, size_t errlen);
/** Stop the embedded cluster (fast shutdown); 0 also when it was not running. */
int dp_embed_stop(const char *home, char *err, size_t errlen);
/** Write a one-line status ("running (pid 123), socket DIR" / "stopped" /
 *  "not initialised") into out; 0 = running, 1 = stopped/absent, <0 error. */
int dp_embed_status(const char *home, char *out, size_t outlen);
/** The libpq connection string for the embedded cluster in home (not started). Caller owns; free(). */
char *dp_embed_conninfo(const char *home);

/** Pick the database: db_opt (--db) when given; else the config file's "db";
 *  else "" when any libpq PG*
 *  variable (PGHOST, PGHOSTADDR, PGPORT, PGDATABASE, PGUSER, PGSERVICE) is set,
 *  so libpq uses the environment; else the embedded cluster, started if needed.
 *  *conninfo: caller owns; free(). DP_E* with a reason in err on failure. */
int dp_store_select(const char *db_opt, char **conninfo, char *err, size_t errlen);

/** Connect (blocking) and apply pending migrations. Caller owns the result;
 *  PQfinish() it. NULL with a one-line reason in err on failure. */
PGconn *dp_store_connect(const char *conninfo, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Schema (store/migrate.c). Migrations are the files store/migrations/NNNN_*.sql,
 * compiled into the binary, recorded in table schema_migrations, applied in
 * order, each in its own transaction, under an advisory lock so that
 * concurrent processes apply each exactly once. */

/** Apply every pending migration (blocking). 0 or DP_EPG with reason in err. */
int dp_store_migrate(PGconn *c, char *err, size_t errlen);
/** The number of the newest migration compiled in. */
int dp_store_schema_version(void);

/* ------------------------------------------------------------------------ */
/* COPY text encoding (store/copy_encode.c). Rows are in PostgreSQL COPY text
 * format: tab-separated, newline-terminated, \N for NULL; text escapes
 * backslash, tab, newline and carriage return; arrays are array literals
 * ({"a","b"}) with their own quoting, then COPY-escaped. Input is UTF-8 from
 * the parser; NUL bytes cannot occur (C strings). All functions return 0 or
 * DP_ELIMIT/DP_ENOMEM from the buffer. */

/** Append s as one COPY text field (no separator). */
int dp_copy_text(dp_buf_t *b, const char *s);
/** Append a text[] field built from n strings taken at stride bytes apart
 *  starting at first (a const char * member of an array of structs), e.g.
 *  dp_copy_array(b, &rec->dkim[0].domain, rec->n_dkim, sizeof rec->dkim[0]). */
int dp_copy_array(dp_buf_t *b, const char *const *first, size_t n, size_t stride);

/** The report's 64-bit key, a hash of its identity (org_name, report_id,
 *  domain, begin, end) as PostgreSQL bigint. */
int64_t dp_store_report_key(const dp_report_t *r);
/** Append the report's row for table report (columns as in
 *  dp_store_report_columns) with the given source and content hash. */
int dp_store_encode_report(dp_buf_t *b, const dp_report_t *r, int64_t key,
                           const char *source, uint64_t content_hash);
/** Append one record row for table record (columns as in dp_store_record_columns). */
int dp_store_encode_record(dp_buf_t *b, int64_t key, const dp_report_t *r, const dp_record_t *rec);
/** The exact number of bytes dp_store_encode_record would append for rec,
 *  computed without building the row (SIZE_MAX when out of memory). */
size_t dp_store_record_row_len(int64_t key, const dp_report_t *r, const dp_record_t *rec);
/** Append one ingest_error row (columns as in dp_store_error_columns); org_name
 *  and report_id may be "" when unknown; code is a DP_E* value. */
int dp_store_encode_error(dp_buf_t *b, const char *source, const char *part,
                          const char *org_name, const char *report_id, int code,
                          const char *reason);
/** Column lists, in encoding order, for the COPY statements. Static strings. */
extern const char dp_store_report_columns[];
extern const char dp_store_record_columns[];
extern const char dp_store_error_columns[];

/* ------------------------------------------------------------------------ */
/* The batch loader (store/loader.c): loads batches of parsed reports into
 * PostgreSQL over one non-blocking libpq connection driven by a libuv loop
 * (uv_poll on PQsocket; the loop thread never blocks). Per batch, one
 * transaction: claim the reports, COPY the records of the newly claimed
 * reports only, COPY the batch's ingest_error rows, COMMIT. The claim is
 * direct when it can be (COPY of the report rows into report in key order:
 * the batch is all new) and staged otherwise or when that COPY meets a stored
 * key (COPY into a temporary stage table, INSERT ... ON CONFLICT DO NOTHING
 * RETURNING id in key order, and a check for keys stored with another
 * identity); key order keeps concurrent loaders from deadlocking. A lost connection
 * or a transient error (deadlock, serialization failure) retries the whole
 * batch with backoff; any other error splits the batch so that one bad report
 * is recorded as refused and never takes the others down. */

/** Outcome of one staged report, set by the loader. */
enum { DP_STAGED_PENDING = 0, DP_STAGED_NEW = 1, DP_STAGED_DUPLICATE = 2, DP_STAGED_FAILED = 3 };

/** One parsed report waiting to be loaded. The pipeline fills it in a worker
 *  thread; the loader owns it between dp_loader_submit and the callback. */
typedef struct dp_staged {
  int64_t key;           /* dp_store_report_key() */
  int64_t begin;         /* report begin, for the record partition */
  dp_buf_t report_row;   /* one COPY row for table report */
  dp_buf_t record_rows;  /* COPY rows for table record (after the spooled ones) */
  int spool_fd;          /* -1, or an unlinked temp file holding the first rows */
  uint64_t spool_len;    /* bytes of rows in the spool file */
  struct dp_stream *stream; /* owned reference, or NULL: the report streams (see below) */
  char *source;          /* "file" or "file: part", owned */
  char *org_name;        /* owned, for messages */
  char *report_id;       /* owned, for messages */
  uint64_t n_records;
  uint64_t messages;
  int status;            /* DP_STAGED_* after the callback */
  char *error;           /* owned; reason when DP_STAGED_FAILED */
  struct dp_staged *next;
} dp_staged_t;

/** A batch: staged reports plus ingest_error rows, loaded in one transaction. */
typedef struct dp_batch {
  dp_staged_t *head, *tail;
  size_t n_reports;
  size_t bytes;          /* COPY bytes held, for backpressure */
  dp_buf_t error_rows;   /* COPY rows for table ingest_error */
  size_t n_errors;
  void *data;            /* for the submitter */
} dp_batch_t;

/** Initialise an empty batch. */
void dp_batch_init(dp_batch_t *b);
/** Append s to b (takes ownership of s). */
void dp_batch_add(dp_batch_t *b, dp_staged_t *s);
/** Free every staged report and error row of b; b is empty afterwards. */
void dp_batch_free(dp_batch_t *b);
/** Allocate an empty staged report (caller owns; free with dp_staged_free). NULL on OOM. */
dp_staged_t *dp_staged_create(void);
/** Free a staged report and everything it owns. NULL is allowed. A stream it
 *  still holds that was not completed is aborted (rolled back), then released. */
void dp_staged_free(dp_staged_t *s);
/** Move s's in-memory record rows to the end of its spool file (an unlinked
 *  file in $TMPDIR or /tmp, created on first use), so that a report of any
 *  size holds at most one chunk of rows in memory. DP_ELIMIT when the rows
 *  would pass cap bytes in all, DP_EIO when the file cannot be written; on
 *  failure the rows stay in memory. Thread-safe for distinct s. */
int dp_staged_spool(dp_staged_t *s, uint64_t cap);
/** Bytes of record rows s holds, spooled and in memory. */
uint64_t dp_staged_rows_len(const dp_staged_t *s);
/** Rows held in memory past which a worker spools them (bytes). */
#define DP_STAGED_SPOOL_CHUNK (1u << 20)

typedef struct dp_loader dp_loader_t;
/** Called on the loop thread when a batch is done: status 0 when it was
 *  committed (each staged report's status says new/duplicate/failed), or a
 *  fatal error (the database stayed unreachable past the retry budget). */
typedef void (*dp_loader_cb)(dp_loader_t *l, dp_batch_t *b, int status);

/** Create a loader on loop for conninfo; connects and migrates (blocking,
 *  once, before the pipeline starts). Caller owns result; free with
 *  dp_loader_destroy once the loop has no batch in flight. NULL with a reason
 *  in err on failure. */
dp_loader_t *dp_loader_create(uv_loop_t *loop, const char *conninfo, char *err, size_t errlen);
/** Called on the loop thread once the first connection of a loader made by
 *  dp_loader_create_async is there (status 0) or could not be made or
 *  migrated (DP_EPGCONN, the reason in err, a static buffer of the loader:
 *  the loader then loads nothing; destroy it). */
typedef void (*dp_loader_ready_cb)(dp_loader_t *l, int status, const char *err, void *data);
/** Like dp_loader_create, but returns at once: connecting, migrating and the
 *  current months' partitions run in the loop's thread pool while the caller
 *  goes on (parsing the first inputs meanwhile); dp_loader_busy is true and
 *  streams wait until ready has run. Caller owns result (NULL only when out
 *  of memory); dp_loader_destroy may come before ready: then ready never runs. */
dp_loader_t *dp_loader_create_async(uv_loop_t *loop, const char *conninfo, dp_loader_ready_cb ready,
                                    void *data);
/** true while a loader made by dp_loader_create_async waits for its first
 *  connection. */
bool dp_loader_connecting(const dp_loader_t *l);
/** Start loading b; cb runs on the loop thread when done (its l is the loader
 *  or, for a batch on the second connection, that connection's). One batch
 *  per batch connection at a time: UV_EBUSY while all are loading one (then
 *  cb never runs for b). */
int dp_loader_submit(dp_loader_t *l, dp_batch_t *b, dp_loader_cb cb);
/** Batch connections (1, the default, or 2): with 2 a second batch is loaded
 *  on a second connection, opened when first needed, while the first loads
 *  one: each batch is still one transaction, and the two may commit in either
 *  order. Set before the first submit. */
void dp_loader_set_batch_conns(dp_loader_t *l, unsigned n);
/** Most stream connections a loader can use. */
#define DP_LOADER_MAX_STREAM_CONNS 4
/** Stream connections (1, the default, up to DP_LOADER_MAX_STREAM_CONNS;
 *  outside that range it is clamped): streams are loaded in the order opened,
 *  each on the first connection not loading one, each opened when first
 *  needed; with more than one, several big reports go to the server at once.
 *  Set before the first stream opens. */
void dp_loader_set_stream_conns(dp_loader_t *l, unsigned n);
/** How long a batch waits for an unreachable database before its callback
 *  gets DP_EPGCONN (default two minutes; 0 waits forever, for `watch`). */
void dp_loader_set_outage_budget(dp_loader_t *l, uint64_t ms);
/** true while no batch connection is free (or none is made yet, or the
 *  first one failed). */
bool dp_loader_busy(const dp_loader_t *l);
/** How many committed transactions claimed their reports directly (COPY into
 *  report, the batch all new) and how many the staged way (stage table,
 *  INSERT ... ON CONFLICT DO NOTHING, collision check). */
void dp_loader_claim_counts(const dp_loader_t *l, uint64_t *direct, uint64_t *staged);
/** Close the connection and its poll handle; the loop must run once more to
 *  finish closing; then the memory is freed. */
void dp_loader_destroy(dp_loader_t *l);

/* ------------------------------------------------------------------------ */
/* Streaming reports (store/loader.c). A report whose rows pass the spool
 * chunk is loaded while it is still being parsed: on a second connection of
 * the loader (so small reports keep being batched on the first), one
 * transaction per report claims its identity (provisional counts), ensures the
 * partition, and COPYs the rows from the spool file as the worker publishes
 * them; when the worker completes the report the counts and content hash are
 * set and the transaction commits. The spool stays the retry source: a lost
 * connection or transient error replays it from the start after backoff. A
 * report refused by its worker (bad XML, a cap) is rolled back: nothing of it
 * is stored. Streams are loaded one at a time, in the order they were opened.
 * Threads: open/publish/complete/abort/cancelled/release may be called from
 * any thread; dp_stream_result and the callback are on the loop thread. The
 * loader must outlive every stream (destroy it after the last release). */

typedef struct dp_stream dp_stream_t;

/** Called on the loop thread whenever a stream settles (see dp_stream_result). */
typedef void (*dp_loader_stream_cb)(void *data);
/** Set the callback run when a stream settles (loop thread; before any stream opens). */
void dp_loader_set_stream_cb(dp_loader_t *l, dp_loader_stream_cb cb, void *data);
/** Open a stream for s (any thread): s's spool file already holds its first
 *  rows (s->spool_len bytes, whole rows), report_row is its report row with
 *  provisional counts (copied). The file descriptor is duplicated, so s may
 *  go on writing. Returns a stream holding a reference for the caller
 *  (release with dp_stream_release, normally through dp_staged_free), or
 *  NULL when it cannot (out of memory): then load s as a batch report. */
dp_stream_t *dp_loader_stream_open(dp_loader_t *l, const dp_staged_t *s, const dp_buf_t *report_row);
/** The spool file now holds len bytes of whole rows (any thread). */
void dp_stream_publish(dp_stream_t *st, uint64_t len);
/** The report is complete and good: the spool holds all its len bytes of
 *  rows; the stored report gets these counts and content hash. */
void dp_stream_complete(dp_stream_t *st, uint64_t len, uint64_t n_records, uint64_t messages,
                        uint64_t content_hash);
/** The report was refused by its worker: roll back whatever was sent. No-op
 *  once completed. */
void dp_stream_abort(dp_stream_t *st);
/** true once the loader found the report already stored (the worker may
 *  stop encoding rows: they would be dropped). Any thread. */
bool dp_stream_cancelled(dp_stream_t *st);
/** The outcome (loop thread): DP_STAGED_PENDING until settled, then
 *  DP_STAGED_NEW, DP_STAGED_DUPLICATE or DP_STAGED_FAILED, or a negative
 *  DP_E* when the database stayed unreachable past the outage budget. For
 *  FAILED, *error (borrowed, valid until release) is the reason, and
 *  *recorded says whether its ingest_error row was already stored; a stream
 *  aborted by its worker gives FAILED with *error NULL. */
int dp_stream_result(const dp_stream_t *st, const char **error, bool *recorded);
/** Drop the caller's reference (any thread). NULL is allowed. */
void dp_stream_release(dp_stream_t *st);

/* ------------------------------------------------------------------------ */
/* IMAP read position (store/imap_state.c, table imap_state). Blocking; for
 * the IMAP source's worker thread, on a connection of its own. */

/** Read mailbox's saved UIDVALIDITY and last committed UID; *found false (and
 *  both 0) when the mailbox was never read. 0 or DP_EPG with a reason in err. */
int dp_store_imap_state_get(PGconn *c, const char *mailbox, int64_t *uidvalidity,
                            int64_t *last_uid, bool *found, char *err, size_t errlen);
/** Save mailbox's position: last_uid never goes backwards for the same
 *  uidvalidity; a different uidvalidity replaces both. 0 or DP_EPG. */
int dp_store_imap_state_put(PGconn *c, const char *mailbox, int64_t uidvalidity, int64_t last_uid,
                            char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Aggregates (store/aggregate.c, migrations 0003, 0009 and 0010). Ingest only
 * marks new reports pending (a statement trigger on report: one mark per
 * storing statement in each half's table); the catch-up folds pending reports into the agg_* tables
 * in batches of one half (A or B: they share no table), each batch one transaction that also
 * removes the half's marks, so each report is aggregated exactly once even with several aggregators
 * at once. */

/** What a catch-up did. */
typedef struct dp_agg_stats {
  int64_t reports; /* reports whose half A this call folded (calls at once add up) */
  int64_t records; /* their records */
  int64_t batches; /* transactions committed */
  double seconds;  /* wall-clock time of the call */
  int aggregators; /* aggregators that ran (connections) */
  /* reports and records folded into each half (A, B) of the aggregates;
   * half B's count is larger when half A of some was folded before */
  int64_t half_reports[2], half_records[2];
} dp_agg_stats_t;

/** Records folded per transaction unless told otherwise (whole marks, each
 *  the reports one statement stored: a batch ends with the mark that
 *  reaches it). */
#define DP_AGG_BATCH 500000

/** Fold every pending report into the aggregates (blocking), about batch
 *  records per transaction (0: DP_AGG_BATCH); batches another process is
 *  folding are waited for, so on success nothing committed before the call is pending.
 *  c must be idle (no transaction open). Deadlocks and serialization failures
 *  are retried. st may be NULL. 0 or DP_EPG with reason in err. */
int dp_agg_catch_up(PGconn *c, int batch, dp_agg_stats_t *st, char *err, size_t errlen);
/** Pending records from which a second aggregator folds the other half of
 *  the aggregates at once: below, its connection costs more than it saves. */
#define DP_AGG_SPLIT_MIN 5000
/** Most aggregators dp_agg_catch_up_parallel runs at once. */
#define DP_AGG_MAX_AGGREGATORS 4
/** Aggregators worth running on this machine: its online CPUs, at most
 *  DP_AGG_MAX_AGGREGATORS. */
unsigned dp_agg_default_aggregators(void);
/** dp_agg_catch_up with up to n aggregators at once: c in the calling thread
 *  and up to n - 1 more, each on its own connection to conninfo in its own
 *  thread: one for the other half of the aggregates once DP_AGG_SPLIT_MIN
 *  records are pending (decision 53), one more per further batch's worth.
 *  The outcome is dp_agg_catch_up(c)'s (a helper that fails costs only
 *  speed, and is reported on stderr); st sums every aggregator's work. */
int dp_agg_catch_up_parallel(PGconn *c, const char *conninfo, unsigned n, int batch,
                             dp_agg_stats_t *st, char *err, size_t errlen);
/** dp_agg_catch_up_parallel with dp_agg_default_aggregators() on a
 *  connection of its own to conninfo, closed again; a connection refused is
 *  tried again until wait_ms have passed (0: once). 0, or DP_E* with the
 *  reason in err. What the commands run after storing. */
int dp_agg_catch_up_at(const char *conninfo, uint64_t wait_ms, dp_agg_stats_t *st, char *err,
                       size_t errlen);
/** The number of reports waiting to be aggregated, or -1 with reason in err. */
int64_t dp_agg_pending(PGconn *c, char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/** `dmarcpipe db init|migrate|status|start|stop [--db DSN]`; argv[0] is "db".
 *  Returns the process exit status (0 ok, 1 failed, 2 usage). */
int dp_db_cmd(int argc, char **argv);

#endif
