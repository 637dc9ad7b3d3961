/* SPDX-License-Identifier: MIT */
/* ingest/unpack_priv.h - internals shared by the unpack files (unpack.c,
 * unpack_gzip.c, unpack_zlib.c, unpack_zip.c): the per-call context, the
 * push-style stream "sink" that sniffs decompressed bytes and routes them, and
 * the streaming inflater. Never included outside ingest/unpack*.c (and their tests). */
#ifndef DP_UNPACK_PRIV_H
#define DP_UNPACK_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "core/core.h"
#include "ingest/unpack_int.h"

/* Decompressed bytes travel in windows of this size; a document reaches the
 * consumer in doc_data calls of at most this many bytes. */
#define DP__UNPACK_CHUNK (64 * 1024)
/* Bytes gathered from a stream before deciding what it is. */
#define DP__UNPACK_HEAD 512
/* The ratio limit applies once a stream has produced this much output, so
 * small, very compressible reports are never refused. */
#define DP__RATIO_FLOOR (UINT64_C(1) << 20)

/* One dp_unpack call. Everything lives on the caller's stack: no globals. */
struct dp__unpack {
  const dp_limits_t *lim;
  const dp_unpack_cb_t *cb;
  void *ud;
  int abort_rc;        /* non-zero once a doc callback asked to stop */
  int root_status;     /* failure of the input as a whole (part "") */
  /* Adler-32 of document bytes (dp_unpack_stream_want_adler): want_sums
   * asks the inflater's helper thread for them; sum_p..sum_n are the bytes
   * being handed over now whose sum is known (sum_p NULL when none) */
  int want_sums;
  const unsigned char *sum_p;
  size_t sum_n;
  unsigned long sum;
  char root_reason[256];
};

enum dp__sink_mode {
  DP__SINK_SNIFF = 0, /* gathering the first bytes */
  DP__SINK_DOC,       /* an XML document: bytes go to doc_data */
  DP__SINK_INFLATE,   /* gzip/zlib: bytes go to a nested inflater */
  DP__SINK_BUFFER,    /* zip/mail: held in memory (capped) until the end */
  DP__SINK_DEAD,      /* failed or refused: bytes are dropped */
  DP__SINK_CLOSED,
};

struct dp__inflate;

/* A stream of bytes whose kind is not known yet (a decompressed stream, a zip
 * entry). Writers push bytes in and close it with the status of the container
 * stream; the sink reports what it finds through the callbacks. */
struct dp__sink {
  struct dp__unpack *u;
  char *part;       /* owned; "" for the input itself */
  unsigned depth;   /* containers around these bytes */
  int mode;         /* enum dp__sink_mode */
  int stop;         /* wants no more bytes: writers may stop producing */
  dp_kind_t kind;
  uint64_t nbytes;  /* bytes received */
  size_t nhead;
  unsigned char head[DP__UNPACK_HEAD];
  struct dp__inflate *inf; /* DP__SINK_INFLATE */
  dp_buf_t buf;            /* DP__SINK_BUFFER */
};

/* ---- unpack.c ---------------------------------------------------------- */
/** Set up s for bytes at part/depth; DP_ENOMEM (s then needs no close). */
int dp__sink_init(struct dp__sink *s, struct dp__unpack *u, const char *part, unsigned depth);
/** Push n bytes; returns a callback's abort value or 0 (stream failures are reported, not returned). */
int dp__sink_write(struct dp__sink *s, const void *p, size_t n);
/** End the stream: status 0 when the container ended cleanly, else a DP_E* code and reason; frees s's memory. */
int dp__sink_close(struct dp__sink *s, int status, const char *reason);
/** Report that part never became a document: the input's own failure when part is "", else part_error. */
void dp__fail(struct dp__unpack *u, const char *part, int status, const char *reason);
/** Forward a note to the consumer. */
void dp__note(struct dp__unpack *u, const char *part, const char *msg);
/** Unpack a whole in-memory buffer found at part/depth; returns an abort value or 0. */
int dp__unpack_buffer(struct dp__unpack *u, const char *part, unsigned depth, const void *p, size_t n);
/** "part > sub" (or "sub" when part is ""); caller owns result; free with free(); NULL on ENOMEM. */
char *dp__part_join(const char *part, const char *sub);
/** Human size "553 bytes", "12 KiB", "1.0 MiB" into out. */
void dp__human_size(uint64_t n, char *out, size_t outlen);
/** Refuse a container at depth when max_nesting containers already surround it; 1 if refused. */
int dp__nesting_refused(struct dp__unpack *u, const char *part, unsigned depth, dp_kind_t kind);

/* ---- unpack_zlib.c: the streaming inflater for gzip and zlib ----------- */
/* Windows in flight between the helper thread and the consumer (512 KiB):
 * enough that each side sleeps and wakes once per several windows. */
#define DP__INF_RING 8

enum dp__inflate_state {
  DP__INF_IN = 0,   /* inside a deflate stream */
  DP__INF_BETWEEN,  /* gzip member ended: next bytes decide member or junk */
  DP__INF_JUNK,     /* trailing bytes after the stream: counted, ignored */
  DP__INF_FAILED,   /* error reported to the child; input dropped */
};

struct dp__inflate {
  struct dp__unpack *u;
  const char *part;       /* borrowed from the owning sink, which outlives f */
  z_stream z;
  int gzip;               /* 1 gzip (members), 0 zlib */
  int state;              /* enum dp__inflate_state */
  unsigned members;       /* gzip members completed */
  uint64_t in_total;      /* compressed bytes consumed */
  uint64_t out_total;     /* decompressed bytes produced */
  uint64_t junk;          /* trailing bytes ignored */
  int junk_blank;         /* every trailing byte so far was whitespace or NUL */
  int npend;              /* 1 when pend holds a lone byte after a member */
  unsigned char pend;
  size_t wlen;            /* bytes in win not yet given to the child */
  unsigned char *win;     /* DP__UNPACK_CHUNK output window (one of ring once it exists) */
  unsigned char *ring[DP__INF_RING]; /* windows of the helper thread; NULL until used */
  uint64_t ns_inflate, ns_consume; /* time in inflate() and in the child, single-threaded */
  struct dp__sink child;  /* where the decompressed bytes go */
};

/* A stream that has produced this many bytes, and whose consumer took longer
 * than inflate() so far (a parser, not a byte counter), is inflated by a
 * helper thread while the calling thread hands the windows on (parses them):
 * decompression and parsing overlap on two cores. Small streams never pay
 * for a thread. Tests set it to 0 (always, whatever the consumer) or
 * UINT64_MAX (never) to compare both paths. */
extern uint64_t dp__inflate_thread_min;
/* How many writes went through the helper thread (for tests). */
extern _Atomic unsigned long dp__inflate_helper_runs;
/* How many windows went to a document with their Adler-32 from the helper
 * thread (for tests). */
extern _Atomic unsigned long dp__inflate_sums_handed;

/** Create an inflater (gzip: 1, zlib: 0) whose output goes to a child sink at part/depth+1; NULL on ENOMEM. */
struct dp__inflate *dp__inflate_create(struct dp__unpack *u, int gzip, const char *part, unsigned depth);
/** Push compressed bytes; returns an abort value or 0. */
int dp__inflate_write(struct dp__inflate *f, const unsigned char *in, size_t n);
/** 1 when the inflater wants no more input (failed, or its consumer stopped). */
int dp__inflate_stopped(const struct dp__inflate *f);
/** End of compressed input (status as dp__sink_close); closes the child and frees f. */
int dp__inflate_close(struct dp__inflate *f, int status, const char *reason);

/* ---- unpack_gzip.c: what happens between gzip members ------------------ */
/** After a member's end: decide from the next bytes whether a new member starts; returns bytes consumed from in. */
size_t dp__gzip_member_boundary(struct dp__inflate *f, const unsigned char *in, size_t n);
/** Report trailing bytes after the last member (a note when they are not blank). */
void dp__gzip_trailing_note(struct dp__inflate *f);

/* ---- unpack_zip.c ------------------------------------------------------ */
/** Unpack every entry of the zip archive in p (borrowed) at part/depth; returns an abort value or 0. */
int dp__unpack_zip(struct dp__unpack *u, const char *part, unsigned depth, const void *p, size_t n);

#endif
