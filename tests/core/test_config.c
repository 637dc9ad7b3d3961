/* SPDX-License-Identifier: MIT */
/* tests/core/test_config.c - the config file: comments, quoting, unknown keys
 * and bad lines refused with file and line, a missing default file is fine. */
#include <unistd.h>

#include "core/core.h"
#include "../test.h"

static char *write_cfg(const char *text) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/dp-test-config-XXXXXX");
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  if (write(fd, text, strlen(text)) < 0) path[0] = '\0';
  close(fd);
  return path;
}

TEST(config_reads_settings) {
  char err[256] = "";
  char *p = write_cfg("# dmarcpipe\n\ndb = host=/run/pg dbname=dmarc\n"
                      "  max-report-size=64M  \r\njobs = \"4\"\n; also a comment\n");
  ASSERT_OK(dp_config_load(p, err, sizeof err));
  ASSERT_STR_EQ(dp_config_get("db"), "host=/run/pg dbname=dmarc");
  ASSERT_STR_EQ(dp_config_get("max-report-size"), "64M");
  ASSERT_STR_EQ(dp_config_get("jobs"), "4");
  ASSERT_TRUE(dp_config_get("max-ratio") == NULL);
  ASSERT_STR_EQ(dp_config_path(), p);
  dp_config_free();
  ASSERT_TRUE(dp_config_get("db") == NULL);
  unlink(p);
}

TEST(config_refuses_typos_with_line) {
  char err[256] = "";
  char *p = write_cfg("db = x\nmax-reprot-size = 1G\n");
  ASSERT_EQ(dp_config_load(p, err, sizeof err), DP_EUSAGE);
  ASSERT_CONTAINS(err, ":2: unknown setting 'max-reprot-size'");
  ASSERT_TRUE(dp_config_get("db") == NULL); /* nothing half-loaded */
  unlink(p);
  p = write_cfg("just words\n");
  ASSERT_EQ(dp_config_load(p, err, sizeof err), DP_EUSAGE);
  ASSERT_CONTAINS(err, ":1: expected 'key = value'");
  unlink(p);
}

TEST(config_missing_files) {
  char err[256] = "";
  /* a named file must exist */
  ASSERT_EQ(dp_config_load("/nonexistent/dmarcpipe.conf", err, sizeof err), DP_EUSAGE);
  ASSERT_CONTAINS(err, "/nonexistent/dmarcpipe.conf");
  /* a directory opens but cannot be read: an error, not an empty config */
  err[0] = '\0';
  ASSERT_EQ(dp_config_load("/tmp", err, sizeof err), DP_EUSAGE);
  ASSERT_CONTAINS(err, "/tmp: cannot read the config file");
  ASSERT_TRUE(dp_config_path() == NULL);
  /* the default one need not */
  setenv("XDG_CONFIG_HOME", "/nonexistent-xdg", 1);
  unsetenv("DMARCPIPE_CONFIG");
  ASSERT_OK(dp_config_load(NULL, err, sizeof err));
  ASSERT_TRUE(dp_config_path() == NULL);
  char *d = dp_config_default_path();
  ASSERT_STR_EQ(d, "/nonexistent-xdg/dmarcpipe/config");
  free(d);
}
