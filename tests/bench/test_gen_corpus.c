/* SPDX-License-Identifier: MIT */
/* tests/bench/test_gen_corpus.c - the sample/bench corpus generator: same seed
 * gives the same bytes, every file decodes (gzip, zip, mail) to well-formed
 * XML whose records and counts are exactly the expected answers, and the
 * answers agree with parse/'s own alignment and sender grouping. */
#include "../test.h"

#include <dirent.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#include "bench/bench.h"
#include "bench/bench_int.h"
#include "parse/parse.h"

/* ------------------------------------------------------------------------ */
/* helpers: an in-memory file list, decoders                                */

struct file {
  char name[400];
  char *data;
  size_t len;
};

struct files {
  struct file *v;
  size_t n, alloc;
};

static int collect(void *ud, const char *name, const void *data, size_t len) {
  struct files *fs = ud;
  if (fs->n == fs->alloc) {
    fs->alloc = fs->alloc ? fs->alloc * 2 : 64;
    fs->v = realloc(fs->v, fs->alloc * sizeof *fs->v);
    if (!fs->v) return DP_ENOMEM;
  }
  struct file *f = &fs->v[fs->n++];
  snprintf(f->name, sizeof f->name, "%s", name);
  f->data = malloc(len + 1);
  if (!f->data) return DP_ENOMEM;
  memcpy(f->data, data, len);
  f->data[len] = '\0';
  f->len = len;
  return 0;
}

static void files_free(struct files *fs) {
  for (size_t i = 0; i < fs->n; i++) free(fs->v[i].data);
  free(fs->v);
  memset(fs, 0, sizeof *fs);
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

/* 0 and the whole stream, or -1 when it is corrupt or truncated. */
static int gunzip(const char *data, size_t len, dp_buf_t *out) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 15 + 16) != Z_OK) return -1;
  z.next_in = (Bytef *)(uintptr_t)data;
  z.avail_in = (uInt)len;
  int zr = Z_OK;
  while (zr == Z_OK) {
    if (dp_buf_reserve(out, 65536)) break;
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = 65536;
    zr = inflate(&z, Z_NO_FLUSH);
    out->len += 65536 - z.avail_out;
    out->data[out->len] = '\0';
    if (zr == Z_BUF_ERROR && z.avail_out != 0) break; /* input ended early */
    if (zr == Z_BUF_ERROR) zr = Z_OK;
  }
  bool whole = zr == Z_STREAM_END && z.avail_in == 0;
  inflateEnd(&z);
  return whole ? 0 : -1;
}

static int unzip_one(const char *data, size_t len, dp_buf_t *out, char *entry, size_t entry_len) {
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t *src = zip_source_buffer_create(data, len, 0, &ze);
  zip_t *za = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
  zip_error_fini(&ze);
  if (!za) {
    if (src) zip_source_free(src);
    return -1;
  }
  int rc = -1;
  zip_stat_t st;
  if (zip_get_num_entries(za, 0) == 1 && zip_stat_index(za, 0, 0, &st) == 0) {
    snprintf(entry, entry_len, "%s", st.name);
    zip_file_t *zf = zip_fopen_index(za, 0, 0);
    if (zf && !dp_buf_reserve(out, (size_t)st.size) &&
        zip_fread(zf, out->data + out->len, st.size) == (zip_int64_t)st.size) {
      out->len += (size_t)st.size;
      out->data[out->len] = '\0';
      rc = 0;
    }
    if (zf) zip_fclose(zf);
  }
  zip_close(za); /* read-only: frees the archive and its source */
  return rc;
}

static int b64val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Decode the base64 body that follows the last "Content-Transfer-Encoding:
 * base64" header; attachment name into att. */
static int eml_attachment(const char *eml, dp_buf_t *out, char *att, size_t att_len) {
  const char *p = NULL, *q = eml;
  while ((q = strstr(q, "Content-Transfer-Encoding: base64\r\n"))) p = q++;
  if (!p) return -1;
  const char *fn = strstr(p, "filename=\"");
  if (!fn) return -1;
  fn += 10;
  snprintf(att, att_len, "%.*s", (int)strcspn(fn, "\""), fn);
  const char *body = strstr(p, "\r\n\r\n");
  if (!body) return -1;
  body += 4;
  unsigned acc = 0;
  int bits = 0;
  for (; *body && *body != '-'; body++) {
    int v = b64val(*body);
    if (v < 0) continue; /* CRLF and padding */
    acc = acc << 6 | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (dp_buf_putc(out, (char)(acc >> bits & 0xff))) return -1;
    }
  }
  return 0;
}

/* The XML inside a generated file, whatever its packing. */
static int file_xml(const struct file *f, dp_buf_t *xml) {
  char entry[400];
  if (ends_with(f->name, ".xml")) return dp_buf_append(xml, f->data, f->len) ? -1 : 0;
  if (ends_with(f->name, ".xml.gz")) return gunzip(f->data, f->len, xml);
  if (ends_with(f->name, ".zip")) return unzip_one(f->data, f->len, xml, entry, sizeof entry);
  if (ends_with(f->name, ".eml")) {
    dp_buf_t att;
    dp_buf_init(&att, 0);
    int rc = eml_attachment(f->data, &att, entry, sizeof entry);
    if (!rc && ends_with(entry, ".zip")) rc = unzip_one(att.data, att.len, xml, entry, sizeof entry);
    else if (!rc && ends_with(entry, ".xml.gz")) rc = gunzip(att.data, att.len, xml);
    else rc = -1;
    dp_buf_free(&att);
    return rc;
  }
  return -1;
}

static xmlNode *child(xmlNode *n, const char *name) {
  for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name)) return c;
  return NULL;
}

static long long child_ll(xmlNode *n, const char *name) {
  xmlNode *c = child(n, name);
  xmlChar *t = c ? xmlNodeGetContent(c) : NULL;
  char *end = NULL;
  long long v = t ? strtoll((const char *)t, &end, 10) : -1;
  if (t && (end == (char *)t || *end)) v = -1; /* not a whole number */
  xmlFree(t);
  return v;
}

static bool child_is(xmlNode *n, const char *name, const char *want) {
  xmlNode *c = child(n, name);
  xmlChar *t = c ? xmlNodeGetContent(c) : NULL;
  bool eq = t && !strcmp((const char *)t, want);
  xmlFree(t);
  return eq;
}

/* What a document says, read with libxml2's DOM (independent of parse/). */
struct doc_sum {
  bool ok;
  char org[64];
  long long begin, end;
  uint64_t records, messages, pe_pass; /* pe_pass: policy_evaluated dkim or spf pass */
  bool rfc9990;
};

static struct doc_sum read_doc(const char *xml, size_t len) {
  struct doc_sum s;
  memset(&s, 0, sizeof s);
  xmlDoc *doc = xmlReadMemory(xml, (int)len, "report.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOWARNING | XML_PARSE_NOERROR);
  xmlNode *root = doc ? xmlDocGetRootElement(doc) : NULL;
  if (root && !strcmp((const char *)root->name, "feedback")) {
    s.ok = true;
    s.rfc9990 = root->ns && !strcmp((const char *)root->ns->href, "urn:ietf:params:xml:ns:dmarc-2.0");
    xmlNode *meta = child(root, "report_metadata");
    xmlNode *org = child(meta, "org_name");
    xmlChar *t = org ? xmlNodeGetContent(org) : NULL;
    snprintf(s.org, sizeof s.org, "%s", t ? (const char *)t : "");
    xmlFree(t);
    xmlNode *dr = child(meta, "date_range");
    s.begin = child_ll(dr, "begin");
    s.end = child_ll(dr, "end");
    for (xmlNode *r = root->children; r; r = r->next) {
      if (r->type != XML_ELEMENT_NODE || strcmp((const char *)r->name, "record")) continue;
      xmlNode *row = child(r, "row");
      long long c = child_ll(row, "count");
      if (c <= 0) s.ok = false;
      s.records++;
      s.messages += (uint64_t)c;
      xmlNode *pe = child(row, "policy_evaluated");
      if (child_is(pe, "dkim", "pass") || child_is(pe, "spf", "pass")) s.pe_pass += (uint64_t)c;
    }
  }
  xmlFreeDoc(doc);
  return s;
}

static int receiver_of(const char *org) {
  for (int r = 0; r < DP_GEN_N_RECEIVERS; r++)
    if (!strcmp(dp_gen_receiver_org((enum dp_gen_receiver)r), org)) return r;
  return -1;
}

static int gen_sample(const dp_gen_sample_opts_t *o, struct files *fs, dp_gen_expect_t *e) {
  memset(fs, 0, sizeof *fs);
  dp_gen_expect_init(e);
  return dp_gen_sample(o, collect, fs, e);
}

/* ------------------------------------------------------------------------ */
/* file system helpers for the command tests                                */

static char *read_path(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  char tmp[65536];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) dp_buf_append(&b, tmp, n);
  fclose(f);
  return dp_buf_steal(&b, len);
}

static void rm_rf(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", path, e->d_name);
      rm_rf(p);
    }
    closedir(d);
    rmdir(path);
  } else {
    unlink(path);
  }
}

static int run_sample(const char *out, const char *extra) {
  char *argv[8] = {"sample", "--out", (char *)out, "--seed", "42", NULL, NULL, NULL};
  int argc = 5;
  if (extra) argv[argc++] = (char *)extra;
  return dp_sample_cmd(argc, argv);
}

/* ------------------------------------------------------------------------ */
/* tests                                                                    */

TEST(gen_corpus_dates) {
  int64_t t = 0;
  ASSERT_OK(dp_gen_parse_date("2026-11-01", &t));
  ASSERT_EQ(t, 1793491200);
  ASSERT_OK(dp_gen_parse_date("2024-02-29", &t));
  ASSERT_EQ(t, 1709164800);
  ASSERT_EQ(dp_gen_parse_date("2026-02-29", &t), DP_EUSAGE);
  ASSERT_EQ(dp_gen_parse_date("2026-13-01", &t), DP_EUSAGE);
  ASSERT_EQ(dp_gen_parse_date("2026-1-01", &t), DP_EUSAGE);
  ASSERT_EQ(dp_gen_parse_date("yesterday", &t), DP_EUSAGE);
  char s[16];
  dp_gen_format_date(1793491200 + 86399, s, sizeof s);
  ASSERT_STR_EQ(s, "2026-11-01");
}

TEST(gen_corpus_rng_is_splitmix64) {
  /* the published splitmix64 sequence for seed 0: the corpus must not
   * depend on the C library's rand() */
  dp_gen_rng_t r;
  dp_gen_rng_seed(&r, 0);
  ASSERT_U64_EQ(dp_gen_rng_next(&r), UINT64_C(0xe220a8397b1dcdaf));
  ASSERT_U64_EQ(dp_gen_rng_next(&r), UINT64_C(0x6e789e6aa1b965f4));
  for (int i = 0; i < 1000; i++) {
    uint64_t v = dp_gen_rng_range(&r, 5, 9);
    ASSERT_TRUE(v >= 5 && v <= 9);
  }
}

TEST(gen_corpus_alignment_oracle) {
  dp_gen_record_t r;
  memset(&r, 0, sizeof r);
  snprintf(r.source_ip, sizeof r.source_ip, "2001:db8:abcd:12::1");
  r.family = 6;
  r.header_from = "news.example.com";
  r.header_org = "example.com";
  r.spf = (dp_gen_auth_t){"mail1.mcsv.net", "mcsv.net", NULL, "pass"};
  r.dkim[0] = (dp_gen_auth_t){"example.com", "example.com", "k2", "pass"};
  r.n_dkim = 1;
  dp_gen_record_finish(&r);
  ASSERT_STR_EQ(r.sender, "mcsv.net");
  ASSERT_TRUE(r.third_party);
  ASSERT_FALSE(r.spf_aligned);
  ASSERT_TRUE(r.dkim_aligned);
  ASSERT_FALSE(r.dkim_aligned_strict); /* d=example.com vs From news.example.com */
  ASSERT_TRUE(r.dmarc_pass);
  /* nothing passes: the /48 of the source */
  r.spf.result = "softfail";
  r.dkim[0].result = "fail";
  dp_gen_record_finish(&r);
  ASSERT_STR_EQ(r.sender, "unauthenticated 2001:db8:abcd::/48");
  ASSERT_FALSE(r.third_party);
  ASSERT_FALSE(r.dmarc_pass);
  snprintf(r.source_ip, sizeof r.source_ip, "203.0.113.77");
  r.family = 4;
  dp_gen_record_finish(&r);
  ASSERT_STR_EQ(r.sender, "unauthenticated 203.0.113.0/24");
}

TEST(gen_corpus_command_is_deterministic) {
  char a[] = "/tmp/dp_sample_a_XXXXXX", b[] = "/tmp/dp_sample_b_XXXXXX",
       c[] = "/tmp/dp_sample_c_XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(a));
  ASSERT_NOT_NULL(mkdtemp(b));
  ASSERT_NOT_NULL(mkdtemp(c));
  ASSERT_EQ(run_sample(a, NULL), 0);
  ASSERT_EQ(run_sample(b, NULL), 0);
  ASSERT_EQ(run_sample(c, "--seed=43"), 0);
  /* a second run into a used folder is refused rather than mixing corpora */
  ASSERT_EQ(run_sample(a, NULL), 2);
  char ra[4200];
  snprintf(ra, sizeof ra, "%s/reports", a);
  DIR *d = opendir(ra);
  ASSERT_NOT_NULL(d);
  int n = 0, n_diff_seed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char pa[4600], pb[4600], pc[4600];
    snprintf(pa, sizeof pa, "%s/reports/%s", a, e->d_name);
    snprintf(pb, sizeof pb, "%s/reports/%s", b, e->d_name);
    snprintf(pc, sizeof pc, "%s/reports/%s", c, e->d_name);
    size_t la = 0, lb = 0, lc = 0;
    char *da = read_path(pa, &la), *db = read_path(pb, &lb), *dc = read_path(pc, &lc);
    bool same = da && db && la == lb && !memcmp(da, db, la);
    if (dc && (lc != la || memcmp(da, dc, la))) n_diff_seed++;
    free(da);
    free(db);
    free(dc);
    if (!same) {
      closedir(d);
      DP_FAIL_("%s differs between two runs with the same seed", e->d_name);
    }
    n++;
  }
  closedir(d);
  ASSERT_EQ(n, 98); /* 7 receivers x 14 days, every receiver saw mail every day */
  ASSERT_EQ(n_diff_seed, n);
  const char *answers[] = {"expected.json", "expected.tsv"};
  for (int i = 0; i < 2; i++) {
    char pa[4600], pb[4600];
    snprintf(pa, sizeof pa, "%s/%s", a, answers[i]);
    snprintf(pb, sizeof pb, "%s/%s", b, answers[i]);
    size_t la = 0, lb = 0;
    char *da = read_path(pa, &la), *db = read_path(pb, &lb);
    bool same = da && db && la == lb && !memcmp(da, db, la);
    if (i == 0 && da) {
      ASSERT_CONTAINS(da, "\"seed\": 42");
      ASSERT_CONTAINS(da, "\"first_day\": \"2026-10-19\"");
      ASSERT_CONTAINS(da, "\"last_day\": \"2026-11-01\"");
      ASSERT_CONTAINS(da, "{\"sender\": \"sendgrid.net\", \"third_party\": true, ");
    }
    free(da);
    free(db);
    ASSERT_TRUE(same);
  }
  rm_rf(a);
  rm_rf(b);
  rm_rf(c);
}

TEST(gen_corpus_command_rejects_bad_options) {
  char a[] = "/tmp/dp_sample_x_XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(a));
  char *v1[] = {"sample", "--out", a, "--domain", "exa mple.com"};
  ASSERT_EQ(dp_sample_cmd(5, v1), 2);
  char *v2[] = {"sample", "--out", a, "--end", "2026-02-30"};
  ASSERT_EQ(dp_sample_cmd(5, v2), 2);
  char *v3[] = {"sample", "--out", a, "--scale", "0"};
  ASSERT_EQ(dp_sample_cmd(5, v3), 2);
  char *v4[] = {"sample", "--seed", "7"};
  ASSERT_EQ(dp_sample_cmd(3, v4), 2); /* --out is required */
  char *v5[] = {"sample", "--out", a, "--bogus"};
  ASSERT_EQ(dp_sample_cmd(4, v5), 2);
  /* the answers take D as its own organizational domain */
  char *v6[] = {"sample", "--out", a, "--domain", "mail.example.com"};
  ASSERT_EQ(dp_sample_cmd(5, v6), 2);
  char *v7[] = {"sample", "--out", a, "--domain", "co.uk"};
  ASSERT_EQ(dp_sample_cmd(5, v7), 2);
  char reports[4200];
  snprintf(reports, sizeof reports, "%s/reports", a);
  DIR *d = opendir(reports); /* nothing was written by the refused runs */
  if (d) {
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    ASSERT_EQ(n, 0);
  }
  /* a registrable domain under a multi-label suffix, upper case accepted */
  char *v8[] = {"sample", "--out", a, "--domain", "Example.CO.UK", "--days", "2"};
  ASSERT_EQ(dp_sample_cmd(7, v8), 0);
  char path[4300];
  snprintf(path, sizeof path, "%s/expected.json", a);
  size_t len = 0;
  char *json = read_path(path, &len);
  ASSERT_NOT_NULL(json);
  ASSERT_CONTAINS(json, "\"domain\": \"example.co.uk\"");
  ASSERT_CONTAINS(json, "{\"sender\": \"example.co.uk\", \"third_party\": false");
  free(json);
  rm_rf(a);
}

TEST(gen_corpus_answers_are_consistent) {
  dp_gen_sample_opts_t o;
  dp_gen_sample_defaults(&o);
  struct files fs;
  dp_gen_expect_t e;
  ASSERT_OK(gen_sample(&o, &fs, &e));
  ASSERT_U64_EQ(e.files, fs.n);
  ASSERT_U64_EQ(e.reports, 98);
  uint64_t rec = 0, msg = 0, rep = 0;
  for (int r = 0; r < DP_GEN_N_RECEIVERS; r++) {
    ASSERT_U64_EQ(e.rcv_reports[r], 14);
    rep += e.rcv_reports[r];
    rec += e.rcv_records[r];
    msg += e.rcv_messages[r];
  }
  ASSERT_U64_EQ(rep, e.reports);
  ASSERT_U64_EQ(rec, e.records);
  ASSERT_U64_EQ(msg, e.messages);
  size_t n = 0;
  dp_gen_sender_stats_t *v = dp_gen_expect_sorted(&e, &n);
  ASSERT_NOT_NULL(v);
  ASSERT_EQ(n, e.n_senders);
  rec = msg = 0;
  for (size_t i = 0; i < n; i++) {
    rec += v[i].records;
    msg += v[i].messages;
    ASSERT_TRUE(v[i].dmarc_pass <= v[i].messages);
    ASSERT_TRUE(v[i].spf_aligned_strict <= v[i].spf_aligned);
    ASSERT_TRUE(v[i].dkim_aligned_strict <= v[i].dkim_aligned);
    ASSERT_TRUE(v[i].dmarc_pass >= v[i].spf_aligned && v[i].dmarc_pass >= v[i].dkim_aligned);
    if (i) ASSERT_TRUE(v[i - 1].messages >= v[i].messages);
  }
  ASSERT_U64_EQ(rec, e.records);
  ASSERT_U64_EQ(msg, e.messages);
  ASSERT_STR_EQ(v[0].sender, "example.com"); /* own mail is the bulk */
  free(v);

  /* each scenario group lands where dmarcpipe's grouping puts it */
  const dp_gen_sender_stats_t *s = dp_gen_expect_find(&e, "example.com");
  ASSERT_NOT_NULL(s);
  ASSERT_FALSE(s->third_party);
  ASSERT_U64_EQ(s->dmarc_pass, s->messages);
  ASSERT_TRUE(s->spf_aligned < s->messages); /* forwarded mail passes on DKIM only */
  ASSERT_TRUE(s->overridden > 0);            /* Outlook marks it "forwarded" */
  s = dp_gen_expect_find(&e, "mcsv.net");
  ASSERT_NOT_NULL(s);
  ASSERT_TRUE(s->third_party);
  ASSERT_U64_EQ(s->spf_aligned, 0);
  ASSERT_U64_EQ(s->dkim_aligned, s->messages);
  ASSERT_U64_EQ(s->dkim_aligned_strict, s->messages); /* d=news.D, From news.D */
  const char *failing[] = {"sendgrid.net", "amazonses.com", "zendesk.com", "groups.io"};
  for (int i = 0; i < 4; i++) {
    s = dp_gen_expect_find(&e, failing[i]);
    ASSERT_NOT_NULL(s);
    ASSERT_TRUE(s->third_party);
    ASSERT_TRUE(s->messages > 0);
    ASSERT_U64_EQ(s->dmarc_pass, 0);
  }
  s = dp_gen_expect_find(&e, "unauthenticated 198.51.100.0/24"); /* broken forwarding */
  ASSERT_NOT_NULL(s);
  ASSERT_FALSE(s->third_party);
  ASSERT_TRUE(s->overridden > 0 && s->overridden < s->messages);
  s = dp_gen_expect_find(&e, "unauthenticated 203.0.113.0/24"); /* spoofing bursts */
  ASSERT_NOT_NULL(s);
  ASSERT_U64_EQ(s->dmarc_pass, 0);
  ASSERT_TRUE(dp_gen_expect_find(&e, "us-west-2.amazonses.com") == NULL);
  ASSERT_TRUE(dp_gen_expect_find(&e, "news.example.com") == NULL);

  /* the TSV and JSON carry the same numbers */
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(dp_gen_expect_tsv(&e, &b));
  char line[256];
  s = dp_gen_expect_find(&e, "sendgrid.net");
  snprintf(line, sizeof line, "\nsendgrid.net\tyes\t%llu\t%llu\t0\t0\t0\t0\t0\t0\n",
           (unsigned long long)s->records, (unsigned long long)s->messages);
  ASSERT_CONTAINS(b.data, line);
  dp_buf_reset(&b);
  ASSERT_OK(dp_gen_expect_json(&e, &o, &b));
  snprintf(line, sizeof line, "\"records\": %llu, \"messages\": %llu",
           (unsigned long long)e.records, (unsigned long long)e.messages);
  ASSERT_CONTAINS(b.data, line);
  dp_buf_free(&b);
  dp_gen_expect_free(&e);
  files_free(&fs);
}

TEST(gen_corpus_files_decode_to_the_expected_xml) {
  dp_gen_sample_opts_t o;
  dp_gen_sample_defaults(&o);
  o.seed = 7;
  struct files fs;
  dp_gen_expect_t e;
  ASSERT_OK(gen_sample(&o, &fs, &e));
  uint64_t records = 0, messages = 0, pe_pass = 0;
  uint64_t rcv_rec[DP_GEN_N_RECEIVERS] = {0}, rcv_msg[DP_GEN_N_RECEIVERS] = {0};
  dp_buf_t xml;
  dp_buf_init(&xml, 0);
  int n9990 = 0, n_eml = 0, n_zip = 0, n_gz = 0, n_xml = 0;
  for (size_t i = 0; i < fs.n; i++) {
    const struct file *f = &fs.v[i];
    dp_buf_reset(&xml);
    if (file_xml(f, &xml) != 0) DP_FAIL_("%s does not decode", f->name);
    struct doc_sum s = read_doc(xml.data, xml.len);
    if (!s.ok) DP_FAIL_("%s is not a well-formed report", f->name);
    int r = receiver_of(s.org);
    ASSERT_TRUE(r >= 0);
    /* the file name carries the date range, as receivers name them */
    char want[200];
    snprintf(want, sizeof want, "!example.com!%lld!%lld.", s.begin, s.end);
    ASSERT_CONTAINS(f->name, want);
    ASSERT_EQ(s.begin % 86400, 0);
    ASSERT_TRUE(s.end == s.begin + 86399 || s.end == s.begin + 86400);
    /* compressed reports stay well inside the default ratio limit (250) */
    if (!ends_with(f->name, ".xml")) ASSERT_TRUE(xml.len < f->len * 60);
    n9990 += s.rfc9990;
    n_eml += ends_with(f->name, ".eml");
    n_zip += ends_with(f->name, ".zip");
    n_gz += ends_with(f->name, ".gz");
    n_xml += ends_with(f->name, ".xml");
    records += s.records;
    messages += s.messages;
    pe_pass += s.pe_pass;
    rcv_rec[r] += s.records;
    rcv_msg[r] += s.messages;
    if (ends_with(f->name, ".eml")) {
      ASSERT_CONTAINS(f->data, "\r\nMIME-Version: 1.0\r\n");
      ASSERT_TRUE(strstr(f->data, "\n") == strstr(f->data, "\r\n") + 1); /* CRLF lines */
    }
  }
  dp_buf_free(&xml);
  ASSERT_EQ(n9990, 14);
  ASSERT_EQ(n_eml, 28);
  ASSERT_EQ(n_zip, 14);
  ASSERT_EQ(n_gz, 42);
  ASSERT_EQ(n_xml, 14);
  ASSERT_U64_EQ(records, e.records);
  ASSERT_U64_EQ(messages, e.messages);
  for (int r = 0; r < DP_GEN_N_RECEIVERS; r++) {
    ASSERT_U64_EQ(rcv_rec[r], e.rcv_records[r]);
    ASSERT_U64_EQ(rcv_msg[r], e.rcv_messages[r]);
  }
  /* policy_evaluated agrees with the alignment recomputed from auth_results */
  uint64_t pass = 0;
  for (size_t i = 0; i < e.senders_alloc; i++) pass += e.senders[i].dmarc_pass;
  ASSERT_U64_EQ(pe_pass, pass);
  dp_gen_expect_free(&e);
  files_free(&fs);
}

TEST(gen_corpus_mimecast_reuses_report_id_within_a_week) {
  dp_gen_sample_opts_t o;
  dp_gen_sample_defaults(&o);
  struct files fs;
  dp_gen_expect_t e;
  ASSERT_OK(gen_sample(&o, &fs, &e));
  char ids[14][80];
  int n = 0;
  for (size_t i = 0; i < fs.n && n < 14; i++) {
    if (strncmp(fs.v[i].name, "mimecast.org!", 13)) continue;
    const char *p = strstr(fs.v[i].data, "Report-ID: ");
    ASSERT_NOT_NULL(p);
    snprintf(ids[n++], sizeof ids[0], "%.64s", p + 11);
  }
  ASSERT_EQ(n, 14);
  /* 2026-10-19 is a Monday: days 0-6 are one week, 7-13 the next */
  for (int i = 1; i < 7; i++) ASSERT_STR_EQ(ids[i], ids[0]);
  for (int i = 8; i < 14; i++) ASSERT_STR_EQ(ids[i], ids[7]);
  ASSERT_TRUE(strcmp(ids[0], ids[7]) != 0);
  dp_gen_expect_free(&e);
  files_free(&fs);
}

TEST(gen_corpus_corrupt_inputs_are_broken_and_extra) {
  dp_gen_sample_opts_t o;
  dp_gen_sample_defaults(&o);
  o.days = 3;
  struct files good, all;
  dp_gen_expect_t eg, ea;
  ASSERT_OK(gen_sample(&o, &good, &eg));
  o.corrupt = true;
  ASSERT_OK(gen_sample(&o, &all, &ea));
  ASSERT_EQ(all.n, good.n + 3);
  ASSERT_EQ(ea.n_rejected, 3);
  ASSERT_U64_EQ(ea.reports, eg.reports); /* broken inputs are not in the totals */
  ASSERT_U64_EQ(ea.messages, eg.messages);
  for (size_t i = 0; i < good.n; i++) {
    ASSERT_STR_EQ(all.v[i].name, good.v[i].name);
    ASSERT_TRUE(all.v[i].len == good.v[i].len && !memcmp(all.v[i].data, good.v[i].data, good.v[i].len));
  }
  dp_buf_t xml;
  dp_buf_init(&xml, 0);
  for (size_t i = good.n; i < all.n; i++) {
    const struct file *f = &all.v[i];
    ASSERT_STR_EQ(f->name, ea.rejected[i - good.n].file);
    dp_buf_reset(&xml);
    if (ends_with(f->name, ".xml")) {
      ASSERT_OK(file_xml(f, &xml));
      ASSERT_CONTAINS(xml.data, "<count>1O</count>");
      struct doc_sum s = read_doc(xml.data, xml.len);
      ASSERT_FALSE(s.ok); /* well-formed, but a count is not a number */
    } else {
      ASSERT_EQ(file_xml(f, &xml), -1);
    }
  }
  dp_buf_free(&xml);
  dp_gen_expect_free(&eg);
  dp_gen_expect_free(&ea);
  files_free(&good);
  files_free(&all);
}

TEST(gen_corpus_bench_corpus) {
  dp_gen_bench_opts_t o;
  memset(&o, 0, sizeof o);
  o.seed = 5;
  o.n_reports = 60;
  o.formats = (1u << DP_GEN_N_FORMATS) - 1; /* every format in turn */
  struct files fs;
  memset(&fs, 0, sizeof fs);
  dp_gen_expect_t e;
  dp_gen_expect_init(&e);
  ASSERT_OK(dp_gen_bench(&o, collect, &fs, &e));
  ASSERT_EQ(fs.n, 60);
  ASSERT_U64_EQ(e.reports, 60);
  dp_buf_t xml;
  dp_buf_init(&xml, 0);
  uint64_t records = 0, messages = 0;
  for (size_t i = 0; i < fs.n; i++) {
    dp_buf_reset(&xml);
    if (file_xml(&fs.v[i], &xml) != 0) DP_FAIL_("%s does not decode", fs.v[i].name);
    struct doc_sum s = read_doc(xml.data, xml.len);
    ASSERT_TRUE(s.ok);
    ASSERT_TRUE(s.records >= 1);
    records += s.records;
    messages += s.messages;
  }
  ASSERT_U64_EQ(records, e.records);
  ASSERT_U64_EQ(messages, e.messages);
  dp_buf_free(&xml);
  dp_gen_expect_free(&e);
  files_free(&fs);

  /* fixed size: every report has exactly that many records */
  o.n_reports = 3;
  o.records = 1000;
  o.formats = 1u << DP_GEN_FMT_XML;
  dp_gen_expect_init(&e);
  ASSERT_OK(dp_gen_bench(&o, collect, &fs, &e));
  ASSERT_U64_EQ(e.records, 3000);
  dp_gen_expect_free(&e);
  files_free(&fs);

  /* the size mix: mostly small reports, rare huge ones */
  dp_gen_rng_t r;
  dp_gen_rng_seed(&r, 1);
  int small = 0, huge = 0;
  for (int i = 0; i < 100000; i++) {
    uint64_t n = dp_gen_size_mix(&r);
    small += n <= 10;
    huge += n >= 100000;
  }
  ASSERT_TRUE(small > 65000 && small < 75000);
  ASSERT_TRUE(huge > 20 && huge < 100);
}

/* The oracle against parse/: every generated report, parsed by dmarcpipe's
 * own parser, gives the same records, alignment and sender groups. */
struct parse_acc {
  dp_gen_expect_t got; /* filled like the generator's, from dp_record_t */
  uint64_t reports;
};

static int on_record(void *ud, const dp_report_t *r, const dp_record_t *rec) {
  (void)r;
  struct parse_acc *a = ud;
  dp_gen_record_t g;
  memset(&g, 0, sizeof g);
  g.count = rec->count;
  snprintf(g.sender, sizeof g.sender, "%s", rec->sender);
  g.third_party = rec->third_party;
  g.spf_aligned = rec->spf_aligned;
  g.dkim_aligned = rec->dkim_aligned;
  g.spf_aligned_strict = rec->spf_aligned_strict;
  g.dkim_aligned_strict = rec->dkim_aligned_strict;
  g.dmarc_pass = rec->spf_aligned || rec->dkim_aligned;
  g.reason = rec->n_reasons ? rec->reasons[0].type : NULL;
  return dp_gen_expect_add_record(&a->got, DP_GEN_GOOGLE, &g);
}

static int on_report_end(void *ud, const dp_report_t *r) {
  (void)r;
  ((struct parse_acc *)ud)->reports++;
  return 0;
}

TEST(gen_corpus_matches_parser) {
  if (dp_align_global_init() != 0) DP_FAIL_("%s", "no Public Suffix List");
  dp_gen_sample_opts_t o;
  dp_gen_sample_defaults(&o);
  struct files fs;
  dp_gen_expect_t e;
  ASSERT_OK(gen_sample(&o, &fs, &e));
  dp_limits_t lim;
  dp_limits_default(&lim);
  dp_parse_cb_t cb = {NULL, on_record, on_report_end};
  struct parse_acc acc;
  memset(&acc, 0, sizeof acc);
  dp_gen_expect_init(&acc.got);
  dp_buf_t xml;
  dp_buf_init(&xml, 0);
  for (size_t i = 0; i < fs.n; i++) {
    dp_buf_reset(&xml);
    ASSERT_OK(file_xml(&fs.v[i], &xml));
    dp_parser_t *p = dp_parser_create(&lim, &cb, &acc);
    ASSERT_NOT_NULL(p);
    int rc = dp_parser_feed(p, xml.data, xml.len);
    if (!rc) rc = dp_parser_finish(p);
    if (rc) {
      fprintf(stderr, "%s: %s\n", fs.v[i].name, dp_parser_error(p));
      dp_parser_destroy(p);
      DP_FAIL_("parse of %s failed: %d", fs.v[i].name, rc);
    }
    dp_parser_destroy(p);
  }
  dp_buf_free(&xml);
  ASSERT_U64_EQ(acc.reports, e.reports);
  ASSERT_U64_EQ(acc.got.records, e.records);
  ASSERT_U64_EQ(acc.got.messages, e.messages);
  ASSERT_EQ(acc.got.n_senders, e.n_senders);
  for (size_t i = 0; i < e.senders_alloc; i++) {
    const dp_gen_sender_stats_t *w = &e.senders[i];
    if (!w->sender[0]) continue;
    const dp_gen_sender_stats_t *g = dp_gen_expect_find(&acc.got, w->sender);
    if (!g) DP_FAIL_("parser has no sender group \"%s\"", w->sender);
    if (g->third_party != w->third_party || g->records != w->records ||
        g->messages != w->messages || g->spf_aligned != w->spf_aligned ||
        g->dkim_aligned != w->dkim_aligned || g->dmarc_pass != w->dmarc_pass ||
        g->spf_aligned_strict != w->spf_aligned_strict ||
        g->dkim_aligned_strict != w->dkim_aligned_strict || g->overridden != w->overridden)
      DP_FAIL_("sender \"%s\" differs: parser %llu msgs spf %llu dkim %llu, expected %llu/%llu/%llu",
               w->sender, (unsigned long long)g->messages, (unsigned long long)g->spf_aligned,
               (unsigned long long)g->dkim_aligned, (unsigned long long)w->messages,
               (unsigned long long)w->spf_aligned, (unsigned long long)w->dkim_aligned);
  }
  dp_gen_expect_free(&acc.got);
  dp_gen_expect_free(&e);
  files_free(&fs);
  dp_align_global_cleanup();
}
