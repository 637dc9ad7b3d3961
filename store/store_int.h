/* SPDX-License-Identifier: MIT */
/* store/store_int.h - helpers shared between the files of store/ only: the
 * migrations compiled in by CMake (generated/migrations_data.c) and small
 * error-message and environment helpers. Never included outside store/ and tests. */
#ifndef DP_STORE_INT_H
#define DP_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>

/* One entry per store/migrations/NNNN_name.sql, sorted by file name. */
extern const struct dp_migration {
  const char *name; /* file name, e.g. "0001_init.sql"; NNNN is the version */
  const char *sql;  /* the whole file */
} dp_migrations[];
extern const size_t dp_n_migrations;

/** The newest migration version recorded in the database behind c: 0 when
 *  schema_migrations does not exist yet, -1 with reason in err on error. */
int dp__store_db_version(PGconn *c, char *err, size_t errlen);
/** Write prefix followed by the first line of msg (trimmed) into err; NULL/"" msg gives prefix alone. */
void dp__store_errline(char *err, size_t errlen, const char *prefix, const char *msg);

/* Advisory lock key every migrator holds: "dmarcmig" as a big-endian int64.
 * Shared with nothing else, so no other application's lock can collide. */
#define DP_MIGRATE_LOCK "7236547320176535911"

/* Timeouts a DBA may set for interactive sessions (on the role, database or
 * server) that dmarcpipe's own work turns off (decision 38): a load lasts as
 * long as its report, a migration may index every record, and waiting for
 * another loader's, aggregator's or migrator's lock is the design. As SET
 * commands for a whole session (the loader's connections, once when they
 * connect), and as one statement for the current transaction only (the
 * catch-up, a migration: the caller's session keeps its settings). */
#define DP_STORE_UNTIMED_SESSION                                                                   \
  "SET statement_timeout = 0; SET lock_timeout = 0; "                                              \
  "SET idle_in_transaction_session_timeout = 0"
#define DP_STORE_UNTIMED_TRANSACTION                                                               \
  "SELECT set_config('statement_timeout', '0', true), "                                            \
  "set_config('lock_timeout', '0', true)"

/** true when any libpq variable that selects a server (PGHOST, PGHOSTADDR,
 *  PGPORT, PGDATABASE, PGUSER, PGSERVICE) is set and non-empty. */
bool dp__store_pg_env_set(void);
/** Append value to out as a libpq conninfo value: single-quoted, with \ and '
 *  backslash-escaped. Returns 0 or DP_ENOMEM/DP_ELIMIT. */
struct dp_buf;
int dp__store_conninfo_value(struct dp_buf *out, const char *value);

#endif
