/* SPDX-License-Identifier: MIT */
/* cli/main.c - the dmarcpipe binary: git-style subcommand dispatch and help.
 * Every subcommand parses its own options and lives in its module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/core.h"
#include "ingest/ingest.h"
#include "query/query.h"
#include "store/store.h"

struct command {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *help;
};

static const struct command commands[] = {
  {"ingest", dp_ingest_cmd, "load report files, directories, mail messages or stdin (-)"},
  {"watch", dp_watch_cmd, "keep loading report files that appear in a directory, until stopped"},
  {"reports", dp_reports_cmd, "list stored reports"},
  {"senders", dp_senders_cmd, "senders of a domain's mail and their SPF/DKIM alignment"},
  {"readiness", dp_readiness_cmd, "is a domain ready for p=reject: what would be rejected, what to fix"},
  {"domains", dp_domains_cmd, "policy domains seen: volume, pass rate, published policy and changes"},
  {"report", dp_report_cmd, "one self-contained HTML report of a domain: verdict, charts, fixes"},
  {"errors", dp_errors_cmd, "inputs and reports that were refused, and why"},
  {"db", dp_db_cmd, "init|migrate|status|start|stop the database / embedded cluster"},
  {"sample", dp_sample_cmd, "generate a deterministic set of realistic sample reports"},
  {"bench", dp_bench_cmd, "time each stage against the bare libxml2/zlib/COPY ceilings"},
};

static int run(int argc, char **argv);

static void usage(FILE *f) {
  fprintf(f, "usage: dmarcpipe [--config FILE] <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\nRun 'dmarcpipe <command> --help' for a command's options.\n"
             "Database: --db CONNINFO|URI, else libpq's PG* environment, else an embedded\n"
             "cluster under $DMARCPIPE_HOME (created and started on first use).\n"
             "Config file (key = value; keys are long option names such as db, jobs,\n"
             "max-report-size): --config FILE, else $DMARCPIPE_CONFIG, else\n"
             "$XDG_CONFIG_HOME/dmarcpipe/config; options on the command line win.\n");
}

int main(int argc, char **argv) {
  /* libzip converts every zip entry's DOS time with mktime(), and glibc
   * re-checks /etc/localtime (a stat) on each call while TZ is unset. Naming
   * the same file explicitly is the same zone and the same behaviour for this
   * process and its children (initdb, pg_ctl), loaded once. Set before any
   * thread starts: setenv is not thread-safe. */
  if (!getenv("TZ")) setenv("TZ", ":/etc/localtime", 0);
  /* global options come before the command */
  const char *config = NULL;
  while (argc >= 3 && !strcmp(argv[1], "--config")) {
    config = argv[2];
    argv[2] = argv[0];
    argv += 2;
    argc -= 2;
  }
  if (argc >= 2 && !strncmp(argv[1], "--config=", 9)) {
    config = argv[1] + 9;
    argv[1] = argv[0];
    argv++;
    argc--;
  }
  char err[1024];
  if (dp_config_load(config, err, sizeof err)) {
    fprintf(stderr, "dmarcpipe: %s\n", err);
    return 2;
  }
  int rc = run(argc, argv);
  dp_config_free();
  return rc;
}

static int run(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("dmarcpipe 0.1.0\n");
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "dmarcpipe: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
