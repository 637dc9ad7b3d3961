/* SPDX-License-Identifier: MIT */
/* bench/bench_ceil.h - the bare ceilings `dmarcpipe bench` compares dmarcpipe
 * with: libxml2 SAX push parsing that only counts </record>, zlib inflate
 * into a discarded window, and COPY of pre-built record rows through libpq
 * into an unindexed temporary table. Internal to bench/ and its tests. */
#ifndef DP_BENCH_CEIL_H
#define DP_BENCH_CEIL_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "core/core.h"

/* ------------------------------------------------------------------------ */
/* Bare SAX: the cheapest libxml2 can parse a report. The handler has one
 * callback (endElementNs) and only compares the local name with "record";
 * no text is collected, so libxml2 skips building character data. The parser
 * options are the ones parse/ uses (NONET, no XInclude nodes). */

typedef struct dp_bench_sax dp_bench_sax_t;

/** Create a SAX counter for one document. Caller owns result; free with
 *  dp_bench_sax_destroy. NULL on out of memory. */
dp_bench_sax_t *dp_bench_sax_create(void);
/** Push n bytes of the document. 0 or DP_EXML. */
int dp_bench_sax_feed(dp_bench_sax_t *s, const char *buf, size_t n);
/** End the document; *records receives the number of </record> end tags.
 *  0 or DP_EXML (the document was not well-formed). */
int dp_bench_sax_finish(dp_bench_sax_t *s, uint64_t *records);
/** Free the counter. NULL is allowed. */
void dp_bench_sax_destroy(dp_bench_sax_t *s);
/** One-shot form: count the records of xml, pushed chunk bytes at a time
 *  (chunk 0 means 64 KiB, the pipeline's window). 0, DP_EXML or DP_ENOMEM. */
int dp_bench_sax_count(const char *xml, size_t len, size_t chunk, uint64_t *records);

/* ------------------------------------------------------------------------ */
/* Bare inflate: gzip (multi-member) or zlib data decompressed through one
 * 64 KiB window that is thrown away. */

/** Inflate data; *out_bytes receives the decompressed size. 0, DP_EGZIP or DP_ENOMEM. */
int dp_bench_inflate(const void *data, size_t len, uint64_t *out_bytes);

/* ------------------------------------------------------------------------ */
/* Bare COPY. The rows are the very rows dmarcpipe would COPY into table
 * record (parse/ + dp_store_encode_record, built before any timing), so the
 * ceiling loads the same bytes into the same column types, without the
 * primary key, foreign key, partitioning or WAL of the real table. */

/** Called with the next rows (whole rows only); non-zero stops the build. */
typedef int (*dp_bench_rows_fn)(void *ud, const char *buf, size_t n);

/** Parse the report in xml (needs dp_align_global_init) and encode each record
 *  as a COPY row for table record; rows go to emit in pieces of about 1 MiB.
 *  *rows receives the number of rows. 0, a parse/ error, DP_ENOMEM or emit's
 *  value. */
int dp_bench_copy_rows(const char *xml, size_t len, dp_bench_rows_fn emit, void *ud,
                       uint64_t *rows);
/** The number of columns of a row built by dp_bench_copy_rows. */
size_t dp_bench_copy_columns(void);
/** Create (or empty) the unindexed temporary table dp_bench_copy with the
 *  column types of table record, on connection c (blocking mode).
 *  0 or DP_EPG with a one-line reason in err. */
int dp_bench_copy_table(PGconn *c, char *err, size_t errlen);
/** Start COPY dp_bench_copy FROM STDIN on c. 0 or DP_EPG with reason in err. */
int dp_bench_copy_begin(PGconn *c, char *err, size_t errlen);
/** Send n bytes of rows (PQputCopyData). 0 or DP_EPG with reason in err. */
int dp_bench_copy_put(PGconn *c, const char *buf, size_t n, char *err, size_t errlen);
/** End the COPY; *rows receives the rows the server stored. 0 or DP_EPG. */
int dp_bench_copy_end(PGconn *c, uint64_t *rows, char *err, size_t errlen);

#endif
