/* SPDX-License-Identifier: MIT */
/* tests/store/test_pg_roundtrip.c - against a real server ($DP_TEST_DB, a
 * conninfo where databases may be created): concurrent and repeated
 * migration, then COPY of encoded report/record/error rows full of hostile
 * strings and an exact read-back (the record's auth lists through the view
 * record_arrays and the catch-up's decoders). Without DP_TEST_DB it says so and passes. */
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
    /* the auth lists' separators (RS, US) and escape leader (FS), alone,
     * together, and as an escape would look */
    "\x1c", "\x1e\x1f", "\x1c\x01", "a\x1f" "b\x1e" "c\x1c" "d\x1d", "\x1c\x03\x1c\x02", "",
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

/* Run a statement that returns no rows; false (message printed) on error. */
static bool command_ok(PGconn *c, const char *sql) {
  PGresult *res = PQexec(c, sql);
  bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
  if (!ok) fprintf(stderr, "  %s: %s", sql, PQresultErrorMessage(res));
  PQclear(res);
  return ok;
}

/* COPY table (cols) FROM STDIN with data; 0 or -1 (message printed). */
static int copy_in(PGconn *c, const char *table, const char *cols, const dp_buf_t *data) {
  char sql[1024];
  snprintf(sql, sizeof sql, "COPY %s (%s) FROM STDIN", table, cols);
  PGresult *res = PQexec(c, sql);
  if (PQresultStatus(res) != PGRES_COPY_IN) {
    fprintf(stderr, "  %s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    return -1;
  }
  PQclear(res);
  if (PQputCopyData(c, data->data, (int)data->len) != 1 || PQputCopyEnd(c, NULL) != 1) return -1;
  int rc = 0;
  while ((res = PQgetResult(c))) {
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
      fprintf(stderr, "  COPY %s: %s", table, PQresultErrorMessage(res));
      rc = -1;
    }
    PQclear(res);
  }
  return rc;
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

  /* one entry of empty fields: not an empty list */
  static const dp_reason_t empty_reason = {"", ""};
  static const dp_dkim_auth_t empty_dkim = {"", "", "", ""};
  dp_record_t rec3 = rec2;
  rec3.index = 3;
  rec3.reasons = &empty_reason;
  rec3.n_reasons = 1;
  rec3.dkim = &empty_dkim;
  rec3.n_dkim = 1;

  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_store_encode_report(&b, &r, key, "caf\xE9\t.xml", UINT64_MAX));
  ASSERT_EQ(copy_in(c, "report", dp_store_report_columns, &b), 0);
  dp_buf_reset(&b);
  ASSERT_TRUE(scalar_is(c, "SELECT dp_ensure_record_partition('2024-03-01 00:00:00+00')", ""));
  ASSERT_OK(dp_store_encode_record(&b, key, &r, &rec));
  ASSERT_OK(dp_store_encode_record(&b, key, &r, &rec2));
  ASSERT_OK(dp_store_encode_record(&b, key, &r, &rec3));
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
                        "record_2024_03,record_2024_03,record_2024_03"));
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
  ASSERT_TRUE(array_is(c, "record_arrays", "reason_types", "seq = 1", &reasons[0].type, N_HOSTILE, sizeof reasons[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "reason_comments", "seq = 1", &reasons[0].comment, N_HOSTILE, sizeof reasons[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "dkim_domains", "seq = 1", &dkim[0].domain, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "dkim_selectors", "seq = 1", &dkim[0].selector, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "dkim_results", "seq = 1", &dkim[0].result, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "dkim_human", "seq = 1", &dkim[0].human_result, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "spf_domains", "seq = 1", &spf[0].domain, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "spf_scopes", "seq = 1", &spf[0].scope, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "spf_results", "seq = 1", &spf[0].result, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(array_is(c, "record_arrays", "spf_human", "seq = 1", &spf[0].human_result, N_HOSTILE, sizeof spf[0]));
  /* the lists as the catch-up reads them (migration 0008's decoders) */
  ASSERT_TRUE(array_is(c, "record x", "ARRAY(SELECT d.human_result FROM dp_auth_dkim(x.dkim) d)",
                       "seq = 1", &dkim[0].human_result, N_HOSTILE, sizeof dkim[0]));
  ASSERT_TRUE(array_is(c, "record x", "ARRAY(SELECT s.scope FROM dp_auth_spf(x.spf) s)", "seq = 1",
                       &spf[0].scope, N_HOSTILE, sizeof spf[0]));
  ASSERT_TRUE(array_is(c, "record x", "ARRAY(SELECT t.comment FROM dp_auth_reasons(x.reasons) t)",
                       "seq = 1", &reasons[0].comment, N_HOSTILE, sizeof reasons[0]));
  ASSERT_TRUE(scalar_is(c, "SELECT source_ip || ' ' || cardinality(dkim_domains) || "
                           "cardinality(spf_results) || cardinality(reason_types) || ' ' || sender "
                           "FROM record_arrays WHERE seq = 2", "192.0.2.1/32 000 unauthenticated 192.0.2.0/24"));
  ASSERT_TRUE(scalar_is(c, "SELECT reasons || dkim || spf || '.' FROM record WHERE seq = 2", "."));
  /* one entry of empty strings: arrays of one "" */
  ASSERT_TRUE(scalar_is(c, "SELECT reason_types::text || reason_comments::text || dkim_domains::text "
                           "|| dkim_selectors::text || dkim_results::text || dkim_human::text || "
                           "cardinality(spf_domains) FROM record_arrays WHERE seq = 3",
                        "{\"\"}{\"\"}{\"\"}{\"\"}{\"\"}{\"\"}0"));
  /* the view's inserts encode as the loader does: the rows inserted through
   * it equal the COPYed ones, column for column */
  ASSERT_TRUE(command_ok(c, "CREATE TEMP TABLE rt_arrays AS SELECT * FROM record_arrays"));
  ASSERT_TRUE(command_ok(c, "CREATE TEMP TABLE rt_lists AS SELECT * FROM record"));
  ASSERT_TRUE(command_ok(c, "DELETE FROM record"));
  ASSERT_TRUE(command_ok(c, "INSERT INTO record_arrays SELECT * FROM rt_arrays"));
  ASSERT_TRUE(scalar_is(c, "SELECT (SELECT count(*) FROM record) || ' ' || (SELECT count(*) FROM "
                           "((TABLE rt_lists EXCEPT ALL TABLE record) UNION ALL "
                           "(TABLE record EXCEPT ALL TABLE rt_lists)) d)", "3 0"));

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
