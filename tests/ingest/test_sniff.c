/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_sniff.c - dp_sniff: every kind by content, with BOMs,
 * whitespace and short buffers, and inputs that must not be taken for any
 * kind (PNG, PDF, plain text); an mbox "From " line is an mbox, never mail. */
#include "../test.h"

#include "ingest/unpack_int.h"

#define SNIFF(lit) dp_sniff(lit, sizeof(lit) - 1)

TEST(test_sniff_xml_plain) {
  ASSERT_EQ(SNIFF("<?xml version=\"1.0\"?><feedback/>"), DP_KIND_XML);
  ASSERT_EQ(SNIFF("<feedback>"), DP_KIND_XML);
  ASSERT_EQ(SNIFF("  \r\n\t<feedback>"), DP_KIND_XML);
  ASSERT_EQ(SNIFF("<!-- c --><feedback>"), DP_KIND_XML);
  ASSERT_EQ(SNIFF("<"), DP_KIND_XML); /* undecided at the end of the buffer */
}

TEST(test_sniff_xml_boms) {
  ASSERT_EQ(SNIFF("\xef\xbb\xbf<?xml version=\"1.0\"?>"), DP_KIND_XML);
  ASSERT_EQ(SNIFF("\xef\xbb\xbf\n <feedback>"), DP_KIND_XML);
  ASSERT_EQ(SNIFF("\xff\xfe<\0?\0x\0m\0l\0"), DP_KIND_XML);      /* UTF-16LE */
  ASSERT_EQ(SNIFF("\xfe\xff\0<\0?\0x\0m\0l"), DP_KIND_XML);      /* UTF-16BE */
  ASSERT_EQ(SNIFF("\xff\xfe \0\n\0<\0f\0"), DP_KIND_XML);        /* LE, whitespace first */
  ASSERT_EQ(SNIFF("<\0?\0x\0m\0"), DP_KIND_XML);                 /* LE without BOM */
  ASSERT_EQ(SNIFF("\0<\0?\0x\0m"), DP_KIND_XML);                 /* BE without BOM */
  ASSERT_EQ(SNIFF("\xff\xfex\0m\0"), DP_KIND_UNKNOWN);           /* BOM, then no '<' */
}

TEST(test_sniff_not_xml) {
  ASSERT_EQ(SNIFF("< feedback>"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("    "), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("hello world\n"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("%PDF-1.7\n"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), DP_KIND_UNKNOWN);
  ASSERT_EQ(dp_sniff("", 0), DP_KIND_UNKNOWN);
  ASSERT_EQ(dp_sniff(NULL, 0), DP_KIND_UNKNOWN);
}

TEST(test_sniff_gzip) {
  ASSERT_EQ(SNIFF("\x1f\x8b\x08\x00\x00\x00\x00\x00"), DP_KIND_GZIP);
  ASSERT_EQ(SNIFF("\x1f\x8b"), DP_KIND_GZIP);
  ASSERT_EQ(SNIFF("\x1f\x8b\x07"), DP_KIND_UNKNOWN); /* not deflate */
  ASSERT_EQ(SNIFF("\x1f"), DP_KIND_UNKNOWN);
}

TEST(test_sniff_zip) {
  ASSERT_EQ(SNIFF("PK\x03\x04\x14\0\0\0"), DP_KIND_ZIP);
  ASSERT_EQ(SNIFF("PK\x05\x06\0\0\0\0"), DP_KIND_ZIP); /* empty archive */
  ASSERT_EQ(SNIFF("PK\x07\x08"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("PK\x03"), DP_KIND_UNKNOWN);
}

TEST(test_sniff_zlib) {
  ASSERT_EQ(SNIFF("\x78\x9c"), DP_KIND_ZLIB);
  ASSERT_EQ(SNIFF("\x78\x01"), DP_KIND_ZLIB);
  ASSERT_EQ(SNIFF("\x78\x5e"), DP_KIND_ZLIB);
  ASSERT_EQ(SNIFF("\x78\xda\xed\x9a"), DP_KIND_ZLIB);
  ASSERT_EQ(SNIFF("\x48\x89"), DP_KIND_ZLIB); /* 4 KiB window, still valid */
  ASSERT_EQ(SNIFF("\x78\x00"), DP_KIND_UNKNOWN); /* check bits wrong */
  ASSERT_EQ(SNIFF("\x78\xbb"), DP_KIND_UNKNOWN); /* FDICT set (0x78bb % 31 == 0) */
  ASSERT_EQ(SNIFF("\x88\x98"), DP_KIND_UNKNOWN); /* window > 32 KiB */
  ASSERT_EQ(SNIFF("\x78"), DP_KIND_UNKNOWN);
}

TEST(test_sniff_mail) {
  ASSERT_EQ(SNIFF("Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                  " (folded)\r\nFrom: x@y\r\n\r\nbody"),
            DP_KIND_MAIL);
  ASSERT_EQ(SNIFF("Return-Path: <a@b>\nDelivered-To: c@d\n"), DP_KIND_MAIL);
  ASSERT_EQ(SNIFF("MIME-Version: 1.0\n"), DP_KIND_MAIL);
  ASSERT_EQ(SNIFF("X-Custom-Header: 1\nFrom: a\n\n"), DP_KIND_MAIL);
  ASSERT_EQ(SNIFF("Subject: cut in the mid"), DP_KIND_MAIL); /* ends inside the first line */
  ASSERT_EQ(SNIFF("Subject : old style\n"), DP_KIND_MAIL);
}

TEST(test_sniff_not_mail) {
  ASSERT_EQ(SNIFF("From a@b Mon Jan  1 00:00:00 2024\nFrom: a\n"), DP_KIND_MBOX); /* mbox */
  ASSERT_EQ(SNIFF("Subject: x\nthis line is not a header\n\n"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("Subject: x\n\0\0\0"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF(": no name\n"), DP_KIND_UNKNOWN);
  ASSERT_EQ(SNIFF("Subject"), DP_KIND_UNKNOWN);
}

TEST(test_sniff_kind_names) {
  ASSERT_STR_EQ(dp_kind_name(DP_KIND_XML), "xml");
  ASSERT_STR_EQ(dp_kind_name(DP_KIND_GZIP), "gzip");
  ASSERT_STR_EQ(dp_kind_name(DP_KIND_ZIP), "zip");
  ASSERT_STR_EQ(dp_kind_name(DP_KIND_ZLIB), "zlib");
  ASSERT_STR_EQ(dp_kind_name(DP_KIND_MAIL), "mail");
  ASSERT_STR_EQ(dp_kind_name(DP_KIND_MBOX), "mbox");
  ASSERT_STR_EQ(dp_kind_name(DP_KIND_UNKNOWN), "unknown");
}
