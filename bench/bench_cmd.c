/* SPDX-License-Identifier: MIT */
/* bench/bench_cmd.c - `dmarcpipe bench`: generates a deterministic corpus (one
 * big gzip report, many small reports, optionally the realistic mix), then
 * times each stage K times in its own forked child (so peak RSS is per stage),
 * next to the bare ceilings of the same run, and prints medians and ratios. */
#define _XOPEN_SOURCE 700 /* nftw() */
#include "bench/bench.h"
#include "bench/bench_ceil.h"
#include "bench/bench_int.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libxml/xmlversion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ingest/pipeline_int.h"
#include "ingest/unpack_int.h"
#include "parse/parse.h"
#include "store/store.h"

#define MAX_RUNS 50
#define PATH_LEN 4096
#define RSS_TARGET_MB 64.0

/* ======================================================================== */
/* Options, corpus and results                                              */

enum { SINK_NULL = 1, SINK_PG = 2 };

struct opts {
  uint64_t seed;
  uint64_t small;   /* small reports; 0 = none */
  uint64_t big;     /* records of the big report; 0 = none */
  uint64_t mix;     /* reports of the realistic mix; 0 = none */
  int sinks;        /* SINK_* bits */
  const char *db;
  unsigned runs;
  bool json;
  const char *json_file;
  const char *workdir;
};

/* What generation produced; filled by the generating child. */
struct corpus {
  uint64_t big_records, big_gz_bytes, big_xml_bytes, big_copy_bytes;
  uint64_t small_reports, small_records, small_bytes;
  uint64_t mix_reports, mix_records, mix_bytes;
  int64_t first_ts, last_ts; /* begin of the earliest and latest report generated */
  char big_gz[PATH_LEN], big_xml[PATH_LEN], big_copy[PATH_LEN];
  int rc;
  char err[256];
};

enum stage_id {
  ST_INFLATE, ST_UNPACK, ST_SAX, ST_PARSE_GZ, ST_PARSE_XML, ST_JSONL, ST_COPY, ST_E2E_BIG, ST_AGG_BIG,
  ST_SMALL_NULL, ST_SMALL_NULL_1T, ST_SMALL_PG, ST_AGG_SMALL, ST_MIX_NULL, ST_MIX_PG, N_STAGES
};

enum set { SET_BIG, SET_SMALL, SET_MIX };

/* One timed run, measured in the child; rss_kb comes from wait4(). */
struct sample {
  double secs;
  double cpu;     /* user + system seconds of the whole child, from wait4() */
  uint64_t bytes, records, reports;
  long rss_kb;
  int rc;
  char err[256];
};

struct ctx {
  const struct opts *o;
  char dir[PATH_LEN];
  char big_gz[PATH_LEN], big_xml[PATH_LEN], big_copy[PATH_LEN];
  char small_dir[PATH_LEN], mix_dir[PATH_LEN];
  struct corpus c;
  char *server;  /* conninfo of the selected server; NULL without a database */
  char *run_db;  /* conninfo of this run's fresh database (child stages) */
  int server_version;
};

typedef int (*stage_fn)(const struct ctx *x, struct sample *s);

struct stage_def {
  const char *key, *label;
  enum set set;
  bool pg;         /* needs the database */
  bool null_sink;  /* a null-sink stage (skipped with --sink pg) */
  bool ours;       /* dmarcpipe itself (its RSS is held to the target) */
  bool fresh_db;   /* a fresh database per run */
  stage_fn fn;
};

struct stage_res {
  int n;
  struct sample s[MAX_RUNS];
  bool skipped, failed;
  char why[300];
};

/* ======================================================================== */
/* Small helpers                                                            */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out) {
  if (!s || !*s || *s == '-' || *s == '+') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  uint64_t mul = 1;
  if (*end == 'k' || *end == 'K') mul = 1000, end++;
  else if (*end == 'm' || *end == 'M') mul = 1000000, end++;
  if (errno || *end || v > max / mul) return false;
  *out = v * mul;
  return true;
}

static int read_all(const char *path, char **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return DP_EIO;
  struct stat st;
  char *buf = NULL;
  if (fstat(fd, &st) == 0 && (buf = malloc((size_t)st.st_size + 1))) {
    size_t got = 0;
    while (got < (size_t)st.st_size) {
      ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
      if (k <= 0) break;
      got += (size_t)k;
    }
    if (got == (size_t)st.st_size) {
      *data = buf;
      *len = got;
      buf = NULL;
    }
  }
  free(buf);
  close(fd);
  return *data ? 0 : DP_EIO;
}

static int write_all(FILE *f, const void *p, size_t n) {
  return n && fwrite(p, 1, n, f) != n ? DP_EIO : 0;
}

static int make_dir(const char *path) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST) return 0;
  return DP_EIO;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }


/* ======================================================================== */
/* Corpus generation (in a child, so the parent never holds the corpus and
 * every measured child starts from a small process)                        */

struct big_out {
  const struct ctx *x;
  struct corpus *c;
  FILE *copy_f;
};

static int inflate_to(const void *gz, size_t len, dp_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 15 + 16) != Z_OK) return DP_EGZIP;
  z.next_in = (unsigned char *)(uintptr_t)gz;
  z.avail_in = (unsigned)len;
  int rc = 0, zr = Z_OK;
  while (!rc && zr != Z_STREAM_END) {
    if ((rc = dp_buf_reserve(out, 1u << 20))) break;
    z.next_out = (unsigned char *)out->data + out->len;
    z.avail_out = (unsigned)(out->alloc - out->len - 1);
    size_t before = z.avail_out;
    zr = inflate(&z, Z_NO_FLUSH);
    out->len += before - z.avail_out;
    out->data[out->len] = '\0';
    if (zr != Z_OK && zr != Z_STREAM_END) rc = DP_EGZIP;
  }
  inflateEnd(&z);
  return rc;
}

static int copy_rows_out(void *ud, const char *buf, size_t n) {
  struct big_out *b = ud;
  b->c->big_copy_bytes += n;
  return write_all(b->copy_f, buf, n);
}

static int save(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return DP_EIO;
  int rc = write_all(f, data, len);
  if (fclose(f)) rc = DP_EIO;
  return rc;
}

/* The big report: the gzip as generated, its XML, and its COPY rows. */
static int emit_big(void *ud, const char *name, const void *data, size_t len) {
  struct big_out *b = ud;
  const struct ctx *x = b->x;
  snprintf(b->c->big_gz, PATH_LEN, "%.3000s/big/%.900s", x->dir, name);
  int rc = save(b->c->big_gz, data, len);
  dp_buf_t xml;
  dp_buf_init(&xml, 0);
  if (!rc) rc = inflate_to(data, len, &xml);
  if (!rc) {
    size_t n = strlen(name);
    snprintf(b->c->big_xml, PATH_LEN, "%.3000s/bigxml/%.*s", x->dir, (int)(n > 903 ? 900 : n > 3 ? n - 3 : n), name);
    rc = save(b->c->big_xml, xml.data, xml.len);
  }
  if (!rc) {
    snprintf(b->c->big_copy, PATH_LEN, "%.3000s/big.copy", x->dir);
    b->copy_f = fopen(b->c->big_copy, "wb");
    uint64_t rows = 0;
    rc = b->copy_f ? dp_bench_copy_rows(xml.data, xml.len, copy_rows_out, b, &rows) : DP_EIO;
    if (b->copy_f && fclose(b->copy_f)) rc = DP_EIO;
    if (!rc && rows != b->c->big_records) rc = DP_EREPORT;
  }
  b->c->big_gz_bytes = len;
  b->c->big_xml_bytes = xml.len;
  dp_buf_free(&xml);
  return rc;
}

struct dir_out {
  char dir[PATH_LEN];
  uint64_t bytes, files;
};

static int emit_dir(void *ud, const char *name, const void *data, size_t len) {
  struct dir_out *d = ud;
  char path[PATH_LEN + 512];
  snprintf(path, sizeof path, "%s/%s", d->dir, name);
  d->bytes += len;
  d->files++;
  return save(path, data, len);
}

/* Widen c's date span by the reports g generates. */
static void span_add(struct corpus *c, const dp_gen_bench_opts_t *g) {
  if (!g->n_reports) return;
  int64_t first = dp_gen_bench_begin(g, 0), last = dp_gen_bench_begin(g, g->n_reports - 1);
  if (!c->first_ts || first < c->first_ts) c->first_ts = first;
  if (last > c->last_ts) c->last_ts = last;
}

static int generate(struct ctx *x, struct corpus *c) {
  const struct opts *o = x->o;
  char p[PATH_LEN + 64];
  int rc = 0;
  static const char *const sub[] = {"big", "bigxml", "small", "mix"};
  for (size_t i = 0; i < 4 && !rc; i++) {
    snprintf(p, sizeof p, "%.3000s/%s", x->dir, sub[i]);
    rc = make_dir(p);
  }
  if (!rc && o->big) {
    if (dp_align_global_init()) return DP_EIO;
    struct big_out b = {x, c, NULL};
    dp_gen_bench_opts_t g = {.seed = o->seed, .n_reports = 1, .records = o->big,
                             .formats = 1u << DP_GEN_FMT_GZIP};
    c->big_records = o->big;
    span_add(c, &g);
    rc = dp_gen_bench(&g, emit_big, &b, NULL);
    dp_align_global_cleanup();
  }
  /* Small reports: 1..10 records, a tenth of them each, as xml/gzip/zip in
   * turn; one folder and one run of days per size so names never collide. */
  for (uint64_t k = 1; k <= 10 && !rc && o->small; k++) {
    uint64_t n = o->small / 10 + (k <= o->small % 10);
    if (!n) continue;
    struct dir_out d = {.bytes = 0};
    snprintf(d.dir, sizeof d.dir, "%.3000s/small/k%02u", x->dir, (unsigned)k);
    if ((rc = make_dir(d.dir))) break;
    int64_t first;
    dp_gen_parse_date("2025-01-01", &first);
    dp_gen_bench_opts_t g = {
        .seed = o->seed * 1000 + k, .n_reports = n, .records = k,
        .formats = 1u << DP_GEN_FMT_XML | 1u << DP_GEN_FMT_GZIP | 1u << DP_GEN_FMT_ZIP,
        .first_day = first + (int64_t)(k - 1) * 86400 * (int64_t)(n / DP_GEN_N_RECEIVERS + 2)};
    span_add(c, &g);
    rc = dp_gen_bench(&g, emit_dir, &d, NULL);
    c->small_reports += n;
    c->small_records += n * k;
    c->small_bytes += d.bytes;
  }
  if (!rc && o->mix) {
    struct dir_out d = {.bytes = 0};
    snprintf(d.dir, sizeof d.dir, "%.3000s/mix", x->dir);
    dp_gen_expect_t e;
    dp_gen_expect_init(&e);
    dp_gen_bench_opts_t g = {.seed = o->seed + 7, .n_reports = o->mix};
    span_add(c, &g);
    rc = dp_gen_bench(&g, emit_dir, &d, &e);
    c->mix_reports = e.reports;
    c->mix_records = e.records;
    c->mix_bytes = d.bytes;
    dp_gen_expect_free(&e);
  }
  return rc;
}

/* ======================================================================== */
/* Running one measurement in a child                                       */

static int read_full(int fd, void *p, size_t n) {
  char *b = p;
  while (n) {
    ssize_t k = read(fd, b, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    b += k;
    n -= (size_t)k;
  }
  return 0;
}

static void write_full(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t k = write(fd, b, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return;
    b += k;
    n -= (size_t)k;
  }
}

/* Run fn(x, out) in a forked child; the child's peak RSS goes to rss_kb. The
 * result travels back over a pipe because the child's memory is its own. */
static int in_child(void (*fn)(struct ctx *x, void *out), struct ctx *x, void *out, size_t outlen,
                    long *rss_kb, double *cpu) {
  int fds[2];
  if (pipe(fds)) return DP_EIO;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return DP_EIO;
  }
  if (pid == 0) {
    close(fds[0]);
    fn(x, out);
    write_full(fds[1], out, outlen);
    _exit(0);
  }
  close(fds[1]);
  int rc = read_full(fds[0], out, outlen) ? DP_EIO : 0;
  close(fds[0]);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status)) rc = DP_EIO;
  if (rss_kb) *rss_kb = ru.ru_maxrss;
  if (cpu)
    *cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  return rc;
}

static const struct stage_def *cur_stage;

static void run_stage_child(struct ctx *x, void *out) {
  struct sample *s = out;
  memset(s, 0, sizeof *s);
  s->rc = cur_stage->fn(x, s);
  if (s->rc && !s->err[0]) snprintf(s->err, sizeof s->err, "%s", dp_strerror(s->rc));
}

static void gen_child(struct ctx *x, void *out) {
  struct corpus *c = out;
  memset(c, 0, sizeof *c);
  c->rc = generate(x, c);
  if (c->rc) snprintf(c->err, sizeof c->err, "generating the corpus: %s", dp_strerror(c->rc));
}

/* ======================================================================== */
/* The stages (run in the child)                                            */

static int st_inflate(const struct ctx *x, struct sample *s) {
  char *gz;
  size_t len;
  if (read_all(x->big_gz, &gz, &len)) return DP_EIO;
  double t0 = now_s();
  int rc = dp_bench_inflate(gz, len, &s->bytes);
  s->secs = now_s() - t0;
  free(gz);
  s->records = x->c.big_records;
  s->reports = 1;
  return rc;
}

struct discard {
  uint64_t bytes, docs;
  int status;
};

static int d_begin(void *ud, const char *part) {
  (void)part;
  ((struct discard *)ud)->docs++;
  return 0;
}
static int d_data(void *ud, const char *buf, size_t n) {
  (void)buf;
  ((struct discard *)ud)->bytes += n;
  return 0;
}
static int d_end(void *ud, int status, const char *reason) {
  (void)reason;
  if (status) ((struct discard *)ud)->status = status;
  return 0;
}
static void d_part_error(void *ud, const char *part, int status, const char *reason) {
  (void)part;
  (void)reason;
  ((struct discard *)ud)->status = status;
}
static void d_note(void *ud, const char *part, const char *msg) {
  (void)ud;
  (void)part;
  (void)msg;
}

static void bench_limits(dp_limits_t *lim) {
  dp_limits_default(lim);
  /* a 5M-record report is ~3 GB of XML: the bench measures, it does not cap */
  lim->max_report_size = UINT64_MAX / 2;
  lim->max_input_size = UINT64_MAX / 2;
  /* the generated dates run on from fixed days, past the clock for big sets */
  lim->max_future_days = 0;
}

static int st_unpack(const struct ctx *x, struct sample *s) {
  char *gz;
  size_t len;
  if (read_all(x->big_gz, &gz, &len)) return DP_EIO;
  static const dp_unpack_cb_t cb = {d_begin, d_data, d_end, d_part_error, d_note, NULL};
  struct discard d = {0, 0, 0};
  dp_limits_t lim;
  bench_limits(&lim);
  double t0 = now_s();
  int rc = dp_unpack(&lim, gz, len, &cb, &d, s->err, sizeof s->err);
  s->secs = now_s() - t0;
  free(gz);
  if (!rc) rc = d.status;
  s->bytes = d.bytes;
  s->records = x->c.big_records;
  s->reports = d.docs;
  return rc;
}

static int st_sax(const struct ctx *x, struct sample *s) {
  int fd = open(x->big_xml, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return DP_EIO;
  char *buf = malloc(64 * 1024);
  dp_bench_sax_t *sax = dp_bench_sax_create();
  int rc = buf && sax ? 0 : DP_ENOMEM;
  double t0 = now_s();
  ssize_t k;
  while (!rc && (k = read(fd, buf, 64 * 1024)) > 0) {
    s->bytes += (uint64_t)k;
    rc = dp_bench_sax_feed(sax, buf, (size_t)k);
  }
  if (!rc) rc = dp_bench_sax_finish(sax, &s->records);
  s->secs = now_s() - t0;
  dp_bench_sax_destroy(sax);
  free(buf);
  close(fd);
  s->reports = 1;
  if (!rc && s->records != x->c.big_records) {
    snprintf(s->err, sizeof s->err, "SAX counted %" PRIu64 " records, expected %" PRIu64,
             s->records, x->c.big_records);
    rc = DP_EREPORT;
  }
  return rc;
}

/* dp_pipeline_run over path into the sink; the counts must be exactly what
 * was generated, or the figure would measure refusals. */
static int pipeline(const struct ctx *x, const char *path, dp_sink_kind_t sink, uint64_t reports,
                    uint64_t records, uint64_t bytes, struct sample *s) {
  if (dp_align_global_init()) return DP_EIO;
  dp_pipeline_opts_t po;
  dp_pipeline_opts_default(&po);
  bench_limits(&po.limits);
  po.sink = sink;
  po.quiet = true;
  po.conninfo = x->run_db;
  if (sink == DP_SINK_PG) {
    /* migrate the fresh database before the clock starts, and create the
     * record partitions of the corpus's months: a database in use has them
     * (a new month costs its first batch a few ms, once), while every fresh
     * bench database would pay for all of them (the small set spans 15
     * months) inside the timed run */
    char err[sizeof s->err];
    PGconn *c = dp_store_connect(x->run_db, err, sizeof err);
    if (!c) {
      snprintf(s->err, sizeof s->err, "%s", err);
      dp_align_global_cleanup();
      return DP_EPGCONN;
    }
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT dp_ensure_record_partition(m) FROM generate_series("
             "date_trunc('month', to_timestamp(%" PRId64 ") AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
             "to_timestamp(%" PRId64 "), interval '1 month') m",
             x->c.first_ts, x->c.last_ts);
    PGresult *r = x->c.first_ts ? PQexec(c, sql) : NULL;
    bool made = !x->c.first_ts || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!made) snprintf(s->err, sizeof s->err, "creating partitions: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    if (!made) {
      dp_align_global_cleanup();
      return DP_EPG;
    }
  }
  /* JSON lines are encoded, written and thrown away: the stage times the
   * export, not a disk */
  FILE *devnull = NULL;
  if (sink == DP_SINK_JSONL && !(po.out = devnull = fopen("/dev/null", "w"))) {
    snprintf(s->err, sizeof s->err, "/dev/null: %s", strerror(errno));
    dp_align_global_cleanup();
    return DP_EIO;
  }
  dp_pipeline_stats_t st;
  char *paths[1] = {(char *)(uintptr_t)path};
  double t0 = now_s();
  int ret = dp_pipeline_run(&po, paths, 1, &st);
  s->secs = now_s() - t0;
  if (devnull) fclose(devnull);
  dp_align_global_cleanup();
  s->bytes = bytes;
  s->records = st.records;
  s->reports = st.reports_new;
  if (ret || st.reports_new != reports || st.records != records) {
    snprintf(s->err, sizeof s->err,
             "pipeline exit %d: %" PRIu64 " of %" PRIu64 " reports, %" PRIu64 " of %" PRIu64
             " records, %" PRIu64 " refused",
             ret, st.reports_new, reports, st.records, records,
             st.reports_refused + st.inputs_refused);
    return DP_EREPORT;
  }
  return 0;
}

static int st_parse_gz(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->big_gz, DP_SINK_NULL, 1, x->c.big_records, x->c.big_xml_bytes, s);
}

static int st_parse_xml(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->big_xml, DP_SINK_NULL, 1, x->c.big_records, x->c.big_xml_bytes, s);
}

static int st_jsonl(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->big_gz, DP_SINK_JSONL, 1, x->c.big_records, x->c.big_xml_bytes, s);
}

static int st_e2e_big(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->big_gz, DP_SINK_PG, 1, x->c.big_records, x->c.big_xml_bytes, s);
}

/* The catch-up that `ingest` runs at its end (dp_agg_catch_up_parallel
 * with ingest's aggregators: the set's records folded into the aggregates
 * the queries read), timed alone after an untimed end-to-end load of the set
 * into the run's fresh database: what a user pays after the load, in
 * records folded per second. */
static int agg_after_load(const struct ctx *x, const char *path, uint64_t reports,
                          uint64_t records, uint64_t bytes, struct sample *s) {
  struct sample load;
  memset(&load, 0, sizeof load);
  int rc = pipeline(x, path, DP_SINK_PG, reports, records, bytes, &load);
  if (rc) {
    snprintf(s->err, sizeof s->err, "loading the corpus: %.200s", load.err);
    return rc;
  }
  PGconn *c = dp_store_connect(x->run_db, s->err, sizeof s->err);
  if (!c) return DP_EPGCONN;
  dp_agg_stats_t st;
  double t0 = now_s();
  rc = dp_agg_catch_up_parallel(c, x->run_db, dp_agg_default_aggregators(), 0, &st, s->err,
                                sizeof s->err);
  s->secs = now_s() - t0;
  PQfinish(c);
  s->bytes = bytes;
  s->records = (uint64_t)st.records;
  s->reports = (uint64_t)st.reports;
  if (!rc && (s->reports != reports || s->records != records)) {
    snprintf(s->err, sizeof s->err,
             "catch-up folded %" PRIu64 " reports, %" PRIu64 " records; expected %" PRIu64
             ", %" PRIu64,
             s->reports, s->records, reports, records);
    rc = DP_EPG;
  }
  return rc;
}

static int st_agg_big(const struct ctx *x, struct sample *s) {
  return agg_after_load(x, x->big_gz, 1, x->c.big_records, x->c.big_xml_bytes, s);
}

/* Small reports make many more aggregate rows per record than one big
 * report (each report's period is part of most aggregate keys). */
static int st_agg_small(const struct ctx *x, struct sample *s) {
  return agg_after_load(x, x->small_dir, x->c.small_reports, x->c.small_records,
                        x->c.small_bytes, s);
}

static int st_small_null(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->small_dir, DP_SINK_NULL, x->c.small_reports, x->c.small_records,
                  x->c.small_bytes, s);
}

/* The same with one thread-pool thread: what parallel parsing buys. The
 * child is a fresh fork whose pool has not started, so the setting applies. */
static int st_small_null_1t(const struct ctx *x, struct sample *s) {
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  return st_small_null(x, s);
}

static int st_small_pg(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->small_dir, DP_SINK_PG, x->c.small_reports, x->c.small_records,
                  x->c.small_bytes, s);
}

static int st_mix_null(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->mix_dir, DP_SINK_NULL, x->c.mix_reports, x->c.mix_records,
                  x->c.mix_bytes, s);
}

static int st_mix_pg(const struct ctx *x, struct sample *s) {
  return pipeline(x, x->mix_dir, DP_SINK_PG, x->c.mix_reports, x->c.mix_records, x->c.mix_bytes,
                  s);
}

static int st_copy(const struct ctx *x, struct sample *s) {
  PGconn *c = PQconnectdb(x->server);
  if (PQstatus(c) != CONNECTION_OK) {
    snprintf(s->err, sizeof s->err, "%.*s", (int)strcspn(PQerrorMessage(c), "\n"),
             PQerrorMessage(c));
    PQfinish(c);
    return DP_EPGCONN;
  }
  int rc = dp_bench_copy_table(c, s->err, sizeof s->err);
  FILE *f = rc ? NULL : fopen(x->big_copy, "rb");
  char *buf = malloc(1u << 20);
  if (!rc && (!f || !buf)) rc = DP_EIO;
  double t0 = now_s();
  if (!rc) rc = dp_bench_copy_begin(c, s->err, sizeof s->err);
  size_t k;
  while (!rc && (k = fread(buf, 1, 1u << 20, f)) > 0) {
    s->bytes += k;
    rc = dp_bench_copy_put(c, buf, k, s->err, sizeof s->err);
  }
  if (!rc) rc = dp_bench_copy_end(c, &s->records, s->err, sizeof s->err);
  s->secs = now_s() - t0;
  s->reports = 1;
  if (f) fclose(f);
  free(buf);
  PQfinish(c);
  if (!rc && s->records != x->c.big_records) {
    snprintf(s->err, sizeof s->err, "COPY stored %" PRIu64 " rows, expected %" PRIu64, s->records,
             x->c.big_records);
    rc = DP_EPG;
  }
  return rc;
}

static const struct stage_def stages[N_STAGES] = {
  [ST_INFLATE] = {"inflate", "bare zlib inflate (big gzip)", SET_BIG, false, false, false, false, st_inflate},
  [ST_UNPACK] = {"unpack", "unpack (big gzip)", SET_BIG, false, false, true, false, st_unpack},
  [ST_SAX] = {"sax", "bare libxml2 SAX (big XML)", SET_BIG, false, false, false, false, st_sax},
  [ST_PARSE_GZ] = {"parse_null", "parse, null sink (big gzip)", SET_BIG, false, true, true, false, st_parse_gz},
  [ST_PARSE_XML] = {"parse_null_xml", "parse, null sink (big XML)", SET_BIG, false, true, true, false, st_parse_xml},
  [ST_JSONL] = {"jsonl", "JSON lines, to /dev/null (big gzip)", SET_BIG, false, true, true, false, st_jsonl},
  [ST_COPY] = {"copy", "bare COPY of its rows", SET_BIG, true, false, false, false, st_copy},
  [ST_E2E_BIG] = {"e2e_pg", "end to end into PG (big gzip)", SET_BIG, true, false, true, true, st_e2e_big},
  [ST_AGG_BIG] = {"agg_catch_up", "aggregate catch-up (big report)", SET_BIG, true, false, false, true, st_agg_big},
  [ST_SMALL_NULL] = {"small_null", "parse, null sink (small set)", SET_SMALL, false, true, true, false, st_small_null},
  [ST_SMALL_NULL_1T] = {"small_null_1thread", "same, one pool thread (small set)", SET_SMALL, false, true, true, false, st_small_null_1t},
  [ST_SMALL_PG] = {"small_pg", "end to end into PG (small set)", SET_SMALL, true, false, true, true, st_small_pg},
  [ST_AGG_SMALL] = {"agg_catch_up_small", "aggregate catch-up (small set)", SET_SMALL, true, false, false, true, st_agg_small},
  [ST_MIX_NULL] = {"mix_null", "parse, null sink (realistic mix)", SET_MIX, false, true, true, false, st_mix_null},
  [ST_MIX_PG] = {"mix_pg", "end to end into PG (realistic mix)", SET_MIX, true, false, true, true, st_mix_pg},
};

/* ======================================================================== */
/* Fresh databases (parent)                                                 */

static PGconn *server_connect(const char *conninfo, char *err, size_t errlen) {
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    snprintf(err, errlen, "%.*s", (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  return c;
}

static bool exec_ok(PGconn *c, const char *sql, char *err, size_t errlen) {
  PGresult *r = PQexec(c, sql);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok && err) {
    const char *m = PQresultErrorMessage(r);
    snprintf(err, errlen, "%.*s", (int)strcspn(m, "\n"), m);
  }
  PQclear(r);
  return ok;
}

/* conninfo with dbname replaced; works for key=value strings, URIs and ""
 * (environment). Caller owns result; free(). */
static char *with_dbname(const char *conninfo, const char *db) {
  PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
  if (!opts) return NULL;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !strcmp(o->keyword, "dbname")) continue;
    dp_buf_printf(&b, "%s='", o->keyword);
    for (const char *p = o->val; *p; p++) {
      if (*p == '\'' || *p == '\\') dp_buf_putc(&b, '\\');
      dp_buf_putc(&b, *p);
    }
    dp_buf_puts(&b, "' ");
  }
  PQconninfoFree(opts);
  if (dp_buf_printf(&b, "dbname='%s'", db)) {
    dp_buf_free(&b);
    return NULL;
  }
  return dp_buf_steal(&b, NULL);
}

static int fresh_db(struct ctx *x, const char *name, char *err, size_t errlen) {
  PGconn *c = server_connect(x->server, err, errlen);
  if (!c) return DP_EPGCONN;
  char sql[256];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
  exec_ok(c, "SET client_min_messages = warning", NULL, 0);
  exec_ok(c, sql, NULL, 0);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  bool ok = exec_ok(c, sql, err, errlen);
  PQfinish(c);
  if (!ok) return DP_EPG;
  free(x->run_db);
  x->run_db = with_dbname(x->server, name);
  return x->run_db ? 0 : DP_ENOMEM;
}

static void drop_db(struct ctx *x, const char *name) {
  char err[256];
  PGconn *c = server_connect(x->server, err, sizeof err);
  if (!c) return;
  char sql[256];
  /* the child has gone, but its backend may still be exiting */
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
  if (!exec_ok(c, sql, NULL, 0)) {
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
    exec_ok(c, sql, NULL, 0);
  }
  PQfinish(c);
}

/* ======================================================================== */
/* Statistics and output                                                    */

enum metric { M_MBS, M_CPU, M_RECS, M_REPS, M_RSS, N_METRICS };
static const char *const metric_key[N_METRICS] = {"mb_per_s", "mb_per_cpu_s", "records_per_s",
                                                  "reports_per_s", "peak_rss_mb"};
static const char *const metric_unit[N_METRICS] = {"MB/s", "MB/CPUs", "rec/s", "rep/s",
                                                   "MB RSS"};

struct stat3 {
  double med, min, max;
  bool ok;
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double metric_of(const struct sample *s, enum metric m) {
  double t = s->secs > 1e-9 ? s->secs : 1e-9;
  switch (m) {
  case M_MBS: return (double)s->bytes / 1e6 / t;
  case M_CPU: return (double)s->bytes / 1e6 / (s->cpu > 1e-9 ? s->cpu : 1e-9);
  case M_RECS: return (double)s->records / t;
  case M_REPS: return (double)s->reports / t;
  default: return (double)s->rss_kb / 1024.0;
  }
}

static struct stat3 stat_of(const struct stage_res *r, enum metric m) {
  struct stat3 st = {0, 0, 0, false};
  if (r->skipped || r->failed || !r->n) return st;
  double v[MAX_RUNS];
  for (int i = 0; i < r->n; i++) v[i] = metric_of(&r->s[i], m);
  qsort(v, (size_t)r->n, sizeof v[0], cmp_double);
  st.min = v[0];
  st.max = v[r->n - 1];
  st.med = r->n % 2 ? v[r->n / 2] : (v[r->n / 2 - 1] + v[r->n / 2]) / 2;
  st.ok = true;
  return st;
}

/* Which metrics a stage shows. */
static bool shows(enum stage_id id, enum metric m) {
  const struct stage_def *d = &stages[id];
  switch (m) {
  case M_MBS: return d->set == SET_BIG && id != ST_AGG_BIG; /* records only: no bytes read */
  case M_CPU: return d->set == SET_BIG && !d->pg; /* the server's CPU is not ours to see */
  case M_RECS: return id != ST_INFLATE && id != ST_UNPACK;
  case M_REPS: return d->set != SET_BIG;
  default: return true;
  }
}

struct ratio {
  const char *key, *text;
  double value;
  bool ok;
};

struct target {
  const char *key, *text;
  double value, goal;
  bool ok, at_most; /* at_most: value <= goal is met */
  const char *unit;
  const char *note;
};

static double med(const struct stage_res *res, enum stage_id id, enum metric m, bool *ok) {
  struct stat3 s = stat_of(&res[id], m);
  if (!s.ok || s.med <= 0) *ok = false;
  return s.med;
}

static void compute(const struct stage_res *res, struct ratio *ra, size_t *nra, struct target *tg,
                    size_t *ntg) {
  size_t n = 0;
  bool ok;
#define RATIO(k, t, a, ma, b, mb)                                                 \
  do {                                                                            \
    ok = true;                                                                    \
    double va = med(res, a, ma, &ok), vb = med(res, b, mb, &ok);                  \
    ra[n++] = (struct ratio){k, t, ok ? va / vb : 0, ok};                         \
  } while (0)
  RATIO("unpack_vs_inflate", "unpack / bare inflate (MB/s)", ST_UNPACK, M_MBS, ST_INFLATE, M_MBS);
  RATIO("parse_null_vs_sax", "parse null (gzip) / bare SAX (MB/s)", ST_PARSE_GZ, M_MBS, ST_SAX, M_MBS);
  RATIO("parse_null_xml_vs_sax", "parse null (XML) / bare SAX (MB/s)", ST_PARSE_XML, M_MBS, ST_SAX, M_MBS);
  RATIO("parse_null_vs_sax_cpu", "parse null (gzip) / bare SAX (MB per CPU-s)", ST_PARSE_GZ, M_CPU, ST_SAX, M_CPU);
  RATIO("e2e_vs_copy", "end to end / bare COPY (records/s)", ST_E2E_BIG, M_RECS, ST_COPY, M_RECS);
  RATIO("e2e_vs_parse_null", "end to end / parse null (records/s)", ST_E2E_BIG, M_RECS, ST_PARSE_GZ, M_RECS);
  RATIO("small_null_vs_big_null", "small set / big report, null sink (records/s)", ST_SMALL_NULL, M_RECS, ST_PARSE_GZ, M_RECS);
  RATIO("small_pg_vs_big_pg", "small set / big report, into PG (records/s)", ST_SMALL_PG, M_RECS, ST_E2E_BIG, M_RECS);
  RATIO("threads_speedup", "small set null: pool / one thread (records/s)", ST_SMALL_NULL, M_RECS, ST_SMALL_NULL_1T, M_RECS);
  RATIO("agg_vs_e2e", "aggregate catch-up / end to end (records/s)", ST_AGG_BIG, M_RECS, ST_E2E_BIG, M_RECS);
  RATIO("agg_small_vs_small_pg", "catch-up / end to end, small set (records/s)", ST_AGG_SMALL, M_RECS, ST_SMALL_PG, M_RECS);
  RATIO("jsonl_vs_parse_null", "JSON lines / parse null (records/s)", ST_JSONL, M_RECS, ST_PARSE_GZ, M_RECS);
#undef RATIO
  *nra = n; /* the targets below use these by index, in the order above */

  size_t t = 0;
  /* 1. parse null >= 0.8x bare SAX on the big gzip report (wall clock; the
   *    CPU-time ratio is given beside it) */
  static char cpu_note[64];
  snprintf(cpu_note, sizeof cpu_note, "by CPU time %.2fx", ra[3].value);
  if (!ra[3].ok) cpu_note[0] = '\0';
  tg[t++] = (struct target){"parse_null_vs_sax", "parse (null sink) >= 0.8x bare SAX, big gzip report",
                            ra[1].value, 0.8, ra[1].ok, false, "x", cpu_note};
  /* 2. end to end >= 0.5x max(bare SAX, bare COPY), records/s */
  ok = true;
  double sax = med(res, ST_SAX, M_RECS, &ok), cp = med(res, ST_COPY, M_RECS, &ok);
  double e2e = med(res, ST_E2E_BIG, M_RECS, &ok);
  tg[t++] = (struct target){"e2e_vs_ceiling", "end to end into PG >= 0.5x max(bare SAX, bare COPY) records/s",
                            ok ? e2e / (sax > cp ? sax : cp) : 0, 0.5, ok, false, "x", NULL};
  /* 3. small reports >= 0.5x the big report's records/s (into PG when there
   *    is a database, otherwise null sink, which says less) */
  if (ra[7].ok)
    tg[t++] = (struct target){"small_vs_big", "small reports >= 0.5x big-report records/s (into PG)",
                              ra[7].value, 0.5, true, false, "x", NULL};
  else
    tg[t++] = (struct target){"small_vs_big", "small reports >= 0.5x big-report records/s (null sink)",
                              ra[6].value, 0.5, ra[6].ok, false, "x", "null sink only"};
  /* 4. peak RSS <= 64 MB for every dmarcpipe stage */
  double worst = 0;
  bool any = false;
  for (int i = 0; i < N_STAGES; i++) {
    if (!stages[i].ours) continue;
    struct stat3 s = stat_of(&res[i], M_RSS);
    if (s.ok) {
      any = true;
      if (s.max > worst) worst = s.max;
    }
  }
  tg[t++] = (struct target){"peak_rss", "peak RSS <= 64 MB in every dmarcpipe stage (worst run)",
                            worst, RSS_TARGET_MB, any, true, "MB", NULL};
  /* 5. more cores, more throughput: the pool against one thread */
  tg[t++] = (struct target){"parallel", "more cores, more throughput: small set, pool >= 1.2x one thread",
                            ra[8].value, 1.2, ra[8].ok, false, "x", NULL};
  *ntg = t;
}

static bool target_met(const struct target *t) {
  return t->ok && (t->at_most ? t->value <= t->goal : t->value >= t->goal);
}

static void json_str(dp_buf_t *b, const char *s) {
  dp_buf_putc(b, '"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      dp_buf_putc(b, '\\');
      dp_buf_putc(b, (char)ch);
    } else if (ch < 0x20) {
      dp_buf_printf(b, "\\u%04x", ch);
    } else {
      dp_buf_putc(b, (char)ch);
    }
  }
  dp_buf_putc(b, '"');
}

static void json_num(dp_buf_t *b, double v) {
  if (!isfinite(v)) dp_buf_puts(b, "null");
  else dp_buf_printf(b, "%.6g", v);
}

static int cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static void to_json(const struct ctx *x, const struct stage_res *res, dp_buf_t *b) {
  const struct opts *o = x->o;
  const struct corpus *c = &x->c;
  dp_buf_printf(b,
                "{\"version\":1,\"seed\":%" PRIu64 ",\"runs\":%u,\"cpus\":%d,"
                "\"libxml2\":\"%s\",\"zlib\":\"%s\",\"postgresql\":%d,",
                o->seed, o->runs, cpus(), LIBXML_DOTTED_VERSION, zlibVersion(),
                x->server_version);
  dp_buf_printf(b,
                "\"corpus\":{\"big\":{\"records\":%" PRIu64 ",\"gzip_bytes\":%" PRIu64
                ",\"xml_bytes\":%" PRIu64 ",\"copy_bytes\":%" PRIu64 "},"
                "\"small\":{\"reports\":%" PRIu64 ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 "},"
                "\"mix\":{\"reports\":%" PRIu64 ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 "}},",
                c->big_records, c->big_gz_bytes, c->big_xml_bytes, c->big_copy_bytes,
                c->small_reports, c->small_records, c->small_bytes, c->mix_reports, c->mix_records,
                c->mix_bytes);
  dp_buf_puts(b, "\"stages\":{");
  bool first = true;
  for (int i = 0; i < N_STAGES; i++) {
    const struct stage_res *r = &res[i];
    if (!r->n && !r->skipped && !r->failed) continue;
    if (!first) dp_buf_putc(b, ',');
    first = false;
    json_str(b, stages[i].key);
    dp_buf_puts(b, ":{\"label\":");
    json_str(b, stages[i].label);
    if (r->skipped || r->failed) {
      dp_buf_printf(b, ",\"%s\":", r->skipped ? "skipped" : "error");
      json_str(b, r->why);
      dp_buf_putc(b, '}');
      continue;
    }
    dp_buf_puts(b, ",\"seconds\":[");
    for (int k = 0; k < r->n; k++) {
      if (k) dp_buf_putc(b, ',');
      json_num(b, r->s[k].secs);
    }
    dp_buf_puts(b, "],\"cpu_seconds\":[");
    for (int k = 0; k < r->n; k++) {
      if (k) dp_buf_putc(b, ',');
      json_num(b, r->s[k].cpu);
    }
    dp_buf_putc(b, ']');
    for (int m = 0; m < N_METRICS; m++) {
      if (!shows((enum stage_id)i, (enum metric)m)) continue;
      struct stat3 s = stat_of(r, (enum metric)m);
      dp_buf_printf(b, ",\"%s\":{\"median\":", metric_key[m]);
      json_num(b, s.med);
      dp_buf_puts(b, ",\"min\":");
      json_num(b, s.min);
      dp_buf_puts(b, ",\"max\":");
      json_num(b, s.max);
      dp_buf_putc(b, '}');
    }
    dp_buf_putc(b, '}');
  }
  struct ratio ra[16];
  struct target tg[8];
  size_t nra, ntg;
  compute(res, ra, &nra, tg, &ntg);
  dp_buf_puts(b, "},\"ratios\":{");
  first = true;
  for (size_t i = 0; i < nra; i++) {
    if (!ra[i].ok) continue;
    if (!first) dp_buf_putc(b, ',');
    first = false;
    json_str(b, ra[i].key);
    dp_buf_putc(b, ':');
    json_num(b, ra[i].value);
  }
  dp_buf_puts(b, "},\"targets\":[");
  for (size_t i = 0; i < ntg; i++) {
    if (i) dp_buf_putc(b, ',');
    dp_buf_puts(b, "{\"key\":");
    json_str(b, tg[i].key);
    dp_buf_puts(b, ",\"text\":");
    json_str(b, tg[i].text);
    dp_buf_puts(b, ",\"goal\":");
    json_num(b, tg[i].goal);
    dp_buf_puts(b, ",\"value\":");
    if (tg[i].ok) json_num(b, tg[i].value);
    else dp_buf_puts(b, "null");
    dp_buf_printf(b, ",\"met\":%s}", !tg[i].ok ? "null" : target_met(&tg[i]) ? "true" : "false");
  }
  dp_buf_puts(b, "]}\n");
}

static void fmt_num(char *out, size_t n, double v) {
  if (v >= 100000) snprintf(out, n, "%.0f", v);
  else if (v >= 100) snprintf(out, n, "%.1f", v);
  else snprintf(out, n, "%.2f", v);
}

static const char *ceiling_note(enum stage_id id, enum metric m, const struct ratio *ra) {
  static char buf[64];
  int k = -1;
  const char *what = "";
  if (id == ST_UNPACK && m == M_MBS) k = 0, what = "inflate";
  if (id == ST_PARSE_GZ && m == M_MBS) k = 1, what = "SAX";
  if (id == ST_PARSE_XML && m == M_MBS) k = 2, what = "SAX";
  if (id == ST_PARSE_GZ && m == M_CPU) k = 3, what = "SAX";
  if (id == ST_E2E_BIG && m == M_RECS) k = 4, what = "COPY";
  if (id == ST_SMALL_PG && m == M_RECS) k = 7, what = "big e2e";
  if (id == ST_SMALL_NULL && m == M_RECS) k = 6, what = "big null";
  if (id == ST_AGG_BIG && m == M_RECS) k = 9, what = "big e2e";
  if (id == ST_AGG_SMALL && m == M_RECS) k = 10, what = "small e2e";
  if (id == ST_JSONL && m == M_RECS) k = 11, what = "parse null";
  if (k < 0 || !ra[k].ok) return "";
  snprintf(buf, sizeof buf, "%.2fx %s", ra[k].value, what);
  return buf;
}

static void to_table(const struct ctx *x, const struct stage_res *res, FILE *f) {
  const struct corpus *c = &x->c;
  fprintf(f, "dmarcpipe bench: seed %" PRIu64 ", %u runs per stage, %d CPUs, libxml2 %s, zlib %s",
          x->o->seed, x->o->runs, cpus(), LIBXML_DOTTED_VERSION, zlibVersion());
  if (x->server_version) fprintf(f, ", PostgreSQL %d", x->server_version / 10000);
  fprintf(f, "\n");
  if (c->big_records)
    fprintf(f, "  big report:  %" PRIu64 " records, %.1f MB XML, %.1f MB gzip, %.1f MB of COPY rows\n",
            c->big_records, (double)c->big_xml_bytes / 1e6, (double)c->big_gz_bytes / 1e6,
            (double)c->big_copy_bytes / 1e6);
  if (c->small_reports)
    fprintf(f, "  small set:   %" PRIu64 " reports (1-10 records; xml/gzip/zip), %" PRIu64
               " records, %.1f MB of files\n",
            c->small_reports, c->small_records, (double)c->small_bytes / 1e6);
  if (c->mix_reports)
    fprintf(f, "  mix:         %" PRIu64 " reports (realistic sizes and formats), %" PRIu64
               " records, %.1f MB of files\n",
            c->mix_reports, c->mix_records, (double)c->mix_bytes / 1e6);
  fprintf(f, "  MB = 10^6 bytes of report XML (decompressed). MB/CPUs: per CPU-second of the\n"
             "  stage's child process (user+sys, all threads; steadier than MB/s on a busy\n"
             "  machine). RSS: the child's peak. Each stage runs in its own child process.\n\n");
  struct ratio ra[16];
  struct target tg[8];
  size_t nra, ntg;
  compute(res, ra, &nra, tg, &ntg);
  fprintf(f, "%-36s %10s %10s %10s  %-7s %s\n", "stage", "median", "min", "max", "unit",
          "vs ceiling");
  for (int i = 0; i < N_STAGES; i++) {
    const struct stage_res *r = &res[i];
    if (r->skipped || r->failed) {
      fprintf(f, "%-36s %s: %s\n", stages[i].label, r->skipped ? "skipped" : "FAILED", r->why);
      continue;
    }
    if (!r->n) continue;
    bool first = true;
    for (int m = 0; m < N_METRICS; m++) {
      if (!shows((enum stage_id)i, (enum metric)m)) continue;
      struct stat3 s = stat_of(r, (enum metric)m);
      char a[32], b[32], d[32];
      fmt_num(a, sizeof a, s.med);
      fmt_num(b, sizeof b, s.min);
      fmt_num(d, sizeof d, s.max);
      fprintf(f, "%-36s %10s %10s %10s  %-7s %s\n", first ? stages[i].label : "", a, b, d,
              metric_unit[m], ceiling_note((enum stage_id)i, (enum metric)m, ra));
      first = false;
    }
  }
  fprintf(f, "\nratios (medians of this run):\n");
  for (size_t i = 0; i < nra; i++)
    if (ra[i].ok) fprintf(f, "  %-50s %.2fx\n", ra[i].text, ra[i].value);
  fprintf(f, "\ntargets (issue 5):\n");
  for (size_t i = 0; i < ntg; i++) {
    if (!tg[i].ok) {
      fprintf(f, "  %s: not measured\n", tg[i].text);
      continue;
    }
    if (!strcmp(tg[i].unit, "MB"))
      fprintf(f, "  %s: %.1f MB - %s\n", tg[i].text, tg[i].value,
              target_met(&tg[i]) ? "met" : "not met");
    else
      fprintf(f, "  %s: %.2fx - %s%s%s\n", tg[i].text, tg[i].value,
              target_met(&tg[i]) ? "met" : "not met", tg[i].note && *tg[i].note ? "; " : "",
              tg[i].note ? tg[i].note : "");
  }
}

/* ======================================================================== */
/* The command                                                              */

static void usage(FILE *f) {
  fprintf(f,
          "usage: dmarcpipe bench [--seed N] [--reports N] [--big-records M] [--mix N]\n"
          "                       [--sink null|pg|both] [--db DSN] [--runs K]\n"
          "                       [--json] [--json-file PATH] [--workdir DIR]\n"
          "\n"
          "Generate a deterministic corpus and time dmarcpipe stage by stage next to\n"
          "the bare ceilings measured in the same run (zlib inflate, libxml2 SAX that\n"
          "only counts records, COPY of the same rows into an unindexed temp table).\n"
          "The aggregate catch-up that ingest runs at its end is timed after an\n"
          "untimed load, of the big report and of the small set.\n"
          "Each stage runs K times in its own child process; medians, min and max\n"
          "are printed with the peak RSS of each stage and the issue's targets.\n"
          "\n"
          "  --seed N          generator seed (default 1)\n"
          "  --big-records M   records of the big gzip report (default 100000; 0 = none)\n"
          "  --reports N       small reports of 1-10 records, xml/gzip/zip (default 2000)\n"
          "  --mix N           also N reports of the realistic size mix (default 0)\n"
          "  --sink S          null, pg or both (default both; pg stages are skipped\n"
          "                    when no database can be reached)\n"
          "  --db DSN          database server (else PG* environment, else embedded\n"
          "                    cluster); each end-to-end run gets a fresh database made\n"
          "                    with CREATE DATABASE and dropped afterwards (migrated,\n"
          "                    with the record partitions of the corpus's months,\n"
          "                    before the clock starts)\n"
          "  --runs K          runs per stage (default 3, 1-50)\n"
          "  --json            one JSON object on stdout instead of the table\n"
          "  --json-file PATH  also write the JSON object to PATH\n"
          "  --workdir DIR     generate into DIR and keep it (default: a temp dir, removed)\n"
          "Numbers N, M accept k and m suffixes (x1000, x1000000).\n");
}

static int parse_opts(int argc, char **argv, struct opts *o) {
  memset(o, 0, sizeof *o);
  o->seed = 1;
  o->small = 2000;
  o->big = 100000;
  o->sinks = SINK_NULL | SINK_PG;
  o->runs = 3;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 1;
    }
    if (!strcmp(a, "--json")) {
      o->json = true;
      continue;
    }
    const char *eq = strchr(a, '=');
    char key[32];
    if (eq && eq - a < (long)sizeof key) {
      snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
      v = eq + 1;
    } else {
      snprintf(key, sizeof key, "%s", a);
      if (i + 1 < argc) v = argv[++i];
    }
    uint64_t n = 0;
    if (!strcmp(key, "--seed") && parse_u64(v, UINT64_MAX / 1001, &n)) o->seed = n;
    else if (!strcmp(key, "--reports") && parse_u64(v, 1000000, &n)) o->small = n;
    else if (!strcmp(key, "--big-records") && parse_u64(v, 5000000, &n)) o->big = n;
    else if (!strcmp(key, "--mix") && parse_u64(v, 1000000, &n)) o->mix = n;
    else if (!strcmp(key, "--runs") && parse_u64(v, MAX_RUNS, &n) && n >= 1) o->runs = (unsigned)n;
    else if (!strcmp(key, "--db") && v) o->db = v;
    else if (!strcmp(key, "--json-file") && v && *v) o->json_file = v;
    else if (!strcmp(key, "--workdir") && v && *v) o->workdir = v;
    else if (!strcmp(key, "--sink") && v && !strcmp(v, "null")) o->sinks = SINK_NULL;
    else if (!strcmp(key, "--sink") && v && !strcmp(v, "pg")) o->sinks = SINK_PG;
    else if (!strcmp(key, "--sink") && v && !strcmp(v, "both")) o->sinks = SINK_NULL | SINK_PG;
    else {
      fprintf(stderr, "dmarcpipe bench: invalid option or value: %s%s%s\n", a,
              v && !eq ? " " : "", v && !eq ? v : "");
      usage(stderr);
      return 2;
    }
  }
  return 0;
}

static bool tty;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...) {
  if (!tty) return;
  va_list ap;
  va_start(ap, fmt);
  fputs("\r\033[K", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fflush(stderr);
}

/* Why stage i does not run, or NULL when it does. */
static const char *skip_reason(const struct ctx *x, enum stage_id i, const char *no_db) {
  const struct stage_def *d = &stages[i];
  const struct opts *o = x->o;
  if (d->set == SET_BIG && !o->big) return "no big report (--big-records 0)";
  if (d->set == SET_SMALL && !o->small) return "no small reports (--reports 0)";
  if (d->set == SET_MIX && !o->mix) return "";
  if (d->null_sink && !(o->sinks & SINK_NULL)) return "--sink pg";
  if (d->pg && !(o->sinks & SINK_PG)) return "--sink null";
  if (d->pg && !x->server) return no_db;
  return NULL;
}

static void run_stages(struct ctx *x, struct stage_res *res, const char *no_db) {
  int todo = 0, done = 0;
  for (int i = 0; i < N_STAGES; i++) todo += !skip_reason(x, (enum stage_id)i, no_db);
  for (int i = 0; i < N_STAGES; i++) {
    struct stage_res *r = &res[i];
    const char *why = skip_reason(x, (enum stage_id)i, no_db);
    if (why) {
      r->skipped = *why != '\0';
      snprintf(r->why, sizeof r->why, "%s", why);
      continue;
    }
    done++;
    cur_stage = &stages[i];
    for (unsigned k = 0; k < x->o->runs && !r->failed; k++) {
      progress("bench: [%d/%d] %s, run %u/%u", done, todo, stages[i].label, k + 1, x->o->runs);
      char db[96] = "";
      char err[256] = ""; /* leaves room for the prefix in r->why */
      if (stages[i].fresh_db) {
        snprintf(db, sizeof db, "dp_bench_%ld_%d_%u", (long)getpid(), i, k);
        if (fresh_db(x, db, err, sizeof err)) {
          r->failed = true;
          snprintf(r->why, sizeof r->why, "CREATE DATABASE: %s", err);
          break;
        }
      }
      struct sample *s = &r->s[r->n];
      long rss = 0;
      double cpu = 0;
      int rc = in_child(run_stage_child, x, s, sizeof *s, &rss, &cpu);
      if (db[0]) drop_db(x, db);
      if (rc || s->rc) {
        r->failed = true;
        snprintf(r->why, sizeof r->why, "%s", rc ? "the measuring child died" : s->err);
        break;
      }
      s->rss_kb = rss;
      s->cpu = cpu;
      r->n++;
    }
  }
  progress("%s", "");
}

int dp_bench_cmd(int argc, char **argv) {
  struct opts o;
  int prc = parse_opts(argc, argv, &o);
  if (prc) return prc == 1 ? 0 : 2;
  tty = isatty(2);
  static struct ctx x;
  memset(&x, 0, sizeof x);
  x.o = &o;
  int ret = 0;

  /* The database first: a wrong --db should fail before minutes of generation. */
  char no_db[400] = "no database";
  if (o.sinks & SINK_PG) {
    char err[300] = "";
    char *ci = NULL;
    if (dp_store_select(o.db, &ci, err, sizeof err) == 0) {
      PGconn *c = server_connect(ci, err, sizeof err);
      if (c) {
        x.server = ci;
        x.server_version = PQserverVersion(c);
        PQfinish(c);
      } else {
        free(ci);
      }
    }
    if (!x.server) {
      snprintf(no_db, sizeof no_db, "no database: %s", err);
      if (o.sinks == SINK_PG) {
        fprintf(stderr, "dmarcpipe bench: %s\n", no_db);
        return 2;
      }
      fprintf(stderr, "dmarcpipe bench: %s; database stages skipped\n", no_db);
    }
  }

  bool temp = !o.workdir;
  if (temp) {
    const char *t = getenv("TMPDIR");
    snprintf(x.dir, sizeof x.dir, "%.3000s/dmarcpipe-bench.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(x.dir)) {
      fprintf(stderr, "dmarcpipe bench: cannot create a work directory: %s\n", strerror(errno));
      free(x.server);
      return 2;
    }
  } else {
    if (strlen(o.workdir) > 3000) {
      fprintf(stderr, "dmarcpipe bench: --workdir path too long\n");
      free(x.server);
      return 2;
    }
    snprintf(x.dir, sizeof x.dir, "%s", o.workdir);
    /* Only what bench itself writes is removed: a kept work dir from other
     * options would mix corpora, but DIR may hold anything else. */
    static const char *const ours[] = {"big", "bigxml", "small", "mix", "big.copy"};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
      char p[PATH_LEN + 16];
      snprintf(p, sizeof p, "%.3000s/%s", x.dir, ours[i]);
      rm_tree(p);
    }
    if (make_dir(x.dir)) {
      fprintf(stderr, "dmarcpipe bench: cannot create %s: %s\n", x.dir, strerror(errno));
      free(x.server);
      return 2;
    }
  }

  progress("bench: generating the corpus in %s", x.dir);
  double g0 = now_s();
  /* The child writes the files and sends back what it wrote and where. */
  static struct corpus c;
  long gen_rss = 0;
  int rc = in_child(gen_child, &x, &c, sizeof c, &gen_rss, NULL);
  if (rc || c.rc) {
    fprintf(stderr, "dmarcpipe bench: %s\n", rc ? "the generating child died" : c.err);
    ret = 2;
  } else {
    x.c = c;
    memcpy(x.big_gz, c.big_gz, sizeof x.big_gz);
    memcpy(x.big_xml, c.big_xml, sizeof x.big_xml);
    memcpy(x.big_copy, c.big_copy, sizeof x.big_copy);
    snprintf(x.small_dir, sizeof x.small_dir, "%.3000s/small", x.dir);
    snprintf(x.mix_dir, sizeof x.mix_dir, "%.3000s/mix", x.dir);
    if (tty)
      fprintf(stderr, "\r\033[Kbench: corpus generated in %.1f s\n", now_s() - g0);
    static struct stage_res res[N_STAGES];
    memset(res, 0, sizeof res);
    run_stages(&x, res, no_db);
    dp_buf_t j;
    dp_buf_init(&j, 0);
    to_json(&x, res, &j);
    if (o.json) fputs(j.data, stdout);
    else to_table(&x, res, stdout);
    if (o.json_file) {
      FILE *f = fopen(o.json_file, "w");
      if (!f || fputs(j.data, f) < 0) {
        fprintf(stderr, "dmarcpipe bench: cannot write %s\n", o.json_file);
        ret = 2;
      }
      if (f) fclose(f);
    }
    dp_buf_free(&j);
    for (int i = 0; i < N_STAGES; i++)
      if (res[i].failed) {
        fprintf(stderr, "dmarcpipe bench: %s: %s\n", stages[i].label, res[i].why);
        if (!ret) ret = 1;
      }
  }
  if (temp) rm_tree(x.dir);
  free(x.server);
  free(x.run_db);
  return ret;
}
