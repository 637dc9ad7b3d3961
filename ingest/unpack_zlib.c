/* SPDX-License-Identifier: MIT */
/* ingest/unpack_zlib.c - the streaming inflater behind gzip and bare zlib
 * (RFC 1950) input: zlib's inflate through a fixed 64 KiB window into a child
 * sink, with the ratio limit, truncation and corruption turned into one-line
 * reasons. gzip member boundaries are handled in unpack_gzip.c. */
#include "ingest/unpack_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *fmt_name(const struct dp__inflate *f) { return f->gzip ? "gzip" : "zlib"; }
static int fmt_err(const struct dp__inflate *f) { return f->gzip ? DP_EGZIP : DP_EZLIB; }

struct dp__inflate *dp__inflate_create(struct dp__unpack *u, int gzip, const char *part, unsigned depth) {
  struct dp__inflate *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->u = u;
  f->part = part;
  f->gzip = gzip;
  f->junk_blank = 1;
  f->win = malloc(DP__UNPACK_CHUNK);
  /* 15 window bits; +16 accepts only a gzip wrapper, plain 15 only zlib's */
  if (!f->win || inflateInit2(&f->z, gzip ? 15 + 16 : 15) != Z_OK) {
    free(f->win);
    free(f);
    return NULL;
  }
  if (dp__sink_init(&f->child, u, part, depth + 1)) {
    inflateEnd(&f->z);
    free(f->win);
    free(f);
    return NULL;
  }
  return f;
}

int dp__inflate_stopped(const struct dp__inflate *f) {
  return f->state == DP__INF_FAILED || f->child.stop;
}

/* The stream is bad: tell the child (which reports it) and drop the rest. */
static int inflate_fail(struct dp__inflate *f, int status, const char *reason) {
  f->state = DP__INF_FAILED;
  f->wlen = 0;
  return dp__sink_close(&f->child, status, reason);
}

/* Give the window to the child; enforce the ratio limit on the way. */
static int flush_window(struct dp__inflate *f) {
  struct dp__unpack *u = f->u;
  if (!f->wlen) return 0;
  /* out > ratio * in, written so that a huge ratio cannot overflow */
  if (f->out_total >= DP__RATIO_FLOOR && u->lim->max_ratio &&
      (f->in_total == 0 || (f->out_total - 1) / f->in_total >= u->lim->max_ratio)) {
    char sz[32], r[160];
    dp__human_size(f->out_total, sz, sizeof sz);
    snprintf(r, sizeof r, "%s: decompressed size exceeds ratio limit %llu:1 after %s", fmt_name(f),
             (unsigned long long)u->lim->max_ratio, sz);
    return inflate_fail(f, DP_ELIMIT, r);
  }
  size_t n = f->wlen;
  f->wlen = 0;
  int rc = dp__sink_write(&f->child, f->win, n);
  if (!rc && f->child.stop) f->state = DP__INF_FAILED; /* the child refused more; it said why */
  return rc;
}

/* A corrupt or cut stream: what was inflated so far still reaches the child
 * first, so a document that had begun ends with this reason (doc_end) rather
 * than vanishing. */
static int fail_after_flush(struct dp__inflate *f, int status, const char *reason) {
  int rc = flush_window(f);
  if (rc || f->state == DP__INF_FAILED) return rc;
  return inflate_fail(f, status, reason);
}

/* zlib's message for a Z_DATA_ERROR, in the user's words. */
static void data_error_reason(const struct dp__inflate *f, char *out, size_t outlen) {
  char sz[32];
  dp__human_size(f->out_total, sz, sizeof sz);
  const char *m = f->z.msg ? f->z.msg : "invalid data";
  if (strcmp(m, "incorrect data check") == 0)
    snprintf(out, outlen, "%s: %s mismatch after %s of output", fmt_name(f),
             f->gzip ? "CRC" : "Adler-32 checksum", sz);
  else if (strcmp(m, "incorrect length check") == 0)
    snprintf(out, outlen, "%s: length mismatch in the trailer after %s of output", fmt_name(f), sz);
  else
    snprintf(out, outlen, "%s: corrupt data (%s) after %s of output", fmt_name(f), m, sz);
}

/* Run inflate over in[0..n) inside one deflate stream; *used gets the bytes
 * consumed (less than n when the stream ended). */
static int feed(struct dp__inflate *f, const unsigned char *in, size_t n, size_t *used) {
  f->z.next_in = (unsigned char *)in; /* zlib's API is not const-correct */
  f->z.avail_in = 0;
  size_t left = n;
  int rc = 0;
  *used = 0;
  for (;;) {
    if (f->z.avail_in == 0 && left) {
      unsigned k = left > (1u << 30) ? (1u << 30) : (unsigned)left;
      f->z.avail_in = k;
      left -= k;
    }
    f->z.next_out = f->win + f->wlen;
    f->z.avail_out = (unsigned)(DP__UNPACK_CHUNK - f->wlen);
    unsigned in0 = f->z.avail_in, out0 = f->z.avail_out;
    int zr = inflate(&f->z, Z_NO_FLUSH);
    f->in_total += in0 - f->z.avail_in;
    f->out_total += out0 - f->z.avail_out;
    f->wlen = DP__UNPACK_CHUNK - f->z.avail_out;
    if (f->wlen == DP__UNPACK_CHUNK) {
      rc = flush_window(f);
      if (rc || f->state == DP__INF_FAILED) break;
    }
    if (zr == Z_STREAM_END) {
      f->members++;
      f->state = f->gzip ? DP__INF_BETWEEN : DP__INF_JUNK;
      break;
    }
    if (zr == Z_OK) {
      if (f->z.avail_in == 0 && !left && f->z.avail_out > 0) break;
      continue;
    }
    if (zr == Z_BUF_ERROR) {
      /* no progress: more input needed, or the window is full (flushed above) */
      if (f->z.avail_in == 0 && !left) break;
      continue;
    }
    char r[200];
    if (zr == Z_DATA_ERROR) {
      data_error_reason(f, r, sizeof r);
      rc = fail_after_flush(f, fmt_err(f), r);
    } else if (zr == Z_NEED_DICT) {
      snprintf(r, sizeof r, "%s: stream needs a preset dictionary", fmt_name(f));
      rc = inflate_fail(f, fmt_err(f), r);
    } else if (zr == Z_MEM_ERROR) {
      rc = inflate_fail(f, DP_ENOMEM, "out of memory");
    } else {
      snprintf(r, sizeof r, "%s: inflate failed (%d)", fmt_name(f), zr);
      rc = inflate_fail(f, fmt_err(f), r);
    }
    break;
  }
  *used = n - left - f->z.avail_in;
  f->z.next_in = NULL;
  f->z.avail_in = 0;
  return rc;
}

int dp__inflate_write(struct dp__inflate *f, const unsigned char *in, size_t n) {
  int rc = f->u->abort_rc;
  while (n && !rc && !dp__inflate_stopped(f)) {
    size_t used = 0;
    switch (f->state) {
    case DP__INF_IN:
      rc = feed(f, in, n, &used);
      break;
    case DP__INF_BETWEEN:
      used = dp__gzip_member_boundary(f, in, n);
      break;
    case DP__INF_JUNK:
      for (size_t i = 0; i < n; i++)
        if (in[i] != 0 && in[i] != ' ' && in[i] != '\t' && in[i] != '\r' && in[i] != '\n')
          f->junk_blank = 0;
      f->junk += n;
      used = n;
      break;
    default:
      used = n;
      break;
    }
    in += used;
    n -= used;
  }
  return rc ? rc : f->u->abort_rc;
}

int dp__inflate_close(struct dp__inflate *f, int status, const char *reason) {
  int rc = f->u->abort_rc;
  if (!rc && f->state != DP__INF_FAILED) {
    if (status) {
      rc = fail_after_flush(f, status, reason);
    } else if (f->state == DP__INF_IN) {
      char sz[32], r[160];
      dp__human_size(f->out_total, sz, sizeof sz);
      snprintf(r, sizeof r, "%s stream truncated after %s of output", fmt_name(f), sz);
      rc = fail_after_flush(f, fmt_err(f), r);
    } else {
      if (f->npend) { /* a lone byte after the last member */
        f->junk += 1;
        if (f->pend != 0 && f->pend != ' ' && f->pend != '\r' && f->pend != '\n' && f->pend != '\t')
          f->junk_blank = 0;
        f->npend = 0;
      }
      rc = flush_window(f);
      if (!rc && f->state != DP__INF_FAILED) {
        rc = dp__sink_close(&f->child, 0, "");
        if (!rc) dp__gzip_trailing_note(f);
      }
    }
  }
  /* whatever happened, the child's memory goes (no callbacks if already closed) */
  int rc2 = dp__sink_close(&f->child, DP_EABORT, "aborted");
  (void)rc2;
  inflateEnd(&f->z);
  free(f->win);
  free(f);
  return rc;
}
