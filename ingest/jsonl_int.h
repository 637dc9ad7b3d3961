/* SPDX-License-Identifier: MIT */
/* ingest/jsonl_int.h - JSON-lines encoding of records for `--output jsonl`. */
#ifndef DP_JSONL_INT_H
#define DP_JSONL_INT_H

#include "core/core.h"
#include "parse/parse.h"

/** Replace head's content with the start of every JSON object of report r
 *  (read from source): source, identity, period and policy, the same bytes
 *  for each of its records. Made at report_begin, after which the parser
 *  keeps them fixed (parse.h). DP_ENOMEM on failure. */
int dp__jsonl_head(dp_buf_t *head, const dp_report_t *r, const char *source);

/** Append rec as one JSON object, head (dp__jsonl_head) first, and a
 *  newline; on failure (DP_ELIMIT/DP_ENOMEM) nothing is appended. */
int dp__jsonl_record(dp_buf_t *b, const dp_buf_t *head, const dp_record_t *rec);

#endif
