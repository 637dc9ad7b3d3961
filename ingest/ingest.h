/* SPDX-License-Identifier: MIT */
/* ingest/ingest.h - the ingest command: sources (files, directories, stdin),
 * unpacking, and the libuv pipeline that parses reports in the thread pool and
 * feeds them to a sink (PostgreSQL, JSON lines, or nothing). */
#ifndef DP_INGEST_H
#define DP_INGEST_H

/** `dmarcpipe ingest [--db DSN] [--quiet] [limits...] PATH...|-`; argv[0] is
 *  "ingest". Returns the exit status: 0 all inputs loaded, 1 some refused,
 *  2 usage or fatal error. */
int dp_ingest_cmd(int argc, char **argv);

/** `dmarcpipe watch [--db DSN] [--done DIR] [--rejected DIR] [--settle S]
 *  [--rescan S] DIR`: load report files appearing in DIR until SIGINT/SIGTERM.
 *  Returns the exit status (0 after a clean stop, 2 usage or fatal error). */
int dp_watch_cmd(int argc, char **argv);

#endif
