/* SPDX-License-Identifier: MIT */
/* ingest/watch_cmd.c - `dmarcpipe watch DIR`: runs until stopped, loading
 * every report file that appears in DIR (uv_fs_event plus a periodic rescan,
 * since events can be missed), each once it has stopped growing, and moving it
 * to done/ (or rejected/) only after its reports are committed. While the
 * database is down the files stay where they are and loading resumes when it
 * is back; SIGINT/SIGTERM finish the work in flight and exit cleanly. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "catch_up_sched_int.h"
#include "core/core.h"
#include "ingest.h"
#include "parse/parse.h"
#include "pipeline_int.h"
#include "src_imap_int.h"
#include "source_walk_int.h"
#include "store/store.h"

/* One file seen in the watched directory. */
struct seen {
  char *path;
  int64_t size;
  int64_t mtime_ns;
  uint64_t stable_since; /* loop ms when size/mtime were last seen to change */
  bool queued;           /* handed to the pipeline, not yet done */
  bool present;          /* found by the scan in progress */
};

struct watch {
  uv_loop_t loop;
  dp_pipeline_opts_t opts;
  dp_pipeline_stats_t stats;
  dp_pipeline_t *pipeline;
  char *dir, *done_dir, *rejected_dir;
  uint64_t settle_ms, rescan_ms;
  uv_fs_event_t event;
  uv_timer_t rescan, soon;
  uv_signal_t sigint, sigterm;
  struct seen *seen;
  size_t n_seen, cap_seen;
  /* a scan runs in the thread pool; its result is a list of files */
  uv_work_t scan_req;
  bool scanning, rescan_wanted, stopping;
  struct scan_file {
    char *path;
    int64_t size, mtime_ns;
  } *found;
  size_t n_found, cap_found;
  uint64_t moved, move_failed;
  /* the aggregate catch-up after commits */
  dp__catch_up_sched_t agg;
};

static void schedule_scan(struct watch *w, uint64_t delay_ms);

/* ------------------------------------------------------------------------ */
/* Scanning (thread pool) */

static bool under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  return !strncmp(path, dir, n) && (path[n] == '/' || path[n] == '\0');
}

static int scan_add(void *ud, const char *file) {
  struct watch *w = ud;
  if (under(file, w->done_dir) || under(file, w->rejected_dir)) return 0;
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  if (base[0] == '.') return 0; /* editors' and rsync's temporary files */
  struct stat st;
  if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  if (w->n_found == w->cap_found) {
    size_t nc = w->cap_found ? w->cap_found * 2 : 64;
    struct scan_file *v = realloc(w->found, nc * sizeof *v);
    if (!v) return DP_ENOMEM;
    w->found = v;
    w->cap_found = nc;
  }
  char *p = strdup(file);
  if (!p) return DP_ENOMEM;
  w->found[w->n_found].path = p;
  w->found[w->n_found].size = (int64_t)st.st_size;
  w->found[w->n_found].mtime_ns =
      (int64_t)st.st_mtim.tv_sec * 1000000000 + (int64_t)st.st_mtim.tv_nsec;
  w->n_found++;
  return 0;
}

static void scan_err(void *ud, const char *path, const char *reason) {
  (void)ud;
  fprintf(stderr, "dmarcpipe watch: %s: %s\n", path, reason);
}

static void scan_work(uv_work_t *req) {
  struct watch *w = req->data;
  dp_source_walk(w->dir, scan_add, scan_err, w);
}

static struct seen *find_seen(struct watch *w, const char *path) {
  for (size_t i = 0; i < w->n_seen; i++)
    if (!strcmp(w->seen[i].path, path)) return &w->seen[i];
  return NULL;
}

static void forget_seen(struct watch *w, struct seen *s) {
  free(s->path);
  *s = w->seen[--w->n_seen];
}

static void scan_done(uv_work_t *req, int status) {
  struct watch *w = req->data;
  (void)status;
  w->scanning = false;
  uint64_t now = uv_now(&w->loop);
  bool unstable = false;
  for (size_t i = 0; i < w->n_seen; i++) w->seen[i].present = false;
  for (size_t i = 0; i < w->n_found; i++) {
    struct scan_file *f = &w->found[i];
    struct seen *s = find_seen(w, f->path);
    if (!s) {
      if (w->n_seen == w->cap_seen) {
        size_t nc = w->cap_seen ? w->cap_seen * 2 : 64;
        struct seen *v = realloc(w->seen, nc * sizeof *v);
        if (!v) {
          free(f->path);
          continue;
        }
        w->seen = v;
        w->cap_seen = nc;
      }
      s = &w->seen[w->n_seen++];
      memset(s, 0, sizeof *s);
      s->path = f->path;
      s->size = f->size;
      s->mtime_ns = f->mtime_ns;
      s->stable_since = now;
    } else {
      free(f->path);
      if (s->size != f->size || s->mtime_ns != f->mtime_ns) {
        s->size = f->size;
        s->mtime_ns = f->mtime_ns;
        s->stable_since = now;
      }
    }
    s->present = true;
  }
  w->n_found = 0;
  for (size_t i = 0; i < w->n_seen;) {
    struct seen *s = &w->seen[i];
    if (!s->present && !s->queued) {
      forget_seen(w, s); /* removed by someone else */
      continue;
    }
    if (!s->queued && !w->stopping) {
      /* a file is taken once it has stopped growing for settle_ms */
      if (now - s->stable_since >= w->settle_ms) {
        if (dp_pipeline_add(w->pipeline, s->path) == 0) s->queued = true;
      } else {
        unstable = true;
      }
    }
    i++;
  }
  if (w->rescan_wanted || unstable) {
    w->rescan_wanted = false;
    schedule_scan(w, unstable ? w->settle_ms : 50);
  }
}

static void start_scan(struct watch *w) {
  if (w->stopping) return;
  if (w->scanning) {
    w->rescan_wanted = true;
    return;
  }
  w->scanning = true;
  w->scan_req.data = w;
  if (uv_queue_work(&w->loop, &w->scan_req, scan_work, scan_done)) w->scanning = false;
}

static void on_soon(uv_timer_t *t) { start_scan(t->data); }
static void on_rescan(uv_timer_t *t) { start_scan(t->data); }

static void schedule_scan(struct watch *w, uint64_t delay_ms) {
  if (w->stopping) return;
  /* coalesce bursts of events into one scan */
  if (uv_is_active((uv_handle_t *)&w->soon) && uv_timer_get_due_in(&w->soon) <= delay_ms) return;
  uv_timer_start(&w->soon, on_soon, delay_ms, 0);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status) {
  struct watch *w = h->data;
  (void)filename;
  (void)events;
  (void)status;
  schedule_scan(w, 100);
}

/* ------------------------------------------------------------------------ */
/* Moving done inputs */

static int mkdirs(const char *path) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -errno;
  return 0;
}

/* Move path (below w->dir) to the same relative place below to; an existing
 * file there gets a numbered sibling rather than being overwritten. */
static int move_below(struct watch *w, const char *path, const char *to) {
  const char *rel = path + strlen(w->dir);
  while (*rel == '/') rel++;
  char dst[PATH_MAX];
  snprintf(dst, sizeof dst, "%s/%s", to, rel);
  char *slash = strrchr(dst, '/');
  *slash = '\0';
  int rc = mkdirs(dst);
  *slash = '/';
  if (rc) return rc;
  char cand[PATH_MAX + 16];
  snprintf(cand, sizeof cand, "%s", dst);
  for (unsigned i = 1; access(cand, F_OK) == 0 && i < 1000; i++)
    snprintf(cand, sizeof cand, "%s.%u", dst, i);
  return rename(path, cand) == 0 ? 0 : -errno;
}

static void input_done(void *data, const char *path, bool refused) {
  struct watch *w = data;
  /* a refused input may have stored reports too (a zip of a good and a
   * bad one); a catch-up that finds nothing pending costs one query */
  dp__catch_up_sched_commit(&w->agg);
  int rc = move_below(w, path, refused ? w->rejected_dir : w->done_dir);
  if (rc) {
    w->move_failed++;
    fprintf(stderr, "dmarcpipe watch: %s: loaded, but cannot move it to %s: %s\n", path,
            refused ? w->rejected_dir : w->done_dir, strerror(-rc));
  } else {
    w->moved++;
  }
  struct seen *s = find_seen(w, path);
  /* keep a file that could not be moved as seen, so it is not loaded again */
  if (s && !rc) forget_seen(w, s);
}

/* ------------------------------------------------------------------------ */
/* Stopping */

/* dp_pipeline_close's callback has no data slot; one watch per process. */
static struct watch *the_watch;

/* Every commit is done: fold what the last ones stored before exiting. */
static void closed(dp_pipeline_t *p) {
  (void)p;
  dp__catch_up_sched_final(&the_watch->agg);
}

static void stop(struct watch *w, const char *why) {
  if (w->stopping) return;
  w->stopping = true;
  if (!w->opts.quiet) fprintf(stderr, "dmarcpipe watch: %s: finishing the work in flight\n", why);
  uv_fs_event_stop(&w->event);
  uv_close((uv_handle_t *)&w->event, NULL);
  uv_timer_stop(&w->rescan);
  uv_close((uv_handle_t *)&w->rescan, NULL);
  uv_timer_stop(&w->soon);
  uv_close((uv_handle_t *)&w->soon, NULL);
  dp__catch_up_sched_stop(&w->agg);
  uv_signal_stop(&w->sigint);
  uv_close((uv_handle_t *)&w->sigint, NULL);
  uv_signal_stop(&w->sigterm);
  uv_close((uv_handle_t *)&w->sigterm, NULL);
  dp_pipeline_close(w->pipeline, closed);
}

static void on_signal(uv_signal_t *h, int signum) {
  stop(h->data, signum == SIGINT ? "interrupted" : "terminated");
}

/* ------------------------------------------------------------------------ */
/* Command */

static void usage(FILE *f) {
  fprintf(f,
          "usage: dmarcpipe watch [options] DIR|imaps://user@host/Folder\n"
          "  Load every report file that appears in DIR (and its subdirectories, Maildirs\n"
          "  included) until stopped. A file is taken once it has stopped growing and is\n"
          "  moved to done/ (refused ones to rejected/) only after it was committed.\n"
          "options:\n"
          "  --db CONNINFO|URI   database (else config, PG* environment, embedded cluster)\n"
          "  --done DIR          where loaded files go (default DIR/done)\n"
          "  --rejected DIR      where refused files go (default DIR/rejected)\n"
          "  --settle SECONDS    unchanged this long before a file is taken (default 2)\n"
          "  --rescan SECONDS    full rescan period, for missed events (default 30)\n"
          "  --quiet             no notes or summaries\n"
          DP_IMAP_USAGE
          "Limits are those of 'dmarcpipe ingest' and are read from the config file.\n");
}

static char *absolute(const char *path) {
  char buf[PATH_MAX];
  if (!realpath(path, buf)) return NULL;
  return strdup(buf);
}

static int parse_seconds(const char *s, uint64_t *ms) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0 || v > 86400) return -1;
  *ms = (uint64_t)(v * 1000);
  return 0;
}

int dp_watch_cmd(int argc, char **argv) {
  static const struct option opts[] = {
    {"db", required_argument, NULL, 'd'},
    {"done", required_argument, NULL, 'D'},
    {"rejected", required_argument, NULL, 'R'},
    {"settle", required_argument, NULL, 's'},
    {"rescan", required_argument, NULL, 'r'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    DP_IMAP_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
  };
  struct watch w;
  memset(&w, 0, sizeof w);
  dp_pipeline_opts_default(&w.opts);
  w.settle_ms = 2000;
  w.rescan_ms = 30000;
  const char *db = NULL, *done = NULL, *rejected = NULL;
  dp_imap_opts_t io;
  if (dp__imap_opts_default(&io)) return 2;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
    switch (c) {
    case 'd': db = optarg; break;
    case 'D': done = optarg; break;
    case 'R': rejected = optarg; break;
    case 's':
    case 'r':
      if (parse_seconds(optarg, c == 's' ? &w.settle_ms : &w.rescan_ms)) {
        fprintf(stderr, "dmarcpipe watch: invalid number of seconds '%s'\n", optarg);
        return 2;
      }
      break;
    case 'q': w.opts.quiet = true; break;
    case 'h': usage(stdout); return 0;
    default:
      if (c >= DP_IMAP_OPT_PASSWORD_FILE && c <= DP_IMAP_OPT_INSECURE) {
        if (dp__imap_setopt(&io, c, optarg)) return 2;
        break;
      }
      usage(stderr);
      return 2;
    }
  }
  if (optind != argc - 1) {
    usage(stderr);
    return 2;
  }
  if (dp__imap_is_url(argv[optind])) {
    io.url = argv[optind];
    return dp__imap_watch_cmd(&io, db, w.opts.quiet);
  }
  if (w.rescan_ms < 100) w.rescan_ms = 100;
  w.dir = absolute(argv[optind]);
  struct stat st;
  if (!w.dir || stat(w.dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "dmarcpipe watch: %s: not a directory\n", argv[optind]);
    free(w.dir);
    return 2;
  }
  char buf[PATH_MAX + 16];
  snprintf(buf, sizeof buf, "%s/done", w.dir);
  if (done && mkdirs(done) == 0) w.done_dir = absolute(done);
  else if (!done && mkdirs(buf) == 0) w.done_dir = strdup(buf);
  snprintf(buf, sizeof buf, "%s/rejected", w.dir);
  if (rejected && mkdirs(rejected) == 0) w.rejected_dir = absolute(rejected);
  else if (!rejected && mkdirs(buf) == 0) w.rejected_dir = strdup(buf);
  if (!w.done_dir || !w.rejected_dir) {
    fprintf(stderr, "dmarcpipe watch: cannot create the done/rejected directories\n");
    free(w.dir);
    free(w.done_dir);
    free(w.rejected_dir);
    return 2;
  }
  if (dp_align_global_init()) {
    fprintf(stderr, "dmarcpipe: cannot load the Public Suffix List (package publicsuffix)\n");
    return 2;
  }
  char err[1024];
  char *conninfo = NULL;
  int ret = 0;
  if (dp_store_select(db, &conninfo, err, sizeof err)) {
    fprintf(stderr, "dmarcpipe: %s\n", err);
    ret = 2;
    goto out;
  }
  w.opts.conninfo = conninfo;
  w.opts.outage_budget_ms = 0; /* a service waits for its database */
  w.opts.input_done = input_done;
  w.opts.data = &w;
  /* limits from the config file, as ingest reads them */
  if (dp__ingest_apply_config(&w.opts)) {
    ret = 2;
    goto out;
  }
  uv_loop_init(&w.loop);
  w.pipeline = dp_pipeline_create(&w.loop, &w.opts, &w.stats);
  if (!w.pipeline) {
    uv_loop_close(&w.loop);
    ret = 2;
    goto out;
  }
  uv_fs_event_init(&w.loop, &w.event);
  w.event.data = &w;
  if (uv_fs_event_start(&w.event, on_fs_event, w.dir, 0))
    fprintf(stderr, "dmarcpipe watch: no change events for %s; rescanning every %.1f s\n", w.dir,
            (double)w.rescan_ms / 1000);
  uv_timer_init(&w.loop, &w.rescan);
  w.rescan.data = &w;
  uv_timer_start(&w.rescan, on_rescan, w.rescan_ms, w.rescan_ms);
  uv_timer_init(&w.loop, &w.soon);
  w.soon.data = &w;
  dp__catch_up_sched_init(&w.agg, &w.loop, w.opts.conninfo, "dmarcpipe watch", w.opts.quiet);
  /* reports an earlier run stored but did not fold (it was killed, or the
   * database was away) are folded once loading pauses, as new ones are */
  dp__catch_up_sched_commit(&w.agg);
  the_watch = &w;
  uv_signal_init(&w.loop, &w.sigint);
  w.sigint.data = &w;
  uv_signal_start(&w.sigint, on_signal, SIGINT);
  uv_signal_init(&w.loop, &w.sigterm);
  w.sigterm.data = &w;
  uv_signal_start(&w.sigterm, on_signal, SIGTERM);
  if (!w.opts.quiet)
    fprintf(stderr, "dmarcpipe watch: watching %s (done: %s, rejected: %s)\n", w.dir, w.done_dir,
            w.rejected_dir);
  start_scan(&w);
  uv_run(&w.loop, UV_RUN_DEFAULT);
  bool failed = dp_pipeline_failed(w.pipeline);
  dp_pipeline_destroy(w.pipeline);
  if (uv_loop_close(&w.loop)) fprintf(stderr, "dmarcpipe watch: internal error: handles left open\n");
  if (!w.opts.quiet)
    fprintf(stderr,
            "dmarcpipe watch: %" PRIu64 " inputs: %" PRIu64 " reports stored (%" PRIu64
            " records), %" PRIu64 " already stored, %" PRIu64 " refused\n",
            w.stats.inputs, w.stats.reports_new, w.stats.records, w.stats.reports_dup,
            w.stats.reports_refused + w.stats.inputs_refused);
  ret = failed ? 2 : 0;
out:
  for (size_t i = 0; i < w.n_seen; i++) free(w.seen[i].path);
  free(w.seen);
  free(w.found);
  free(w.dir);
  free(w.done_dir);
  free(w.rejected_dir);
  free(conninfo);
  dp_align_global_cleanup();
  return ret;
}
