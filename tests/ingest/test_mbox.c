/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_mbox.c - mbox: the "From " separator line (and what must
 * never pass for one), sniffing, splitting with exact message bytes, mboxrd
 * un-escaping (copied only then), and dp_unpack of an mbox: part names,
 * notes for messages without a report, nesting as for loose messages. */
#include "../test.h"

#include "ingest/unpack_int.h"
#include "unpack_test_util.h"

#define FROMLINE(lit) dp_mbox_from_line(lit, sizeof(lit) - 1)
#define SNIFF(lit) dp_sniff(lit, sizeof(lit) - 1)

TEST(test_mbox_from_line) {
  ASSERT_EQ(FROMLINE("From a@b.example Mon Jan  1 00:00:00 2024"), 1);
  ASSERT_EQ(FROMLINE("From MAILER-DAEMON Thu Nov 13 10:00:00 2023\r"), 1);
  ASSERT_EQ(FROMLINE("From - Mon Nov 13 10:00:00 2023"), 1);                  /* Thunderbird */
  ASSERT_EQ(FROMLINE("From 17828374@xxx Mon Nov 13 10:00:00 +0000 2023"), 1); /* Gmail takeout */
  ASSERT_EQ(FROMLINE("From a@b Mon, 13 Nov 2023 9:05 +0000"), 1);
  ASSERT_EQ(FROMLINE("From: a@b Mon Jan  1 00:00:00 2024"), 0);  /* a header field */
  ASSERT_EQ(FROMLINE("From : a@b Mon Jan  1 00:00:00 2024"), 0); /* old-style header */
  ASSERT_EQ(FROMLINE("From the desk of the postmaster"), 0);     /* prose */
  ASSERT_EQ(FROMLINE("From a@b Mon Jan  1 2024"), 0);            /* no time */
  ASSERT_EQ(FROMLINE("From a@b 10:00:00"), 0);                   /* no year */
  ASSERT_EQ(FROMLINE("From a@b"), 0);
  ASSERT_EQ(FROMLINE("From  Mon Jan  1 00:00:00 2024"), 0); /* no sender token */
  ASSERT_EQ(FROMLINE(">From a@b Mon Jan  1 00:00:00 2024"), 0);
  ASSERT_EQ(FROMLINE("from a@b Mon Jan  1 00:00:00 2024"), 0);
}

TEST(test_mbox_sniff) {
  ASSERT_EQ(SNIFF("From a@b Mon Jan  1 00:00:00 2024\nReturn-Path: <a@b>\nSubject: x\n\nbody\n"),
            DP_KIND_MBOX);
  ASSERT_EQ(SNIFF("From a@b Mon Jan  1 00:00:00 2024\r\nFrom: a@b\r\n"), DP_KIND_MBOX);
  ASSERT_EQ(SNIFF("From a@b Mon Jan  1 00:00:00 2024\nSubj"), DP_KIND_MBOX); /* next line cut */
  ASSERT_EQ(SNIFF("From: a@b\nSubject: x\n\nbody\n"), DP_KIND_MAIL);
  ASSERT_EQ(SNIFF("From : a@b\nSubject: x\n\n"), DP_KIND_MAIL);
  ASSERT_EQ(SNIFF("From a@b Mon Jan  1 00:00:00 2024\nthis is prose, not a header\n"),
            DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("From the desk of the postmaster\nSubject: x\n"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("From a@b Mon Jan  1 00:00:00 2024"), DP_KIND_UNKNOWN); /* line never ends */
}

/* What dp_mbox_split delivered: "index|bytes" per message, and whether each
 * message was sliced from the input. */
struct split_log {
  dp_buf_t log;
  const char *base;
  size_t baselen;
  int sliced[16];
  size_t n;
  int stop_at;
};

static int split_cb(void *ud, size_t index, const char *msg, size_t n) {
  struct split_log *s = ud;
  if (s->n < 16) s->sliced[s->n] = msg >= s->base && msg + n <= s->base + s->baselen;
  s->n++;
  dp_buf_printf(&s->log, "%zu|%.*s~", index, (int)n, msg);
  return s->stop_at && (int)index == s->stop_at ? 42 : 0;
}

static const char *split(struct split_log *s, const char *mbox, int stop_at) {
  memset(s, 0, sizeof *s);
  dp_buf_init(&s->log, 0);
  s->base = mbox;
  s->baselen = strlen(mbox);
  s->stop_at = stop_at;
  int rc = dp_mbox_split(mbox, strlen(mbox), split_cb, s);
  dp_buf_printf(&s->log, "rc=%d", rc);
  return s->log.data;
}

TEST(test_mbox_split_messages) {
  struct split_log s;
  const char *mbox = "From a@b Mon Jan  1 00:00:00 2024\n"
                     "Subject: one\n\nbody one\nFrom inside a paragraph, not after a blank line\n\n"
                     "From c@d Mon Jan  1 00:00:01 2024\n"
                     "Subject: two\n\nFrom the desk of nobody (no date: prose)\n\n"
                     "From e@f Mon Jan  1 00:00:02 2024\n"
                     "Subject: three\n\nlast\n\n";
  ASSERT_STR_EQ(split(&s, mbox, 0),
                "1|Subject: one\n\nbody one\nFrom inside a paragraph, not after a blank line\n~"
                "2|Subject: two\n\nFrom the desk of nobody (no date: prose)\n~"
                "3|Subject: three\n\nlast\n~rc=0");
  ASSERT_EQ(s.n, 3);
  ASSERT_EQ(s.sliced[0] && s.sliced[1] && s.sliced[2], 1); /* nothing copied */
  dp_buf_free(&s.log);

  /* a callback's non-zero value stops the split and is returned */
  ASSERT_STR_EQ(split(&s, mbox, 2),
                "1|Subject: one\n\nbody one\nFrom inside a paragraph, not after a blank line\n~"
                "2|Subject: two\n\nFrom the desk of nobody (no date: prose)\n~rc=42");
  dp_buf_free(&s.log);
}

TEST(test_mbox_split_crlf_and_edges) {
  struct split_log s;
  ASSERT_STR_EQ(split(&s,
                      "From a@b Mon Jan  1 00:00:00 2024\r\nSubject: x\r\n\r\nb\r\n\r\n"
                      "From a@b Mon Jan  1 00:00:00 2024\r\nSubject: y\r\n\r\nc\r\n\r\n",
                      0),
                "1|Subject: x\r\n\r\nb\r\n~2|Subject: y\r\n\r\nc\r\n~rc=0");
  dp_buf_free(&s.log);
  /* no final blank line, and a separator with no message after it */
  ASSERT_STR_EQ(split(&s,
                      "From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nb\n\n"
                      "From a@b Mon Jan  1 00:00:00 2024\n",
                      0),
                "1|Subject: x\n\nb\n~2|~rc=0");
  dp_buf_free(&s.log);
  ASSERT_STR_EQ(split(&s, "", 0), "rc=0");
  dp_buf_free(&s.log);
}

TEST(test_mbox_split_unescapes_mboxrd) {
  struct split_log s;
  const char *mbox = "From a@b Mon Jan  1 00:00:00 2024\n"
                     "Subject: q\n\n>From me\n>>From you\n> From not quoted\n>Fromage\nend\n\n"
                     "From a@b Mon Jan  1 00:00:00 2024\nSubject: plain\n\nx\n";
  ASSERT_STR_EQ(split(&s, mbox, 0),
                "1|Subject: q\n\nFrom me\n>From you\n> From not quoted\n>Fromage\nend\n~"
                "2|Subject: plain\n\nx\n~rc=0");
  ASSERT_EQ(s.sliced[0], 0); /* un-escaped: a copy of that message */
  ASSERT_EQ(s.sliced[1], 1); /* the next one is sliced again */
  dp_buf_free(&s.log);
}

/* An mbox of three messages: a zip report, a newsletter, a gzip report. */
static char *make_mbox(size_t *outn) {
  char *x1 = make_report("r1"), *x2 = make_report("r2");
  size_t zn, gn;
  struct zentry ze = {"r1.xml", x1, strlen(x1), 0};
  unsigned char *z = make_zip(&ze, 1, &zn);
  unsigned char *g = make_gzip(x2, strlen(x2), &gn);
  char *zb = malloc(zn * 2 + 8), *gb = malloc(gn * 2 + 8);
  /* base64 by hand: the test must not depend on the code under test */
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *src[2] = {z, g};
  size_t len[2] = {zn, gn};
  char *dst[2] = {zb, gb};
  for (int k = 0; k < 2; k++) {
    size_t o = 0;
    for (size_t i = 0; i < len[k]; i += 3) {
      unsigned v = (unsigned)src[k][i] << 16;
      if (i + 1 < len[k]) v |= (unsigned)src[k][i + 1] << 8;
      if (i + 2 < len[k]) v |= src[k][i + 2];
      dst[k][o++] = a[(v >> 18) & 63];
      dst[k][o++] = a[(v >> 12) & 63];
      dst[k][o++] = i + 1 < len[k] ? a[(v >> 6) & 63] : '=';
      dst[k][o++] = i + 2 < len[k] ? a[v & 63] : '=';
    }
    dst[k][o] = '\0';
  }
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_printf(&b,
                "From noreply@google.com Mon Jan  1 00:00:00 2024\n"
                "From: noreply@google.com\nSubject: Report\nMIME-Version: 1.0\n"
                "Content-Type: multipart/mixed; boundary=\"b1\"\n\n"
                "--b1\nContent-Type: text/plain\n\nhello\n\n>From the team\n"
                "--b1\nContent-Type: application/zip; name=\"r1.zip\"\n"
                "Content-Transfer-Encoding: base64\n\n%s\n--b1--\n\n"
                "From news@shop.example Mon Jan  1 00:00:01 2024\n"
                "From: news@shop.example\nSubject: sale\n\nbuy now\n\n"
                "From dmarc@ms.example Mon Jan  1 00:00:02 2024\n"
                "From: dmarc@ms.example\nSubject: Report\nMIME-Version: 1.0\n"
                "Content-Type: application/gzip; name=\"r2.xml.gz\"\n"
                "Content-Transfer-Encoding: base64\n\n%s\n\n",
                zb, gb);
  free(x1);
  free(x2);
  free(z);
  free(g);
  free(zb);
  free(gb);
  return dp_buf_steal(&b, outn);
}

TEST(test_mbox_unpack_parts_and_notes) {
  size_t n;
  char *mbox = make_mbox(&n);
  ASSERT_EQ(dp_sniff(mbox, n < 512 ? n : 512), DP_KIND_MBOX);
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_OK(rec_run(&r, NULL, mbox, n, err, sizeof err));
  ASSERT_STR_EQ(rec_log(&r), "note message 1 > part 1 (text/plain)|not a report, skipped\n"
                             "begin message 1 > part 2 (r1.zip) > entry r1.xml\n"
                             "end 0 \n"
                             "note message 2 > part 1 (text/plain)|not a report, skipped\n"
                             "note message 2|no DMARC report in this message\n"
                             "begin message 3 > part 1 (r2.xml.gz)\n"
                             "end 0 \n");
  ASSERT_EQ(r.docs_ok, 2);
  ASSERT_EQ(r.errors, 0);
  ASSERT_CONTAINS(r.data.data, "<report_id>r2</report_id>");
  rec_free(&r);

  /* the same mbox gzipped: messages keep their names, the gzip adds none */
  size_t gn;
  unsigned char *g = make_gzip(mbox, n, &gn);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, g, gn, err, sizeof err));
  ASSERT_EQ(r.docs_ok, 2);
  ASSERT_CONTAINS(rec_log(&r), "begin message 3 > part 1 (r2.xml.gz)\n");
  rec_free(&r);
  free(g);
  free(mbox);
}

/* An mbox is not a container: a message nests in it exactly as it does in a
 * loose file, so the two load under the same max_nesting. */
TEST(test_mbox_nesting_as_loose_message) {
  size_t n;
  char *mbox = make_mbox(&n);
  const char *m3 = strstr(mbox, "From dmarc@ms.example");
  m3 = strchr(m3, '\n') + 1;
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_nesting = 2; /* mail > gzip > xml */
  struct rec r;
  char err[256];
  rec_init(&r);
  ASSERT_OK(rec_run(&r, &lim, m3, strlen(m3), err, sizeof err));
  ASSERT_EQ(r.docs_ok, 1);
  rec_free(&r);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, &lim, mbox, n, err, sizeof err));
  ASSERT_EQ(r.docs_ok, 2); /* were the mbox a level, the zip and gzip would be refused */
  ASSERT_EQ(r.errors, 0);
  rec_free(&r);
  lim.max_nesting = 1; /* the message itself, but nothing inside it */
  rec_init(&r);
  ASSERT_OK(rec_run(&r, &lim, mbox, n, err, sizeof err));
  ASSERT_EQ(r.docs, 0);
  char want[160];
  snprintf(want, sizeof want,
           "error message 3 > part 1 (r2.xml.gz)|%d|nesting limit exceeded: gzip inside 1 "
           "containers (limit 1)\n",
           DP_ELIMIT);
  ASSERT_CONTAINS(rec_log(&r), want);
  rec_free(&r);
  free(mbox);
}

TEST(test_mbox_broken_message_does_not_stop_the_rest) {
  const char *mbox = "From a@b Mon Jan  1 00:00:00 2024\n"
                     "Content-Type: multipart/mixed; boundary=\"nope\"\n\nno delimiter here\n\n"
                     "From a@b Mon Jan  1 00:00:00 2024\n"
                     "Content-Type: text/xml\n\n<feedback><report_metadata/></feedback>\n";
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_OK(rec_run(&r, NULL, mbox, strlen(mbox), err, sizeof err));
  char want[200];
  snprintf(want, sizeof want,
           "error message 1|%d|multipart boundary \"nope\" never found\n"
           "begin message 2 > part 1 (text/xml)\n"
           "end 0 \n",
           DP_EMIME);
  ASSERT_STR_EQ(rec_log(&r), want);
  rec_free(&r);
}
