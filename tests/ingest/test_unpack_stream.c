/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_unpack_stream.c - feeding an input piece by piece through
 * dp_unpack_stream gives exactly what dp_unpack gives for the whole buffer:
 * the same documents, bytes, outcomes and refusals, for every real and
 * hostile corpus file and several chunk sizes. */
#include <dirent.h>
#include <stdio.h>
#include <zlib.h>

#include "ingest/unpack_int.h"
#include "ingest/unpack_priv.h"
#include "../test.h"

struct tally {
  dp_buf_t log; /* one line per event: begin/end(status)/error/note */
  uint64_t bytes;
  unsigned long adler;
  unsigned calls, abort_at; /* doc_data returns -99 on call abort_at (0: never) */
  int slow;                 /* doc_data takes longer than inflate (like a parser) */
  unsigned long spin;
};

static int t_begin(void *ud, const char *part) {
  struct tally *t = ud;
  t->adler = adler32(0, NULL, 0);
  t->bytes = 0;
  return dp_buf_printf(&t->log, "begin %s\n", part);
}
static int t_data(void *ud, const char *buf, size_t n) {
  struct tally *t = ud;
  t->bytes += n;
  t->adler = adler32_z(t->adler, (const unsigned char *)buf, n);
  for (int i = 0; i < 40 * t->slow; i++) t->spin = crc32_z(t->spin, (const unsigned char *)buf, n);
  return ++t->calls == t->abort_at ? -99 : 0;
}
static int t_end(void *ud, int status, const char *reason) {
  struct tally *t = ud;
  return dp_buf_printf(&t->log, "end %d %llu %lx %s\n", status, (unsigned long long)t->bytes,
                       t->adler, reason ? reason : "");
}
static void t_err(void *ud, const char *part, int status, const char *reason) {
  struct tally *t = ud;
  dp_buf_printf(&t->log, "error %s %d %s\n", part, status, reason);
}
static void t_note(void *ud, const char *part, const char *msg) {
  struct tally *t = ud;
  dp_buf_printf(&t->log, "note %s %s\n", part, msg);
}
static const dp_unpack_cb_t cb = {t_begin, t_data, t_end, t_err, t_note, NULL};

static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  char tmp[65536];
  size_t k;
  while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) dp_buf_append(&b, tmp, k);
  fclose(f);
  return dp_buf_steal(&b, n);
}

/* threaded: the streamed runs inflate on a helper thread from the first
 * byte, the whole-buffer reference never does. */
static int compare_dir(const char *dir, int threaded) {
  dp_limits_t lim;
  dp_limits_default(&lim);
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  int files = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t n;
    char *data = slurp(path, &n);
    if (!data) continue; /* a subdirectory */
    struct tally whole;
    memset(&whole, 0, sizeof whole);
    dp_buf_init(&whole.log, 0);
    char err1[256] = "";
    dp__inflate_thread_min = threaded ? UINT64_MAX : UINT64_C(4) << 20;
    int rc1 = dp_unpack(&lim, data, n, &cb, &whole, err1, sizeof err1);
    dp__inflate_thread_min = threaded ? 0 : UINT64_C(4) << 20;
    static const size_t chunks[] = {1, 7, 4096, 1 << 20};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
      if (chunks[c] == 1 && n > 300000) continue; /* keep it quick */
      struct tally part;
      memset(&part, 0, sizeof part);
      dp_buf_init(&part.log, 0);
      dp_unpack_stream_t *st = dp_unpack_stream_create(&lim, &cb, &part);
      for (size_t off = 0; off < n; off += chunks[c])
        if (dp_unpack_stream_write(st, data + off, n - off < chunks[c] ? n - off : chunks[c]))
          break;
      char err2[256] = "";
      int rc2 = dp_unpack_stream_finish(st, err2, sizeof err2);
      dp_unpack_stream_destroy(st);
      if (rc1 != rc2 || strcmp(err1, err2) ||
          strcmp(whole.log.data ? whole.log.data : "", part.log.data ? part.log.data : "")) {
        fprintf(stderr, "%s (chunk %zu): rc %d/%d err \"%s\"/\"%s\"\nwhole:\n%s\nstream:\n%s\n",
                path, chunks[c], rc1, rc2, err1, err2, whole.log.data ? whole.log.data : "",
                part.log.data ? part.log.data : "");
        dp_buf_free(&part.log);
        dp_buf_free(&whole.log);
        free(data);
        closedir(d);
        return -1;
      }
      dp_buf_free(&part.log);
    }
    dp_buf_free(&whole.log);
    free(data);
    files++;
    dp__inflate_thread_min = UINT64_C(4) << 20;
  }
  closedir(d);
  return files;
}

TEST(unpack_stream_matches_whole_hostile) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/corpus/hostile", dp_test_shared_dir());
  ASSERT_TRUE(compare_dir(dir, 0) > 20);
}

TEST(unpack_stream_threaded_inflate_matches_hostile) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/corpus/hostile", dp_test_shared_dir());
  ASSERT_TRUE(compare_dir(dir, 1) > 20);
}

TEST(unpack_stream_matches_whole_real) {
  static const char *const sub[] = {"bbustin_dmarc_aggregate_parser", "domainaware_parsedmarc",
                                    "trollByte_dmarc", "tierpod_dmarc-report-converter"};
  for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/corpus/real/%s", dp_test_shared_dir(), sub[i]);
    ASSERT_TRUE(compare_dir(dir, 0) > 0);
    ASSERT_TRUE(compare_dir(dir, 1) > 0);
  }
}

TEST(unpack_stream_empty_and_oversize) {
  dp_limits_t lim;
  dp_limits_default(&lim);
  struct tally t;
  memset(&t, 0, sizeof t);
  dp_buf_init(&t.log, 0);
  char err[256];
  dp_unpack_stream_t *st = dp_unpack_stream_create(&lim, &cb, &t);
  ASSERT_EQ(dp_unpack_stream_finish(st, err, sizeof err), DP_EFORMAT);
  ASSERT_STR_EQ(err, "empty input");
  dp_unpack_stream_destroy(st);
  lim.max_input_size = 10;
  st = dp_unpack_stream_create(&lim, &cb, &t);
  ASSERT_OK(dp_unpack_stream_write(st, "<feedback>", 10));
  ASSERT_OK(dp_unpack_stream_write(st, "</feedback>", 11));
  ASSERT_EQ(dp_unpack_stream_finish(st, err, sizeof err), 0); /* the document carries it */
  ASSERT_CONTAINS(t.log.data, "begin \nend -4003"); /* ended with DP_ELIMIT */
  dp_unpack_stream_destroy(st);
  dp_buf_free(&t.log);
}

/* ---- the helper-thread inflater on big streams ---------------------------- */

static unsigned char *gzip_of(const unsigned char *p, size_t n, size_t *gn) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
  size_t cap = deflateBound(&z, (uLong)n);
  unsigned char *g = malloc(cap);
  z.next_in = (unsigned char *)p;
  z.avail_in = (uInt)n;
  z.next_out = g;
  z.avail_out = (uInt)cap;
  if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
    free(g);
    deflateEnd(&z);
    return NULL;
  }
  *gn = z.total_out;
  deflateEnd(&z);
  return g;
}

/* Stream g through the unpacker in 256 KiB writes (as input_job reads). */
static void run_stream_slow(const dp_limits_t *lim, const unsigned char *g, size_t gn,
                            unsigned abort_at, uint64_t thread_min, int slow, dp_buf_t *out) {
  struct tally t;
  memset(&t, 0, sizeof t);
  dp_buf_init(&t.log, 0);
  t.abort_at = abort_at;
  t.slow = slow;
  dp__inflate_thread_min = thread_min;
  dp_unpack_stream_t *st = dp_unpack_stream_create(lim, &cb, &t);
  int wrc = 0;
  for (size_t off = 0; off < gn && !wrc; off += 256 * 1024)
    wrc = dp_unpack_stream_write(st, g + off, gn - off < 256 * 1024 ? gn - off : 256 * 1024);
  char err[256] = "";
  int rc = dp_unpack_stream_finish(st, err, sizeof err);
  dp_unpack_stream_destroy(st);
  dp__inflate_thread_min = UINT64_C(4) << 20;
  dp_buf_printf(&t.log, "write %d finish %d %s calls %u\n", wrc, rc, err, t.calls);
  *out = t.log;
}

static void run_stream(const dp_limits_t *lim, const unsigned char *g, size_t gn, unsigned abort_at,
                       uint64_t thread_min, dp_buf_t *out) {
  run_stream_slow(lim, g, gn, abort_at, thread_min, 0, out);
}

/* Same events, bytes and reasons with and without the helper thread. */
static int same_both_ways(const dp_limits_t *lim, const unsigned char *g, size_t gn,
                          unsigned abort_at, const char *want) {
  dp_buf_t a, b;
  run_stream(lim, g, gn, abort_at, UINT64_MAX, &a);
  run_stream(lim, g, gn, abort_at, 0, &b);
  int ok = strcmp(a.data, b.data) == 0 && strstr(a.data, want) != NULL;
  if (!ok) fprintf(stderr, "single:\n%s\nhelper:\n%s\nwant: %s\n", a.data, b.data, want);
  dp_buf_free(&a);
  dp_buf_free(&b);
  return ok;
}

TEST(unpack_stream_threaded_inflate_big) {
  dp_limits_t lim;
  dp_limits_default(&lim);
  /* 24 MiB of compressible, not trivially repetitive XML-ish text */
  size_t n = 24u << 20;
  unsigned char *x = malloc(n);
  memcpy(x, "<feedback>", 10);
  uint64_t st = 12345;
  for (size_t i = 10; i < n; i++) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    unsigned v = (unsigned)(st >> 59);
    x[i] = (unsigned char)(v < 26 ? 'a' + v : v < 30 ? ' ' : '\n');
  }
  size_t gn;
  unsigned char *g = gzip_of(x, n, &gn);
  ASSERT_TRUE(g != NULL);
  char want[64];
  snprintf(want, sizeof want, "end 0 %zu %lx \n", n, adler32_z(adler32(0, NULL, 0), x, n));
  ASSERT_TRUE(same_both_ways(&lim, g, gn, 0, want));
  /* the consumer stops in the middle: nothing after the stop reaches it */
  ASSERT_TRUE(same_both_ways(&lim, g, gn, 100, "calls 100\n"));
  ASSERT_TRUE(same_both_ways(&lim, g, gn, 1, "calls 1\n"));
  /* a bad CRC, and a cut stream */
  g[gn - 6] ^= 1;
  ASSERT_TRUE(same_both_ways(&lim, g, gn, 0, "gzip: CRC mismatch after 24.0 MiB of output"));
  g[gn - 6] ^= 1;
  ASSERT_TRUE(same_both_ways(&lim, g, gn * 7 / 10, 0, "gzip stream truncated after"));
  /* corrupt deflate data in the middle */
  unsigned char keep = g[gn / 2];
  g[gn / 2] ^= 0xff;
  g[gn / 2 + 1] ^= 0xff;
  ASSERT_TRUE(same_both_ways(&lim, g, gn, 0, "end -4005"));
  g[gn / 2] = keep;
  g[gn / 2 + 1] ^= 0xff;
  /* the report size limit trips in the middle */
  lim.max_report_size = 10u << 20;
  ASSERT_TRUE(same_both_ways(&lim, g, gn, 0, "end -4003"));
  dp_limits_default(&lim);
  /* The default rule: a stream gets the helper once it has produced the
   * threshold and its consumer has been slower than inflate, switching in
   * the middle of a write; a fast consumer never gets it. */
  {
    dp_buf_t a, b, c;
    run_stream_slow(&lim, g, gn, 0, UINT64_MAX, 1, &a);
    unsigned long runs0 = dp__inflate_helper_runs;
    run_stream_slow(&lim, g, gn, 0, UINT64_C(1) << 20, 1, &b);
    unsigned long runs1 = dp__inflate_helper_runs;
    run_stream_slow(&lim, g, gn, 0, UINT64_C(1) << 20, 0, &c);
    ASSERT_STR_EQ(a.data, b.data);
    ASSERT_STR_EQ(a.data, c.data);
    ASSERT_CONTAINS(a.data, want);
    ASSERT_TRUE(runs1 > runs0);                        /* the slow consumer got it */
    ASSERT_TRUE(dp__inflate_helper_runs == runs1);      /* the fast one did not */
    dp_buf_free(&a);
    dp_buf_free(&b);
    dp_buf_free(&c);
  }
  /* two members and a stray CRLF */
  size_t gn2;
  unsigned char *g2 = malloc(2 * gn + 2);
  memcpy(g2, g, gn);
  memcpy(g2 + gn, g, gn);
  memcpy(g2 + 2 * gn, "\r\n", 2);
  gn2 = 2 * gn + 2;
  ASSERT_TRUE(same_both_ways(&lim, g2, gn2, 0, "end 0 50331648 "));
  free(g2);
  free(g);
  /* the ratio limit trips late: 2 MiB of text, then zeros */
  memset(x + (2u << 20), 0, n - (2u << 20));
  g = gzip_of(x, n, &gn);
  lim.max_ratio = 10;
  ASSERT_TRUE(same_both_ways(&lim, g, gn, 0, "decompressed size exceeds ratio limit 10:1 after"));
  free(g);
  free(x);
}
