/* SPDX-License-Identifier: MIT */
/* bench/bench_ceil.c - the bare ceilings of `dmarcpipe bench`: a libxml2 SAX
 * handler that only counts </record>, zlib inflate into a discarded window,
 * and COPY of pre-built record rows into an unindexed temporary table. They
 * use the libraries directly so that they measure the libraries, not us. */
#include "bench/bench_ceil.h"

#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "parse/parse.h"
#include "store/store.h"

#define CEIL_WINDOW (64 * 1024)

/* ======================================================================== */
/* Bare SAX                                                                 */

struct dp_bench_sax {
  xmlParserCtxtPtr ctxt;
  uint64_t records;
  int rc;
};

static void sax_end(void *ud, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri) {
  (void)prefix;
  (void)uri;
  dp_bench_sax_t *s = ud;
  if (!strcmp((const char *)localname, "record")) s->records++;
}

/* libxml2 prints errors to stderr without a structured handler; as in
 * parse/, only well-formedness (fatal) errors fail the document. */
#if LIBXML_VERSION >= 21200
static void sax_error(void *ud, const xmlError *e) {
#else
static void sax_error(void *ud, xmlErrorPtr e) {
#endif
  dp_bench_sax_t *s = ud;
  if (e && e->level == XML_ERR_FATAL) s->rc = DP_EXML;
}

dp_bench_sax_t *dp_bench_sax_create(void) {
  dp_bench_sax_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  xmlSAXHandler sax;
  memset(&sax, 0, sizeof sax);
  sax.initialized = XML_SAX2_MAGIC;
  sax.endElementNs = sax_end;
  sax.serror = sax_error;
  s->ctxt = xmlCreatePushParserCtxt(&sax, s, NULL, 0, NULL);
  if (!s->ctxt) {
    free(s);
    return NULL;
  }
  xmlCtxtUseOptions(s->ctxt, XML_PARSE_NONET | XML_PARSE_NOXINCNODE);
  return s;
}

int dp_bench_sax_feed(dp_bench_sax_t *s, const char *buf, size_t n) {
  while (!s->rc && n) {
    int k = n > (1u << 30) ? 1 << 30 : (int)n;
    if (xmlParseChunk(s->ctxt, buf, k, 0)) s->rc = DP_EXML;
    buf += k;
    n -= (size_t)k;
  }
  return s->rc;
}

int dp_bench_sax_finish(dp_bench_sax_t *s, uint64_t *records) {
  if (!s->rc && (xmlParseChunk(s->ctxt, NULL, 0, 1) || !s->ctxt->wellFormed)) s->rc = DP_EXML;
  *records = s->records;
  return s->rc;
}

void dp_bench_sax_destroy(dp_bench_sax_t *s) {
  if (!s) return;
  xmlFreeParserCtxt(s->ctxt);
  free(s);
}

int dp_bench_sax_count(const char *xml, size_t len, size_t chunk, uint64_t *records) {
  if (!chunk) chunk = CEIL_WINDOW;
  *records = 0;
  dp_bench_sax_t *s = dp_bench_sax_create();
  if (!s) return DP_ENOMEM;
  int rc = 0;
  for (size_t off = 0; off < len && !rc; off += chunk)
    rc = dp_bench_sax_feed(s, xml + off, len - off < chunk ? len - off : chunk);
  if (!rc) rc = dp_bench_sax_finish(s, records);
  dp_bench_sax_destroy(s);
  return rc;
}

/* ======================================================================== */
/* Bare inflate                                                             */

int dp_bench_inflate(const void *data, size_t len, uint64_t *out_bytes) {
  unsigned char *win = malloc(CEIL_WINDOW);
  if (!win) return DP_ENOMEM;
  z_stream z;
  memset(&z, 0, sizeof z);
  *out_bytes = 0;
  if (inflateInit2(&z, 15 + 32) != Z_OK) { /* gzip or zlib header */
    free(win);
    return DP_EGZIP;
  }
  const unsigned char *in = data;
  size_t left = len;
  int rc = 0;
  for (;;) {
    if (!z.avail_in && left) {
      z.next_in = (unsigned char *)(uintptr_t)in;
      z.avail_in = left > UINT32_MAX ? UINT32_MAX : (unsigned)left;
      in += z.avail_in;
      left -= z.avail_in;
    }
    z.next_out = win;
    z.avail_out = CEIL_WINDOW;
    int zr = inflate(&z, Z_NO_FLUSH);
    *out_bytes += CEIL_WINDOW - z.avail_out;
    if (zr == Z_STREAM_END) {
      if (!z.avail_in && !left) break;
      if (inflateReset(&z) != Z_OK) { /* the next gzip member */
        rc = DP_EGZIP;
        break;
      }
    } else if (zr != Z_OK || (!z.avail_in && !left && z.avail_out)) {
      rc = DP_EGZIP; /* corrupt, or truncated: no input left and no end */
      break;
    }
  }
  inflateEnd(&z);
  free(win);
  return rc;
}

/* ======================================================================== */
/* Bare COPY: the row builder                                               */

struct rows {
  dp_buf_t buf;
  int64_t key;
  uint64_t n;
  dp_bench_rows_fn emit;
  void *ud;
};

static int rows_begin(void *ud, const dp_report_t *r) {
  struct rows *w = ud;
  w->key = dp_store_report_key(r);
  return 0;
}

static int rows_record(void *ud, const dp_report_t *r, const dp_record_t *rec) {
  struct rows *w = ud;
  int rc = dp_store_encode_record(&w->buf, w->key, r, rec);
  if (rc) return rc;
  w->n++;
  if (w->buf.len >= (1u << 20)) {
    rc = w->emit(w->ud, w->buf.data, w->buf.len);
    dp_buf_reset(&w->buf);
  }
  return rc;
}

static int rows_end(void *ud, const dp_report_t *r) {
  (void)ud;
  (void)r;
  return 0;
}

int dp_bench_copy_rows(const char *xml, size_t len, dp_bench_rows_fn emit, void *ud,
                       uint64_t *rows) {
  static const dp_parse_cb_t cb = {rows_begin, rows_record, rows_end};
  struct rows w = {.emit = emit, .ud = ud};
  dp_buf_init(&w.buf, 0);
  *rows = 0;
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_report_size = UINT64_MAX;
  dp_parser_t *p = dp_parser_create(&lim, &cb, &w);
  if (!p) return DP_ENOMEM;
  int rc = 0;
  for (size_t off = 0; off < len && !rc; off += CEIL_WINDOW)
    rc = dp_parser_feed(p, xml + off, len - off < CEIL_WINDOW ? len - off : CEIL_WINDOW);
  if (!rc) rc = dp_parser_finish(p);
  if (!rc && w.buf.len) rc = emit(ud, w.buf.data, w.buf.len);
  dp_parser_destroy(p);
  dp_buf_free(&w.buf);
  *rows = w.n;
  return rc;
}

size_t dp_bench_copy_columns(void) {
  size_t n = 1;
  for (const char *c = dp_store_record_columns; *c; c++) n += *c == ',';
  return n;
}

/* ======================================================================== */
/* Bare COPY: the load                                                      */

static int pg_fail(PGconn *c, PGresult *res, const char *what, char *err, size_t errlen) {
  const char *m = res ? PQresultErrorMessage(res) : "";
  if (!m || !*m) m = PQerrorMessage(c);
  snprintf(err, errlen, "%s: %.*s", what, (int)strcspn(m, "\n"), m);
  PQclear(res);
  return DP_EPG;
}

int dp_bench_copy_table(PGconn *c, char *err, size_t errlen) {
  /* The column types of table record (store/migrations/0008_authtext.sql:
   * the auth results as three text lists), in dp_store_record_columns order;
   * no key, no constraint, no partitions. */
  static const char sql[] =
      "SET client_min_messages = warning;"
      "DROP TABLE IF EXISTS pg_temp.dp_bench_copy;"
      "CREATE TEMP TABLE dp_bench_copy ("
      " report_key bigint, begin_ts timestamptz, seq integer, source_ip inet, count bigint,"
      " disposition text, pe_dkim text, pe_spf text, reasons text,"
      " header_from text, envelope_from text, envelope_to text, dkim text, spf text,"
      " dkim_aligned boolean, dkim_aligned_strict boolean, spf_aligned boolean,"
      " spf_aligned_strict boolean, sender text, third_party boolean)";
  PGresult *res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_COMMAND_OK) return pg_fail(c, res, "create table", err, errlen);
  PQclear(res);
  return 0;
}

int dp_bench_copy_begin(PGconn *c, char *err, size_t errlen) {
  char sql[1024];
  snprintf(sql, sizeof sql, "COPY pg_temp.dp_bench_copy (%s) FROM STDIN", dp_store_record_columns);
  PGresult *res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_COPY_IN) return pg_fail(c, res, "COPY", err, errlen);
  PQclear(res);
  return 0;
}

int dp_bench_copy_put(PGconn *c, const char *buf, size_t n, char *err, size_t errlen) {
  while (n) {
    int k = n > (1u << 30) ? 1 << 30 : (int)n;
    if (PQputCopyData(c, buf, k) != 1) return pg_fail(c, NULL, "COPY data", err, errlen);
    buf += k;
    n -= (size_t)k;
  }
  return 0;
}

int dp_bench_copy_end(PGconn *c, uint64_t *rows, char *err, size_t errlen) {
  *rows = 0;
  if (PQputCopyEnd(c, NULL) != 1) return pg_fail(c, NULL, "COPY end", err, errlen);
  PGresult *res = PQgetResult(c);
  int rc = 0;
  if (PQresultStatus(res) != PGRES_COMMAND_OK) {
    rc = pg_fail(c, res, "COPY", err, errlen);
    res = NULL;
  } else {
    *rows = strtoull(PQcmdTuples(res), NULL, 10);
  }
  PQclear(res);
  while ((res = PQgetResult(c))) PQclear(res);
  return rc;
}
