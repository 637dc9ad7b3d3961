/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_mime.c - the MIME walker and mail unpacking: multipart
 * with base64 attachments, quoted-printable XML, nested multiparts, forwarded
 * message/rfc822, RFC 2231 / RFC 2047 file names, folded headers, LF and CRLF
 * line endings, broken base64, missing boundaries and the nesting limit. */
#include "../test.h"
#include "unpack_test_util.h"

/* ---- helpers ------------------------------------------------------------ */

/* base64 in 76-column lines with the given line break. Caller owns result. */
static char *b64(const void *p, size_t n, const char *eol) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *s = p;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  size_t col = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
    char q[4] = {al[v >> 18 & 63], al[v >> 12 & 63], i + 1 < n ? al[v >> 6 & 63] : '=', i + 2 < n ? al[v & 63] : '='};
    dp_buf_append(&b, q, 4);
    if ((col += 4) >= 76) {
      dp_buf_puts(&b, eol);
      col = 0;
    }
  }
  if (col) dp_buf_puts(&b, eol);
  return dp_buf_steal(&b, NULL);
}

/* Replace every "\n" by "\r\n". Caller owns result. */
static char *crlf(const char *s) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  for (; *s; s++) {
    if (*s == '\n') dp_buf_putc(&b, '\r');
    dp_buf_putc(&b, *s);
  }
  return dp_buf_steal(&b, NULL);
}

/* What the walker reported, one line per leaf:
 * "PATH|TYPE|FILENAME|LEN|DEPTH|STATUS". The last leaf's data is kept. */
struct walkrec {
  dp_buf_t log;
  dp_buf_t last;
};

static int walk_cb(void *ud, const dp_mime_part_t *p) {
  struct walkrec *w = ud;
  dp_buf_printf(&w->log, "%s|%s|%s|%zu|%u|%d\n", p->path, p->content_type, p->filename, p->len, p->depth,
                p->status);
  dp_buf_reset(&w->last);
  if (p->data) dp_buf_append(&w->last, p->data, p->len);
  if (p->status) dp_buf_printf(&w->log, "  %s\n", p->reason);
  return 0;
}

static int walk(const char *msg, const dp_limits_t *lim, struct walkrec *w, char *err, size_t errlen) {
  dp_limits_t d;
  dp_limits_default(&d);
  dp_buf_init(&w->log, 0);
  dp_buf_init(&w->last, 0);
  return dp_mime_walk(lim ? lim : &d, msg, strlen(msg), 0, walk_cb, w, err, errlen);
}

static void walk_free(struct walkrec *w) {
  dp_buf_free(&w->log);
  dp_buf_free(&w->last);
}

static const char *wlog(struct walkrec *w) { return w->log.data ? w->log.data : ""; }

/* A mail with a text part and a base64 zip attachment holding r.xml. */
static char *mail_with_zip(const char *eol, char **xml_out) {
  char *x = make_report("mail-zip");
  struct zentry e[] = {{"r.xml", x, strlen(x), 0}};
  size_t zn;
  unsigned char *z = make_zip(e, 1, &zn);
  char *enc = b64(z, zn, eol);
  dp_buf_t m;
  dp_buf_init(&m, 0);
  dp_buf_printf(&m,
                "Return-Path: <noreply-dmarc-support@google.com>\n"
                "Received: from mail.example.net by mx.example.com;\n"
                "\tMon, 1 Jan 2024 00:00:00 +0000\n"
                "From: noreply-dmarc-support@google.com\n"
                "Subject: Report domain: example.com\n"
                "MIME-Version: 1.0\n"
                "Content-Type: multipart/mixed;\n"
                "\tboundary=\"000000000000abcdef\"\n"
                "\n"
                "This is a multi-part message in MIME format.\n"
                "--000000000000abcdef\n"
                "Content-Type: text/plain; charset=\"UTF-8\"\n"
                "\n"
                "This is an aggregate report from google.com.\n"
                "--000000000000abcdef\n"
                "Content-Type: application/zip; \n"
                "\tname=\"google.com!example.com!1700000000!1700086399.zip\"\n"
                "Content-Disposition: attachment; \n"
                "\tfilename=\"google.com!example.com!1700000000!1700086399.zip\"\n"
                "Content-Transfer-Encoding: base64\n"
                "\n");
  /* the base64 was made with eol already; the rest is converted below */
  char *head = eol[0] == '\r' ? crlf(m.data) : strdup(m.data);
  dp_buf_t out;
  dp_buf_init(&out, 0);
  dp_buf_puts(&out, head);
  dp_buf_puts(&out, enc);
  dp_buf_printf(&out, "--000000000000abcdef--%s", eol);
  free(head);
  dp_buf_free(&m);
  free(enc);
  free(z);
  if (xml_out) *xml_out = x;
  else free(x);
  return dp_buf_steal(&out, NULL);
}

/* ---- the walker --------------------------------------------------------- */

TEST(test_mime_multipart_base64_zip_lf_and_crlf) {
  const char *eols[] = {"\n", "\r\n"};
  for (int i = 0; i < 2; i++) {
    char *msg = mail_with_zip(eols[i], NULL);
    struct walkrec w;
    char err[256];
    ASSERT_OK(walk(msg, NULL, &w, err, sizeof err));
    size_t tl = strlen("This is an aggregate report from google.com.");
    char want[512];
    snprintf(want, sizeof want,
             "part 1|text/plain||%zu|1|0\n"
             "part 2|application/zip|google.com!example.com!1700000000!1700086399.zip|%zu|1|0\n",
             tl, w.last.len);
    ASSERT_STR_EQ(wlog(&w), want);
    ASSERT_TRUE(w.last.len > 100);
    ASSERT_EQ(dp_sniff(w.last.data, w.last.len), DP_KIND_ZIP);
    walk_free(&w);

    /* the whole mail through dp_unpack */
    struct rec r;
    rec_init(&r);
    ASSERT_OK(rec_run(&r, NULL, msg, strlen(msg), err, sizeof err));
    ASSERT_STR_EQ(rec_log(&r),
                  "note part 1 (text/plain)|not a report, skipped\n"
                  "begin part 2 (google.com!example.com!1700000000!1700086399.zip) > entry r.xml\n"
                  "end 0 \n");
    ASSERT_CONTAINS(r.data.data, "<report_id>mail-zip</report_id>");
    rec_free(&r);
    free(msg);
  }
}

TEST(test_mime_quoted_printable_inline_xml) {
  const char *msg =
      "From: reports@example.net\n"
      "Content-Type: text/xml; charset=us-ascii\n"
      "Content-Transfer-Encoding: quoted-printable\n"
      "\n"
      "<?xml version=3D\"1.0\"?>\n"
      "<feedback><report_metadata><org_name>ex=\n"
      "ample.net</org_name>   \n"
      "<report_id>q=3Dp</report_id></report_metadata></feedback>\n";
  const char *want =
      "<?xml version=\"1.0\"?>\n"
      "<feedback><report_metadata><org_name>example.net</org_name>\n"
      "<report_id>q=p</report_id></report_metadata></feedback>\n";
  struct walkrec w;
  ASSERT_OK(walk(msg, NULL, &w, NULL, 0));
  char line[128];
  snprintf(line, sizeof line, "part 1|text/xml||%zu|1|0\n", strlen(want));
  ASSERT_STR_EQ(wlog(&w), line);
  ASSERT_STR_EQ(w.last.data, want);
  walk_free(&w);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, msg, strlen(msg), NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin part 1 (text/xml)\nend 0 \n");
  ASSERT_STR_EQ(r.data.data, want);
  rec_free(&r);
}

TEST(test_mime_nested_alternative_in_mixed) {
  char *x = make_report("alt");
  size_t gn;
  unsigned char *g = make_gzip(x, strlen(x), &gn);
  char *enc = b64(g, gn, "\n");
  dp_buf_t m;
  dp_buf_init(&m, 0);
  dp_buf_printf(&m,
                "From: a@b\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n"
                "--outer\n"
                "Content-Type: multipart/alternative; boundary=\"outer-alt\"\n\n"
                "--outer-alt\nContent-Type: text/plain\n\nplain body\n"
                "--outer-alt\nContent-Type: text/html\n\n<html><body>html body</body></html>\n"
                "--outer-alt--\n"
                "--outer\n"
                "Content-Type: application/octet-stream\n"
                "Content-Disposition: attachment; filename=report.bin\n"
                "Content-Transfer-Encoding: base64\n\n%s"
                "--outer--\nepilogue --outer\n",
                enc);
  struct walkrec w;
  ASSERT_OK(walk(m.data, NULL, &w, NULL, 0));
  char want[512];
  snprintf(want, sizeof want,
           "part 1.1|text/plain||10|1|0\n"
           "part 1.2|text/html||35|1|0\n"
           "part 2|application/octet-stream|report.bin|%zu|1|0\n",
           gn);
  ASSERT_STR_EQ(wlog(&w), want);
  ASSERT_TRUE(memcmp(w.last.data, g, gn) == 0);
  walk_free(&w);
  /* content decides, not the declared type or name: the .bin is a gzip'd report */
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, m.data, m.len, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r),
                "note part 1.1 (text/plain)|not a report, skipped\n"
                "note part 1.2 (text/html)|not a report, skipped\n"
                "begin part 2 (report.bin)\nend 0 \n");
  rec_free(&r);
  dp_buf_free(&m);
  free(enc);
  free(g);
  free(x);
}

TEST(test_mime_forwarded_rfc822) {
  char *inner = mail_with_zip("\n", NULL);
  dp_buf_t m;
  dp_buf_init(&m, 0);
  dp_buf_printf(&m,
                "From: admin@example.com\nTo: dmarc@example.com\nSubject: Fwd: report\n"
                "Content-Type: multipart/mixed; boundary=\"fwd\"\n\n"
                "--fwd\nContent-Type: text/plain\n\nSee the forwarded report.\n"
                "--fwd\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n%s\n"
                "--fwd--\n",
                inner);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, m.data, m.len, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r),
                "note part 1 (text/plain)|not a report, skipped\n"
                "note part 2 (message) > part 1 (text/plain)|not a report, skipped\n"
                "begin part 2 (message) > part 2 (google.com!example.com!1700000000!1700086399.zip) > entry r.xml\n"
                "end 0 \n");
  rec_free(&r);
  /* a single-part forwarded message: "part 2 (message) > part 1 (r.zip) > entry r.xml" */
  char *x = make_report("fwd1");
  struct zentry e[] = {{"r.xml", x, strlen(x), 0}};
  size_t zn;
  unsigned char *z = make_zip(e, 1, &zn);
  char *enc = b64(z, zn, "\n");
  dp_buf_reset(&m);
  dp_buf_printf(&m,
                "From: admin@example.com\nContent-Type: multipart/mixed; boundary=b1\n\n"
                "--b1\nContent-Type: text/plain\n\nfyi\n"
                "--b1\nContent-Type: message/rfc822\n\n"
                "From: noreply@example.net\nContent-Type: application/zip; name=r.zip\n"
                "Content-Transfer-Encoding: base64\n\n%s"
                "--b1--\n",
                enc);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, m.data, m.len, NULL, 0));
  ASSERT_CONTAINS(rec_log(&r), "begin part 2 (message) > part 1 (r.zip) > entry r.xml\nend 0 \n");
  rec_free(&r);
  /* depth: the forwarded message is one more container */
  struct walkrec w;
  ASSERT_OK(walk(m.data, NULL, &w, NULL, 0));
  char want[256];
  snprintf(want, sizeof want, "part 1|text/plain||3|1|0\npart 2 (message) > part 1|application/zip|r.zip|%zu|2|0\n",
           zn);
  ASSERT_STR_EQ(wlog(&w), want);
  walk_free(&w);
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_nesting = 1;
  ASSERT_OK(walk(m.data, &lim, &w, NULL, 0));
  ASSERT_STR_EQ(wlog(&w), "part 1|text/plain||3|1|0\npart 2|message/rfc822||0|1|-4003\n"
                          "  nesting limit exceeded: forwarded message inside 1 containers (limit 1)\n");
  walk_free(&w);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, &lim, m.data, m.len, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "note part 1 (text/plain)|not a report, skipped\n"
                             "error part 2 (message/rfc822)|-4003|nesting limit exceeded: forwarded message "
                             "inside 1 containers (limit 1)\n");
  rec_free(&r);
  lim.max_nesting = 0;
  char err[256];
  ASSERT_EQ(walk(m.data, &lim, &w, err, sizeof err), DP_ELIMIT);
  ASSERT_STR_EQ(err, "nesting limit exceeded: mail inside 0 containers (limit 0)");
  walk_free(&w);
  dp_buf_free(&m);
  free(enc);
  free(z);
  free(x);
  free(inner);
}

TEST(test_mime_filenames_rfc2231_rfc2047) {
  const char *msg =
      "From: a@b\nContent-Type: multipart/mixed; boundary=\"=_b\"\n\n"
      "--=_b\nContent-Type: application/gzip\n"
      "Content-Disposition: attachment; filename*=UTF-8''r%C3%A9port%20final.xml.gz\n\nx\n"
      "--=_b\nContent-Type: application/gzip\n"
      "Content-Disposition: attachment;\n filename*0*=utf-8''a%20b;\n filename*1=\"-c.xml\";\n filename*2=.gz\n\nx\n"
      "--=_b\nContent-Type: application/zip\n"
      "Content-Disposition: attachment; filename*=iso-8859-1'fr'caf%E9.zip\n\nx\n"
      "--=_b\nContent-Type: application/zip; name=\"=?UTF-8?B?cmFwcG9ydC56aXA=?=\"\n\nx\n"
      "--=_b\nContent-Type: application/zip\n"
      "Content-Disposition: attachment;\n"
      "  filename=\"=?iso-8859-1?Q?caf=E9_r=2E?= =?utf-8?q?zi?=\n =?utf-8?q?p?=\"\n\nx\n"
      "--=_b\nContent-Type: Application/ZIP (zipped); Name=\"plain name.zip\" (comment)\n\nx\n"
      "--=_b\nContent-Type: application/zip\nContent-Disposition: attachment; filename=bare name.zip\n\nx\n"
      "--=_b\nContent-Type: application/zip\nContent-Disposition: attachment; "
      "filename=\"quo\\\"ted\\\\.zip\"\n\nx\n"
      "--=_b--\n";
  struct walkrec w;
  ASSERT_OK(walk(msg, NULL, &w, NULL, 0));
  ASSERT_STR_EQ(wlog(&w),
                "part 1|application/gzip|r\xc3\xa9port final.xml.gz|1|1|0\n"
                "part 2|application/gzip|a b-c.xml.gz|1|1|0\n"
                "part 3|application/zip|caf\xc3\xa9.zip|1|1|0\n"
                "part 4|application/zip|rapport.zip|1|1|0\n"
                "part 5|application/zip|caf\xc3\xa9 r.zip|1|1|0\n"
                "part 6|application/zip|plain name.zip|1|1|0\n"
                "part 7|application/zip|bare name.zip|1|1|0\n"
                "part 8|application/zip|quo\"ted\\.zip|1|1|0\n");
  walk_free(&w);
}

TEST(test_mime_no_report) {
  const char *msg =
      "Delivered-To: dmarc@example.com\nFrom: spammer@example.net\nSubject: hi\n"
      "Content-Type: multipart/alternative; boundary=zz\n\n"
      "--zz\nContent-Type: text/plain\n\nhello\n"
      "--zz\nContent-Type: text/xml\n\n<?xml version=\"1.0\"?><rss><channel/></rss>\n"
      "--zz\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n"
      "--zz--\n";
  struct rec r;
  rec_init(&r);
  char err[256] = "x";
  ASSERT_OK(rec_run(&r, NULL, msg, strlen(msg), err, sizeof err));
  ASSERT_STR_EQ(err, "");
  ASSERT_STR_EQ(rec_log(&r),
                "note part 1 (text/plain)|not a report, skipped\n"
                "note part 2 (text/xml)|not a report, skipped\n"
                "note part 3 (image/png)|not a report, skipped\n"
                "note |no DMARC report in this message\n");
  rec_free(&r);
  /* a bare header block without a body at all */
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, "Subject: x\n", 11, err, sizeof err));
  ASSERT_STR_EQ(rec_log(&r), "note part 1 (text/plain)|not a report, skipped\n"
                             "note |no DMARC report in this message\n");
  rec_free(&r);
}

TEST(test_mime_folded_headers_and_case) {
  const char *msg =
      "X-Long: a\r\n b\r\n"
      "content-TYPE:\r\n multipart/MIXED;\r\n\tBoundary=\r\n \"fold\"\r\n"
      "\r\n"
      "--fold\r\n"
      "Content-Type: text/plain;\r\n charset=utf-8\r\n"
      "CONTENT-DISPOSITION: attachment;\r\n\tfilename=\r\n\t\"folded.txt\"\r\n"
      "\r\n"
      "body line 1\r\nbody line 2\r\n"
      "--fold--\r\n";
  struct walkrec w;
  ASSERT_OK(walk(msg, NULL, &w, NULL, 0));
  ASSERT_STR_EQ(wlog(&w), "part 1|text/plain|folded.txt|24|1|0\n");
  ASSERT_STR_EQ(w.last.data, "body line 1\r\nbody line 2");
  walk_free(&w);
}

TEST(test_mime_boundary_prefix_and_missing_close) {
  /* "--abc-1" inside part 1 must not end it; the close delimiter is missing */
  const char *msg =
      "Content-Type: multipart/mixed; boundary=abc\n\n"
      "--abc\nContent-Type: text/plain\n\nline\n--abc-1\nmore\n"
      "--abc \nContent-Type: text/plain\n\ncut short";
  struct walkrec w;
  ASSERT_OK(walk(msg, NULL, &w, NULL, 0));
  ASSERT_STR_EQ(wlog(&w), "part 1|text/plain||17|1|0\npart 2|text/plain||9|1|0\n");
  ASSERT_STR_EQ(w.last.data, "cut short");
  walk_free(&w);
  /* a delimiter that never appears: the message as a whole is malformed */
  char err[256];
  ASSERT_EQ(walk("Content-Type: multipart/mixed; boundary=nope\n\nno parts here\n", NULL, &w, err, sizeof err),
            DP_EMIME);
  ASSERT_STR_EQ(err, "multipart boundary \"nope\" never found");
  walk_free(&w);
  struct rec r;
  rec_init(&r);
  const char *bad = "From: a@b\nContent-Type: multipart/mixed; boundary=nope\n\nno parts here\n";
  ASSERT_EQ(rec_run(&r, NULL, bad, strlen(bad), err, sizeof err), DP_EMIME);
  ASSERT_STR_EQ(err, "multipart boundary \"nope\" never found");
  rec_free(&r);
}

TEST(test_mime_bad_base64) {
  const char *msg =
      "From: a@b\nContent-Type: multipart/mixed; boundary=q\n\n"
      "--q\nContent-Type: application/zip; name=r.zip\nContent-Transfer-Encoding: base64\n\n"
      "UEsDBAoAAAAIAP hTTU5+\n28OP!!notbase64\n"
      "--q\nContent-Type: image/gif\nContent-Transfer-Encoding: base64\n\nR0lGOD=lh\n"
      "--q\nContent-Type: application/gzip\nContent-Transfer-Encoding: base64\n\nH4sIA\n"
      "--q\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n"
      "--q--\n";
  struct walkrec w;
  ASSERT_OK(walk(msg, NULL, &w, NULL, 0));
  ASSERT_STR_EQ(wlog(&w),
                "part 1|application/zip|r.zip|0|1|-4008\n  invalid base64: byte 0x21 at offset 26\n"
                "part 2|image/gif||0|1|-4008\n  invalid base64: data after '=' padding at offset 7\n"
                "part 3|application/gzip||0|1|-4008\n  invalid base64: truncated (a lone final symbol)\n"
                "part 4|text/plain||0|1|-4008\n  unsupported Content-Transfer-Encoding x-uuencode\n");
  walk_free(&w);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, msg, strlen(msg), NULL, 0));
  ASSERT_STR_EQ(rec_log(&r),
                "error part 1 (r.zip)|-4008|invalid base64: byte 0x21 at offset 26\n"
                "note part 2 (image/gif)|not a report, skipped (invalid base64: data after '=' padding at offset 7)\n"
                "error part 3 (application/gzip)|-4008|invalid base64: truncated (a lone final symbol)\n"
                "note part 4 (text/plain)|not a report, skipped (unsupported Content-Transfer-Encoding x-uuencode)\n");
  rec_free(&r);
}

/* Every length (each final quantum: 0, 1 or 2 padding symbols) and a big
 * body decode to exactly the bytes encoded, whatever whitespace breaks the
 * lines. */
TEST(test_mime_base64_round_trip) {
  static const char *eols[] = {"\n", "\r\n", " \t\r\n"};
  unsigned char buf[100000];
  uint64_t x = 0x9E3779B97F4A7C15u;
  for (size_t i = 0; i < sizeof buf; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    buf[i] = (unsigned char)x;
  }
  for (size_t len = 0; len <= sizeof buf; len = len < 200 ? len + 1 : len * 5) {
    if (len > sizeof buf) len = sizeof buf;
    const char *eol = eols[len % 3];
    char *enc = b64(buf, len, eol);
    dp_buf_t m;
    dp_buf_init(&m, 0);
    dp_buf_printf(&m, "From: a@b\nContent-Type: multipart/mixed; boundary=q\n\n--q\n"
                      "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
                      "%s--q--\n", enc);
    struct walkrec w;
    ASSERT_OK(walk(m.data, NULL, &w, NULL, 0));
    char want[64];
    snprintf(want, sizeof want, "part 1|application/octet-stream||%zu|1|0\n", len);
    if (strcmp(wlog(&w), want)) fprintf(stderr, "length %zu: %s", len, wlog(&w));
    ASSERT_STR_EQ(wlog(&w), want);
    ASSERT_EQ(w.last.len, len);
    ASSERT_TRUE(len == 0 || memcmp(w.last.data, buf, len) == 0);
    walk_free(&w);
    dp_buf_free(&m);
    free(enc);
    if (len == sizeof buf) break;
  }
}

/* Parameters come from the mail: an RFC 2231 boundary may decode to line
 * breaks, and a message quoting it stays on one line (found by fuzzing). */
TEST(test_mime_reasons_stay_on_one_line) {
  const char *msg =
      "From: a@b\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary*=utf-8''a%0Ab%0D.xml.gz\r\n\r\n"
      "--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n";
  struct rec r;
  rec_init(&r);
  char err[512] = "";
  int rc = rec_run(&r, NULL, msg, strlen(msg), err, sizeof err);
  const char *all = rc ? err : rec_log(&r);
  ASSERT_CONTAINS(all, "multipart boundary \"a?b?.xml.gz\" never found");
  ASSERT_TRUE(strchr(rc ? err : "", '\n') == NULL && strchr(all, '\r') == NULL);
  rec_free(&r);
}

TEST(test_mime_digest_and_no_content_type) {
  const char *msg =
      "Subject: digest\nContent-Type: multipart/digest; boundary=d\n\n"
      "--d\n\nSubject: one\n\nfirst\n"
      "--d\nContent-Type: text/plain\n\nsecond\n"
      "--d--\n";
  struct walkrec w;
  ASSERT_OK(walk(msg, NULL, &w, NULL, 0));
  ASSERT_STR_EQ(wlog(&w), "part 1 (message) > part 1|text/plain||5|2|0\npart 2|text/plain||6|1|0\n");
  walk_free(&w);
}

TEST(test_mime_xml_needs_feedback) {
  const char *msg =
      "From: a@b\nContent-Type: multipart/mixed; boundary=f\n\n"
      "--f\nContent-Type: text/plain\n\n<?xml version=\"1.0\"?>\n<dmarc:feedback xmlns:dmarc=\"x\"/>\n"
      "--f\nContent-Type: application/xml\n\n<?xml version=\"1.0\"?><note>no</note>\n"
      "--f--\n";
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, msg, strlen(msg), NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin part 1 (text/plain)\nend 0 \n"
                             "note part 2 (application/xml)|not a report, skipped\n");
  rec_free(&r);
}

/* Only a part whose root element is <feedback> is taken for a report: an
 * HTML newsletter with a mailto:feedback@ link is skipped (it was refused
 * as a broken report), while a report with a prolog (DOCTYPE with an
 * internal subset holding '>', comments, a prefix) is found. */
TEST(test_mime_feedback_must_be_the_root) {
  const char *msg =
      "From: a@b\nContent-Type: multipart/mixed; boundary=f\n\n"
      "--f\nContent-Type: text/html\n\n<!DOCTYPE html><html><body>"
      "<a href=\"mailto:feedback@shop.example\">write to us</a></body></html>\n"
      "--f\nContent-Type: text/xml\n\n<?xml version=\"1.0\"?><!-- <feedback> --><rss/>\n"
      "--f\nContent-Type: text/xml\n\n<?xml version=\"1.0\"?><!DOCTYPE feedback [<!ENTITY a "
      "\">\">]>"
      "<!-- a comment -- with dashes --><?pi x?><X:Feedback xmlns:X=\"urn:x\"/>\n"
      "--f--\n";
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, msg, strlen(msg), NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "note part 1 (text/html)|not a report, skipped\n"
                             "note part 2 (text/xml)|not a report, skipped\n"
                             "begin part 3 (text/xml)\nend 0 \n");
  rec_free(&r);
}

/* Text that begins with a valid two-byte zlib header ("HK", "x^") is text;
 * a part named or typed as a compressed report that is not one (garbage,
 * empty) is refused, not skipped: it was a report, damaged on its way. */
TEST(test_mime_declared_reports_that_are_not) {
  const char *msg =
      "From: a@b\nContent-Type: multipart/mixed; boundary=f\n\n"
      "--f\nContent-Type: text/plain\n\nHKEX closed higher today.\n"
      "--f\nContent-Type: text/plain\n\nx^2 + y^2\n"
      "--f\nContent-Type: application/gzip\n\nthis is not gzip\n"
      "--f\nContent-Type: application/octet-stream; name=\"google.com!example.com!1!2.zip\"\n\n"
      "plain words\n"
      "--f\nContent-Type: application/octet-stream; name=\"r.xml.gz\"\n\n"
      "--f\nContent-Type: application/octet-stream; name=\"notes.txt\"\n\nplain words\n"
      "--f--\n";
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, msg, strlen(msg), NULL, 0));
  ASSERT_STR_EQ(
      rec_log(&r),
      "note part 1 (text/plain)|not a report, skipped\n"
      "note part 2 (text/plain)|not a report, skipped\n"
      "error part 3 (application/gzip)|-4004|declared a report by its name or type, but its "
      "content is no report format (XML, gzip, zip, zlib)\n"
      "error part 4 (google.com!example.com!1!2.zip)|-4004|declared a report by its name or "
      "type, but its content is no report format (XML, gzip, zip, zlib)\n"
      "error part 5 (r.xml.gz)|-4004|declared a report by its name or type, but it is empty\n"
      "note part 6 (notes.txt)|not a report, skipped\n");
  rec_free(&r);
}

TEST(test_mime_real_mails) {
  static const char *files[] = {
      "domainaware_parsedmarc/twilight.eml",
      "domainaware_parsedmarc/mimecast-weird-gzip.eml",
      "opus-codium_email-report-processor/report.elm",
  };
  static const char *want[] = {
      "begin part 1 (google.com!twlnet.com!1549756800!1549843199.zip) > entry "
      "google.com!twlnet.com!1549756800!1549843199.xml\nend 0 \n"
      "note part 2 (text/plain)|not a report, skipped\n",
      "begin part 1 (mimecast.org!ab.id.au!1693353600!1693439999!"
      "157a5fe30ec76f4bc0d8bccfc96c118a167a1280fee7c7465af5115e73082e5e.xml.gz)\nend 0 \n",
      "begin part 1 (google.com!example.com!1705363200!1705449599.zip) > entry "
      "google.com!example.com!1705363200!1705449599.xml\nend 0 \n",
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/corpus/real/%s", dp_test_shared_dir(), files[i]);
    size_t n;
    unsigned char *p = read_file(path, &n);
    ASSERT_NOT_NULL(p);
    struct rec r;
    rec_init(&r);
    ASSERT_OK(rec_run(&r, NULL, p, n, NULL, 0));
    ASSERT_STR_EQ(rec_log(&r), want[i]);
    ASSERT_CONTAINS(r.data.data, "</feedback>");
    rec_free(&r);
    free(p);
  }
}

TEST(test_mime_mail_inside_gzip) {
  char *msg = mail_with_zip("\r\n", NULL);
  size_t gn;
  unsigned char *g = make_gzip(msg, strlen(msg), &gn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, g, gn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "note part 1 (text/plain)|not a report, skipped\n"
                             "begin part 2 (google.com!example.com!1700000000!1700086399.zip) > entry r.xml\n"
                             "end 0 \n");
  rec_free(&r);
  free(g);
  free(msg);
}

TEST(test_mime_long_filename_is_cut) {
  dp_buf_t m;
  dp_buf_init(&m, 0);
  dp_buf_puts(&m, "From: a@b\nContent-Type: application/zip\nContent-Disposition: attachment;\n"
                  " filename*=iso-8859-1''");
  for (int i = 0; i < 5000; i++) dp_buf_puts(&m, "%E9");
  dp_buf_puts(&m, "\n\nx\n");
  struct walkrec w;
  ASSERT_OK(walk(m.data, NULL, &w, NULL, 0));
  /* 5000 x e-acute is 10000 bytes of UTF-8: cut to 127 whole characters (254 bytes) */
  dp_buf_t want;
  dp_buf_init(&want, 0);
  dp_buf_puts(&want, "part 1|application/zip|");
  for (int i = 0; i < 127; i++) dp_buf_puts(&want, "\xc3\xa9");
  dp_buf_puts(&want, "|2|1|0\n");
  ASSERT_STR_EQ(wlog(&w), want.data);
  dp_buf_free(&want);
  walk_free(&w);
  dp_buf_free(&m);
}
