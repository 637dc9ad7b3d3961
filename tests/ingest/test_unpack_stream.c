/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_unpack_stream.c - feeding an input piece by piece through
 * dp_unpack_stream gives exactly what dp_unpack gives for the whole buffer:
 * the same documents, bytes, outcomes and refusals, for every real and
 * hostile corpus file and several chunk sizes. */
#include <dirent.h>
#include <stdio.h>
#include <zlib.h>

#include "ingest/unpack_int.h"
#include "../test.h"

struct tally {
  dp_buf_t log; /* one line per event: begin/end(status)/error/note */
  uint64_t bytes;
  unsigned long adler;
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
  return 0;
}
static int t_end(void *ud, int status, const char *reason) {
  struct tally *t = ud;
  (void)reason;
  return dp_buf_printf(&t->log, "end %d %llu %lx\n", status, (unsigned long long)t->bytes,
                       t->adler);
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

static int compare_dir(const char *dir) {
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
    dp_buf_init(&whole.log, 0);
    char err1[256] = "";
    int rc1 = dp_unpack(&lim, data, n, &cb, &whole, err1, sizeof err1);
    static const size_t chunks[] = {1, 7, 4096, 1 << 20};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
      if (chunks[c] == 1 && n > 300000) continue; /* keep it quick */
      struct tally part;
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
  }
  closedir(d);
  return files;
}

TEST(unpack_stream_matches_whole_hostile) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/corpus/hostile", dp_test_shared_dir());
  ASSERT_TRUE(compare_dir(dir) > 20);
}

TEST(unpack_stream_matches_whole_real) {
  static const char *const sub[] = {"bbustin_dmarc_aggregate_parser", "domainaware_parsedmarc",
                                    "trollByte_dmarc", "tierpod_dmarc-report-converter"};
  for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/corpus/real/%s", dp_test_shared_dir(), sub[i]);
    ASSERT_TRUE(compare_dir(dir) > 0);
  }
}

TEST(unpack_stream_empty_and_oversize) {
  dp_limits_t lim;
  dp_limits_default(&lim);
  struct tally t;
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
