/* SPDX-License-Identifier: MIT */
/* store/pg_embed.c - the embedded PostgreSQL cluster: a private cluster under
 * $DMARCPIPE_HOME created with initdb and run with pg_ctl, reachable only via a
 * Unix socket in a private directory (no TCP). As root the server runs as the
 * 'postgres' system user, since PostgreSQL refuses to run as root. */
/* nftw() is XSI. */
#define _GNU_SOURCE /* renameat2 (RENAME_NOREPLACE) */
#define _XOPEN_SOURCE 700

#include "store/store.h"
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The database superuser of the embedded cluster. A fixed name rather than the
 * OS user's, so the conninfo does not depend on who started the cluster. */
#define EMBED_SUPERUSER "dmarcpipe"
#define EMBED_DBNAME "dmarcpipe"
/* Only names the socket file (.s.PGSQL.5432): listen_addresses is empty. */
#define EMBED_PORT "5432"
#define EMBED_SYSUSER "postgres"
#define START_TIMEOUT_S "120"

/* Who runs the server: ourselves, or (as root) the postgres system user. */
struct runas {
  bool drop;  /* fork+setuid before exec */
  uid_t uid;
  gid_t gid;
  char name[64];
  /* Supplementary groups, looked up before fork: the child of a possibly
   * multi-threaded process must not call initgroups() (it may malloc). */
  gid_t groups[64];
  int n_groups;
};

/* ------------------------------------------------------------------------ */
/* Paths and small file helpers */

/* dir/name into out; "" when it does not fit, so that the operation on it
 * fails instead of acting on a truncated path. */
static bool pjoin(char *out, size_t outlen, const char *dir, const char *name) {
  int n = snprintf(out, outlen, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= outlen) {
    out[0] = '\0';
    return false;
  }
  return true;
}

static char *path_join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", a, b);
  return p;
}

/** Directory of the embedded cluster (see store.h). Caller owns result; free(). */
char *dp_embed_home(void) {
  const char *e = getenv("DMARCPIPE_HOME");
  char *home = NULL;
  if (e && *e) {
    if (e[0] == '/') {
      home = strdup(e);
    } else {
      /* The socket directory in the conninfo must be absolute. */
      char cwd[4096];
      if (!getcwd(cwd, sizeof cwd)) return NULL;
      home = path_join(cwd, e);
    }
  } else if (geteuid() == 0) {
    home = strdup("/var/lib/dmarcpipe");
  } else if ((e = getenv("XDG_DATA_HOME")) && e[0] == '/') {
    home = path_join(e, "dmarcpipe");
  } else {
    const char *h = getenv("HOME");
    if (!h || h[0] != '/') {
      struct passwd *pw = getpwuid(geteuid());
      h = pw ? pw->pw_dir : NULL;
    }
    if (!h || h[0] != '/') return NULL;
    home = path_join(h, ".local/share/dmarcpipe");
  }
  /* Trailing slashes would double up in derived paths. */
  if (home) {
    size_t n = strlen(home);
    while (n > 1 && home[n - 1] == '/') home[--n] = '\0';
  }
  return home;
}

/** The libpq connection string for the embedded cluster in home. Caller owns; free(). */
char *dp_embed_conninfo(const char *home) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  char *run = path_join(home, "run");
  int rc = run ? 0 : DP_ENOMEM;
  if (!rc) rc = dp_buf_puts(&b, "host=");
  if (!rc) rc = dp__store_conninfo_value(&b, run);
  if (!rc) rc = dp_buf_puts(&b, " port=" EMBED_PORT " dbname=" EMBED_DBNAME " user=" EMBED_SUPERUSER);
  free(run);
  if (rc) {
    dp_buf_free(&b);
    return NULL;
  }
  return dp_buf_steal(&b, NULL);
}

static bool file_exists(const char *dir, const char *name) {
  char p[4200];
  struct stat st;
  pjoin(p, sizeof p, dir, name);
  return stat(p, &st) == 0;
}

/* Create directory p with exactly mode, whatever the umask (often 077 for
 * root, which would lock 'postgres' out). A plain mkdir + chmod leaves a
 * moment in which a second dmarcpipe starting at the same time finds the
 * directory but cannot let 'postgres' through it yet; so the directory is
 * made under a private name, given its mode, and only then renamed into
 * place (never replacing one that appeared meanwhile). -1 with errno
 * EEXIST when p exists. */
static int mkdir_exact(const char *p, mode_t mode) {
  struct stat st;
  if (stat(p, &st) == 0) { /* the usual case: touch nothing */
    errno = EEXIST;
    return -1;
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.new-%ld", p, (long)getpid());
  if (mkdir(tmp, 0700) && (errno != EEXIST || rmdir(tmp) || mkdir(tmp, 0700))) {
    /* no such parent, read-only, ... : say it about p itself */
    return mkdir(p, mode) == 0 ? chmod(p, mode) : -1;
  }
  if (chmod(tmp, mode) == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, p, RENAME_NOREPLACE) == 0)
    return 0;
  int e = errno;
  rmdir(tmp);
  if (e == EINVAL || e == ENOSYS) /* a file system without RENAME_NOREPLACE */
    return mkdir(p, mode) == 0 ? chmod(p, mode) : -1;
  errno = e;
  return -1;
}

/* mkdir -p; new directories get mode (parents 0755 so that others can pass). */
static int mkdirs(const char *path, mode_t mode) {
  char p[4096];
  if (strlen(path) >= sizeof p) return -1;
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir_exact(p, 0755) && errno != EEXIST) return -1;
    *s = '/';
  }
  if (mkdir_exact(p, mode) == 0) return 0;
  return errno == EEXIST ? 0 : -1;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st;
  (void)f;
  return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static int rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st) && errno == ENOENT) return 0;
  return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The most telling line near the end of a log: the last FATAL/ERROR/PANIC
 * line of its final 8 KiB, else its last non-empty line. */
static void log_tail(const char *path, long from, char *out, size_t outlen) {
  out[0] = '\0';
  FILE *f = fopen(path, "r");
  if (!f) return;
  char buf[8193];
  long off = from;
  if (fseek(f, 0, SEEK_END) == 0) {
    long sz = ftell(f);
    if (sz - off > 8192) off = sz - 8192;
  }
  fseek(f, off, SEEK_SET);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *best = NULL, *last = NULL;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char *s = line;
    while (*s == ' ' || *s == '\t' || *s == '\r') s++;
    if (!*s) continue;
    last = s;
    if (strstr(s, "FATAL") || strstr(s, "ERROR") || strstr(s, "PANIC") || strstr(s, "error:"))
      best = s;
  }
  if (!best) best = last;
  if (best) {
    size_t l = strcspn(best, "\r");
    snprintf(out, outlen, "%.*s", (int)(l > 1000 ? 1000 : l), best);
  }
}

/* ------------------------------------------------------------------------ */
/* Finding the server binaries */

static bool is_exec(const char *dir, const char *name) {
  char p[4200];
  pjoin(p, sizeof p, dir, name);
  return access(p, X_OK) == 0;
}

static bool has_server(const char *dir) {
  return is_exec(dir, "initdb") && is_exec(dir, "pg_ctl") && is_exec(dir, "postgres");
}

/* The bin directory: $DP_PG_BINDIR; else /usr/lib/postgresql/<major>/bin for the
 * cluster's own major version when want > 0 and installed, else the highest
 * installed (Debian layout); else the directory of pg_ctl in $PATH. */
static int find_bindir(int want, char *out, size_t outlen, char *err, size_t errlen) {
  const char *e = getenv("DP_PG_BINDIR");
  if (e && *e) {
    if (!has_server(e)) {
      snprintf(err, errlen, "DP_PG_BINDIR=%s has no initdb, pg_ctl and postgres", e);
      return DP_EEMBED;
    }
    snprintf(out, outlen, "%s", e);
    return 0;
  }
  int best = -1;
  DIR *d = opendir("/usr/lib/postgresql");
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      char *endp;
      long v = strtol(de->d_name, &endp, 10);
      if (endp == de->d_name || *endp || v <= 0 || v > 100000) continue;
      char dir[300];
      snprintf(dir, sizeof dir, "/usr/lib/postgresql/%ld/bin", v);
      if (!has_server(dir)) continue;
      if (v == want) {
        best = (int)v;
        break;
      }
      if (v > best) best = (int)v;
    }
    closedir(d);
  }
  if (best > 0) {
    snprintf(out, outlen, "/usr/lib/postgresql/%d/bin", best);
    return 0;
  }
  const char *path = getenv("PATH");
  if (path) {
    char *copy = strdup(path), *save = NULL;
    for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir; dir = strtok_r(NULL, ":", &save)) {
      if (*dir == '/' && has_server(dir)) {
        snprintf(out, outlen, "%s", dir);
        free(copy);
        return 0;
      }
    }
    free(copy);
  }
  snprintf(err, errlen, "no PostgreSQL server found (initdb, pg_ctl, postgres): install the "
                        "server package (e.g. apt install postgresql), set DP_PG_BINDIR, or "
                        "use --db / PGHOST for an existing server");
  return DP_EEMBED;
}

/* ------------------------------------------------------------------------ */
/* Running initdb and pg_ctl */

static int runas_init(struct runas *ra, char *err, size_t errlen) {
  memset(ra, 0, sizeof *ra);
  if (geteuid() != 0) {
    ra->uid = geteuid();
    ra->gid = getegid();
    return 0;
  }
  struct passwd *pw = getpwnam(EMBED_SYSUSER);
  if (!pw || pw->pw_uid == 0) {
    snprintf(err, errlen, "PostgreSQL refuses to run as root and there is no '%s' system user "
                          "to run the embedded cluster as: run dmarcpipe as a normal user, or "
                          "use --db", EMBED_SYSUSER);
    return DP_EEMBED;
  }
  ra->drop = true;
  ra->uid = pw->pw_uid;
  ra->gid = pw->pw_gid;
  snprintf(ra->name, sizeof ra->name, "%s", pw->pw_name);
  ra->n_groups = (int)(sizeof ra->groups / sizeof ra->groups[0]);
  if (getgrouplist(ra->name, ra->gid, ra->groups, &ra->n_groups) < 0) {
    /* More than 64 groups: keep the primary one only. */
    ra->groups[0] = ra->gid;
    ra->n_groups = 1;
  }
  return 0;
}

/* Give path to the server's user when running as root. */
static int give(const struct runas *ra, const char *path, char *err, size_t errlen) {
  if (!ra->drop) return 0;
  if (chown(path, ra->uid, ra->gid)) {
    snprintf(err, errlen, "chown %s to %s: %s", path, ra->name, strerror(errno));
    return DP_EEMBED;
  }
  return 0;
}

/* Become the server's user; in a forked child only. */
static int drop_privileges(const struct runas *ra) {
  if (!ra->drop) return 0;
  if (setgid(ra->gid) || setgroups((size_t)ra->n_groups, ra->groups) || setuid(ra->uid)) return -1;
  /* Paranoia: regaining root must be impossible now. */
  if (setuid(0) == 0) return -1;
  return 0;
}

/* Run argv[0] (a full path) with stdin from /dev/null and stdout+stderr to
 * logpath (truncated), as the server's user, in directory cwd; no shell. The
 * exit status, 127 when exec failed, or -1 when fork failed. */
static int run_cmd(const struct runas *ra, const char *cwd, const char *logpath, char *const argv[]) {
  /* Prepared before fork: the child only makes system calls. */
  int logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (logfd < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(logfd);
    return -1;
  }
  if (pid == 0) {
    int nul = open("/dev/null", O_RDONLY);
    if (nul < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0) _exit(126);
    if (drop_privileges(ra) || chdir(cwd)) {
      static const char msg[] = "cannot switch to the server's user or directory\n";
      ssize_t w = write(2, msg, sizeof msg - 1);
      (void)w;
      _exit(126);
    }
    execv(argv[0], argv);
    static const char msg[] = "exec failed\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
  }
  close(logfd);
  int st;
  while (waitpid(pid, &st, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

/* As root: can the server's user pass every directory from / down to home?
 * Checked by that user itself (access() in a child), so ACLs and groups count. */
static int check_traversal(const struct runas *ra, const char *home, char *err, size_t errlen) {
  if (!ra->drop) return 0;
  int fds[2];
  if (pipe(fds)) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    return DP_EEMBED;
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    snprintf(err, errlen, "fork: %s", strerror(errno));
    return DP_EEMBED;
  }
  if (pid == 0) {
    close(fds[0]);
    if (drop_privileges(ra)) _exit(2);
    char p[4096];
    size_t n = strlen(home);
    if (n >= sizeof p) _exit(2);
    memcpy(p, home, n + 1);
    for (size_t i = 1; i <= n; i++) {
      if (p[i] != '/' && p[i] != '\0') continue;
      char c = p[i];
      p[i] = '\0';
      if (access(p, X_OK)) {
        ssize_t w = write(fds[1], p, i);
        (void)w;
        _exit(1);
      }
      p[i] = c;
    }
    _exit(0);
  }
  close(fds[1]);
  char bad[4096];
  ssize_t got = 0, r;
  while ((r = read(fds[0], bad + got, sizeof bad - 1 - (size_t)got)) > 0) got += r;
  close(fds[0]);
  bad[got > 0 ? got : 0] = '\0';
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  if (got > 0)
    snprintf(err, errlen, "running as root, the embedded cluster runs as '%s', who cannot enter "
                          "%s: set DMARCPIPE_HOME to a directory it can reach (e.g. "
                          "/var/lib/dmarcpipe) or chmod o+x %s", ra->name, bad, bad);
  else
    snprintf(err, errlen, "cannot switch to the '%s' user to check %s", ra->name, home);
  return DP_EEMBED;
}

/* ------------------------------------------------------------------------ */
/* Cluster state */

static bool pid_is_postgres(long pid);

/* The postmaster's pid from pgdata/postmaster.pid when that process exists,
 * else 0. A stale file (crash, reboot) reads as not running. */
static long running_pid(const char *pgdata) {
  char p[4200];
  pjoin(p, sizeof p, pgdata, "postmaster.pid");
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  long pid = 0;
  if (fscanf(f, "%ld", &pid) != 1) pid = 0;
  fclose(f);
  return pid > 0 && pid_is_postgres(pid) ? pid : 0;
}

/* Is pid a live PostgreSQL server process? After a reboot or container
 * restart the pid of a stale postmaster.pid is often reused by another
 * program, which PostgreSQL would take for a running server. */
static bool pid_is_postgres(long pid) {
  if (kill((pid_t)pid, 0) != 0 && errno != EPERM) return false;
  char p[64], comm[64] = "";
  snprintf(p, sizeof p, "/proc/%ld/comm", pid);
  FILE *f = fopen(p, "r");
  if (!f) return access("/proc/self/comm", R_OK) != 0; /* no /proc: trust kill() */
  bool ok = fgets(comm, sizeof comm, f) != NULL;
  fclose(f);
  return ok && (!strncmp(comm, "postgres", 8) || !strncmp(comm, "postmaster", 10));
}

/* Called with embed.lock held when running_pid() said the server is gone.
 * A socket lock file is only an interlock on the socket: remove it. The data
 * directory's postmaster.pid also lets PostgreSQL check that no backend of a
 * crashed server still uses its shared memory, so it is kept; only a pid in it
 * that now belongs to another program (after a reboot or container restart)
 * is replaced by a pid known to be dead, which PostgreSQL then treats as
 * stale and goes on to the shared memory check. */
static void retire_stale_locks(const char *pgdata, const char *run) {
  char p[4200];
  pjoin(p, sizeof p, run, ".s.PGSQL." EMBED_PORT ".lock");
  unlink(p);
  pjoin(p, sizeof p, run, ".s.PGSQL." EMBED_PORT);
  unlink(p);

  pjoin(p, sizeof p, pgdata, "postmaster.pid");
  char buf[4096];
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  long pid = strtol(buf, NULL, 10);
  if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM)) return;
  pid_t dead = fork();
  if (dead < 0) return;
  if (dead == 0) _exit(0);
  while (waitpid(dead, NULL, 0) < 0 && errno == EINTR) {
  }
  const char *rest = strchr(buf, '\n');
  char line[32];
  int ll = snprintf(line, sizeof line, "%ld", (long)dead);
  fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t w = write(fd, line, (size_t)ll);
  if (w == ll && rest) w = write(fd, rest, strlen(rest));
  (void)w;
  close(fd);
}

/* Wait until the server at conninfo accepts connections, up to secs. */
static bool wait_ready(const char *conninfo, int secs) {
  for (int i = 0; i < secs * 10; i++) {
    if (PQping(conninfo) == PQPING_OK) return true;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  return false;
}

/* A postgresql.conf value: single-quoted, quotes doubled. */
static int conf_quote(dp_buf_t *b, const char *v) {
  int rc = dp_buf_putc(b, '\'');
  for (; !rc && *v; v++) rc = *v == '\'' ? dp_buf_puts(b, "''") : dp_buf_putc(b, *v);
  return rc ? rc : dp_buf_putc(b, '\'');
}

/* shared_buffers in MB: an eighth of physical memory, clamped to 128..1024. */
static long shared_buffers_mb(void) {
  long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
  long mb = pages > 0 && psz > 0 ? (long)((double)pages * (double)psz / 8.0 / 1048576.0) : 128;
  return mb < 128 ? 128 : mb > 1024 ? 1024 : mb;
}

/* Write pgdata/dmarcpipe.conf, included from postgresql.conf. Rewritten at
 * each start so that a moved home still gets the right socket directory. The
 * settings go in a file, not on pg_ctl's -o, because pg_ctl passes -o through
 * a shell. */
static int write_conf(const struct runas *ra, const char *pgdata, const char *run, char *err,
                      size_t errlen) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int rc = dp_buf_puts(&b, "# written by dmarcpipe at each start; edits are lost\n"
                           "listen_addresses = ''\nport = " EMBED_PORT "\n"
                           "unix_socket_directories = ");
  if (!rc) rc = conf_quote(&b, run);
  /* Durability: reports are marked done once committed. */
  if (!rc) rc = dp_buf_puts(&b, "\nunix_socket_permissions = 0700\nfsync = on\n"
                                "synchronous_commit = on\nfull_page_writes = on\n");
  /* Memory: PostgreSQL's default shared_buffers (128 MB) is far smaller than
   * the aggregates of a large database, and the catch-up upserts all of them:
   * with 128 MB, pg_stat_bgwriter counted 4M buffers (32 GB) written by the
   * backends themselves after an ingest and a catch-up of 10.6M records. An
   * eighth of RAM, between 128 MB and 1 GB, leaves most memory to the rest of
   * the machine (and the OS page cache, which PostgreSQL relies on too).
   * Fewer WAL-forced checkpoints during a large ingest or catch-up: each one
   * makes the next write of every page a full-page image. */
  char mem[160];
  snprintf(mem, sizeof mem, "shared_buffers = %ldMB\nmax_wal_size = 4GB\n", shared_buffers_mb());
  if (!rc) rc = dp_buf_puts(&b, mem);
  char *p = path_join(pgdata, "dmarcpipe.conf");
  if (rc || !p) {
    dp_buf_free(&b);
    free(p);
    snprintf(err, errlen, "out of memory");
    return DP_ENOMEM;
  }
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int ok = fd >= 0 && write(fd, b.data, b.len) == (ssize_t)b.len;
  if (fd >= 0) close(fd);
  dp_buf_free(&b);
  if (!ok) {
    snprintf(err, errlen, "cannot write %s: %s", p, strerror(errno));
    free(p);
    return DP_EEMBED;
  }
  rc = give(ra, p, err, errlen);
  free(p);
  return rc;
}

/* Make the new cluster include dmarcpipe.conf (its last word wins). */
static int include_conf(const char *pgdata, char *err, size_t errlen) {
  char p[4200];
  pjoin(p, sizeof p, pgdata, "postgresql.conf");
  FILE *f = fopen(p, "a");
  if (!f || fputs("\ninclude_if_exists = 'dmarcpipe.conf'\n", f) < 0 || fclose(f)) {
    snprintf(err, errlen, "cannot append to %s: %s", p, strerror(errno));
    return DP_EEMBED;
  }
  return 0;
}

/* initdb into pgdata.init, then rename: a cluster directory that exists is
 * always complete, even after a crash in the middle of initdb. */
static int create_cluster(const struct runas *ra, const char *home, const char *bindir,
                          char *err, size_t errlen) {
  char tmp[4200], pgdata[4200], log[4200], exe[4200];
  pjoin(tmp, sizeof tmp, home, "pgdata.init");
  pjoin(pgdata, sizeof pgdata, home, "pgdata");
  pjoin(log, sizeof log, home, "initdb.log");
  pjoin(exe, sizeof exe, bindir, "initdb");
  if (rm_rf(tmp) || mkdir(tmp, 0700)) {
    snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
    return DP_EEMBED;
  }
  int rc = give(ra, tmp, err, errlen);
  if (rc) return rc;
  char *const argv[] = {exe, "-D", tmp, "--auth=trust", "--username=" EMBED_SUPERUSER,
                        "-E", "UTF8", "--locale=C", NULL};
  int st = run_cmd(ra, home, log, argv);
  if (st != 0) {
    char tail[1100];
    log_tail(log, 0, tail, sizeof tail);
    snprintf(err, errlen, "%s failed (exit %d): %s", exe, st, tail[0] ? tail : "see initdb.log");
    rm_rf(tmp);
    return DP_EEMBED;
  }
  if ((rc = include_conf(tmp, err, errlen))) return rc;
  if (rename(tmp, pgdata)) {
    snprintf(err, errlen, "rename %s to %s: %s", tmp, pgdata, strerror(errno));
    return DP_EEMBED;
  }
  return 0;
}

/* Major version of the cluster (pgdata/PG_VERSION), 0 when unknown. */
static int cluster_major(const char *pgdata) {
  char p[4200];
  pjoin(p, sizeof p, pgdata, "PG_VERSION");
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  int v = 0;
  if (fscanf(f, "%d", &v) != 1) v = 0;
  fclose(f);
  return v;
}

/* Create the dmarcpipe database if missing (connected to "postgres"). */
static int ensure_database(const char *home, char *err, size_t errlen) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  char *run = path_join(home, "run");
  int rc = run ? dp_buf_puts(&b, "host=") : DP_ENOMEM;
  if (!rc) rc = dp__store_conninfo_value(&b, run);
  if (!rc) rc = dp_buf_puts(&b, " port=" EMBED_PORT " dbname=postgres user=" EMBED_SUPERUSER
                                " connect_timeout=30");
  free(run);
  if (rc) {
    dp_buf_free(&b);
    snprintf(err, errlen, "out of memory");
    return DP_ENOMEM;
  }
  PGconn *c = PQconnectdb(b.data);
  dp_buf_free(&b);
  if (PQstatus(c) != CONNECTION_OK) {
    dp__store_errline(err, errlen, "embedded cluster started but refuses connections: ",
                      PQerrorMessage(c));
    PQfinish(c);
    return DP_EEMBED;
  }
  PGresult *res = PQexec(c, "SELECT 1 FROM pg_database WHERE datname = '" EMBED_DBNAME "'");
  int have = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
  PQclear(res);
  rc = 0;
  if (!have) {
    res = PQexec(c, "CREATE DATABASE " EMBED_DBNAME);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    /* 42P04 duplicate_database: someone else created it meanwhile. */
    if (PQresultStatus(res) != PGRES_COMMAND_OK && !(state && !strcmp(state, "42P04"))) {
      dp__store_errline(err, errlen, "CREATE DATABASE " EMBED_DBNAME ": ",
                        PQresultErrorMessage(res));
      rc = DP_EEMBED;
    }
    PQclear(res);
  }
  PQfinish(c);
  return rc;
}

/* Unix socket paths are limited to 107 bytes (sun_path). */
static int check_home(const char *home, char *err, size_t errlen) {
  if (home[0] != '/') {
    snprintf(err, errlen, "embedded cluster home %s is not an absolute path", home);
    return DP_EEMBED;
  }
  if (strlen(home) + sizeof "/run/.s.PGSQL." EMBED_PORT ".lock" > 107) {
    snprintf(err, errlen, "embedded cluster home %s is too long for a Unix socket path; set "
                          "DMARCPIPE_HOME to a shorter directory", home);
    return DP_EEMBED;
  }
  /* pg_ctl puts the data and log paths in double quotes on a shell command line. */
  if (strpbrk(home, "\"$`\\\n")) {
    snprintf(err, errlen, "embedded cluster home %s contains one of \" $ ` \\ or a newline, "
                          "which pg_ctl cannot pass safely; set DMARCPIPE_HOME", home);
    return DP_EEMBED;
  }
  return 0;
}

/* Exclusive lock on home/embed.lock so that two processes never initdb or
 * start the same cluster at once. Returns the fd to close, or -1. */
static int lock_home(const char *home, char *err, size_t errlen) {
  char p[4200];
  pjoin(p, sizeof p, home, "embed.lock");
  int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", p, strerror(errno));
    return -1;
  }
  while (flock(fd, LOCK_EX)) {
    if (errno != EINTR) {
      snprintf(err, errlen, "cannot lock %s: %s", p, strerror(errno));
      close(fd);
      return -1;
    }
  }
  return fd;
}

/* Everything dp_embed_start does while holding the lock. */
static int start_locked(const struct runas *ra, const char *home, const char *conninfo,
                        char *err, size_t errlen) {
  char pgdata[4200], run[4200], log[4200], ctllog[4200], exe[4200], bindir[4096];
  pjoin(pgdata, sizeof pgdata, home, "pgdata");
  pjoin(run, sizeof run, home, "run");
  pjoin(log, sizeof log, home, "postgres.log");
  pjoin(ctllog, sizeof ctllog, home, "pg_ctl.log");

  /* Someone may have started it while we waited for the lock. */
  if (running_pid(pgdata)) {
    if (wait_ready(conninfo, 60)) return ensure_database(home, err, errlen);
    snprintf(err, errlen, "embedded cluster in %s runs (pid %ld) but does not accept "
                          "connections; see %s", pgdata, running_pid(pgdata), log);
    return DP_EEMBED;
  }
  int want = cluster_major(pgdata);
  int rc = find_bindir(want, bindir, sizeof bindir, err, errlen);
  if (rc) return rc;
  if (!want && (rc = create_cluster(ra, home, bindir, err, errlen))) return rc;

  retire_stale_locks(pgdata, run);
  if (mkdir(run, 0700) && errno != EEXIST) {
    snprintf(err, errlen, "cannot create %s: %s", run, strerror(errno));
    return DP_EEMBED;
  }
  if ((rc = give(ra, run, err, errlen))) return rc;
  if ((rc = write_conf(ra, pgdata, run, err, errlen))) return rc;
  /* pg_ctl opens the server log itself, as the server's user. */
  int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot create %s: %s", log, strerror(errno));
    return DP_EEMBED;
  }
  /* Only this start's messages explain its failure. */
  struct stat lst;
  long log_start = fstat(fd, &lst) == 0 ? (long)lst.st_size : 0;
  close(fd);
  if ((rc = give(ra, log, err, errlen))) return rc;

  pjoin(exe, sizeof exe, bindir, "pg_ctl");
  char *const argv[] = {exe, "-D", pgdata, "-l", log, "-w", "-t", START_TIMEOUT_S, "start", NULL};
  int st = run_cmd(ra, home, ctllog, argv);
  if (st != 0) {
    char tail[1100];
    log_tail(log, log_start, tail, sizeof tail);
    if (!tail[0]) log_tail(ctllog, 0, tail, sizeof tail);
    snprintf(err, errlen, "pg_ctl start failed (exit %d): %s (see %s)", st,
             tail[0] ? tail : "no message", log);
    return DP_EEMBED;
  }
  if (!wait_ready(conninfo, 60)) {
    snprintf(err, errlen, "embedded cluster started but its socket in %s does not answer", run);
    return DP_EEMBED;
  }
  return ensure_database(home, err, errlen);
}

/** Create (first time) and start the embedded cluster under home; see store.h. */
int dp_embed_start(const char *home, char **conninfo, char *err, size_t errlen) {
  *conninfo = NULL;
  int rc = check_home(home, err, errlen);
  if (rc) return rc;
  char *ci = dp_embed_conninfo(home);
  if (!ci) {
    snprintf(err, errlen, "out of memory");
    return DP_ENOMEM;
  }
  /* Fast path for every command: already up with its database. */
  PGconn *c = PQconnectdb(ci);
  bool up = PQstatus(c) == CONNECTION_OK;
  PQfinish(c);
  if (up) {
    *conninfo = ci;
    return 0;
  }

  struct runas ra;
  if ((rc = runas_init(&ra, err, errlen))) goto out;
  if (mkdirs(home, ra.drop ? 0711 : 0700)) {
    snprintf(err, errlen, "cannot create %s: %s", home, strerror(errno));
    rc = DP_EEMBED;
    goto out;
  }
  if ((rc = check_traversal(&ra, home, err, errlen))) goto out;
  int lk = lock_home(home, err, errlen);
  if (lk < 0) {
    rc = DP_EEMBED;
    goto out;
  }
  rc = start_locked(&ra, home, ci, err, errlen);
  close(lk);
out:
  if (rc)
    free(ci);
  else
    *conninfo = ci;
  return rc;
}

/** Stop the embedded cluster (fast shutdown); 0 also when it was not running. */
int dp_embed_stop(const char *home, char *err, size_t errlen) {
  char pgdata[4200], ctllog[4200], exe[4200], bindir[4096];
  pjoin(pgdata, sizeof pgdata, home, "pgdata");
  pjoin(ctllog, sizeof ctllog, home, "pg_ctl.log");
  if (!file_exists(pgdata, "PG_VERSION") || !running_pid(pgdata)) return 0;
  struct runas ra;
  int rc = runas_init(&ra, err, errlen);
  if (rc) return rc;
  int lk = lock_home(home, err, errlen);
  if (lk < 0) return DP_EEMBED;
  if (!running_pid(pgdata)) goto out;
  if ((rc = find_bindir(cluster_major(pgdata), bindir, sizeof bindir, err, errlen))) goto out;
  pjoin(exe, sizeof exe, bindir, "pg_ctl");
  char *const argv[] = {exe, "-D", pgdata, "-m", "fast", "-w", "-t", START_TIMEOUT_S, "stop", NULL};
  int st = run_cmd(&ra, home, ctllog, argv);
  if (st != 0 && running_pid(pgdata)) {
    char tail[1100];
    log_tail(ctllog, 0, tail, sizeof tail);
    snprintf(err, errlen, "pg_ctl stop failed (exit %d): %s", st, tail[0] ? tail : "see pg_ctl.log");
    rc = DP_EEMBED;
  }
out:
  close(lk);
  return rc;
}

/** One-line status into out; 0 running, 1 stopped/absent, <0 error. */
int dp_embed_status(const char *home, char *out, size_t outlen) {
  char pgdata[4200];
  pjoin(pgdata, sizeof pgdata, home, "pgdata");
  if (!file_exists(pgdata, "PG_VERSION")) {
    snprintf(out, outlen, "not initialised");
    return 1;
  }
  long pid = running_pid(pgdata);
  if (!pid) {
    snprintf(out, outlen, "stopped");
    return 1;
  }
  char *ci = dp_embed_conninfo(home);
  if (!ci) return DP_ENOMEM;
  PGPing ping = PQping(ci);
  free(ci);
  snprintf(out, outlen, "%s (pid %ld), socket %s/run",
           ping == PQPING_OK ? "running" : "starting or stopping", pid, home);
  return ping == PQPING_OK ? 0 : 1;
}
