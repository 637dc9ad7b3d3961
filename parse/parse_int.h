/* SPDX-License-Identifier: MIT */
/* parse/parse_int.h - helpers shared inside parse/ (never installed): IP
 * address parsing and canonical formatting without printf, used on every
 * record by the parser (source_ip) and by alignment (the sender network). */
#ifndef DP_PARSE_INT_H
#define DP_PARSE_INT_H

#include <stddef.h>

/* Longest text dp__ip_format writes, NUL included (INET6_ADDRSTRLEN). */
#define DP__IP_TEXT_MAX 46

/** Strict dotted quad: four parts of 1-3 digits, no leading zero, <= 255.
 *  Returns the length of s (a[0..3] set) or 0. What it accepts,
 *  inet_pton(AF_INET) accepts with the same bytes, and s is then already
 *  in the form dp__ip_format writes for them; what it refuses may still be
 *  an address for inet_pton. */
size_t dp__ip_quad_canon(const char *s, unsigned char a[4]);
/** Parse s as inet_pton(3) does, IPv4 first then IPv6: 4 (a[0..3] set) or
 *  6 (a[0..15] set), or 0 when s is neither. Dotted quads take a fast path;
 *  anything else goes to inet_pton, so the accepted set is exactly libc's. */
int dp__ip_parse(const char *s, unsigned char a[16]);
/** Write address a of family 4 or 6 into out (>= DP__IP_TEXT_MAX bytes) in the
 *  form inet_ntop(3) of glibc writes (IPv6: RFC 5952 lower-case, longest run
 *  of two or more zero groups as "::", the first on a tie, "::a.b.c.d" for
 *  IPv4-compatible addresses). Returns the length written (NUL excluded). */
size_t dp__ip_format(const unsigned char *a, int family, char *out);

#endif
