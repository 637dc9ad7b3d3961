/* SPDX-License-Identifier: MIT */
/* ingest/unpack_int.h - content sniffing and unpacking of one input (plain XML,
 * gzip incl. multi-member and nested, zip via libzip, bare zlib, RFC 5322 mail
 * with a MIME tree, mbox files of such mails) into a stream of candidate report
 * documents. Internal to ingest/: the pipeline and the tests use it. */
#ifndef DP_UNPACK_INT_H
#define DP_UNPACK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* What the first bytes of a buffer are. Sniffing is by content only, never by
 * file name. */
typedef enum dp_kind {
  DP_KIND_UNKNOWN = 0,
  DP_KIND_XML,   /* optional BOM (UTF-8/UTF-16) and whitespace, then '<' */
  DP_KIND_GZIP,  /* 1f 8b */
  DP_KIND_ZIP,   /* PK\3\4 (also an empty archive PK\5\6) */
  DP_KIND_ZLIB,  /* RFC 1950 header: CMF/FLG check, deflate method */
  DP_KIND_MAIL,  /* RFC 5322 header block: "Name: value" lines */
  DP_KIND_MBOX,  /* mbox: a "From SENDER DATE" line, then a header block */
} dp_kind_t;

/** Classify the first n bytes of a stream (n may be small; 512 is plenty). */
dp_kind_t dp_sniff(const void *buf, size_t n);
/** Static lower-case name of a kind ("xml", "gzip", ...). */
const char *dp_kind_name(dp_kind_t k);

/* The unpacker calls these, in this order, for every XML document it finds
 * (one document is one candidate report):
 *   doc_begin(part) doc_data(...)* doc_end(status, reason)
 * part says where the document is inside the input: "" when the input itself
 * is the document, otherwise a path such as "entry a.xml",
 * "part 2 (report.zip) > entry a.xml" or "part 1 (r.xml.gz)" (the members of
 * a multi-member gzip are one stream, one document; docs/internals/UNPACK.md).
 * status is 0 when the container stream around the document ended cleanly,
 * otherwise a DP_E* code and reason is one line such as "gzip stream truncated
 * after 12 KiB of output" or
 * "zip entry r.xml: CRC mismatch"; the consumer must then refuse the whole
 * document even if its XML was complete.
 * part_error reports a part that never became a document (a zip entry that is
 * not XML/gzip, an undecodable MIME part that looked like a report, a nesting
 * or entry-count limit). note reports something skipped that is not an error
 * (a MIME part that is not a report, a mail with no report at all).
 * A non-zero return from doc_begin/doc_data/doc_end stops the whole unpack and
 * is returned by dp_unpack. All strings are borrowed for the call only. */
typedef struct dp_unpack_cb {
  int (*doc_begin)(void *ud, const char *part);
  int (*doc_data)(void *ud, const char *buf, size_t n);
  int (*doc_end)(void *ud, int status, const char *reason);
  void (*part_error)(void *ud, const char *part, int status, const char *reason);
  void (*note)(void *ud, const char *part, const char *msg);
  /* A mail message (alone or in an mbox) held no report: counted, not an
   * error; its note has been given too. May be NULL. */
  void (*no_report)(void *ud, const char *part);
} dp_unpack_cb_t;

/** Unpack one whole input held in memory (buf is borrowed and not modified).
 *  Returns 0 when the input was recognized (its documents and per-part errors
 *  went through the callbacks), or a DP_E* code with a one-line reason in err
 *  when the input as a whole is refused: DP_EFORMAT "not XML, gzip, zip, zlib or
 *  a mail message (starts with 89 50 4e 47)", DP_EGZIP, DP_EZIP, DP_ELIMIT, ...,
 *  or a callback's non-zero value. Limits (lim, borrowed) are enforced on every
 *  stream: decompressed size per document, output/input ratio (checked once
 *  output passes 1 MiB), zip entries, nesting depth. Thread-safe: no global
 *  state. Memory stays bounded: decompression streams through a fixed window
 *  except where a zip must be held whole (zip inside gzip/mail), which is capped
 *  by max_input_size. */
int dp_unpack(const dp_limits_t *lim, const void *buf, size_t len,
              const dp_unpack_cb_t *cb, void *ud, char *err, size_t errlen);


/* ------------------------------------------------------------------------ */
/* The same, fed piece by piece (files are read in chunks, so a huge plain XML
 * or gzip input never sits in memory; zip and mail are still held whole,
 * capped by max_input_size). */
typedef struct dp_unpack_stream dp_unpack_stream_t;

/** Start unpacking one input; lim, cb and ud are borrowed until finish.
 *  Caller owns result; free with dp_unpack_stream_destroy. NULL on OOM. */
dp_unpack_stream_t *dp_unpack_stream_create(const dp_limits_t *lim, const dp_unpack_cb_t *cb,
                                            void *ud);
/** Ask st to compute, where it can off the calling thread (the helper that
 *  inflates a big gzip/zlib stream), the Adler-32 of the document bytes it
 *  hands to doc_data; see dp_unpack_stream_adler. */
void dp_unpack_stream_want_adler(dp_unpack_stream_t *st);
/** Inside doc_data: 1 with *adler set to adler32(1, buf, n) when st already
 *  knows it for exactly these bytes, else 0 (the consumer computes it). */
int dp_unpack_stream_adler(const dp_unpack_stream_t *st, const char *buf, size_t n,
                           unsigned long *adler);
/** zlib's adler32(adler, buf, len), the same value for every valid adler
 *  (both halves below 65521) and buf of len bytes (len 0: adler itself). */
unsigned long dp__adler32(unsigned long adler, const unsigned char *buf, size_t len);
/** Feed the next n bytes; 0, or a callback's non-zero value (stop feeding). */
int dp_unpack_stream_write(dp_unpack_stream_t *st, const void *p, size_t n);
/** End of input: returns as dp_unpack does (0, or the input's refusal with
 *  its reason in err, or a callback's value). Call once. */
int dp_unpack_stream_finish(dp_unpack_stream_t *st, char *err, size_t errlen);
/** Free the stream (after finish). NULL is allowed. */
void dp_unpack_stream_destroy(dp_unpack_stream_t *st);

/* ------------------------------------------------------------------------ */
/* MIME (RFC 2045-2049, RFC 5322): used by dp_unpack for DP_KIND_MAIL, exposed
 * for tests. */

/** One leaf part of a message after transfer decoding. */
typedef struct dp_mime_part {
  const char *path;         /* "part 2", "part 3.1", "part 2 (message) > part 1" */
  const char *content_type; /* lower-cased type/subtype, "text/plain" if absent */
  const char *filename;     /* decoded (RFC 2231 / RFC 2047) file name or "" */
  const unsigned char *data; /* decoded body; borrowed for the callback only */
  size_t len;
  unsigned depth;           /* containers around data (the walk's depth + 1, + 1 per
                             * forwarded message) */
  int status;               /* 0, or DP_EMIME/DP_ELIMIT when the part could not be
                             * decoded or is too deep: data is then NULL, len 0 */
  const char *reason;       /* one line when status != 0, else NULL */
} dp_mime_part_t;

/** Walk every leaf part of the message in buf (multipart/x nested, message/rfc822
 *  recursed into), decoding base64 and quoted-printable, and call cb for each.
 *  depth is the current container nesting (limit lim->max_nesting). Returns 0,
 *  DP_EMIME/DP_ELIMIT with a reason in err, or cb's non-zero return. */
int dp_mime_walk(const dp_limits_t *lim, const void *buf, size_t len, unsigned depth,
                 int (*cb)(void *ud, const dp_mime_part_t *part), void *ud,
                 char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* mbox (mboxo/mboxrd, RFC 4155): used by dp_unpack for DP_KIND_MBOX, exposed
 * for tests. An mbox is a list of messages, like a directory: it adds no
 * nesting level; each message is a mail container as a loose .eml file is. */

/** 1 when the n bytes at line (without its line break; a final CR is allowed)
 *  are an mbox separator: "From ", an envelope sender token (not starting with
 *  ':'), then a date holding a time (H:MM) and a 4-digit year. */
int dp_mbox_from_line(const void *line, size_t n);

/** Split the mbox in buf (borrowed, not modified) into messages and call cb
 *  for each with its 1-based index: a separator is a "From " line
 *  (dp_mbox_from_line) at the start of buf or after a blank line. The message
 *  excludes its "From " line and the blank line before the next separator;
 *  lines matching ^>+From  lose one '>' (mboxrd). msg points into buf, or into
 *  a per-message copy only when a quoted line had to be un-escaped; borrowed
 *  for the call only. Returns 0, DP_ENOMEM or cb's non-zero value. */
int dp_mbox_split(const void *buf, size_t len,
                  int (*cb)(void *ud, size_t index, const char *msg, size_t n), void *ud);

#endif
