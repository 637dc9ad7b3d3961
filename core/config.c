/* SPDX-License-Identifier: MIT */
/* core/config.c - the configuration file: "key = value" lines holding the
 * same settings as the long command-line options (db, limits, ...), so that a
 * service can run without arguments. Command-line options win over it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Keys a config file may set; anything else is a typo worth an error. */
static const char *const known_keys[] = {
    "db", "jobs", "max-input-size", "max-report-size", "max-ratio", "max-zip-entries",
    "max-nesting", "max-xml-depth", "max-field-len", "max-records", "max-future-days",
    "services",
    "imap-password-file", "imap-oauth2-token-file", "imap-oauth2-token-cmd", "imap-archive",
    "imap-rejected", "imap-nonreport", "imap-poll", "insecure-imap", NULL,
};

struct entry {
  char *key, *value;
};
static struct entry *entries;
static size_t n_entries;
static char *loaded_path;

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    s[--n] = '\0';
  return s;
}

static bool known(const char *key) {
  for (size_t i = 0; known_keys[i]; i++)
    if (!strcmp(known_keys[i], key)) return true;
  return false;
}

static int set(const char *key, const char *value) {
  for (size_t i = 0; i < n_entries; i++)
    if (!strcmp(entries[i].key, key)) {
      char *v = strdup(value);
      if (!v) return DP_ENOMEM;
      free(entries[i].value);
      entries[i].value = v;
      return 0;
    }
  struct entry *e = realloc(entries, (n_entries + 1) * sizeof *e);
  if (!e) return DP_ENOMEM;
  entries = e;
  e[n_entries].key = strdup(key);
  e[n_entries].value = strdup(value);
  if (!e[n_entries].key || !e[n_entries].value) {
    free(e[n_entries].key);
    free(e[n_entries].value);
    return DP_ENOMEM;
  }
  n_entries++;
  return 0;
}

char *dp_config_default_path(void) {
  const char *env = getenv("DMARCPIPE_CONFIG");
  if (env && *env) return strdup(env);
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  char buf[4096];
  if (xdg && *xdg)
    snprintf(buf, sizeof buf, "%s/dmarcpipe/config", xdg);
  else if (home && *home)
    snprintf(buf, sizeof buf, "%s/.config/dmarcpipe/config", home);
  else
    return NULL;
  return strdup(buf);
}

int dp_config_load(const char *path, char *err, size_t errlen) {
  bool explicit_path = path != NULL;
  char *p = explicit_path ? strdup(path) : dp_config_default_path();
  if (!p) return explicit_path ? DP_ENOMEM : 0;
  FILE *f = fopen(p, "r");
  if (!f) {
    int e = errno;
    /* a missing default file just means no config; a named one must exist */
    if (!explicit_path && e == ENOENT && !getenv("DMARCPIPE_CONFIG")) {
      free(p);
      return 0;
    }
    snprintf(err, errlen, "%s: cannot read the config file: %s", p, strerror(e));
    free(p);
    return DP_EUSAGE;
  }
  char line[8192];
  unsigned lineno = 0;
  int rc = 0;
  while (!rc && fgets(line, sizeof line, f)) {
    lineno++;
    if (!strchr(line, '\n') && !feof(f)) {
      snprintf(err, errlen, "%s:%u: line too long", p, lineno);
      rc = DP_EUSAGE;
      break;
    }
    char *s = trim(line);
    if (!*s || *s == '#' || *s == ';') continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "%s:%u: expected 'key = value'", p, lineno);
      rc = DP_EUSAGE;
      break;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    size_t vn = strlen(value);
    if (vn >= 2 && ((value[0] == '"' && value[vn - 1] == '"') ||
                    (value[0] == '\'' && value[vn - 1] == '\''))) {
      value[vn - 1] = '\0';
      value++;
    }
    if (!known(key)) {
      snprintf(err, errlen, "%s:%u: unknown setting '%s'", p, lineno, key);
      rc = DP_EUSAGE;
      break;
    }
    rc = set(key, value);
    if (rc) snprintf(err, errlen, "%s: %s", p, dp_strerror(rc));
  }
  /* fopen takes a directory; its read fails (EISDIR), which fgets reports
   * as the end of the file: running with no settings at all */
  if (!rc && ferror(f)) {
    snprintf(err, errlen, "%s: cannot read the config file: %s", p, strerror(errno));
    rc = DP_EUSAGE;
  }
  fclose(f);
  if (rc) {
    free(p);
    dp_config_free();
    return rc;
  }
  free(loaded_path);
  loaded_path = p;
  return 0;
}

const char *dp_config_get(const char *key) {
  for (size_t i = 0; i < n_entries; i++)
    if (!strcmp(entries[i].key, key)) return entries[i].value;
  return NULL;
}

const char *dp_config_path(void) { return loaded_path; }

void dp_config_free(void) {
  for (size_t i = 0; i < n_entries; i++) {
    free(entries[i].key);
    free(entries[i].value);
  }
  free(entries);
  entries = NULL;
  n_entries = 0;
  free(loaded_path);
  loaded_path = NULL;
}
