/* SPDX-License-Identifier: MIT */
/* query/format.c - typed result sets and their three renderings: an aligned
 * table for people, RFC 4180 CSV and a JSON array of objects for machines.
 * Every string that reaches the output is repaired UTF-8: report fields come
 * from strangers, so a table never passes their control characters (terminal
 * escapes) through and JSON/CSV never carry invalid bytes. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "query/query_int.h"

struct dp_qres {
  const dp_qcol_t *cols;
  size_t ncols;
  dp_qval_t *cells; /* nrows * ncols, row-major */
  size_t nrows, arows;
  char **footers;
  size_t nfooters;
};

/* ======================================================================== */
/* Result set */

dp_qres_t *dp__query_res_create(const dp_qcol_t *cols, size_t ncols) {
  dp_qres_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->cols = cols;
  r->ncols = ncols;
  return r;
}

static void val_clear(dp_qval_t *v) {
  free(v->s);
  for (size_t k = 0; k < v->n_items; k++)
    free(v->items[k]);
  free(v->items);
  memset(v, 0, sizeof *v);
  v->null = true;
}

void dp__query_res_destroy(dp_qres_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->nrows * r->ncols; i++)
    val_clear(&r->cells[i]);
  free(r->cells);
  for (size_t i = 0; i < r->nfooters; i++)
    free(r->footers[i]);
  free(r->footers);
  free(r);
}

int dp__query_res_add_row(dp_qres_t *r) {
  if (r->nrows == r->arows) {
    size_t na = r->arows ? r->arows * 2 : 16;
    if (r->ncols && na > SIZE_MAX / sizeof(dp_qval_t) / r->ncols) return DP_ENOMEM;
    dp_qval_t *c = realloc(r->cells, na * r->ncols * sizeof *c);
    if (!c && r->ncols) return DP_ENOMEM;
    r->cells = c;
    r->arows = na;
  }
  dp_qval_t *row = r->cells + r->nrows * r->ncols;
  memset(row, 0, r->ncols * sizeof *row);
  for (size_t j = 0; j < r->ncols; j++)
    row[j].null = true;
  r->nrows++;
  return 0;
}

size_t dp__query_res_rows(const dp_qres_t *r) {
  return r->nrows;
}

static dp_qval_t *last(dp_qres_t *r, size_t col) {
  dp_qval_t *v = &r->cells[(r->nrows - 1) * r->ncols + col];
  val_clear(v);
  return v;
}

int dp__query_res_set_text(dp_qres_t *r, size_t col, const char *s) {
  dp_qval_t *v = last(r, col);
  if (!s) return 0;
  if (!(v->s = strdup(s))) return DP_ENOMEM;
  v->null = false;
  return 0;
}

void dp__query_res_set_int(dp_qres_t *r, size_t col, int64_t x) {
  dp_qval_t *v = last(r, col);
  v->i = x;
  v->null = false;
}

void dp__query_res_set_pct(dp_qres_t *r, size_t col, int64_t num, int64_t den) {
  dp_qval_t *v = last(r, col);
  if (den <= 0) return;
  v->i = num;
  v->den = den;
  v->null = false;
}

int dp__query_res_set_list(dp_qres_t *r, size_t col, const char *const *items, size_t n) {
  dp_qval_t *v = last(r, col);
  v->null = false;
  if (!n) return 0;
  if (!(v->items = calloc(n, sizeof *v->items))) return DP_ENOMEM;
  for (size_t k = 0; k < n; k++, v->n_items++)
    if (items[k] && !(v->items[k] = strdup(items[k]))) return DP_ENOMEM;
  return 0;
}

int dp__query_pgarray_parse(const char *p, char ***pitems, size_t *pn) {
  char **items = NULL;
  size_t n = 0;
  if (*p == '[') { /* explicit bounds "[0:1]={...}" */
    p = strchr(p, '=');
    if (!p) return -1;
    p++;
  }
  if (*p++ != '{') return -1;
  if (*p == '}' && p[1] == '\0') goto done;
  for (;;) {
    dp_buf_t b;
    dp_buf_init(&b, 0);
    bool quoted = false;
    if (*p == '{') goto fail; /* multi-dimensional: not ours */
    if (*p == '"') {
      quoted = true;
      for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1]) p++;
        if (dp_buf_putc(&b, *p)) goto fail_buf;
      }
      if (*p++ != '"') goto fail_buf;
    } else {
      for (; *p && *p != ',' && *p != '}'; p++)
        if (dp_buf_putc(&b, *p)) goto fail_buf;
    }
    char **ni = realloc(items, (n + 1) * sizeof *items);
    if (!ni) goto fail_buf;
    items = ni;
    if (!quoted && b.len == 4 && !memcmp(b.data, "NULL", 4)) {
      dp_buf_free(&b);
      items[n++] = NULL;
    } else {
      items[n++] = dp_buf_steal(&b, NULL);
    }
    if (*p == ',') {
      p++;
      continue;
    }
    if (*p == '}' && p[1] == '\0') break;
    goto fail;
  fail_buf:
    dp_buf_free(&b);
    goto fail;
  }
done:
  *pitems = items;
  *pn = n;
  return 0;
fail:
  for (size_t k = 0; k < n; k++)
    free(items[k]);
  free(items);
  return -1;
}

int dp__query_res_set_pgarray(dp_qres_t *r, size_t col, const char *literal) {
  dp_qval_t *v = last(r, col);
  if (!literal) return 0;
  if (dp__query_pgarray_parse(literal, &v->items, &v->n_items) == 0) {
    v->null = false;
    return 0;
  }
  return dp__query_res_set_list(r, col, &literal, 1);
}

int dp__query_res_add_footer(dp_qres_t *r, const char *line) {
  char **nf = realloc(r->footers, (r->nfooters + 1) * sizeof *nf);
  if (!nf) return DP_ENOMEM;
  r->footers = nf;
  if (!(nf[r->nfooters] = strdup(line))) return DP_ENOMEM;
  r->nfooters++;
  return 0;
}

static bool parse_i64(const char *s, int64_t *out) {
  char *end;
  if (!*s) return false;
  long long v = strtoll(s, &end, 10);
  if (*end) return false;
  *out = (int64_t)v;
  return true;
}

int dp__query_res_append_pg(dp_qres_t *r, const PGresult *res) {
  if ((size_t)PQnfields(res) != r->ncols) return DP_EPG;
  int rows = PQntuples(res);
  for (int i = 0; i < rows; i++) {
    int rc = dp__query_res_add_row(r);
    if (rc) return rc;
    for (size_t j = 0; j < r->ncols; j++) {
      if (PQgetisnull(res, i, (int)j)) continue;
      const char *s = PQgetvalue(res, i, (int)j);
      int64_t x;
      switch (r->cols[j].type) {
      case DP_QT_TEXT:
        if ((rc = dp__query_res_set_text(r, j, s))) return rc;
        break;
      case DP_QT_BOOL:
        if (strcmp(s, "t") && strcmp(s, "f")) return DP_EPG;
        dp__query_res_set_int(r, j, s[0] == 't');
        break;
      case DP_QT_INT:
      case DP_QT_TIME:
        if (!parse_i64(s, &x)) return DP_EPG;
        dp__query_res_set_int(r, j, x);
        break;
      case DP_QT_LIST:
        if ((rc = dp__query_res_set_pgarray(r, j, s))) return rc;
        break;
      case DP_QT_PCT:
        return DP_EPG;
      }
    }
  }
  return 0;
}

int dp__query_parse_format(const char *s, dp_qfmt_t *fmt) {
  if (!strcmp(s, "table"))
    *fmt = DP_QFMT_TABLE;
  else if (!strcmp(s, "csv"))
    *fmt = DP_QFMT_CSV;
  else if (!strcmp(s, "json"))
    *fmt = DP_QFMT_JSON;
  else
    return DP_EUSAGE;
  return 0;
}

/* ======================================================================== */
/* UTF-8 */


/* ======================================================================== */
/* Scalar renderings shared by the formats */

void dp__query_pct(char *out, size_t len, int64_t num, int64_t den) {
  /* Floor, not round: a person reading 100.0% must be able to trust that
   * nothing failed, and any non-zero share shows as at least 0.1%. */
  int64_t t;
  if (num <= 0 || den <= 0)
    t = 0;
  else if (num >= den)
    t = 1000;
  else if (den <= INT64_MAX / 1000)
    t = num / den * 1000 + (num % den) * 1000 / den;
  else
    t = (int64_t)((long double)num * 1000.0L / (long double)den);
  if (num > 0 && den > 0 && t == 0) t = 1;
  if (num < den && t >= 1000) t = 999;
  snprintf(out, len, "%" PRId64 ".%" PRId64, t / 10, t % 10);
}

/* Table times drop the seconds and the T/Z: people read the column header. */
static void fmt_time_table(char *out, size_t len, int64_t t) {
  char iso[32];
  dp_time_iso8601(t, iso, sizeof iso);
  if (strlen(iso) == 20) {
    iso[10] = ' ';
    iso[16] = '\0';
  }
  snprintf(out, len, "%s", iso);
}

/* ======================================================================== */
/* Table */

/* Append s for a terminal: tab/CR/LF become a space, other control characters
 * (C0, DEL, C1 - which include ESC and CSI) and bidirectional controls (a
 * reporter's U+202E would show "moc.elgoog" as google.com) become '?',
 * invalid UTF-8 U+FFFD.
 * Returns the width added in code points via *w. */
static int put_table_text(dp_buf_t *b, const char *s, size_t *w) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  int rc = 0;
  while (n && !rc) {
    uint32_t cp;
    size_t k = dp_utf8_next(p, n, &cp);
    p += k, n -= k;
    if (cp == '\t' || cp == '\n' || cp == '\r')
      cp = ' ';
    else if (dp_cp_display_unsafe(cp))
      cp = '?';
    rc = dp_utf8_put(b, cp);
    (*w)++;
  }
  return rc;
}

struct tcell {
  char *s;  /* rendered, owned */
  size_t w; /* width in code points */
};

static bool col_right(const dp_qcol_t *c) {
  return c->type == DP_QT_INT || c->type == DP_QT_PCT;
}

static int render_table_cell(const dp_qcol_t *c, const dp_qval_t *v, struct tcell *out) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  char tmp[64];
  size_t w = 0;
  int rc = 0;
  if (v->null) {
    rc = put_table_text(&b, "-", &w);
  } else {
    switch (c->type) {
    case DP_QT_TEXT:
      rc = put_table_text(&b, v->s, &w);
      break;
    case DP_QT_INT:
      snprintf(tmp, sizeof tmp, "%" PRId64, v->i);
      rc = put_table_text(&b, tmp, &w);
      break;
    case DP_QT_BOOL:
      rc = put_table_text(&b, v->i ? "yes" : "no", &w);
      break;
    case DP_QT_TIME:
      fmt_time_table(tmp, sizeof tmp, v->i);
      rc = put_table_text(&b, tmp, &w);
      break;
    case DP_QT_PCT:
      dp__query_pct(tmp, sizeof tmp - 1, v->i, v->den);
      strcat(tmp, "%");
      rc = put_table_text(&b, tmp, &w);
      break;
    case DP_QT_LIST:
      for (size_t k = 0; k < v->n_items && !rc; k++) {
        if (k) rc = put_table_text(&b, ", ", &w);
        if (!rc) rc = put_table_text(&b, v->items[k] ? v->items[k] : "-", &w);
      }
      break;
    }
  }
  if (!rc && c->max_width && w > c->max_width) {
    /* Cut at a code point boundary and mark the cut with an ellipsis. */
    size_t keep = c->max_width > 1 ? c->max_width - 1 : 0, pos = 0;
    for (size_t k = 0; k < keep; k++) {
      uint32_t cp;
      pos += dp_utf8_next((const unsigned char *)b.data + pos, b.len - pos, &cp);
    }
    b.len = pos;
    b.data[pos] = '\0';
    rc = dp_buf_puts(&b, "\xE2\x80\xA6");
    w = keep + 1;
  }
  if (rc) {
    dp_buf_free(&b);
    return rc;
  }
  out->s = dp_buf_steal(&b, NULL);
  out->w = w;
  return out->s ? 0 : DP_ENOMEM;
}

static int pad(dp_buf_t *b, size_t n) {
  int rc = 0;
  while (n-- && !rc)
    rc = dp_buf_putc(b, ' ');
  return rc;
}

/* One line: cells separated by two spaces, numbers right-aligned, no trailing
 * blanks. */
static int table_line(dp_buf_t *b, const dp_qcol_t *cols, const size_t *vis, size_t nvis,
                      const struct tcell *cells, const size_t *width) {
  int rc = 0;
  for (size_t k = 0; k < nvis && !rc; k++) {
    const dp_qcol_t *c = &cols[vis[k]];
    if (k) rc = dp_buf_puts(b, "  ");
    size_t gap = width[k] - cells[k].w;
    if (!rc && col_right(c)) rc = pad(b, gap);
    if (!rc) rc = dp_buf_puts(b, cells[k].s);
    if (!rc && !col_right(c)) rc = pad(b, gap);
  }
  while (b->len && b->data[b->len - 1] == ' ')
    b->data[--b->len] = '\0';
  return rc ? rc : dp_buf_putc(b, '\n');
}

static int write_table(const dp_qres_t *r, FILE *out) {
  size_t nvis = 0;
  size_t *vis = calloc(r->ncols + 1, sizeof *vis);
  size_t *width = calloc(r->ncols + 1, sizeof *width);
  struct tcell *cells = calloc((r->nrows + 1) * (r->ncols + 1), sizeof *cells);
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int rc = (vis && width && cells) ? 0 : DP_ENOMEM;
  for (size_t j = 0; j < r->ncols && !rc; j++)
    if (!(r->cols[j].flags & DP_QCOL_NOTABLE)) vis[nvis++] = j;
  /* Row 0 of cells is the header; it is never truncated. */
  for (size_t k = 0; k < nvis && !rc; k++) {
    const dp_qcol_t *c = &r->cols[vis[k]];
    size_t w = 0;
    rc = put_table_text(&b, c->label ? c->label : c->name, &w);
    if (!rc && !(cells[k].s = dp_buf_steal(&b, NULL))) rc = DP_ENOMEM;
    cells[k].w = w;
    width[k] = w;
  }
  for (size_t i = 0; i < r->nrows && !rc; i++) {
    for (size_t k = 0; k < nvis && !rc; k++) {
      struct tcell *tc = &cells[(i + 1) * nvis + k];
      rc = render_table_cell(&r->cols[vis[k]], &r->cells[i * r->ncols + vis[k]], tc);
      if (!rc && tc->w > width[k]) width[k] = tc->w;
    }
  }
  for (size_t i = 0; i <= r->nrows && !rc; i++) {
    dp_buf_reset(&b);
    rc = table_line(&b, r->cols, vis, nvis, &cells[i * nvis], width);
    if (!rc && fwrite(b.data, 1, b.len, out) != b.len) rc = DP_EIO;
  }
  for (size_t i = 0; i < r->nfooters && !rc; i++) {
    dp_buf_reset(&b);
    size_t w = 0;
    rc = put_table_text(&b, r->footers[i], &w);
    if (!rc) rc = dp_buf_putc(&b, '\n');
    if (!rc && fwrite(b.data, 1, b.len, out) != b.len) rc = DP_EIO;
  }
  if (cells)
    for (size_t i = 0; i < (r->nrows + 1) * (r->ncols + 1); i++)
      free(cells[i].s);
  free(cells);
  free(width);
  free(vis);
  dp_buf_free(&b);
  return rc;
}

/* ======================================================================== */
/* CSV (RFC 4180: CRLF line ends, fields quoted when they hold a quote, comma,
 * CR or LF, quotes doubled) */

static int put_repaired(dp_buf_t *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  int rc = 0;
  while (n && !rc) {
    uint32_t cp;
    size_t k = dp_utf8_next(p, n, &cp);
    rc = cp < 0x80 ? dp_buf_putc(b, (char)cp) : dp_utf8_put(b, cp);
    p += k, n -= k;
  }
  return rc;
}

/* A spreadsheet program opening the CSV takes a cell that begins with one
 * of these for a formula (tab and CR too, after its import trims them), and
 * report fields come from strangers: such a value gets a leading '. */
static bool csv_formula_lead(char c) {
  return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

static int csv_field_as(dp_buf_t *b, const char *s, bool data) {
  size_t start = b->len;
  int rc = data && csv_formula_lead(*s) ? dp_buf_putc(b, '\'') : 0;
  if (!rc) rc = put_repaired(b, s);
  if (rc || !strpbrk(b->data + start, "\",\r\n")) return rc;
  /* Re-emit the repaired text quoted. */
  dp_buf_t q;
  dp_buf_init(&q, 0);
  rc = dp_buf_putc(&q, '"');
  for (size_t i = start; i < b->len && !rc; i++) {
    if (b->data[i] == '"') rc = dp_buf_putc(&q, '"');
    if (!rc) rc = dp_buf_putc(&q, b->data[i]);
  }
  if (!rc) rc = dp_buf_putc(&q, '"');
  if (!rc) {
    dp_buf_truncate(b, start);
    rc = dp_buf_append(b, q.data, q.len);
  }
  dp_buf_free(&q);
  return rc;
}

static int csv_field(dp_buf_t *b, const char *s) { return csv_field_as(b, s, true); }

/* Machine rendering of a scalar as text (CSV): lists join with ';'. */
static int csv_value(dp_buf_t *b, const dp_qcol_t *c, const dp_qval_t *v) {
  char tmp[64];
  if (v->null) return 0;
  switch (c->type) {
  case DP_QT_TEXT:
    return csv_field(b, v->s);
  case DP_QT_INT:
    return dp_buf_printf(b, "%" PRId64, v->i);
  case DP_QT_BOOL:
    return dp_buf_puts(b, v->i ? "true" : "false");
  case DP_QT_TIME:
    dp_time_iso8601(v->i, tmp, sizeof tmp);
    return dp_buf_puts(b, tmp);
  case DP_QT_PCT:
    dp__query_pct(tmp, sizeof tmp, v->i, v->den);
    return dp_buf_puts(b, tmp);
  case DP_QT_LIST: {
    dp_buf_t j;
    dp_buf_init(&j, 0);
    int rc = dp_buf_puts(&j, "");
    for (size_t k = 0; k < v->n_items && !rc; k++) {
      if (k) rc = dp_buf_putc(&j, ';');
      if (!rc && v->items[k]) rc = dp_buf_puts(&j, v->items[k]);
    }
    if (!rc) rc = csv_field(b, j.data);
    dp_buf_free(&j);
    return rc;
  }
  }
  return 0;
}

static int write_csv(const dp_qres_t *r, FILE *out) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int rc = 0;
  bool first = true;
  for (size_t j = 0; j < r->ncols && !rc; j++) {
    if (r->cols[j].flags & DP_QCOL_TABLEONLY) continue;
    if (!first) rc = dp_buf_putc(&b, ',');
    first = false;
    if (!rc) rc = csv_field_as(&b, r->cols[j].name, false);
  }
  if (!rc) rc = dp_buf_puts(&b, "\r\n");
  for (size_t i = 0; i < r->nrows && !rc; i++) {
    first = true;
    for (size_t j = 0; j < r->ncols && !rc; j++) {
      if (r->cols[j].flags & DP_QCOL_TABLEONLY) continue;
      if (!first) rc = dp_buf_putc(&b, ',');
      first = false;
      if (!rc) rc = csv_value(&b, &r->cols[j], &r->cells[i * r->ncols + j]);
    }
    if (!rc) rc = dp_buf_puts(&b, "\r\n");
    if (!rc && b.len >= 65536) {
      if (fwrite(b.data, 1, b.len, out) != b.len) rc = DP_EIO;
      dp_buf_reset(&b);
    }
  }
  if (!rc && b.len && fwrite(b.data, 1, b.len, out) != b.len) rc = DP_EIO;
  dp_buf_free(&b);
  return rc;
}

/* ======================================================================== */
/* JSON (RFC 8259) */


static int json_value(dp_buf_t *b, const dp_qcol_t *c, const dp_qval_t *v) {
  char tmp[64];
  if (v->null) return dp_buf_puts(b, "null");
  switch (c->type) {
  case DP_QT_TEXT:
    return dp_json_string(b, v->s);
  case DP_QT_INT:
    return dp_buf_printf(b, "%" PRId64, v->i);
  case DP_QT_BOOL:
    return dp_buf_puts(b, v->i ? "true" : "false");
  case DP_QT_TIME:
    dp_time_iso8601(v->i, tmp, sizeof tmp);
    return dp_json_string(b, tmp);
  case DP_QT_PCT:
    dp__query_pct(tmp, sizeof tmp, v->i, v->den);
    return dp_buf_puts(b, tmp);
  case DP_QT_LIST: {
    int rc = dp_buf_putc(b, '[');
    for (size_t k = 0; k < v->n_items && !rc; k++) {
      if (k) rc = dp_buf_putc(b, ',');
      if (!rc) rc = v->items[k] ? dp_json_string(b, v->items[k]) : dp_buf_puts(b, "null");
    }
    return rc ? rc : dp_buf_putc(b, ']');
  }
  }
  return 0;
}

/* One object per line between "[" and "]": easy to read, grep and diff, and
 * still a single JSON document. */
static int write_json(const dp_qres_t *r, FILE *out) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int rc = dp_buf_puts(&b, r->nrows ? "[\n" : "[]\n");
  for (size_t i = 0; i < r->nrows && !rc; i++) {
    rc = dp_buf_putc(&b, '{');
    bool first = true;
    for (size_t j = 0; j < r->ncols && !rc; j++) {
      if (r->cols[j].flags & DP_QCOL_TABLEONLY) continue;
      if (!first) rc = dp_buf_putc(&b, ',');
      first = false;
      if (!rc) rc = dp_json_string(&b, r->cols[j].name);
      if (!rc) rc = dp_buf_putc(&b, ':');
      if (!rc) rc = json_value(&b, &r->cols[j], &r->cells[i * r->ncols + j]);
    }
    if (!rc) rc = dp_buf_puts(&b, i + 1 < r->nrows ? "},\n" : "}\n]\n");
    if (!rc && b.len >= 65536) {
      if (fwrite(b.data, 1, b.len, out) != b.len) rc = DP_EIO;
      dp_buf_reset(&b);
    }
  }
  if (!rc && b.len && fwrite(b.data, 1, b.len, out) != b.len) rc = DP_EIO;
  dp_buf_free(&b);
  return rc;
}

int dp__query_res_write(const dp_qres_t *r, dp_qfmt_t fmt, FILE *out) {
  int rc;
  switch (fmt) {
  case DP_QFMT_CSV:
    rc = write_csv(r, out);
    break;
  case DP_QFMT_JSON:
    rc = write_json(r, out);
    break;
  default:
    rc = write_table(r, out);
    break;
  }
  if (!rc && (fflush(out) != 0 || ferror(out))) rc = DP_EIO;
  return rc;
}
