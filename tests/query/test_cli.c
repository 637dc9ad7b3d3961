/* SPDX-License-Identifier: MIT */
/* tests/query/test_cli.c - the argument parsing every query command shares:
 * values land in the options, defaults survive, bad values, stray arguments
 * and a missing --domain are usage errors (exit 2), --help exits 0. */
#include <stdio.h>

#include "query/query_int.h"
#include "../test.h"

static const struct option opts[] = {
    {"db", required_argument, NULL, 'd'},     {"format", required_argument, NULL, 'f'},
    {"domain", required_argument, NULL, 'D'}, {"since", required_argument, NULL, 's'},
    {"by", required_argument, NULL, 'b'},     {"redact", no_argument, NULL, 'R'},
    {"fail", required_argument, NULL, 'F'},   {"html", required_argument, NULL, 'H'},
    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
};

static int usage_calls;
static void usage(FILE *f) {
  (void)f;
  usage_calls++;
}

/* argv is NULL-terminated and starts with the command name. */
static int args(dp_query_opts_t *o, bool need_domain, char **argv) {
  int argc = 0;
  while (argv[argc]) argc++;
  return dp__query_args(o, "cmd", argc, argv, opts, usage, need_domain);
}
#define ARGS(o, need, ...) args((o), (need), (char *[]){"cmd", __VA_ARGS__, NULL})

TEST(query_args_values) {
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  o.by = DP_PERIOD_DAY; /* a caller's default survives when not given */
  ASSERT_EQ(ARGS(&o, true, "--domain", "Example.COM", "--fail", "dkim", "--format", "json",
                 "--redact", "--html", "out.html", "--db", "dbname=x"),
            -1);
  ASSERT_STR_EQ(o.filter.domain, "example.com");
  ASSERT_EQ(o.fail, DP_FAIL_DKIM);
  ASSERT_EQ(o.fmt, DP_QFMT_JSON);
  ASSERT_TRUE(o.redact);
  ASSERT_STR_EQ(o.html, "out.html");
  ASSERT_STR_EQ(o.db, "dbname=x");
  ASSERT_EQ(o.by, DP_PERIOD_DAY);
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "--by", "week", "--since", "2024-03-01"), -1);
  ASSERT_EQ(o.by, DP_PERIOD_WEEK);
  ASSERT_TRUE(o.filter.has_since);
}

TEST(query_args_usage_errors) {
  dp_query_opts_t o;
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, true, "--since", "30d"), 2); /* --domain required */
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "--fail", "all"), 2);
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "--by", "month"), 2);
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "--format", "xml"), 2);
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "--since", "yesterday"), 2);
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "stray"), 2);
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "--nope"), 2);
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, false, "--domain"), 2); /* missing argument */
  usage_calls = 0;
  memset(&o, 0, sizeof o);
  ASSERT_EQ(ARGS(&o, true, "--help"), 0);
  ASSERT_EQ(usage_calls, 1);
}

TEST(query_done_exit_status) {
  ASSERT_EQ(dp__query_done("cmd", NULL, 0, ""), 0);
  ASSERT_EQ(dp__query_done("cmd", NULL, DP_EPG, "server went away"), 2);
}
