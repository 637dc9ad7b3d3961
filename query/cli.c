/* SPDX-License-Identifier: MIT */
/* query/cli.c - option handling and connection set-up shared by the query
 * commands (reports, senders, errors), so that --db, --format, --domain and
 * --since mean and fail the same way everywhere. */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "query/query_int.h"
#include "store/store.h"

/* Lower-case, drop one trailing dot, and refuse what cannot be a domain name
 * (reports store names lower-cased, in their ASCII form). */
static int set_domain(dp_query_opts_t *o, const char *cmd, const char *arg) {
  size_t n = strlen(arg);
  if (n && arg[n - 1] == '.') n--;
  if (n == 0 || n >= sizeof o->domain_buf) {
    fprintf(stderr, "dmarcpipe %s: invalid --domain '%s'\n", cmd, arg);
    return DP_EUSAGE;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)arg[i];
    if (ch <= ' ' || ch == 0x7F || ch == '/' || ch == '@') {
      fprintf(stderr,
              "dmarcpipe %s: invalid --domain '%s': expected a domain name such as example.com\n",
              cmd, arg);
      return DP_EUSAGE;
    }
    o->domain_buf[i] = (char)tolower(ch);
  }
  o->domain_buf[n] = '\0';
  o->filter.domain = o->domain_buf;
  return 0;
}

int dp__query_opt(dp_query_opts_t *o, const char *cmd, int c, const char *arg) {
  char err[256];
  switch (c) {
  case 'd':
    o->db = arg;
    return 0;
  case 'f':
    if (dp__query_parse_format(arg, &o->fmt) == 0) return 0;
    fprintf(stderr, "dmarcpipe %s: invalid --format '%s': use table, csv or json\n", cmd, arg);
    return DP_EUSAGE;
  case 'D':
    return set_domain(o, cmd, arg);
  case 's':
    if (dp__query_since_parse(arg, (int64_t)time(NULL), &o->filter.since, err, sizeof err)) {
      fprintf(stderr, "dmarcpipe %s: %s\n", cmd, err);
      return DP_EUSAGE;
    }
    o->filter.has_since = true;
    return 0;
  case 'b':
    if (!strcmp(arg, "day")) {
      o->by = DP_PERIOD_DAY;
    } else if (!strcmp(arg, "week")) {
      o->by = DP_PERIOD_WEEK;
    } else {
      fprintf(stderr, "dmarcpipe %s: invalid --by '%s': use day or week\n", cmd, arg);
      return DP_EUSAGE;
    }
    return 0;
  case 'R':
    o->redact = true;
    return 0;
  case 'F':
    if (!strcmp(arg, "spf")) {
      o->fail = DP_FAIL_SPF;
    } else if (!strcmp(arg, "dkim")) {
      o->fail = DP_FAIL_DKIM;
    } else if (!strcmp(arg, "any")) {
      o->fail = DP_FAIL_ANY;
    } else {
      fprintf(stderr, "dmarcpipe %s: invalid --fail '%s': use spf, dkim or any\n", cmd, arg);
      return DP_EUSAGE;
    }
    return 0;
  case 'H':
    o->html = arg;
    return 0;
  default:
    return DP_EUSAGE;
  }
}

int dp__query_args(dp_query_opts_t *o, const char *cmd, int argc, char **argv,
                   const struct option *longopts, void (*usage)(FILE *f), bool need_domain) {
  opterr = 0;
  optind = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    if (ch == 'h') {
      usage(stdout);
      return 0;
    }
    if (ch == '?') {
      dp__query_bad_opt(cmd, argv, optind);
      return 2;
    }
    if (dp__query_opt(o, cmd, ch, optarg)) return 2;
  }
  if (optind < argc) {
    fprintf(stderr, "dmarcpipe %s: unexpected argument '%s' (see 'dmarcpipe %s --help')\n", cmd,
            argv[optind], cmd);
    return 2;
  }
  if (need_domain && !o->filter.domain) {
    fprintf(stderr, "dmarcpipe %s: --domain is required (see 'dmarcpipe %s --help')\n", cmd, cmd);
    return 2;
  }
  return -1;
}

int dp__query_done(const char *cmd, PGconn *c, int rc, const char *err) {
  if (c) PQfinish(c);
  dp__query_services_set(NULL);
  if (rc) {
    fprintf(stderr, "dmarcpipe %s: %s\n", cmd, err && *err ? err : dp_strerror(rc));
    return 2;
  }
  return 0;
}

void dp__query_bad_opt(const char *cmd, char **argv, int optind_) {
  const char *arg = optind_ > 0 ? argv[optind_ - 1] : NULL;
  fprintf(stderr,
          "dmarcpipe %s: unknown option or missing argument: '%s' (see 'dmarcpipe %s --help')\n",
          cmd, arg ? arg : "", cmd);
}

PGconn *dp__query_connect(const char *cmd, const char *db) {
  char err[512] = "";
  char *conninfo = NULL;
  int rc = dp_store_select(db, &conninfo, err, sizeof err);
  if (rc) {
    fprintf(stderr, "dmarcpipe %s: %s\n", cmd, *err ? err : dp_strerror(rc));
    free(conninfo);
    return NULL;
  }
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  free(conninfo);
  if (!c) fprintf(stderr, "dmarcpipe %s: %s\n", cmd, *err ? err : dp_strerror(DP_EPGCONN));
  return c;
}

void dp__query_pgerr(PGconn *c, const PGresult *res, char *err, size_t errlen) {
  const char *m = res ? PQresultErrorMessage(res) : NULL;
  if (!m || !*m) m = c ? PQerrorMessage(c) : "";
  if (!m || !*m) m = "query failed";
  size_t n = strcspn(m, "\n");
  snprintf(err, errlen, "%.*s", (int)n, m);
}
