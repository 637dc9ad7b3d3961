/* SPDX-License-Identifier: MIT */
/* store/db_select.c - which database a command talks to (--db, libpq's PG*
 * environment, else the embedded cluster) and the blocking connect that also
 * brings the schema up to date. Plus the small helpers shared inside store/. */
#include "store/store.h"
#include "store/store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dp__store_errline(char *err, size_t errlen, const char *prefix, const char *msg) {
  if (!err || !errlen) return;
  if (!msg) msg = "";
  /* libpq messages start with "ERROR:  " or "FATAL:  " and end with a newline;
   * only the first line carries the reason. */
  while (*msg == ' ' || *msg == '\n' || *msg == '\r' || *msg == '\t') msg++;
  size_t n = strcspn(msg, "\r\n");
  while (n && (msg[n - 1] == ' ' || msg[n - 1] == '\t')) n--;
  snprintf(err, errlen, "%s%.*s", prefix ? prefix : "", (int)(n > 4000 ? 4000 : n), msg);
  /* "prefix: " with nothing after it reads better without the colon. */
  size_t l = strlen(err);
  if (!n && l >= 2 && err[l - 2] == ':' && err[l - 1] == ' ') err[l - 2] = '\0';
}

bool dp__store_pg_env_set(void) {
  static const char *const vars[] = {"PGHOST",     "PGHOSTADDR", "PGPORT",
                                     "PGDATABASE", "PGUSER",     "PGSERVICE"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return true;
  }
  return false;
}

int dp__store_conninfo_value(struct dp_buf *out, const char *value) {
  int rc = dp_buf_putc(out, '\'');
  for (const char *p = value; !rc && *p; p++) {
    if (*p == '\'' || *p == '\\') rc = dp_buf_putc(out, '\\');
    if (!rc) rc = dp_buf_putc(out, *p);
  }
  return rc ? rc : dp_buf_putc(out, '\'');
}

/** Pick the database (see store.h); *conninfo: caller owns; free(). */
int dp_store_select(const char *db_opt, char **conninfo, char *err, size_t errlen) {
  *conninfo = NULL;
  /* the config file's db is a saved --db: it comes before the environment */
  if (!db_opt) db_opt = dp_config_get("db");
  if (db_opt || dp__store_pg_env_set()) {
    *conninfo = strdup(db_opt ? db_opt : "");
    if (!*conninfo) {
      snprintf(err, errlen, "out of memory");
      return DP_ENOMEM;
    }
    return 0;
  }
  char *home = dp_embed_home();
  if (!home) {
    snprintf(err, errlen, "cannot find a home directory for the embedded cluster; set DMARCPIPE_HOME or --db");
    return DP_EEMBED;
  }
  int rc = dp_embed_start(home, conninfo, err, errlen);
  free(home);
  return rc;
}

/** Connect (blocking) and migrate; caller owns result (PQfinish); NULL + err on failure. */
PGconn *dp_store_connect(const char *conninfo, char *err, size_t errlen) {
  /* Defaults first so that the user's conninfo (expanded from dbname) wins;
   * client_encoding last: every string dmarcpipe sends is UTF-8. */
  const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname",
                        "client_encoding", NULL};
  const char *vals[] = {"10", "dmarcpipe", conninfo ? conninfo : "", "UTF8", NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (!c) {
    snprintf(err, errlen, "cannot connect to PostgreSQL: out of memory");
    return NULL;
  }
  if (PQstatus(c) != CONNECTION_OK) {
    dp__store_errline(err, errlen, "cannot connect to PostgreSQL: ", PQerrorMessage(c));
    PQfinish(c);
    return NULL;
  }
  char merr[512];
  if (dp_store_migrate(c, merr, sizeof merr)) {
    snprintf(err, errlen, "schema migration failed: %s", merr);
    PQfinish(c);
    return NULL;
  }
  return c;
}
