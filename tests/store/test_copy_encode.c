/* SPDX-License-Identifier: MIT */
/* tests/store/test_copy_encode.c - exact COPY text for hostile strings, arrays,
 * timestamps, NULLs and whole report/record/error rows; stability and
 * sensitivity of the report key. The server-side round trip of the same rows
 * is tests/store/test_pg_roundtrip.c. */
#include "store/store.h"

#include "tests/test.h"

#include <time.h>

/* A report with every field set to something recognisable. */
static const char *const test_errors[] = {"e1", "has \"quote\" and \\"};

static dp_report_t sample_report(void) {
  dp_report_t r = {0};
  r.schema = 1;
  r.version = "1.0";
  r.org_name = "google.com";
  r.email = "noreply-dmarc-support@google.com";
  r.extra_contact = "";
  r.report_id = "12345678901234567890";
  r.begin = 1709251200; /* 2024-03-01 00:00:00 UTC */
  r.end = 1709337599;
  r.errors = test_errors;
  r.n_errors = 2;
  r.generator = "";
  r.domain = "example.com";
  r.adkim = "r";
  r.aspf = "s";
  r.p = "reject";
  r.sp = "";
  r.np = "";
  r.pct = -1;
  r.fo = "1";
  r.testing = "";
  r.discovery_method = "";
  r.n_records = 2;
  r.messages = 5;
  return r;
}

/* Encode s alone and compare with the expected COPY text. */
static int text_is(const char *s, const char *want) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  int ok = dp_copy_text(&b, s) == 0 && strcmp(b.data ? b.data : "", want) == 0;
  if (!ok) fprintf(stderr, "  dp_copy_text gave \"%s\", want \"%s\"\n", b.data ? b.data : "", want);
  dp_buf_free(&b);
  return ok;
}

TEST(store_copy_text_escapes) {
  ASSERT_TRUE(text_is("plain text", "plain text"));
  ASSERT_TRUE(text_is("", ""));
  ASSERT_TRUE(text_is(NULL, ""));
  /* \N must stay the two characters, not become NULL. */
  ASSERT_TRUE(text_is("\\N", "\\\\N"));
  ASSERT_TRUE(text_is("a\tb\nc\rd\\e", "a\\tb\\nc\\rd\\\\e"));
  /* The end-of-data marker on its own line. */
  ASSERT_TRUE(text_is("\\.", "\\\\."));
  /* Quotes, braces, commas and SQL are plain text outside arrays. */
  ASSERT_TRUE(text_is("x'); DROP TABLE report; --\"{a,b}\"",
                      "x'); DROP TABLE report; --\"{a,b}\""));
  /* Other control characters are taken literally by COPY. */
  ASSERT_TRUE(text_is("\x01\x1f\x7f", "\x01\x1f\x7f"));
}

TEST(store_copy_text_utf8) {
  ASSERT_TRUE(text_is("Z\xC3\xBCrich \xE2\x98\x83 \xF0\x9F\x98\x80", "Z\xC3\xBCrich \xE2\x98\x83 \xF0\x9F\x98\x80"));
  /* Invalid bytes (e.g. a Latin-1 file name) become U+FFFD. */
  ASSERT_TRUE(text_is("caf\xE9.xml", "caf\xEF\xBF\xBD.xml"));
  ASSERT_TRUE(text_is("\xFF", "\xEF\xBF\xBD"));
  ASSERT_TRUE(text_is("\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD")); /* overlong '/' */
  ASSERT_TRUE(text_is("\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD")); /* surrogate */
  ASSERT_TRUE(text_is("\xF4\x90\x80\x80", /* above U+10FFFF */
                      "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
  ASSERT_TRUE(text_is("end\xE2\x98", "end\xEF\xBF\xBD\xEF\xBF\xBD")); /* truncated */
}

struct pair { const char *a; int pad; };

TEST(store_copy_array) {
  struct pair v[] = {{"a", 0},    {"", 0},       {"{x,y}", 0},    {"NULL", 0},
                     {"q\"", 0},  {"b\\s", 0},   {"t\tn\n", 0},   {NULL, 0}};
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_copy_array(&b, &v[0].a, 8, sizeof v[0]));
  /* Array level: "q\"" and "b\\s"; COPY level doubles each backslash. */
  ASSERT_STR_EQ(b.data, "{\"a\",\"\",\"{x,y}\",\"NULL\",\"q\\\\\"\",\"b\\\\\\\\s\",\"t\\tn\\n\",\"\"}");
  dp_buf_reset(&b);
  ASSERT_OK(dp_copy_array(&b, NULL, 0, sizeof v[0]));
  ASSERT_STR_EQ(b.data, "{}");
  dp_buf_free(&b);
}

TEST(store_report_key_stable) {
  dp_report_t r = sample_report();
  /* Computed independently (FNV-1a 64 over "dmarcpipe report v1", then each
   * string as u64le length + bytes, then begin and end as i64le). A change
   * here changes every stored key: it needs a migration. */
  ASSERT_EQ(dp_store_report_key(&r), INT64_C(-7785093035772886910));
}

TEST(store_report_key_sensitivity) {
  dp_report_t r = sample_report();
  int64_t k = dp_store_report_key(&r);
  dp_report_t x = r;
  x.org_name = "google.co";
  ASSERT_TRUE(dp_store_report_key(&x) != k);
  x = r;
  x.report_id = "12345678901234567891";
  ASSERT_TRUE(dp_store_report_key(&x) != k);
  x = r;
  x.domain = "example.org";
  ASSERT_TRUE(dp_store_report_key(&x) != k);
  x = r;
  x.begin++;
  ASSERT_TRUE(dp_store_report_key(&x) != k);
  x = r;
  x.end++;
  ASSERT_TRUE(dp_store_report_key(&x) != k);
  /* Field boundaries count: ("ab","c") is not ("a","bc"). */
  dp_report_t a = r, c = r;
  a.org_name = "ab";
  a.report_id = "c";
  c.org_name = "a";
  c.report_id = "bc";
  ASSERT_TRUE(dp_store_report_key(&a) != dp_store_report_key(&c));
  /* Everything outside the identity is not part of the key. */
  x = r;
  x.email = "other@example.net";
  x.messages = 99;
  x.p = "none";
  x.n_errors = 0;
  ASSERT_EQ(dp_store_report_key(&x), k);
}

TEST(store_encode_report_row) {
  dp_report_t r = sample_report();
  r.org_name = "Org\tName";
  r.report_id = "id\\N";
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_report(&b, &r, 42, "file.xml", UINT64_MAX));
  ASSERT_STR_EQ(b.data,
                "42\tOrg\\tName\tnoreply-dmarc-support@google.com\t\tid\\\\N\texample.com\t"
                "2024-03-01 00:00:00+00\t2024-03-01 23:59:59+00\t"
                "{\"e1\",\"has \\\\\"quote\\\\\" and \\\\\\\\\"}\t"
                "r\ts\treject\t\t\t\\N\t1\t\t\t1\t1.0\t\tfile.xml\t-1\t2\t5\n");
  /* pct when published; RFC 9990 fields. */
  dp_buf_reset(&b);
  r.pct = 100;
  r.schema = 2;
  r.np = "reject";
  r.testing = "n";
  r.discovery_method = "treewalk";
  r.generator = "gen 1.0";
  r.errors = NULL;
  r.n_errors = 0;
  ASSERT_OK(dp_store_encode_report(&b, &r, -1, "m", 7));
  ASSERT_STR_EQ(b.data,
                "-1\tOrg\\tName\tnoreply-dmarc-support@google.com\t\tid\\\\N\texample.com\t"
                "2024-03-01 00:00:00+00\t2024-03-01 23:59:59+00\t{}\t"
                "r\ts\treject\t\treject\t100\t1\tn\ttreewalk\t2\t1.0\tgen 1.0\tm\t7\t2\t5\n");
  /* the extremes of the hand-written numbers: pct 0, the smallest key, a
   * hash just past INT64_MAX */
  dp_buf_reset(&b);
  r.pct = 0;
  r.n_records = 0;
  r.messages = UINT64_MAX;
  ASSERT_OK(dp_store_encode_report(&b, &r, INT64_MIN, "m", (uint64_t)INT64_MAX + 1));
  ASSERT_STR_EQ(b.data,
                "-9223372036854775808\tOrg\\tName\tnoreply-dmarc-support@google.com\t\tid\\\\N\t"
                "example.com\t2024-03-01 00:00:00+00\t2024-03-01 23:59:59+00\t{}\t"
                "r\ts\treject\t\treject\t0\t1\tn\ttreewalk\t2\t1.0\tgen 1.0\tm\t"
                "-9223372036854775808\t0\t18446744073709551615\n");
  dp_buf_free(&b);
}

static const dp_reason_t test_reasons[] = {{"forwarded", "via list\tX"}, {"other", ""}};
static const dp_dkim_auth_t test_dkim[] = {{"example.com", "s1", "pass", ""},
                                           {"esp.net", "sel\\2", "fail", "bad \"sig\""}};
static const dp_spf_auth_t test_spf[] = {{"bounce.esp.net", "mfrom", "pass", ""}};

static dp_record_t sample_record(void) {
  dp_record_t rec = {0};
  rec.index = 1;
  snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "2001:db8::1");
  rec.ip_family = 6;
  rec.count = 3;
  rec.disposition = "none";
  rec.pe_dkim = "pass";
  rec.pe_spf = "fail";
  rec.reasons = test_reasons;
  rec.n_reasons = 2;
  rec.header_from = "example.com";
  rec.envelope_from = "bounce.esp.net";
  rec.envelope_to = "";
  rec.dkim = test_dkim;
  rec.n_dkim = 2;
  rec.spf = test_spf;
  rec.n_spf = 1;
  rec.dkim_aligned = true;
  rec.dkim_aligned_strict = true;
  rec.spf_aligned = false;
  rec.spf_aligned_strict = false;
  rec.sender = "example.com";
  rec.third_party = false;
  return rec;
}

/* The auth lists' separators (migration 0008): RS between entries, US
 * between an entry's fields. */
#define RS "\x1e"
#define US "\x1f"

TEST(store_encode_record_row) {
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_record(&b, 42, &r, &rec));
  /* COPY escapes only: " is plain outside arrays */
  ASSERT_STR_EQ(b.data,
                "42\t2024-03-01 00:00:00+00\t1\t2001:db8::1\t3\tnone\tpass\tfail\t"
                "forwarded" US "via list\\tX" RS "other" US "\t"
                "example.com\tbounce.esp.net\t\t"
                "example.com" US "s1" US "pass" US RS "esp.net" US "sel\\\\2" US "fail" US
                "bad \"sig\"\t"
                "bounce.esp.net" US "mfrom" US "pass" US "\t"
                "t\tt\tf\tf\texample.com\tf\n");
  /* No auth results, no reasons: empty lists. */
  dp_buf_reset(&b);
  rec.n_reasons = rec.n_dkim = rec.n_spf = 0;
  rec.reasons = NULL;
  rec.dkim = NULL;
  rec.spf = NULL;
  rec.index = 7;
  rec.third_party = true;
  rec.sender = "unauthenticated 192.0.2.0/24";
  snprintf(rec.source_ip, sizeof rec.source_ip, "%s", "192.0.2.1");
  ASSERT_OK(dp_store_encode_record(&b, 42, &r, &rec));
  ASSERT_STR_EQ(b.data,
                "42\t2024-03-01 00:00:00+00\t7\t192.0.2.1\t3\tnone\tpass\tfail\t\t"
                "example.com\tbounce.esp.net\t\t\t\t"
                "t\tt\tf\tf\tunauthenticated 192.0.2.0/24\tt\n");
  dp_buf_free(&b);
}

/* A list of one entry of empty fields is not the empty list (each entry has
 * its fields' separators), NULL fields are "", and a value's own FS, RS and
 * US are escaped as FS and 1, 3, 2 (an FS already followed by a digit byte
 * included), in the fast path and the exact one alike. */
TEST(store_encode_record_lists_exact) {
  static const dp_reason_t empty_reason[] = {{"", NULL}};
  static const dp_dkim_auth_t empty_dkim[] = {{NULL, "", "", NULL}};
  static const dp_spf_auth_t hostile_spf[] = {
      {"a\x1f" "b", "\x1e", "\x1c", "\x1c\x01\x1c\x02"}, {"\x1d\x1e\x1f", "", "x\\", "\t"}};
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  rec.reasons = empty_reason;
  rec.n_reasons = 1;
  rec.dkim = empty_dkim;
  rec.n_dkim = 1;
  rec.spf = hostile_spf;
  rec.n_spf = 2;
  static const char want[] =
      "42\t2024-03-01 00:00:00+00\t1\t2001:db8::1\t3\tnone\tpass\tfail\t" US "\t"
      "example.com\tbounce.esp.net\t\t" US US US "\t"
      "a\x1c\x02" "b" US "\x1c\x03" US "\x1c\x01" US "\x1c\x01\x01\x1c\x01\x02" RS
      "\x1d\x1c\x03\x1c\x02" US US "x\\\\" US "\\t\t"
      "t\tt\tf\tf\texample.com\tf\n";
  for (size_t cap = 0; cap <= 1; cap++) {
    dp_buf_t b;
    /* cap 1: a buffer the fast path's worst case does not fit, the exact
     * encoder writes the row */
    dp_buf_init(&b, cap ? sizeof want - 1 : 0);
    ASSERT_OK(dp_store_encode_record(&b, 42, &r, &rec));
    ASSERT_STR_EQ(b.data, want);
    ASSERT_EQ(dp_store_record_row_len(42, &r, &rec), sizeof want - 1);
    dp_buf_free(&b);
  }
}

/* begin_ts of a record row for report begin t. */
static void ts_of(int64_t t, char *out, size_t outlen) {
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  r.begin = t;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  out[0] = '\0';
  if (dp_store_encode_record(&b, 1, &r, &rec) == 0) {
    const char *s = strchr(b.data, '\t') + 1;
    snprintf(out, outlen, "%.*s", (int)strcspn(s, "\t"), s);
  }
  dp_buf_free(&b);
}

TEST(store_encode_timestamps) {
  char ts[64];
  ts_of(0, ts, sizeof ts);
  ASSERT_STR_EQ(ts, "1970-01-01 00:00:00+00");
  ts_of(-1, ts, sizeof ts);
  ASSERT_STR_EQ(ts, "1969-12-31 23:59:59+00");
  ts_of(951782400, ts, sizeof ts); /* leap day of a century year */
  ASSERT_STR_EQ(ts, "2000-02-29 00:00:00+00");
  ts_of(4107542399, ts, sizeof ts);
  ASSERT_STR_EQ(ts, "2100-02-28 23:59:59+00");
  ts_of(253402300799, ts, sizeof ts);
  ASSERT_STR_EQ(ts, "9999-12-31 23:59:59+00");
  ts_of(-62135596800 - 86400, ts, sizeof ts); /* the day before 0001-01-01 */
  ASSERT_STR_EQ(ts, "0001-12-31 00:00:00+00 BC");
  ts_of(253402300800, ts, sizeof ts); /* five-digit years are written whole */
  ASSERT_STR_EQ(ts, "10000-01-01 00:00:00+00");
  ts_of(-59042908801, ts, sizeof ts);
  ASSERT_STR_EQ(ts, "0099-01-01 23:59:59+00");
  ts_of(-377705116800, ts, sizeof ts);
  ASSERT_STR_EQ(ts, "10000-01-01 00:00:00+00 BC");
  /* every year from 1 to 9999 at a pseudo-random second, against the C
   * library's calendar */
  uint64_t x = 0x2545F4914F6CDD1Du;
  for (int i = 0; i < 100000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int64_t t = -62135596800 + (int64_t)(x % (uint64_t)(253402300800 + 62135596800));
    time_t tt = (time_t)t;
    struct tm tm;
    ASSERT_TRUE(gmtime_r(&tt, &tm) != NULL);
    char want[64];
    snprintf(want, sizeof want, "%04d-%02d-%02d %02d:%02d:%02d+00", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    ts_of(t, ts, sizeof ts);
    if (strcmp(ts, want)) fprintf(stderr, "t = %" PRId64 "\n", t);
    ASSERT_STR_EQ(ts, want);
  }
}

TEST(store_encode_error_row) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_error(&b, "mail\t1", "entry a.xml", "", "", DP_EXML,
                                  "line 1\nline 2 \\ end"));
  ASSERT_STR_EQ(b.data, "mail\\t1\tentry a.xml\t\t\tDP_EXML\tline 1\\nline 2 \\\\ end\n");
  dp_buf_free(&b);
}

TEST(store_encode_limit_leaves_buffer) {
  dp_report_t r = sample_report();
  dp_record_t rec = sample_record();
  dp_buf_t b;
  dp_buf_init(&b, 64);
  ASSERT_OK(dp_buf_puts(&b, "keep\n"));
  /* A row that does not fit is not half-written. */
  ASSERT_EQ(dp_store_encode_record(&b, 42, &r, &rec), DP_ELIMIT);
  ASSERT_EQ(b.len, 5);
  ASSERT_STR_EQ(b.data, "keep\n");
  ASSERT_EQ(dp_store_encode_report(&b, &r, 1, "f", 1), DP_ELIMIT);
  ASSERT_STR_EQ(b.data, "keep\n");
  ASSERT_EQ(dp_store_encode_error(&b, "s", "p", "o", "r", DP_EXML,
                                  "a reason long enough to pass the sixty-four byte cap"),
            DP_ELIMIT);
  ASSERT_STR_EQ(b.data, "keep\n");
  dp_buf_free(&b);
}

/* Record rows are written by a fast path that reserves the worst case once
 * per row; near the buffer's cap the exact field-by-field encoder takes over.
 * Random hostile strings: both paths give the same bytes, a row that fits
 * exactly is accepted and one byte less is refused with nothing written. */
static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;
static unsigned rnd(unsigned n) {
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return (unsigned)(rnd_state % n);
}

static size_t rnd_pieces = 6;

static const char *rnd_str(char *buf, size_t cap) {
  static const char *const piece[] = {"a", "Z", "\\", "\"", "\t", "\n", "\r", "\x01", "\x7f",
                                      "\xc3\xa9", "\xff", "\xe2\x82", "\xed\xa0\x80", ",", "{",
                                      " ", "\xf0\x9f\x98\x80", "example.com", "\x1c", "\x1d",
                                      "\x1e", "\x1f"};
  size_t n = 0, k = rnd(rnd_pieces);
  buf[0] = '\0';
  for (size_t i = 0; i < k; i++) {
    const char *p = piece[rnd(sizeof piece / sizeof piece[0])];
    size_t l = strlen(p);
    if (n + l + 1 > cap) break;
    memcpy(buf + n, p, l + 1);
    n += l;
  }
  return buf;
}

static void record_rows_check(void) {
  static char pool[64][256];
  size_t np = 0;
#define S() rnd_str(pool[np++ % 64], sizeof pool[0])
  for (int round = 0; round < 3000; round++) {
    dp_report_t r = sample_report();
    r.begin = round % 3 ? 1709251200 : -62135596800 - 86400 * (int64_t)round;
    dp_reason_t rs[3];
    dp_dkim_auth_t dk[3];
    dp_spf_auth_t sp[3];
    dp_record_t rec = sample_record();
    rec.index = (uint64_t)round * 7919u;
    rec.count = round % 5 ? (uint64_t)round : UINT64_MAX >> 1;
    rec.disposition = S();
    rec.pe_dkim = S();
    rec.pe_spf = S();
    rec.header_from = S();
    rec.envelope_from = S();
    rec.envelope_to = S();
    rec.sender = S();
    rec.n_reasons = rnd(4);
    rec.n_dkim = rnd(4);
    rec.n_spf = rnd(4);
    for (size_t i = 0; i < 3; i++) {
      rs[i].type = S();
      rs[i].comment = S();
      dk[i].domain = S();
      dk[i].selector = S();
      dk[i].result = S();
      dk[i].human_result = S();
      sp[i].domain = S();
      sp[i].scope = S();
      sp[i].result = S();
      sp[i].human_result = S();
    }
    rec.reasons = rec.n_reasons ? rs : NULL;
    rec.dkim = rec.n_dkim ? dk : NULL;
    rec.spf = rec.n_spf ? sp : NULL;
    if (rec.n_reasons > 3) rec.n_reasons = 3;
    if (rec.n_dkim > 3) rec.n_dkim = 3;
    if (rec.n_spf > 3) rec.n_spf = 3;
    rec.dkim_aligned = rnd(2);
    rec.spf_aligned_strict = rnd(2);
    rec.third_party = rnd(2);
    int64_t key = round % 2 ? -(int64_t)round * 1000003 : INT64_MIN + round;

    dp_buf_t fast, exact, less;
    dp_buf_init(&fast, 0);
    ASSERT_OK(dp_buf_puts(&fast, "x\n"));
    ASSERT_OK(dp_store_encode_record(&fast, key, &r, &rec));
    dp_buf_init(&exact, fast.len); /* room for the row and no more */
    ASSERT_OK(dp_buf_puts(&exact, "x\n"));
    ASSERT_OK(dp_store_encode_record(&exact, key, &r, &rec));
    ASSERT_EQ(exact.len, fast.len);
    ASSERT_TRUE(memcmp(exact.data, fast.data, fast.len) == 0);
    /* the length a null sink counts is the row's, to the byte */
    ASSERT_EQ(dp_store_record_row_len(key, &r, &rec), fast.len - 2);
    dp_buf_init(&less, fast.len - 1);
    ASSERT_OK(dp_buf_puts(&less, "x\n"));
    ASSERT_EQ(dp_store_encode_record(&less, key, &r, &rec), DP_ELIMIT);
    ASSERT_STR_EQ(less.data, "x\n");
    dp_buf_free(&fast);
    dp_buf_free(&exact);
    dp_buf_free(&less);
  }
#undef S
}

TEST(store_encode_record_fast_path_matches_exact) {
  rnd_pieces = 6;
  record_rows_check();
}

/* Long fields: the eight-bytes-at-a-time paths and their tails, for the
 * encoder and for the row length without a row. */
TEST(store_record_row_len_long_fields) {
  rnd_pieces = 40;
  record_rows_check();
  rnd_pieces = 6;
}

TEST(store_column_lists) {
  /* One name per encoded field, in the same order as the rows above. */
  size_t n = 1;
  for (const char *p = dp_store_report_columns; *p; p++) n += *p == ',';
  ASSERT_EQ(n, 25);
  n = 1;
  for (const char *p = dp_store_record_columns; *p; p++) n += *p == ',';
  ASSERT_EQ(n, 20);
  ASSERT_STR_EQ(dp_store_error_columns, "source, part, org_name, report_id, code, reason");
}

/* A record whose strings live in one text block (as the parser hands them
 * out): one byte that needs escaping anywhere in the block, at every
 * position of blocks of 1 to 70 bytes, still gives the row's exact length. */
TEST(store_record_row_len_text_block) {
  static const char specials[] = {'\\', '"', '\t', '\n', '\x01', (char)0xc3, (char)0xff, 'a',
                                  '\x1c', '\x1e', '\x1f'};
  dp_report_t r = sample_report();
  for (size_t len = 1; len <= 70; len++) {
    for (size_t at = 0; at < len; at++) {
      for (size_t k = 0; k < sizeof specials; k++) {
        /* "" then header_from (len - 2 bytes) then its NUL */
        char block[80];
        block[0] = '\0';
        for (size_t i = 1; i + 1 < len; i++) block[i] = 'x';
        if (len >= 2) block[len - 1] = '\0';
        if (at > 0 && at + 1 < len) block[at] = specials[k];
        dp_record_t rec = sample_record();
        rec.reasons = NULL;
        rec.n_reasons = 0;
        rec.spf = NULL;
        rec.n_spf = 0;
        rec.disposition = rec.pe_dkim = rec.pe_spf = rec.envelope_from = rec.envelope_to = block;
        rec.header_from = len >= 2 ? block + 1 : block;
        /* and as a DKIM domain, where the separators are escaped too */
        dp_dkim_auth_t dk = {rec.header_from, block, block, block};
        rec.dkim = &dk;
        rec.n_dkim = 1;
        rec.text = block;
        rec.text_len = len;
        rec.text_used = 2 * strlen(rec.header_from);
        dp_buf_t b;
        dp_buf_init(&b, 0);
        ASSERT_OK(dp_store_encode_record(&b, -42, &r, &rec));
        size_t got = dp_store_record_row_len(-42, &r, &rec);
        if (got != b.len) fprintf(stderr, "len %zu at %zu special %zu: %zu != %zu\n", len, at, k, got, b.len);
        ASSERT_EQ(got, b.len);
        dp_buf_free(&b);
      }
    }
  }
}
