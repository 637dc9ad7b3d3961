/* SPDX-License-Identifier: MIT */
/* query/svg_chart.c - the pieces of the HTML report that must be exactly
 * right: HTML escaping of hostile report text, and inline SVG charts (line
 * and stacked bar) computed in C, so the report needs no script, font or
 * stylesheet from anywhere. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "query/query_int.h"

/* ======================================================================== */
/* Escaping */


int dp__html_escape(dp_buf_t *b, const char *s) {
  if (!s) return 0;
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    size_t k = dp_utf8_next(p + i, n - i, &cp);
    int rc;
    switch (cp) {
    case '&':
      rc = dp_buf_puts(b, "&amp;");
      break;
    case '<':
      rc = dp_buf_puts(b, "&lt;");
      break;
    case '>':
      rc = dp_buf_puts(b, "&gt;");
      break;
    case '"':
      rc = dp_buf_puts(b, "&quot;");
      break;
    case '\'':
      rc = dp_buf_puts(b, "&#39;");
      break;
    default:
      /* controls never reach the page as raw bytes, nor bidirectional
       * controls, which would show a sender's name in another order */
      if (cp != '\t' && cp != '\n' && dp_cp_display_unsafe(cp))
        rc = dp_buf_putc(b, '?');
      else if (cp == 0xFFFD && !(k == 3 && p[i] == 0xEF))
        rc = dp_buf_puts(b, "\xEF\xBF\xBD");
      else
        rc = dp_buf_append(b, p + i, k);
    }
    if (rc) return DP_ENOMEM;
    i += k;
  }
  return 0;
}

/* ======================================================================== */
/* Charts */

/* Geometry of every chart, in SVG user units (the viewBox scales it). */
#define W 760.0
#define H 260.0
#define ML 56.0 /* left: y labels */
#define MR 16.0
#define MT 14.0
#define MB 34.0 /* bottom: x labels */
#define PW (W - ML - MR)
#define PH (H - MT - MB)
#define MAX_X_LABELS 8

/* A "nice" axis maximum (1, 2, 2.5 or 5 times a power of ten) at or above v,
 * and the tick step that divides it in 4 or 5. */
static void nice_axis(double v, double *max, double *step) {
  if (!(v > 0)) v = 1;
  double e = pow(10, floor(log10(v / 4)));
  static const double m[] = {1, 2, 2.5, 5, 10};
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
    double st = m[i] * e;
    if (st * 5 >= v) {
      *step = st;
      *max = ceil(v / st - 1e-9) * st;
      if (*max <= 0) *max = st;
      return;
    }
  }
  *step = 10 * e;
  *max = ceil(v / *step) * *step;
}

/* A count for an axis label: 1200 -> "1,200", 2.5 -> "2.5". */
static void axis_num(char *out, size_t len, double v) {
  if (fabs(v - floor(v)) > 1e-9) {
    snprintf(out, len, "%.1f", v);
    return;
  }
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%.0f", v);
  size_t n = strlen(tmp), o = 0;
  for (size_t i = 0; i < n && o + 2 < len; i++) {
    if (i && (n - i) % 3 == 0 && tmp[i - 1] != '-') out[o++] = ',';
    out[o++] = tmp[i];
  }
  out[o] = '\0';
}

static double x_center(size_t i, size_t n) {
  return ML + (i + 0.5) * PW / (double)n;
}

static int put_tooltip(dp_buf_t *b, const char *series, const char *label, double v, bool percent) {
  int rc = dp_buf_puts(b, "<title>");
  if (!rc) rc = dp__html_escape(b, series);
  if (!rc) rc = dp_buf_puts(b, ", ");
  if (!rc) rc = dp__html_escape(b, label);
  char num[48];
  if (percent)
    snprintf(num, sizeof num, ": %.1f%%", v);
  else
    axis_num(num + 2, sizeof num - 2, v), num[0] = ':', num[1] = ' ';
  if (!rc) rc = dp_buf_puts(b, num);
  if (!rc) rc = dp_buf_puts(b, "</title>");
  return rc;
}

int dp__svg_chart(dp_buf_t *b, const dp_chart_t *c) {
  size_t n = c->n;
  /* The y range: 0..100 for rates; else up to the largest value (or stack). */
  double vmax = 0;
  for (size_t i = 0; i < n; i++) {
    double sum = 0;
    for (size_t s = 0; s < c->n_series; s++) {
      double v = c->series[s].y[i];
      if (isnan(v) || v < 0) continue;
      if (c->kind == DP_CHART_STACKED)
        sum += v;
      else if (v > vmax)
        vmax = v;
    }
    if (sum > vmax) vmax = sum;
  }
  double ymax, step;
  if (c->percent) {
    ymax = 100;
    step = 25;
  } else {
    nice_axis(vmax, &ymax, &step);
  }
  int rc = dp_buf_printf(b,
                         "<svg class=\"chart\" viewBox=\"0 0 %.0f %.0f\" "
                         "role=\"img\" aria-label=\"",
                         W, H);
  if (!rc) rc = dp__html_escape(b, c->title);
  if (!rc) rc = dp_buf_puts(b, "\">");
  /* Grid and y labels. */
  for (double t = 0; !rc && t <= ymax + step / 2; t += step) {
    double y = MT + PH - t / ymax * PH;
    char lab[40];
    axis_num(lab, sizeof lab, t);
    rc = dp_buf_printf(b,
                       "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                       "<text class=\"ylab\" x=\"%.1f\" y=\"%.1f\">%s%s</text>",
                       ML, y, W - MR, y, ML - 6, y + 4, lab, c->percent ? "%" : "");
  }
  /* x labels: at most MAX_X_LABELS, evenly spaced, always the last one. */
  size_t every = n > MAX_X_LABELS ? (n + MAX_X_LABELS - 1) / MAX_X_LABELS : 1;
  for (size_t i = 0; i < n && !rc; i++) {
    if (i % every && i != n - 1) continue;
    if (i != n - 1 && n - 1 - i < every && i % every == 0 && i) continue; /* no overlap */
    rc = dp_buf_printf(b, "<text class=\"xlab\" x=\"%.1f\" y=\"%.1f\">", x_center(i, n),
                       H - MB + 18);
    if (!rc) rc = dp__html_escape(b, c->x_labels[i]);
    if (!rc) rc = dp_buf_puts(b, "</text>");
  }
  if (!rc && n == 0)
    rc = dp_buf_printf(b, "<text class=\"empty\" x=\"%.1f\" y=\"%.1f\">no data</text>", ML + PW / 2,
                       MT + PH / 2);
  if (c->kind == DP_CHART_STACKED) {
    double bw = PW / (double)(n ? n : 1) * 0.72;
    for (size_t i = 0; i < n && !rc; i++) {
      double base = 0;
      for (size_t s = 0; s < c->n_series && !rc; s++) {
        double v = c->series[s].y[i];
        if (isnan(v) || v <= 0) continue;
        double y0 = MT + PH - base / ymax * PH, h = v / ymax * PH;
        rc = dp_buf_printf(b,
                           "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                           "fill=\"%s\">",
                           x_center(i, n) - bw / 2, y0 - h, bw, h, c->series[s].color);
        if (!rc) rc = put_tooltip(b, c->series[s].name, c->x_labels[i], v, false);
        if (!rc) rc = dp_buf_puts(b, "</rect>");
        base += v;
      }
    }
  } else {
    for (size_t s = 0; s < c->n_series && !rc; s++) {
      const dp_chart_series_t *se = &c->series[s];
      /* The path breaks where a period has no value (NAN). */
      rc = dp_buf_printf(b, "<path class=\"line%s\" stroke=\"%s\" d=\"", se->emphasis ? " em" : "",
                         se->color);
      bool pen = false;
      for (size_t i = 0; i < n && !rc; i++) {
        double v = se->y[i];
        if (isnan(v)) {
          pen = false;
          continue;
        }
        rc = dp_buf_printf(b, "%s%.1f %.1f ", pen ? "L" : "M", x_center(i, n),
                           MT + PH - (v < 0 ? 0 : v) / ymax * PH);
        pen = true;
      }
      if (!rc) rc = dp_buf_puts(b, "\"/>");
      for (size_t i = 0; i < n && !rc; i++) {
        double v = se->y[i];
        if (isnan(v)) continue;
        rc = dp_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\">",
                           x_center(i, n), MT + PH - (v < 0 ? 0 : v) / ymax * PH,
                           se->emphasis ? 3.5 : 2.5, se->color);
        if (!rc) rc = put_tooltip(b, se->name, c->x_labels[i], v, c->percent);
        if (!rc) rc = dp_buf_puts(b, "</circle>");
      }
    }
  }
  if (!rc)
    rc = dp_buf_printf(b, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>",
                       ML, MT + PH, W - MR, MT + PH);
  if (!rc) rc = dp_buf_puts(b, "</svg>");
  return rc ? DP_ENOMEM : 0;
}
