/* SPDX-License-Identifier: MIT */
/* tests/query/test_since.c - the --since parser (query/since.c): durations,
 * dates, ISO 8601 timestamps with and without zones, and refusals. */
#include "tests/test.h"

#include "core/core.h"
#include "query/query_int.h"

#define NOW INT64_C(1709251200) /* 2024-03-01T00:00:00Z */

static int64_t since_ok(const char *s) {
  char err[256] = "";
  int64_t t = -1;
  int rc = dp__query_since_parse(s, NOW, &t, err, sizeof err);
  if (rc) fprintf(stderr, "unexpected refusal of '%s': %s\n", s, err);
  return rc ? INT64_MIN : t;
}

TEST(query_since_durations) {
  ASSERT_EQ(since_ok("30d"), NOW - 30 * 86400);
  ASSERT_EQ(since_ok("12h"), NOW - 12 * 3600);
  ASSERT_EQ(since_ok("2w"), NOW - 14 * 86400);
  ASSERT_EQ(since_ok("90m"), NOW - 90 * 60);
  ASSERT_EQ(since_ok("0d"), NOW);
  ASSERT_EQ(since_ok("1000000m"), NOW - INT64_C(60000000));
  /* back before 1970: from the epoch (a million weeks is past PostgreSQL's
   * range: the query failed with "timestamp out of range") */
  ASSERT_EQ(since_ok("1000000w"), 0);
  ASSERT_EQ(since_ok("30000d"), 0);
  ASSERT_EQ(since_ok("007d"), NOW - 7 * 86400);
}

TEST(query_since_dates) {
  ASSERT_EQ(since_ok("2024-03-01"), INT64_C(1709251200));
  ASSERT_EQ(since_ok("1970-01-01"), 0);
  ASSERT_EQ(since_ok("2024-02-29"), INT64_C(1709164800)); /* leap day */
  ASSERT_EQ(since_ok("2000-02-29"), INT64_C(951782400));  /* 400-year leap */
  ASSERT_EQ(since_ok("2024-03-01T00:00:00Z"), INT64_C(1709251200));
  ASSERT_EQ(since_ok("2024-03-01T12:34:56Z"), INT64_C(1709251200) + 12 * 3600 + 34 * 60 + 56);
  ASSERT_EQ(since_ok("2024-03-01T12:34Z"), INT64_C(1709251200) + 12 * 3600 + 34 * 60);
  ASSERT_EQ(since_ok("2024-03-01T12:34:56"), INT64_C(1709251200) + 45296); /* no zone: UTC */
  ASSERT_EQ(since_ok("2024-03-01 12:34:56"), INT64_C(1709251200) + 45296);
  ASSERT_EQ(since_ok("2024-03-01T12:34:56.789Z"), INT64_C(1709251200) + 45296);
  ASSERT_EQ(since_ok("2024-03-01T02:00:00+02:00"), INT64_C(1709251200));
  ASSERT_EQ(since_ok("2024-02-29T19:00:00-0500"), INT64_C(1709251200));
  ASSERT_EQ(since_ok("2024-03-01t00:00z"), INT64_C(1709251200));
}

TEST(query_since_refusals) {
  static const char *bad[] = {
      "",
      "30",
      "d",
      "30x",
      "30 d",
      " 30d",
      "30d ",
      "-30d",
      "+30d",
      "30D",
      "1.5d",
      "30dd",
      "9999999w",
      "2024-3-1",
      "2024-13-01",
      "2024-00-10",
      "2023-02-29",
      "2024-04-31",
      "1969-12-31",
      "2024-03-01T24:00Z",
      "2024-03-01T12:60Z",
      "2024-03-01T12",
      "2024-03-01T1:00",
      "2024-03-01T12:00:00+25:00",
      "2024-03-01T12:00:00+02",
      "2024-03-01X",
      "2024-03-01T12:00:00.Z",
      "yesterday",
      "2024/03/01",
      "03/01/2024",
      "2024-03-01T12:00:00Z junk",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[256] = "";
    int64_t t = 42;
    int rc = dp__query_since_parse(bad[i], NOW, &t, err, sizeof err);
    if (rc != DP_EUSAGE) fprintf(stderr, "accepted '%s' as %lld\n", bad[i], (long long)t);
    ASSERT_EQ(rc, DP_EUSAGE);
    ASSERT_EQ(t, 42); /* untouched on refusal */
    ASSERT_CONTAINS(err, "invalid --since");
    ASSERT_TRUE(strchr(err, '\n') == NULL);
  }
  char err[256];
  int64_t t;
  ASSERT_EQ(dp__query_since_parse(NULL, NOW, &t, err, sizeof err), DP_EUSAGE);
}
