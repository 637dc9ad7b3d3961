/* SPDX-License-Identifier: MIT */
/* ingest/jsonl_int.h - JSON-lines encoding of records for `--output jsonl`. */
#ifndef DP_JSONL_INT_H
#define DP_JSONL_INT_H

#include "core/core.h"
#include "parse/parse.h"

/** Append rec (of report r, read from source) as one JSON object and a
 *  newline; on failure (DP_ELIMIT/DP_ENOMEM) nothing is appended. */
int dp__jsonl_record(dp_buf_t *b, const dp_report_t *r, const dp_record_t *rec,
                     const char *source);

#endif
