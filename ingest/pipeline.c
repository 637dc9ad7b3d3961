/* SPDX-License-Identifier: MIT */
/* ingest/pipeline.c - the libuv ingest pipeline: walks the inputs, runs them
 * in the thread pool (a bounded number of jobs at once, a run of small inputs
 * per job), gathers their reports into batches and keeps the sink fed, one
 * batch at a time. Backpressure: no new job starts while the bytes waiting
 * for the sink pass max_batch_bytes, so memory is set by configuration, not
 * by input count. */
#include "pipeline_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "input_job_int.h"
#include "source_walk_int.h"

/* Batches: one open, up to NBATCH - 1 loading (one per batch connection). */
#define NBATCH 3
#define BATCH_CONNS (NBATCH - 1)
#define BATCH_SHARE ((size_t)1 << 20)
/* Big reports streaming at once, a connection (and a backend) each: a second
 * one arriving while the first streams goes to the server at once instead of
 * spooling it all to disk first and waiting. */
#define STREAM_CONNS 2

/* Inputs whose results sit in a batch: they are done when it is committed. */
struct batch_inputs {
  char **paths;
  unsigned char *refused;
  size_t n, cap;
};

struct dp_pipeline {
  const dp_pipeline_opts_t *o;
  uv_loop_t *loop;
  dp_loader_t *loader;
  uv_timer_t progress;
  bool progress_on;
  /* inputs waiting for a job; back: handed back by a job that ran out of
   * budget, taken first (a stack, so they keep their order) */
  char **inputs;
  size_t n_inputs, cap_inputs, next_input;
  char **back;
  size_t n_back, cap_back;
  size_t inputs_in_jobs;     /* given to jobs and not collected or handed back */
  /* dp_pipeline_run's walk of its arguments, in the thread pool */
  char *const *args;
  size_t n_args;
  uv_work_t walk_req;
  const char *walk_arg; /* the argument being walked (walk_add's reference) */
  /* jobs */
  size_t in_flight;          /* jobs running, or parked until their streams settle */
  struct job_req *parked;
  /* batches: open collects job results; the loading ones are with the
   * sink (the loader's two batch connections load two at once) */
  dp_batch_t batches[NBATCH];
  struct batch_inputs binputs[NBATCH];
  bool loading[NBATCH];
  size_t n_loading;
  dp_batch_t *open;
  bool fatal;
  bool closing;
  bool closed;
  void (*close_cb)(dp_pipeline_t *p);
  dp_pipeline_stats_t *st;
  uint64_t start_ms;
};

/* A pool job: up to JOB_MAX_INPUTS inputs run one after the other with one
 * dp_job_ctx_t (one parser context and read buffer), so thousands of small
 * reports do not each pay for a thread hand-off, a completion and a parser.
 * Each input keeps its own dp_job_t: its results, refusals and input_done
 * are exactly those of a job of its own. The job stops taking its inputs
 * once it has read or staged JOB_BUDGET bytes or opened a stream (a big
 * report); the rest go back to the queue for other jobs. */
#define JOB_MAX_INPUTS 32
#define JOB_BUDGET ((uint64_t)1 << 20)

struct job_item {
  dp_job_t job;
  char *path; /* "path\0display\0", owned */
};

struct job_req {
  uv_work_t req;
  struct dp_pipeline *p;
  size_t n;           /* inputs given */
  size_t n_run;       /* inputs run, in order; the rest are handed back */
  size_t n_collected; /* inputs collected, in order */
  struct job_req *next_parked;
  struct job_item items[];
};

static void pump(struct dp_pipeline *p);

/* ------------------------------------------------------------------------ */
/* Walking inputs (thread pool) */

/* An input is kept as "path\0display\0L" in one allocation: display names it
 * in messages and in the database ("" = the path itself); L is 'w' for a file
 * found by walking a directory (dp_job_t.listed), else '-'. */
static int add_input(struct dp_pipeline *p, const char *path, const char *display, bool listed) {
  if (p->next_input && p->next_input == p->n_inputs) p->next_input = p->n_inputs = 0;
  if (p->n_inputs == p->cap_inputs) {
    size_t nc = p->cap_inputs ? p->cap_inputs * 2 : 64;
    char **v = realloc(p->inputs, nc * sizeof *v);
    if (!v) return DP_ENOMEM;
    p->inputs = v;
    p->cap_inputs = nc;
  }
  size_t np = strlen(path), nd = display ? strlen(display) : 0;
  char *s = malloc(np + nd + 3);
  if (!s) return DP_ENOMEM;
  memcpy(s, path, np + 1);
  memcpy(s + np + 1, display ? display : "", nd + 1);
  s[np + nd + 2] = listed ? 'w' : '-';
  p->inputs[p->n_inputs++] = s;
  return 0;
}

/* A file the walk found inside a directory, or the argument itself. */
static int walk_add(void *ud, const char *file) {
  struct dp_pipeline *p = ud;
  return add_input(p, file, NULL, strcmp(file, p->walk_arg) != 0);
}

/* Print "dmarcpipe: " and the parts, each as dp_buf_put_term makes it (names
 * from the file system and the reports may hold line breaks or escapes),
 * joined by sep, as one line on the error stream. */
static void err_line(struct dp_pipeline *p, const char *const *parts, size_t n,
                     const char *const *sep) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_puts(&b, "dmarcpipe: ");
  for (size_t i = 0; i < n; i++) {
    dp_buf_put_term(&b, parts[i]);
    dp_buf_puts(&b, sep[i]);
  }
  if (b.data) fwrite(b.data, 1, b.len, p->o->err);
  dp_buf_free(&b);
}

static void walk_err(void *ud, const char *path, const char *reason) {
  struct dp_pipeline *p = ud;
  err_line(p, (const char *[]){path, reason}, 2, (const char *[]){": ", "\n"});
  p->st->inputs_refused++;
}

/* What a path stands for (files, directories, Maildirs) is source_walk.c's
 * business; "-" is stdin. */
static void walk_work(uv_work_t *req) {
  struct dp_pipeline *p = req->data;
  for (size_t i = 0; i < p->n_args; i++) {
    const char *a = p->args[i];
    p->walk_arg = a;
    if (!strcmp(a, "-"))
      add_input(p, a, NULL, false);
    else if (dp_source_walk(a, walk_add, walk_err, p) == DP_ENOMEM)
      walk_err(p, a, "out of memory");
  }
}

static void walk_done(uv_work_t *req, int status) {
  struct dp_pipeline *p = req->data;
  (void)status;
  dp_pipeline_close(p, NULL); /* every input is queued: finish them, then stop */
}

/* ------------------------------------------------------------------------ */
/* Jobs */

static bool opened_stream(const dp_job_t *j) {
  for (const dp_staged_t *s = j->head; s; s = s->next)
    if (s->stream) return true;
  return false;
}

static void job_work(uv_work_t *req) {
  struct job_req *jr = req->data;
  dp_job_ctx_t ctx;
  dp_job_ctx_init(&ctx);
  uint64_t spent = 0;
  for (size_t i = 0; i < jr->n; i++) {
    dp_job_t *j = &jr->items[i].job;
    dp_job_run_in(j, &ctx);
    jr->n_run = i + 1;
    spent += j->bytes_in + j->bytes;
    if (spent >= JOB_BUDGET || opened_stream(j)) break;
  }
  dp_job_ctx_close(&ctx);
}

static bool streams_settled(const dp_job_t *j) {
  for (const dp_staged_t *s = j->head; s; s = s->next)
    if (s->stream && dp_stream_result(s->stream, NULL, NULL) == DP_STAGED_PENDING) return false;
  return true;
}

/* Count one loaded report's outcome in the run's totals; a refusal is also
 * said on stderr. */
static void count_outcome(struct dp_pipeline *p, const dp_staged_t *s, int status,
                          const char *err) {
  switch (status) {
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
    err_line(p, (const char *[]){s->source, s->org_name, s->report_id, err ? err : "not stored"}, 4,
             (const char *[]){": report ", "/", ": ", "\n"});
    break;
  }
}

/* A streamed report was loaded on its own (the loader's stream lane): count
 * its outcome now; a database refusal not yet recorded becomes one of the
 * job's ingest_error rows, so it is stored with the job's batch. */
static void settle_streamed(struct dp_pipeline *p, dp_job_t *j, dp_staged_t *s) {
  const char *err = NULL;
  bool recorded = false;
  int r = dp_stream_result(s->stream, &err, &recorded);
  switch (r) {
  case DP_STAGED_NEW:
  case DP_STAGED_DUPLICATE:
    count_outcome(p, s, r, NULL);
    break;
  case DP_STAGED_FAILED:
    count_outcome(p, s, r, err);
    if (!recorded) {
      dp_store_encode_error(&j->error_rows, j->display, "", s->org_name, s->report_id, DP_EPG,
                            err ? err : "not stored");
      j->n_errors++;
    }
    break;
  default:
    if (!p->fatal)
      fprintf(p->o->err, "dmarcpipe: cannot load into the database: %s\n", dp_strerror(r));
    p->fatal = true;
    break;
  }
}

/* Move a finished input's results into the open batch (streamed reports are
 * settled already and counted here). */
static void collect(struct dp_pipeline *p, struct job_item *it) {
  dp_job_t *j = &it->job;
  p->inputs_in_jobs--;
  size_t batched = 0;
  dp_staged_t *s = j->head;
  while (s) {
    dp_staged_t *n = s->next;
    if (s->stream) {
      settle_streamed(p, j, s);
      dp_staged_free(s);
    } else {
      dp_batch_add(p->open, s);
      batched++;
    }
    s = n;
  }
  j->head = j->tail = NULL;
  if (j->error_rows.len) {
    dp_buf_append(&p->open->error_rows, j->error_rows.data, j->error_rows.len);
    p->open->n_errors += j->n_errors;
    p->open->bytes += j->error_rows.len;
  }
  bool refused = j->input_refused || j->docs_refused;
  if (p->fatal) {
    free(it->path); /* not stored for sure: not done */
  } else if (!batched && !j->error_rows.len) {
    /* nothing (more) to commit: a mail without a report, or streamed
     * reports only, committed already */
    if (p->o->input_done) p->o->input_done(p->o->data, it->path, refused);
    free(it->path);
  } else {
    struct batch_inputs *bi = &p->binputs[p->open - p->batches];
    if (bi->n == bi->cap) {
      size_t nc = bi->cap ? bi->cap * 2 : 16;
      char **np = realloc(bi->paths, nc * sizeof *np);
      if (np) bi->paths = np;
      unsigned char *nr = np ? realloc(bi->refused, nc) : NULL;
      if (nr) bi->refused = nr;
      if (np && nr) bi->cap = nc;
    }
    if (bi->n < bi->cap) {
      bi->paths[bi->n] = it->path;
      bi->refused[bi->n++] = refused;
    } else {
      free(it->path); /* out of memory: the input is loaded but not reported done */
    }
  }
  it->path = NULL;
  dp_job_free(j);
}

/* Collect a job's inputs in order, as far as their streams are settled;
 * true when all are, and the job slot is free. */
static bool collect_ready(struct dp_pipeline *p, struct job_req *jr) {
  while (jr->n_collected < jr->n_run) {
    struct job_item *it = &jr->items[jr->n_collected];
    if (!streams_settled(&it->job)) return false;
    collect(p, it);
    jr->n_collected++;
  }
  p->in_flight--;
  free(jr);
  return true;
}

/* Inputs a job did not run go back to the front of the queue, in order. */
static void hand_back(struct dp_pipeline *p, struct job_req *jr) {
  for (size_t i = jr->n; i-- > jr->n_run;) {
    struct job_item *it = &jr->items[i];
    dp_job_free(&it->job);
    p->inputs_in_jobs--;
    if (p->n_back == p->cap_back) {
      size_t nc = p->cap_back ? p->cap_back * 2 : JOB_MAX_INPUTS;
      char **v = realloc(p->back, nc * sizeof *v);
      if (!v) {
        /* out of memory: the input is neither run nor reported done */
        free(it->path);
        p->fatal = true;
        continue;
      }
      p->back = v;
      p->cap_back = nc;
    }
    p->back[p->n_back++] = it->path;
  }
}

/* What an input's run adds to the counters and to stderr. */
static void input_ran(struct dp_pipeline *p, dp_job_t *j) {
  p->st->inputs++;
  p->st->bytes_in += j->bytes_in;
  if (j->input_refused) p->st->inputs_refused++;
  p->st->reports_refused += j->docs_refused;
  p->st->notes += j->notes;
  p->st->skipped_messages += j->skipped_messages;
  /* refusals always; notes (why an input gave nothing) unless --quiet */
  if (j->lines.len) fwrite(j->lines.data, 1, j->lines.len, p->o->err);
  if (j->note_lines.len && !p->o->quiet)
    fwrite(j->note_lines.data, 1, j->note_lines.len, p->o->err);
}

static void job_done(uv_work_t *req, int status) {
  struct job_req *jr = req->data;
  struct dp_pipeline *p = jr->p;
  (void)status;
  for (size_t i = 0; i < jr->n_run; i++) input_ran(p, &jr->items[i].job);
  hand_back(p, jr);
  if (!collect_ready(p, jr)) {
    /* big reports of it are still being committed by the loader's stream
     * lane; the job keeps its slot until they are */
    jr->next_parked = p->parked;
    p->parked = jr;
    return;
  }
  pump(p);
}

/* The loader settled a stream: collect the jobs that waited for it. */
static void on_stream_settled(void *data) {
  struct dp_pipeline *p = data;
  struct job_req **pp = &p->parked;
  bool any = false;
  while (*pp) {
    struct job_req *jr = *pp;
    struct job_req *next = jr->next_parked;
    size_t before = jr->n_collected;
    if (collect_ready(p, jr)) {
      *pp = next; /* jr is freed */
      any = true;
    } else {
      any = any || jr->n_collected != before;
      pp = &jr->next_parked;
    }
  }
  if (any) pump(p);
}

/* ------------------------------------------------------------------------ */
/* Sink */

static void settle(struct dp_pipeline *p, dp_batch_t *b) {
  for (dp_staged_t *s = b->head; s; s = s->next) count_outcome(p, s, s->status, s->error);
  struct batch_inputs *bi = &p->binputs[b - p->batches];
  for (size_t i = 0; i < bi->n; i++) {
    if (p->o->input_done) p->o->input_done(p->o->data, bi->paths[i], bi->refused[i]);
    free(bi->paths[i]);
  }
  bi->n = 0;
  dp_batch_free(b);
}

/* Inputs of a batch that was not stored are not done: forget them. */
static void drop_inputs(struct dp_pipeline *p, dp_batch_t *b) {
  struct batch_inputs *bi = &p->binputs[b - p->batches];
  for (size_t i = 0; i < bi->n; i++) free(bi->paths[i]);
  bi->n = 0;
}

static void loaded(dp_loader_t *l, dp_batch_t *b, int status) {
  struct dp_pipeline *p = b->data;
  (void)l;
  if (status) {
    fprintf(p->o->err, "dmarcpipe: cannot load into the database: %s\n", dp_strerror(status));
    p->fatal = true;
    drop_inputs(p, b);
    dp_batch_free(b);
  } else {
    settle(p, b);
  }
  p->loading[b - p->batches] = false;
  p->n_loading--;
  pump(p);
}

/* Without a database every report counts as new; duplicates are not known.
 * The JSON-lines sink writes each report's records (spooled ones first). */
static void null_sink(struct dp_pipeline *p, dp_batch_t *b) {
  bool jsonl = p->o->sink == DP_SINK_JSONL;
  char *chunk = NULL;
  for (dp_staged_t *s = b->head; s; s = s->next) {
    s->status = DP_STAGED_NEW;
    if (!jsonl || p->fatal) continue;
    for (uint64_t off = 0; off < s->spool_len && !p->fatal;) {
      if (!chunk && !(chunk = malloc(1 << 18))) break;
      ssize_t n = pread(s->spool_fd, chunk, 1 << 18, (off_t)off);
      if (n <= 0 || fwrite(chunk, 1, (size_t)n, p->o->out) != (size_t)n) p->fatal = true;
      off += n > 0 ? (uint64_t)n : 0;
    }
    if (s->record_rows.len &&
        fwrite(s->record_rows.data, 1, s->record_rows.len, p->o->out) != s->record_rows.len)
      p->fatal = true;
  }
  free(chunk);
  if (jsonl && (p->fatal || fflush(p->o->out))) {
    if (!p->fatal) p->fatal = true;
    fprintf(p->o->err, "dmarcpipe: cannot write the JSON lines: %s\n", strerror(errno));
  }
  settle(p, b);
}

static bool batch_empty(const dp_batch_t *b) { return !b->head && !b->error_rows.len; }

/* Start whatever can start: the sink on the open batch, more jobs. */
static void pump(struct dp_pipeline *p) {
  const dp_pipeline_opts_t *o = p->o;
  if (p->fatal) {
    /* stop starting work; wait for jobs in flight, drop their results */
    if (!p->n_loading && !batch_empty(p->open)) {
      drop_inputs(p, p->open);
      dp_batch_free(p->open);
    }
  } else {
    while (!p->fatal && !batch_empty(p->open) &&
           (o->sink != DP_SINK_PG || !dp_loader_busy(p->loader))) {
      dp_batch_t *b = p->open;
      size_t next = 0;
      while (&p->batches[next] == b || p->loading[next]) next++; /* one is free */
      p->open = &p->batches[next];
      b->data = p;
      if (o->sink != DP_SINK_PG) {
        null_sink(p, b);
      } else {
        p->loading[b - p->batches] = true;
        p->n_loading++;
        if (dp_loader_submit(p->loader, b, loaded)) {
          fprintf(o->err, "dmarcpipe: internal error: loader busy\n");
          p->loading[b - p->batches] = false;
          p->n_loading--;
          p->fatal = true;
        }
      }
    }
  }
  /* The bytes held for the sink stay within two batches' worth, however
   * many are loading. While every batch connection is busy the open batch
   * stops at BATCH_SHARE bytes: the database is the slower side then, and
   * batches of that size keep both connections busy to the end instead of
   * leaving one to load a last big batch alone. */
  size_t held = 0;
  for (size_t i = 0; i < NBATCH; i++) held += p->batches[i].bytes;
  while (!p->fatal && (p->n_back || p->next_input < p->n_inputs) &&
         p->in_flight < o->max_in_flight && p->open->bytes < o->max_batch_bytes &&
         held < 2 * o->max_batch_bytes &&
         (p->n_loading < BATCH_CONNS || p->open->bytes < BATCH_SHARE)) {
    /* Inputs per job: enough that hand-offs stop mattering, few enough that
     * every pool thread still gets work until the queue runs dry. */
    size_t waiting = p->n_back + (p->n_inputs - p->next_input);
    size_t k = waiting / (2 * (o->max_in_flight ? o->max_in_flight : 1));
    if (k < 1) k = 1;
    if (k > JOB_MAX_INPUTS) k = JOB_MAX_INPUTS;
    struct job_req *jr = calloc(1, sizeof *jr + k * sizeof jr->items[0]);
    if (!jr) {
      p->fatal = true;
      break;
    }
    jr->p = p;
    for (size_t i = 0; i < k; i++) {
      struct job_item *it = &jr->items[jr->n++];
      if (p->n_back) {
        it->path = p->back[--p->n_back];
      } else {
        it->path = p->inputs[p->next_input];
        p->inputs[p->next_input++] = NULL;
      }
      dp_job_init(&it->job, it->path, &o->limits);
      const char *display = it->path + strlen(it->path) + 1;
      if (*display) it->job.display = display;
      it->job.listed = display[strlen(display) + 1] == 'w';
      it->job.jsonl = o->sink == DP_SINK_JSONL;
      it->job.no_rows = o->sink == DP_SINK_NULL;
      it->job.loader = p->loader;
    }
    jr->req.data = jr;
    if (uv_queue_work(p->loop, &jr->req, job_work, job_done)) {
      for (size_t i = 0; i < jr->n; i++) free(jr->items[i].path);
      free(jr);
      p->fatal = true;
      break;
    }
    p->in_flight++;
    p->inputs_in_jobs += jr->n;
  }
  bool done = p->closing && !p->closed && p->in_flight == 0 && !p->n_loading &&
              batch_empty(p->open) && !(p->loader && dp_loader_connecting(p->loader)) &&
              (p->fatal || (p->next_input == p->n_inputs && !p->n_back));
  if (done) {
    p->closed = true;
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
    if (p->close_cb) p->close_cb(p);
  }
}

static void on_progress(uv_timer_t *t) {
  struct dp_pipeline *p = t->data;
  double secs = (double)(uv_now(p->loop) - p->start_ms) / 1000.0;
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
  o->outage_budget_ms = 120 * 1000;
  o->err = stderr;
  o->out = stdout;
}

/* The first connection of dp_pipeline_run's loader is there, or failed. */
static void loader_ready(dp_loader_t *l, int status, const char *err, void *data) {
  struct dp_pipeline *p = data;
  (void)l;
  if (status) {
    fprintf(p->o->err, "dmarcpipe: %s\n", err);
    p->fatal = true;
  }
  pump(p);
}

/* A pipeline; with connect_async its loader connects while the first inputs
 * are walked and parsed (their batch waits for it). */
static dp_pipeline_t *pipeline_new(uv_loop_t *loop, const dp_pipeline_opts_t *o,
                                   dp_pipeline_stats_t *stats, bool connect_async) {
  dp_pipeline_t *p = calloc(1, sizeof *p);
  if (!p) {
    fprintf(o->err, "dmarcpipe: out of memory\n");
    return NULL;
  }
  memset(stats, 0, sizeof *stats);
  p->o = o;
  p->st = stats;
  p->loop = loop;
  for (size_t i = 0; i < NBATCH; i++) dp_batch_init(&p->batches[i]);
  p->open = &p->batches[0];
  if (o->sink == DP_SINK_PG) {
    char err[1024] = "out of memory";
    p->loader = connect_async ? dp_loader_create_async(loop, o->conninfo, loader_ready, p)
                              : dp_loader_create(loop, o->conninfo, err, sizeof err);
    if (!p->loader) {
      fprintf(o->err, "dmarcpipe: %s\n", err);
      free(p);
      return NULL;
    }
    dp_loader_set_outage_budget(p->loader, o->outage_budget_ms);
    dp_loader_set_batch_conns(p->loader, BATCH_CONNS);
    dp_loader_set_stream_conns(p->loader, STREAM_CONNS);
    dp_loader_set_stream_cb(p->loader, on_stream_settled, p);
  }
  p->start_ms = uv_now(loop);
  if (o->progress) {
    uv_timer_init(loop, &p->progress);
    p->progress.data = p;
    uv_timer_start(&p->progress, on_progress, 500, 500);
    p->progress_on = true;
  }
  return p;
}

dp_pipeline_t *dp_pipeline_create(uv_loop_t *loop, const dp_pipeline_opts_t *o,
                                  dp_pipeline_stats_t *stats) {
  return pipeline_new(loop, o, stats, false);
}

int dp_pipeline_add(dp_pipeline_t *p, const char *path) { return dp_pipeline_add_named(p, path, NULL); }

int dp_pipeline_add_named(dp_pipeline_t *p, const char *path, const char *display) {
  if (p->closing) return UV_EINVAL;
  int rc = add_input(p, path, display, false);
  if (!rc) pump(p);
  return rc;
}

size_t dp_pipeline_pending(const dp_pipeline_t *p) {
  size_t n = p->n_inputs - p->next_input + p->n_back + p->inputs_in_jobs;
  for (size_t i = 0; i < NBATCH; i++) n += p->binputs[i].n;
  return n;
}

bool dp_pipeline_failed(const dp_pipeline_t *p) { return p->fatal; }

void dp_pipeline_close(dp_pipeline_t *p, void (*closed)(dp_pipeline_t *p)) {
  if (closed) p->close_cb = closed;
  p->closing = true;
  pump(p);
}

void dp_pipeline_destroy(dp_pipeline_t *p) {
  if (!p) return;
  for (size_t i = p->next_input; i < p->n_inputs; i++) free(p->inputs[i]);
  free(p->inputs);
  for (size_t i = 0; i < p->n_back; i++) free(p->back[i]);
  free(p->back);
  for (size_t i = 0; i < NBATCH; i++) {
    drop_inputs(p, &p->batches[i]);
    free(p->binputs[i].paths);
    free(p->binputs[i].refused);
    dp_batch_free(&p->batches[i]);
  }
  free(p);
}

int dp_pipeline_run(const dp_pipeline_opts_t *o, char *const *paths, size_t n_paths,
                    dp_pipeline_stats_t *stats) {
  uv_loop_t loop;
  if (uv_loop_init(&loop)) {
    fprintf(o->err, "dmarcpipe: cannot start the event loop\n");
    return 2;
  }
  dp_pipeline_t *p = pipeline_new(&loop, o, stats, true);
  if (!p) {
    uv_loop_close(&loop);
    return 2;
  }
  int ret = 0;
  p->args = paths;
  p->n_args = n_paths;
  p->walk_req.data = p;
  if (uv_queue_work(&loop, &p->walk_req, walk_work, walk_done)) {
    fprintf(o->err, "dmarcpipe: cannot start the thread pool\n");
    ret = 2;
    p->fatal = true;
    dp_pipeline_close(p, NULL);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop)) fprintf(o->err, "dmarcpipe: internal error: handles left open\n");
  bool fatal = p->fatal;
  dp_pipeline_destroy(p);
  if (fatal) return 2;
  if (ret) return ret;
  return stats->inputs_refused || stats->reports_refused ? 1 : 0;
}
