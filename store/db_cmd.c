/* SPDX-License-Identifier: MIT */
/* store/db_cmd.c - `dmarcpipe db init|migrate|status|start|stop|conninfo`:
 * schema management and the embedded cluster's life cycle from the command
 * line. Exit status 0 ok, 1 failed, 2 usage. */
#include "store/store.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void db_usage(FILE *f) {
  fprintf(f,
          "usage: dmarcpipe db <action> [--db CONNINFO|URI]\n"
          "\n"
          "actions:\n"
          "  init      create and start the embedded cluster if needed, apply the schema\n"
          "  migrate   apply pending schema migrations\n"
          "  status    embedded cluster state, schema version, stored counts\n"
          "  start     start the embedded cluster (created on first use)\n"
          "  stop      stop the embedded cluster (fast shutdown)\n"
          "  conninfo  print the connection string the other commands use\n"
          "  aggregate fold the reports stored since the last catch-up into the aggregates\n"
          "            the queries read (ingest and every query do it too)\n"
          "\n"
          "options:\n"
          "  --db DSN  use this PostgreSQL (libpq connection string or URI) instead of\n"
          "            the PG* environment or the embedded cluster\n"
          "  -h, --help\n"
          "\n"
          "The embedded cluster lives in $DMARCPIPE_HOME (default $XDG_DATA_HOME/dmarcpipe,\n"
          "or /var/lib/dmarcpipe as root) and listens on a Unix socket only.\n");
}

/* Schema version recorded in the database, -1 when unreadable, 0 for none. */
static int stored_version(PGconn *c) {
  char err[256];
  return dp__store_db_version(c, err, sizeof err);
}

/* Connect without migrating (status must not change anything). */
static PGconn *connect_plain(const char *conninfo, char *err, size_t errlen) {
  const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
  const char *vals[] = {"10", "dmarcpipe", conninfo, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) != CONNECTION_OK) {
    dp__store_errline(err, errlen, "cannot connect to PostgreSQL: ", c ? PQerrorMessage(c) : "");
    PQfinish(c);
    return NULL;
  }
  return c;
}

static int cmd_status(const char *db_opt) {
  char err[1024], line[1200];
  char *conninfo = NULL;
  bool embedded = !db_opt && !dp__store_pg_env_set();
  if (embedded) {
    char *home = dp_embed_home();
    if (!home) {
      fprintf(stderr, "dmarcpipe db: cannot find a home directory; set DMARCPIPE_HOME\n");
      return 1;
    }
    int st = dp_embed_status(home, line, sizeof line);
    printf("embedded cluster: %s\nhome: %s\n", st < 0 ? dp_strerror(st) : line, home);
    conninfo = st == 0 ? dp_embed_conninfo(home) : NULL;
    free(home);
    if (!conninfo) return 1;
  } else {
    printf("database: %s\n", db_opt ? db_opt : "from the PG* environment");
    conninfo = strdup(db_opt ? db_opt : "");
    if (!conninfo) return 1;
  }
  PGconn *c = connect_plain(conninfo, err, sizeof err);
  free(conninfo);
  if (!c) {
    printf("reachable: no (%s)\n", err);
    return 1;
  }
  int v = stored_version(c);
  printf("server: PostgreSQL %d.%d\n", PQserverVersion(c) / 10000, PQserverVersion(c) % 10000);
  printf("schema version: %d (this dmarcpipe: %d)\n", v < 0 ? 0 : v, dp_store_schema_version());
  if (v > 0) {
    PGresult *res = PQexec(c, "SELECT (SELECT count(*) FROM report), (SELECT count(*) FROM record), "
                              "(SELECT count(*) FROM ingest_error)");
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
      printf("reports: %s\nrecords: %s\nerrors: %s\n", PQgetvalue(res, 0, 0),
             PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
    } else {
      dp__store_errline(err, sizeof err, "", PQresultErrorMessage(res));
      printf("counts: unavailable (%s)\n", err);
    }
    PQclear(res);
    if (v >= 3) { /* aggregates came with migration 0003 */
      int64_t pend = dp_agg_pending(c, err, sizeof err);
      if (pend >= 0)
        printf("reports waiting for aggregation: %lld\n", (long long)pend);
      else
        printf("reports waiting for aggregation: unavailable (%s)\n", err);
    }
  }
  if (v >= 0 && v < dp_store_schema_version())
    printf("upgrade: `dmarcpipe db migrate` (or any ingest or query) brings the schema to %d\n",
           dp_store_schema_version());
  PQfinish(c);
  return 0;
}

/* init and migrate: pick (and start) the database, migrate, report versions. */
static int cmd_migrate(const char *db_opt, bool init) {
  char err[1024];
  char *conninfo = NULL;
  if (dp_store_select(db_opt, &conninfo, err, sizeof err)) {
    fprintf(stderr, "dmarcpipe db: %s\n", err);
    return 1;
  }
  PGconn *c = connect_plain(conninfo, err, sizeof err);
  int before = c ? stored_version(c) : -1;
  if (c) PQfinish(c);
  c = dp_store_connect(conninfo, err, sizeof err);
  free(conninfo);
  if (!c) {
    fprintf(stderr, "dmarcpipe db: %s\n", err);
    return 1;
  }
  int after = stored_version(c);
  PQfinish(c);
  if (before >= 0 && after > before)
    printf("schema migrated from version %d to %d\n", before, after);
  else
    printf("schema up to date at version %d%s\n", after, init ? "; database ready" : "");
  return 0;
}

static int cmd_aggregate(const char *db_opt) {
  char err[1024];
  char *conninfo = NULL;
  if (dp_store_select(db_opt, &conninfo, err, sizeof err)) {
    fprintf(stderr, "dmarcpipe db: %s\n", err);
    return 1;
  }
  dp_agg_stats_t st;
  int rc = dp_agg_catch_up_at(conninfo, 0, &st, err, sizeof err);
  free(conninfo);
  if (rc) {
    fprintf(stderr, "dmarcpipe db: aggregating: %s\n", err);
    return 1;
  }
  printf("aggregated %lld reports (%lld records) in %lld transactions by %d aggregator%s, %.2f s",
         (long long)st.reports, (long long)st.records, (long long)st.batches, st.aggregators,
         st.aggregators == 1 ? "" : "s", st.seconds);
  /* half B of reports whose half A was folded before (another process, or a
   * run that stopped between the halves) */
  if (st.half_reports[1] > st.half_reports[0])
    printf("; and the second half of %lld more, whose first another run folded",
           (long long)(st.half_reports[1] - st.half_reports[0]));
  printf("\n");
  return 0;
}

static int cmd_conninfo(const char *db_opt) {
  if (db_opt || dp__store_pg_env_set()) {
    printf("%s\n", db_opt ? db_opt : "");
    return 0;
  }
  char *home = dp_embed_home();
  char *ci = home ? dp_embed_conninfo(home) : NULL;
  free(home);
  if (!ci) {
    fprintf(stderr, "dmarcpipe db: cannot find a home directory; set DMARCPIPE_HOME\n");
    return 1;
  }
  printf("%s\n", ci);
  free(ci);
  return 0;
}

static int cmd_startstop(bool start) {
  char err[1024];
  char *home = dp_embed_home();
  if (!home) {
    fprintf(stderr, "dmarcpipe db: cannot find a home directory; set DMARCPIPE_HOME\n");
    return 1;
  }
  int rc;
  if (start) {
    char *ci = NULL;
    rc = dp_embed_start(home, &ci, err, sizeof err);
    if (!rc) printf("embedded cluster running in %s\nconninfo: %s\n", home, ci);
    free(ci);
  } else {
    rc = dp_embed_stop(home, err, sizeof err);
    if (!rc) printf("embedded cluster in %s stopped\n", home);
  }
  free(home);
  if (rc) fprintf(stderr, "dmarcpipe db: %s\n", err);
  return rc ? 1 : 0;
}

/** `dmarcpipe db ...`; argv[0] is "db". Returns the process exit status. */
int dp_db_cmd(int argc, char **argv) {
  const char *action = NULL, *db_opt = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      db_usage(stdout);
      return 0;
    } else if (!strcmp(a, "--db")) {
      if (++i >= argc) {
        fprintf(stderr, "dmarcpipe db: --db needs a value\n");
        return 2;
      }
      db_opt = argv[i];
    } else if (!strncmp(a, "--db=", 5)) {
      db_opt = a + 5;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "dmarcpipe db: unknown option '%s'\n", a);
      db_usage(stderr);
      return 2;
    } else if (!action) {
      action = a;
    } else {
      fprintf(stderr, "dmarcpipe db: unexpected argument '%s'\n", a);
      return 2;
    }
  }
  if (!action) {
    db_usage(stderr);
    return 2;
  }
  bool startstop = !strcmp(action, "start") || !strcmp(action, "stop");
  if (startstop && db_opt) {
    fprintf(stderr, "dmarcpipe db: '%s' manages the embedded cluster; it takes no --db\n", action);
    return 2;
  }
  if (!strcmp(action, "init")) return cmd_migrate(db_opt, true);
  if (!strcmp(action, "migrate")) return cmd_migrate(db_opt, false);
  if (!strcmp(action, "status")) return cmd_status(db_opt);
  if (!strcmp(action, "start")) return cmd_startstop(true);
  if (!strcmp(action, "stop")) return cmd_startstop(false);
  if (!strcmp(action, "conninfo")) return cmd_conninfo(db_opt);
  if (!strcmp(action, "aggregate")) return cmd_aggregate(db_opt);
  fprintf(stderr, "dmarcpipe db: unknown action '%s'\n", action);
  db_usage(stderr);
  return 2;
}
