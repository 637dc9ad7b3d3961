/* SPDX-License-Identifier: MIT */
/* tests/test.h - a tiny unit test runner: TEST(name) registers a case, the
 * ASSERT_* macros print both values on failure, and main() runs every case or
 * only the one named on the command line. Include once per test executable. */
#ifndef DP_TEST_H
#define DP_TEST_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*dp_test_fn)(void);
struct dp_test_case { const char *name; dp_test_fn fn; };
static struct dp_test_case dp_tests[512];
static int dp_n_tests;
static int dp_test_failed;

#define TEST(tname)                                                            \
  static void test_##tname(void);                                              \
  __attribute__((constructor)) static void dp_register_##tname(void) {         \
    dp_tests[dp_n_tests].name = #tname;                                        \
    dp_tests[dp_n_tests++].fn = test_##tname;                                  \
  }                                                                            \
  static void test_##tname(void)

#define DP_FAIL_(fmt, ...)                                                     \
  do {                                                                         \
    fprintf(stderr, "%s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);      \
    dp_test_failed = 1;                                                        \
    return;                                                                    \
  } while (0)

#define ASSERT_TRUE(c) do { if (!(c)) DP_FAIL_("ASSERT_TRUE(%s)", #c); } while (0)
#define ASSERT_FALSE(c) do { if (c) DP_FAIL_("ASSERT_FALSE(%s)", #c); } while (0)
#define ASSERT_EQ(a, b)                                                        \
  do {                                                                         \
    long long a_ = (long long)(a), b_ = (long long)(b);                        \
    if (a_ != b_) DP_FAIL_("ASSERT_EQ(%s, %s): %lld != %lld", #a, #b, a_, b_); \
  } while (0)
#define ASSERT_U64_EQ(a, b)                                                    \
  do {                                                                         \
    uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                           \
    if (a_ != b_)                                                              \
      DP_FAIL_("ASSERT_U64_EQ(%s, %s): %" PRIu64 " != %" PRIu64, #a, #b, a_, b_); \
  } while (0)
#define ASSERT_OK(e)                                                           \
  do {                                                                         \
    long long r_ = (long long)(e);                                             \
    if (r_ != 0) DP_FAIL_("ASSERT_OK(%s): returned %lld", #e, r_);             \
  } while (0)
#define ASSERT_STR_EQ(a, b)                                                    \
  do {                                                                         \
    const char *a_ = (a), *b_ = (b);                                           \
    if (!a_ || !b_ || strcmp(a_, b_) != 0)                                     \
      DP_FAIL_("ASSERT_STR_EQ(%s, %s): \"%s\" != \"%s\"", #a, #b,              \
               a_ ? a_ : "(null)", b_ ? b_ : "(null)");                        \
  } while (0)
#define ASSERT_CONTAINS(hay, needle)                                           \
  do {                                                                         \
    const char *h_ = (hay), *n_ = (needle);                                    \
    if (!h_ || !strstr(h_, n_))                                                \
      DP_FAIL_("ASSERT_CONTAINS(%s, %s): \"%s\" lacks \"%s\"", #hay, #needle,  \
               h_ ? h_ : "(null)", n_);                                        \
  } while (0)
#define ASSERT_NOT_NULL(p) do { if (!(p)) DP_FAIL_("ASSERT_NOT_NULL(%s)", #p); } while (0)

/* Directory of ../shared (the corpus); DP_SHARED_DIR in the environment wins. */
static inline const char *dp_test_shared_dir(void) {
  const char *e = getenv("DP_SHARED_DIR");
  return e && *e ? e : DP_SHARED_DIR;
}

int main(int argc, char **argv) {
  int ran = 0, failed = 0;
  for (int i = 0; i < dp_n_tests; i++) {
    if (argc > 1 && strcmp(argv[1], dp_tests[i].name) != 0) continue;
    dp_test_failed = 0;
    dp_tests[i].fn();
    ran++;
    if (dp_test_failed) failed++;
    printf("%s %s\n", dp_test_failed ? "FAIL" : "ok  ", dp_tests[i].name);
  }
  if (argc > 1 && ran == 0) {
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
  }
  printf("%d passed, %d failed\n", ran - failed, failed);
  return failed ? 1 : 0;
}

#endif
