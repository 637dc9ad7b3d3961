/* SPDX-License-Identifier: MIT */
/* tests/fuzz/test_regress.c - replays every saved fuzz finding
 * (every file under tests/fuzz/regress/HARNESS) and the shared corpus through the exact
 * code paths of the libFuzzer harnesses (fuzz_common.h), in the ordinary
 * build: a contract violation aborts, the ASan build catches memory errors. */
#include <dirent.h>
#include <sys/stat.h>

#include "tests/test.h"
#include "tests/fuzz/fuzz_common.h"

typedef void (*harness_fn)(const uint8_t *data, size_t size);

static const struct {
  const char *name;
  harness_fn fn;
} harnesses[] = {
    {"parser", dp_fuzz_parser_one},
    {"unpack", dp_fuzz_unpack_one},
    {"mime", dp_fuzz_mime_one},
    {"ingest", dp_fuzz_ingest_one},
};
#define N_HARNESSES (sizeof harnesses / sizeof harnesses[0])

/* Reads a whole file; caller owns result (free). NULL when unreadable. */
static uint8_t *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0;
  uint8_t *b = malloc(cap);
  for (size_t r; b && (r = fread(b + n, 1, cap - n, f)) > 0;) {
    n += r;
    if (n == cap) {
      uint8_t *nb = realloc(b, cap *= 2);
      if (!nb) free(b);
      b = nb;
    }
  }
  fclose(f);
  *len = n;
  return b;
}

/* Runs every regular file under dir (recursively, any order) through fn;
 * returns how many files ran, or -1 when one could not be read. */
static int replay_dir(const char *dir, harness_fn fn) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int ran = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      int r = replay_dir(path, fn);
      if (r < 0) ran = -1;
      if (ran >= 0) ran += r;
      continue;
    }
    if (!S_ISREG(st.st_mode) || strstr(e->d_name, ".md") || strstr(e->d_name, ".tsv")) continue;
    size_t len = 0;
    uint8_t *data = read_all(path, &len);
    if (!data) {
      ran = -1;
      continue;
    }
    fprintf(stderr, "replay %s\n", path); /* names the input if it aborts */
    fn(data, len);
    free(data);
    if (ran >= 0) ran++;
  }
  closedir(d);
  return ran;
}

TEST(fuzz_regress_inputs_replay) {
  ASSERT_OK(dp_align_global_init());
  int total = 0;
  for (size_t i = 0; i < N_HARNESSES; i++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regress/%s", DP_SOURCE_DIR, harnesses[i].name);
    int n = replay_dir(dir, harnesses[i].fn);
    ASSERT_TRUE(n >= 0);
    total += n;
  }
  /* Every finding so far is kept here; the folder is never emptied. */
  ASSERT_TRUE(total > 0);
}

TEST(fuzz_regress_seeds_replay) {
  ASSERT_OK(dp_align_global_init());
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/tests/fuzz/seeds", DP_SOURCE_DIR);
  for (size_t i = 0; i < N_HARNESSES; i++) ASSERT_TRUE(replay_dir(dir, harnesses[i].fn) >= 2);
}

/* The seeds the fuzzers start from: no path may crash on any of them. */
TEST(fuzz_regress_corpus_replay) {
  ASSERT_OK(dp_align_global_init());
  const char *sub[] = {"corpus/hostile", "corpus/real"};
  for (size_t s = 0; s < 2; s++) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s", dp_test_shared_dir(), sub[s]);
    for (size_t i = 0; i < N_HARNESSES; i++) ASSERT_TRUE(replay_dir(dir, harnesses[i].fn) > 10);
  }
}

/* The harness paths must accept good input, or the fuzzers would only ever
 * see the refusal paths: exact results on known corpus files. */
static uint8_t *read_hostile(const char *name, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/corpus/hostile/%s", dp_test_shared_dir(), name);
  return read_all(path, len);
}

TEST(fuzz_regress_parser_path_counts) {
  ASSERT_OK(dp_align_global_init());
  size_t len = 0;
  uint8_t *data = read_hostile("count-huge.xml", &len);
  ASSERT_NOT_NULL(data);
  struct dp_fuzz_parse s;
  size_t cuts[] = {1, len / 2};
  int rc = dp_fuzz_parse_chunks(data, len, cuts, 2, &s);
  free(data);
  ASSERT_OK(rc);
  ASSERT_EQ(s.records, 2);
  ASSERT_U64_EQ(s.messages, UINT64_C(4294967299));
}

TEST(fuzz_regress_ingest_path_counts) {
  ASSERT_OK(dp_align_global_init());
  size_t len = 0;
  uint8_t *data = read_hostile("two-reports.zip", &len);
  ASSERT_NOT_NULL(data);
  struct dp_fuzz_unpack u;
  int rc = dp_fuzz_unpack_run(data, len, &dp_fuzz_ingest_cb, &u);
  free(data);
  ASSERT_OK(rc);
  ASSERT_U64_EQ(u.docs, 2);
  ASSERT_U64_EQ(u.reports_ok, 2);
  ASSERT_U64_EQ(u.records_ok, 3);
  ASSERT_U64_EQ(u.messages_ok, 8);
}

TEST(fuzz_regress_ingest_path_refuses_bomb) {
  ASSERT_OK(dp_align_global_init());
  size_t len = 0;
  uint8_t *data = read_hostile("gzip-bomb.xml.gz", &len);
  ASSERT_NOT_NULL(data);
  struct dp_fuzz_unpack u;
  int rc = dp_fuzz_unpack_run(data, len, &dp_fuzz_ingest_cb, &u);
  free(data);
  /* Refused as a whole or as its one document; never a stored report. */
  ASSERT_TRUE(rc < 0 || u.docs == 1);
  ASSERT_U64_EQ(u.reports_ok, 0);
}

/* Multi-byte UTF-8, a BOM, CDATA, character references and invalid bytes cut
 * at every offset: each chunking gives the same single exact record. */
TEST(fuzz_regress_parser_every_chunking) {
  ASSERT_OK(dp_align_global_init());
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/fuzz/regress/parser/utf8-at-every-chunk-boundary.xml",
           DP_SOURCE_DIR);
  size_t len = 0;
  uint8_t *data = read_all(path, &len);
  ASSERT_NOT_NULL(data);
  size_t *cuts = malloc(len * sizeof *cuts);
  ASSERT_NOT_NULL(cuts);
  int bad = 0;
  for (size_t step = 1; step <= 17 && !bad; step++) {
    size_t n = 0;
    for (size_t at = step; at < len; at += step) cuts[n++] = at;
    struct dp_fuzz_parse s;
    if (dp_fuzz_parse_chunks(data, len, cuts, n, &s) != 0 || s.records != 1 ||
        s.messages != DP_MAX_REPORT_MESSAGES)
      bad = (int)step;
  }
  free(cuts);
  free(data);
  ASSERT_EQ(bad, 0);
}
