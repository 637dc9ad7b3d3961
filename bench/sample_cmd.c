/* SPDX-License-Identifier: MIT */
/* bench/sample_cmd.c - `dmarcpipe sample`: write the deterministic sample
 * corpus into DIR/reports and its known answers into DIR/expected.json and
 * DIR/expected.tsv (kept out of reports/ so ingesting reports/ sees only reports). */
#include "bench/bench.h"
#include "bench/bench_int.h"

#include <dirent.h>
#include <errno.h>
#include <libpsl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f) {
  fprintf(f,
          "usage: dmarcpipe sample --out DIR [--seed N] [--domain D] [--days N]\n"
          "                        [--end YYYY-MM-DD] [--scale K] [--corrupt]\n"
          "\n"
          "Write a deterministic set of realistic DMARC aggregate reports for domain D\n"
          "(default example.com) into DIR/reports: one report per receiver per day for\n"
          "N days (default 14) ending on --end (default 2026-11-01), as the receivers\n"
          "send them (.xml.gz, .zip, .xml, .eml). The known answers (totals, and per\n"
          "sender group: messages, SPF/DKIM alignment, DMARC pass) go to DIR/expected.json\n"
          "and DIR/expected.tsv. The same options always give byte-identical files.\n"
          "\n"
          "  --seed N       random seed (default 1)\n"
          "  --scale K      multiply the sending sources of every sender by K (1-64)\n"
          "  --corrupt      add a truncated gzip, a truncated zip and a report with a\n"
          "                 bad count, which dmarcpipe must refuse\n"
          "\n"
          "Then: dmarcpipe ingest DIR/reports && dmarcpipe senders --domain D\n");
}

struct out_dir {
  char dir[4096];
  int err; /* errno of the first failed write */
  char failed[4600];
};

static int write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return errno ? errno : EIO;
  size_t n = len ? fwrite(data, 1, len, f) : 0;
  int e = n == len ? 0 : (errno ? errno : EIO);
  if (fclose(f) && !e) e = errno ? errno : EIO;
  return e;
}

static int emit_file(void *ud, const char *name, const void *data, size_t len) {
  struct out_dir *o = ud;
  char path[4500];
  snprintf(path, sizeof path, "%s/%s", o->dir, name);
  int e = write_file(path, data, len);
  if (e) {
    o->err = e;
    snprintf(o->failed, sizeof o->failed, "%s", path);
    return DP_EIO;
  }
  return 0;
}

static int make_dir(const char *path) {
  if (mkdir(path, 0755) == 0 || errno == EEXIST) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    errno = ENOTDIR;
  }
  return -1;
}

/* A reports/ folder left from another run may hold files of other options:
 * refuse instead of mixing them (the answers would no longer match). */
static bool dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  if (!d) return true;
  struct dirent *e;
  bool empty = true;
  while (empty && (e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = false;
  closedir(d);
  return empty;
}

/* The expected answers take D as its own organizational domain, so D must be
 * registrable by the Public Suffix List (example.co.uk, not mail.example.com). */
static bool registrable(const char *domain, char *org, size_t orglen) {
  psl_ctx_t *psl = psl_latest(NULL); /* the system list, else libpsl's built-in one */
  const psl_ctx_t *use = psl ? psl : psl_builtin();
  const char *reg = use ? psl_registrable_domain(use, domain) : domain;
  snprintf(org, orglen, "%s", reg ? reg : "");
  bool ok = reg && !strcmp(reg, domain);
  psl_free(psl);
  return ok;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out) {
  if (!s || !*s || *s == '-' || *s == '+') return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max) return false;
  *out = v;
  return true;
}

int dp_sample_cmd(int argc, char **argv) {
  dp_gen_sample_opts_t o;
  dp_gen_sample_defaults(&o);
  const char *out = NULL;
  char domain[128];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--corrupt")) {
      o.corrupt = true;
      continue;
    }
    /* every other option takes a value: "--opt VALUE" or "--opt=VALUE" */
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
    if (!strcmp(key, "--out") && v && *v) {
      out = v;
    } else if (!strcmp(key, "--seed") && parse_u64(v, UINT64_MAX, &n)) {
      o.seed = n;
    } else if (!strcmp(key, "--days") && parse_u64(v, 3660, &n) && n >= 1) {
      o.days = (int)n;
    } else if (!strcmp(key, "--scale") && parse_u64(v, 64, &n) && n >= 1) {
      o.scale = (unsigned)n;
    } else if (!strcmp(key, "--end") && v && dp_gen_parse_date(v, &o.last_day) == 0) {
      /* parsed */
    } else if (!strcmp(key, "--domain") && v && strlen(v) < sizeof domain) {
      size_t k = 0;
      for (; v[k]; k++) domain[k] = (char)(v[k] >= 'A' && v[k] <= 'Z' ? v[k] - 'A' + 'a' : v[k]);
      domain[k] = '\0';
      if (k && domain[k - 1] == '.') domain[k - 1] = '\0';
      o.domain = domain;
    } else {
      if (!strcmp(key, "--out") || !strcmp(key, "--seed") || !strcmp(key, "--days") ||
          !strcmp(key, "--scale") || !strcmp(key, "--end") || !strcmp(key, "--domain"))
        fprintf(stderr, "dmarcpipe sample: invalid value for %s: '%s'\n", key, v ? v : "");
      else
        fprintf(stderr, "dmarcpipe sample: unknown option '%s'\n", a);
      fprintf(stderr, "Run 'dmarcpipe sample --help' for the options.\n");
      return 2;
    }
  }
  if (!out) {
    fprintf(stderr, "dmarcpipe sample: --out DIR is required\n");
    fprintf(stderr, "Run 'dmarcpipe sample --help' for the options.\n");
    return 2;
  }
  char org[128];
  if (!dp_gen_domain_ok(o.domain)) {
    fprintf(stderr, "dmarcpipe sample: invalid --domain '%s' (want a domain name such as "
                    "example.com)\n", o.domain);
    return 2;
  }
  if (!registrable(o.domain, org, sizeof org)) {
    fprintf(stderr, "dmarcpipe sample: --domain %s is not a registrable domain%s%s%s\n", o.domain,
            org[0] ? " (use " : "", org, org[0] ? ")" : "");
    return 2;
  }
  struct out_dir od = {{0}, 0, {0}};
  snprintf(od.dir, sizeof od.dir, "%s/reports", out);
  if (make_dir(out) || make_dir(od.dir)) {
    fprintf(stderr, "dmarcpipe sample: cannot create %s: %s\n", od.dir, strerror(errno));
    return 2;
  }
  if (!dir_is_empty(od.dir)) {
    fprintf(stderr, "dmarcpipe sample: %s is not empty; choose a new --out directory\n", od.dir);
    return 2;
  }
  dp_gen_expect_t exp;
  dp_gen_expect_init(&exp);
  int rc = dp_gen_sample(&o, emit_file, &od, &exp);
  if (rc == DP_EIO) {
    fprintf(stderr, "dmarcpipe sample: cannot write %s: %s\n", od.failed, strerror(od.err));
  } else if (rc) {
    fprintf(stderr, "dmarcpipe sample: %s\n", dp_strerror(rc));
  }
  dp_buf_t b;
  dp_buf_init(&b, 0);
  const char *names[2] = {"expected.json", "expected.tsv"};
  for (int k = 0; k < 2 && !rc; k++) {
    dp_buf_reset(&b);
    rc = k == 0 ? dp_gen_expect_json(&exp, &o, &b) : dp_gen_expect_tsv(&exp, &b);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", out, names[k]);
    int e = rc ? 0 : write_file(path, b.data, b.len);
    if (e) {
      fprintf(stderr, "dmarcpipe sample: cannot write %s: %s\n", path, strerror(e));
      rc = DP_EIO;
    } else if (rc) {
      fprintf(stderr, "dmarcpipe sample: %s\n", dp_strerror(rc));
    }
  }
  dp_buf_free(&b);
  if (!rc) {
    printf("wrote %llu reports (%llu records, %llu messages) to %s", (unsigned long long)exp.reports,
           (unsigned long long)exp.records, (unsigned long long)exp.messages, od.dir);
    if (exp.n_rejected) printf(" plus %zu broken inputs", exp.n_rejected);
    printf("; expected answers in %s/expected.json\n", out);
  }
  dp_gen_expect_free(&exp);
  return rc ? 2 : 0;
}
