/* SPDX-License-Identifier: MIT */
/* tests/ingest/unpack_test_util.h - helpers for the unpack/MIME tests: a
 * consumer that records every callback as text, builders for gzip, zlib and
 * zip inputs (made with zlib/libzip at test time) and a file reader. */
#ifndef DP_UNPACK_TEST_UTIL_H
#define DP_UNPACK_TEST_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>
#include <zlib.h>

#include "core/core.h"
#include "ingest/unpack_int.h"

/* What a consumer saw. log holds one line per callback:
 *   "begin PART" / "end STATUS REASON" / "error PART|STATUS|REASON" / "note PART|MSG" */
struct rec {
  int docs, docs_ok, docs_failed, errors, notes;
  dp_buf_t log;
  dp_buf_t data;       /* bytes of the last document */
  size_t max_chunk;    /* largest doc_data call */
  int open;            /* inside doc_begin..doc_end */
  int bad_order;       /* a callback came out of order */
  int ret_begin, ret_data, ret_end; /* values the doc callbacks return */
  int end_ret_only_ok; /* doc_end returns ret_end only for a clean document */
};

static inline void rec_init(struct rec *r) {
  memset(r, 0, sizeof *r);
  dp_buf_init(&r->log, 0);
  dp_buf_init(&r->data, 0);
}

static inline void rec_free(struct rec *r) {
  dp_buf_free(&r->log);
  dp_buf_free(&r->data);
}

static inline int rec_begin(void *ud, const char *part) {
  struct rec *r = ud;
  if (r->open) r->bad_order = 1;
  r->open = 1;
  r->docs++;
  dp_buf_reset(&r->data);
  dp_buf_printf(&r->log, "begin %s\n", part);
  return r->ret_begin;
}

static inline int rec_data(void *ud, const char *buf, size_t n) {
  struct rec *r = ud;
  if (!r->open) r->bad_order = 1;
  if (n > r->max_chunk) r->max_chunk = n;
  dp_buf_append(&r->data, buf, n);
  return r->ret_data;
}

static inline int rec_end(void *ud, int status, const char *reason) {
  struct rec *r = ud;
  if (!r->open) r->bad_order = 1;
  r->open = 0;
  if (status) r->docs_failed++;
  else r->docs_ok++;
  dp_buf_printf(&r->log, "end %d %s\n", status, reason ? reason : "(null)");
  if (r->end_ret_only_ok && status) return 0;
  return r->ret_end;
}

static inline void rec_error(void *ud, const char *part, int status, const char *reason) {
  struct rec *r = ud;
  r->errors++;
  dp_buf_printf(&r->log, "error %s|%d|%s\n", part, status, reason);
}

static inline void rec_note(void *ud, const char *part, const char *msg) {
  struct rec *r = ud;
  r->notes++;
  dp_buf_printf(&r->log, "note %s|%s\n", part, msg);
}

static const dp_unpack_cb_t rec_cb = {rec_begin, rec_data, rec_end, rec_error, rec_note, NULL};

/* dp_unpack with the recorder and default limits unless lim is given. */
static inline int rec_run(struct rec *r, const dp_limits_t *lim, const void *p, size_t n, char *err,
                          size_t errlen) {
  dp_limits_t d;
  dp_limits_default(&d);
  return dp_unpack(lim ? lim : &d, p, n, &rec_cb, r, err, errlen);
}

static inline const char *rec_log(struct rec *r) { return r->log.data ? r->log.data : ""; }

/* gzip (one member) of p; caller owns result; free with free(). */
static inline unsigned char *make_gzip(const void *p, size_t n, size_t *outn) {
  z_stream z;
  memset(&z, 0, sizeof z);
  *outn = 0;
  if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
  size_t cap = deflateBound(&z, (uLong)n) + 64;
  unsigned char *out = malloc(cap);
  z.next_in = (unsigned char *)p;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  deflate(&z, Z_FINISH);
  *outn = cap - z.avail_out;
  deflateEnd(&z);
  return out;
}

/* zlib (RFC 1950) of p; caller owns result; free with free(). */
static inline unsigned char *make_zlib(const void *p, size_t n, size_t *outn) {
  *outn = 0;
  uLongf cap = compressBound((uLong)n);
  unsigned char *out = malloc(cap);
  compress2(out, &cap, p, (uLong)n, 9);
  *outn = cap;
  return out;
}

/* A zip entry for make_zip: name ending in '/' is a directory. */
struct zentry { const char *name; const void *data; size_t len; int store; };

/* A zip archive of the entries, built in memory with libzip; caller owns
 * result; free with free(). */
static inline unsigned char *make_zip(const struct zentry *e, size_t ne, size_t *outn) {
  zip_error_t ze;
  *outn = 0;
  zip_error_init(&ze);
  zip_source_t *src = zip_source_buffer_create(NULL, 0, 0, &ze);
  zip_t *za = zip_open_from_source(src, ZIP_TRUNCATE, &ze);
  zip_source_keep(src);
  for (size_t i = 0; i < ne; i++) {
    size_t l = strlen(e[i].name);
    if (l && e[i].name[l - 1] == '/') {
      zip_dir_add(za, e[i].name, ZIP_FL_ENC_UTF_8);
      continue;
    }
    zip_source_t *s = zip_source_buffer(za, e[i].data, e[i].len, 0);
    zip_int64_t idx = zip_file_add(za, e[i].name, s, ZIP_FL_ENC_UTF_8);
    if (e[i].store) zip_set_file_compression(za, (zip_uint64_t)idx, ZIP_CM_STORE, 0);
  }
  zip_close(za);
  zip_source_open(src);
  zip_source_seek(src, 0, SEEK_END);
  zip_int64_t sz = zip_source_tell(src);
  zip_source_seek(src, 0, SEEK_SET);
  unsigned char *out = malloc((size_t)sz + 1);
  *outn = (size_t)zip_source_read(src, out, (zip_uint64_t)sz);
  zip_source_close(src);
  zip_source_free(src);
  zip_error_fini(&ze);
  return out;
}

/* A small but complete DMARC report whose report_id is id. */
static inline char *make_report(const char *id) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_printf(&b,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n"
                "<report_metadata><org_name>test.org</org_name><report_id>%s</report_id>"
                "<date_range><begin>1700000000</begin><end>1700086399</end></date_range>"
                "</report_metadata>\n<policy_published><domain>example.com</domain><p>none</p>"
                "</policy_published>\n<record><row><source_ip>192.0.2.1</source_ip><count>3</count>"
                "</row><identifiers><header_from>example.com</header_from></identifiers></record>\n"
                "</feedback>\n",
                id);
  return dp_buf_steal(&b, NULL);
}

/* An XML document of at least n bytes: many records of varied text so that it
 * does not compress to nothing. Caller owns result; free with free(). */
static inline char *make_big_report(size_t n, size_t *outn) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_puts(&b, "<?xml version=\"1.0\"?>\n<feedback>\n");
  unsigned x = 12345;
  while (b.len < n) {
    x = x * 1103515245u + 12345u;
    dp_buf_printf(&b, "<record><row><source_ip>10.%u.%u.%u</source_ip><count>%u</count></row></record>\n",
                  (x >> 8) & 255, (x >> 16) & 255, (x >> 24) & 255, x % 100000);
  }
  dp_buf_puts(&b, "</feedback>\n");
  return dp_buf_steal(&b, outn);
}

/* Whole file into memory; caller owns result; free with free(). NULL if unreadable. */
static inline unsigned char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  rewind(f);
  unsigned char *p = malloc((size_t)sz + 1);
  *n = fread(p, 1, (size_t)sz, f);
  fclose(f);
  return p;
}

#endif
