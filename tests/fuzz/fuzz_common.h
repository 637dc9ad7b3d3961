/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzz_common.h - the code paths the fuzz harnesses drive (XML
 * parser, unpacker, MIME walk, unpacker feeding parsers) with contract checks
 * that abort on violation. Included by every libFuzzer harness and by
 * tests/fuzz/test_regress.c, so a saved crash replays exactly what crashed. */
#ifndef DP_FUZZ_COMMON_H
#define DP_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ingest/unpack_int.h"
#include "parse/parse.h"

/* A broken contract is a crash for libFuzzer: it saves the input. */
#define DP_FUZZ_CHECK(c)                                                       \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "%s:%d: contract violated: %s\n", __FILE__, __LINE__, #c); \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* Small limits keep each execution fast and let the fuzzer reach every cap;
 * max_report_size stays above 1 MiB so the ratio check (past 1 MiB of
 * output) is reachable too. */
static inline void dp_fuzz_limits(dp_limits_t *l) {
  dp_limits_default(l);
  l->max_input_size = UINT64_C(1) << 20;
  l->max_report_size = UINT64_C(2) << 20;
  l->max_ratio = 100;
  l->max_zip_entries = 16;
  l->max_nesting = 4;
  l->max_xml_depth = 32;
  l->max_field_len = 4096;
  l->max_records = 2000;
}

/* Folds every byte the code under test hands out into one value, so ASan
 * sees each read and the compiler cannot drop them. */
static volatile uint64_t dp_fuzz_sink;

/* Returns strlen(s) after checking the model's promise: never NULL, valid
 * UTF-8 (invalid bytes are repaired by the parser), within max_field_len. */
static inline size_t dp_fuzz_str(const char *s) {
  DP_FUZZ_CHECK(s != NULL);
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (u[i]) {
    unsigned c = u[i];
    size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 9;
    DP_FUZZ_CHECK(n != 9 && c != 0xc0 && c != 0xc1 && c <= 0xf4);
    for (size_t k = 1; k <= n; k++) DP_FUZZ_CHECK((u[i + k] & 0xc0) == 0x80);
    i += n + 1;
  }
  dp_limits_t lim;
  dp_fuzz_limits(&lim);
  DP_FUZZ_CHECK(i <= lim.max_field_len);
  dp_fuzz_sink = dp_hash64(dp_fuzz_sink, s, i);
  return i;
}

/* Returns strlen(s) after checking a message or part name promise: never
 * NULL, one line (it ends up on one line of standard error). */
static inline size_t dp_fuzz_line(const char *s) {
  DP_FUZZ_CHECK(s != NULL);
  size_t n = strlen(s);
  DP_FUZZ_CHECK(memchr(s, '\n', n) == NULL);
  dp_fuzz_sink = dp_hash64(dp_fuzz_sink, s, n);
  return n;
}

/* ------------------------------------------------------------------------ */
/* XML parser */

struct dp_fuzz_parse {
  int begun;        /* report_begin calls */
  int ended;        /* report_end calls */
  uint64_t records; /* record calls */
  uint64_t messages;
};

static inline void dp_fuzz_touch_report(const dp_report_t *r) {
  DP_FUZZ_CHECK(r->schema == 1 || r->schema == 2);
  dp_fuzz_str(r->version);
  DP_FUZZ_CHECK(dp_fuzz_str(r->org_name) > 0);
  dp_fuzz_str(r->email);
  dp_fuzz_str(r->extra_contact);
  DP_FUZZ_CHECK(dp_fuzz_str(r->report_id) > 0);
  DP_FUZZ_CHECK(r->begin <= r->end);
  DP_FUZZ_CHECK(r->n_errors == 0 || r->errors != NULL);
  for (size_t i = 0; i < r->n_errors; i++) dp_fuzz_str(r->errors[i]);
  dp_fuzz_str(r->generator);
  DP_FUZZ_CHECK(dp_fuzz_str(r->domain) > 0);
  dp_fuzz_str(r->adkim);
  dp_fuzz_str(r->aspf);
  dp_fuzz_str(r->p);
  dp_fuzz_str(r->sp);
  dp_fuzz_str(r->np);
  DP_FUZZ_CHECK(r->pct >= -1 && r->pct <= 100);
  dp_fuzz_str(r->fo);
  dp_fuzz_str(r->testing);
  dp_fuzz_str(r->discovery_method);
  DP_FUZZ_CHECK(r->messages <= DP_MAX_REPORT_MESSAGES);
}

static inline int dp_fuzz_on_begin(void *ud, const dp_report_t *r) {
  struct dp_fuzz_parse *s = ud;
  DP_FUZZ_CHECK(s->begun == 0 && s->records == 0);
  s->begun++;
  dp_fuzz_touch_report(r);
  return 0;
}

static inline int dp_fuzz_on_record(void *ud, const dp_report_t *r, const dp_record_t *rec) {
  struct dp_fuzz_parse *s = ud;
  DP_FUZZ_CHECK(s->begun == 1 && s->ended == 0);
  dp_fuzz_touch_report(r);
  s->records++;
  dp_limits_t lim;
  dp_fuzz_limits(&lim);
  DP_FUZZ_CHECK(rec->index == s->records && s->records <= lim.max_records);
  DP_FUZZ_CHECK(memchr(rec->source_ip, '\0', sizeof rec->source_ip) != NULL);
  DP_FUZZ_CHECK(dp_fuzz_str(rec->source_ip) > 0);
  DP_FUZZ_CHECK(rec->ip_family == 4 || rec->ip_family == 6);
  DP_FUZZ_CHECK(rec->count <= DP_MAX_REPORT_MESSAGES);
  DP_FUZZ_CHECK(rec->count <= DP_MAX_REPORT_MESSAGES - s->messages);
  s->messages += rec->count;
  dp_fuzz_str(rec->disposition);
  dp_fuzz_str(rec->pe_dkim);
  dp_fuzz_str(rec->pe_spf);
  DP_FUZZ_CHECK(rec->n_reasons == 0 || rec->reasons != NULL);
  for (size_t i = 0; i < rec->n_reasons; i++) {
    dp_fuzz_str(rec->reasons[i].type);
    dp_fuzz_str(rec->reasons[i].comment);
  }
  dp_fuzz_str(rec->header_from);
  dp_fuzz_str(rec->envelope_from);
  dp_fuzz_str(rec->envelope_to);
  DP_FUZZ_CHECK(rec->n_dkim == 0 || rec->dkim != NULL);
  for (size_t i = 0; i < rec->n_dkim; i++) {
    dp_fuzz_str(rec->dkim[i].domain);
    dp_fuzz_str(rec->dkim[i].selector);
    dp_fuzz_str(rec->dkim[i].result);
    dp_fuzz_str(rec->dkim[i].human_result);
  }
  DP_FUZZ_CHECK(rec->n_spf == 0 || rec->spf != NULL);
  for (size_t i = 0; i < rec->n_spf; i++) {
    dp_fuzz_str(rec->spf[i].domain);
    dp_fuzz_str(rec->spf[i].scope);
    dp_fuzz_str(rec->spf[i].result);
    dp_fuzz_str(rec->spf[i].human_result);
  }
  DP_FUZZ_CHECK(dp_fuzz_str(rec->sender) > 0);
  /* Strict alignment implies relaxed alignment. */
  DP_FUZZ_CHECK(!rec->dkim_aligned_strict || rec->dkim_aligned);
  DP_FUZZ_CHECK(!rec->spf_aligned_strict || rec->spf_aligned);
  DP_FUZZ_CHECK(r->n_records == s->records && r->messages == s->messages);
  return 0;
}

static inline int dp_fuzz_on_end(void *ud, const dp_report_t *r) {
  struct dp_fuzz_parse *s = ud;
  DP_FUZZ_CHECK(s->begun == 1 && s->ended == 0);
  s->ended++;
  dp_fuzz_touch_report(r);
  DP_FUZZ_CHECK(r->n_records == s->records && r->messages == s->messages);
  return 0;
}

static const dp_parse_cb_t dp_fuzz_parse_cb = {dp_fuzz_on_begin, dp_fuzz_on_record,
                                               dp_fuzz_on_end};

/* Parse one document fed in the chunks that split[] delimits (offsets into
 * data, ascending); returns the parser's final status. A failed parse must
 * explain itself; a successful one must have delivered exactly one report. */
static inline int dp_fuzz_parse_chunks(const uint8_t *data, size_t size, const size_t *split,
                                size_t nsplit, struct dp_fuzz_parse *s) {
  dp_limits_t lim;
  dp_fuzz_limits(&lim);
  memset(s, 0, sizeof *s);
  dp_parser_t *p = dp_parser_create(&lim, &dp_fuzz_parse_cb, s);
  DP_FUZZ_CHECK(p != NULL);
  int rc = 0;
  size_t off = 0;
  for (size_t i = 0; i <= nsplit && rc == 0; i++) {
    size_t to = i < nsplit ? split[i] : size;
    rc = dp_parser_feed(p, (const char *)data + off, to - off);
    off = to;
  }
  if (rc == 0) rc = dp_parser_finish(p);
  const char *why = dp_parser_error(p);
  DP_FUZZ_CHECK(why != NULL);
  if (rc == 0) {
    DP_FUZZ_CHECK(s->begun == 1 && s->ended == 1);
  } else {
    DP_FUZZ_CHECK(rc < 0 && dp_fuzz_line(why) > 0 && s->ended == 0);
    /* After a failure every later call returns the same error. */
    DP_FUZZ_CHECK(dp_parser_feed(p, "<", 1) == rc);
    DP_FUZZ_CHECK(dp_parser_finish(p) == rc);
  }
  dp_parser_destroy(p);
  return rc;
}

/* The parser harness: the document whole, then in chunks whose boundaries
 * come from its own bytes: small documents in pieces of 1..16 bytes (every
 * boundary inside a tag, a UTF-8 sequence, a BOM, an entity is reached),
 * larger ones split in two. Chunk boundaries must not change the outcome. */
static inline void dp_fuzz_parser_one(const uint8_t *data, size_t size) {
  static size_t cuts[2048];
  size_t ncuts = 0;
  struct dp_fuzz_parse whole, split;
  int rc1 = dp_fuzz_parse_chunks(data, size, NULL, 0, &whole);
  if (size > 0 && size <= 2048) {
    size_t step = 1 + data[size / 2] % 16;
    for (size_t at = step; at < size && ncuts < 2048; at += step) cuts[ncuts++] = at;
  } else if (size > 0) {
    cuts[ncuts++] = ((size_t)data[size - 1] * 251u + (size_t)data[size / 2]) % (size + 1);
  }
  int rc2 = dp_fuzz_parse_chunks(data, size, cuts, ncuts, &split);
  DP_FUZZ_CHECK((rc1 == 0) == (rc2 == 0));
  if (rc1 == 0)
    DP_FUZZ_CHECK(whole.records == split.records && whole.messages == split.messages);
}

/* ------------------------------------------------------------------------ */
/* Unpacker, alone and feeding parsers (the ingest pipeline path) */

struct dp_fuzz_unpack {
  int in_doc;
  uint64_t docs, bytes;
  dp_parser_t *parser; /* only when parsing: the current document's parser */
  int parse_rc;
  struct dp_fuzz_parse ps;
  uint64_t reports_ok, records_ok, messages_ok; /* reports that parsed whole */
};

static inline int dp_fuzz_doc_begin(void *ud, const char *part) {
  struct dp_fuzz_unpack *u = ud;
  DP_FUZZ_CHECK(!u->in_doc);
  dp_fuzz_line(part);
  u->in_doc = 1;
  u->docs++;
  u->bytes = 0;
  return 0;
}

static inline int dp_fuzz_doc_data(void *ud, const char *buf, size_t n) {
  struct dp_fuzz_unpack *u = ud;
  dp_limits_t lim;
  dp_fuzz_limits(&lim);
  DP_FUZZ_CHECK(u->in_doc && (buf != NULL || n == 0));
  dp_fuzz_sink = dp_hash64(dp_fuzz_sink, buf, n);
  u->bytes += n;
  DP_FUZZ_CHECK(u->bytes <= lim.max_report_size);
  return 0;
}

static inline int dp_fuzz_doc_end(void *ud, int status, const char *reason) {
  struct dp_fuzz_unpack *u = ud;
  DP_FUZZ_CHECK(u->in_doc);
  u->in_doc = 0;
  if (status) DP_FUZZ_CHECK(status < 0 && dp_fuzz_line(reason) > 0);
  return 0;
}

static inline void dp_fuzz_part_error(void *ud, const char *part, int status, const char *reason) {
  (void)ud;
  dp_fuzz_line(part);
  DP_FUZZ_CHECK(status < 0 && dp_fuzz_line(reason) > 0);
}

static inline void dp_fuzz_note(void *ud, const char *part, const char *msg) {
  (void)ud;
  dp_fuzz_line(part);
  DP_FUZZ_CHECK(dp_fuzz_line(msg) > 0);
}

/* Pipeline variants: like ingest/input_job.c, one parser per document, fed
 * every chunk, finished at doc_end unless the container failed. */
static inline int dp_fuzz_pdoc_begin(void *ud, const char *part) {
  struct dp_fuzz_unpack *u = ud;
  dp_fuzz_doc_begin(ud, part);
  dp_limits_t lim;
  dp_fuzz_limits(&lim);
  DP_FUZZ_CHECK(u->parser == NULL);
  memset(&u->ps, 0, sizeof u->ps);
  u->parser = dp_parser_create(&lim, &dp_fuzz_parse_cb, &u->ps);
  DP_FUZZ_CHECK(u->parser != NULL);
  u->parse_rc = 0;
  return 0;
}

static inline int dp_fuzz_pdoc_data(void *ud, const char *buf, size_t n) {
  struct dp_fuzz_unpack *u = ud;
  dp_fuzz_doc_data(ud, buf, n);
  if (u->parse_rc == 0) u->parse_rc = dp_parser_feed(u->parser, buf, n);
  return 0;
}

static inline int dp_fuzz_pdoc_end(void *ud, int status, const char *reason) {
  struct dp_fuzz_unpack *u = ud;
  dp_fuzz_doc_end(ud, status, reason);
  if (status == 0 && u->parse_rc == 0) u->parse_rc = dp_parser_finish(u->parser);
  if (status == 0 && u->parse_rc == 0) {
    DP_FUZZ_CHECK(u->ps.begun == 1 && u->ps.ended == 1);
    u->reports_ok++;
    u->records_ok += u->ps.records;
    u->messages_ok += u->ps.messages;
  } else if (u->parse_rc) {
    DP_FUZZ_CHECK(u->parse_rc < 0 && dp_fuzz_line(dp_parser_error(u->parser)) > 0);
  }
  dp_parser_destroy(u->parser);
  u->parser = NULL;
  return 0;
}

static const dp_unpack_cb_t dp_fuzz_unpack_cb = {dp_fuzz_doc_begin, dp_fuzz_doc_data,
                                                 dp_fuzz_doc_end, dp_fuzz_part_error,
                                                 dp_fuzz_note, NULL};
static const dp_unpack_cb_t dp_fuzz_ingest_cb = {dp_fuzz_pdoc_begin, dp_fuzz_pdoc_data,
                                                 dp_fuzz_pdoc_end, dp_fuzz_part_error,
                                                 dp_fuzz_note, NULL};

static inline int dp_fuzz_unpack_run(const uint8_t *data, size_t size, const dp_unpack_cb_t *cb,
                              struct dp_fuzz_unpack *u) {
  dp_limits_t lim;
  dp_fuzz_limits(&lim);
  char err[512];
  err[0] = '\0';
  memset(u, 0, sizeof *u);
  int rc = dp_unpack(&lim, data, size, cb, u, err, sizeof err);
  /* Every doc_begin got its doc_end, even when the unpack failed midway. */
  DP_FUZZ_CHECK(!u->in_doc && u->parser == NULL);
  if (rc) DP_FUZZ_CHECK(rc < 0 && dp_fuzz_line(err) > 0);
  return rc;
}

/* The unpack harness: documents are only consumed (hashed and counted). */
static inline void dp_fuzz_unpack_one(const uint8_t *data, size_t size) {
  struct dp_fuzz_unpack u;
  dp_fuzz_unpack_run(data, size, &dp_fuzz_unpack_cb, &u);
}

/* The ingest harness: every document goes through its own parser. */
static inline void dp_fuzz_ingest_one(const uint8_t *data, size_t size) {
  struct dp_fuzz_unpack u;
  int rc = dp_fuzz_unpack_run(data, size, &dp_fuzz_ingest_cb, &u);
  DP_FUZZ_CHECK(u.reports_ok <= u.docs);
  if (rc) DP_FUZZ_CHECK(u.parser == NULL);
}

/* ------------------------------------------------------------------------ */
/* MIME walk */

static inline int dp_fuzz_mime_part(void *ud, const dp_mime_part_t *mp) {
  unsigned *nparts = ud;
  (*nparts)++;
  dp_fuzz_line(mp->path);
  DP_FUZZ_CHECK(dp_fuzz_line(mp->content_type) > 0);
  dp_fuzz_line(mp->filename);
  if (mp->status == 0) {
    DP_FUZZ_CHECK(mp->reason == NULL && (mp->data != NULL || mp->len == 0));
    dp_fuzz_sink = dp_hash64(dp_fuzz_sink, mp->data, mp->len);
  } else {
    DP_FUZZ_CHECK(mp->status < 0 && mp->data == NULL && mp->len == 0);
    DP_FUZZ_CHECK(dp_fuzz_line(mp->reason) > 0);
  }
  return 0;
}

/* The MIME harness: walk the message at depth 0. */
static inline void dp_fuzz_mime_one(const uint8_t *data, size_t size) {
  dp_limits_t lim;
  dp_fuzz_limits(&lim);
  char err[512];
  err[0] = '\0';
  unsigned nparts = 0;
  int rc = dp_mime_walk(&lim, data, size, 0, dp_fuzz_mime_part, &nparts, err, sizeof err);
  if (rc) DP_FUZZ_CHECK(rc < 0 && dp_fuzz_line(err) > 0);
}

#endif
