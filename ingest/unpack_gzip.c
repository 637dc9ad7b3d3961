/* SPDX-License-Identifier: MIT */
/* ingest/unpack_gzip.c - gzip specifics of the inflater: a gzip file may hold
 * several members that together are one stream (RFC 1952 2.2), and real
 * senders append junk (a CRLF from a mail gateway) after the last member. The
 * bytes after a member decide: 1f 8b starts the next member, anything else is
 * trailing data that is ignored. */
#include "ingest/unpack_priv.h"

#include <stdio.h>

static int blank(unsigned char c) { return c == 0 || c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* A new member begins: reset the inflater but keep our running totals (the
 * ratio applies to the whole stream). */
static void next_member(struct dp__inflate *f) {
  inflateReset(&f->z);
  f->state = DP__INF_IN;
}

size_t dp__gzip_member_boundary(struct dp__inflate *f, const unsigned char *in, size_t n) {
  if (!n) return 0;
  if (f->npend) {
    /* the byte kept from the previous write plus this one decide */
    f->npend = 0;
    if (f->pend == 0x1f && in[0] == 0x8b) {
      next_member(f);
      /* feed the kept byte first; inflate keeps header state across calls */
      unsigned char b = f->pend;
      f->z.next_in = &b;
      f->z.avail_in = 1;
      f->z.next_out = f->win + f->wlen;
      f->z.avail_out = (unsigned)(DP__UNPACK_CHUNK - f->wlen);
      (void)inflate(&f->z, Z_NO_FLUSH); /* one header byte: cannot fail or produce output */
      f->in_total += 1;
      f->z.next_in = NULL;
      f->z.avail_in = 0;
      return 0;
    }
    f->junk += 1;
    if (!blank(f->pend)) f->junk_blank = 0;
    f->state = DP__INF_JUNK;
    return 0;
  }
  if (n == 1) {
    f->pend = in[0];
    f->npend = 1;
    return 1;
  }
  if (in[0] == 0x1f && in[1] == 0x8b)
    next_member(f);
  else
    f->state = DP__INF_JUNK;
  return 0;
}

void dp__gzip_trailing_note(struct dp__inflate *f) {
  if (!f->junk || f->junk_blank) return; /* a stray CRLF is not worth a word */
  char sz[32], m[128];
  dp__human_size(f->junk, sz, sizeof sz);
  snprintf(m, sizeof m, "%s: %s of trailing data after the compressed stream ignored",
           f->gzip ? "gzip" : "zlib", sz);
  dp__note(f->u, f->part, m);
}
