/* SPDX-License-Identifier: MIT */
/* query/services.c - the known-services map: which sending service a DKIM,
 * SPF or sender domain belongs to, and how to align that service with the
 * analysed domain. Built from data/services.tsv (compiled in by CMake) and
 * the user's services.tsv, which adds patterns or overrides shipped ones. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "query/query_int.h"

/* generated/services_data.c (CMake): data/services.tsv as bytes. */
extern const unsigned char dp_services_tsv[];
extern const size_t dp_services_tsv_len;

/* A user's file is read whole; more than this is not a services list. */
#define SERVICES_FILE_MAX (4u << 20)
/* A pattern is a domain name: at most 253 bytes. */
#define PATTERN_MAX 253

struct dp_services {
  dp_service_t *v;
  size_t n, alloc;
};

dp_services_t *dp__query_services_create(void) {
  return calloc(1, sizeof(dp_services_t));
}

static void entry_free(dp_service_t *e) {
  free(e->pattern);
  free(e->name);
  free(e->kind);
  free(e->dkim);
  free(e->return_path);
  free(e->spf);
}

void dp__query_services_destroy(dp_services_t *m) {
  if (!m) return;
  for (size_t i = 0; i < m->n; i++)
    entry_free(&m->v[i]);
  free(m->v);
  free(m);
}

size_t dp__query_services_count(const dp_services_t *m) {
  return m ? m->n : 0;
}

static const char *const kinds[] = {"esp",  "crm",       "helpdesk", "workspace",
                                    "list", "forwarder", NULL};

/* A pattern is lower-cased and must look like a domain name: labels of
 * letters, digits, '-' and '_' (for _spf.google.com) separated by dots. */
static bool normalise_pattern(char *p) {
  size_t n = strlen(p);
  if (n && p[n - 1] == '.') p[--n] = '\0';
  if (!n || n > PATTERN_MAX || p[0] == '.') return false;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (c >= 'A' && c <= 'Z')
      p[i] = (char)(c - 'A' + 'a');
    else if (c == '.') {
      if (p[i + 1] == '.' || p[i + 1] == '\0') return false;
    } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
      return false;
  }
  return true;
}

/* Column i of a line split at TABs: NULL for an empty column (not known). */
static char *col_dup(const char *s, bool *bad) {
  if (!*s) return NULL;
  char *d = strdup(s);
  if (!d) *bad = true;
  return d;
}

/* Add or replace one entry built from the line's columns (borrowed). */
static int add_entry(dp_services_t *m, char **cols) {
  dp_service_t e = {0};
  bool oom = false;
  e.pattern = col_dup(cols[0], &oom);
  e.name = col_dup(cols[1], &oom);
  e.kind = col_dup(cols[2], &oom);
  e.dkim = col_dup(cols[3], &oom);
  e.return_path = col_dup(cols[4], &oom);
  e.spf = col_dup(cols[5], &oom);
  if (oom) {
    entry_free(&e);
    return DP_ENOMEM;
  }
  for (size_t i = 0; i < m->n; i++)
    if (!strcmp(m->v[i].pattern, e.pattern)) {
      entry_free(&m->v[i]);
      m->v[i] = e;
      return 0;
    }
  if (m->n == m->alloc) {
    size_t na = m->alloc ? m->alloc * 2 : 64;
    dp_service_t *v = realloc(m->v, na * sizeof *v);
    if (!v) {
      entry_free(&e);
      return DP_ENOMEM;
    }
    m->v = v;
    m->alloc = na;
  }
  m->v[m->n++] = e;
  return 0;
}

/* Parse one line (NUL-terminated, no newline, modified in place). */
static int add_line(dp_services_t *m, char *line, const char *origin, size_t lineno, char *err,
                    size_t errlen) {
  size_t n = strlen(line);
  if (n && line[n - 1] == '\r') line[--n] = '\0';
  const char *t = line;
  while (*t == ' ' || *t == '\t')
    t++;
  if (!*t || *t == '#') return 0;
  char *cols[6] = {NULL};
  size_t nc = 0;
  for (char *p = line; nc < 6;) {
    cols[nc++] = p;
    if (nc == 6) break; /* a TAB left in the last column is an error below */
    char *tab = strchr(p, '\t');
    if (!tab) break;
    *tab = '\0';
    p = tab + 1;
  }
  if (nc < 3) {
    snprintf(err, errlen,
             "%s:%zu: expected TAB-separated pattern, name, kind[, dkim, "
             "return_path, spf]",
             origin, lineno);
    return DP_EUSAGE;
  }
  if (nc == 6 && strchr(cols[5], '\t')) {
    snprintf(err, errlen, "%s:%zu: more than 6 columns", origin, lineno);
    return DP_EUSAGE;
  }
  for (size_t i = nc; i < 6; i++)
    cols[i] = "";
  if (!normalise_pattern(cols[0])) {
    snprintf(err, errlen, "%s:%zu: pattern '%.64s' is not a domain name", origin, lineno, cols[0]);
    return DP_EUSAGE;
  }
  if (!*cols[1]) {
    snprintf(err, errlen, "%s:%zu: empty service name", origin, lineno);
    return DP_EUSAGE;
  }
  size_t k = 0;
  while (kinds[k] && strcmp(kinds[k], cols[2]))
    k++;
  if (!kinds[k]) {
    snprintf(err, errlen,
             "%s:%zu: kind '%.32s' is not one of esp, crm, helpdesk, workspace, list, forwarder",
             origin, lineno, cols[2]);
    return DP_EUSAGE;
  }
  int rc = add_entry(m, cols);
  if (rc) snprintf(err, errlen, "%s", dp_strerror(rc));
  return rc;
}

int dp__query_services_add_tsv(dp_services_t *m, const char *text, size_t len, const char *origin,
                               char *err, size_t errlen) {
  size_t lineno = 0;
  for (size_t off = 0; off < len;) {
    const char *nl = memchr(text + off, '\n', len - off);
    size_t ll = nl ? (size_t)(nl - (text + off)) : len - off;
    lineno++;
    if (memchr(text + off, '\0', ll)) {
      snprintf(err, errlen, "%s:%zu: NUL byte", origin, lineno);
      return DP_EUSAGE;
    }
    char *line = malloc(ll + 1);
    if (!line) {
      snprintf(err, errlen, "%s", dp_strerror(DP_ENOMEM));
      return DP_ENOMEM;
    }
    memcpy(line, text + off, ll);
    line[ll] = '\0';
    int rc = add_line(m, line, origin, lineno, err, errlen);
    free(line);
    if (rc) return rc;
    off += ll + (nl ? 1 : 0);
  }
  return 0;
}

const dp_service_t *dp__query_services_match(const dp_services_t *m, const char *domain) {
  if (!m || !domain) return NULL;
  size_t n = strlen(domain);
  if (n && domain[n - 1] == '.') n--;
  if (!n || n > PATTERN_MAX) return NULL;
  /* Try the name, then each suffix after a dot: the first hit is the longest. */
  for (size_t start = 0; start < n;) {
    size_t sl = n - start;
    for (size_t i = 0; i < m->n; i++)
      if (strlen(m->v[i].pattern) == sl && !strncasecmp(m->v[i].pattern, domain + start, sl))
        return &m->v[i];
    const char *dot = memchr(domain + start, '.', sl);
    if (!dot) break;
    start = (size_t)(dot - domain) + 1;
  }
  return NULL;
}

int dp__query_services_expand(dp_buf_t *b, const char *hint, const char *domain) {
  static const char ph[] = "{domain}";
  for (const char *p = hint; *p;) {
    const char *q = strstr(p, ph);
    size_t chunk = q ? (size_t)(q - p) : strlen(p);
    if (dp_buf_append(b, p, chunk)) return DP_ENOMEM;
    if (!q) break;
    if (dp_buf_puts(b, domain)) return DP_ENOMEM;
    p = q + sizeof ph - 1;
  }
  return 0;
}

/* ======================================================================== */
/* The process map */

static dp_services_t *process_map;

static dp_services_t *builtin(char *err, size_t errlen) {
  dp_services_t *m = dp__query_services_create();
  if (!m) {
    snprintf(err, errlen, "%s", dp_strerror(DP_ENOMEM));
    return NULL;
  }
  if (dp__query_services_add_tsv(m, (const char *)dp_services_tsv, dp_services_tsv_len,
                                 "data/services.tsv", err, errlen)) {
    dp__query_services_destroy(m);
    return NULL;
  }
  return m;
}

/* The user's file: path, the config key, else the XDG default (may be missing). */
static char *user_path(const char *path, bool *must_exist) {
  *must_exist = true;
  if (path) return strdup(path);
  const char *cfg = dp_config_get("services");
  if (cfg) return strdup(cfg);
  *must_exist = false;
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  char buf[4096];
  if (xdg && *xdg)
    snprintf(buf, sizeof buf, "%s/dmarcpipe/services.tsv", xdg);
  else if (home && *home)
    snprintf(buf, sizeof buf, "%s/.config/dmarcpipe/services.tsv", home);
  else
    return NULL;
  return strdup(buf);
}

static int add_file(dp_services_t *m, const char *path, bool must_exist, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (!must_exist && errno == ENOENT) return 0;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return DP_EUSAGE;
  }
  dp_buf_t b;
  dp_buf_init(&b, SERVICES_FILE_MAX);
  char chunk[8192];
  size_t got;
  int rc = 0;
  while (!rc && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
    rc = dp_buf_append(&b, chunk, got);
  if (!rc && ferror(f)) {
    snprintf(err, errlen, "%s: read error", path);
    rc = DP_EUSAGE;
  } else if (rc) {
    snprintf(err, errlen, "%s: %s", path, rc == DP_ELIMIT ? "larger than 4 MiB" : dp_strerror(rc));
    rc = rc == DP_ELIMIT ? DP_EUSAGE : rc;
  }
  fclose(f);
  if (!rc) rc = dp__query_services_add_tsv(m, b.data ? b.data : "", b.len, path, err, errlen);
  dp_buf_free(&b);
  return rc;
}

int dp__query_services_init(const char *path, char *err, size_t errlen) {
  dp_services_t *m = builtin(err, errlen);
  if (!m) return DP_ENOMEM;
  bool must_exist;
  char *up = user_path(path, &must_exist);
  int rc = 0;
  if (up && !*up) {
    /* "services =" in the config file: fopen("") would say only ": No such
     * file or directory" */
    if (path)
      snprintf(err, errlen, "the services file's name is empty");
    else
      snprintf(err, errlen, "%s: the setting 'services' names no file", dp_config_path());
    rc = DP_EUSAGE;
  } else if (up) {
    rc = add_file(m, up, must_exist, err, errlen);
  }
  free(up);
  if (rc) {
    dp__query_services_destroy(m);
    dp__query_services_set(NULL);
    return rc;
  }
  dp__query_services_set(m);
  return 0;
}

void dp__query_services_set(dp_services_t *m) {
  dp__query_services_destroy(process_map);
  process_map = m;
}

const dp_services_t *dp__query_services(void) {
  if (!process_map) {
    char err[256];
    process_map = builtin(err, sizeof err);
  }
  return process_map;
}
