/* SPDX-License-Identifier: MIT */
/* ingest/jsonl_encode.c - one JSON object per record for `ingest --output
 * jsonl`: the record with its report's identity and policy, its auth results
 * and the alignment dmarcpipe computed, for other tools to consume. Keys are
 * appended as literals and the report's part once per report: the encoder
 * runs once per record, on the parsing thread. */
#include <inttypes.h>
#include <stdio.h>

#include "jsonl_int.h"

/* Append a string literal (a key with its punctuation) in one piece. */
#define LIT(b, s) dp_buf_append((b), (s), sizeof(s) - 1)

/* ,"k": then v as a JSON string; k is a literal without escapes. */
#define KSTR(b, k, v) kstr((b), ",\"" k "\":", sizeof(",\"" k "\":") - 1, (v))

static int kstr(dp_buf_t *b, const char *key, size_t klen, const char *v) {
  int rc = dp_buf_append(b, key, klen);
  return rc ? rc : dp_json_string(b, v ? v : "");
}

static int put_bool(dp_buf_t *b, bool v) { return v ? LIT(b, "true") : LIT(b, "false"); }

static const char *iso(int64_t t, char out[32]) {
  dp_time_iso8601(t, out, 32);
  return out;
}

int dp__jsonl_head(dp_buf_t *b, const dp_report_t *r, const char *source) {
  dp_buf_reset(b);
  int rc = LIT(b, "{\"source\":");
  if (!rc) rc = dp_json_string(b, source);
  if (!rc) rc = KSTR(b, "org_name", r->org_name);
  if (!rc) rc = KSTR(b, "email", r->email);
  if (!rc) rc = KSTR(b, "report_id", r->report_id);
  if (!rc) rc = KSTR(b, "domain", r->domain);
  char t[32];
  if (!rc) rc = KSTR(b, "begin", iso(r->begin, t));
  if (!rc) rc = KSTR(b, "end", iso(r->end, t));
  if (!rc) rc = LIT(b, ",\"policy\":{\"adkim\":");
  if (!rc) rc = dp_json_string(b, r->adkim ? r->adkim : "");
  if (!rc) rc = KSTR(b, "aspf", r->aspf);
  if (!rc) rc = KSTR(b, "p", r->p);
  if (!rc) rc = KSTR(b, "sp", r->sp);
  if (!rc) rc = KSTR(b, "np", r->np);
  if (!rc) rc = LIT(b, ",\"pct\":");
  if (!rc) rc = r->pct < 0 ? LIT(b, "null") : dp_buf_put_u64(b, (uint64_t)r->pct);
  if (!rc) rc = KSTR(b, "fo", r->fo);
  return rc ? rc : dp_buf_putc(b, '}');
}

static int reasons(dp_buf_t *b, const dp_record_t *rec) {
  int rc = LIT(b, ",\"reasons\":[");
  for (size_t i = 0; i < rec->n_reasons && !rc; i++) {
    rc = i ? LIT(b, ",{\"type\":") : LIT(b, "{\"type\":");
    if (!rc) rc = dp_json_string(b, rec->reasons[i].type);
    if (!rc) rc = KSTR(b, "comment", rec->reasons[i].comment);
    if (!rc) rc = dp_buf_putc(b, '}');
  }
  return rc ? rc : dp_buf_putc(b, ']');
}

static int dkim(dp_buf_t *b, const dp_record_t *rec) {
  int rc = LIT(b, ",\"dkim\":[");
  for (size_t i = 0; i < rec->n_dkim && !rc; i++) {
    rc = i ? LIT(b, ",{\"domain\":") : LIT(b, "{\"domain\":");
    if (!rc) rc = dp_json_string(b, rec->dkim[i].domain);
    if (!rc) rc = KSTR(b, "selector", rec->dkim[i].selector);
    if (!rc) rc = KSTR(b, "result", rec->dkim[i].result);
    if (!rc) rc = KSTR(b, "human_result", rec->dkim[i].human_result);
    if (!rc) rc = dp_buf_putc(b, '}');
  }
  return rc ? rc : dp_buf_putc(b, ']');
}

static int spf(dp_buf_t *b, const dp_record_t *rec) {
  int rc = LIT(b, ",\"spf\":[");
  for (size_t i = 0; i < rec->n_spf && !rc; i++) {
    rc = i ? LIT(b, ",{\"domain\":") : LIT(b, "{\"domain\":");
    if (!rc) rc = dp_json_string(b, rec->spf[i].domain);
    if (!rc) rc = KSTR(b, "scope", rec->spf[i].scope);
    if (!rc) rc = KSTR(b, "result", rec->spf[i].result);
    if (!rc) rc = KSTR(b, "human_result", rec->spf[i].human_result);
    if (!rc) rc = dp_buf_putc(b, '}');
  }
  return rc ? rc : dp_buf_putc(b, ']');
}

int dp__jsonl_record(dp_buf_t *b, const dp_buf_t *head, const dp_record_t *rec) {
  size_t mark = b->len;
  int rc = dp_buf_append(b, head->data, head->len);
  if (!rc) rc = LIT(b, ",\"record\":");
  if (!rc) rc = dp_buf_put_u64(b, rec->index);
  if (!rc) rc = KSTR(b, "source_ip", rec->source_ip);
  if (!rc) rc = LIT(b, ",\"count\":");
  if (!rc) rc = dp_buf_put_u64(b, rec->count);
  if (!rc) rc = KSTR(b, "disposition", rec->disposition);
  if (!rc) rc = KSTR(b, "policy_dkim", rec->pe_dkim);
  if (!rc) rc = KSTR(b, "policy_spf", rec->pe_spf);
  if (!rc) rc = reasons(b, rec);
  if (!rc) rc = KSTR(b, "header_from", rec->header_from);
  if (!rc) rc = KSTR(b, "envelope_from", rec->envelope_from);
  if (!rc) rc = KSTR(b, "envelope_to", rec->envelope_to);
  if (!rc) rc = dkim(b, rec);
  if (!rc) rc = spf(b, rec);
  if (!rc) rc = LIT(b, ",\"dkim_aligned\":");
  if (!rc) rc = put_bool(b, rec->dkim_aligned);
  if (!rc) rc = LIT(b, ",\"dkim_aligned_strict\":");
  if (!rc) rc = put_bool(b, rec->dkim_aligned_strict);
  if (!rc) rc = LIT(b, ",\"spf_aligned\":");
  if (!rc) rc = put_bool(b, rec->spf_aligned);
  if (!rc) rc = LIT(b, ",\"spf_aligned_strict\":");
  if (!rc) rc = put_bool(b, rec->spf_aligned_strict);
  if (!rc) rc = LIT(b, ",\"dmarc_pass\":");
  if (!rc) rc = put_bool(b, rec->dkim_aligned || rec->spf_aligned);
  if (!rc) rc = KSTR(b, "sender", rec->sender);
  if (!rc) rc = LIT(b, ",\"third_party\":");
  if (!rc) rc = put_bool(b, rec->third_party);
  if (!rc) rc = LIT(b, "}\n");
  if (rc) dp_buf_truncate(b, mark); /* never leave half a line behind */
  return rc;
}
