/* SPDX-License-Identifier: MIT */
/* ingest/input_job.c - the CPU work for one input, run in the libuv thread
 * pool: read (mmap) the file, unpack it, push each document through a report
 * parser and encode the reports as COPY rows ready for the loader. Refusals
 * become ingest_error rows and one stderr line each. */
#include "input_job_int.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "jsonl_int.h"
#include "parse/parse.h"
#include "unpack_int.h"

/* State of the document being parsed. */
struct doc {
  dp_job_t *job;
  dp_job_ctx_t *ctx;   /* owns the parser */
  char *part;          /* where in the input */
  dp_parser_t *parser; /* ctx->parser while a document is open */
  dp_unpack_stream_t *us; /* the unpacker feeding it */
  dp_staged_t *staged; /* the report being encoded, once its identity is known */
  unsigned long crc;    /* Adler-32 of the XML bytes fed so far */
  uint64_t fed;         /* how many */
  int status;          /* first failure of this document */
  char reason[1024];
  char org_name[256];
  char report_id[256];
  uint64_t records_seen;
  uint64_t fingerprint; /* content hash, at </feedback> */
  bool dropping;        /* the report's stream found it stored: encode no more rows */
  /* no_rows: the COPY row bytes a row-building sink would hold in memory and
   * in its spool file at this point, so that the size limit refuses exactly
   * where it refuses for those sinks */
  uint64_t rows_mem, rows_spooled;
};

/* "dmarcpipe: display[: part]: " into b. Names, like the reports' fields
 * and reasons after them, go in as dp_buf_put_term makes them: a file or
 * part name may hold line breaks or escape sequences, which must neither
 * forge a line nor drive the terminal. */
static void line_head(dp_job_t *j, dp_buf_t *b, const char *part) {
  dp_buf_puts(b, "dmarcpipe: ");
  dp_buf_put_term(b, j->display);
  if (part && *part) {
    dp_buf_puts(b, ": ");
    dp_buf_put_term(b, part);
  }
  dp_buf_puts(b, ": ");
}

static void job_line(dp_job_t *j, const char *kind, const char *part, const char *org,
                     const char *rid, const char *reason) {
  line_head(j, &j->lines, part);
  if (org && *org && rid && *rid) {
    dp_buf_puts(&j->lines, "report ");
    dp_buf_put_term(&j->lines, org);
    dp_buf_puts(&j->lines, "/");
    dp_buf_put_term(&j->lines, rid);
    dp_buf_puts(&j->lines, ": ");
  }
  dp_buf_puts(&j->lines, kind);
  dp_buf_put_term(&j->lines, reason);
  dp_buf_puts(&j->lines, "\n");
}

static void job_refuse(dp_job_t *j, const char *part, const char *org, const char *rid, int code,
                       const char *reason) {
  job_line(j, "", part, org, rid, reason);
  dp_store_encode_error(&j->error_rows, j->display, part ? part : "", org ? org : "",
                        rid ? rid : "", code, reason);
  j->n_errors++;
}

/* "display: part" (or display alone); caller owns result. No printf: this
 * runs once per report. */
static char *source_of(const dp_job_t *j, const char *part) {
  size_t nd = strlen(j->display), np = part && *part ? strlen(part) : 0;
  char *s = malloc(nd + np + 3);
  if (!s) return NULL;
  memcpy(s, j->display, nd);
  if (np) {
    memcpy(s + nd, ": ", 2);
    memcpy(s + nd + 2, part, np);
    nd += np + 2;
  }
  s[nd] = '\0';
  return s;
}

/* snprintf(dst, n, "%s", src) without printf, for per-report copies. */
static void copy_trunc(char *dst, size_t n, const char *src) {
  size_t l = strlen(src);
  if (l >= n) l = n - 1;
  memcpy(dst, src, l);
  dst[l] = '\0';
}

static void doc_fail(struct doc *d, int status, const char *reason) {
  if (d->status) return;
  d->status = status ? status : DP_EREPORT;
  snprintf(d->reason, sizeof d->reason, "%s", reason && *reason ? reason : dp_strerror(status));
}

/* ------------------------------------------------------------------------ */
/* Parser callbacks: encode as records arrive. */

static int on_report_begin(void *ud, const dp_report_t *r) {
  struct doc *d = ud;
  copy_trunc(d->org_name, sizeof d->org_name, r->org_name);
  copy_trunc(d->report_id, sizeof d->report_id, r->report_id);
  dp_staged_t *s = dp_staged_create();
  if (!s) return DP_ENOMEM;
  s->key = dp_store_report_key(r);
  s->begin = r->begin;
  s->source = source_of(d->job, d->part);
  s->org_name = strdup(r->org_name);
  s->report_id = strdup(r->report_id);
  if (!s->source || !s->org_name || !s->report_id) {
    dp_staged_free(s);
    return DP_ENOMEM;
  }
  /* The COPY rows of one report are bounded like its XML. */
  s->record_rows.cap = (size_t)d->job->lim->max_report_size;
  d->staged = s;
  return d->job->jsonl ? dp__jsonl_head(&d->ctx->jsonl_head, r, s->source) : 0;
}

/* Rows were just spooled: the first time, the report becomes a stream that
 * the loader COPYs while we go on parsing (its identity is known: metadata
 * and policy come before the records); later, how far the spool holds whole
 * rows is published. Without a loader (other sinks) nothing streams. */
static void stream_progress(struct doc *d, const dp_report_t *r) {
  dp_staged_t *s = d->staged;
  if (!d->job->loader || d->job->jsonl) return;
  if (!s->stream) {
    dp_buf_t row;
    dp_buf_init(&row, 0);
    /* counts and content hash are provisional; set when the report completes */
    if (!dp_store_encode_report(&row, r, s->key, s->source, 0))
      s->stream = dp_loader_stream_open(d->job->loader, s, &row);
    dp_buf_free(&row);
    return;
  }
  dp_stream_publish(s->stream, s->spool_len);
  if (dp_stream_cancelled(s->stream)) {
    d->dropping = true;
    dp_buf_reset(&s->record_rows);
  }
}

/* The null sink's stand-in for encoding and spooling: the same limit checks
 * on the same byte counts (the row's exact COPY length), nothing built. */
static int measure_row(struct doc *d, const dp_report_t *r, const dp_record_t *rec) {
  uint64_t cap = d->job->lim->max_report_size, row = dp_store_record_row_len(d->staged->key, r, rec);
  /* the in-memory rows' buffer is capped at the limit (dp_buf_reserve) */
  if (row > cap || d->rows_mem > cap - row) return DP_ELIMIT;
  d->rows_mem += row;
  if (d->rows_mem >= DP_STAGED_SPOOL_CHUNK) {
    /* dp_staged_spool's check */
    if (d->rows_spooled + d->rows_mem > cap) return DP_ELIMIT;
    d->rows_spooled += d->rows_mem;
    d->rows_mem = 0;
  }
  return 0;
}

static int on_record(void *ud, const dp_report_t *r, const dp_record_t *rec) {
  struct doc *d = ud;
  d->records_seen++;
  if (d->dropping) return 0;
  dp_staged_t *s = d->staged;
  int rc;
  if (d->job->no_rows)
    rc = measure_row(d, r, rec);
  else
    rc = d->job->jsonl ? dp__jsonl_record(&s->record_rows, &d->ctx->jsonl_head, rec)
                       : dp_store_encode_record(&s->record_rows, s->key, r, rec);
  /* Past a chunk, rows go to the report's spool file: memory stays flat
   * whatever the report's size. */
  if (!rc && s->record_rows.len >= DP_STAGED_SPOOL_CHUNK) {
    rc = dp_staged_spool(s, d->job->lim->max_report_size);
    if (!rc) stream_progress(d, r);
  }
  if (rc == DP_ELIMIT) {
    char msg[128];
    snprintf(msg, sizeof msg, "record %" PRIu64 ": report exceeds the size limit", rec->index);
    doc_fail(d, DP_ELIMIT, msg);
  } else if (rc == DP_EIO) {
    char msg[160];
    snprintf(msg, sizeof msg, "record %" PRIu64 ": cannot write the spool file: %s", rec->index,
             strerror(errno));
    doc_fail(d, DP_EIO, msg);
  }
  return rc;
}

static int on_report_end(void *ud, const dp_report_t *r) {
  struct doc *d = ud;
  d->staged->n_records = r->n_records;
  d->staged->messages = r->messages;
  /* content fingerprint: zlib's Adler-32 of the bytes fed up to </feedback>
   * and their length (dp__adler32, SSE2, is the same function at ~0.3
   * instructions a byte; a byte-wise hash cost more than parsing) */
  uint64_t fingerprint = ((d->fed & UINT64_C(0xffffffff)) << 32) | (uint64_t)(d->crc & 0xffffffffu);
  d->fingerprint = fingerprint;
  if (d->job->no_rows) return 0;
  return dp_store_encode_report(&d->staged->report_row, r, d->staged->key, d->staged->source,
                                fingerprint);
}

static const dp_parse_cb_t parse_cb = {on_report_begin, on_record, on_report_end};

/* ------------------------------------------------------------------------ */
/* Unpack callbacks: one parser per document. */

static void doc_reset(struct doc *d) {
  d->parser = NULL; /* stays in the context for the next document */
  dp_staged_free(d->staged);
  d->staged = NULL;
  free(d->part);
  d->part = NULL;
}

static int on_doc_begin(void *ud, const char *part) {
  struct doc *d = ud;
  doc_reset(d);
  d->status = 0;
  d->reason[0] = '\0';
  d->org_name[0] = '\0';
  d->report_id[0] = '\0';
  d->records_seen = 0;
  d->dropping = false;
  d->rows_mem = d->rows_spooled = 0;
  d->crc = adler32_z(0, NULL, 0);
  d->fed = 0;
  d->job->docs++;
  d->part = strdup(part ? part : "");
  if (!d->part) return DP_ENOMEM;
  dp_job_ctx_t *c = d->ctx;
  if (c->parser && dp_parser_reset(c->parser, &parse_cb, d)) {
    dp_parser_destroy(c->parser);
    c->parser = NULL;
    return DP_ENOMEM;
  }
  if (!c->parser && !(c->parser = dp_parser_create(d->job->lim, &parse_cb, d))) return DP_ENOMEM;
  d->parser = c->parser;
  return 0;
}

static int on_doc_data(void *ud, const char *buf, size_t n) {
  struct doc *d = ud;
  if (d->status) return 0; /* already refused: drain the rest of the stream */
  /* the content fingerprint; a big gzip's helper thread has summed its
   * windows already: then only the combination is done here */
  unsigned long sum;
  if (dp_unpack_stream_adler(d->us, buf, n, &sum))
    d->crc = adler32_combine(d->crc, sum, (z_off_t)n);
  else
    d->crc = dp__adler32(d->crc, (const unsigned char *)buf, n);
  d->fed += n;
  int rc = dp_parser_feed(d->parser, buf, n);
  if (rc == DP_ENOMEM) return rc;
  if (rc) doc_fail(d, rc, dp_parser_error(d->parser));
  return 0;
}

static int on_doc_end(void *ud, int status, const char *reason) {
  struct doc *d = ud;
  dp_job_t *j = d->job;
  if (status) doc_fail(d, status, reason);
  if (!d->status) {
    int rc = dp_parser_finish(d->parser);
    if (rc == DP_ENOMEM) return rc;
    if (rc) doc_fail(d, rc, dp_parser_error(d->parser));
  }
  if (!d->status && !d->staged) doc_fail(d, DP_EREPORT, "no report in document");
  if (!d->status && !d->staged->stream) {
    /* The last rows (less than a spool chunk) count against the limit as a
     * stream's last spool does below, whether they are built or measured. */
    uint64_t cap = j->lim->max_report_size;
    uint64_t held = j->no_rows ? d->rows_spooled + d->rows_mem : dp_staged_rows_len(d->staged);
    if (held > cap) doc_fail(d, DP_ELIMIT, "report exceeds the size limit");
  }
  if (!d->status && d->staged->stream) {
    /* the whole document is good: the stream may commit once the last rows
     * are in its spool (a refused document aborts it in doc_reset) */
    dp_staged_t *s = d->staged;
    int rc = d->dropping ? 0 : dp_staged_spool(s, j->lim->max_report_size);
    if (rc == DP_ELIMIT)
      doc_fail(d, rc, "report exceeds the size limit");
    else if (rc)
      doc_fail(d, rc, "cannot write the spool file");
    else
      dp_stream_complete(s->stream, s->spool_len, s->n_records, s->messages, d->fingerprint);
  }
  if (d->status) {
    j->docs_refused++;
    job_refuse(j, d->part, d->org_name, d->report_id, d->status, d->reason);
    doc_reset(d);
    return 0;
  }
  if (dp_parser_more_reports(d->parser)) {
    /* the first report is kept; the one after it was not read */
    j->docs_refused++;
    job_refuse(j, d->part, d->org_name, d->report_id, DP_EREPORT,
               "another <feedback> report follows this one in the same document and was not "
               "read (one report per document: split the file)");
  }
  dp_staged_t *s = d->staged;
  d->staged = NULL;
  s->next = NULL;
  if (j->tail)
    j->tail->next = s;
  else
    j->head = s;
  j->tail = s;
  j->n_staged++;
  if (!s->stream) j->bytes += s->report_row.len + dp_staged_rows_len(s);
  doc_reset(d);
  return 0;
}

static void on_part_error(void *ud, const char *part, int status, const char *reason) {
  struct doc *d = ud;
  d->job->docs_refused++;
  job_refuse(d->job, part, "", "", status, reason);
}

/* Notes (a MIME part that is not a report, ...) are kept aside and shown
 * only when the input gave no report at all: then they explain why; next to
 * a loaded report they are noise. */
static void job_note(dp_job_t *j, const char *part, const char *msg) {
  j->notes++;
  /* capped: a mailbox of 100k newsletters must not pile up notes in memory */
  line_head(j, &j->note_lines, part);
  dp_buf_puts(&j->note_lines, "note: ");
  dp_buf_put_term(&j->note_lines, msg);
  dp_buf_puts(&j->note_lines, "\n");
}

static void on_note(void *ud, const char *part, const char *msg) {
  struct doc *d = ud;
  job_note(d->job, part, msg);
}

static void on_no_report(void *ud, const char *part) {
  struct doc *d = ud;
  (void)part;
  d->job->skipped_messages++;
}

static const dp_unpack_cb_t unpack_cb = {on_doc_begin, on_doc_data, on_doc_end, on_part_error,
                                         on_note,      on_no_report};

/* ------------------------------------------------------------------------ */
/* Reading inputs */

#define DP_JOB_READ_CHUNK (256 * 1024)

void dp_job_init(dp_job_t *j, const char *path, const dp_limits_t *lim) {
  memset(j, 0, sizeof *j);
  j->path = path;
  j->display = strcmp(path, "-") ? path : "<stdin>";
  j->lim = lim;
  dp_buf_init(&j->error_rows, 0);
  dp_buf_init(&j->lines, 0);
  dp_buf_init(&j->note_lines, 64 * 1024);
}

void dp_job_ctx_init(dp_job_ctx_t *c) {
  memset(c, 0, sizeof *c);
  dp_buf_init(&c->jsonl_head, 0);
}

void dp_job_ctx_close(dp_job_ctx_t *c) {
  free(c->chunk);
  dp_parser_destroy(c->parser);
  dp_buf_free(&c->jsonl_head);
  dp_job_ctx_init(c);
}

void dp_job_run(dp_job_t *j) {
  dp_job_ctx_t c;
  dp_job_ctx_init(&c);
  dp_job_run_in(j, &c);
  dp_job_ctx_close(&c);
}

/* The input is read in chunks and streamed through the unpacker, so a plain
 * XML or gzip input of any size holds one chunk in memory (zip and mail are
 * held whole by the unpacker, capped by --max-input-size). */
void dp_job_run_in(dp_job_t *j, dp_job_ctx_t *ctx) {
  if (ctx->parser && memcmp(&ctx->lim, j->lim, sizeof ctx->lim)) {
    /* a parser made for other limits does not suit this job */
    dp_parser_destroy(ctx->parser);
    ctx->parser = NULL;
  }
  ctx->lim = *j->lim;
  char err[512] = "";
  int rc = 0;
  int fd = 0;
  /* bytes a regular file held when opened; -1 when not known */
  int64_t reg_size = -1;
  if (strcmp(j->path, "-")) {
    fd = open(j->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 && errno == ENOENT && j->listed) {
      job_note(j, "", "gone before it was read (moved or deleted meanwhile); not loaded");
      return;
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
      rc = DP_EIO;
      snprintf(err, sizeof err, "cannot open: %s", strerror(errno));
    } else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > j->lim->max_input_size) {
      rc = DP_ELIMIT;
      snprintf(err, sizeof err, "input of %lld bytes is larger than the limit of %" PRIu64 " bytes",
               (long long)st.st_size, j->lim->max_input_size);
    } else if (!S_ISREG(st.st_mode) || st.st_size > DP_JOB_READ_CHUNK) {
      /* read-ahead matters for inputs of more than one read only */
      posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    if (!rc && S_ISREG(st.st_mode)) reg_size = (int64_t)st.st_size;
  }
  struct doc d;
  memset(&d, 0, sizeof d);
  d.job = j;
  d.ctx = ctx;
  dp_unpack_stream_t *us = NULL;
  if (!rc) {
    us = dp_unpack_stream_create(j->lim, &unpack_cb, &d);
    d.us = us;
    if (us) dp_unpack_stream_want_adler(us);
    if (!ctx->chunk) ctx->chunk = malloc(DP_JOB_READ_CHUNK);
    if (!us || !ctx->chunk) {
      rc = DP_ENOMEM;
      snprintf(err, sizeof err, "out of memory");
    }
  }
  int cbrc = 0;
  while (!rc && !cbrc) {
    ssize_t n = read(fd, ctx->chunk, DP_JOB_READ_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = DP_EIO;
      snprintf(err, sizeof err, "cannot read: %s", strerror(errno));
      break;
    }
    if (n == 0) break;
    j->bytes_in += (uint64_t)n;
    cbrc = dp_unpack_stream_write(us, ctx->chunk, (size_t)n);
    /* A short read that ends exactly at the size the file had when opened is
     * its end: most inputs are one read, and this saves the read that would
     * return 0. A file that grew, or a filesystem that reads short before the
     * end, still reads on until 0. */
    if (n < DP_JOB_READ_CHUNK && (int64_t)j->bytes_in == reg_size) break;
  }
  if (us) {
    int frc = dp_unpack_stream_finish(us, rc ? NULL : err, sizeof err);
    if (!rc) rc = cbrc ? cbrc : frc;
    if (rc == DP_ENOMEM) snprintf(err, sizeof err, "out of memory");
  }
  dp_unpack_stream_destroy(us);
  doc_reset(&d);
  if (fd > 0) close(fd);
  if (rc) {
    j->input_refused = 1;
    job_refuse(j, "", "", "", rc, *err ? err : dp_strerror(rc));
  }
  if (j->docs) dp_buf_free(&j->note_lines); /* next to a report, notes are noise */
}

void dp_job_free(dp_job_t *j) {
  dp_staged_t *s = j->head;
  while (s) {
    dp_staged_t *n = s->next;
    dp_staged_free(s);
    s = n;
  }
  j->head = j->tail = NULL;
  dp_buf_free(&j->error_rows);
  dp_buf_free(&j->lines);
  dp_buf_free(&j->note_lines);
}
