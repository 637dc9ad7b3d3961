/* SPDX-License-Identifier: MIT */
/* tests/store/test_db_select.c - choosing the database without a server:
 * --db, the PG* environment, the embedded cluster's home and conninfo (libpq
 * quoting), connect errors as one line, and embedded-cluster refusals. */
#include "store/store.h"
#include "store/store_int.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/test.h"

static const char *const pgvars[] = {"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE"};

static void clear_pg_env(void) {
  for (size_t i = 0; i < sizeof pgvars / sizeof pgvars[0]; i++) unsetenv(pgvars[i]);
}

TEST(store_select_db_option_and_env) {
  clear_pg_env();
  char err[256] = "", *ci = NULL;
  ASSERT_OK(dp_store_select("host=db.example port=5433", &ci, err, sizeof err));
  ASSERT_STR_EQ(ci, "host=db.example port=5433");
  free(ci);
  /* Any PG* variable hands the choice to libpq: "" conninfo. */
  for (size_t i = 0; i < sizeof pgvars / sizeof pgvars[0]; i++) {
    clear_pg_env();
    ASSERT_FALSE(dp__store_pg_env_set());
    setenv(pgvars[i], "x", 1);
    ASSERT_TRUE(dp__store_pg_env_set());
    ci = NULL;
    ASSERT_OK(dp_store_select(NULL, &ci, err, sizeof err));
    ASSERT_STR_EQ(ci, "");
    free(ci);
  }
  /* An empty variable does not count. */
  clear_pg_env();
  setenv("PGHOST", "", 1);
  ASSERT_FALSE(dp__store_pg_env_set());
  clear_pg_env();
}

TEST(store_embed_home) {
  char cwd[4096], want[4200];
  ASSERT_NOT_NULL(getcwd(cwd, sizeof cwd));
  setenv("DMARCPIPE_HOME", "/srv/dp//", 1);
  char *h = dp_embed_home();
  ASSERT_STR_EQ(h, "/srv/dp");
  free(h);
  setenv("DMARCPIPE_HOME", "rel/dir", 1);
  h = dp_embed_home();
  snprintf(want, sizeof want, "%s/rel/dir", cwd);
  ASSERT_STR_EQ(h, want);
  free(h);
  unsetenv("DMARCPIPE_HOME");
  setenv("XDG_DATA_HOME", "/xdg", 1);
  h = dp_embed_home();
  /* As root the cluster runs as 'postgres', who cannot enter /root. */
  ASSERT_STR_EQ(h, geteuid() == 0 ? "/var/lib/dmarcpipe" : "/xdg/dmarcpipe");
  free(h);
  unsetenv("XDG_DATA_HOME");
  setenv("HOME", "/home/u", 1);
  h = dp_embed_home();
  ASSERT_STR_EQ(h, geteuid() == 0 ? "/var/lib/dmarcpipe" : "/home/u/.local/share/dmarcpipe");
  free(h);
}

TEST(store_embed_conninfo_quoting) {
  char *ci = dp_embed_conninfo("/tmp/a b'c\\d");
  ASSERT_STR_EQ(ci, "host='/tmp/a b\\'c\\\\d/run' port=5432 dbname=dmarcpipe user=dmarcpipe");
  /* libpq reads it back to the same directory. */
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(ci, &perr);
  ASSERT_NOT_NULL(opts);
  const char *host = NULL;
  for (PQconninfoOption *o = opts; o->keyword; o++)
    if (!strcmp(o->keyword, "host")) host = o->val;
  ASSERT_STR_EQ(host, "/tmp/a b'c\\d/run");
  PQconninfoFree(opts);
  PQfreemem(perr);
  free(ci);
}

TEST(store_connect_error_is_one_line) {
  char err[512] = "";
  PGconn *c = dp_store_connect("host=/nonexistent/dir port=1 dbname=x", err, sizeof err);
  ASSERT_TRUE(c == NULL);
  ASSERT_CONTAINS(err, "cannot connect to PostgreSQL: ");
  ASSERT_CONTAINS(err, "/nonexistent/dir");
  ASSERT_TRUE(strchr(err, '\n') == NULL);
  c = dp_store_connect("this is not a conninfo", err, sizeof err);
  ASSERT_TRUE(c == NULL);
  ASSERT_CONTAINS(err, "cannot connect to PostgreSQL: ");
  ASSERT_TRUE(strchr(err, '\n') == NULL);
}

TEST(store_errline) {
  char err[64];
  dp__store_errline(err, sizeof err, "x: ", "ERROR:  bad thing\nDETAIL:  more\n");
  ASSERT_STR_EQ(err, "x: ERROR:  bad thing");
  dp__store_errline(err, sizeof err, "x: ", "");
  ASSERT_STR_EQ(err, "x");
  dp__store_errline(err, 8, "prefix: ", "long message");
  ASSERT_STR_EQ(err, "prefix:");
}

TEST(store_embed_refusals) {
  char err[512] = "", out[256] = "", *ci = NULL;
  ASSERT_EQ(dp_embed_start("relative/home", &ci, err, sizeof err), DP_EEMBED);
  ASSERT_CONTAINS(err, "not an absolute path");
  char longhome[200];
  memset(longhome, 'a', sizeof longhome - 1);
  longhome[0] = '/';
  longhome[sizeof longhome - 1] = '\0';
  ASSERT_EQ(dp_embed_start(longhome, &ci, err, sizeof err), DP_EEMBED);
  ASSERT_CONTAINS(err, "too long for a Unix socket path");
  ASSERT_EQ(dp_embed_start("/tmp/a$b", &ci, err, sizeof err), DP_EEMBED);
  ASSERT_CONTAINS(err, "DMARCPIPE_HOME");
  ASSERT_TRUE(ci == NULL);
  /* A server binary directory without a server. */
  char tmpl[] = "/tmp/dp_sel_XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(tmpl));
  chmod(tmpl, 0755);
  setenv("DP_PG_BINDIR", "/nonexistent/bin", 1);
  ASSERT_EQ(dp_embed_start(tmpl, &ci, err, sizeof err), DP_EEMBED);
  ASSERT_CONTAINS(err, "DP_PG_BINDIR=/nonexistent/bin has no initdb");
  unsetenv("DP_PG_BINDIR");
  /* Status and stop of a home without a cluster. */
  ASSERT_EQ(dp_embed_status(tmpl, out, sizeof out), 1);
  ASSERT_STR_EQ(out, "not initialised");
  ASSERT_OK(dp_embed_stop(tmpl, err, sizeof err));
  char p[300];
  snprintf(p, sizeof p, "%s/embed.lock", tmpl);
  unlink(p);
  ASSERT_OK(rmdir(tmpl));
}
