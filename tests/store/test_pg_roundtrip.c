/* SPDX-License-Identifier: MIT */
/* tests/store/test_pg_roundtrip.c - against a real server ($DP_TEST_DB, a
 * conninfo where databases may be created): concurrent and repeated
 * migration, then COPY of encoded report/record/error rows full of hostile
 * strings and an exact read-back. Without DP_TEST_DB it says so and passes. */
#include "store/store.h"
#include "store/store_int.h"

#include <stdio.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test.h"

static const char *const hostile[] = {
    "\\N", "a\tb", "line\nnext\r\n", "q\"uote", "{x,y}", ",", "back\\slash\\",
    "'; DROP TABLE report; --", "", "NULL", "  spaced  ", "Z\xC3\xBCrich \xE2\x98\x83",
    "\\.", "\x01\x1f\x7f", "\\\\\"\\", "}", "{", "\"", "\\", "$$ $1 %s %n",
};
#define N_HOSTILE (sizeof hostile / sizeof hostile[0])

#define DP_PG_TEST_DB_PREFIX "dp_store_rt"
#include "pg_test_util.h"

/* The elements of an array column, in order, joined as "[e1][e2]...". */
static int array_is(PGconn *c, const char *table, const char *col, const char *where,
                    const char *const *want, size_t n, size_t stride) {
  char sql[2048];
  snprintf(sql, sizeof sql,
           "SELECT u FROM %s, unnest(%s) WITH ORDINALITY AS t(u, i) WHERE %s ORDER BY i",
           table, col, where);
  PGresult *res = PQexec(c, sql);
  int ok = PQresultStatus(res) == PGRES_TUPLES_OK && (size_t)PQntuples(res) == n;
  const char *p = (const char *)want;
  for (size_t i = 0; ok && i < n; i++, p += stride) {
    const char *w;
    memcpy(&w, p, sizeof w);
    ok = !PQgetisnull(res, (int)i, 0) && !strcmp(PQgetvalue(res, (int)i, 0), w);
    if (!ok) fprintf(stderr, "  %s.%s[%zu] = \"%s\", want \"%s\"\n", table, col, i + 1,
                     PQgetvalue(res, (int)i, 0), w);
  }
  if (!ok) fprintf(stderr, "  %s: %d rows, want %zu %s\n", sql, PQntuples(res), n,
                   PQresultErrorMessage(res));
  PQclear(res);
  return ok;
}

/* COPY table (cols) FROM STDIN with data, binary (framed by the header and
 * trailer, as the loader sends record rows) or text; 0 or -1 (message
 * printed, unless quiet). */
static int copy_fmt(PGconn *c, const char *table, const char *cols, const dp_buf_t *data, bool bin,
                    bool quiet) {
  char sql[1024];
  snprintf(sql, sizeof sql, "COPY %s (%s) FROM STDIN%s", table, cols,
           bin ? " WITH (FORMAT binary)" : "");
  PGresult *res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_COPY_IN) {
    fprintf(stderr, "  %s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    return -1;
  }
  PQclear(res);
  if (bin && PQputCopyData(c, dp_store_copy_bin_header, DP_STORE_COPY_BIN_HEADER_LEN) != 1)
    return -1;
  if (PQputCopyData(c, data->data ? data->data : "", (int)data->len) != 1) return -1;
  if (bin && PQputCopyData(c, dp_store_copy_bin_trailer, DP_STORE_COPY_BIN_TRAILER_LEN) != 1)
    return -1;
  if (PQputCopyEnd(c, NULL) != 1) return -1;
  int rc = 0;
  while ((res = PQgetResult(c))) {
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      if (!quiet) fprintf(stderr, "  COPY %s: %s", table, PQresultErrorMessage(res));
      rc = -1;
    }
    PQclear(res);
  }
  return rc;
}

/* Record rows go in binary, the others in text: as the loader sends them. */
static int copy_in(PGconn *c, const char *table, const char *cols, const dp_buf_t *data) {
  return copy_fmt(c, table, cols, data, cols == dp_store_record_columns, false);
}

TEST(store_pg_migrate_concurrent) {
  if (!setup()) return;
  /* Four processes migrate the empty database at the same moment. */
  pid_t kids[4];
  for (int i = 0; i < 4; i++) {
    kids[i] = fork();
    ASSERT_TRUE(kids[i] >= 0);
    if (kids[i] == 0) {
      char err[512];
      PGconn *c = dp_store_connect(conninfo, err, sizeof err);
      if (!c) fprintf(stderr, "  child %d: %s\n", i, err);
      PQfinish(c);
      _exit(c ? 0 : 1);
    }
  }
  for (int i = 0; i < 4; i++) {
    int st = -1;
    ASSERT_EQ(waitpid(kids[i], &st, 0), kids[i]);
    ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err); /* and once more */
  ASSERT_NOT_NULL(c);
  char want[64];
  snprintf(want, sizeof want, "%zu %d", dp_n_migrations, dp_store_schema_version());
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) || ' ' || max(version) FROM schema_migrations", want));
  char nmig[32];
  snprintf(nmig, sizeof nmig, "%zu", dp_n_migrations);
  /* each migration recorded exactly once, whatever the concurrency */
  ASSERT_TRUE(scalar_is(c, "SELECT count(DISTINCT version) FROM schema_migrations", nmig));
  ASSERT_TRUE(scalar_is(c, "SELECT name FROM schema_migrations WHERE version = 1", "0001_init.sql"));
  ASSERT_TRUE(scalar_is(c, "SELECT to_regclass('report') IS NOT NULL AND "
                           "to_regclass('record_default') IS NOT NULL AND "
                           "to_regclass('ingest_error') IS NOT NULL", "t"));
  /* Explicit migrate on an up-to-date database is a no-op. */
  ASSERT_OK(dp_store_migrate(c, err, sizeof err));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM schema_migrations", nmig));
  PQfinish(c);
}

static const char *h(size_t i) { return hostile[i % N_HOSTILE]; }

TEST(store_pg_copy_roundtrip) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  /* Rows carry explicit +00 offsets: the session time zone must not matter. */
  PQclear(PQexec(c, "SET TimeZone = 'America/New_York'"));

  dp_report_t r = {0};
  r.schema = 2;
  r.version = h(0);
  r.org_name = h(1);
  r.email = h(2);
  r.extra_contact = h(3);
  r.report_id = h(4);
  r.begin = 1709251200;
  r.end = 1709337599;
  r.errors = hostile;
  r.n_errors = N_HOSTILE;
  r.generator = h(5);
  r.domain = h(6);
  r.adkim = h(7);
  r.aspf = h(8);
  r.p = h(9);
  r.sp = h(10);
  r.np = h(11);
  r.pct = -1;
  r.fo = h(12);
  r.testing = h(13);
  r.discovery_method = h(14);
  r.n_records = 2;
  r.messages = 7;
  int64_t key = dp_store_report_key(&r);

  dp_reason_t reasons[N_HOSTILE];
  dp_dkim_auth_t dkim[N_HOSTILE];
  dp_spf_auth_t spf[N_HOSTILE];
  for (size_t i = 0; i < N_HOSTILE; i++) {
    reasons[i] = (dp_reason_t){h(i), h(i + 1)};
    dkim[i] = (dp_dkim_auth_t){h(i + 2), h(i + 3), h(i + 4), h(i + 5)};
    spf[i] = (dp_spf_auth_t){h(i + 6), h(i + 7), h(i + 8), h(i + 9)};
  }
  dp_record_t rec = {0};
  rec.index = 1;
  snprintf(rec.source_ip, sizeof rec.source_ip, "2001:db8::1");
  rec.ip_family = 6;
  rec.count = 5;
  rec.disposition = h(15);
  rec.pe_dkim = h(16);
  rec.pe_spf = h(17);
  rec.reasons = reasons;
  rec.n_reasons = N_HOSTILE;
  rec.header_from = h(18);
  rec.envelope_from = h(19);
  rec.envelope_to = h(20);
  rec.dkim = dkim;
  rec.n_dkim = N_HOSTILE;
  rec.spf = spf;
  rec.n_spf = N_HOSTILE;
  rec.dkim_aligned = true;
  rec.spf_aligned_strict = true;
  rec.sender = h(21);
  rec.third_party = true;
  dp_record_t rec2 = {0};
  rec2.index = 2;
  snprintf(rec2.source_ip, sizeof rec2.source_ip, "192.0.2.1");
  rec2.ip_family = 4;
  rec2.count = 2;
  rec2.disposition = rec2.pe_dkim = rec2.pe_spf = "";
  rec2.header_from = rec2.envelope_from = rec2.envelope_to = "";
  rec2.sender = "unauthenticated 192.0.2.0/24";

  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_report(&b, &r, key, "caf\xE9\t.xml", UINT64_MAX));
  ASSERT_EQ(copy_in(c, "report", dp_store_report_columns, &b), 0);
  dp_buf_reset(&b);
  ASSERT_TRUE(scalar_is(c, "SELECT dp_ensure_record_partition('2024-03-01 00:00:00+00')", ""));
  ASSERT_OK(dp_store_encode_record(&b, key, &r, &rec));
  ASSERT_OK(dp_store_encode_record(&b, key, &r, &rec2));
  ASSERT_EQ(copy_in(c, "record", dp_store_record_columns, &b), 0);
  dp_buf_reset(&b);
  for (size_t i = 0; i + 3 < N_HOSTILE; i++)
    ASSERT_OK(dp_store_encode_error(&b, h(i), h(i + 1), h(i + 2), h(i + 3), DP_EXML, h(i + 4)));
  ASSERT_EQ(copy_in(c, "ingest_error", dp_store_error_columns, &b), 0);
  dp_buf_free(&b);

  /* report: every text column exactly as sent. */
  char sql[512], want[64];
  const char *tcols[] = {"version", "org_name", "email", "extra_contact", "report_id",
                         "generator", "domain", "adkim", "aspf", "p", "sp", "np", "fo",
                         "testing", "discovery_method"};
  const char *tvals[] = {r.version, r.org_name, r.email, r.extra_contact, r.report_id,
                         r.generator, r.domain, r.adkim, r.aspf, r.p, r.sp, r.np, r.fo,
                         r.testing, r.discovery_method};
  for (size_t i = 0; i < sizeof tcols / sizeof tcols[0]; i++) {
    snprintf(sql, sizeof sql, "SELECT %s FROM report WHERE id = %lld", tcols[i], (long long)key);
    ASSERT_TRUE(scalar_is(c, sql, tvals[i]));
  }
  snprintf(sql, sizeof sql, "SELECT extract(epoch FROM begin_ts)::bigint || ' ' || "
           "extract(epoch FROM end_ts)::bigint || ' ' || coalesce(pct::text, 'null') || ' ' || "
           "schema_version || ' ' || content_hash || ' ' || n_records || ' ' || messages || "
           "' ' || source FROM report WHERE id = %lld", (long long)key);
  ASSERT_TRUE(scalar_is(c, sql, "1709251200 1709337599 null 2 -1 2 7 caf\xEF\xBF\xBD\t.xml"));
  snprintf(sql, sizeof sql, "id = %lld", (long long)key);
  ASSERT_TRUE(array_is(c, "report", "errors", sql, hostile, N_HOSTILE, sizeof hostile[0]));

  /* record: the partition, scalars, arrays. */
  ASSERT_TRUE(scalar_is(c, "SELECT string_agg(tableoid::regclass::text, ',' ORDER BY seq) FROM record",
                        "record_2024_03,record_2024_03"));
  snprintf(sql, sizeof sql, "SELECT report_key = %lld AND begin_ts = '2024-03-01 00:00:00+00' "
           "FROM record WHERE seq = 1", (long long)key);
  ASSERT_TRUE(scalar_is(c, sql, "t"));
  ASSERT_TRUE(scalar_is(c, "SELECT source_ip || ' ' || count || ' ' || dkim_aligned || "
                           "dkim_aligned_strict || spf_aligned || spf_aligned_strict || third_party "
                           "FROM record WHERE seq = 1", "2001:db8::1/128 5 truefalsefalsetruetrue"));
  const char *rcols[] = {"disposition", "pe_dkim", "pe_spf", "header_from", "envelope_from",
                         "envelope_to", "sender"};
  const char *rvals[] = {rec.disposition, rec.pe_dkim, rec.pe_spf, rec.header_from,
                         rec.envelope_from, rec.envelope_to, rec.sender};
  for (size_t i = 0; i < sizeof rcols / sizeof rcols[0]; i++) {
    snprintf(sql, sizeof sql, "SELECT %s FROM record WHERE seq = 1", rcols[i]);
    ASSERT_TRUE(scalar_is(c, sql, rvals[i]));
  }
  ASSERT_TRUE(array_is(c, "record", "reason_types", "seq = 1", &reasons[0].type, N_HOSTILE, sizeof reasons[0]));
  ASSERT_TRUE(array_is(c, "record", "reason_comments", "seq = 1", &reasons[0].comment, N_HOSTILE, sizeof reasons[0]));
  ASSERT_TRUE(array_is(c, "record", "dkim_domains", "seq = 1", &dkim[0].domain, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record", "dkim_selectors", "seq = 1", &dkim[0].selector, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record", "dkim_results", "seq = 1", &dkim[0].result, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record", "dkim_human", "seq = 1", &dkim[0].human_result, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record", "spf_domains", "seq = 1", &spf[0].domain, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(array_is(c, "record", "spf_scopes", "seq = 1", &spf[0].scope, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(array_is(c, "record", "spf_results", "seq = 1", &spf[0].result, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(array_is(c, "record", "spf_human", "seq = 1", &spf[0].human_result, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(scalar_is(c, "SELECT source_ip || ' ' || cardinality(dkim_domains) || "
                           "cardinality(spf_results) || cardinality(reason_types) || ' ' || sender "
                           "FROM record WHERE seq = 2", "192.0.2.1/32 000 unauthenticated 192.0.2.0/24"));

  /* ingest_error: all columns, in COPY order. */
  PGresult *res = PQexec(c, "SELECT source, part, org_name, report_id, code, reason "
                            "FROM ingest_error ORDER BY id");
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK);
  ASSERT_EQ(PQntuples(res), (int)N_HOSTILE - 3);
  for (int i = 0; i < PQntuples(res); i++) {
    for (int j = 0; j < 4; j++) ASSERT_STR_EQ(PQgetvalue(res, i, j), h((size_t)i + (size_t)j));
    ASSERT_STR_EQ(PQgetvalue(res, i, 4), "DP_EXML");
    ASSERT_STR_EQ(PQgetvalue(res, i, 5), h((size_t)i + 4));
  }
  PQclear(res);
  snprintf(want, sizeof want, "%d", (int)N_HOSTILE - 3);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM ingest_error WHERE at > now() - interval '1 hour'", want));
  PQfinish(c);
}

/* ------------------------------------------------------------------------ */
/* Binary rows against their text twins: the same random hostile records
 * COPYed both ways store the same values, column for column; edge values
 * (IPv4, IPv6, IPv4-mapped IPv6, 64-bit counts, int4 seq, timestamps at the
 * ends of the parser's range and before year 1) included. */

static uint64_t rnd_state = 0x2545F4914F6CDD1Dull;
static unsigned rnd(unsigned n) {
  rnd_state ^= rnd_state << 13;
  rnd_state ^= rnd_state >> 7;
  rnd_state ^= rnd_state << 17;
  return (unsigned)(rnd_state % n);
}

static const char *const pieces[] = {"a", "Z", "\\", "\"", "\t", "\n", "\r", "\x01", "\x7f",
                                     "\xc3\xa9", "\xff", "\xe2\x82", "\xed\xa0\x80", ",", "{",
                                     "}", " ", "\xf0\x9f\x98\x80", "example.com", "NULL", "\\N",
                                     "\\.", "'"};

static const char *rnd_text(char *buf, size_t cap) {
  size_t n = 0, k = rnd(7);
  buf[0] = '\0';
  for (size_t i = 0; i < k; i++) {
    const char *p = pieces[rnd(sizeof pieces / sizeof pieces[0])];
    size_t l = strlen(p);
    if (n + l + 1 > cap) break;
    memcpy(buf + n, p, l + 1);
    n += l;
  }
  return buf;
}

TEST(store_pg_binary_rows_store_what_text_rows_store) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  PQclear(PQexec(c, "SET TimeZone = 'Asia/Kolkata'"));
  ASSERT_TRUE(scalar_is(c, "CREATE TEMP TABLE rt_text (LIKE record INCLUDING ALL); "
                           "CREATE TEMP TABLE rt_bin (LIKE record INCLUDING ALL); SELECT 1", "1"));
  static const char *const ips[][2] = {
      {"192.0.2.1", "4"}, {"0.0.0.0", "4"}, {"255.255.255.255", "4"}, {"2001:db8::1", "6"},
      {"::", "6"}, {"::ffff:192.0.2.1", "6"}, {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "6"},
      {"fe80::1:2:3:4", "6"}};
  static const int64_t begins[] = {0, 1, 946684800, 1709251200, 253402300799, -1,
                                   -62135596800 - 86400, INT64_C(-210866803200)};
  static char pool[40][64];
  dp_buf_t tb, bb;
  dp_buf_init(&tb, 0);
  dp_buf_init(&bb, 0);
  const unsigned n_rows = 600;
  for (unsigned i = 0; i < n_rows; i++) {
    size_t np = 0;
#define S() rnd_text(pool[np++], sizeof pool[0])
    dp_report_t r = {0};
    r.begin = begins[i % (sizeof begins / sizeof begins[0])];
    dp_reason_t rs[3];
    dp_dkim_auth_t dk[3];
    dp_spf_auth_t sp[3];
    dp_record_t rec = {0};
    rec.index = i % 5 == 4 ? (uint64_t)INT32_MAX - i : i + 1;
    snprintf(rec.source_ip, sizeof rec.source_ip, "%s", ips[i % 8][0]);
    rec.ip_family = ips[i % 8][1][0] - '0';
    rec.count = i % 3 == 0 ? (uint64_t)INT64_MAX - i : i % 3 == 1 ? 0 : (uint64_t)1 << 40;
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
    for (size_t k = 0; k < 3; k++) {
      rs[k] = (dp_reason_t){S(), S()};
      dk[k] = (dp_dkim_auth_t){S(), S(), S(), S()};
      sp[k] = (dp_spf_auth_t){S(), S(), S(), S()};
    }
#undef S
    rec.reasons = rec.n_reasons ? rs : NULL;
    rec.dkim = rec.n_dkim ? dk : NULL;
    rec.spf = rec.n_spf ? sp : NULL;
    rec.dkim_aligned = rnd(2);
    rec.dkim_aligned_strict = rnd(2);
    rec.spf_aligned = rnd(2);
    rec.spf_aligned_strict = rnd(2);
    rec.third_party = rnd(2);
    int64_t key = i % 2 ? INT64_MIN + i : INT64_MAX - i;
    ASSERT_OK(dp_store_encode_record_text(&tb, key, &r, &rec));
    ASSERT_OK(dp_store_encode_record(&bb, key, &r, &rec));
  }
  ASSERT_EQ(copy_fmt(c, "rt_text", dp_store_record_columns, &tb, false, false), 0);
  ASSERT_EQ(copy_fmt(c, "rt_bin", dp_store_record_columns, &bb, true, false), 0);
  char want[32];
  snprintf(want, sizeof want, "%u", n_rows);
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM rt_bin", want));
  ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM rt_text", want));
  /* every column equal, byte for byte: text compared as bytea, arrays as
   * their text form, inet with its family and mask, timestamps as epoch
   * microseconds */
  static const char cmp[] =
      "SELECT count(*) FROM rt_text t FULL JOIN rt_bin b ON t.report_key = b.report_key "
      "WHERE (t.begin_ts, t.seq, t.count, t.dkim_aligned, t.dkim_aligned_strict, t.spf_aligned, "
      "t.spf_aligned_strict, t.third_party) IS DISTINCT FROM (b.begin_ts, b.seq, b.count, "
      "b.dkim_aligned, b.dkim_aligned_strict, b.spf_aligned, b.spf_aligned_strict, b.third_party) "
      "OR extract(epoch FROM t.begin_ts) IS DISTINCT FROM extract(epoch FROM b.begin_ts) "
      "OR (family(t.source_ip), masklen(t.source_ip), host(t.source_ip)) IS DISTINCT FROM "
      "(family(b.source_ip), masklen(b.source_ip), host(b.source_ip)) "
      "OR (convert_to(t.disposition, 'UTF8'), convert_to(t.pe_dkim, 'UTF8'), "
      "convert_to(t.pe_spf, 'UTF8'), convert_to(t.header_from, 'UTF8'), "
      "convert_to(t.envelope_from, 'UTF8'), convert_to(t.envelope_to, 'UTF8'), "
      "convert_to(t.sender, 'UTF8')) IS DISTINCT FROM (convert_to(b.disposition, 'UTF8'), "
      "convert_to(b.pe_dkim, 'UTF8'), convert_to(b.pe_spf, 'UTF8'), "
      "convert_to(b.header_from, 'UTF8'), convert_to(b.envelope_from, 'UTF8'), "
      "convert_to(b.envelope_to, 'UTF8'), convert_to(b.sender, 'UTF8')) "
      "OR (t.reason_types::text, t.reason_comments::text, t.dkim_domains::text, "
      "t.dkim_selectors::text, t.dkim_results::text, t.dkim_human::text, t.spf_domains::text, "
      "t.spf_scopes::text, t.spf_results::text, t.spf_human::text, "
      "array_dims(t.reason_types), array_dims(t.dkim_human), array_dims(t.spf_human)) "
      "IS DISTINCT FROM (b.reason_types::text, b.reason_comments::text, b.dkim_domains::text, "
      "b.dkim_selectors::text, b.dkim_results::text, b.dkim_human::text, b.spf_domains::text, "
      "b.spf_scopes::text, b.spf_results::text, b.spf_human::text, "
      "array_dims(b.reason_types), array_dims(b.dkim_human), array_dims(b.spf_human))";
  ASSERT_TRUE(scalar_is(c, cmp, "0"));
  /* the edges arrived as such */
  ASSERT_TRUE(scalar_is(c, "SELECT string_agg(DISTINCT source_ip::text, ' ' ORDER BY source_ip::text) "
                           "FROM rt_bin",
                        "0.0.0.0/32 192.0.2.1/32 2001:db8::1/128 255.255.255.255/32 ::/128 "
                        "::ffff:192.0.2.1/128 fe80::1:2:3:4/128 "
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"));
  ASSERT_TRUE(scalar_is(c, "SELECT min(begin_ts AT TIME ZONE 'UTC')::text || ' / ' || "
                           "max(begin_ts AT TIME ZONE 'UTC')::text || ' / ' || max(count) || ' / ' || "
                           "max(seq) FROM rt_bin",
                        "4714-11-24 00:00:00 BC / 9999-12-31 23:59:59 / 9223372036854775807 / "
                        "2147483643"));
  dp_buf_free(&tb);
  dp_buf_free(&bb);
  PQfinish(c);
}

/* Values the server refuses through text COPY are refused through binary
 * COPY too (nothing truncated or silently changed): seq past int4, an
 * address that does not parse, a timestamp past PostgreSQL's range. */
TEST(store_pg_binary_refuses_what_text_refuses) {
  if (!setup()) return;
  char err[512];
  PGconn *c = dp_store_connect(conninfo, err, sizeof err);
  ASSERT_NOT_NULL(c);
  ASSERT_TRUE(scalar_is(c, "CREATE TEMP TABLE rf (LIKE record INCLUDING ALL); SELECT 1", "1"));
  for (int k = 0; k < 4; k++) {
    dp_report_t r = {0};
    r.begin = 1709251200;
    dp_record_t rec = {0};
    rec.index = 1;
    snprintf(rec.source_ip, sizeof rec.source_ip, "192.0.2.1");
    rec.ip_family = 4;
    rec.disposition = rec.pe_dkim = rec.pe_spf = rec.header_from = "";
    rec.envelope_from = rec.envelope_to = rec.sender = "";
    if (k == 0) rec.index = (uint64_t)INT32_MAX + 1;
    if (k == 1) snprintf(rec.source_ip, sizeof rec.source_ip, "not-an-ip");
    if (k == 2) r.begin = INT64_C(9300000000000);
    if (k == 3) r.begin = INT64_C(-211900000000); /* before 4713 BC */
    for (int bin = 0; bin < 2; bin++) {
      dp_buf_t b;
      dp_buf_init(&b, 0);
      ASSERT_OK(bin ? dp_store_encode_record(&b, 1, &r, &rec)
                    : dp_store_encode_record_text(&b, 1, &r, &rec));
      if (copy_fmt(c, "rf", dp_store_record_columns, &b, bin, true) == 0)
        fprintf(stderr, "  case %d (%s) was stored\n", k, bin ? "binary" : "text");
      ASSERT_TRUE(scalar_is(c, "SELECT count(*) FROM rf", "0"));
      dp_buf_free(&b);
    }
  }
  /* and a good row goes in after all that on the same connection */
  dp_report_t r = {0};
  r.begin = 1709251200;
  dp_record_t rec = {0};
  rec.index = (uint64_t)INT32_MAX;
  snprintf(rec.source_ip, sizeof rec.source_ip, "192.0.2.1");
  rec.ip_family = 4;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_record(&b, 1, &r, &rec));
  ASSERT_EQ(copy_fmt(c, "rf", dp_store_record_columns, &b, true, false), 0);
  ASSERT_TRUE(scalar_is(c, "SELECT seq || ' ' || source_ip || ' ' || disposition || '|' FROM rf",
                        "2147483647 192.0.2.1/32 |"));
  dp_buf_free(&b);
  PQfinish(c);
}
