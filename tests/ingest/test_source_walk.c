/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_source_walk.c - dp_source_walk on trees built in a temp
 * directory: plain recursion in name order with symlink rules, Maildirs
 * (tmp/ and index files ignored, Maildir++ and LAYOUT=fs folders read), a Maildir found
 * while walking, single files, missing paths and a stopping callback. */
#include "../test.h"

#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "ingest/source_walk_int.h"

static char root[64];

/* Everything the walk reported, paths relative to root: "+file" or "!path|reason". */
struct seen {
  dp_buf_t log;
  int stop_after; /* add returns 7 at this call (1-based); 0 never */
  int adds;
};

static const char *rel(const char *p) {
  size_t n = strlen(root);
  return strncmp(p, root, n) == 0 ? p + n + (p[n] == '/') : p;
}

static int on_add(void *ud, const char *file) {
  struct seen *s = ud;
  dp_buf_printf(&s->log, "+%s\n", rel(file));
  return ++s->adds == s->stop_after ? 7 : 0;
}

static void on_err(void *ud, const char *path, const char *reason) {
  struct seen *s = ud;
  dp_buf_printf(&s->log, "!%s|%s\n", rel(path), reason);
}

static void mk(const char *relpath, const char *content) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", root, relpath);
  /* create the parent directories */
  for (char *q = p + strlen(root) + 1; *q; q++) {
    if (*q != '/') continue;
    *q = '\0';
    mkdir(p, 0755);
    *q = '/';
  }
  if (!content) {
    mkdir(p, 0755);
    return;
  }
  FILE *f = fopen(p, "w");
  if (f) {
    fputs(content, f);
    fclose(f);
  }
}

static void mklink(const char *target, const char *relpath) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", root, relpath);
  if (symlink(target, p) != 0) perror("symlink");
}

static const char *walk(struct seen *s, const char *relpath, int stop_after, int *rc) {
  char p[512];
  snprintf(p, sizeof p, "%s%s%s", root, relpath[0] ? "/" : "", relpath);
  memset(s, 0, sizeof *s);
  dp_buf_init(&s->log, 0);
  s->stop_after = stop_after;
  *rc = dp_source_walk(p, on_add, on_err, s);
  return s->log.data ? s->log.data : "";
}

static void setup(void) {
  snprintf(root, sizeof root, "/tmp/dp-walk-XXXXXX");
  if (!mkdtemp(root)) perror("mkdtemp");
  /* a plain tree */
  mk("plain/b.xml", "x");
  mk("plain/a/z.xml", "x");
  mk("plain/a/y.xml", "x");
  mk("plain/a/tmp/t.xml", "x"); /* tmp/ outside a Maildir is an ordinary directory */
  mklink("a", "plain/c-dirlink");
  mklink("b.xml", "plain/d-filelink");
  mklink("nowhere", "plain/e-dangling");
  /* a Maildir with a Maildir++ folder */
  mk("md/cur/1.host:2,S", "m");
  mk("md/cur/.hidden", "m");
  mk("md/new/2.host", "m");
  mk("md/tmp/3.host", "being delivered");
  mk("md/dovecot-uidlist", "3 V1 N1");
  mk("md/dovecot.index.cache", "bin");
  mk("md/.Reports/cur/4.host:2,", "m");
  mk("md/.Reports/new/5.host", "m");
  mk("md/.Reports/tmp/6.host", "m");
  mk("md/.Reports/maildirfolder", "");
  mk("md/.NotAFolder/x", "m"); /* no cur/new: not a Maildir++ folder */
  mk("md/courierimapkeywords/y", "m");
  /* Dovecot LAYOUT=fs: folders are plain subdirectories, nested too */
  mk("md/Reports/cur/12.host:2,S", "m");
  mk("md/Reports/new/13.host", "m");
  mk("md/Reports/tmp/14.host", "m");
  mk("md/Reports/Old/new/15.host", "m");
  mk("md/Reports/Old/cur", NULL);
  /* a Maildir found while walking a plain directory */
  mk("tree/x.eml", "m");
  mk("tree/mail/Maildir/cur", NULL);
  mk("tree/mail/Maildir/new/7.host", "m");
  mk("tree/mail/Maildir/tmp/8.host", "m");
  /* not Maildirs: cur/ only; new/ a symbolic link */
  mk("half/cur/9", "m");
  mk("linked/cur/10", "m");
  mk("linked/real-new/11", "m");
  mklink("real-new", "linked/new");
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", root);
}

TEST(test_source_walk_plain_dir) {
  setup();
  struct seen s;
  int rc;
  /* name order, recursive; the directory link is not followed, the file link is */
  ASSERT_STR_EQ(
      walk(&s, "plain", 0, &rc),
      "+plain/a/tmp/t.xml\n+plain/a/y.xml\n+plain/a/z.xml\n+plain/b.xml\n+plain/d-filelink\n");
  ASSERT_OK(rc);
  dp_buf_free(&s.log);
  teardown();
}

TEST(test_source_walk_maildir) {
  setup();
  struct seen s;
  int rc;
  ASSERT_EQ(dp_source_is_maildir(root), 0);
  char p[512];
  snprintf(p, sizeof p, "%s/md", root);
  ASSERT_EQ(dp_source_is_maildir(p), 1);
  /* only cur/ and new/ (folders first: ".Reports" and "Reports" sort
   * before "cur"), never tmp/, index files, dot files or directories that
   * are no Maildir */
  ASSERT_STR_EQ(walk(&s, "md", 0, &rc),
                "+md/.Reports/cur/4.host:2,\n+md/.Reports/new/5.host\n"
                "+md/Reports/Old/new/15.host\n+md/Reports/cur/12.host:2,S\n"
                "+md/Reports/new/13.host\n+md/cur/1.host:2,S\n+md/new/2.host\n");
  ASSERT_OK(rc);
  dp_buf_free(&s.log);
  /* a Maildir++ folder given alone is a Maildir too */
  ASSERT_STR_EQ(walk(&s, "md/.Reports", 0, &rc),
                "+md/.Reports/cur/4.host:2,\n+md/.Reports/new/5.host\n");
  dp_buf_free(&s.log);
  teardown();
}

TEST(test_source_walk_maildir_inside_tree) {
  setup();
  struct seen s;
  int rc;
  ASSERT_STR_EQ(walk(&s, "tree", 0, &rc), "+tree/mail/Maildir/new/7.host\n+tree/x.eml\n");
  dp_buf_free(&s.log);
  /* cur/ alone, or new/ as a symbolic link: ordinary directories */
  ASSERT_STR_EQ(walk(&s, "half", 0, &rc), "+half/cur/9\n");
  dp_buf_free(&s.log);
  ASSERT_STR_EQ(walk(&s, "linked", 0, &rc), "+linked/cur/10\n+linked/real-new/11\n");
  dp_buf_free(&s.log);
  teardown();
}

TEST(test_source_walk_files_errors_and_stop) {
  setup();
  struct seen s;
  int rc;
  ASSERT_STR_EQ(walk(&s, "plain/b.xml", 0, &rc), "+plain/b.xml\n");
  dp_buf_free(&s.log);
  ASSERT_STR_EQ(walk(&s, "plain/d-filelink", 0, &rc), "+plain/d-filelink\n");
  dp_buf_free(&s.log);
  /* a directory link given by name is followed: the user asked for it */
  ASSERT_STR_EQ(walk(&s, "plain/c-dirlink", 0, &rc),
                "+plain/c-dirlink/tmp/t.xml\n+plain/c-dirlink/y.xml\n+plain/c-dirlink/z.xml\n");
  dp_buf_free(&s.log);
  ASSERT_STR_EQ(walk(&s, "missing", 0, &rc), "!missing|No such file or directory\n");
  ASSERT_OK(rc);
  dp_buf_free(&s.log);
  /* add's non-zero value stops the walk and comes back */
  ASSERT_STR_EQ(walk(&s, "plain", 2, &rc), "+plain/a/tmp/t.xml\n+plain/a/y.xml\n");
  ASSERT_EQ(rc, 7);
  dp_buf_free(&s.log);
  ASSERT_STR_EQ(walk(&s, "md", 1, &rc), "+md/.Reports/cur/4.host:2,\n");
  ASSERT_EQ(rc, 7);
  dp_buf_free(&s.log);
  teardown();
}
