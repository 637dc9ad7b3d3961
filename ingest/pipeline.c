/* SPDX-License-Identifier: MIT */
/* ingest/pipeline.c - the libuv ingest pipeline: walks the inputs, runs one
 * input job per input in the thread pool (a bounded number at once), gathers
 * their reports into batches and keeps the sink fed, one batch at a time.
 * Backpressure: no new job starts while the bytes waiting for the sink pass
 * max_batch_bytes, so memory is set by configuration, not by input count. */
#include "pipeline_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "input_job_int.h"

struct pipeline {
  const dp_pipeline_opts_t *o;
  uv_loop_t loop;
  dp_loader_t *loader;
  uv_timer_t progress;
  bool progress_on;
  /* inputs, discovered by a walk in the thread pool */
  char *const *args;
  size_t n_args;
  char **inputs;
  size_t n_inputs, cap_inputs, next_input;
  uv_work_t walk_req;
  bool walked;
  /* jobs */
  size_t in_flight;
  /* batches: open collects job results; loading is with the sink */
  dp_batch_t batches[2];
  dp_batch_t *open;
  dp_batch_t *loading;
  bool fatal;
  dp_pipeline_stats_t *st;
  uint64_t start_ms;
};

struct job_req {
  uv_work_t req;
  dp_job_t job;
  struct pipeline *p;
  char *path;
};

static void pump(struct pipeline *p);

/* ------------------------------------------------------------------------ */
/* Walking inputs (thread pool) */

static int add_input(struct pipeline *p, const char *path) {
  if (p->n_inputs == p->cap_inputs) {
    size_t nc = p->cap_inputs ? p->cap_inputs * 2 : 64;
    char **v = realloc(p->inputs, nc * sizeof *v);
    if (!v) return DP_ENOMEM;
    p->inputs = v;
    p->cap_inputs = nc;
  }
  char *s = strdup(path);
  if (!s) return DP_ENOMEM;
  p->inputs[p->n_inputs++] = s;
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Directories are walked in name order so runs are reproducible; symbolic
 * links to directories are not followed (no loops), links to files are. */
static void walk_dir(struct pipeline *p, const char *dir, unsigned depth) {
  if (depth > 64) return;
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(p->o->err, "dmarcpipe: %s: cannot read directory: %s\n", dir, strerror(errno));
    p->st->inputs_refused++;
    return;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **v = realloc(names, cap * sizeof *v);
      if (!v) break;
      names = v;
    }
    names[n] = strdup(e->d_name);
    if (names[n]) n++;
  }
  closedir(d);
  qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(dir) + strlen(names[i]) + 2;
    char *path = malloc(len);
    if (path) {
      snprintf(path, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
      struct stat lst, st;
      if (lstat(path, &lst) == 0) {
        if (S_ISDIR(lst.st_mode))
          walk_dir(p, path, depth + 1);
        else if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
          add_input(p, path);
      }
      free(path);
    }
    free(names[i]);
  }
  free(names);
}

static void walk_work(uv_work_t *req) {
  struct pipeline *p = req->data;
  for (size_t i = 0; i < p->n_args; i++) {
    const char *a = p->args[i];
    struct stat st;
    if (!strcmp(a, "-")) {
      add_input(p, a);
    } else if (stat(a, &st) != 0) {
      fprintf(p->o->err, "dmarcpipe: %s: %s\n", a, strerror(errno));
      p->st->inputs_refused++;
    } else if (S_ISDIR(st.st_mode)) {
      walk_dir(p, a, 0);
    } else {
      add_input(p, a);
    }
  }
}

static void walk_done(uv_work_t *req, int status) {
  struct pipeline *p = req->data;
  (void)status;
  p->walked = true;
  pump(p);
}

/* ------------------------------------------------------------------------ */
/* Jobs */

static void job_work(uv_work_t *req) {
  struct job_req *jr = req->data;
  dp_job_run(&jr->job);
}

static void job_done(uv_work_t *req, int status) {
  struct job_req *jr = req->data;
  struct pipeline *p = jr->p;
  dp_job_t *j = &jr->job;
  (void)status;
  p->in_flight--;
  p->st->inputs++;
  p->st->bytes_in += j->bytes_in;
  if (j->input_refused) p->st->inputs_refused++;
  p->st->reports_refused += j->docs_refused;
  p->st->notes += j->notes;
  if (j->lines.len && (!p->o->quiet || j->n_errors)) {
    if (p->o->quiet) {
      /* keep refusals, drop notes */
      char *line = j->lines.data;
      while (line && *line) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
        if (!strstr(line, ": note: ") || (nl && strstr(line, ": note: ") > nl))
          fwrite(line, 1, len, p->o->err);
        line += len;
      }
    } else {
      fwrite(j->lines.data, 1, j->lines.len, p->o->err);
    }
  }
  /* move results into the open batch */
  dp_staged_t *s = j->head;
  while (s) {
    dp_staged_t *n = s->next;
    dp_batch_add(p->open, s);
    s = n;
  }
  j->head = j->tail = NULL;
  if (j->error_rows.len) {
    dp_buf_append(&p->open->error_rows, j->error_rows.data, j->error_rows.len);
    p->open->n_errors += j->n_errors;
    p->open->bytes += j->error_rows.len;
  }
  dp_job_free(j);
  free(jr->path);
  free(jr);
  pump(p);
}

/* ------------------------------------------------------------------------ */
/* Sink */

static void settle(struct pipeline *p, dp_batch_t *b) {
  for (dp_staged_t *s = b->head; s; s = s->next) {
    switch (s->status) {
    case DP_STAGED_NEW:
      p->st->reports_new++;
      p->st->records += s->n_records;
      p->st->messages += s->messages;
      break;
    case DP_STAGED_DUPLICATE:
      p->st->reports_dup++;
      break;
    default:
      p->st->reports_refused++;
      fprintf(p->o->err, "dmarcpipe: %s: report %s/%s: %s\n", s->source, s->org_name,
              s->report_id, s->error ? s->error : "not stored");
      break;
    }
  }
  dp_batch_free(b);
}

static void loaded(dp_loader_t *l, dp_batch_t *b, int status) {
  struct pipeline *p = b->data;
  (void)l;
  if (status) {
    fprintf(p->o->err, "dmarcpipe: cannot load into the database: %s\n", dp_strerror(status));
    p->fatal = true;
    dp_batch_free(b);
  } else {
    settle(p, b);
  }
  p->loading = NULL;
  pump(p);
}

static void null_sink(struct pipeline *p, dp_batch_t *b) {
  /* without a database every report counts as new; duplicates are not known */
  for (dp_staged_t *s = b->head; s; s = s->next) s->status = DP_STAGED_NEW;
  settle(p, b);
}

static bool batch_empty(const dp_batch_t *b) { return !b->head && !b->error_rows.len; }

/* Start whatever can start: the sink on the open batch, more jobs. */
static void pump(struct pipeline *p) {
  const dp_pipeline_opts_t *o = p->o;
  if (p->fatal) {
    /* stop starting work; wait for jobs in flight, drop their results */
    if (!p->loading && !batch_empty(p->open)) dp_batch_free(p->open);
  } else if (!p->loading && !batch_empty(p->open)) {
    dp_batch_t *b = p->open;
    p->open = b == &p->batches[0] ? &p->batches[1] : &p->batches[0];
    b->data = p;
    if (o->sink == DP_SINK_NULL) {
      null_sink(p, b);
    } else {
      p->loading = b;
      if (dp_loader_submit(p->loader, b, loaded)) {
        fprintf(o->err, "dmarcpipe: internal error: loader busy\n");
        p->fatal = true;
      }
    }
  }
  while (!p->fatal && p->walked && p->next_input < p->n_inputs &&
         p->in_flight < o->max_in_flight && p->open->bytes < o->max_batch_bytes) {
    struct job_req *jr = calloc(1, sizeof *jr);
    if (!jr) {
      p->fatal = true;
      break;
    }
    jr->p = p;
    jr->path = p->inputs[p->next_input];
    p->inputs[p->next_input++] = NULL;
    dp_job_init(&jr->job, jr->path, &o->limits);
    jr->req.data = jr;
    if (uv_queue_work(&p->loop, &jr->req, job_work, job_done)) {
      free(jr->path);
      free(jr);
      p->fatal = true;
      break;
    }
    p->in_flight++;
  }
  bool done = p->walked && p->in_flight == 0 && !p->loading && batch_empty(p->open) &&
              (p->fatal || p->next_input == p->n_inputs);
  if (done) {
    if (p->progress_on) {
      uv_timer_stop(&p->progress);
      uv_close((uv_handle_t *)&p->progress, NULL);
      p->progress_on = false;
      fprintf(o->err, "\r\033[K");
    }
    if (p->loader) {
      dp_loader_destroy(p->loader);
      p->loader = NULL;
    }
  }
}

static void on_progress(uv_timer_t *t) {
  struct pipeline *p = t->data;
  double secs = (double)(uv_now(&p->loop) - p->start_ms) / 1000.0;
  if (secs <= 0) secs = 0.001;
  fprintf(p->o->err, "\r\033[K%" PRIu64 "/%zu inputs  %.1f MB/s  %" PRIu64 " reports  %.0f records/s",
          p->st->inputs, p->n_inputs, (double)p->st->bytes_in / 1e6 / secs,
          p->st->reports_new + p->st->reports_dup, (double)p->st->records / secs);
  fflush(p->o->err);
}

/* ------------------------------------------------------------------------ */
/* Public API */

void dp_pipeline_opts_default(dp_pipeline_opts_t *o) {
  memset(o, 0, sizeof *o);
  dp_limits_default(&o->limits);
  o->sink = DP_SINK_PG;
  o->max_in_flight = 8;
  o->max_batch_bytes = 32u << 20;
  o->err = stderr;
}

int dp_pipeline_run(const dp_pipeline_opts_t *o, char *const *paths, size_t n_paths,
                    dp_pipeline_stats_t *stats) {
  struct pipeline p;
  memset(&p, 0, sizeof p);
  memset(stats, 0, sizeof *stats);
  p.o = o;
  p.st = stats;
  p.args = paths;
  p.n_args = n_paths;
  dp_batch_init(&p.batches[0]);
  dp_batch_init(&p.batches[1]);
  p.open = &p.batches[0];
  if (uv_loop_init(&p.loop)) {
    fprintf(o->err, "dmarcpipe: cannot start the event loop\n");
    return 2;
  }
  int ret = 0;
  if (o->sink == DP_SINK_PG) {
    char err[1024];
    p.loader = dp_loader_create(&p.loop, o->conninfo, err, sizeof err);
    if (!p.loader) {
      fprintf(o->err, "dmarcpipe: %s\n", err);
      uv_loop_close(&p.loop);
      return 2;
    }
  }
  p.start_ms = uv_now(&p.loop);
  if (o->progress) {
    uv_timer_init(&p.loop, &p.progress);
    p.progress.data = &p;
    uv_timer_start(&p.progress, on_progress, 500, 500);
    p.progress_on = true;
  }
  p.walk_req.data = &p;
  if (uv_queue_work(&p.loop, &p.walk_req, walk_work, walk_done)) {
    fprintf(o->err, "dmarcpipe: cannot start the thread pool\n");
    ret = 2;
    p.fatal = true;
    p.walked = true;
    pump(&p);
  }
  uv_run(&p.loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&p.loop)) fprintf(o->err, "dmarcpipe: internal error: handles left open\n");
  for (size_t i = 0; i < p.n_inputs; i++) free(p.inputs[i]);
  free(p.inputs);
  dp_batch_free(&p.batches[0]);
  dp_batch_free(&p.batches[1]);
  if (p.fatal) return 2;
  if (ret) return ret;
  return stats->inputs_refused || stats->reports_refused ? 1 : 0;
}
