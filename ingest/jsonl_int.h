/* SPDX-License-Identifier: MIT */
/* ingest/jsonl_int.h - JSON-lines encoding of records for `--output jsonl`. */
#ifndef DP_JSONL_INT_H
#define DP_JSONL_INT_H

#include "core/core.h"
#include "parse/parse.h"

/* The head of a record's JSON object: what comes from its report (source,
 * identity, period, policy), the same bytes for every record of the report,
 * so it is encoded once and copied. It is remembered with the values it was
 * made from and remade if one of them changes (the parser refuses a report
 * whose metadata or policy changes after its first record; this does not
 * rely on it). */
typedef struct dp__jsonl_head {
  dp_buf_t buf;
  bool valid;
  const char *source, *org_name, *email, *report_id, *domain;
  const char *adkim, *aspf, *p, *sp, *np, *fo;
  int64_t begin, end;
  int pct;
} dp__jsonl_head_t;

/** Prepare an empty head; allocates nothing. */
void dp__jsonl_head_init(dp__jsonl_head_t *h);
/** A new report begins: the head no longer applies, since the next report's
 *  strings may live at the same addresses. Keeps the buffer for reuse. */
void dp__jsonl_head_forget(dp__jsonl_head_t *h);
/** Free the head's buffer. */
void dp__jsonl_head_free(dp__jsonl_head_t *h);

/** Append rec (of report r, read from source) as one JSON object and a
 *  newline, its head taken from h (made first if it does not match r); on
 *  failure (DP_ELIMIT/DP_ENOMEM) nothing is appended. */
int dp__jsonl_record(dp_buf_t *b, dp__jsonl_head_t *h, const dp_report_t *r,
                     const dp_record_t *rec, const char *source);

#endif
