/* SPDX-License-Identifier: MIT */
/* ingest/sniff.c - classify a stream by its first bytes only (never by file
 * name): XML (with an optional UTF-8/UTF-16 BOM), gzip, zip, bare zlib, an
 * mbox or an RFC 5322 header block. Strong magic numbers are checked first, zlib last
 * because its two-byte header is the weakest signature. */
#include "ingest/unpack_int.h"

#include <string.h>

static int is_xml_space(unsigned c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* After the whitespace comes '<' and then something a document can start
 * with: a declaration, a comment/doctype, or an element name. */
static int xml_start_ok(unsigned c) {
  return c == '?' || c == '!' || c == '_' || c == ':' || (c >= 'A' && c <= 'Z') ||
         (c >= 'a' && c <= 'z') || c >= 0x80;
}

/* Walk code units of width w (1 byte, or 2 bytes LE/BE) skipping whitespace;
 * XML when the first other unit is '<' followed by a plausible start. When the
 * buffer ends inside whitespace or right after '<' the answer is "maybe" (2):
 * only accepted when something was seen. */
static int xml_units(const unsigned char *b, size_t n, int w, int be) {
  size_t i = 0;
  while (i + (size_t)w <= n) {
    unsigned c = w == 1 ? b[i] : be ? (unsigned)(b[i] << 8 | b[i + 1]) : (unsigned)(b[i + 1] << 8 | b[i]);
    i += (size_t)w;
    if (is_xml_space(c)) continue;
    if (c != '<') return 0;
    if (i + (size_t)w > n) return 1; /* '<' at the very end of what we have */
    unsigned d = w == 1 ? b[i] : be ? (unsigned)(b[i] << 8 | b[i + 1]) : (unsigned)(b[i + 1] << 8 | b[i]);
    return xml_start_ok(d);
  }
  return 0;
}

static int sniff_xml(const unsigned char *b, size_t n) {
  if (n >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf) return xml_units(b + 3, n - 3, 1, 0);
  if (n >= 2 && b[0] == 0xff && b[1] == 0xfe) return xml_units(b + 2, n - 2, 2, 0);
  if (n >= 2 && b[0] == 0xfe && b[1] == 0xff) return xml_units(b + 2, n - 2, 2, 1);
  /* UTF-16 without a BOM, as the XML spec's autodetection table allows */
  if (n >= 4 && b[0] == '<' && b[1] == 0 && b[2] != 0 && b[3] == 0) return xml_units(b, n, 2, 0);
  if (n >= 4 && b[0] == 0 && b[1] == '<' && b[2] == 0 && b[3] != 0) return xml_units(b, n, 2, 1);
  return xml_units(b, n, 1, 0);
}

/* RFC 5322 field name: printable US-ASCII except ':'. */
static int field_char(unsigned c) { return c >= 33 && c <= 126 && c != ':'; }

/* Length of a field name at b followed by ':' (optionally after WSP, an old
 * but still seen form), or 0. When the buffer ends inside the name, returns
 * the name length if it is at least 1 (undecided, accepted). */
static size_t field_name(const unsigned char *b, size_t n, int *complete) {
  size_t i = 0;
  while (i < n && field_char(b[i])) i++;
  *complete = 0;
  if (i == 0 || i > 998) return 0;
  size_t j = i;
  while (j < n && (b[j] == ' ' || b[j] == '\t')) j++;
  if (j == n) return i;
  if (b[j] != ':') return 0;
  *complete = 1;
  return i;
}

/* A header block: the first line is a field; each later complete line up to
 * the blank line is a field or a continuation; no NUL bytes. */
static int sniff_mail(const unsigned char *b, size_t n) {
  int complete = 0;
  if (!field_name(b, n, &complete)) return 0;
  if (!complete) return 0;
  size_t i = 0;
  int first = 1;
  while (i < n) {
    const unsigned char *nl = memchr(b + i, '\n', n - i);
    size_t end = nl ? (size_t)(nl - b) : n;
    size_t len = end - i;
    if (len > 0 && b[i + len - 1] == '\r') len--;
    if (memchr(b + i, 0, end - i)) return 0;
    if (len == 0 && nl) return 1; /* the blank line ending the header block */
    if (!first && nl && b[i] != ' ' && b[i] != '\t') {
      int c2 = 0;
      if (!field_name(b + i, len, &c2) || !c2) return 0;
    }
    first = 0;
    if (!nl) break;
    i = end + 1;
  }
  return 1;
}

/* An mbox: a complete "From SENDER DATE" first line, then (when the next
 * line is already here) a header field: a header block "From: x" or
 * "From : x" never matches, nor does prose starting with "From ". */
static int sniff_mbox(const unsigned char *b, size_t n) {
  if (n < 5 || memcmp(b, "From ", 5) != 0) return 0;
  const unsigned char *nl = memchr(b, '\n', n);
  if (!nl || !dp_mbox_from_line(b, (size_t)(nl - b))) return 0;
  size_t i = (size_t)(nl - b) + 1;
  if (i == n || !memchr(b + i, '\n', n - i)) return 1;
  int complete = 0;
  return field_name(b + i, n - i, &complete) && complete;
}

static int sniff_zlib(const unsigned char *b, size_t n) {
  if (n < 2) return 0;
  unsigned cmf = b[0], flg = b[1];
  if ((cmf & 0x0f) != 8 || (cmf >> 4) > 7) return 0;
  if (flg & 0x20) return 0; /* preset dictionary: never used by report senders */
  return (cmf * 256 + flg) % 31 == 0;
}

dp_kind_t dp_sniff(const void *buf, size_t n) {
  const unsigned char *b = buf;
  if (!b || n == 0) return DP_KIND_UNKNOWN;
  if (n >= 2 && b[0] == 0x1f && b[1] == 0x8b && (n < 3 || b[2] == 8)) return DP_KIND_GZIP;
  if (n >= 4 && b[0] == 'P' && b[1] == 'K' && ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6)))
    return DP_KIND_ZIP;
  if (sniff_xml(b, n)) return DP_KIND_XML;
  if (sniff_mbox(b, n)) return DP_KIND_MBOX;
  if (sniff_mail(b, n)) return DP_KIND_MAIL;
  if (sniff_zlib(b, n)) return DP_KIND_ZLIB;
  return DP_KIND_UNKNOWN;
}

const char *dp_kind_name(dp_kind_t k) {
  switch (k) {
  case DP_KIND_XML: return "xml";
  case DP_KIND_GZIP: return "gzip";
  case DP_KIND_ZIP: return "zip";
  case DP_KIND_ZLIB: return "zlib";
  case DP_KIND_MAIL: return "mail";
  case DP_KIND_MBOX: return "mbox";
  case DP_KIND_UNKNOWN: break;
  }
  return "unknown";
}
