/* SPDX-License-Identifier: MIT */
/* core/core.h - error codes, capped growable buffers and ingest limits shared by
 * every dmarcpipe module. core/ depends on nothing but libc; every other module
 * may depend on it. */
#ifndef DP_CORE_H
#define DP_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Errors are int: 0 is success, negative is failure. Project codes live in
 * their own range below -4000 so they never collide with libuv's UV_E* codes,
 * which are passed through unchanged. */
#define DP_ERRNO_MAP(XX)                                                      \
  XX(ENOMEM, -4001, "out of memory")                                          \
  XX(EIO, -4002, "input/output error")                                        \
  XX(ELIMIT, -4003, "limit exceeded")                                         \
  XX(EFORMAT, -4004, "not a DMARC report, gzip, zip, zlib or mail message")   \
  XX(EGZIP, -4005, "corrupt or truncated gzip stream")                        \
  XX(EZIP, -4006, "corrupt zip archive")                                      \
  XX(EZLIB, -4007, "corrupt or truncated zlib stream")                        \
  XX(EMIME, -4008, "malformed mail message")                                  \
  XX(EXML, -4009, "malformed XML")                                            \
  XX(EREPORT, -4010, "invalid DMARC report")                                  \
  XX(EPG, -4011, "PostgreSQL error")                                          \
  XX(EPGCONN, -4012, "cannot connect to PostgreSQL")                          \
  XX(EUSAGE, -4013, "usage error")                                            \
  XX(ECOLLISION, -4014, "report key collision")                               \
  XX(EABORT, -4015, "aborted by callback")                                    \
  XX(EEMBED, -4016, "embedded PostgreSQL cluster error")

enum {
#define XX(name, val, msg) DP_##name = (val),
  DP_ERRNO_MAP(XX)
#undef XX
};

/** Static English description of err (a DP_E* or libuv code); never NULL. */
const char *dp_strerror(int err);
/** Static symbolic name of err, e.g. "DP_EGZIP"; never NULL. */
const char *dp_err_name(int err);

/* ------------------------------------------------------------------------ */
/* Capped growable byte buffer. Every buffer that grows with input has a hard
 * cap so that hostile input fails with DP_ELIMIT instead of exhausting memory.
 * The data is always NUL-terminated (the NUL is not counted in len). */
typedef struct dp_buf {
  char *data;   /* owned; NULL until the first append */
  size_t len;   /* bytes used */
  size_t alloc; /* bytes allocated */
  size_t cap;   /* maximum len; 0 means SIZE_MAX */
} dp_buf_t;

/** Initialise an empty buffer with the given cap (0 = unlimited); allocates nothing. */
void dp_buf_init(dp_buf_t *b, size_t cap);
/** Release the buffer's memory and leave it empty (cap kept); safe to call twice. */
void dp_buf_free(dp_buf_t *b);
/** Forget the contents but keep the allocation for reuse. */
void dp_buf_reset(dp_buf_t *b);
/** Cut the contents back to their first len bytes (len <= b->len), e.g. to
 *  drop a half-written row after a failed append; the allocation is kept. */
void dp_buf_truncate(dp_buf_t *b, size_t len);
/** Make room for at least n more bytes; DP_ELIMIT past cap, DP_ENOMEM; on failure nothing is modified. */
int dp_buf_reserve(dp_buf_t *b, size_t n);
/** Append n bytes; DP_ELIMIT past cap, DP_ENOMEM; on failure nothing is modified. */
int dp_buf_append(dp_buf_t *b, const void *p, size_t n);
/** Append a NUL-terminated string; errors as dp_buf_append. */
int dp_buf_puts(dp_buf_t *b, const char *s);
/** Append one byte; errors as dp_buf_append. */
int dp_buf_putc(dp_buf_t *b, char c);
/** Append v in decimal, without printf (encoders call it per field); errors
 *  as dp_buf_append. */
int dp_buf_put_u64(dp_buf_t *b, uint64_t v);
/** Append printf-formatted text; errors as dp_buf_append. */
int dp_buf_printf(dp_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Take the buffer's memory (caller owns result; free with free()); leaves b empty. Never NULL. */
char *dp_buf_steal(dp_buf_t *b, size_t *plen);

/* ------------------------------------------------------------------------ */
/* Limits against hostile input. Defaults come from dp_limits_default(); each
 * can be changed per run on the command line. */
/** The deepest XML nesting a limit may allow: libxml2 stops at 256 levels,
 *  and the parser wraps each report in one element of its own. */
#define DP_MAX_XML_DEPTH 255

typedef struct dp_limits {
  uint64_t max_input_size;   /* bytes of one input file or message */
  uint64_t max_report_size;  /* decompressed bytes of one report (XML document) */
  uint64_t max_ratio;        /* decompressed/compressed ratio of one stream */
  uint32_t max_zip_entries;  /* entries in one zip archive */
  uint32_t max_nesting;      /* containers inside containers (zip in gzip in mail ...) */
  uint32_t max_xml_depth;    /* element nesting depth inside one report, <= DP_MAX_XML_DEPTH */
  uint32_t max_field_len;    /* bytes of one text field in a report */
  uint64_t max_records;      /* records in one report */
  uint32_t max_future_days;  /* days a date_range end may lie past the clock (0: any) */
} dp_limits_t;

/** Fill *l with the built-in defaults (documented in README "Limits"). */
void dp_limits_default(dp_limits_t *l);

/* ------------------------------------------------------------------------ */
/* The configuration file (core/config.c): "key = value" lines, '#' comments;
 * keys are the long option names (db, jobs, max-report-size, ...). Loaded once
 * by main() before a command runs; not thread-safe while loading. */

/** The default config path: $DMARCPIPE_CONFIG, else
 *  $XDG_CONFIG_HOME/dmarcpipe/config, else ~/.config/dmarcpipe/config.
 *  Caller owns result; free(). NULL when there is no home. */
char *dp_config_default_path(void);
/** Load path (NULL: the default path, where a missing file is no error).
 *  0, or DP_EUSAGE with "FILE:LINE: reason" in err (unknown key, bad line,
 *  unreadable named file); on failure nothing stays loaded. */
int dp_config_load(const char *path, char *err, size_t errlen);
/** The value set for key, or NULL; borrowed until dp_config_free. */
const char *dp_config_get(const char *key);
/** The path loaded, or NULL when none was; borrowed. */
const char *dp_config_path(void);
/** Forget every setting. */
void dp_config_free(void);

/* ------------------------------------------------------------------------ */
/* UTF-8 and JSON (core/utf8_json.c). */

/** Decode one code point from s (n > 0 bytes left) into *cp; returns the bytes
 *  used. Ill-formed input yields U+FFFD for its maximal valid prefix. */
size_t dp_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/** Append code point cp as UTF-8; errors as dp_buf_append. */
int dp_utf8_put(dp_buf_t *b, uint32_t cp);
/** Append s as a quoted JSON string (RFC 8259): quote, backslash, control
 *  characters, DEL and U+2028/2029 escaped, invalid UTF-8 as U+FFFD. */
int dp_json_string(dp_buf_t *b, const char *s);
/** True for a code point a display must not pass on: C0 and C1 controls,
 *  DEL, and the bidirectional controls that make text show in another order
 *  than it is stored (U+200E/F, U+202A-E, U+2066-9). */
bool dp_cp_display_unsafe(uint32_t cp);
/** Copy in into out (outlen bytes, NUL included; cut before a character,
 *  never inside one) fit to print on one line of a terminal: control
 *  characters (C0, DEL, C1, so also line breaks and escape sequences),
 *  bidirectional controls and bytes that are not UTF-8 become '?'.
 *  Returns out, for use as a printf argument. */
const char *dp_term_copy(const char *in, char *out, size_t outlen);
/** Append s to b as dp_term_copy makes it; errors as dp_buf_append. */
int dp_buf_put_term(dp_buf_t *b, const char *s);

/* ------------------------------------------------------------------------ */
/** 64-bit FNV-1a over n bytes, continuing from h (start with DP_HASH_INIT). */
uint64_t dp_hash64(uint64_t h, const void *p, size_t n);
#define DP_HASH_INIT UINT64_C(0xcbf29ce484222325)

/** Format a UTC epoch second as ISO 8601 "YYYY-MM-DDTHH:MM:SSZ" into out (>= 21 bytes). */
void dp_time_iso8601(int64_t t, char *out, size_t outlen);

#endif
