/* SPDX-License-Identifier: MIT */
/* ingest/src_imap_int.h - the IMAP/IMAPS source (libcurl): reads the messages
 * of one mailbox folder into the ingest pipeline and moves each to an archive
 * folder only after its reports are committed. Used by `ingest` and `watch`
 * with an imap:// or imaps:// argument. Internal to ingest/. */
#ifndef DP_SRC_IMAP_INT_H
#define DP_SRC_IMAP_INT_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "pipeline_int.h"

/** Settings of the IMAP source; strings are borrowed (argv, config file). */
typedef struct dp_imap_opts {
  const char *url;               /* imap[s]://user@host[:port]/Folder */
  const char *password_file;     /* first line is the password */
  const char *oauth2_token_file; /* first line is the bearer token (SASL XOAUTH2) */
  const char *oauth2_token_cmd;  /* run with /bin/sh -c; first line of stdout is the token */
  const char *archive;           /* where committed messages go; "" = leave them */
  const char *rejected;          /* where messages with a refusal go; NULL = archive */
  const char *nonreport;         /* where messages without a report go; NULL/"" = leave */
  bool insecure;                 /* allow plaintext imap:// to a host not on loopback */
  bool watch;                    /* IDLE or poll until SIGINT/SIGTERM, not one pass */
  uint64_t poll_ms;              /* watch: time between two looks (x5 with IDLE) */
} dp_imap_opts_t;

/* Long option codes for the commands' getopt tables (above theirs). */
enum {
  DP_IMAP_OPT_PASSWORD_FILE = 1000, DP_IMAP_OPT_TOKEN_FILE, DP_IMAP_OPT_TOKEN_CMD,
  DP_IMAP_OPT_ARCHIVE, DP_IMAP_OPT_REJECTED, DP_IMAP_OPT_NONREPORT, DP_IMAP_OPT_POLL,
  DP_IMAP_OPT_INSECURE
};

/* The IMAP long options, to splice into a command's struct option table. */
#define DP_IMAP_LONG_OPTIONS                                                      \
  {"imap-password-file", required_argument, NULL, DP_IMAP_OPT_PASSWORD_FILE},    \
  {"imap-oauth2-token-file", required_argument, NULL, DP_IMAP_OPT_TOKEN_FILE},   \
  {"imap-oauth2-token-cmd", required_argument, NULL, DP_IMAP_OPT_TOKEN_CMD},     \
  {"imap-archive", required_argument, NULL, DP_IMAP_OPT_ARCHIVE},                \
  {"imap-rejected", required_argument, NULL, DP_IMAP_OPT_REJECTED},              \
  {"imap-nonreport", required_argument, NULL, DP_IMAP_OPT_NONREPORT},            \
  {"imap-poll", required_argument, NULL, DP_IMAP_OPT_POLL},                      \
  {"insecure-imap", no_argument, NULL, DP_IMAP_OPT_INSECURE}

/* Help text for the IMAP options, for the commands' usage(). */
#define DP_IMAP_USAGE                                                                      \
  "IMAP (PATH/DIR = imaps://user@host[:port]/Folder; password from\n"                      \
  "$DMARCPIPE_IMAP_PASSWORD or a file, never on the command line):\n"                      \
  "  --imap-password-file F       the password is the first line of F\n"                   \
  "  --imap-oauth2-token-file F   log in with SASL XOAUTH2, bearer token from F\n"         \
  "  --imap-oauth2-token-cmd CMD  ... or from the first line CMD (/bin/sh) prints\n"       \
  "  --imap-archive FOLDER        committed messages go there (default Archive/DMARC;\n"   \
  "                               '' leaves them in place)\n"                              \
  "  --imap-rejected FOLDER       messages with a refused report (default: the archive)\n" \
  "  --imap-nonreport FOLDER      messages without a report (default: leave them)\n"       \
  "  --imap-poll SECONDS          watch: look for new mail this often (default 60;\n"      \
  "                               5x as long while the server's IDLE reports it)\n"        \
  "  --insecure-imap              allow imap:// without TLS to a host not on loopback\n"

/** Fill *o with defaults (archive Archive/DMARC, poll 60 s), then apply the
 *  config file's imap-* settings. 0, or 2 after printing what is invalid. */
int dp__imap_opts_default(dp_imap_opts_t *o);
/** Apply one IMAP option (code DP_IMAP_OPT_*) from the command line.
 *  0, or 2 after printing what is invalid. */
int dp__imap_setopt(dp_imap_opts_t *o, int code, const char *arg);
/** true when arg is an imap:// or imaps:// URL. */
bool dp__imap_is_url(const char *arg);

/** Read the mailbox named by io->url through the pipeline configured by po
 *  (limits, sink, conninfo already chosen): one pass, or (io->watch) until
 *  SIGINT/SIGTERM. Fills *stats. Returns the exit status: 0 all loaded, 1
 *  something refused, 2 a fatal error (already printed to po->err). */
int dp__imap_run(const dp_imap_opts_t *io, const dp_pipeline_opts_t *po,
                 dp_pipeline_stats_t *stats);

/** `dmarcpipe watch imaps://...`: selects the database (db: --db or NULL),
 *  applies the config file, runs dp__imap_run until stopped and prints a
 *  summary unless quiet. Returns the exit status. */
int dp__imap_watch_cmd(dp_imap_opts_t *io, const char *db, bool quiet);

#endif
