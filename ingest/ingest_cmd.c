/* SPDX-License-Identifier: MIT */
/* ingest/ingest_cmd.c - `dmarcpipe ingest`: options (database, output sink,
 * limits), then the pipeline, then a one-line summary. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "core/core.h"
#include "pipeline_int.h"
#include "src_imap_int.h"
#include "parse/parse.h"
#include "store/store.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: dmarcpipe ingest [options] PATH...|imaps://user@host/Folder\n"
          "  PATH is a report file (xml, gzip, zip, zlib, .eml mail), a directory (walked\n"
          "  recursively) or - for standard input. Content is sniffed, never the name.\n"
          "options:\n"
          "  --db CONNINFO|URI       database (else PG* environment, else embedded cluster)\n"
          "  --output pg|null|jsonl  where reports go: PostgreSQL; nowhere (parse only);\n"
          "                          or one JSON object per record on stdout\n"
          "  --quiet                 no notes, no summary (refusals are still printed)\n"
          "  --jobs N                inputs processed at once (default 8)\n"
          "  --no-aggregate          leave the new reports pending for the aggregates that\n"
          "                          queries read (the next query or `db aggregate` folds them)\n"
          "limits (sizes take K, M, G suffixes):\n"
          "  --max-input-size N      bytes of one input file or message (default 1G)\n"
          "  --max-report-size N     decompressed bytes of one report (default 1G)\n"
          "  --max-ratio N           decompressed/compressed ratio (default 250)\n"
          "  --max-zip-entries N     entries in one zip (default 1000)\n"
          "  --max-nesting N         containers inside containers (default 4)\n"
          "  --max-xml-depth N       XML element depth, 1-255 (default 64)\n"
          "  --max-field-len N       bytes of one text field (default 64K)\n"
          "  --max-records N         records in one report (default 10000000)\n"
          "  --max-future-days N     days a report's date range may end after now (default 7;\n"
          "                          0: no check)\n" DP_IMAP_USAGE
          "exit status: 0 all loaded, 1 some inputs or reports refused, 2 usage or fatal error\n");
}

/* A count or size: digits, then k, M or G (powers of 1024, also as KiB,
 * MB, ...) or B. strtoull alone would take " -1" as 2^64-1, no limit at
 * all, since it skips blanks and wraps a minus sign. */
static int parse_size(const char *s, uint64_t *out) {
  if (*s < '0' || *s > '9') return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno) return -1;
  uint64_t mul = 1;
  if (*end == 'k' || *end == 'K') mul = 1024, end++;
  else if (*end == 'm' || *end == 'M') mul = 1024 * 1024, end++;
  else if (*end == 'g' || *end == 'G') mul = 1024ull * 1024 * 1024, end++;
  if (mul > 1 && *end == 'i') end++;
  if (*end == 'B') end++;
  if (*end) return -1;
  if (v > UINT64_MAX / mul) return -1;
  *out = v * mul;
  return 0;
}

enum {
  OPT_DB = 256, OPT_OUTPUT, OPT_QUIET, OPT_JOBS, OPT_MAX_INPUT, OPT_MAX_REPORT, OPT_MAX_RATIO,
  OPT_MAX_ZIP, OPT_MAX_NEST, OPT_MAX_DEPTH, OPT_MAX_FIELD, OPT_MAX_RECORDS, OPT_MAX_FUTURE,
  OPT_HELP,
  OPT_NO_AGG
};

static const struct option opts[] = {
  {"db", required_argument, NULL, OPT_DB},
  {"output", required_argument, NULL, OPT_OUTPUT},
  {"quiet", no_argument, NULL, OPT_QUIET},
  {"jobs", required_argument, NULL, OPT_JOBS},
  {"max-input-size", required_argument, NULL, OPT_MAX_INPUT},
  {"max-report-size", required_argument, NULL, OPT_MAX_REPORT},
  {"max-ratio", required_argument, NULL, OPT_MAX_RATIO},
  {"max-zip-entries", required_argument, NULL, OPT_MAX_ZIP},
  {"max-nesting", required_argument, NULL, OPT_MAX_NEST},
  {"max-xml-depth", required_argument, NULL, OPT_MAX_DEPTH},
  {"max-field-len", required_argument, NULL, OPT_MAX_FIELD},
  {"max-records", required_argument, NULL, OPT_MAX_RECORDS},
  {"max-future-days", required_argument, NULL, OPT_MAX_FUTURE},
  DP_IMAP_LONG_OPTIONS,
  {"no-aggregate", no_argument, NULL, OPT_NO_AGG},
  {"help", no_argument, NULL, OPT_HELP},
  {NULL, 0, NULL, 0},
};

/* Apply one numeric setting (from the command line, or from the config file
 * when from names it). 0, or 2 after printing why. */
static int set_limit(dp_pipeline_opts_t *o, int code, const char *arg, const char *from) {
  uint64_t v = 0;
  const char *name = "";
  for (const struct option *op = opts; op->name; op++)
    if (op->val == code) name = op->name;
  /* The XML depth sizes the parser's element stack, and libxml2 itself
   * stops at 256 levels: a depth of 0 or beyond 255 (the parser adds one for
   * its wrapper element) could only refuse every report. */
  if (parse_size(arg, &v) || (code == OPT_JOBS && (v < 1 || v > 1024)) ||
      (code == OPT_MAX_DEPTH && (v < 1 || v > DP_MAX_XML_DEPTH))) {
    fprintf(stderr, "dmarcpipe ingest: %s%sinvalid value '%s' for %s%s\n", from ? from : "",
            from ? ": " : "", arg, from ? "" : "--", name);
    return 2;
  }
  uint32_t v32 = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
  switch (code) {
  case OPT_JOBS: o->max_in_flight = (size_t)v; break;
  case OPT_MAX_INPUT: o->limits.max_input_size = v; break;
  case OPT_MAX_REPORT: o->limits.max_report_size = v; break;
  case OPT_MAX_RATIO: o->limits.max_ratio = v; break;
  case OPT_MAX_ZIP: o->limits.max_zip_entries = v32; break;
  case OPT_MAX_NEST: o->limits.max_nesting = v32; break;
  case OPT_MAX_DEPTH: o->limits.max_xml_depth = v32; break;
  case OPT_MAX_FIELD: o->limits.max_field_len = v32; break;
  case OPT_MAX_RECORDS: o->limits.max_records = v; break;
  case OPT_MAX_FUTURE: o->limits.max_future_days = v32; break;
  default: break;
  }
  return 0;
}

int dp__ingest_apply_config(dp_pipeline_opts_t *o) {
  for (const struct option *op = opts; op->name; op++) {
    if (op->val < OPT_JOBS || op->val > OPT_MAX_FUTURE) continue;
    const char *v = dp_config_get(op->name);
    if (v && set_limit(o, op->val, v, dp_config_path())) return 2;
  }
  return 0;
}

/* Fold the reports just stored into the aggregates the queries read, so the
 * first query after an ingest does not pay for it. 0, or -1 after saying why
 * (the reports stay stored and pending). */
static int catch_up(const char *conninfo, bool quiet) {
  char err[1024];
  dp_agg_stats_t st;
  /* The load's connections have just closed, but their backends leave the
   * server a moment later: under a connection limit the slot they held may
   * not be free yet, so a refused connection is tried again for 1.5 s. */
  int rc = dp_agg_catch_up_at(conninfo, 1500, &st, err, sizeof err);
  if (rc) {
    fprintf(stderr, "dmarcpipe: aggregating: %s (the reports are stored; run `dmarcpipe db aggregate`)\n",
            err);
    return -1;
  }
  if (!quiet)
    fprintf(stderr,
            "dmarcpipe: aggregates caught up: %" PRId64 " reports (%" PRId64
            " records) in %.2f s by %d aggregator%s\n",
            st.reports, st.records, st.seconds, st.aggregators, st.aggregators == 1 ? "" : "s");
  return 0;
}

int dp_ingest_cmd(int argc, char **argv) {
  dp_pipeline_opts_t o;
  dp_pipeline_opts_default(&o);
  const char *db = NULL;
  bool aggregate = true;
  dp_imap_opts_t io;
  if (dp__imap_opts_default(&io)) return 2;
  /* the config file first, so that options on the command line win */
  if (dp__ingest_apply_config(&o)) return 2;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
    if (c >= OPT_JOBS && c <= OPT_MAX_FUTURE) {
      if (set_limit(&o, c, optarg, NULL)) return 2;
      continue;
    }
    if (c >= DP_IMAP_OPT_PASSWORD_FILE && c <= DP_IMAP_OPT_INSECURE) {
      if (dp__imap_setopt(&io, c, optarg)) return 2;
      continue;
    }
    switch (c) {
    case OPT_DB: db = optarg; break;
    case OPT_OUTPUT:
      if (!strcmp(optarg, "pg")) o.sink = DP_SINK_PG;
      else if (!strcmp(optarg, "null")) o.sink = DP_SINK_NULL;
      else if (!strcmp(optarg, "jsonl")) o.sink = DP_SINK_JSONL;
      else {
        fprintf(stderr, "dmarcpipe ingest: --output must be pg, null or jsonl\n");
        return 2;
      }
      break;
    case 'q':
    case OPT_QUIET: o.quiet = true; break;
    case OPT_NO_AGG: aggregate = false; break;
    case 'h':
    case OPT_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "dmarcpipe ingest: no input given\n");
    usage(stderr);
    return 2;
  }
  int stdin_args = 0;
  for (int i = optind; i < argc; i++) {
    if (dp__imap_is_url(argv[i]) && argc - optind != 1) {
      fprintf(stderr, "dmarcpipe ingest: an IMAP URL must be the only input\n");
      return 2;
    }
    stdin_args += !strcmp(argv[i], "-");
  }
  if (stdin_args > 1) { /* the second would read an empty, spent stdin */
    fprintf(stderr, "dmarcpipe ingest: standard input ('-') can be given once\n");
    return 2;
  }
  io.url = dp__imap_is_url(argv[optind]) ? argv[optind] : NULL;
  if (dp_align_global_init()) {
    fprintf(stderr, "dmarcpipe: cannot load the Public Suffix List (package publicsuffix)\n");
    return 2;
  }
  char *conninfo = NULL;
  if (o.sink == DP_SINK_PG) {
    char err[1024];
    if (dp_store_select(db, &conninfo, err, sizeof err)) {
      fprintf(stderr, "dmarcpipe: %s\n", err);
      dp_align_global_cleanup();
      return 2;
    }
    o.conninfo = conninfo;
  }
  o.progress = !o.quiet && isatty(2);
  dp_pipeline_stats_t st;
  int rc = io.url ? dp__imap_run(&io, &o, &st)
                   : dp_pipeline_run(&o, argv + optind, (size_t)(argc - optind), &st);
  if (!o.quiet && rc != 2) {
    fprintf(stderr,
            "dmarcpipe: %" PRIu64 " inputs: %" PRIu64 " reports stored (%" PRIu64 " records, %" PRIu64
            " messages), %" PRIu64 " already stored, %" PRIu64 " refused",
            st.inputs, st.reports_new, st.records, st.messages, st.reports_dup,
            st.reports_refused + st.inputs_refused);
    if (st.skipped_messages)
      fprintf(stderr, ", %" PRIu64 " message%s without a report skipped", st.skipped_messages,
              st.skipped_messages == 1 ? "" : "s");
    fprintf(stderr, "%s\n",
            o.sink == DP_SINK_NULL    ? " (--output null: nothing stored)"
            : o.sink == DP_SINK_JSONL ? " (--output jsonl: written to stdout, not stored)"
                                      : "");
  }
  if (rc != 2 && o.sink == DP_SINK_PG && aggregate && catch_up(conninfo, o.quiet)) rc = 2;
  free(conninfo);
  dp_align_global_cleanup();
  return rc;
}
