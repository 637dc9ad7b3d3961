/* SPDX-License-Identifier: MIT */
/* ingest/unpack.c - dp_unpack: sniff an input, route it to gzip/zlib/zip/MIME/
 * mbox unpacking, recurse into what comes out (gzip in zip, zip in mail, ...) and
 * hand every XML document to the consumer's callbacks as a stream, enforcing
 * the size, ratio and nesting limits. */
#include "ingest/unpack_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* Small helpers                                                            */

char *dp__part_join(const char *part, const char *sub) {
  size_t a = strlen(part), b = strlen(sub);
  char *s = malloc(a + b + 4);
  if (!s) return NULL;
  if (a) {
    memcpy(s, part, a);
    memcpy(s + a, " > ", 3);
    memcpy(s + a + 3, sub, b + 1);
  } else {
    memcpy(s, sub, b + 1);
  }
  return s;
}

void dp__human_size(uint64_t n, char *out, size_t outlen) {
  if (n < 1024)
    snprintf(out, outlen, "%llu bytes", (unsigned long long)n);
  else if (n < (UINT64_C(1) << 20))
    snprintf(out, outlen, "%llu KiB", (unsigned long long)(n >> 10));
  else if (n < (UINT64_C(1) << 30))
    snprintf(out, outlen, "%.1f MiB", (double)n / (1 << 20));
  else
    snprintf(out, outlen, "%.1f GiB", (double)n / (1 << 30));
}

void dp__fail(struct dp__unpack *u, const char *part, int status, const char *reason) {
  if (u->abort_rc) return;
  if (!part[0]) {
    /* the input itself: the first failure is what dp_unpack returns */
    if (!u->root_status) {
      u->root_status = status;
      snprintf(u->root_reason, sizeof u->root_reason, "%s", reason);
    }
    return;
  }
  if (u->cb->part_error) u->cb->part_error(u->ud, part, status, reason);
}

void dp__note(struct dp__unpack *u, const char *part, const char *msg) {
  if (!u->abort_rc && u->cb->note) u->cb->note(u->ud, part, msg);
}

int dp__nesting_refused(struct dp__unpack *u, const char *part, unsigned depth, dp_kind_t kind) {
  if (depth < u->lim->max_nesting) return 0;
  char r[160];
  snprintf(r, sizeof r, "nesting limit exceeded: %s inside %u containers (limit %u)",
           dp_kind_name(kind), depth, (unsigned)u->lim->max_nesting);
  dp__fail(u, part, DP_ELIMIT, r);
  return 1;
}

/* The reason for bytes that are nothing we know, with their first bytes in hex
 * so the user can tell a PNG from a PDF. */
static void unknown_reason(const unsigned char *p, size_t n, char *out, size_t outlen) {
  int o = snprintf(out, outlen, "not XML, gzip, zip, zlib or a mail message (starts with");
  for (size_t i = 0; i < n && i < 8 && o > 0 && (size_t)o < outlen; i++)
    o += snprintf(out + o, outlen - (size_t)o, " %02x", p[i]);
  if (o > 0 && (size_t)o < outlen) snprintf(out + o, outlen - (size_t)o, ")");
}

/* Call a doc callback and remember a non-zero answer as the abort value. */
static int doc_rc(struct dp__unpack *u, int rc) {
  if (rc && !u->abort_rc) u->abort_rc = rc;
  return u->abort_rc;
}

/* ======================================================================== */
/* The stream sink                                                          */

int dp__sink_init(struct dp__sink *s, struct dp__unpack *u, const char *part, unsigned depth) {
  memset(s, 0, sizeof *s);
  s->u = u;
  s->depth = depth;
  s->part = strdup(part);
  dp_buf_init(&s->buf, (size_t)u->lim->max_input_size);
  if (!s->part) {
    s->mode = DP__SINK_CLOSED;
    return DP_ENOMEM;
  }
  s->mode = DP__SINK_SNIFF;
  return 0;
}

static void sink_dead(struct dp__sink *s) {
  s->mode = DP__SINK_DEAD;
  s->stop = 1;
  dp_buf_free(&s->buf);
}

/* The first bytes are in: pick the route. Returns an abort value or 0. */
static int sink_decide(struct dp__sink *s) {
  struct dp__unpack *u = s->u;
  s->kind = dp_sniff(s->head, s->nhead);
  switch (s->kind) {
  case DP_KIND_XML:
    s->mode = DP__SINK_DOC;
    if (u->cb->doc_begin) return doc_rc(u, u->cb->doc_begin(u->ud, s->part));
    return 0;
  case DP_KIND_GZIP:
  case DP_KIND_ZLIB:
    if (dp__nesting_refused(u, s->part, s->depth, s->kind)) break;
    s->inf = dp__inflate_create(u, s->kind == DP_KIND_GZIP, s->part, s->depth);
    if (!s->inf) {
      dp__fail(u, s->part, DP_ENOMEM, "out of memory");
      break;
    }
    s->mode = DP__SINK_INFLATE;
    return 0;
  case DP_KIND_ZIP:
  case DP_KIND_MAIL:
  case DP_KIND_MBOX:
    if (dp__nesting_refused(u, s->part, s->depth, s->kind)) break;
    s->mode = DP__SINK_BUFFER;
    return 0;
  case DP_KIND_UNKNOWN: {
    char r[160];
    unknown_reason(s->head, s->nhead, r, sizeof r);
    dp__fail(u, s->part, DP_EFORMAT, r);
    break;
  }
  }
  sink_dead(s);
  return u->abort_rc;
}

/* Route bytes once the mode is known. */
static int sink_route(struct dp__sink *s, const unsigned char *p, size_t n) {
  struct dp__unpack *u = s->u;
  if (!n) return u->abort_rc;
  switch (s->mode) {
  case DP__SINK_DOC:
    if (s->nbytes + n > u->lim->max_report_size) {
      char lim[32], r[128];
      dp__human_size(u->lim->max_report_size, lim, sizeof lim);
      snprintf(r, sizeof r, "document exceeds the report size limit of %s", lim);
      sink_dead(s);
      if (u->cb->doc_end) return doc_rc(u, u->cb->doc_end(u->ud, DP_ELIMIT, r));
      return 0;
    }
    s->nbytes += n;
    if (u->cb->doc_data) return doc_rc(u, u->cb->doc_data(u->ud, (const char *)p, n));
    return 0;
  case DP__SINK_INFLATE: {
    int rc = dp__inflate_write(s->inf, p, n);
    if (dp__inflate_stopped(s->inf)) s->stop = 1;
    return rc;
  }
  case DP__SINK_BUFFER: {
    int rc = dp_buf_append(&s->buf, p, n);
    if (rc) {
      char lim[32], r[160];
      dp__human_size(u->lim->max_input_size, lim, sizeof lim);
      if (rc == DP_ELIMIT)
        snprintf(r, sizeof r, "%s held in memory exceeds the input size limit of %s",
                 dp_kind_name(s->kind), lim);
      else
        snprintf(r, sizeof r, "out of memory");
      dp__fail(u, s->part, rc, r);
      sink_dead(s);
    }
    return u->abort_rc;
  }
  default:
    return u->abort_rc;
  }
}

int dp__sink_write(struct dp__sink *s, const void *p, size_t n) {
  const unsigned char *b = p;
  if (s->u->abort_rc) return s->u->abort_rc;
  if (s->mode == DP__SINK_SNIFF && s->nhead == 0 && n >= DP__UNPACK_HEAD) {
    /* the first write decides alone: route it whole, not as head + rest */
    memcpy(s->head, b, DP__UNPACK_HEAD);
    s->nhead = DP__UNPACK_HEAD;
    int rc = sink_decide(s);
    if (rc || s->stop) return rc ? rc : s->u->abort_rc;
    return sink_route(s, b, n);
  }
  if (s->mode == DP__SINK_SNIFF) {
    size_t take = DP__UNPACK_HEAD - s->nhead;
    if (take > n) take = n;
    memcpy(s->head + s->nhead, b, take);
    s->nhead += take;
    b += take;
    n -= take;
    if (s->nhead < DP__UNPACK_HEAD) return 0;
    int rc = sink_decide(s);
    if (rc) return rc;
    rc = sink_route(s, s->head, s->nhead);
    if (rc) return rc;
  }
  if (s->stop) return s->u->abort_rc;
  return sink_route(s, b, n);
}

static void sink_free(struct dp__sink *s) {
  if (s->inf) dp__inflate_close(s->inf, DP_EABORT, "aborted");
  s->inf = NULL;
  dp_buf_free(&s->buf);
  free(s->part);
  s->part = NULL;
  s->mode = DP__SINK_CLOSED;
}

static int dispatch_memory(struct dp__unpack *u, const char *part, unsigned depth, dp_kind_t kind,
                           const void *p, size_t n);

int dp__sink_close(struct dp__sink *s, int status, const char *reason) {
  struct dp__unpack *u = s->u;
  int rc = u->abort_rc;
  if (rc || s->mode == DP__SINK_CLOSED) {
    sink_free(s);
    return rc;
  }
  if (s->mode == DP__SINK_SNIFF) {
    /* the container failed before we had a full head: a document (or an
     * inner stream) still starts so that it ends with the container's reason,
     * the same as when the failure comes later; anything else is refused */
    dp_kind_t k = s->nhead ? dp_sniff(s->head, s->nhead) : DP_KIND_UNKNOWN;
    if (status && k != DP_KIND_XML && k != DP_KIND_GZIP && k != DP_KIND_ZLIB) {
      dp__fail(u, s->part, status, reason);
      sink_free(s);
      return u->abort_rc;
    }
    if (s->nhead == 0) {
      dp__fail(u, s->part, DP_EFORMAT, "empty content");
      sink_free(s);
      return u->abort_rc;
    }
    rc = sink_decide(s);
    if (!rc) rc = sink_route(s, s->head, s->nhead);
    if (rc) {
      sink_free(s);
      return rc;
    }
  }
  switch (s->mode) {
  case DP__SINK_DOC:
    if (u->cb->doc_end) rc = doc_rc(u, u->cb->doc_end(u->ud, status, status ? reason : ""));
    break;
  case DP__SINK_INFLATE:
    rc = dp__inflate_close(s->inf, status, reason);
    s->inf = NULL;
    break;
  case DP__SINK_BUFFER:
    if (status)
      dp__fail(u, s->part, status, reason);
    else
      rc = dispatch_memory(u, s->part, s->depth, s->kind, s->buf.data, s->buf.len);
    break;
  default:
    break;
  }
  sink_free(s);
  return rc ? rc : u->abort_rc;
}

/* ======================================================================== */
/* Mail: every leaf part that decodes to a report candidate                 */

struct mail_walk {
  struct dp__unpack *u;
  const char *part; /* the mail's own part */
  unsigned reports;
};

static int ends_with_ci(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  if (b > a) return 0;
  for (size_t i = 0; i < b; i++) {
    char c = s[a - b + i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != suf[i]) return 0;
  }
  return 1;
}

/* Did the part's sender declare it a report, by a compressed content type
 * or a report's file name? A part so declared that is not one is an error
 * (a report damaged or mislabelled on its way), not a skipped part. Neither
 * "application/octet-stream" nor an XML type alone says so: spam carries
 * both, and XML that is not a report is skipped. */
static int declared_report(const dp_mime_part_t *p) {
  static const char *const exts[] = {".xml", ".gz", ".gzip", ".zip", ".zlib", ".z"};
  for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
    if (ends_with_ci(p->filename, exts[i])) return 1;
  return strstr(p->content_type, "zip") != NULL;
}

/* Does a part that failed to decode look like it was meant to be a report?
 * Then its failure is an error, otherwise it is only skipped. Broader than
 * declared_report: a part whose transfer encoding is broken may have been
 * anything an attachment can be. */
static int looks_like_report(const dp_mime_part_t *p) {
  const char *t = p->content_type;
  return declared_report(p) || strstr(t, "xml") || strstr(t, "octet-stream") ||
         strstr(t, "message/");
}

/* The next byte of a document at *i, NUL bytes skipped (UTF-16 text, which
 * a report may be, reads as ASCII with NULs between), lower-cased; -1 at
 * the end. Advances *i past it. */
static int next_ascii(const unsigned char *p, size_t n, size_t *i) {
  while (*i < n && p[*i] == 0)
    (*i)++;
  if (*i >= n) return -1;
  int c = p[(*i)++];
  return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Is the root element of the XML in the first KiBs <feedback> (any
 * namespace prefix)? The prolog's declaration, comments, processing
 * instructions and DOCTYPE are stepped over. Looking for "feedback"
 * anywhere took an HTML newsletter with a mailto:feedback@ link for a
 * broken report. */
static int xml_root_is_feedback(const unsigned char *p, size_t n) {
  if (n > 16384) n = 16384;
  size_t i = 0;
  int c;
  while ((c = next_ascii(p, n, &i)) >= 0) {
    if (c != '<') continue;
    c = next_ascii(p, n, &i);
    if (c == '?' || c == '!') {
      /* up to the markup's '>' (a DOCTYPE's internal subset in [...] and a
       * comment's "--" may hold '>' of their own) */
      int depth = 0, prev = 0, prev2 = 0;
      bool comment = false;
      size_t at = i;
      if (c == '!' && next_ascii(p, n, &at) == '-' && next_ascii(p, n, &at) == '-') {
        comment = true;
        i = at;
      }
      while ((c = next_ascii(p, n, &i)) >= 0) {
        if (comment ? c == '>' && prev == '-' && prev2 == '-' : c == '>' && depth == 0) break;
        if (!comment && c == '[') depth++;
        if (!comment && c == ']' && depth > 0) depth--;
        prev2 = prev;
        prev = c;
      }
      continue;
    }
    /* the root's name: its local part after any prefix */
    char name[64];
    size_t k = 0;
    while (c >= 0 && c != '>' && c != '/' && c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      if (c == ':')
        k = 0;
      else if (k < sizeof name - 1)
        name[k++] = (char)c;
      c = next_ascii(p, n, &i);
    }
    name[k] = 0;
    return !strcmp(name, "feedback");
  }
  return 0;
}

static int mail_part_cb(void *ud, const dp_mime_part_t *mp) {
  struct mail_walk *w = ud;
  struct dp__unpack *u = w->u;
  const char *label = mp->filename[0] ? mp->filename : mp->content_type;
  size_t need = strlen(mp->path) + strlen(label) + 4;
  char *leaf = malloc(need);
  if (!leaf) return DP_ENOMEM;
  snprintf(leaf, need, "%s (%s)", mp->path, label);
  char *full = dp__part_join(w->part, leaf);
  free(leaf);
  if (!full) return DP_ENOMEM;
  int rc = 0;
  if (mp->status) {
    if (mp->status == DP_ELIMIT || looks_like_report(mp)) {
      w->reports++;
      dp__fail(u, full, mp->status, mp->reason ? mp->reason : dp_strerror(mp->status));
    } else {
      char msg[300];
      snprintf(msg, sizeof msg, "not a report, skipped (%s)", mp->reason ? mp->reason : "");
      dp__note(u, full, msg);
    }
  } else {
    dp_kind_t k = dp_sniff(mp->data, mp->len < DP__UNPACK_HEAD ? mp->len : DP__UNPACK_HEAD);
    /* A bare zlib stream has only a two-byte header, which text can begin
     * with ("HK", "x^"): a text part (so is one without a type) is taken
     * for one only when its name says it is compressed. */
    bool text = !strncmp(mp->content_type, "text/", 5) && !declared_report(mp);
    int candidate = k == DP_KIND_GZIP || k == DP_KIND_ZIP || (k == DP_KIND_ZLIB && !text) ||
                    (k == DP_KIND_XML && xml_root_is_feedback(mp->data, mp->len));
    if (candidate) {
      w->reports++;
      rc = dp__unpack_buffer(u, full, mp->depth, mp->data, mp->len);
    } else if (declared_report(mp)) {
      w->reports++;
      char msg[160];
      snprintf(msg, sizeof msg, "declared a report by its name or type, but %s",
               mp->len == 0           ? "it is empty"
               : k == DP_KIND_XML     ? "its XML's root element is not <feedback>"
               : k == DP_KIND_UNKNOWN ? "its content is no report format (XML, gzip, zip, zlib)"
                                      : "its content is not a report");
      dp__fail(u, full, DP_EFORMAT, msg);
    } else {
      dp__note(u, full, "not a report, skipped");
    }
  }
  free(full);
  return rc ? rc : u->abort_rc;
}

static int unpack_mail(struct dp__unpack *u, const char *part, unsigned depth, const void *p, size_t n) {
  struct mail_walk w = {u, part, 0};
  char err[256] = "";
  int rc = dp_mime_walk(u->lim, p, n, depth, mail_part_cb, &w, err, sizeof err);
  if (u->abort_rc) return u->abort_rc;
  if (rc) {
    dp__fail(u, part, rc, err[0] ? err : dp_strerror(rc));
    return 0;
  }
  if (!w.reports) {
    dp__note(u, part, "no DMARC report in this message");
    if (!u->abort_rc && u->cb->no_report) u->cb->no_report(u->ud, part);
  }
  return 0;
}

/* ======================================================================== */
/* mbox: every message as a mail of its own, at the mbox's own depth        */

struct mbox_walk {
  struct dp__unpack *u;
  const char *part; /* the mbox's own part */
  unsigned depth;
};

static int mbox_msg_cb(void *ud, size_t index, const char *msg, size_t n) {
  struct mbox_walk *w = ud;
  char sub[40];
  snprintf(sub, sizeof sub, "message %zu", index);
  char *full = dp__part_join(w->part, sub);
  if (!full) return DP_ENOMEM;
  /* an mbox is a list of messages, like a directory, not a container: a
   * message in it nests exactly as the same message in a loose file */
  int rc = unpack_mail(w->u, full, w->depth, msg, n);
  free(full);
  return rc ? rc : w->u->abort_rc;
}

static int unpack_mbox(struct dp__unpack *u, const char *part, unsigned depth, const void *p, size_t n) {
  struct mbox_walk w = {u, part, depth};
  int rc = dp_mbox_split(p, n, mbox_msg_cb, &w);
  if (rc && !u->abort_rc) u->abort_rc = rc; /* out of memory: stop as a callback would */
  return u->abort_rc;
}

/* ======================================================================== */
/* Dispatch                                                                 */

static int dispatch_memory(struct dp__unpack *u, const char *part, unsigned depth, dp_kind_t kind,
                           const void *p, size_t n) {
  if (kind == DP_KIND_ZIP) return dp__unpack_zip(u, part, depth, p, n);
  if (kind == DP_KIND_MAIL) return unpack_mail(u, part, depth, p, n);
  if (kind == DP_KIND_MBOX) return unpack_mbox(u, part, depth, p, n);
  /* XML, gzip, zlib: stream through a sink, a window at a time */
  struct dp__sink s;
  if (dp__sink_init(&s, u, part, depth)) {
    dp__fail(u, part, DP_ENOMEM, "out of memory");
    return u->abort_rc;
  }
  const unsigned char *b = p;
  int rc = 0;
  while (n && !rc && !s.stop) {
    size_t k = n < DP__UNPACK_CHUNK ? n : DP__UNPACK_CHUNK;
    rc = dp__sink_write(&s, b, k);
    b += k;
    n -= k;
  }
  int rc2 = dp__sink_close(&s, 0, "");
  return rc ? rc : rc2;
}

int dp__unpack_buffer(struct dp__unpack *u, const char *part, unsigned depth, const void *p, size_t n) {
  if (n == 0) {
    dp__fail(u, part, DP_EFORMAT, "empty input");
    return u->abort_rc;
  }
  dp_kind_t kind = dp_sniff(p, n < DP__UNPACK_HEAD ? n : DP__UNPACK_HEAD);
  if (kind == DP_KIND_UNKNOWN) {
    char r[160];
    unknown_reason(p, n, r, sizeof r);
    dp__fail(u, part, DP_EFORMAT, r);
    return u->abort_rc;
  }
  if (kind != DP_KIND_XML && dp__nesting_refused(u, part, depth, kind)) return u->abort_rc;
  return dispatch_memory(u, part, depth, kind, p, n);
}

int dp_unpack(const dp_limits_t *lim, const void *buf, size_t len, const dp_unpack_cb_t *cb,
              void *ud, char *err, size_t errlen) {
  struct dp__unpack u;
  memset(&u, 0, sizeof u);
  u.lim = lim;
  u.cb = cb;
  u.ud = ud;
  if (err && errlen) err[0] = '\0';
  if ((uint64_t)len > lim->max_input_size) {
    char a[32], b[32];
    dp__human_size(len, a, sizeof a);
    dp__human_size(lim->max_input_size, b, sizeof b);
    if (err && errlen) snprintf(err, errlen, "input is %s, over the input size limit of %s", a, b);
    return DP_ELIMIT;
  }
  int rc = dp__unpack_buffer(&u, "", 0, buf, len);
  if (rc) return rc;
  if (u.root_status) {
    if (err && errlen) snprintf(err, errlen, "%s", u.root_reason);
    return u.root_status;
  }
  return 0;
}

/* ======================================================================== */
/* Streaming input                                                          */

struct dp_unpack_stream {
  struct dp__unpack u;
  struct dp__sink s;
  uint64_t total;
  int failed; /* the input as a whole was refused while writing */
  char reason[256];
};

dp_unpack_stream_t *dp_unpack_stream_create(const dp_limits_t *lim, const dp_unpack_cb_t *cb,
                                            void *ud) {
  dp_unpack_stream_t *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  st->u.lim = lim;
  st->u.cb = cb;
  st->u.ud = ud;
  if (dp__sink_init(&st->s, &st->u, "", 0)) {
    free(st);
    return NULL;
  }
  return st;
}

void dp_unpack_stream_want_adler(dp_unpack_stream_t *st) { st->u.want_sums = 1; }

int dp_unpack_stream_adler(const dp_unpack_stream_t *st, const char *buf, size_t n,
                           unsigned long *adler) {
  if (!st->u.sum_p || (const unsigned char *)buf != st->u.sum_p || n != st->u.sum_n) return 0;
  *adler = st->u.sum;
  return 1;
}

int dp_unpack_stream_write(dp_unpack_stream_t *st, const void *p, size_t n) {
  if (st->failed) return 0;
  if (st->u.abort_rc) return st->u.abort_rc;
  if (st->total + n > st->u.lim->max_input_size) {
    char b[32];
    dp__human_size(st->u.lim->max_input_size, b, sizeof b);
    snprintf(st->reason, sizeof st->reason, "input is over the input size limit of %s", b);
    st->failed = DP_ELIMIT;
    return 0;
  }
  st->total += n;
  return dp__sink_write(&st->s, p, n);
}

int dp_unpack_stream_finish(dp_unpack_stream_t *st, char *err, size_t errlen) {
  if (err && errlen) err[0] = '\0';
  if (!st->failed && st->total == 0) {
    dp__sink_close(&st->s, DP_EABORT, "empty input");
    if (err && errlen) snprintf(err, errlen, "empty input");
    return DP_EFORMAT;
  }
  /* a refusal while writing (input too large) ends whatever had begun: a
   * document ends with it, anything else refuses the input */
  int rc = dp__sink_close(&st->s, st->failed, st->failed ? st->reason : "");
  if (rc) return rc;
  if (st->u.root_status) {
    if (err && errlen) snprintf(err, errlen, "%s", st->u.root_reason);
    return st->u.root_status;
  }
  return 0;
}

void dp_unpack_stream_destroy(dp_unpack_stream_t *st) { free(st); }
