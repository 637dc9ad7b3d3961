/* SPDX-License-Identifier: MIT */
/* store/loader.c - the non-blocking batch loader: one libpq connection driven
 * by the libuv loop through uv_poll, loading batches of staged reports with
 * COPY in one transaction each, retrying transient failures and isolating bad
 * reports. See docs/internals/LOADER.md for the contract. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "store.h"
#include "store_int.h"

/* Phases of one batch. Each phase sends one statement (or a COPY) and
 * completes when libpq has no more results for it. */
enum phase {
  PH_IDLE,
  PH_CONNECTING,
  PH_BACKOFF,
  PH_SESSION,
  PH_PARTITIONS,
  PH_BEGIN,
  PH_COPY_STAGE,
  PH_COPY_REPORT,
  PH_CLAIM,
  PH_COLLIDE,
  PH_COPY_RECORDS,
  PH_UPDATE,
  PH_COPY_ERRORS,
  PH_COMMIT,
  PH_ROLLBACK,
};

enum copy_kind { COPY_STAGE, COPY_DIRECT, COPY_RECORDS, COPY_ERRORS };

#define DP_LOADER_CHUNK (256 * 1024)
/* COPY data put into libpq between explicit flushes (see pump_copy) */
#define DP_LOADER_FLUSH (64 * 1024)
#define DP_LOADER_MAX_MONTHS 4096

struct dp_loader {
  uv_loop_t *loop;
  char *conninfo;
  PGconn *conn;
  uv_poll_t *poll;      /* one per connection: the socket changes on reconnect */
  int poll_events;
  uv_timer_t timer;     /* backoff */
  dp_batch_t *batch;    /* the batch being loaded (a sub-batch when splitting) */
  dp_batch_t *orig;     /* the batch the caller submitted */
  dp_loader_cb cb;
  enum phase phase;
  bool session_set;     /* this connection ran DP_STORE_UNTIMED_SESSION */
  bool copying;         /* COPY IN accepted: sending data */
  enum copy_kind copy_kind;
  dp_staged_t *copy_cur;
  size_t copy_idx;      /* COPY_DIRECT: position in order */
  uint64_t copy_off;
  size_t unflushed;     /* COPY bytes put since the last explicit flush */
  char *spool_buf;      /* DP_LOADER_CHUNK bytes read from a spool file */
  bool spool_error;
  /* spool reads run on a reader thread of our own, never on the loop
   * thread (nor in the libuv pool, where they would queue behind parse jobs) */
  struct reader *rd;    /* NULL until the first read; then its thread runs */
  bool rpending;        /* a read is in flight */
  bool rfail;           /* the last current read failed */
  uint64_t rgen;        /* bumped whenever buffered data may no longer apply */
  const dp_staged_t *rbuf_s; /* spool_buf holds rbuf_len bytes of rbuf_s at rbuf_off */
  uint64_t rbuf_off, rbuf_gen;
  size_t rbuf_len;
  bool copy_ended;
  /* claimed keys of the current batch, sorted */
  int64_t *claimed;
  size_t n_claimed, cap_claimed;
  int64_t *collided;
  size_t n_collided, cap_collided;
  /* The claim. Direct: the report rows are COPYed straight into report, in
   * key order (l->order), and the batch is all new; any key or identity
   * already there (or twice in the batch) makes the COPY fail with
   * unique_violation, and the batch is loaded again the staged way (stage
   * table, INSERT ... ON CONFLICT DO NOTHING, collision check). After such a
   * fallback the staged way is used until a batch turns out all new again,
   * so re-reading old mail does not pay for a failed COPY per batch. */
  dp_staged_t **order;
  size_t n_order, cap_order;
  bool direct;          /* this attempt claims directly */
  bool no_direct;       /* this (sub-)batch fell back: stage it */
  bool prefer_stage;    /* the last staged batch found stored reports */
  bool restart_staged;  /* roll back, then begin again staged */
  uint64_t n_direct, n_staged; /* committed claims of either way */
  /* first error of the current phase */
  char sqlstate[6];
  char errmsg[512];
  bool failed;
  bool batch_failed;    /* a data error: this (sub-)batch is refused */
  bool retry_pending;   /* a transient error: retry after the rollback */
  /* retries of the current batch */
  unsigned attempts;
  uint64_t outage_started; /* ms, 0 when no outage */
  bool outage_logged;
  /* splitting a failed batch into one-report batches */
  bool splitting;
  bool split_errors;         /* the sub-batch holds orig's error rows */
  dp_staged_t *split_next;   /* next report of orig to load alone */
  dp_staged_t *split_cur;    /* the report in the sub-batch now */
  dp_staged_t *split_saved;  /* split_cur's next, cut while it loads alone */
  dp_batch_t sub;
  /* months whose record partition this process has ensured */
  int64_t *months;
  size_t n_months;
  int64_t *new_months;
  size_t n_new_months;
  bool closing;
  uint64_t outage_budget_ms; /* 0: wait forever */
  /* streaming: the hub is the loader its creator owns; a lane is one of the
   * hub's stream connections, loading one stream at a time, so that several
   * big reports go to the server at once (a backend each) */
  bool is_lane;
  dp_loader_t *hub;          /* lane: its hub */
  dp_loader_t *lanes[DP_LOADER_MAX_STREAM_CONNS]; /* hub: each made with its first stream */
  unsigned stream_conns;     /* hub: lanes it may use, 1..DP_LOADER_MAX_STREAM_CONNS */
  /* a second batch connection: while the hub loads one batch, its peer
   * loads the next, so the server works on two at once (on two cores) */
  bool is_peer;
  unsigned batch_conns;      /* hub: 1 or 2 (1 again when the server refused the peer) */
  dp_loader_t *peer;         /* hub: created with the first batch that finds it busy */
  bool ever_connected;       /* this loader's connection was up once */
  dp_batch_t *deferred;      /* hub: a refused peer's batch, loaded after the current one */
  dp_loader_cb deferred_cb;
  uv_async_t async;          /* hub: workers wake the loop */
  uv_mutex_t smu;            /* hub: guards the inbox */
  dp_stream_t *inbox_head, *inbox_tail; /* hub: opened streams, under smu */
  dp_stream_t *q_head, *q_tail;         /* hub: streams waiting for a free lane */
  int lane_fatal;            /* hub: a lane gave up (DP_E*): settle the rest at once */
  dp_loader_stream_cb stream_cb;
  void *stream_data;
  dp_stream_t *cur;          /* lane: the stream being loaded */
  dp_batch_t sbatch;         /* lane: its one-report batch */
  bool waiting_data;         /* lane: the COPY waits for the worker to publish */
  bool abort_copy;           /* lane: end the COPY with an error (the worker refused the report) */
  int closes;                /* handles still closing before the memory goes */
  /* hub of dp_loader_create_async: the first connection is made in the
   * loop's thread pool; nothing loads until conn_done has run */
  uv_work_t conn_req;
  bool connecting;
  PGconn *conn_made;         /* conn_work's result, for conn_done */
  int conn_status;           /* DP_EPGCONN once the first connection failed */
  char conn_err[512];
  dp_loader_ready_cb ready;
  void *ready_data;
};

/* A streaming report. The worker's fields are guarded by mu; the loop
 * thread's (proxy, result...) are touched by the loop thread only. */
struct dp_stream {
  uv_mutex_t mu;
  int refs;
  dp_loader_t *hub;
  uint64_t published;   /* bytes of whole rows in the spool */
  bool complete, aborted, cancelled;
  uint64_t n_records, messages, content_hash;
  dp_staged_t proxy;    /* what the lane loads: key, report row, a dup of the spool fd */
  int result;           /* DP_STAGED_* or DP_E* */
  char *error;
  bool recorded;
  struct dp_stream *next;
};

static void drive(dp_loader_t *l);
static void start_batch(dp_loader_t *l);
static void phase_done(dp_loader_t *l);

/* ------------------------------------------------------------------------ */
/* Batches */

void dp_batch_init(dp_batch_t *b) {
  memset(b, 0, sizeof *b);
  dp_buf_init(&b->error_rows, 0);
}

void dp_batch_add(dp_batch_t *b, dp_staged_t *s) {
  s->next = NULL;
  if (b->tail)
    b->tail->next = s;
  else
    b->head = s;
  b->tail = s;
  b->n_reports++;
  b->bytes += s->report_row.len + dp_staged_rows_len(s);
}

void dp_batch_free(dp_batch_t *b) {
  dp_staged_t *s = b->head;
  while (s) {
    dp_staged_t *n = s->next;
    dp_staged_free(s);
    s = n;
  }
  dp_buf_free(&b->error_rows);
  void *data = b->data;
  dp_batch_init(b);
  b->data = data;
}

dp_staged_t *dp_staged_create(void) {
  dp_staged_t *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  dp_buf_init(&s->report_row, 0);
  dp_buf_init(&s->record_rows, 0);
  s->spool_fd = -1;
  return s;
}

uint64_t dp_staged_rows_len(const dp_staged_t *s) { return s->spool_len + s->record_rows.len; }

int dp_staged_spool(dp_staged_t *s, uint64_t cap) {
  if (!s->record_rows.len) return 0;
  if (s->spool_len + s->record_rows.len > cap) return DP_ELIMIT;
  if (s->spool_fd < 0) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/dmarcpipe-spool-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return DP_EIO;
    unlink(path); /* gone with the process, whatever happens */
    s->spool_fd = fd;
  }
  const char *p = s->record_rows.data;
  size_t n = s->record_rows.len;
  while (n) {
    ssize_t w = write(s->spool_fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      /* keep the file consistent with spool_len: drop a partial write */
      if (ftruncate(s->spool_fd, (off_t)s->spool_len) == 0)
        lseek(s->spool_fd, (off_t)s->spool_len, SEEK_SET);
      return DP_EIO;
    }
    p += w;
    n -= (size_t)w;
  }
  s->spool_len += s->record_rows.len;
  dp_buf_reset(&s->record_rows);
  return 0;
}

void dp_staged_free(dp_staged_t *s) {
  if (!s) return;
  if (s->stream) {
    dp_stream_abort(s->stream);
    dp_stream_release(s->stream);
  }
  dp_buf_free(&s->report_row);
  dp_buf_free(&s->record_rows);
  if (s->spool_fd >= 0) close(s->spool_fd);
  free(s->source);
  free(s->org_name);
  free(s->report_id);
  free(s->error);
  free(s);
}

/* ------------------------------------------------------------------------ */
/* Small helpers */

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static bool has_key(const int64_t *v, size_t n, int64_t k) {
  return n && bsearch(&k, v, n, sizeof *v, cmp_i64) != NULL;
}

static int push_key(int64_t **v, size_t *n, size_t *cap, int64_t k) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 64;
    int64_t *p = realloc(*v, nc * sizeof *p);
    if (!p) return DP_ENOMEM;
    *v = p;
    *cap = nc;
  }
  (*v)[(*n)++] = k;
  return 0;
}

/* The first line of msg (or fallback when there is none) into out: libpq
 * messages end with a newline and may carry DETAIL lines. */
static void first_line(char *out, size_t len, const char *msg, const char *fallback) {
  snprintf(out, len, "%s", msg && *msg ? msg : fallback);
  char *nl = strchr(out, '\n');
  if (nl) *nl = '\0';
}

static void set_error(dp_loader_t *l, const char *state, const char *msg) {
  if (l->failed) return;
  l->failed = true;
  snprintf(l->sqlstate, sizeof l->sqlstate, "%s", state ? state : "");
  first_line(l->errmsg, sizeof l->errmsg, msg, "unknown error");
}

static void ignore_notice(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static void poll_close_cb(uv_handle_t *h) { free(h); }

static void drop_conn(dp_loader_t *l) {
  if (l->poll) {
    uv_poll_stop(l->poll);
    uv_close((uv_handle_t *)l->poll, poll_close_cb);
    l->poll = NULL;
  }
  if (l->conn) PQfinish(l->conn);
  l->conn = NULL;
  l->session_set = false;
  l->poll_events = 0;
  l->waiting_data = false;
  l->rgen++; /* a read in flight belongs to the COPY that just died */
}

static void on_poll(uv_poll_t *h, int status, int events);

static int want(dp_loader_t *l, int events) {
  if (!l->poll) {
    l->poll = malloc(sizeof *l->poll);
    if (!l->poll) return DP_ENOMEM;
    int rc = uv_poll_init(l->loop, l->poll, PQsocket(l->conn));
    if (rc) {
      free(l->poll);
      l->poll = NULL;
      return rc;
    }
    l->poll->data = l;
    l->poll_events = 0;
  }
  if (events != l->poll_events) {
    l->poll_events = events;
    return uv_poll_start(l->poll, events, on_poll);
  }
  return 0;
}

static uint64_t backoff_ms(unsigned attempt) {
  uint64_t ms = 200;
  for (unsigned i = 1; i < attempt && ms < 5000; i++) ms *= 2;
  return ms > 5000 ? 5000 : ms;
}


static void finish(dp_loader_t *l, int status);

static void on_timer(uv_timer_t *t) {
  dp_loader_t *l = t->data;
  if (l->orig) start_batch(l);
}

/* One stderr line per outage, naming its first cause. */
static void note_outage(dp_loader_t *l, const char *why) {
  if (!l->outage_started) l->outage_started = uv_now(l->loop);
  if (!l->outage_logged) {
    char line[600];
    first_line(line, sizeof line, why, "connection lost");
    fprintf(stderr, "dmarcpipe: database unavailable (%s); retrying\n", line);
    l->outage_logged = true;
  }
}

static void retry_later(dp_loader_t *l, const char *why_in);

/* A connection could not be made. For a second batch connection that never
 * came up while the first is up, the server is refusing us more connections
 * (max_connections, a role's CONNECTION LIMIT): waiting for a slot would
 * stall the whole run (the peer's batch holds the rest back) until the
 * outage budget fails it. The batch goes to the first connection instead,
 * and the run goes on with one. Anything else is an outage: retry. */
static void connect_failed(dp_loader_t *l, const char *why_in) {
  dp_loader_t *h = l->hub;
  if (!l->is_peer || l->ever_connected || !h || !h->conn || PQstatus(h->conn) != CONNECTION_OK) {
    retry_later(l, why_in);
    return;
  }
  char why[600];
  first_line(why, sizeof why, why_in, "connection refused");
  fprintf(stderr, "dmarcpipe: the database refused a second connection (%s); loading on one\n",
          why);
  dp_batch_t *b = l->orig;
  dp_loader_cb cb = l->cb;
  drop_conn(l);
  uv_timer_stop(&l->timer);
  l->orig = l->batch = NULL;
  l->cb = NULL;
  l->phase = PH_IDLE;
  l->attempts = 0;
  l->outage_started = 0;
  l->outage_logged = false;
  h->batch_conns = 1;
  if (!h->orig) {
    if (dp_loader_submit(h, b, cb)) cb(h, b, DP_EPG);
  } else {
    h->deferred = b;
    h->deferred_cb = cb;
  }
}

/* A connection-level or transient failure: retry the whole batch later. */
static void retry_later(dp_loader_t *l, const char *why_in) {
  /* why often points into the connection (PQerrorMessage): copy it first */
  char why[600];
  snprintf(why, sizeof why, "%s", why_in ? why_in : "");
  drop_conn(l);
  note_outage(l, why);
  uint64_t now = uv_now(l->loop);
  if (l->outage_budget_ms && now - l->outage_started > l->outage_budget_ms) {
    fprintf(stderr, "dmarcpipe: database still unavailable after %" PRIu64 " s: %s\n",
            l->outage_budget_ms / 1000, why);
    finish(l, DP_EPGCONN);
    return;
  }
  l->attempts++;
  l->phase = PH_BACKOFF;
  uv_timer_start(&l->timer, on_timer, backoff_ms(l->attempts), 0);
}

/* ------------------------------------------------------------------------ */
/* The spool reader thread: one pread at a time, result handed back through
 * the loader's async handle. */

struct reader {
  uv_thread_t thr;
  uv_mutex_t mu;
  uv_cond_t cv;
  bool quit;
  bool req;             /* a request waits */
  int fd;
  uint64_t off, gen;
  size_t len;
  char *buf;
  bool done;            /* a result waits */
  ssize_t got;
  uint64_t done_gen;
  uv_async_t *wake;
};

static void reader_main(void *arg) {
  struct reader *r = arg;
  uv_mutex_lock(&r->mu);
  for (;;) {
    while (!r->req && !r->quit) uv_cond_wait(&r->cv, &r->mu);
    if (r->quit) break;
    r->req = false;
    int fd = r->fd;
    uint64_t off = r->off, gen = r->gen;
    size_t len = r->len;
    uv_mutex_unlock(&r->mu);
    ssize_t got = -1;
    if (fd >= 0) {
      do
        got = pread(fd, r->buf, len, (off_t)off);
      while (got < 0 && errno == EINTR);
      close(fd); /* our own duplicate: see reader_request */
    }
    uv_mutex_lock(&r->mu);
    r->got = got;
    r->done_gen = gen;
    r->done = true;
    uv_async_send(r->wake);
  }
  uv_mutex_unlock(&r->mu);
}

static int reader_start(dp_loader_t *l) {
  struct reader *r = calloc(1, sizeof *r);
  if (!r) return DP_ENOMEM;
  r->buf = l->spool_buf;
  r->wake = &l->async;
  if (uv_mutex_init(&r->mu)) {
    free(r);
    return DP_ENOMEM;
  }
  if (uv_cond_init(&r->cv)) {
    uv_mutex_destroy(&r->mu);
    free(r);
    return DP_ENOMEM;
  }
  if (uv_thread_create(&r->thr, reader_main, r)) {
    uv_cond_destroy(&r->cv);
    uv_mutex_destroy(&r->mu);
    free(r);
    return DP_ENOMEM;
  }
  l->rd = r;
  return 0;
}

/* Stop and join the thread (it finishes the read in hand, if any). */
static void reader_stop(dp_loader_t *l) {
  struct reader *r = l->rd;
  if (!r) return;
  uv_mutex_lock(&r->mu);
  r->quit = true;
  uv_cond_signal(&r->cv);
  uv_mutex_unlock(&r->mu);
  uv_thread_join(&r->thr);
  uv_cond_destroy(&r->cv);
  uv_mutex_destroy(&r->mu);
  free(r);
  l->rd = NULL;
}

/* Ask for len bytes of s's spool at off into spool_buf (loop thread). */
static void reader_request(dp_loader_t *l, const dp_staged_t *s, uint64_t off, size_t len) {
  struct reader *r = l->rd;
  l->rpending = true;
  l->rbuf_s = s;
  l->rbuf_off = off;
  l->rbuf_len = 0;
  l->rbuf_gen = l->rgen;
  /* The reader reads a duplicate of the descriptor, so a spool closed while
   * its read is in flight (the report was dropped or retried) cannot have
   * its number reused under the read. A failed dup() is a failed read. */
  int fd = fcntl(s->spool_fd, F_DUPFD_CLOEXEC, 0);
  uv_mutex_lock(&r->mu);
  r->fd = fd;
  r->off = off;
  r->len = len;
  r->gen = l->rgen;
  r->req = true;
  uv_cond_signal(&r->cv);
  uv_mutex_unlock(&r->mu);
}

/* A read finished (loop thread, from the async callback): keep its bytes if
 * they still apply, and let a COPY that waited for them go on. */
static void reader_collect(dp_loader_t *l) {
  struct reader *r = l->rd;
  if (!r) return;
  uv_mutex_lock(&r->mu);
  bool done = r->done;
  ssize_t got = r->got;
  uint64_t gen = r->done_gen;
  r->done = false;
  uv_mutex_unlock(&r->mu);
  if (!done) return;
  l->rpending = false;
  if (gen == l->rgen) {
    if (got > 0)
      l->rbuf_len = (size_t)got;
    else
      l->rfail = true;
  } else {
    l->rbuf_s = NULL; /* stale: a retry or another COPY started meanwhile */
  }
  if (l->waiting_data && l->conn && !l->closing) drive(l);
}

/* ------------------------------------------------------------------------ */
/* Sending */

static void send_query(dp_loader_t *l, enum phase ph, const char *sql) {
  l->phase = ph;
  l->copying = false;
  l->failed = false;
  if (!PQsendQuery(l->conn, sql)) {
    retry_later(l, PQerrorMessage(l->conn));
    return;
  }
  drive(l);
}

static void send_copy(dp_loader_t *l, enum phase ph, enum copy_kind kind, const char *table,
                      const char *columns) {
  char sql[1024];
  snprintf(sql, sizeof sql, "COPY %s (%s) FROM STDIN", table, columns);
  l->copy_kind = kind;
  l->copy_cur = l->batch->head;
  l->copy_idx = 0;
  l->copy_off = 0;
  l->unflushed = 0;
  l->copy_ended = false;
  l->abort_copy = false;
  l->spool_error = false;
  l->rfail = false;
  l->rgen++;
  l->rbuf_s = NULL;
  send_query(l, ph, sql);
}

/* How much of a stream's spool the lane may send: refreshes s->spool_len
 * from what the worker published. 1 when more may come, 0 when complete,
 * -1 when the worker refused the report. */
static int stream_window(dp_staged_t *s) {
  dp_stream_t *st = s->stream;
  uv_mutex_lock(&st->mu);
  int w = st->aborted ? -1 : st->complete ? 0 : 1;
  s->spool_len = st->published;
  uv_mutex_unlock(&st->mu);
  return w;
}

/* The next piece of COPY data for the current copy: 1 with a piece, 0 at
 * the end, 2 when a stream waits for its worker to publish more rows. */
static int copy_piece(dp_loader_t *l, const char **p, size_t *n) {
  if (l->copy_kind == COPY_ERRORS) {
    dp_buf_t *b = &l->batch->error_rows;
    if (l->copy_off >= b->len) return 0;
    *p = b->data + l->copy_off;
    *n = b->len - l->copy_off;
    return 1;
  }
  if (l->copy_kind == COPY_DIRECT) {
    while (l->copy_idx < l->n_order) {
      const dp_buf_t *row = &l->order[l->copy_idx]->report_row;
      if (l->copy_off < row->len) {
        *p = row->data + l->copy_off;
        *n = row->len - l->copy_off;
        return 1;
      }
      l->copy_idx++;
      l->copy_off = 0;
    }
    return 0;
  }
  while (l->copy_cur) {
    dp_staged_t *s = l->copy_cur;
    if (l->copy_kind == COPY_STAGE) {
      if (l->copy_off < s->report_row.len) {
        *p = s->report_row.data + l->copy_off;
        *n = s->report_row.len - l->copy_off;
        return 1;
      }
    } else if (s->status == DP_STAGED_NEW) {
      if (s->stream) {
        int w = stream_window(s);
        if (w < 0) {
          l->abort_copy = true;
          return 0;
        }
        if (w > 0 && l->copy_off >= s->spool_len) return 2;
      }
      /* a report's rows are its spool file, then what is still in memory */
      if (l->copy_off < s->spool_len) {
        if (l->rbuf_s == s && l->rbuf_gen == l->rgen && !l->rpending &&
            l->copy_off >= l->rbuf_off && l->copy_off < l->rbuf_off + l->rbuf_len) {
          *p = l->spool_buf + (l->copy_off - l->rbuf_off);
          *n = (size_t)(l->rbuf_off + l->rbuf_len - l->copy_off);
          return 1;
        }
        if (l->rfail) {
          l->rfail = false;
          l->spool_error = true;
          return 0;
        }
        uint64_t left = s->spool_len - l->copy_off;
        size_t want = left < DP_LOADER_CHUNK ? (size_t)left : DP_LOADER_CHUNK;
        if (!l->rd && reader_start(l)) {
          /* no thread: read here, as a last resort */
          ssize_t r = pread(s->spool_fd, l->spool_buf, want, (off_t)l->copy_off);
          if (r <= 0) {
            l->spool_error = true;
            return 0;
          }
          *p = l->spool_buf;
          *n = (size_t)r;
          return 1;
        }
        /* one read at a time: spool_buf is the reader's until it is done */
        if (!l->rpending) reader_request(l, s, l->copy_off, want);
        return 2;
      }
      if (l->copy_off - s->spool_len < s->record_rows.len) {
        *p = s->record_rows.data + (l->copy_off - s->spool_len);
        *n = s->record_rows.len - (size_t)(l->copy_off - s->spool_len);
        return 1;
      }
    }
    l->copy_cur = s->next;
    l->copy_off = 0;
  }
  return 0;
}

/* Push COPY data until libpq's buffer is full (returns 1, waiting for
 * writability), a stream waits for its worker (2), or all is sent and the
 * COPY ended (0). */
static int pump_copy(dp_loader_t *l) {
  const char *p;
  size_t n;
  int pc = 0;
  while (!l->copy_ended && (pc = copy_piece(l, &p, &n)) == 1) {
    if (n > DP_LOADER_CHUNK) n = DP_LOADER_CHUNK;
    int rc = PQputCopyData(l->conn, p, (int)n);
    if (rc < 0) return -1;
    if (rc == 0) return 1; /* buffer full: wait for writable */
    l->copy_off += n;
    /* libpq sends whole 8 kB blocks by itself as its buffer fills. Flushing
     * after every piece made a send() for each small report's row and rows,
     * and a wake-up of the backend for each. But in non-blocking mode libpq
     * grows its output buffer without bound when the server is slower than
     * we are, so every DP_LOADER_FLUSH bytes we flush and, if the socket is
     * full, wait for it: the buffer holds at most about that plus a chunk. */
    l->unflushed += n;
    if (l->unflushed >= DP_LOADER_FLUSH) {
      l->unflushed = 0;
      int f = PQflush(l->conn);
      if (f < 0) return -1;
      if (f > 0) return 1;
    }
  }
  if (!l->copy_ended && pc == 2) return 2;
  if (!l->copy_ended) {
    /* a spool file that cannot be read back aborts the COPY: the batch
     * is then refused by the server and replayed report by report; so does
     * a stream its worker refused (the lane then rolls back) */
    int rc = PQputCopyEnd(l->conn, l->spool_error    ? "spool file unreadable"
                                   : l->abort_copy ? "report refused while streaming"
                                                   : NULL);
    l->spool_error = false;
    if (rc < 0) return -1;
    if (rc == 0) return 1;
    l->copy_ended = true;
    l->copying = false;
  }
  return 0;
}

/* ------------------------------------------------------------------------ */
/* Results */

static void take_tuples(dp_loader_t *l, PGresult *r) {
  int64_t **v = l->phase == PH_CLAIM ? &l->claimed : &l->collided;
  size_t *n = l->phase == PH_CLAIM ? &l->n_claimed : &l->n_collided;
  size_t *cap = l->phase == PH_CLAIM ? &l->cap_claimed : &l->cap_collided;
  for (int i = 0; i < PQntuples(r); i++) {
    int64_t k = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    if (push_key(v, n, cap, k)) {
      set_error(l, "", "out of memory");
      return;
    }
  }
}

static void handle_result(dp_loader_t *l, PGresult *r) {
  switch (PQresultStatus(r)) {
  case PGRES_COPY_IN:
    l->copying = true;
    break;
  case PGRES_TUPLES_OK:
    if (l->phase == PH_CLAIM || l->phase == PH_COLLIDE) take_tuples(l, r);
    break;
  case PGRES_COMMAND_OK:
  case PGRES_EMPTY_QUERY:
    break;
  default:
    set_error(l, PQresultErrorField(r, PG_DIAG_SQLSTATE), PQresultErrorMessage(r));
    break;
  }
}

/* Move the state machine as far as it goes without blocking. */
static void drive(dp_loader_t *l) {
  l->waiting_data = false;
  for (;;) {
    if (PQstatus(l->conn) != CONNECTION_OK) {
      retry_later(l, PQerrorMessage(l->conn));
      return;
    }
    if (l->copying) {
      int rc = pump_copy(l);
      if (rc < 0) {
        retry_later(l, PQerrorMessage(l->conn));
        return;
      }
      if (rc > 0) {
        int f = PQflush(l->conn);
        if (f < 0) {
          retry_later(l, PQerrorMessage(l->conn));
          return;
        }
        /* waiting for the worker: only the server's words (an error, the
         * end of the connection) matter meanwhile; the hub pokes us */
        if (rc == 2 && !f) {
          l->waiting_data = true;
          want(l, UV_READABLE);
          return;
        }
        want(l, UV_READABLE | UV_WRITABLE);
        return;
      }
    }
    int f = PQflush(l->conn);
    if (f < 0) {
      retry_later(l, PQerrorMessage(l->conn));
      return;
    }
    if (f > 0) {
      want(l, UV_READABLE | UV_WRITABLE);
      return;
    }
    if (PQisBusy(l->conn)) {
      want(l, UV_READABLE);
      return;
    }
    PGresult *r = PQgetResult(l->conn);
    if (!r) {
      phase_done(l);
      return;
    }
    handle_result(l, r);
    PQclear(r);
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  dp_loader_t *l = h->data;
  if (!l->orig) {
    /* idle (the poll is normally stopped then): a dead connection is
     * dropped quietly and reopened when the next batch comes */
    if (status < 0 || !PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK)
      drop_conn(l);
    return;
  }
  if (l->phase == PH_CONNECTING) {
    start_batch(l);
    return;
  }
  if (status < 0) {
    /* libpq may have closed the socket under us: its message says why.
     * Otherwise libuv saw POLLERR, which it reports as UV_EBADF: the
     * socket failed, and "bad file descriptor" would mislead a reader. */
    const char *m = l->conn ? PQerrorMessage(l->conn) : "";
    retry_later(l, m && *m ? m : "the connection to the server failed");
    return;
  }
  if ((events & UV_READABLE) && !PQconsumeInput(l->conn)) {
    retry_later(l, PQerrorMessage(l->conn));
    return;
  }
  drive(l);
}

/* ------------------------------------------------------------------------ */
/* The batch sequence */

static bool transient(const char *state) {
  /* 40001 serialization, 40P01 deadlock, 08 connection, 57P 'operator
   * intervention' (shutdown/restart), 53 insufficient resources, 55P03 lock not
   * available, 23505 a unique race on partition creation */
  return !strcmp(state, "40001") || !strcmp(state, "40P01") || !strncmp(state, "08", 2) ||
         !strncmp(state, "57P", 3) || !strncmp(state, "53", 2) || !strcmp(state, "55P03") ||
         !strcmp(state, "42P07");
}

static void collect_new_months(dp_loader_t *l);
static void send_partitions(dp_loader_t *l);
static void begin_tx(dp_loader_t *l);

/* What comes after connecting: partitions of new months, then the batch. */
static void session_ready(dp_loader_t *l) {
  collect_new_months(l);
  if (l->n_new_months)
    send_partitions(l);
  else
    begin_tx(l);
}

static void send_partitions(dp_loader_t *l) {
  dp_buf_t sql;
  dp_buf_init(&sql, 0);
  int rc = dp_buf_puts(&sql, "SELECT dp_ensure_record_partition(to_timestamp(x)) "
                             "FROM unnest(ARRAY[");
  for (size_t i = 0; i < l->n_new_months && !rc; i++)
    rc = dp_buf_printf(&sql, "%s%" PRId64, i ? "," : "", l->new_months[i]);
  if (!rc) rc = dp_buf_puts(&sql, "]::bigint[]) x");
  if (rc) {
    dp_buf_free(&sql);
    finish(l, rc);
    return;
  }
  send_query(l, PH_PARTITIONS, sql.data);
  dp_buf_free(&sql);
}

static int64_t month_of(int64_t t) {
  int64_t day = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  /* civil-from-days (proleptic Gregorian), to the first day of the month */
  int64_t z = day + 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t d = doy - (153 * mp + 2) / 5; /* 0-based day of month */
  return (day - d) * 86400;
}

/* The loader whose list of ensured months a connection reads and extends:
 * a peer shares its hub's (a month either of them ensured is committed). */
static dp_loader_t *months_of(dp_loader_t *l) { return l->is_peer ? l->hub : l; }

static void collect_new_months(dp_loader_t *l) {
  dp_loader_t *mo = months_of(l);
  l->n_new_months = 0;
  for (dp_staged_t *s = l->batch->head; s; s = s->next) {
    if (!dp_staged_rows_len(s)) continue;
    int64_t m = month_of(s->begin);
    bool seen = false;
    for (size_t i = 0; i < mo->n_months && !seen; i++) seen = mo->months[i] == m;
    for (size_t i = 0; i < l->n_new_months && !seen; i++) seen = l->new_months[i] == m;
    if (!seen && l->n_new_months < DP_LOADER_MAX_MONTHS) {
      int64_t *p = realloc(l->new_months, (l->n_new_months + 1) * sizeof *p);
      if (!p) return;
      l->new_months = p;
      l->new_months[l->n_new_months++] = m;
    }
  }
}

static int cmp_staged_key(const void *a, const void *b) {
  const dp_staged_t *x = *(dp_staged_t *const *)a, *y = *(dp_staged_t *const *)b;
  return x->key < y->key ? -1 : x->key > y->key;
}

/* Whether this attempt may claim directly (see struct dp_loader): a batch,
 * not a stream, that did not fall back already and holds no key twice.
 * l->order then holds its reports in key order: concurrent loaders insert
 * keys in the same order, so one waits for the other instead of deadlocking. */
static bool plan_direct(dp_loader_t *l) {
  if (l->is_lane || l->no_direct || l->prefer_stage || !l->batch->head) return false;
  size_t n = 0;
  for (dp_staged_t *s = l->batch->head; s; s = s->next) n++;
  if (n > l->cap_order) {
    dp_staged_t **v = realloc(l->order, n * sizeof *v);
    if (!v) return false;
    l->order = v;
    l->cap_order = n;
  }
  n = 0;
  for (dp_staged_t *s = l->batch->head; s; s = s->next) l->order[n++] = s;
  qsort(l->order, n, sizeof *l->order, cmp_staged_key);
  for (size_t i = 1; i < n; i++)
    if (l->order[i]->key == l->order[i - 1]->key) return false;
  l->n_order = n;
  return true;
}

static void begin_tx(dp_loader_t *l) {
  l->batch_failed = false;
  l->retry_pending = false;
  l->restart_staged = false;
  l->n_claimed = 0;
  l->n_collided = 0;
  for (dp_staged_t *s = l->batch->head; s; s = s->next) s->status = DP_STAGED_PENDING;
  l->direct = plan_direct(l);
  send_query(l, PH_BEGIN,
             l->direct ? "BEGIN"
                       : "BEGIN; CREATE TEMP TABLE IF NOT EXISTS dp_report_stage "
                         "(LIKE report INCLUDING DEFAULTS) ON COMMIT DELETE ROWS");
}

/* Whether an idle connection was closed by the server. Its last words (a
 * FATAL error, which libpq reports as a result or a notice while idle) and
 * the end of the stream may come in separate reads; anything at all from the
 * server between batches means the session is over. */
static bool idle_conn_dead(PGconn *c) {
  bool heard = false;
  for (int i = 0; i < 3; i++) {
    struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
    if (pfd.fd < 0) return true;
    if (poll(&pfd, 1, heard ? 50 : 0) <= 0) break;
    heard = true;
    if (!PQconsumeInput(c) || PQstatus(c) != CONNECTION_OK) return true;
    PGresult *r;
    while (!PQisBusy(c) && (r = PQgetResult(c))) PQclear(r);
  }
  return heard || PQstatus(c) != CONNECTION_OK;
}

static bool stream_aborted(dp_stream_t *st) {
  uv_mutex_lock(&st->mu);
  bool a = st->aborted;
  uv_mutex_unlock(&st->mu);
  return a;
}

static void start_batch(dp_loader_t *l) {
  if (l->closing) return;
  /* a stream refused by its worker while we waited (backoff, queue) needs
   * no database at all */
  if (l->is_lane && l->phase != PH_CONNECTING && l->cur && stream_aborted(l->cur)) {
    l->batch_failed = true;
    finish(l, 0);
    return;
  }
  /* a connection that died while idle (server restart, idle timeout) is
   * replaced quietly: nothing was in flight on it */
  if (l->conn && (l->phase == PH_IDLE || l->phase == PH_BACKOFF) && idle_conn_dead(l->conn))
    drop_conn(l);
  if (!l->conn || l->phase == PH_CONNECTING) {
    if (!l->conn) {
      /* the same defaults as dp_store_connect: every string we send is UTF-8 */
      const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                            "client_encoding", NULL};
      const char *vals[] = {"10", "dmarcpipe", l->conninfo, "UTF8", NULL};
      l->conn = PQconnectStartParams(keys, vals, 1);
      if (!l->conn) {
        finish(l, DP_ENOMEM);
        return;
      }
      if (PQstatus(l->conn) == CONNECTION_BAD) {
        connect_failed(l, PQerrorMessage(l->conn));
        return;
      }
      l->phase = PH_CONNECTING;
      if (want(l, UV_WRITABLE)) {
        retry_later(l, "cannot poll the database socket");
        return;
      }
      return;
    }
    switch (PQconnectPoll(l->conn)) {
    case PGRES_POLLING_READING:
      want(l, UV_READABLE);
      return;
    case PGRES_POLLING_WRITING:
      want(l, UV_WRITABLE);
      return;
    case PGRES_POLLING_FAILED:
      connect_failed(l, PQerrorMessage(l->conn));
      return;
    default:
      break;
    }
    PQsetnonblocking(l->conn, 1);
    PQsetNoticeProcessor(l->conn, ignore_notice, NULL);
    l->ever_connected = true;
    if (l->outage_logged) fprintf(stderr, "dmarcpipe: database reachable again; resuming\n");
    l->outage_logged = false;
    l->outage_started = 0;
  }
  if (!l->session_set) {
    /* once per connection, outside any transaction (decision 38) */
    send_query(l, PH_SESSION, DP_STORE_UNTIMED_SESSION);
    return;
  }
  session_ready(l);
}

static void mark_outcomes(dp_loader_t *l) {
  if (l->n_claimed) qsort(l->claimed, l->n_claimed, sizeof *l->claimed, cmp_i64);
  if (l->n_collided) qsort(l->collided, l->n_collided, sizeof *l->collided, cmp_i64);
  /* A key is taken by the first staged report that carries it: the same
   * report twice in one batch is stored once. */
  int64_t *taken = NULL;
  size_t n_taken = 0, cap_taken = 0;
  for (dp_staged_t *s = l->batch->head; s; s = s->next) {
    if (has_key(l->claimed, l->n_claimed, s->key)) {
      bool dup = false;
      for (size_t i = 0; i < n_taken && !dup; i++) dup = taken[i] == s->key;
      if (!dup && !push_key(&taken, &n_taken, &cap_taken, s->key)) {
        s->status = DP_STAGED_NEW;
        continue;
      }
    }
    if (has_key(l->collided, l->n_collided, s->key) && s->status != DP_STAGED_NEW) {
      /* practically never (2^-64), but a different report must not be
       * mistaken for a duplicate silently */
      s->status = DP_STAGED_FAILED;
      free(s->error);
      s->error = strdup("report key collides with a different stored report");
      dp_store_encode_error(&l->batch->error_rows, s->source, "", s->org_name, s->report_id,
                            DP_ECOLLISION, s->error ? s->error : "key collision");
      l->batch->n_errors++;
      continue;
    }
    s->status = DP_STAGED_DUPLICATE;
  }
  free(taken);
  /* stored reports seen: the next batches may well hold more of them */
  bool all_new = true;
  for (dp_staged_t *s = l->batch->head; s && all_new; s = s->next)
    all_new = s->status == DP_STAGED_NEW;
  l->prefer_stage = !all_new;
}

static bool any_new_records(dp_loader_t *l) {
  for (dp_staged_t *s = l->batch->head; s; s = s->next)
    if (s->status == DP_STAGED_NEW && dp_staged_rows_len(s)) return true;
  return false;
}

static void split_step(dp_loader_t *l);

static void phase_failed(dp_loader_t *l) {
  if (PQstatus(l->conn) != CONNECTION_OK || transient(l->sqlstate)) {
    /* roll back on this connection if it is alive, then retry the batch */
    char why[600];
    snprintf(why, sizeof why, "%s", l->errmsg);
    if (PQstatus(l->conn) == CONNECTION_OK && PQtransactionStatus(l->conn) != PQTRANS_IDLE) {
      if (strncmp(l->sqlstate, "40", 2)) note_outage(l, why); /* not a mere deadlock */
      l->retry_pending = true;
      send_query(l, PH_ROLLBACK, "ROLLBACK");
      return;
    }
    retry_later(l, why);
    return;
  }
  if (l->direct && l->phase == PH_COPY_REPORT && !strcmp(l->sqlstate, "23505")) {
    /* a report already stored (or being stored by another loader), or a
     * key collision: claim this batch the staged way, which tells them apart */
    l->no_direct = true;
    l->prefer_stage = true;
    l->restart_staged = true;
    send_query(l, PH_ROLLBACK, "ROLLBACK");
    return;
  }
  l->batch_failed = true;
  if (l->is_lane) {
    /* a stream is one report: refused (or aborted by its worker) as a whole */
    if (PQtransactionStatus(l->conn) != PQTRANS_IDLE) {
      send_query(l, PH_ROLLBACK, "ROLLBACK");
      return;
    }
    finish(l, 0);
    return;
  }
  /* A data error: roll back, then load the reports one by one so that the
   * one at fault is refused alone. */
  if (!l->splitting)
    fprintf(stderr, "dmarcpipe: batch refused by the database (%s); loading its reports one by one\n",
            l->errmsg);
  if (PQtransactionStatus(l->conn) != PQTRANS_IDLE) {
    send_query(l, PH_ROLLBACK, "ROLLBACK");
    return;
  }
  split_step(l);
}

static void phase_done(dp_loader_t *l) {
  if (l->failed && l->phase != PH_ROLLBACK) {
    phase_failed(l);
    return;
  }
  switch (l->phase) {
  case PH_SESSION:
    l->session_set = true;
    session_ready(l);
    return;
  case PH_PARTITIONS:
    for (size_t i = 0; i < l->n_new_months; i++) {
      dp_loader_t *mo = months_of(l);
      bool seen = false;
      for (size_t j = 0; j < mo->n_months && !seen; j++) seen = mo->months[j] == l->new_months[i];
      if (seen) continue; /* the other connection ensured it meanwhile */
      int64_t *p = realloc(mo->months, (mo->n_months + 1) * sizeof *p);
      if (!p) break;
      mo->months = p;
      mo->months[mo->n_months++] = l->new_months[i];
    }
    l->n_new_months = 0;
    begin_tx(l);
    return;
  case PH_BEGIN:
    if (l->batch->head && l->direct)
      send_copy(l, PH_COPY_REPORT, COPY_DIRECT, "report", dp_store_report_columns);
    else if (l->batch->head)
      send_copy(l, PH_COPY_STAGE, COPY_STAGE, "dp_report_stage", dp_store_report_columns);
    else if (l->batch->error_rows.len)
      send_copy(l, PH_COPY_ERRORS, COPY_ERRORS, "ingest_error", dp_store_error_columns);
    else
      send_query(l, PH_COMMIT, "COMMIT");
    return;
  case PH_COPY_STAGE:
    send_query(l, PH_CLAIM,
               "INSERT INTO report SELECT * FROM dp_report_stage ORDER BY id "
               "ON CONFLICT DO NOTHING RETURNING id");
    return;
  case PH_CLAIM:
    send_query(l, PH_COLLIDE,
               "SELECT s.id FROM dp_report_stage s JOIN report r ON r.id = s.id "
               "WHERE (r.org_name, r.report_id, r.domain, r.begin_ts, r.end_ts) IS DISTINCT FROM "
               "(s.org_name, s.report_id, s.domain, s.begin_ts, s.end_ts)");
    return;
  case PH_COLLIDE:
    mark_outcomes(l);
    if (l->is_lane && l->cur && l->cur->proxy.status == DP_STAGED_DUPLICATE) {
      /* already stored: its worker may stop encoding rows */
      uv_mutex_lock(&l->cur->mu);
      l->cur->cancelled = true;
      uv_mutex_unlock(&l->cur->mu);
    }
    /* fall through */
  case PH_COPY_REPORT:
    if (l->phase == PH_COPY_REPORT) /* no conflict at all: every report is new */
      for (dp_staged_t *s = l->batch->head; s; s = s->next) s->status = DP_STAGED_NEW;
    if (any_new_records(l)) {
      send_copy(l, PH_COPY_RECORDS, COPY_RECORDS, "record", dp_store_record_columns);
      return;
    }
    /* fall through */
  case PH_COPY_RECORDS:
    if (l->phase == PH_COPY_RECORDS && l->is_lane && l->cur &&
        l->cur->proxy.status == DP_STAGED_NEW) {
      /* the report was claimed with the counts known when it started */
      dp_stream_t *st = l->cur;
      uint64_t h = st->content_hash;
      int64_t hash = h <= (uint64_t)INT64_MAX ? (int64_t)h : -(int64_t)(~h) - 1;
      char sql[256];
      snprintf(sql, sizeof sql,
               "UPDATE report SET n_records = %" PRIu64 ", messages = %" PRIu64
               ", content_hash = %" PRId64 " WHERE id = %" PRId64,
               st->n_records, st->messages, hash, st->proxy.key);
      send_query(l, PH_UPDATE, sql);
      return;
    }
    /* fall through */
  case PH_UPDATE:
    if (l->batch->error_rows.len) {
      send_copy(l, PH_COPY_ERRORS, COPY_ERRORS, "ingest_error", dp_store_error_columns);
      return;
    }
    /* fall through */
  case PH_COPY_ERRORS:
    send_query(l, PH_COMMIT, "COMMIT");
    return;
  case PH_COMMIT:
    l->attempts = 0;
    if (l->batch->head) {
      if (l->direct)
        l->n_direct++;
      else
        l->n_staged++;
    }
    if (l->splitting) {
      split_step(l);
      return;
    }
    finish(l, 0);
    return;
  case PH_ROLLBACK: {
    if (l->restart_staged && !l->retry_pending && !l->failed && PQstatus(l->conn) == CONNECTION_OK) {
      begin_tx(l); /* the fallback of a direct claim */
      return;
    }
    l->restart_staged = false;
    if (l->retry_pending || l->failed || PQstatus(l->conn) != CONNECTION_OK) {
      l->retry_pending = false;
      char why[600];
      snprintf(why, sizeof why, "%s", l->errmsg);
      retry_later(l, why);
      return;
    }
    if (l->is_lane) {
      finish(l, 0);
      return;
    }
    split_step(l);
    return;
  }
  default:
    return;
  }
}

/* Splitting: orig's reports are loaded one per transaction through l->sub;
 * a report that fails alone is refused; finally orig's error rows go in. */
static void refuse_alone(dp_loader_t *l, dp_staged_t *s) {
  char msg[700];
  snprintf(msg, sizeof msg, "refused by the database: %s", l->errmsg);
  s->status = DP_STAGED_FAILED;
  free(s->error);
  s->error = strdup(msg);
  dp_store_encode_error(&l->orig->error_rows, s->source, "", s->org_name, s->report_id, DP_EPG,
                        msg);
  l->orig->n_errors++;
}

static void split_step(dp_loader_t *l) {
  dp_batch_t *orig = l->orig;
  if (!l->splitting) {
    l->splitting = true;
    l->split_errors = false;
    l->split_next = orig->head;
    l->split_cur = NULL;
  } else if (l->split_cur) {
    dp_staged_t *s = l->split_cur;
    s->next = l->split_saved;
    if (l->batch_failed) refuse_alone(l, s);
    l->split_cur = NULL;
  } else if (l->split_errors) {
    orig->error_rows = l->sub.error_rows;
    dp_buf_init(&l->sub.error_rows, 0);
    l->batch = orig;
    finish(l, l->batch_failed ? DP_EPG : 0);
    return;
  }
  dp_batch_init(&l->sub);
  if (l->split_next) {
    dp_staged_t *s = l->split_next;
    l->split_next = s->next;
    l->split_saved = s->next;
    s->next = NULL;
    l->split_cur = s;
    l->sub.head = l->sub.tail = s;
    l->sub.n_reports = 1;
    l->batch = &l->sub;
    l->no_direct = false;
    begin_tx(l);
    return;
  }
  /* every report is settled; now the error rows */
  l->split_errors = true;
  l->sub.error_rows = orig->error_rows;
  dp_buf_init(&orig->error_rows, 0);
  l->batch = &l->sub;
  if (!l->sub.error_rows.len) {
    orig->error_rows = l->sub.error_rows;
    dp_buf_init(&l->sub.error_rows, 0);
    l->batch = orig;
    finish(l, 0);
    return;
  }
  begin_tx(l);
}

static void finish(dp_loader_t *l, int status) {
  dp_batch_t *b = l->orig;
  dp_loader_cb cb = l->cb;
  dp_batch_t *d = l->deferred;
  dp_loader_cb dcb = l->deferred_cb;
  l->deferred = NULL;
  l->deferred_cb = NULL;
  l->batch = NULL;
  l->orig = NULL;
  l->cb = NULL;
  l->phase = PH_IDLE;
  l->splitting = false;
  l->attempts = 0;
  /* Between batches nothing is expected from the server: stop watching the
   * socket, so an idle loader keeps no loop alive and a connection that dies
   * meanwhile is found (and reopened) by the next batch. */
  if (l->poll) {
    uv_poll_stop(l->poll);
    l->poll_events = 0;
  }
  /* A batch handed over by a refused peer goes next, before the caller
   * (told below) can submit another; a fatal end is its end too. */
  int dstatus = status;
  if (d && !status && dp_loader_submit(l, d, dcb)) dstatus = DP_EPG;
  if (cb) cb(l, b, status);
  if (d && dstatus) dcb(l, d, dstatus);
}

/* ------------------------------------------------------------------------ */
/* Streams: the hub queues them, its lane loads them one by one */

static void stream_free(dp_stream_t *st) {
  dp_buf_free(&st->proxy.report_row);
  dp_buf_free(&st->proxy.record_rows);
  if (st->proxy.spool_fd >= 0) close(st->proxy.spool_fd);
  free(st->proxy.source);
  free(st->proxy.org_name);
  free(st->proxy.report_id);
  free(st->proxy.error);
  free(st->error);
  uv_mutex_destroy(&st->mu);
  free(st);
}

void dp_stream_release(dp_stream_t *st) {
  if (!st) return;
  uv_mutex_lock(&st->mu);
  int left = --st->refs;
  uv_mutex_unlock(&st->mu);
  if (!left) stream_free(st);
}

void dp_stream_publish(dp_stream_t *st, uint64_t len) {
  uv_mutex_lock(&st->mu);
  if (!st->complete && !st->aborted && len > st->published) st->published = len;
  uv_mutex_unlock(&st->mu);
  uv_async_send(&st->hub->async);
}

void dp_stream_complete(dp_stream_t *st, uint64_t len, uint64_t n_records, uint64_t messages,
                        uint64_t content_hash) {
  uv_mutex_lock(&st->mu);
  if (!st->aborted && !st->complete) {
    st->published = len;
    st->n_records = n_records;
    st->messages = messages;
    st->content_hash = content_hash;
    st->complete = true;
  }
  uv_mutex_unlock(&st->mu);
  uv_async_send(&st->hub->async);
}

void dp_stream_abort(dp_stream_t *st) {
  uv_mutex_lock(&st->mu);
  bool changed = !st->complete && !st->aborted;
  if (changed) st->aborted = true;
  uv_mutex_unlock(&st->mu);
  if (changed) uv_async_send(&st->hub->async);
}

bool dp_stream_cancelled(dp_stream_t *st) {
  uv_mutex_lock(&st->mu);
  bool c = st->cancelled;
  uv_mutex_unlock(&st->mu);
  return c;
}

int dp_stream_result(const dp_stream_t *st, const char **error, bool *recorded) {
  if (error) *error = st->error;
  if (recorded) *recorded = st->recorded;
  return st->result;
}

dp_stream_t *dp_loader_stream_open(dp_loader_t *l, const dp_staged_t *s, const dp_buf_t *report_row) {
  if (s->spool_fd < 0) return NULL;
  dp_stream_t *st = calloc(1, sizeof *st);
  if (!st) return NULL;
  if (uv_mutex_init(&st->mu)) {
    free(st);
    return NULL;
  }
  st->refs = 2; /* the caller's and the hub's */
  st->hub = l;
  st->published = s->spool_len;
  dp_staged_t *p = &st->proxy;
  dp_buf_init(&p->report_row, 0);
  dp_buf_init(&p->record_rows, 0);
  p->key = s->key;
  p->begin = s->begin;
  p->spool_len = s->spool_len;
  p->stream = st;
  /* a descriptor of our own: the worker closes its one when it is done,
   * maybe before the lane has read the last rows */
  p->spool_fd = fcntl(s->spool_fd, F_DUPFD_CLOEXEC, 0);
  p->source = strdup(s->source ? s->source : "");
  p->org_name = strdup(s->org_name ? s->org_name : "");
  p->report_id = strdup(s->report_id ? s->report_id : "");
  if (p->spool_fd < 0 || !p->source || !p->org_name || !p->report_id ||
      dp_buf_append(&p->report_row, report_row->data, report_row->len)) {
    stream_free(st);
    return NULL;
  }
  uv_mutex_lock(&l->smu);
  if (l->inbox_tail)
    l->inbox_tail->next = st;
  else
    l->inbox_head = st;
  l->inbox_tail = st;
  uv_mutex_unlock(&l->smu);
  uv_async_send(&l->async);
  return st;
}

void dp_loader_set_stream_cb(dp_loader_t *l, dp_loader_stream_cb cb, void *data) {
  l->stream_cb = cb;
  l->stream_data = data;
}

/* The stream has its outcome: tell the hub's owner, drop the hub's reference. */
static void stream_settled(dp_loader_t *h, dp_stream_t *st, int result) {
  st->result = result;
  /* whatever its worker still encodes would be dropped */
  uv_mutex_lock(&st->mu);
  if (result != DP_STAGED_NEW) st->cancelled = true;
  uv_mutex_unlock(&st->mu);
  if (h->stream_cb) h->stream_cb(h->stream_data);
  dp_stream_release(st);
}

static void hub_kick(dp_loader_t *h);
static void hub_async(uv_async_t *a);

static void lane_done(dp_loader_t *ln, dp_batch_t *b, int status) {
  dp_loader_t *h = ln->hub;
  dp_stream_t *st = ln->cur;
  (void)b;
  ln->cur = NULL;
  int result;
  if (status) {
    h->lane_fatal = status;
    result = status;
  } else if (stream_aborted(st)) {
    result = DP_STAGED_FAILED; /* the worker records why */
  } else if (ln->batch_failed) {
    char msg[700];
    snprintf(msg, sizeof msg, "refused by the database: %s", ln->errmsg);
    st->error = strdup(msg);
    result = DP_STAGED_FAILED;
  } else {
    result = st->proxy.status;
    if (result == DP_STAGED_FAILED) {
      /* a key collision: its ingest_error row went in with the lane's commit */
      st->error = st->proxy.error;
      st->proxy.error = NULL;
      st->recorded = true;
    }
  }
  if (result == DP_STAGED_FAILED && !st->error && !stream_aborted(st))
    st->error = strdup("not stored");
  dp_buf_free(&ln->sbatch.error_rows);
  dp_batch_init(&ln->sbatch);
  stream_settled(h, st, result);
  hub_kick(h);
}

/* A helper connection of hub h, lane (streams) or peer (a second batch
 * connection): h's settings and loop, its own socket, timer and spool
 * reader. It connects with its first batch or stream, without blocking. */
static dp_loader_t *helper_create(dp_loader_t *h, bool lane) {
  dp_loader_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->conninfo = strdup(h->conninfo);
  c->spool_buf = malloc(DP_LOADER_CHUNK);
  if (!c->conninfo || !c->spool_buf) {
    free(c->conninfo);
    free(c->spool_buf);
    free(c);
    return NULL;
  }
  c->loop = h->loop;
  c->is_lane = lane;
  c->is_peer = !lane;
  c->hub = h;
  c->outage_budget_ms = h->outage_budget_ms;
  uv_timer_init(h->loop, &c->timer);
  c->timer.data = c;
  uv_async_init(h->loop, &c->async, hub_async); /* its spool reader's results */
  c->async.data = c;
  uv_unref((uv_handle_t *)&c->async);
  dp_batch_init(&c->sbatch);
  return c;
}

/* Poke the lanes that wait for their worker's rows; start the next
 * streams, in the order opened, on the lanes that are free. */
static void hub_kick(dp_loader_t *h) {
  if (h->closing || h->connecting) return;
  for (unsigned i = 0; i < h->stream_conns; i++) {
    dp_loader_t *ln = h->lanes[i];
    if (ln && ln->orig && ln->waiting_data && ln->conn) drive(ln);
  }
  unsigned next = 0;
  while (h->q_head) {
    /* the first lane not loading a stream (made when first needed) */
    while (next < h->stream_conns && h->lanes[next] && h->lanes[next]->orig) next++;
    if (next == h->stream_conns) return;
    dp_stream_t *st = h->q_head;
    h->q_head = st->next;
    if (!h->q_head) h->q_tail = NULL;
    st->next = NULL;
    if (h->lane_fatal) {
      stream_settled(h, st, h->lane_fatal);
      continue;
    }
    if (stream_aborted(st)) {
      stream_settled(h, st, DP_STAGED_FAILED);
      continue;
    }
    dp_loader_t *ln = h->lanes[next];
    if (!ln && !(ln = h->lanes[next] = helper_create(h, true))) {
      h->lane_fatal = DP_ENOMEM;
      stream_settled(h, st, DP_ENOMEM);
      continue;
    }
    ln->outage_budget_ms = h->outage_budget_ms;
    ln->cur = st;
    dp_batch_init(&ln->sbatch);
    st->proxy.next = NULL;
    ln->sbatch.head = ln->sbatch.tail = &st->proxy;
    ln->sbatch.n_reports = 1;
    dp_loader_submit(ln, &ln->sbatch, lane_done);
  }
}

static void hub_async(uv_async_t *a) {
  dp_loader_t *h = a->data;
  reader_collect(h);
  if (h->is_lane || h->is_peer) return;
  uv_mutex_lock(&h->smu);
  dp_stream_t *in = h->inbox_head;
  h->inbox_head = h->inbox_tail = NULL;
  uv_mutex_unlock(&h->smu);
  while (in) {
    dp_stream_t *n = in->next;
    in->next = NULL;
    if (h->q_tail)
      h->q_tail->next = in;
    else
      h->q_head = in;
    h->q_tail = in;
    in = n;
  }
  hub_kick(h);
}

/* ------------------------------------------------------------------------ */
/* Public API */

/* The first connection: connected, migrated (dp_store_connect) and the
 * last, this and next month's record partitions made. Making a partition
 * waits for every transaction inserting into record, so one made on demand
 * while a big report streams holds its batch (or stream) until that report
 * commits; reports mostly cover recent days, older months are still made on
 * demand. A failure of the partitions is not one: the batch that needs the
 * month makes it. Blocking; NULL with the reason in err. */
static PGconn *first_conn(const char *conninfo, char *err, size_t errlen) {
  PGconn *c = dp_store_connect(conninfo, err, errlen);
  if (c)
    PQclear(PQexec(c, "SELECT dp_ensure_record_partition(now() + make_interval(months => m)) "
                      "FROM generate_series(-1, 1) m"));
  return c;
}

/* A hub without a connection; NULL with the reason in err. */
static dp_loader_t *hub_alloc(uv_loop_t *loop, const char *conninfo, char *err, size_t errlen) {
  dp_loader_t *l = calloc(1, sizeof *l);
  if (!l || !(l->conninfo = strdup(conninfo))) {
    free(l);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  l->spool_buf = malloc(DP_LOADER_CHUNK);
  if (!l->spool_buf) {
    free(l->conninfo);
    free(l);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (uv_mutex_init(&l->smu)) {
    free(l->spool_buf);
    free(l->conninfo);
    free(l);
    snprintf(err, errlen, "cannot create a mutex");
    return NULL;
  }
  l->loop = loop;
  l->outage_budget_ms = 120 * 1000;
  l->batch_conns = 1;
  l->stream_conns = 1;
  return l;
}

/* The hub's loop handles, made last: before them it is plain memory. */
static void hub_handles(dp_loader_t *l) {
  uv_timer_init(l->loop, &l->timer);
  l->timer.data = l;
  /* workers wake the loop through it; it alone keeps no loop alive */
  uv_async_init(l->loop, &l->async, hub_async);
  l->async.data = l;
  uv_unref((uv_handle_t *)&l->async);
}

static void adopt_conn(dp_loader_t *l, PGconn *c) {
  l->conn = c;
  l->ever_connected = true;
  PQsetnonblocking(c, 1);
  PQsetNoticeProcessor(c, ignore_notice, NULL);
}

dp_loader_t *dp_loader_create(uv_loop_t *loop, const char *conninfo, char *err, size_t errlen) {
  PGconn *c = first_conn(conninfo, err, errlen);
  if (!c) return NULL;
  dp_loader_t *l = hub_alloc(loop, conninfo, err, errlen);
  if (!l) {
    PQfinish(c);
    return NULL;
  }
  hub_handles(l);
  adopt_conn(l, c);
  return l;
}

static void loader_release(dp_loader_t *l);

static void conn_work(uv_work_t *req) {
  dp_loader_t *l = req->data;
  l->conn_made = first_conn(l->conninfo, l->conn_err, sizeof l->conn_err);
}

static void conn_done(uv_work_t *req, int status) {
  dp_loader_t *l = req->data;
  PGconn *c = l->conn_made;
  l->conn_made = NULL;
  l->connecting = false;
  if (l->closing) { /* destroyed meanwhile: nobody waits for it */
    if (c) PQfinish(c);
    loader_release(l);
    return;
  }
  if (c && status) { /* not run: cannot happen, work is never cancelled */
    PQfinish(c);
    c = NULL;
  }
  if (c) {
    adopt_conn(l, c);
  } else {
    l->conn_status = DP_EPGCONN;
    if (!l->conn_err[0]) snprintf(l->conn_err, sizeof l->conn_err, "cannot connect to PostgreSQL");
  }
  /* the owner hears first, so that streams refused below are known to be
   * the connection's fault, not reports' */
  if (l->ready) l->ready(l, l->conn_status, l->conn_err, l->ready_data);
  if (l->closing) return; /* destroyed in ready: conn_done holds no count */
  if (l->conn_status) l->lane_fatal = l->conn_status;
  hub_async(&l->async); /* start (or refuse) the streams that waited */
}

dp_loader_t *dp_loader_create_async(uv_loop_t *loop, const char *conninfo,
                                    dp_loader_ready_cb ready, void *data) {
  char err[64];
  dp_loader_t *l = hub_alloc(loop, conninfo, err, sizeof err);
  if (!l) return NULL;
  l->ready = ready;
  l->ready_data = data;
  l->connecting = true;
  l->conn_req.data = l;
  if (uv_queue_work(loop, &l->conn_req, conn_work, conn_done)) {
    l->closes = 1; /* no handle made yet: its memory is all there is */
    loader_release(l);
    return NULL;
  }
  hub_handles(l);
  return l;
}

bool dp_loader_connecting(const dp_loader_t *l) { return l->connecting; }

void dp_loader_set_batch_conns(dp_loader_t *l, unsigned n) { l->batch_conns = n >= 2 ? 2 : 1; }

void dp_loader_set_stream_conns(dp_loader_t *l, unsigned n) {
  l->stream_conns = n < 1 ? 1 : n > DP_LOADER_MAX_STREAM_CONNS ? DP_LOADER_MAX_STREAM_CONNS : n;
}

int dp_loader_submit(dp_loader_t *l, dp_batch_t *b, dp_loader_cb cb) {
  if (l->connecting || l->conn_status) return UV_EBUSY;
  if (l->orig) {
    if (l->batch_conns < 2) return UV_EBUSY;
    if (!l->peer && !(l->peer = helper_create(l, false))) return UV_EBUSY;
    return dp_loader_submit(l->peer, b, cb);
  }
  l->orig = b;
  l->batch = b;
  l->cb = cb;
  l->attempts = 0;
  l->splitting = false;
  l->failed = false;
  l->no_direct = false;
  start_batch(l);
  return 0;
}

bool dp_loader_busy(const dp_loader_t *l) {
  if (l->connecting || l->conn_status) return true;
  return l->orig && (l->batch_conns < 2 || (l->peer && l->peer->orig));
}

void dp_loader_claim_counts(const dp_loader_t *l, uint64_t *direct, uint64_t *staged) {
  *direct = l->n_direct + (l->peer ? l->peer->n_direct : 0);
  *staged = l->n_staged + (l->peer ? l->peer->n_staged : 0);
}

void dp_loader_set_outage_budget(dp_loader_t *l, uint64_t ms) {
  l->outage_budget_ms = ms;
  for (unsigned i = 0; i < DP_LOADER_MAX_STREAM_CONNS; i++)
    if (l->lanes[i]) l->lanes[i]->outage_budget_ms = ms;
  if (l->peer) l->peer->outage_budget_ms = ms;
}

static void timer_close_cb(uv_handle_t *h) { loader_release(h->data); }

/* One of the things dp_loader_destroy waits for is over (a handle closed,
 * the first connection's work done); the last frees the memory. */
static void loader_release(dp_loader_t *l) {
  if (--l->closes) return;
  if (!l->is_lane && !l->is_peer) uv_mutex_destroy(&l->smu);
  free(l->conninfo);
  free(l->spool_buf);
  free(l->claimed);
  free(l->collided);
  free(l->order);
  free(l->months);
  free(l->new_months);
  free(l);
}

void dp_loader_destroy(dp_loader_t *l) {
  if (!l) return;
  l->closing = true;
  drop_conn(l);
  uv_timer_stop(&l->timer);
  reader_stop(l); /* before spool_buf goes: it may be reading into it */
  l->closes = 2 + l->connecting; /* the handles, and conn_done if it is to come */
  if (l->is_lane && l->cur) {
    dp_stream_release(l->cur);
    l->cur = NULL;
  }
  if (!l->is_lane && !l->is_peer) {
    for (unsigned i = 0; i < DP_LOADER_MAX_STREAM_CONNS; i++) {
      dp_loader_destroy(l->lanes[i]);
      l->lanes[i] = NULL;
    }
    dp_loader_destroy(l->peer);
    l->peer = NULL;
    /* streams nobody will load (the owner stopped early): drop our refs */
    hub_async(&l->async);
    while (l->q_head) {
      dp_stream_t *st = l->q_head;
      l->q_head = st->next;
      dp_stream_release(st);
    }
  }
  uv_close((uv_handle_t *)&l->async, timer_close_cb);
  uv_close((uv_handle_t *)&l->timer, timer_close_cb);
}
