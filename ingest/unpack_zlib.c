/* SPDX-License-Identifier: MIT */
/* ingest/unpack_zlib.c - the streaming inflater behind gzip and bare zlib
 * (RFC 1950) input: zlib's inflate through 64 KiB windows into a child sink
 * (for big streams with a slow consumer, on a helper thread), with the ratio
 * limit, truncation and corruption turned into one-line reasons. gzip member
 * boundaries are handled in unpack_gzip.c. */
#include "ingest/unpack_priv.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Give n bytes of output to the child; enforce the ratio limit on the way
 * with the totals as they were when that output was complete. */
static int flush_buf(struct dp__inflate *f, const unsigned char *buf, size_t n, uint64_t in_total,
                     uint64_t out_total) {
  struct dp__unpack *u = f->u;
  /* out > ratio * in, written so that a huge ratio cannot overflow */
  if (out_total >= DP__RATIO_FLOOR && u->lim->max_ratio &&
      (in_total == 0 || (out_total - 1) / in_total >= u->lim->max_ratio)) {
    char sz[32], r[160];
    dp__human_size(out_total, sz, sizeof sz);
    snprintf(r, sizeof r, "%s: decompressed size exceeds ratio limit %llu:1 after %s", fmt_name(f),
             (unsigned long long)u->lim->max_ratio, sz);
    return inflate_fail(f, DP_ELIMIT, r);
  }
  int rc = dp__sink_write(&f->child, buf, n);
  if (!rc && f->child.stop) f->state = DP__INF_FAILED; /* the child refused more; it said why */
  return rc;
}

/* Give the window to the child. */
static int flush_window(struct dp__inflate *f) {
  if (!f->wlen) return 0;
  size_t n = f->wlen;
  f->wlen = 0;
  return flush_buf(f, f->win, n, f->in_total, f->out_total);
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

/* inflate() returned the failure zr: report it. */
static int inflate_error(struct dp__inflate *f, int zr) {
  char r[200];
  if (zr == Z_DATA_ERROR) {
    data_error_reason(f, r, sizeof r);
    return fail_after_flush(f, fmt_err(f), r);
  }
  if (zr == Z_NEED_DICT) {
    snprintf(r, sizeof r, "%s: stream needs a preset dictionary", fmt_name(f));
    return inflate_fail(f, fmt_err(f), r);
  }
  if (zr == Z_MEM_ERROR) return inflate_fail(f, DP_ENOMEM, "out of memory");
  snprintf(r, sizeof r, "%s: inflate failed (%d)", fmt_name(f), zr);
  return inflate_fail(f, fmt_err(f), r);
}

/* Compressed bytes one write must still hold to be worth a helper thread. */
#define DP__HELPER_MIN_INPUT 4096

/* A helper pays off only for a big stream whose consumer is the slower side. */
static int want_helper(const struct dp__inflate *f) {
  return f->out_total >= dp__inflate_thread_min &&
         (dp__inflate_thread_min == 0 || f->ns_consume > f->ns_inflate);
}

/* CPU time of this thread: which side needs more CPU is the question, and a
 * wall clock would count the time a busy machine kept the thread waiting
 * against whichever side it happened to be in (a fast consumer then looked
 * slow now and then). Read only from half the threshold on: small streams,
 * nearly all of them, never pay for the clock. */
static uint64_t cpu_ns(const struct dp__inflate *f) {
  if (dp__inflate_thread_min && f->out_total < dp__inflate_thread_min / 2) return 0;
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
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
    int flushed = 0;
    if (f->z.avail_in == 0 && left) {
      unsigned k = left > (1u << 30) ? (1u << 30) : (unsigned)left;
      f->z.avail_in = k;
      left -= k;
    }
    f->z.next_out = f->win + f->wlen;
    f->z.avail_out = (unsigned)(DP__UNPACK_CHUNK - f->wlen);
    unsigned in0 = f->z.avail_in, out0 = f->z.avail_out;
    uint64_t t0 = cpu_ns(f);
    int zr = inflate(&f->z, Z_NO_FLUSH);
    uint64_t t1 = t0 ? cpu_ns(f) : 0;
    f->ns_inflate += t1 - t0;
    f->in_total += in0 - f->z.avail_in;
    f->out_total += out0 - f->z.avail_out;
    f->wlen = DP__UNPACK_CHUNK - f->z.avail_out;
    if (f->wlen == DP__UNPACK_CHUNK) {
      rc = flush_window(f);
      if (t1) f->ns_consume += cpu_ns(f) - t1;
      if (rc || f->state == DP__INF_FAILED) break;
      flushed = 1;
    }
    if (zr == Z_STREAM_END) {
      f->members++;
      f->state = f->gzip ? DP__INF_BETWEEN : DP__INF_JUNK;
      break;
    }
    if (zr == Z_OK || zr == Z_BUF_ERROR) {
      /* Z_BUF_ERROR: no progress; more input needed, or the window was full */
      if (f->z.avail_in == 0 && !left && (zr == Z_BUF_ERROR || f->z.avail_out > 0)) break;
      /* the stream just proved big and slow to consume: the caller goes on
       * with the helper for the rest of this input */
      if (flushed && left + f->z.avail_in >= DP__HELPER_MIN_INPUT && want_helper(f)) break;
      continue;
    }
    rc = inflate_error(f, zr);
    break;
  }
  *used = n - left - f->z.avail_in;
  f->z.next_in = NULL;
  f->z.avail_in = 0;
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Inflating on a helper thread. For one feed() call the helper owns f->z and
 * the totals and fills the ring's windows; the calling thread owns the child
 * and hands each full window on, in order, with the totals recorded when it
 * filled (so the ratio limit trips exactly where it does without the helper).
 * At most DP__INF_RING windows exist, so the helper runs at most RING - 1
 * windows ahead. When the child stops or fails, the helper is told to stop and what
 * it inflated beyond is dropped, as if never inflated. Both threads have
 * joined before feed() returns: outside it everything is single-threaded. */

uint64_t dp__inflate_thread_min = UINT64_C(4) << 20;
_Atomic unsigned long dp__inflate_helper_runs;
_Atomic unsigned long dp__inflate_sums_handed;

struct helper {
  struct dp__inflate *f;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned head, tail;              /* full windows: [head, tail), slot = index % RING */
  uint64_t in_at[DP__INF_RING], out_at[DP__INF_RING];
  unsigned long adler_at[DP__INF_RING]; /* Adler-32 of each full window, when sums */
  int sums;                         /* the child is a document whose consumer takes them */
  int stop, done;
  int prod_waiting, cons_waiting;   /* who sleeps on cv: wake only them */
  size_t left;                      /* input not yet given to zlib */
  unsigned slot;                    /* window being filled when done */
  size_t wlen;                      /* its fill (on entry: the carried partial window) */
  int zr;                           /* the last inflate() result */
};

static void *helper_main(void *arg) {
  struct helper *h = arg;
  struct dp__inflate *f = h->f;
  unsigned slot = 0;
  size_t wlen = h->wlen; /* the partial window carried in, at slot 0 */
  int zr = Z_OK;
  for (;;) {
    /* here the window at slot is never one the consumer holds: fewer than
     * RING windows are full (waited for below, after each publish) */
    pthread_mutex_lock(&h->mu);
    int stop = h->stop;
    pthread_mutex_unlock(&h->mu);
    if (stop) break;
    if (f->z.avail_in == 0 && h->left) {
      unsigned k = h->left > (1u << 30) ? (1u << 30) : (unsigned)h->left;
      f->z.avail_in = k;
      h->left -= k;
    }
    f->z.next_out = f->ring[slot] + wlen;
    f->z.avail_out = (unsigned)(DP__UNPACK_CHUNK - wlen);
    unsigned in0 = f->z.avail_in, out0 = f->z.avail_out;
    zr = inflate(&f->z, Z_NO_FLUSH);
    f->in_total += in0 - f->z.avail_in;
    f->out_total += out0 - f->z.avail_out;
    wlen = DP__UNPACK_CHUNK - f->z.avail_out;
    if (wlen == DP__UNPACK_CHUNK) {
      /* the document's fingerprint, here rather than on the parsing thread */
      unsigned long sum = h->sums ? dp__adler32(1, f->ring[slot], DP__UNPACK_CHUNK) : 0;
      pthread_mutex_lock(&h->mu);
      h->adler_at[slot] = sum;
      h->in_at[slot] = f->in_total;
      h->out_at[slot] = f->out_total;
      h->tail++;
      slot = h->tail % DP__INF_RING;
      if (h->cons_waiting) pthread_cond_signal(&h->cv);
      /* the next window is free once fewer than RING are full; once full,
       * wait until half are free so that both sides sleep rarely */
      if (h->tail - h->head >= DP__INF_RING) {
        h->prod_waiting = 1;
        while (!h->stop && h->tail - h->head > DP__INF_RING / 2) pthread_cond_wait(&h->cv, &h->mu);
        h->prod_waiting = 0;
      }
      pthread_mutex_unlock(&h->mu);
      wlen = 0;
    }
    if (zr == Z_STREAM_END) break;
    if (zr == Z_OK) {
      if (f->z.avail_in == 0 && !h->left && f->z.avail_out > 0) break;
      continue;
    }
    if (zr == Z_BUF_ERROR) {
      if (f->z.avail_in == 0 && !h->left) break;
      continue;
    }
    break;
  }
  pthread_mutex_lock(&h->mu);
  h->done = 1;
  h->slot = slot;
  h->wlen = wlen;
  h->zr = zr;
  pthread_cond_signal(&h->cv); /* only the consumer can be waiting now */
  pthread_mutex_unlock(&h->mu);
  return NULL;
}

/* 1 when the ring's windows exist (allocated on first use, kept to the end). */
static int ring_ready(struct dp__inflate *f) {
  if (f->ring[0]) return 1;
  unsigned char *b[DP__INF_RING] = {f->win};
  for (unsigned i = 1; i < DP__INF_RING; i++) {
    if (!(b[i] = malloc(DP__UNPACK_CHUNK))) {
      while (--i) free(b[i]);
      return 0;
    }
  }
  memcpy(f->ring, b, sizeof b);
  return 1;
}

/* feed() with a helper thread; *ran is 0 when no thread could be started
 * (nothing was done: the caller runs feed() itself). */
static int feed_threaded(struct dp__inflate *f, const unsigned char *in, size_t n, size_t *used,
                         int *ran) {
  *ran = 0;
  *used = 0;
  if (!ring_ready(f)) return 0;
  /* the partial window (if any) becomes slot 0 */
  for (unsigned i = 0; i < DP__INF_RING; i++)
    if (f->ring[i] == f->win && i) {
      f->ring[i] = f->ring[0];
      f->ring[0] = f->win;
    }
  struct helper h;
  memset(&h, 0, sizeof h);
  h.f = f;
  h.left = n;
  h.wlen = f->wlen;
  /* decided once: the consumer thread may change the child while it runs */
  h.sums = f->child.mode == DP__SINK_DOC && f->u->want_sums;
  if (pthread_mutex_init(&h.mu, NULL)) return 0;
  if (pthread_cond_init(&h.cv, NULL)) {
    pthread_mutex_destroy(&h.mu);
    return 0;
  }
  f->z.next_in = (unsigned char *)in;
  f->z.avail_in = 0;
  pthread_t th;
  if (pthread_create(&th, NULL, helper_main, &h)) {
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
    f->z.next_in = NULL;
    return 0;
  }
  *ran = 1;
  dp__inflate_helper_runs++;
  int rc = 0, stopped = 0;
  for (;;) {
    pthread_mutex_lock(&h.mu);
    h.cons_waiting = 1;
    while (h.head == h.tail && !h.done) pthread_cond_wait(&h.cv, &h.mu);
    h.cons_waiting = 0;
    if (h.head == h.tail) { /* done and drained */
      pthread_mutex_unlock(&h.mu);
      break;
    }
    unsigned s = h.head % DP__INF_RING;
    uint64_t in_at = h.in_at[s], out_at = h.out_at[s];
    unsigned long sum = h.adler_at[s];
    pthread_mutex_unlock(&h.mu);
    if (h.sums) {
      f->u->sum_p = f->ring[s];
      f->u->sum_n = DP__UNPACK_CHUNK;
      f->u->sum = sum;
      dp__inflate_sums_handed++;
    }
    rc = flush_buf(f, f->ring[s], DP__UNPACK_CHUNK, in_at, out_at);
    f->u->sum_p = NULL;
    pthread_mutex_lock(&h.mu);
    h.head++;
    if (rc || f->state == DP__INF_FAILED) h.stop = stopped = 1;
    if (h.prod_waiting && (h.stop || h.tail - h.head <= DP__INF_RING / 2)) pthread_cond_signal(&h.cv);
    pthread_mutex_unlock(&h.mu);
    if (stopped) break;
  }
  pthread_join(th, NULL);
  pthread_cond_destroy(&h.cv);
  pthread_mutex_destroy(&h.mu);
  *used = n - h.left - f->z.avail_in;
  f->z.next_in = NULL;
  f->z.avail_in = 0;
  if (stopped) {
    f->wlen = 0; /* what the helper inflated beyond the stop is dropped */
    return rc;
  }
  f->win = f->ring[h.slot];
  f->wlen = h.wlen;
  int zr = h.zr;
  if (zr == Z_STREAM_END) {
    f->members++;
    f->state = f->gzip ? DP__INF_BETWEEN : DP__INF_JUNK;
    return 0;
  }
  if (zr == Z_OK || zr == Z_BUF_ERROR) return 0;
  return inflate_error(f, zr);
}

int dp__inflate_write(struct dp__inflate *f, const unsigned char *in, size_t n) {
  int rc = f->u->abort_rc;
  while (n && !rc && !dp__inflate_stopped(f)) {
    size_t used = 0;
    switch (f->state) {
    case DP__INF_IN: {
      int ran = 0;
      if (n >= DP__HELPER_MIN_INPUT && want_helper(f)) rc = feed_threaded(f, in, n, &used, &ran);
      if (!ran) rc = feed(f, in, n, &used);
      break;
    }
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
  if (f->ring[0]) {
    for (unsigned i = 0; i < DP__INF_RING; i++) free(f->ring[i]);
  } else {
    free(f->win);
  }
  free(f);
  return rc;
}
