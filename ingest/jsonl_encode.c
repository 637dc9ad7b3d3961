/* SPDX-License-Identifier: MIT */
/* ingest/jsonl_encode.c - one JSON object per record for `ingest --output
 * jsonl`: the record with its report's identity and policy, its auth results
 * and the alignment dmarcpipe computed, for other tools to consume. */
#include <inttypes.h>
#include <stdio.h>

#include "jsonl_int.h"

static int key(dp_buf_t *b, const char *k, bool first) {
  int rc = first ? 0 : dp_buf_putc(b, ',');
  if (!rc) rc = dp_json_string(b, k);
  return rc ? rc : dp_buf_putc(b, ':');
}

static int kstr(dp_buf_t *b, const char *k, const char *v) {
  int rc = key(b, k, false);
  return rc ? rc : dp_json_string(b, v ? v : "");
}

static int kbool(dp_buf_t *b, const char *k, bool v) {
  int rc = key(b, k, false);
  return rc ? rc : dp_buf_puts(b, v ? "true" : "false");
}

static int ktime(dp_buf_t *b, const char *k, int64_t t) {
  char iso[32];
  dp_time_iso8601(t, iso, sizeof iso);
  return kstr(b, k, iso);
}

int dp__jsonl_record(dp_buf_t *b, const dp_report_t *r, const dp_record_t *rec,
                     const char *source) {
  size_t mark = b->len;
  int rc = dp_buf_putc(b, '{');
  if (!rc) rc = key(b, "source", true);
  if (!rc) rc = dp_json_string(b, source);
  if (!rc) rc = kstr(b, "org_name", r->org_name);
  if (!rc) rc = kstr(b, "email", r->email);
  if (!rc) rc = kstr(b, "report_id", r->report_id);
  if (!rc) rc = kstr(b, "domain", r->domain);
  if (!rc) rc = ktime(b, "begin", r->begin);
  if (!rc) rc = ktime(b, "end", r->end);
  if (!rc) rc = key(b, "policy", false);
  if (!rc) rc = dp_buf_putc(b, '{');
  if (!rc) rc = key(b, "adkim", true);
  if (!rc) rc = dp_json_string(b, r->adkim);
  if (!rc) rc = kstr(b, "aspf", r->aspf);
  if (!rc) rc = kstr(b, "p", r->p);
  if (!rc) rc = kstr(b, "sp", r->sp);
  if (!rc) rc = kstr(b, "np", r->np);
  if (!rc) rc = key(b, "pct", false);
  if (!rc) rc = r->pct < 0 ? dp_buf_puts(b, "null") : dp_buf_printf(b, "%d", r->pct);
  if (!rc) rc = kstr(b, "fo", r->fo);
  if (!rc) rc = dp_buf_putc(b, '}');
  if (!rc) rc = key(b, "record", false);
  if (!rc) rc = dp_buf_printf(b, "%" PRIu64, rec->index);
  if (!rc) rc = kstr(b, "source_ip", rec->source_ip);
  if (!rc) rc = key(b, "count", false);
  if (!rc) rc = dp_buf_printf(b, "%" PRIu64, rec->count);
  if (!rc) rc = kstr(b, "disposition", rec->disposition);
  if (!rc) rc = kstr(b, "policy_dkim", rec->pe_dkim);
  if (!rc) rc = kstr(b, "policy_spf", rec->pe_spf);
  if (!rc) rc = key(b, "reasons", false);
  if (!rc) rc = dp_buf_putc(b, '[');
  for (size_t i = 0; i < rec->n_reasons && !rc; i++) {
    if (i) rc = dp_buf_putc(b, ',');
    if (!rc) rc = dp_buf_putc(b, '{');
    if (!rc) rc = key(b, "type", true);
    if (!rc) rc = dp_json_string(b, rec->reasons[i].type);
    if (!rc) rc = kstr(b, "comment", rec->reasons[i].comment);
    if (!rc) rc = dp_buf_putc(b, '}');
  }
  if (!rc) rc = dp_buf_putc(b, ']');
  if (!rc) rc = kstr(b, "header_from", rec->header_from);
  if (!rc) rc = kstr(b, "envelope_from", rec->envelope_from);
  if (!rc) rc = kstr(b, "envelope_to", rec->envelope_to);
  if (!rc) rc = key(b, "dkim", false);
  if (!rc) rc = dp_buf_putc(b, '[');
  for (size_t i = 0; i < rec->n_dkim && !rc; i++) {
    if (i) rc = dp_buf_putc(b, ',');
    if (!rc) rc = dp_buf_putc(b, '{');
    if (!rc) rc = key(b, "domain", true);
    if (!rc) rc = dp_json_string(b, rec->dkim[i].domain);
    if (!rc) rc = kstr(b, "selector", rec->dkim[i].selector);
    if (!rc) rc = kstr(b, "result", rec->dkim[i].result);
    if (!rc) rc = kstr(b, "human_result", rec->dkim[i].human_result);
    if (!rc) rc = dp_buf_putc(b, '}');
  }
  if (!rc) rc = dp_buf_putc(b, ']');
  if (!rc) rc = key(b, "spf", false);
  if (!rc) rc = dp_buf_putc(b, '[');
  for (size_t i = 0; i < rec->n_spf && !rc; i++) {
    if (i) rc = dp_buf_putc(b, ',');
    if (!rc) rc = dp_buf_putc(b, '{');
    if (!rc) rc = key(b, "domain", true);
    if (!rc) rc = dp_json_string(b, rec->spf[i].domain);
    if (!rc) rc = kstr(b, "scope", rec->spf[i].scope);
    if (!rc) rc = kstr(b, "result", rec->spf[i].result);
    if (!rc) rc = kstr(b, "human_result", rec->spf[i].human_result);
    if (!rc) rc = dp_buf_putc(b, '}');
  }
  if (!rc) rc = dp_buf_putc(b, ']');
  if (!rc) rc = kbool(b, "dkim_aligned", rec->dkim_aligned);
  if (!rc) rc = kbool(b, "dkim_aligned_strict", rec->dkim_aligned_strict);
  if (!rc) rc = kbool(b, "spf_aligned", rec->spf_aligned);
  if (!rc) rc = kbool(b, "spf_aligned_strict", rec->spf_aligned_strict);
  if (!rc) rc = kbool(b, "dmarc_pass", rec->dkim_aligned || rec->spf_aligned);
  if (!rc) rc = kstr(b, "sender", rec->sender);
  if (!rc) rc = kbool(b, "third_party", rec->third_party);
  if (!rc) rc = dp_buf_puts(b, "}\n");
  if (rc) {
    /* never leave half a line behind */
    b->len = mark;
    if (b->data) b->data[mark] = '\0';
  }
  return rc;
}
