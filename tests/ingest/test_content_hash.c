/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_content_hash.c - a report's content hash (length and
 * Adler-32 of its XML) is the same whatever the container: plain XML, gzip,
 * zlib, zip, and a big gzip whose windows are summed on the inflater's
 * helper thread, each checked against the value computed here. */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "ingest/input_job_int.h"
#include "ingest/unpack_priv.h"
#include "parse/parse.h"
#include "tests/ingest/unpack_test_util.h"
#include "tests/test.h"

/* A report of n records with 32 pseudo-random hex digits per record (so
 * that its gzip takes several reads); caller owns the result. */
static char *report(size_t n, size_t *len) {
  dp_buf_t x;
  dp_buf_init(&x, 0);
  dp_buf_puts(&x, "<?xml version=\"1.0\"?>\n<feedback><report_metadata><org_name>hash.example"
                  "</org_name><email>a@hash.example</email><report_id>h1</report_id><date_range>"
                  "<begin>1700000000</begin><end>1700086399</end></date_range></report_metadata>"
                  "<policy_published><domain>example.com</domain><p>none</p></policy_published>\n");
  uint64_t r = 88172645463325252u;
  for (size_t i = 0; i < n; i++) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    dp_buf_printf(&x, "<record><row><source_ip>10.%zu.%zu.%zu</source_ip><count>%zu</count>"
                      "<policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>"
                      "fail</spf></policy_evaluated></row><identifiers><header_from>example.com"
                      "</header_from></identifiers><auth_results><dkim><domain>example.com"
                      "</domain><selector>s%016" PRIx64 "%016" PRIx64 "</selector><result>pass"
                      "</result></dkim></auth_results></record>\n",
                  (i >> 16) & 255, (i >> 8) & 255, i & 255, 1 + i % 7, r, r * 0x9E3779B97F4A7C15u);
  }
  dp_buf_puts(&x, "</feedback>\n");
  return dp_buf_steal(&x, len);
}

static char *write_file(const void *p, size_t n, const char *suffix) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/dp-test-hash-XXXXXX%s", suffix);
  int fd = mkstemps(path, (int)strlen(suffix));
  if (fd < 0) return NULL;
  bool ok = write(fd, p, n) == (ssize_t)n;
  close(fd);
  return ok ? strdup(path) : NULL;
}

/* The content_hash column (23rd) of the job's one report row. */
static char *job_hash(const char *path) {
  dp_limits_t lim;
  dp_limits_default(&lim);
  dp_job_t j;
  dp_job_init(&j, path, &lim);
  dp_job_run(&j);
  char *out = NULL;
  if (j.n_staged == 1 && j.head->report_row.data) {
    const char *p = j.head->report_row.data;
    for (int col = 1; col < 23 && p; col++) {
      p = strchr(p, '\t');
      if (p) p++;
    }
    if (p) out = strndup(p, strcspn(p, "\t"));
  } else {
    fprintf(stderr, "%s: %s\n", path, j.lines.data ? j.lines.data : "no report");
  }
  dp_job_free(&j);
  return out;
}

TEST(content_hash_same_in_every_container) {
  (void)rec_cb;
  dp_align_global_init();
  size_t n = 0;
  char *xml = report(30000, &n);
  ASSERT_TRUE(n > (6u << 20));
  /* the fingerprint: byte count, then zlib's Adler-32 of the XML */
  uint64_t fp = ((uint64_t)(n & 0xffffffffu) << 32) | adler32_z(1, (const unsigned char *)xml, n);
  char want[32];
  snprintf(want, sizeof want, "%" PRId64, fp <= INT64_MAX ? (int64_t)fp : -(int64_t)(~fp) - 1);

  size_t ngz = 0, nzl = 0, nzip = 0;
  unsigned char *gz = make_gzip(xml, n, &ngz), *zl = make_zlib(xml, n, &nzl);
  struct zentry e = {"report.xml", xml, n, 0};
  unsigned char *zp = make_zip(&e, 1, &nzip);
  ASSERT_TRUE(ngz > (512u << 10)); /* more than two reads of the job */
  char *paths[4] = {write_file(xml, n, ".xml"), write_file(gz, ngz, ".xml.gz"),
                    write_file(zl, nzl, ".zlib"), write_file(zp, nzip, ".zip")};
  free(gz);
  free(zl);
  free(zp);
  for (int i = 0; i < 4; i++) ASSERT_NOT_NULL(paths[i]);

  /* on the parsing thread: no helper */
  uint64_t saved = dp__inflate_thread_min;
  dp__inflate_thread_min = UINT64_MAX;
  unsigned long runs0 = dp__inflate_helper_runs;
  for (int i = 0; i < 4; i++) {
    char *h = job_hash(paths[i]);
    ASSERT_NOT_NULL(h);
    ASSERT_STR_EQ(h, want);
    free(h);
  }
  ASSERT_EQ(dp__inflate_helper_runs, runs0);
  /* gzip and zlib again with the helper thread for every write: the windows
   * come with their sums, combined into the same fingerprint */
  dp__inflate_thread_min = 0;
  for (int i = 1; i < 3; i++) {
    unsigned long sums0 = dp__inflate_sums_handed;
    char *h = job_hash(paths[i]);
    ASSERT_NOT_NULL(h);
    ASSERT_STR_EQ(h, want);
    free(h);
    ASSERT_TRUE(dp__inflate_sums_handed - sums0 >= 80); /* most of the 6+ MiB */
  }
  dp__inflate_thread_min = saved;
  ASSERT_TRUE(dp__inflate_helper_runs > runs0);
  for (int i = 0; i < 4; i++) {
    unlink(paths[i]);
    free(paths[i]);
  }
  free(xml);
}
