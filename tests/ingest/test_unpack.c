/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_unpack.c - dp_unpack: plain XML, gzip (multi-member,
 * nested, truncated, trailing junk, bad CRC), zlib, zip (several entries,
 * directories, gzip inside, bad CRC, entry cap), size/ratio/nesting limits,
 * callback aborts, and the shared real and hostile corpora. */
#define _GNU_SOURCE /* memmem */
#include "../test.h"
#include "unpack_test_util.h"

#include <pthread.h>
#include <time.h>

/* ---- plain XML ---------------------------------------------------------- */

TEST(test_unpack_xml_plain) {
  char *x = make_report("r1");
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_OK(rec_run(&r, NULL, x, strlen(x), err, sizeof err));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n");
  ASSERT_EQ(r.data.len, strlen(x));
  ASSERT_TRUE(memcmp(r.data.data, x, strlen(x)) == 0);
  ASSERT_FALSE(r.bad_order);
  rec_free(&r);
  free(x);
}

TEST(test_unpack_xml_streams_in_chunks) {
  size_t n;
  char *x = make_big_report(300 * 1024, &n);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, x, n, NULL, 0));
  ASSERT_EQ(r.docs_ok, 1);
  ASSERT_EQ(r.data.len, n);
  ASSERT_TRUE(memcmp(r.data.data, x, n) == 0);
  ASSERT_EQ(r.max_chunk, 64 * 1024); /* never the whole document at once */
  rec_free(&r);
  free(x);
}

TEST(test_unpack_empty_and_unknown) {
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_EQ(rec_run(&r, NULL, "", 0, err, sizeof err), DP_EFORMAT);
  ASSERT_STR_EQ(err, "empty input");
  static const unsigned char png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13};
  ASSERT_EQ(rec_run(&r, NULL, png, sizeof png, err, sizeof err), DP_EFORMAT);
  ASSERT_STR_EQ(err, "not XML, gzip, zip, zlib or a mail message (starts with 89 50 4e 47 0d 0a 1a 0a)");
  ASSERT_EQ(rec_run(&r, NULL, "%PDF", 4, err, sizeof err), DP_EFORMAT);
  ASSERT_STR_EQ(err, "not XML, gzip, zip, zlib or a mail message (starts with 25 50 44 46)");
  ASSERT_EQ(r.docs, 0);
  ASSERT_EQ(r.errors, 0);
  rec_free(&r);
}

TEST(test_unpack_input_size_limit) {
  char *x = make_report("r1");
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_input_size = 100;
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_EQ(rec_run(&r, &lim, x, strlen(x), err, sizeof err), DP_ELIMIT);
  ASSERT_CONTAINS(err, "over the input size limit of 100 bytes");
  ASSERT_EQ(r.docs, 0);
  rec_free(&r);
  free(x);
}

/* ---- gzip --------------------------------------------------------------- */

TEST(test_unpack_gzip_single) {
  size_t n, gn;
  char *x = make_big_report(200 * 1024, &n);
  unsigned char *gz = make_gzip(x, n, &gn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, gz, gn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n");
  ASSERT_EQ(r.data.len, n);
  ASSERT_TRUE(memcmp(r.data.data, x, n) == 0);
  ASSERT_TRUE(r.max_chunk <= 64 * 1024);
  rec_free(&r);
  free(gz);
  free(x);
}

TEST(test_unpack_gzip_multi_member_is_one_stream) {
  char *x = make_report("multi");
  size_t n = strlen(x), half = n / 2, an, bn;
  unsigned char *a = make_gzip(x, half, &an), *b = make_gzip(x + half, n - half, &bn);
  unsigned char *both = malloc(an + bn);
  memcpy(both, a, an);
  memcpy(both + an, b, bn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, both, an + bn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n");
  ASSERT_EQ(r.data.len, n);
  ASSERT_TRUE(memcmp(r.data.data, x, n) == 0);
  rec_free(&r);
  free(both);
  free(a);
  free(b);
  free(x);
}

TEST(test_unpack_gzip_nested) {
  char *x = make_report("nested");
  size_t n = strlen(x), g1n, g2n;
  unsigned char *g1 = make_gzip(x, n, &g1n);
  unsigned char *g2 = make_gzip(g1, g1n, &g2n);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, g2, g2n, NULL, 0));
  ASSERT_EQ(r.docs_ok, 1);
  ASSERT_EQ(r.data.len, n);
  ASSERT_TRUE(memcmp(r.data.data, x, n) == 0);
  rec_free(&r);
  free(g1);
  free(g2);
  free(x);
}

TEST(test_unpack_gzip_truncated) {
  size_t n, gn;
  char *x = make_big_report(200 * 1024, &n);
  unsigned char *gz = make_gzip(x, n, &gn);
  struct rec r;
  rec_init(&r);
  char err[256] = "x";
  ASSERT_OK(rec_run(&r, NULL, gz, gn / 2, err, sizeof err));
  ASSERT_STR_EQ(err, "");
  ASSERT_EQ(r.docs, 1);
  ASSERT_EQ(r.docs_failed, 1);
  ASSERT_CONTAINS(rec_log(&r), "end -4005 gzip stream truncated after ");
  ASSERT_CONTAINS(rec_log(&r), " KiB of output\n");
  /* cut inside the 10-byte header: nothing came out, the input is refused */
  rec_free(&r);
  rec_init(&r);
  ASSERT_EQ(rec_run(&r, NULL, gz, 5, err, sizeof err), DP_EGZIP);
  ASSERT_STR_EQ(err, "gzip stream truncated after 0 bytes of output");
  ASSERT_EQ(r.docs, 0);
  rec_free(&r);
  free(gz);
  free(x);
}

TEST(test_unpack_gzip_trailing_junk) {
  char *x = make_report("junk");
  size_t n = strlen(x), gn;
  unsigned char *gz = make_gzip(x, n, &gn);
  unsigned char *buf = malloc(gn + 16);
  memcpy(buf, gz, gn);
  memcpy(buf + gn, "\r\n", 2); /* a mail gateway's CRLF: silently ignored */
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, buf, gn + 2, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n");
  ASSERT_EQ(r.data.len, n);
  rec_free(&r);
  memcpy(buf + gn, "garbage!", 8); /* real junk: kept out of the document, noted */
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, buf, gn + 8, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n"
                             "note |gzip: 8 bytes of trailing data after the compressed stream ignored\n");
  ASSERT_EQ(r.data.len, n);
  rec_free(&r);
  buf[gn] = 0x1f; /* a lone byte that could have started a member */
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, buf, gn + 1, NULL, 0));
  ASSERT_EQ(r.docs_ok, 1);
  ASSERT_EQ(r.notes, 1);
  rec_free(&r);
  free(buf);
  free(gz);
  free(x);
}

TEST(test_unpack_gzip_bad_crc) {
  char *x = make_report("crc");
  size_t n = strlen(x), gn;
  unsigned char *gz = make_gzip(x, n, &gn);
  gz[gn - 8] ^= 0x55; /* first byte of the CRC-32 trailer */
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, gz, gn, NULL, 0));
  ASSERT_EQ(r.docs_failed, 1);
  char want[128];
  snprintf(want, sizeof want, "end -4005 gzip: CRC mismatch after %zu bytes of output\n", n);
  ASSERT_CONTAINS(rec_log(&r), want);
  /* a bad length in the trailer */
  gz[gn - 8] ^= 0x55;
  gz[gn - 4] ^= 0x01;
  rec_free(&r);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, gz, gn, NULL, 0));
  ASSERT_CONTAINS(rec_log(&r), "end -4005 gzip: length mismatch in the trailer");
  rec_free(&r);
  free(gz);
  free(x);
}

TEST(test_unpack_gzip_corrupt_header) {
  static const unsigned char bad[] = {0x1f, 0x8b, 0x08, 0xe0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4};
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_EQ(rec_run(&r, NULL, bad, sizeof bad, err, sizeof err), DP_EGZIP);
  ASSERT_STR_EQ(err, "gzip: corrupt data (unknown header flags set) after 0 bytes of output");
  ASSERT_EQ(r.docs, 0);
  rec_free(&r);
}

TEST(test_unpack_gzip_not_xml_inside) {
  static const char txt[] = "just some text, not a report\n";
  size_t gn;
  unsigned char *gz = make_gzip(txt, sizeof txt - 1, &gn);
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_EQ(rec_run(&r, NULL, gz, gn, err, sizeof err), DP_EFORMAT);
  ASSERT_STR_EQ(err, "not XML, gzip, zip, zlib or a mail message (starts with 6a 75 73 74 20 73 6f 6d)");
  rec_free(&r);
  free(gz);
}

/* ---- zlib --------------------------------------------------------------- */

TEST(test_unpack_zlib) {
  size_t n, zn;
  char *x = make_big_report(100 * 1024, &n);
  unsigned char *z = make_zlib(x, n, &zn);
  ASSERT_EQ(dp_sniff(z, zn), DP_KIND_ZLIB);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, z, zn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n");
  ASSERT_EQ(r.data.len, n);
  ASSERT_TRUE(memcmp(r.data.data, x, n) == 0);
  rec_free(&r);
  /* truncated and corrupt zlib */
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, z, zn - 10, NULL, 0));
  ASSERT_CONTAINS(rec_log(&r), "end -4007 zlib stream truncated after ");
  rec_free(&r);
  z[zn - 1] ^= 0xff; /* Adler-32 */
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, z, zn, NULL, 0));
  ASSERT_CONTAINS(rec_log(&r), "end -4007 zlib: Adler-32 checksum mismatch after 100 KiB of output");
  rec_free(&r);
  free(z);
  free(x);
}

/* ---- zip ---------------------------------------------------------------- */

TEST(test_unpack_zip_entries_dirs_and_junk) {
  char *a = make_report("a"), *b = make_report("b");
  static const char txt[] = "readme text";
  struct zentry e[] = {
      {"a.xml", a, strlen(a), 0},
      {"sub/", NULL, 0, 0},
      {"sub/b.xml", b, strlen(b), 1},
      {"notes.txt", txt, sizeof txt - 1, 0},
      {"__MACOSX/._a.xml", txt, sizeof txt - 1, 0},
      {"sub/._b.xml", txt, sizeof txt - 1, 0},
      {".DS_Store", txt, sizeof txt - 1, 0},
  };
  size_t zn;
  unsigned char *z = make_zip(e, 7, &zn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, z, zn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r),
                "begin entry a.xml\nend 0 \n"
                "note entry sub/|directory, skipped\n"
                "begin entry sub/b.xml\nend 0 \n"
                "error entry notes.txt|-4004|not XML, gzip, zip, zlib or a mail message "
                "(starts with 72 65 61 64 6d 65 20 74)\n"
                "note entry __MACOSX/._a.xml|macOS metadata, skipped\n"
                "note entry sub/._b.xml|macOS metadata, skipped\n"
                "note entry .DS_Store|macOS metadata, skipped\n");
  ASSERT_EQ(r.data.len, strlen(b));
  ASSERT_TRUE(memcmp(r.data.data, b, strlen(b)) == 0);
  rec_free(&r);
  free(z);
  free(a);
  free(b);
}

/* Entry names come from the archive: a line break in one stays out of the
 * part name and the reasons that quote it (dp_term_copy). */
TEST(test_unpack_zip_entry_name_on_one_line) {
  static const char txt[] = "readme text";
  struct zentry e[] = {{"a\nfake line\r\x7f.txt", txt, sizeof txt - 1, 0}};
  size_t zn;
  unsigned char *z = make_zip(e, 1, &zn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, z, zn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "error entry a?fake line??.txt|-4004|not XML, gzip, zip, zlib or a "
                             "mail message (starts with 72 65 61 64 6d 65 20 74)\n");
  rec_free(&r);
  free(z);
}

TEST(test_unpack_gzip_in_zip_and_zip_in_gzip) {
  char *a = make_report("a");
  size_t gn, zn, z2n, ggn;
  unsigned char *g = make_gzip(a, strlen(a), &gn);
  struct zentry e[] = {{"r.xml.gz", g, gn, 0}};
  unsigned char *z = make_zip(e, 1, &zn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, z, zn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin entry r.xml.gz\nend 0 \n");
  ASSERT_EQ(r.data.len, strlen(a));
  rec_free(&r);

  struct zentry e2[] = {{"x.xml", a, strlen(a), 0}, {"y.xml", a, strlen(a), 1}};
  unsigned char *z2 = make_zip(e2, 2, &z2n);
  unsigned char *gg = make_gzip(z2, z2n, &ggn);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, gg, ggn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin entry x.xml\nend 0 \nbegin entry y.xml\nend 0 \n");
  rec_free(&r);
  free(gg);
  free(z2);
  free(z);
  free(g);
  free(a);
}

TEST(test_unpack_zip_bad_crc_then_next_entry) {
  size_t bn;
  char *a = make_report("crc-a"), *b = make_big_report(200 * 1024, &bn), *c = make_report("crc-c");
  memcpy(b + bn - 40, "crc-b", 5);
  struct zentry e[] = {{"r.xml", a, strlen(a), 1}, {"big.xml", b, bn, 1}, {"s.xml", c, strlen(c), 1}};
  size_t zn;
  unsigned char *z = make_zip(e, 3, &zn);
  /* stored entries: change one byte of the data, the CRC no longer matches */
  unsigned char *hit = memmem(z, zn, "crc-a", 5);
  ASSERT_NOT_NULL(hit);
  hit[0] = 'C';
  hit = memmem(z, zn, "crc-b", 5);
  ASSERT_NOT_NULL(hit);
  hit[0] = 'C';
  struct rec r;
  rec_init(&r);
  r.ret_end = 42;
  r.end_ret_only_ok = 1; /* keep going after a bad document */
  ASSERT_EQ(rec_run(&r, NULL, z, zn, NULL, 0), 42); /* stops at the good one */
  /* libzip checks the CRC in the read that reaches the end: the document
   * has begun and ends with the reason, small or big */
  ASSERT_STR_EQ(rec_log(&r), "begin entry r.xml\nend -4006 zip entry r.xml: CRC mismatch\n"
                             "begin entry big.xml\nend -4006 zip entry big.xml: CRC mismatch\n"
                             "begin entry s.xml\nend 0 \n");
  rec_free(&r);
  free(z);
  free(a);
  free(b);
  free(c);
}

TEST(test_unpack_zip_entry_cap_before_reading) {
  char *a = make_report("cap");
  struct zentry e[5];
  const char *names[] = {"1.xml", "2.xml", "3.xml", "4.xml", "5.xml"};
  for (int i = 0; i < 5; i++) e[i] = (struct zentry){names[i], a, strlen(a), 0};
  size_t zn;
  unsigned char *z = make_zip(e, 5, &zn);
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_zip_entries = 4;
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_EQ(rec_run(&r, &lim, z, zn, err, sizeof err), DP_ELIMIT);
  ASSERT_STR_EQ(err, "zip archive has 5 entries, over the limit of 4");
  ASSERT_EQ(r.docs, 0);
  lim.max_zip_entries = 5;
  ASSERT_OK(rec_run(&r, &lim, z, zn, err, sizeof err));
  ASSERT_EQ(r.docs_ok, 5);
  rec_free(&r);
  free(z);
  free(a);
}

TEST(test_unpack_zip_broken_and_empty) {
  static const unsigned char empty[22] = {'P', 'K', 5, 6};
  struct rec r;
  rec_init(&r);
  char err[256];
  ASSERT_EQ(rec_run(&r, NULL, empty, sizeof empty, err, sizeof err), DP_EZIP);
  ASSERT_STR_EQ(err, "zip archive is empty (no entries)");
  static const unsigned char cut[] = {'P', 'K', 3, 4, 20, 0, 0, 0, 8, 0};
  ASSERT_EQ(rec_run(&r, NULL, cut, sizeof cut, err, sizeof err), DP_EZIP);
  ASSERT_STR_EQ(err, "zip: not a valid zip archive (no central directory)");
  ASSERT_EQ(r.docs, 0);
  rec_free(&r);
}

/* ---- limits ------------------------------------------------------------- */

/* n bytes of whitespace after an XML declaration: compresses ~1000:1. */
static unsigned char *bomb(size_t n, size_t *gn) {
  char *x = malloc(n);
  memset(x, ' ', n);
  memcpy(x, "<?xml version=\"1.0\"?><feedback>", 31);
  unsigned char *g = make_gzip(x, n, gn);
  free(x);
  return g;
}

TEST(test_unpack_ratio_limit) {
  size_t gn;
  unsigned char *g = bomb(8u << 20, &gn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, g, gn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend -4003 gzip: decompressed size exceeds ratio limit 250:1 after 1.0 MiB\n");
  ASSERT_TRUE(r.data.len < (1u << 20)); /* stopped right at the floor */
  rec_free(&r);
  /* below the 1 MiB floor the ratio does not matter */
  free(g);
  g = bomb(900 * 1024, &gn);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, g, gn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n");
  rec_free(&r);
  free(g);
}

TEST(test_unpack_ratio_limit_in_zip_entry) {
  size_t n = 4u << 20, zn;
  char *x = malloc(n);
  memset(x, ' ', n);
  memcpy(x, "<feedback>", 10);
  struct zentry e[] = {{"bomb.xml", x, n, 0}};
  unsigned char *z = make_zip(e, 1, &zn);
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, NULL, z, zn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin entry bomb.xml\n"
                             "end -4003 zip entry bomb.xml: decompressed size exceeds ratio limit 250:1 "
                             "after 1.0 MiB\n");
  rec_free(&r);
  free(z);
  free(x);
}

TEST(test_unpack_report_size_limit) {
  size_t n, gn;
  char *x = make_big_report(300 * 1024, &n);
  unsigned char *g = make_gzip(x, n, &gn);
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_report_size = 100 * 1024;
  struct rec r;
  rec_init(&r);
  ASSERT_OK(rec_run(&r, &lim, x, n, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend -4003 document exceeds the report size limit of 100 KiB\n");
  ASSERT_TRUE(r.data.len <= 100 * 1024);
  rec_free(&r);
  rec_init(&r);
  ASSERT_OK(rec_run(&r, &lim, g, gn, NULL, 0));
  ASSERT_STR_EQ(rec_log(&r), "begin \nend -4003 document exceeds the report size limit of 100 KiB\n");
  rec_free(&r);
  free(g);
  free(x);
}

TEST(test_unpack_nesting_limit) {
  char *x = make_report("deep");
  size_t n = strlen(x);
  unsigned char *cur = (unsigned char *)strdup(x);
  struct rec r;
  char err[256];
  /* gzip^k for k = 1..5: with max_nesting 4 a document may sit inside 4 containers */
  for (int k = 1; k <= 5; k++) {
    size_t gn;
    unsigned char *g = make_gzip(cur, n, &gn);
    free(cur);
    cur = g;
    n = gn;
    rec_init(&r);
    int rc = rec_run(&r, NULL, cur, n, err, sizeof err);
    if (k <= 4) {
      ASSERT_OK(rc);
      ASSERT_EQ(r.docs_ok, 1);
    } else {
      ASSERT_EQ(rc, DP_ELIMIT);
      ASSERT_STR_EQ(err, "nesting limit exceeded: gzip inside 4 containers (limit 4)");
      ASSERT_EQ(r.docs, 0);
    }
    rec_free(&r);
  }
  /* zip inside gzip inside gzip with max_nesting 2: the zip is refused */
  size_t zn, g1n, g2n;
  struct zentry e[] = {{"r.xml", x, strlen(x), 0}};
  unsigned char *z = make_zip(e, 1, &zn);
  unsigned char *g1 = make_gzip(z, zn, &g1n);
  unsigned char *g2 = make_gzip(g1, g1n, &g2n);
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_nesting = 2;
  rec_init(&r);
  ASSERT_EQ(rec_run(&r, &lim, g2, g2n, err, sizeof err), DP_ELIMIT);
  ASSERT_STR_EQ(err, "nesting limit exceeded: zip inside 2 containers (limit 2)");
  lim.max_nesting = 3;
  ASSERT_OK(rec_run(&r, &lim, g2, g2n, err, sizeof err));
  ASSERT_STR_EQ(rec_log(&r), "begin entry r.xml\nend 0 \n");
  rec_free(&r);
  free(g2);
  free(g1);
  free(z);
  free(cur);
  free(x);
}

/* ---- callbacks stop the unpack ------------------------------------------ */

TEST(test_unpack_callback_abort) {
  char *a = make_report("abort");
  size_t gn, zn;
  struct rec r;
  rec_init(&r);
  r.ret_begin = 7;
  ASSERT_EQ(rec_run(&r, NULL, a, strlen(a), NULL, 0), 7);
  ASSERT_STR_EQ(rec_log(&r), "begin \n"); /* no doc_end after an abort */
  rec_free(&r);

  size_t n;
  char *big = make_big_report(400 * 1024, &n);
  unsigned char *g = make_gzip(big, n, &gn);
  rec_init(&r);
  r.ret_data = -99;
  ASSERT_EQ(rec_run(&r, NULL, g, gn, NULL, 0), -99);
  ASSERT_EQ(r.data.len, 64 * 1024); /* exactly one chunk went out */
  ASSERT_STR_EQ(rec_log(&r), "begin \n");
  rec_free(&r);

  struct zentry e[] = {{"1.xml", a, strlen(a), 0}, {"2.xml", a, strlen(a), 0}};
  unsigned char *z = make_zip(e, 2, &zn);
  rec_init(&r);
  r.ret_end = DP_EABORT;
  ASSERT_EQ(rec_run(&r, NULL, z, zn, NULL, 0), DP_EABORT);
  ASSERT_STR_EQ(rec_log(&r), "begin entry 1.xml\nend 0 \n");
  rec_free(&r);
  free(z);
  free(g);
  free(big);
  free(a);
}

/* ---- corpora ------------------------------------------------------------ */

static int unpack_file(const char *path, struct rec *r, char *err, size_t errlen, int *rc) {
  size_t n;
  unsigned char *p = read_file(path, &n);
  if (!p) return -1;
  *rc = rec_run(r, NULL, p, n, err, errlen);
  free(p);
  return 0;
}

TEST(test_unpack_real_corpus) {
  char path[1024], line[4096];
  snprintf(path, sizeof path, "%s/corpus/real/MANIFEST.tsv", dp_test_shared_dir());
  FILE *f = fopen(path, "r");
  ASSERT_NOT_NULL(f);
  int rows = 0, kinds_seen = 0;
  if (!fgets(line, sizeof line, f)) line[0] = '\0'; /* header */
  while (fgets(line, sizeof line, f)) {
    char *cols[10] = {0};
    int nc = 0;
    for (char *s = line, *t; nc < 10 && (t = strsep(&s, "\t\n")) != NULL;) cols[nc++] = t;
    if (nc < 9) continue;
    const char *file = cols[0], *kind = cols[1], *expect = cols[8];
    int reports = atoi(cols[2]);
    if (strcmp(kind, "unknown") == 0) {
      snprintf(path, sizeof path, "%s/corpus/real/%s", dp_test_shared_dir(), file);
      struct rec r;
      rec_init(&r);
      char err[256];
      int rc = 0;
      ASSERT_OK(unpack_file(path, &r, err, sizeof err, &rc));
      ASSERT_TRUE(rc != 0 || r.docs == 0);
      rec_free(&r);
      continue;
    }
    if (strcmp(expect, "ok") != 0) continue;
    snprintf(path, sizeof path, "%s/corpus/real/%s", dp_test_shared_dir(), file);
    struct rec r;
    rec_init(&r);
    char err[256] = "";
    int rc = -1;
    ASSERT_OK(unpack_file(path, &r, err, sizeof err, &rc));
    if (rc != 0 || r.docs_ok != reports || r.errors || r.bad_order) {
      fprintf(stderr, "%s: rc=%d (%s) docs_ok=%d want %d\n%s", file, rc, err, r.docs_ok, reports, rec_log(&r));
      rec_free(&r);
      fclose(f);
      ASSERT_TRUE(0);
    }
    if (strcmp(kind, "eml") == 0) kinds_seen |= 1;
    if (strcmp(kind, "zlib") == 0) kinds_seen |= 2;
    if (strcmp(kind, "zip") == 0) kinds_seen |= 4;
    if (strcmp(kind, "gz") == 0) kinds_seen |= 8;
    rows++;
    rec_free(&r);
  }
  fclose(f);
  ASSERT_TRUE(rows >= 60);
  ASSERT_EQ(kinds_seen, 15);
}

static void hostile(const char *name, struct rec *r, char *err, size_t errlen, int *rc) {
  char path[1024];
  snprintf(path, sizeof path, "%s/corpus/hostile/%s", dp_test_shared_dir(), name);
  rec_init(r);
  err[0] = '\0';
  *rc = -1;
  if (unpack_file(path, r, err, errlen, rc)) fprintf(stderr, "cannot read %s\n", path);
}

TEST(test_unpack_hostile_bomb_fast) {
  struct rec r;
  char err[256];
  int rc;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  hostile("gzip-bomb.xml.gz", &r, err, sizeof err, &rc);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(rec_log(&r), "begin \nend -4003 gzip: decompressed size exceeds ratio limit 250:1 after 1.0 MiB\n");
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  ASSERT_TRUE(s < 1.0);
  rec_free(&r);
}

TEST(test_unpack_hostile_refused) {
  struct rec r;
  char err[256];
  int rc;
  hostile("truncated.xml.gz", &r, err, sizeof err, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(rec_log(&r), "begin \nend -4005 gzip stream truncated after 554 bytes of output\n");
  rec_free(&r);

  hostile("corrupt-crc.zip", &r, err, sizeof err, &rc);
  ASSERT_OK(rc);
  ASSERT_EQ(r.docs_ok, 0);
  ASSERT_CONTAINS(rec_log(&r), "error entry r.xml|-4006|zip entry r.xml: corrupt compressed data");
  rec_free(&r);

  hostile("zip-many-entries.zip", &r, err, sizeof err, &rc);
  ASSERT_EQ(rc, DP_ELIMIT);
  ASSERT_STR_EQ(err, "zip archive has 20000 entries, over the limit of 1000");
  ASSERT_STR_EQ(rec_log(&r), "");
  rec_free(&r);

  hostile("not-a-report.png", &r, err, sizeof err, &rc);
  ASSERT_EQ(rc, DP_EFORMAT);
  ASSERT_STR_EQ(err, "not XML, gzip, zip, zlib or a mail message (starts with 89 50 4e 47 0d 0a 1a 0a)");
  rec_free(&r);

  hostile("empty-file.xml", &r, err, sizeof err, &rc);
  ASSERT_EQ(rc, DP_EFORMAT);
  ASSERT_STR_EQ(err, "empty input");
  rec_free(&r);
}

TEST(test_unpack_hostile_ok) {
  struct rec r;
  char err[256];
  int rc;
  hostile("multi-member.xml.gz", &r, err, sizeof err, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(rec_log(&r), "begin \nend 0 \n");
  ASSERT_CONTAINS(r.data.data, "</feedback>");
  rec_free(&r);

  hostile("gzip-in-zip.zip", &r, err, sizeof err, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(rec_log(&r), "begin entry r.xml.gz\nend 0 \n");
  rec_free(&r);

  /* EXPECTED.tsv counts records (3): the archive holds two documents */
  hostile("two-reports.zip", &r, err, sizeof err, &rc);
  ASSERT_OK(rc);
  ASSERT_STR_EQ(rec_log(&r), "begin entry a.xml\nend 0 \nbegin entry b.xml\nend 0 \n");
  rec_free(&r);

  hostile("same-report-twice.zip", &r, err, sizeof err, &rc);
  ASSERT_OK(rc);
  ASSERT_EQ(r.docs_ok, 2);
  rec_free(&r);

  hostile("utf16-bom.xml", &r, err, sizeof err, &rc);
  ASSERT_OK(rc);
  ASSERT_EQ(r.docs_ok, 1);
  ASSERT_EQ((unsigned char)r.data.data[0], 0xff);
  rec_free(&r);
}

/* ---- threads: no shared state ------------------------------------------- */

struct thr { const unsigned char *p; size_t n; int ok; };

static void *thr_run(void *arg) {
  struct thr *t = arg;
  for (int i = 0; i < 20; i++) {
    struct rec r;
    rec_init(&r);
    if (rec_run(&r, NULL, t->p, t->n, NULL, 0) == 0 && r.docs_ok == 2) t->ok++;
    rec_free(&r);
  }
  return NULL;
}

TEST(test_unpack_parallel) {
  char *a = make_report("p1"), *b = make_report("p2");
  size_t gn, zn;
  unsigned char *g = make_gzip(b, strlen(b), &gn);
  struct zentry e[] = {{"a.xml", a, strlen(a), 0}, {"b.xml.gz", g, gn, 0}};
  unsigned char *z = make_zip(e, 2, &zn);
  pthread_t th[4];
  struct thr t[4];
  for (int i = 0; i < 4; i++) {
    t[i] = (struct thr){z, zn, 0};
    pthread_create(&th[i], NULL, thr_run, &t[i]);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) ASSERT_EQ(t[i].ok, 20);
  free(z);
  free(g);
  free(a);
  free(b);
}
