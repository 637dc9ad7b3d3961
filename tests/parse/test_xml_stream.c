/* SPDX-License-Identifier: MIT */
/* tests/parse/test_xml_stream.c - the streaming report parser: every element
 * of RFC 7489 and RFC 9990, real-world quirks, every refusal and its message,
 * chunked feeding, and the real and hostile corpora. */
#include "parse/parse.h"
#include "tests/test.h"

#include <time.h>

/* ------------------------------------------------------------------------ */
/* A collector that serialises every callback so runs can be compared. */

struct coll {
  dp_buf_t log;
  int begins, ends;
  bool begin_before_first_record;
  uint64_t nrec, msgs;
  int schema, pct;
  int64_t begin, end;
  char rep[4096];  /* report serialised at report_end */
  char last[4096]; /* last record serialised */
  uint64_t abort_at; /* record callback returns 42 at this index (0: never) */
  bool more;         /* dp_parser_more_reports after the document */
};

static void add(char *out, size_t len, const char *k, const char *v) {
  size_t n = strlen(out);
  snprintf(out + n, len - n, "%s=%s|", k, v);
}

static void ser_report(const dp_report_t *r, char *out, size_t len) {
  out[0] = '\0';
  char num[64];
  snprintf(num, sizeof num, "%d", r->schema);
  add(out, len, "schema", num);
  add(out, len, "version", r->version);
  add(out, len, "org", r->org_name);
  add(out, len, "email", r->email);
  add(out, len, "extra", r->extra_contact);
  add(out, len, "id", r->report_id);
  snprintf(num, sizeof num, "%" PRId64 "-%" PRId64, r->begin, r->end);
  add(out, len, "range", num);
  for (size_t i = 0; i < r->n_errors; i++) add(out, len, "error", r->errors[i]);
  add(out, len, "generator", r->generator);
  add(out, len, "domain", r->domain);
  add(out, len, "adkim", r->adkim);
  add(out, len, "aspf", r->aspf);
  add(out, len, "p", r->p);
  add(out, len, "sp", r->sp);
  add(out, len, "np", r->np);
  snprintf(num, sizeof num, "%d", r->pct);
  add(out, len, "pct", num);
  add(out, len, "fo", r->fo);
  add(out, len, "testing", r->testing);
  add(out, len, "discovery", r->discovery_method);
}

static void ser_record(const dp_record_t *c, char *out, size_t len) {
  out[0] = '\0';
  char num[64];
  snprintf(num, sizeof num, "%" PRIu64, c->index);
  add(out, len, "index", num);
  add(out, len, "ip", c->source_ip);
  snprintf(num, sizeof num, "%d", c->ip_family);
  add(out, len, "family", num);
  snprintf(num, sizeof num, "%" PRIu64, c->count);
  add(out, len, "count", num);
  add(out, len, "disp", c->disposition);
  add(out, len, "pe_dkim", c->pe_dkim);
  add(out, len, "pe_spf", c->pe_spf);
  for (size_t i = 0; i < c->n_reasons; i++) {
    add(out, len, "reason", c->reasons[i].type);
    add(out, len, "comment", c->reasons[i].comment);
  }
  add(out, len, "hfrom", c->header_from);
  add(out, len, "efrom", c->envelope_from);
  add(out, len, "eto", c->envelope_to);
  for (size_t i = 0; i < c->n_dkim; i++) {
    add(out, len, "dkim.d", c->dkim[i].domain);
    add(out, len, "dkim.s", c->dkim[i].selector);
    add(out, len, "dkim.r", c->dkim[i].result);
    add(out, len, "dkim.h", c->dkim[i].human_result);
  }
  for (size_t i = 0; i < c->n_spf; i++) {
    add(out, len, "spf.d", c->spf[i].domain);
    add(out, len, "spf.s", c->spf[i].scope);
    add(out, len, "spf.r", c->spf[i].result);
    add(out, len, "spf.h", c->spf[i].human_result);
  }
  snprintf(num, sizeof num, "%d%d%d%d", c->dkim_aligned, c->dkim_aligned_strict, c->spf_aligned,
           c->spf_aligned_strict);
  add(out, len, "align", num);
  add(out, len, "sender", c->sender);
  add(out, len, "third", c->third_party ? "1" : "0");
}

static int on_begin(void *ud, const dp_report_t *r) {
  struct coll *c = ud;
  char tmp[4096];
  c->begins++;
  c->begin_before_first_record = c->nrec == 0;
  ser_report(r, tmp, sizeof tmp);
  dp_buf_printf(&c->log, "BEGIN %s\n", tmp);
  return 0;
}

static int on_record(void *ud, const dp_report_t *r, const dp_record_t *rec) {
  struct coll *c = ud;
  (void)r;
  c->nrec++;
  c->msgs += rec->count;
  ser_record(rec, c->last, sizeof c->last);
  dp_buf_printf(&c->log, "REC %s\n", c->last);
  if (c->abort_at && rec->index == c->abort_at) return 42;
  return 0;
}

static int on_end(void *ud, const dp_report_t *r) {
  struct coll *c = ud;
  c->ends++;
  c->schema = r->schema;
  c->pct = r->pct;
  c->begin = r->begin;
  c->end = r->end;
  ser_report(r, c->rep, sizeof c->rep);
  dp_buf_printf(&c->log, "END %s n=%" PRIu64 " m=%" PRIu64 "\n", c->rep, r->n_records, r->messages);
  if (r->n_records != c->nrec || r->messages != c->msgs) return -1;
  return 0;
}

static const dp_parse_cb_t CB = {on_begin, on_record, on_end};
static uint64_t g_abort_at; /* record index at which the collector aborts */

/* Parse doc fed in chunks of `chunk` bytes (0: one feed). Returns the first
 * non-zero result; the error text is copied to err. */
static int parse_lim(const char *doc, size_t n, size_t chunk, struct coll *c,
                     const dp_limits_t *lim, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  c->abort_at = g_abort_at;
  dp_buf_init(&c->log, 0);
  dp_parser_t *p = dp_parser_create(lim, &CB, c);
  if (!p) return DP_ENOMEM;
  int rc = 0;
  if (chunk == 0) chunk = n ? n : 1;
  for (size_t off = 0; off < n && !rc; off += chunk)
    rc = dp_parser_feed(p, doc + off, n - off < chunk ? n - off : chunk);
  if (!rc) rc = dp_parser_finish(p);
  if (rc) {
    /* sticky: every later call returns the same error */
    if (dp_parser_feed(p, "x", 1) != rc || dp_parser_finish(p) != rc) rc = -999;
  } else if (dp_parser_error(p)[0]) {
    rc = -998; /* success must leave no error text */
  }
  c->more = dp_parser_more_reports(p);
  snprintf(err, errlen, "%s", dp_parser_error(p));
  dp_parser_destroy(p);
  return rc;
}

static char g_err[1024];

static int parse(const char *doc, size_t chunk, struct coll *c) {
  return parse_lim(doc, strlen(doc), chunk, c, NULL, g_err, sizeof g_err);
}

static void coll_free(struct coll *c) { dp_buf_free(&c->log); }

/* ------------------------------------------------------------------------ */
/* Documents */

#define META                                                                                    \
  "<report_metadata><org_name>Org</org_name><email>r@org.test</email>"                        \
  "<report_id>id-1</report_id><date_range><begin>1700000000</begin><end>1700086399</end>"     \
  "</date_range></report_metadata>"
#define POLICY "<policy_published><domain>example.com</domain><p>none</p></policy_published>"
#define REC(ip, count)                                                                          \
  "<record><row><source_ip>" ip "</source_ip><count>" count "</count><policy_evaluated>"        \
  "<disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>"  \
  "<identifiers><header_from>example.com</header_from></identifiers><auth_results><dkim>"     \
  "<domain>example.com</domain><selector>s</selector><result>pass</result></dkim><spf>"       \
  "<domain>example.com</domain><scope>mfrom</scope><result>pass</result></spf></auth_results>" \
  "</record>"
#define DOC(records) "<?xml version=\"1.0\"?>\n<feedback>" META POLICY records "</feedback>\n"

static const char RFC7489_FULL[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<feedback>\n"
    "  <version>1.0</version>\n"
    "  <report_metadata>\n"
    "    <org_name>Reporter Inc.</org_name>\n"
    "    <email>dmarc@reporter.test</email>\n"
    "    <extra_contact_info>https://reporter.test/help</extra_contact_info>\n"
    "    <report_id>r-123</report_id>\n"
    "    <date_range><begin>1700000000</begin><end>1700086399</end></date_range>\n"
    "    <error>first problem</error>\n"
    "    <error>second problem</error>\n"
    "  </report_metadata>\n"
    "  <policy_published>\n"
    "    <domain>Example.COM</domain><adkim>r</adkim><aspf>s</aspf><p>quarantine</p>\n"
    "    <sp>reject</sp><pct>50</pct><fo>1</fo>\n"
    "  </policy_published>\n"
    "  <record>\n"
    "    <row>\n"
    "      <source_ip>192.0.2.10</source_ip>\n"
    "      <count>3</count>\n"
    "      <policy_evaluated>\n"
    "        <disposition>quarantine</disposition><dkim>fail</dkim><spf>pass</spf>\n"
    "        <reason><type>forwarded</type><comment>via list</comment></reason>\n"
    "        <reason><type>local_policy</type></reason>\n"
    "      </policy_evaluated>\n"
    "    </row>\n"
    "    <identifiers>\n"
    "      <envelope_to>rcpt.test</envelope_to>\n"
    "      <envelope_from>bounce.example.com</envelope_from>\n"
    "      <header_from>example.com</header_from>\n"
    "    </identifiers>\n"
    "    <auth_results>\n"
    "      <dkim><domain>esp.test</domain><selector>k1</selector><result>pass</result>"
    "<human_result>good sig</human_result></dkim>\n"
    "      <dkim><domain>example.com</domain><selector>k2</selector><result>fail</result></dkim>\n"
    "      <spf><domain>bounce.example.com</domain><scope>mfrom</scope><result>pass</result></spf>\n"
    "    </auth_results>\n"
    "  </record>\n"
    "</feedback>\n";

TEST(xml_stream_rfc7489_every_element) {
  struct coll c;
  ASSERT_OK(parse(RFC7489_FULL, 0, &c));
  ASSERT_EQ(c.begins, 1);
  ASSERT_EQ(c.ends, 1);
  ASSERT_TRUE(c.begin_before_first_record);
  ASSERT_U64_EQ(c.nrec, 1);
  ASSERT_U64_EQ(c.msgs, 3);
  ASSERT_STR_EQ(c.rep,
                "schema=1|version=1.0|org=Reporter Inc.|email=dmarc@reporter.test|"
                "extra=https://reporter.test/help|id=r-123|range=1700000000-1700086399|"
                "error=first problem|error=second problem|generator=|domain=example.com|"
                "adkim=r|aspf=s|p=quarantine|sp=reject|np=|pct=50|fo=1|testing=|discovery=|");
  ASSERT_STR_EQ(c.last,
                "index=1|ip=192.0.2.10|family=4|count=3|disp=quarantine|pe_dkim=fail|pe_spf=pass|"
                "reason=forwarded|comment=via list|reason=local_policy|comment=|"
                "hfrom=example.com|efrom=bounce.example.com|eto=rcpt.test|"
                "dkim.d=esp.test|dkim.s=k1|dkim.r=pass|dkim.h=good sig|"
                "dkim.d=example.com|dkim.s=k2|dkim.r=fail|dkim.h=|"
                "spf.d=bounce.example.com|spf.s=mfrom|spf.r=pass|spf.h=|"
                "align=0010|sender=example.com|third=0|");
  coll_free(&c);
}

static const char RFC9990_FULL[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<feedback xmlns=\"urn:ietf:params:xml:ns:dmarc-2.0\">\n"
    "  <version>1.0</version>\n"
    "  <report_metadata><org_name>New Org</org_name><email>a@new.test</email>"
    "<report_id>n-1</report_id><date_range><begin>1700000000</begin><end>1700086399</end>"
    "</date_range><generator>Gen 2.1</generator></report_metadata>\n"
    "  <policy_published><domain>example.org</domain><p>reject</p><sp>quarantine</sp>"
    "<np>none</np><testing>Y</testing><discovery_method>TreeWalk</discovery_method>"
    "</policy_published>\n"
    "  <record><row><source_ip>2001:db8::5</source_ip><count>4</count><policy_evaluated>"
    "<disposition>pass</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>"
    "<identifiers><envelope_from>example.org</envelope_from><header_from>example.org"
    "</header_from></identifiers><auth_results><dkim><domain>mail.example.org</domain>"
    "<result>pass</result><selector>abc</selector></dkim><spf><domain>other.test</domain>"
    "<result>fail</result><human_result>not allowed</human_result></spf></auth_results>"
    "</record>\n"
    "</feedback>\n";

TEST(xml_stream_rfc9990_every_element) {
  struct coll c;
  ASSERT_OK(parse(RFC9990_FULL, 0, &c));
  ASSERT_EQ(c.schema, 2);
  ASSERT_STR_EQ(c.rep,
                "schema=2|version=1.0|org=New Org|email=a@new.test|extra=|id=n-1|"
                "range=1700000000-1700086399|generator=Gen 2.1|domain=example.org|adkim=|aspf=|"
                "p=reject|sp=quarantine|np=none|pct=-1|fo=|testing=y|discovery=treewalk|");
  ASSERT_STR_EQ(c.last,
                "index=1|ip=2001:db8::5|family=6|count=4|disp=pass|pe_dkim=pass|pe_spf=fail|"
                "hfrom=example.org|efrom=example.org|eto=|"
                "dkim.d=mail.example.org|dkim.s=abc|dkim.r=pass|dkim.h=|"
                "spf.d=other.test|spf.s=|spf.r=fail|spf.h=not allowed|"
                "align=1000|sender=example.org|third=0|");
  coll_free(&c);
}

TEST(xml_stream_namespace_prefixes) {
  const char *doc =
      "<d:feedback xmlns:d=\"urn:ietf:params:xml:ns:dmarc-2.0\"><d:report_metadata>"
      "<d:org_name>P</d:org_name><d:report_id>x</d:report_id><d:date_range><d:begin>1</d:begin>"
      "<d:end>2</d:end></d:date_range></d:report_metadata><d:policy_published><d:domain>a.test"
      "</d:domain><d:np>Reject</d:np></d:policy_published>"
      "<d:record><d:row><d:source_ip>192.0.2.1</d:source_ip><d:count>5</d:count></d:row>"
      "</d:record></d:feedback>";
  struct coll c;
  ASSERT_OK(parse(doc, 0, &c));
  ASSERT_EQ(c.schema, 2);
  ASSERT_U64_EQ(c.msgs, 5);
  ASSERT_CONTAINS(c.rep, "np=reject|");
  coll_free(&c);
  /* RFC 7489 under some other namespace, e.g. the old dmarc.org xsd one */
  const char *doc1 =
      "<x:feedback xmlns:x=\"http://dmarc.org/dmarc-xml/0.1\">" META POLICY REC("192.0.2.1", "2")
      "</x:feedback>";
  ASSERT_OK(parse(doc1, 0, &c));
  ASSERT_EQ(c.schema, 1);
  ASSERT_U64_EQ(c.msgs, 2);
  coll_free(&c);
}

TEST(xml_stream_quirks_whitespace_case_cdata_comments) {
  const char *doc =
      "\n\n  <?xml version=\"1.0\"?>\n<!-- leading comment --><?pi x?>\n"
      "<FEEDBACK><Report_Metadata><ORG_NAME>  <![CDATA[Big]]> Corp \n</ORG_NAME>"
      "<report_id>\t<!-- c -->r1 </report_id><date_range><begin> 1536105600.0 </begin>"
      "<end>1536191999</end></date_range></Report_Metadata>"
      "<policy_published><domain> Example.COM. </domain><ADKIM>R</ADKIM><p>NONE</p>"
      "<pct>abc</pct></policy_published>"
      "<record><row><source_ip>\n 192.0.2.9 \n</source_ip><count><![CDATA[7]]></count>"
      "<policy_evaluated><disposition>None</disposition><dkim>PASS</dkim><spf>Fail</spf>"
      "</policy_evaluated></row><identities><header_from>Example.COM</header_from></identities>"
      "<auth_results><spf><domain>EXAMPLE.com.</domain><result>Pass</result><unknown>z</unknown>"
      "</spf></auth_results><extension><record>ignored</record></extension></record>"
      "</FEEDBACK>";
  struct coll c;
  ASSERT_OK(parse(doc, 0, &c));
  ASSERT_CONTAINS(c.rep, "org=Big Corp|email=|extra=|id=r1|range=1536105600-1536191999|");
  ASSERT_CONTAINS(c.rep, "domain=example.com|adkim=r|aspf=|p=none|");
  ASSERT_CONTAINS(c.rep, "pct=-1|");
  ASSERT_STR_EQ(c.last,
                "index=1|ip=192.0.2.9|family=4|count=7|disp=none|pe_dkim=pass|pe_spf=fail|"
                "hfrom=example.com|efrom=|eto=|spf.d=example.com|spf.s=|spf.r=pass|spf.h=|"
                "align=0011|sender=example.com|third=0|");
  coll_free(&c);
}

TEST(xml_stream_ip_forms) {
  const char *doc = DOC(REC(" 2001:DB8:0:0:0:0:0:1 ", "1") REC("::ffff:192.0.2.7", "1")
                            REC("::1", "1") REC("198.51.100.255", "1"));
  struct coll c;
  ASSERT_OK(parse(doc, 0, &c));
  ASSERT_CONTAINS(c.log.data, "index=1|ip=2001:db8::1|family=6|");
  ASSERT_CONTAINS(c.log.data, "index=2|ip=192.0.2.7|family=4|");
  ASSERT_CONTAINS(c.log.data, "index=3|ip=::1|family=6|");
  ASSERT_CONTAINS(c.log.data, "index=4|ip=198.51.100.255|family=4|");
  coll_free(&c);
}

/* Counts are exact beyond 32 bits, up to DP_MAX_REPORT_MESSAGES in a
 * record and in the report's sum (leading zeros are not digits of size). */
TEST(xml_stream_counts_exact_64bit) {
  struct coll c;
  ASSERT_OK(parse(
      DOC(REC("192.0.2.1", "4294967296") REC("192.0.2.2", "0") REC("192.0.2.3", "995705032704")), 0,
      &c));
  ASSERT_U64_EQ(c.msgs, DP_MAX_REPORT_MESSAGES);
  ASSERT_CONTAINS(c.log.data, "index=1|ip=192.0.2.1|family=4|count=4294967296|");
  coll_free(&c);
  ASSERT_OK(parse(DOC(REC("192.0.2.1", "00000000000001000000000000")), 0, &c));
  ASSERT_U64_EQ(c.msgs, DP_MAX_REPORT_MESSAGES);
  coll_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Encodings */

/* UTF-16 of an ASCII/Latin-1 string, with BOM. */
static size_t utf16(const char *s, char *out, bool le) {
  size_t j = 0;
  out[j++] = le ? (char)0xFF : (char)0xFE;
  out[j++] = le ? (char)0xFE : (char)0xFF;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    out[j++] = le ? (char)c : 0;
    out[j++] = le ? 0 : (char)c;
  }
  return j;
}

TEST(xml_stream_utf16_bom) {
  const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<feedback>"
                    "<report_metadata><org_name>R\xe9seau</org_name><report_id>u16</report_id>"
                    "<date_range><begin>1</begin><end>2</end></date_range></report_metadata>"
                    POLICY REC("192.0.2.1", "2") REC("192.0.2.2", "3") "</feedback>\n";
  static char buf[8192];
  struct coll c, c1;
  for (int le = 0; le <= 1; le++) {
    size_t n = utf16(doc, buf, le);
    char err[256];
    ASSERT_OK(parse_lim(buf, n, 0, &c, NULL, err, sizeof err));
    ASSERT_U64_EQ(c.nrec, 2);
    ASSERT_U64_EQ(c.msgs, 5);
    ASSERT_CONTAINS(c.rep, "org=R\xc3\xa9seau|email=|extra=|id=u16|");
    ASSERT_OK(parse_lim(buf, n, 1, &c1, NULL, err, sizeof err));
    ASSERT_STR_EQ(c.log.data, c1.log.data);
    coll_free(&c);
    coll_free(&c1);
  }
}

TEST(xml_stream_latin1_and_windows1252) {
  const char *l1 = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<feedback>"
                   "<report_metadata><org_name>r\xe9seau</org_name><report_id>l1</report_id>"
                   "<date_range><begin>1</begin><end>2</end></date_range></report_metadata>"
                   POLICY REC("192.0.2.1", "1") "</feedback>";
  struct coll c;
  ASSERT_OK(parse(l1, 0, &c));
  ASSERT_CONTAINS(c.rep, "org=r\xc3\xa9seau|");
  coll_free(&c);
  const char *w = "<?xml version=\"1.0\" encoding=\"windows-1252\"?><feedback "
                  "xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'>"
                  "<report_metadata><org_name>\x93Quoted\x94 \x80</org_name><report_id>w</report_id>"
                  "<date_range><begin>1</begin><end>2</end></date_range></report_metadata>"
                  POLICY REC("192.0.2.1", "1") "</feedback>";
  ASSERT_OK(parse(w, 0, &c));
  ASSERT_CONTAINS(c.rep, "org=\xe2\x80\x9cQuoted\xe2\x80\x9d \xe2\x82\xac|");
  coll_free(&c);
  /* a byte windows-1252 does not define (0x81): the reason says which
   * bytes, not "libxml2 error -1" */
  const char *bad =
      "<?xml version=\"1.0\" encoding=\"windows-1252\"?><feedback>"
      "<report_metadata><org_name>qa\x81.test</org_name><report_id>w</report_id>"
      "<date_range><begin>1</begin><end>2</end></date_range></report_metadata>" POLICY REC(
          "192.0.2.1", "1") "</feedback>";
  ASSERT_EQ(parse(bad, 0, &c), DP_EXML);
  ASSERT_CONTAINS(g_err, "malformed XML: input conversion failed due to input error, bytes 0x81");
  ASSERT_CONTAINS(g_err, "(is the document in its declared encoding?)");
  coll_free(&c);
}

TEST(xml_stream_invalid_utf8_repaired) {
  /* a lone continuation byte, a truncated sequence, an overlong form, a
   * surrogate, a C0 control and U+FFFF: each becomes U+FFFD */
  const char *doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><feedback>"
                    "<report_metadata><org_name>a\x91" "b\xe2\x82" "c\xc0\xaf" "d\xed\xa0\x80" "e\x01"
                    "f\xef\xbf\xbf" "g\xc3\xa9</org_name><report_id>bad</report_id>"
                    "<date_range><begin>1</begin><end>2</end></date_range></report_metadata>"
                    POLICY REC("192.0.2.1", "1") "</feedback>";
  struct coll c, c1;
  ASSERT_OK(parse(doc, 0, &c));
  ASSERT_CONTAINS(c.rep, "org=a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd"
                         "d\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "e\xef\xbf\xbd" "f\xef\xbf\xbd"
                         "g\xc3\xa9|");
  ASSERT_OK(parse(doc, 1, &c1));
  ASSERT_STR_EQ(c.log.data, c1.log.data);
  coll_free(&c);
  coll_free(&c1);
  /* truncated sequence at the very end of the document is repaired too */
  char buf[2048];
  snprintf(buf, sizeof buf, "%s", DOC(REC("192.0.2.1", "1")));
  strcat(buf, "\xe2\x82");
  ASSERT_OK(parse(buf, 0, &c));
  coll_free(&c);
}

/* Lower-casing works 8 bytes at a time: every position of upper-case
 * letters, the bytes just outside A-Z (@ [ ` {) and non-ASCII are kept. */
TEST(xml_stream_lower_cases_ascii_only) {
  const char *doc = "<?xml version=\"1.0\"?><feedback><report_metadata><org_name>o</org_name>"
                    "<report_id>i</report_id><date_range><begin>1</begin><end>2</end></date_range>"
                    "</report_metadata><policy_published><domain>AbCdEfGhIjKlMnOpQrStUvWxYz@[`{"
                    "\xc3\x89\xc3\xa9Z.</domain><p>QUARANTINE</p></policy_published></feedback>";
  struct coll c;
  ASSERT_OK(parse(doc, 0, &c));
  ASSERT_CONTAINS(c.rep, "|domain=abcdefghijklmnopqrstuvwxyz@[`{\xc3\x89\xc3\xa9z|");
  ASSERT_CONTAINS(c.rep, "|p=quarantine|");
  coll_free(&c);
}

/* Text is collected only inside leaf fields (libxml2 is not even asked to
 * deliver it elsewhere): a child element inside a leaf is skipped with its
 * text, the leaf's text around it and CDATA are kept, and text or CDATA
 * between elements never leaks into the next field. */
TEST(xml_stream_text_only_inside_leaves) {
  const char *doc = "<?xml version=\"1.0\"?>\n<feedback>stray <![CDATA[cdata]]> text"
                    "<report_metadata>meta text<org_name>Big<x>ignored<y>deeper</y></x> Corp"
                    "<![CDATA[!]]></org_name> between <![CDATA[x]]><report_id>id</report_id>"
                    "<date_range><begin>1</begin><end>2</end></date_range></report_metadata>"
                    POLICY REC("192.0.2.1", "1") "tail</feedback>";
  struct coll c;
  for (size_t chunk = 0; chunk <= 5; chunk += 5) {
    ASSERT_OK(parse(doc, chunk, &c));
    ASSERT_CONTAINS(c.rep, "|org=Big Corp!|");
    ASSERT_CONTAINS(c.rep, "|id=id|");
    coll_free(&c);
  }
}

/* The repair pass skips clean runs 16 bytes at a time: a bad byte at every
 * offset of a long clean run (either side of the 16-byte steps, next to
 * TAB/LF/CR, which are allowed) is still found and replaced exactly. */
TEST(xml_stream_repair_finds_bad_byte_at_every_offset) {
  static const char bad[][3] = {"\x01", "\x1f", "\x80", "\xff"};
  for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
    for (size_t k = 0; k < 40; k++) {
      char org[64], want[96], doc[2048];
      for (size_t i = 0; i < 40; i++) org[i] = (char)(i % 7 == 3 ? '\t' : i % 11 == 5 ? '\n' : 'a' + i % 26);
      org[0] = 'A';
      org[39] = 'z'; /* trimmed text stays 40 bytes */
      org[40] = '\0';
      org[k] = bad[b][0];
      snprintf(want, sizeof want, "org=%.*s\xef\xbf\xbd%s|", (int)k, org, org + k + 1);
      snprintf(doc, sizeof doc,
               "<?xml version=\"1.0\"?>\r\n<feedback><report_metadata><org_name>%s</org_name>"
               "<report_id>r</report_id><date_range><begin>1</begin><end>2</end></date_range>"
               "</report_metadata>" POLICY REC("192.0.2.1", "1") "</feedback>",
               org);
      struct coll c;
      for (size_t chunk = 0; chunk <= 17; chunk += 17) {
        ASSERT_OK(parse(doc, chunk, &c));
        ASSERT_CONTAINS(c.rep, want);
        coll_free(&c);
      }
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Document-level shape */

TEST(xml_stream_junk_before_and_after_feedback) {
  /* the real ikea.com file: an unclosed <xs:schema> around <feedback> */
  const char *ikea = "<?xml version=\"1.0\"?> <xs:schema xmlns:xs=\"http://www.w3.org/2001/XMLSchema\">\n"
                     "<feedback>" META POLICY REC("192.0.2.1", "1") "</feedback>";
  struct coll c;
  ASSERT_OK(parse(ikea, 0, &c));
  ASSERT_U64_EQ(c.nrec, 1);
  coll_free(&c);
  /* a sibling element and text before, garbage after */
  const char *sib = "<?xml version=\"1.0\"?><junk a='1'><x/></junk> stray text\n"
                    "<feedback>" META POLICY REC("192.0.2.1", "6") "</feedback><more/>trailing &&& <<";
  ASSERT_OK(parse(sib, 0, &c));
  ASSERT_U64_EQ(c.msgs, 6);
  coll_free(&c);
  /* a harmless DOCTYPE without entities is accepted */
  const char *dt = "<?xml version=\"1.0\"?><!DOCTYPE feedback SYSTEM \"http://x.test/a.dtd\" [ <!-- ] > -->"
                   " <!ELEMENT feedback ANY> ]>\n<feedback>" META POLICY "</feedback>";
  int rc = parse(dt, 0, &c);
  if (rc) fprintf(stderr, "%s\n", g_err);
  ASSERT_OK(rc);
  ASSERT_EQ(c.begins, 1);
  ASSERT_EQ(c.ends, 1);
  coll_free(&c);
}

TEST(xml_stream_report_without_records) {
  struct coll c;
  ASSERT_OK(parse(DOC(""), 0, &c));
  ASSERT_EQ(c.begins, 1);
  ASSERT_EQ(c.ends, 1);
  ASSERT_U64_EQ(c.nrec, 0);
  ASSERT_STR_EQ(c.log.data,
                "BEGIN schema=1|version=|org=Org|email=r@org.test|extra=|id=id-1|"
                "range=1700000000-1700086399|generator=|domain=example.com|adkim=|aspf=|p=none|"
                "sp=|np=|pct=-1|fo=|testing=|discovery=|\n"
                "END schema=1|version=|org=Org|email=r@org.test|extra=|id=id-1|"
                "range=1700000000-1700086399|generator=|domain=example.com|adkim=|aspf=|p=none|"
                "sp=|np=|pct=-1|fo=|testing=|discovery=| n=0 m=0\n");
  coll_free(&c);
}

TEST(xml_stream_org_name_falls_back_to_email_domain) {
  const char *doc = "<feedback><report_metadata><org_name></org_name><email>Admin@Mail.Example.NET"
                    "</email><report_id>e1</report_id><date_range><begin>1</begin><end>1</end>"
                    "</date_range></report_metadata>" POLICY "</feedback>";
  struct coll c;
  ASSERT_OK(parse(doc, 0, &c));
  ASSERT_CONTAINS(c.rep, "org=mail.example.net|email=Admin@Mail.Example.NET|");
  coll_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Refusals */

struct refusal {
  const char *doc;
  int rc;
  const char *msg;
};

static const struct refusal REFUSALS[] = {
    {DOC(REC("192.0.2.1", "1") REC("999.1.1.1", "1")), DP_EREPORT,
     "record 2: <source_ip> is not an IP address: \"999.1.1.1\""},
    {DOC(REC("", "1")), DP_EREPORT, "record 1: <source_ip> is missing"},
    {DOC("<record><row><count>1</count></row></record>"), DP_EREPORT,
     "record 1: <source_ip> is missing"},
    {DOC(REC("fe80::1%eth0", "1")), DP_EREPORT,
     "record 1: <source_ip> is not an IP address: \"fe80::1%eth0\""},
    {DOC(REC("192.0.2.1", "-1")), DP_EREPORT, "record 1: <count> is negative: \"-1\""},
    {DOC(REC("192.0.2.1", "12x")), DP_EREPORT, "record 1: <count> is not an integer: \"12x\""},
    {DOC(REC("192.0.2.1", "1.5")), DP_EREPORT, "record 1: <count> is not an integer: \"1.5\""},
    {DOC(REC("192.0.2.1", "")), DP_EREPORT, "record 1: <count> is empty"},
    {DOC("<record><row><source_ip>192.0.2.1</source_ip></row></record>"), DP_EREPORT,
     "record 1: <count> is missing"},
    /* repeated single elements with different values: ambiguous */
    {"<feedback>" META POLICY "<policy_published><domain>evil.test</domain><p>reject</p>"
     "</policy_published>" REC("192.0.2.1", "1") "</feedback>",
     DP_EREPORT,
     "policy_published/domain appears twice with different values (\"example.com\", then "
     "\"evil.test\")"},
    {"<feedback>" META "<report_metadata><report_id>id-2</report_id></report_metadata>" POLICY REC(
         "192.0.2.1", "1") "</feedback>",
     DP_EREPORT,
     "report_metadata/report_id appears twice with different values (\"id-1\", then \"id-2\")"},
    {DOC("<record><row><source_ip>192.0.2.1</source_ip><count>5</count><count>7</count></row>"
         "<identifiers><header_from>example.com</header_from></identifiers></record>"),
     DP_EREPORT, "record 1: <count> appears twice with different values (\"5\", then \"7\")"},
    {DOC("<record><row><source_ip>192.0.2.1</source_ip><count>5</count></row><row><source_ip>"
         "192.0.2.2</source_ip><count>5</count></row><identifiers><header_from>example.com"
         "</header_from></identifiers></record>"),
     DP_EREPORT,
     "record 1: <source_ip> appears twice with different values (\"192.0.2.1\", then "
     "\"192.0.2.2\")"},
    {DOC("<record><row><source_ip>192.0.2.1</source_ip><count>5</count></row><identifiers>"
         "<header_from>example.com</header_from><header_from>evil.test</header_from></identifiers>"
         "</record>"),
     DP_EREPORT, "record 1: <header_from> appears twice with different values"},
    {DOC(REC("192.0.2.1", "1000000000001")), DP_EREPORT,
     "record 1: <count> is more than any real report's (limit 10^12): \"1000000000001\""},
    {DOC(REC("192.0.2.1", "9223372036854775807")), DP_EREPORT,
     "record 1: <count> is more than any real report's"},
    {DOC(REC("192.0.2.1", "99999999999999999999999")), DP_EREPORT,
     "record 1: <count> is more than any real report's"},
    {DOC(REC("192.0.2.1", "999999999999") REC("192.0.2.2", "2")), DP_EREPORT,
     "record 2: the sum of <count> exceeds 1000000000000, more than any real report's"},
    {"<feedback><report_metadata><org_name>O</org_name><date_range><begin>1</begin><end>2</end>"
     "</date_range></report_metadata>" POLICY REC("192.0.2.1", "1") "</feedback>",
     DP_EREPORT, "report_metadata/report_id is required before the first record"},
    /* the policy after the records: missing where it is needed */
    {"<feedback>" META REC("192.0.2.1", "1") POLICY "</feedback>", DP_EREPORT,
     "policy_published/domain is required before the first record"},
    {"<feedback><report_metadata><org_name> </org_name><report_id>x</report_id><date_range><begin>1"
     "</begin><end>2</end></date_range></report_metadata>" POLICY "</feedback>",
     DP_EREPORT, "report_metadata/org_name is required"},
    {"<feedback>" META "<policy_published><p>none</p></policy_published></feedback>", DP_EREPORT,
     "policy_published/domain is required"},
    {"<feedback><report_metadata><org_name>O</org_name><report_id>x</report_id></"
     "report_metadata>" POLICY "</feedback>",
     DP_EREPORT, "report_metadata/date_range/begin is required"},
    {"<feedback><report_metadata><org_name>O</org_name><report_id>x</report_id><date_range><begin>"
     "yesterday</begin><end>2</end></date_range></report_metadata>" POLICY "</feedback>",
     DP_EREPORT, "<begin> is not an integer: \"yesterday\""},
    {"<feedback><report_metadata><org_name>O</org_name><report_id>x</report_id><date_range><begin>"
     "5</begin><end>3</end></date_range></report_metadata>" POLICY "</feedback>",
     DP_EREPORT, "date_range begin 5 is after end 3"},
    {"<?xml version=\"1.0\"?>\n<invalid_root>\n  <data>x</data>\n</invalid_root>\n", DP_EREPORT,
     "root element <invalid_root> is not <feedback>"},
    {"", DP_EREPORT, "no <feedback> report in document"},
    {"  \n\t ", DP_EREPORT, "no <feedback> report in document"},
    {"<?xml version=\"1.0\"?>\n<!-- nothing -->\n", DP_EREPORT, "no <feedback> report in document"},
    {"<?xml version=\"1.0\"?>\n<feedback>\n<report_metadata>\n<org_name>x</org_name>\n<a></b>\n",
     DP_EXML, "malformed XML at line 5: Opening and ending tag mismatch: a line 5 and b"},
    {"<feedback>" META POLICY "<record><row>", DP_EXML, "document ends inside <row>"},
    {"<feedback>\n<!-- open\n\x80 comment", DP_EXML,
     "malformed XML at line 2: document ends inside <feedback>"},
    {"<a></a>\n<!-- open\n\x80 comment", DP_EXML,
     "malformed XML at line 3: Comment not terminated"},
    {"<feedback><report_metadata><org_name>a&amp;b &undefined;</org_name>", DP_EXML,
     "Entity 'undefined' not defined"},
    {"<?xml version=\"1.0\"?>\n<!DOCTYPE feedback [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;\">]>\n"
     "<feedback>" META POLICY "</feedback>",
     DP_EXML, "refused: the document declares the entity \"a\""},
    {"<?xml version=\"1.0\"?>\n<!DOCTYPE feedback [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> "
     "%p;]>\n"
     "<feedback/>",
     DP_EXML, "refused: the document declares the entity \"p\""},
    /* after the first record the identity and policy are fixed: a report
     * cannot turn into another one (its key was made from the first) */
    {DOC(REC("192.0.2.1",
             "1") "<report_metadata><org_name>Other</org_name><report_id>id-2</report_id>"
                  "</report_metadata>" REC("192.0.2.2", "1")),
     DP_EREPORT,
     "report_metadata/org_name after the first record changes it (\"Org\" -> \"Other\")"},
    {DOC(REC("192.0.2.1", "1") "<report_metadata><report_id>id-2</report_id></report_metadata>"),
     DP_EREPORT,
     "report_metadata/report_id after the first record changes it (\"id-1\" -> \"id-2\")"},
    {DOC(REC("192.0.2.1", "1") "<report_metadata><date_range><begin>1700000001</begin></date_range>"
                               "</report_metadata>"),
     DP_EREPORT, "report_metadata/date_range/begin after the first record changes it"},
    {DOC(REC("192.0.2.1", "1") "<policy_published><domain>other.test</domain></policy_published>"),
     DP_EREPORT,
     "policy_published/domain after the first record changes it (\"example.com\" -> "
     "\"other.test\")"},
    {DOC(REC("192.0.2.1", "1") "<policy_published><p>reject</p></policy_published>"), DP_EREPORT,
     "policy_published/p after the first record changes it (\"none\" -> \"reject\")"},
    {DOC(REC("192.0.2.1", "1") "<policy_published><pct>50</pct></policy_published>"), DP_EREPORT,
     "policy_published/pct after the first record changes it (\"absent\" -> \"50\")"},
};

TEST(xml_stream_refusals) {
  struct coll c;
  for (size_t i = 0; i < sizeof REFUSALS / sizeof *REFUSALS; i++) {
    const struct refusal *t = &REFUSALS[i];
    for (size_t chunk = 0; chunk <= 3; chunk += 3) {
      int rc = parse(t->doc, chunk, &c);
      if (rc != t->rc || !strstr(g_err, t->msg))
        fprintf(stderr, "case %zu (chunk %zu): rc %d err \"%s\"\n", i, chunk, rc, g_err);
      ASSERT_EQ(rc, t->rc);
      ASSERT_CONTAINS(g_err, t->msg);
      ASSERT_TRUE(strchr(g_err, '\n') == NULL);
      ASSERT_EQ(c.ends, 0);
      coll_free(&c);
    }
  }
}

/* Repeating a value after the records (as written or as normalised),
 * adding an <error> and late metadata that nothing depends on (version,
 * generator, extra contact) change nothing the records were made with: the
 * report is accepted as it began. */
TEST(xml_stream_late_metadata_that_changes_nothing) {
  struct coll c;
  for (size_t chunk = 0; chunk <= 3; chunk += 3) {
    ASSERT_OK(parse(DOC(REC("192.0.2.1", "1")
                        "<version>1.0</version>"
                        "<report_metadata><org_name> Org </org_name><report_id>id-1</report_id>"
                        "<error>late note</error><generator>gen 2</generator>"
                        "<extra_contact_info>late contact</extra_contact_info></report_metadata>"
                        "<policy_published><domain>Example.COM.</domain><p>none</p><pct>x</pct>"
                        "</policy_published>" REC("192.0.2.2", "2")),
                    chunk, &c));
    ASSERT_U64_EQ(c.nrec, 2);
    ASSERT_EQ(c.ends, 1);
    ASSERT_CONTAINS(c.log.data, "late note");
    ASSERT_CONTAINS(c.rep, "gen 2");
    ASSERT_CONTAINS(c.rep, "late contact");
    coll_free(&c);
  }
}

/* A second report after the first one's end is not read, but it is seen,
 * whatever the chunk that cuts its tag, its prefix or case; other trailing
 * content (junk, comments, a look-alike name) is not a report. */
TEST(xml_stream_second_report_in_document_is_seen) {
  static const struct {
    const char *tail;
    bool more;
  } cases[] = {
      {"", false},
      {"\n\n", false},
      {"\n<!-- end --> trailing junk <feedbackx/> <other>", false},
      {"<?xml version=\"1.0\"?>\n<feedback>" META POLICY REC("192.0.2.9", "1") "</feedback>\n", true},
      {"\n<feedback/>", true},
      {"<dmarc:FEEDBACK xmlns:dmarc=\"urn:x\">", true},
      {"junk <feedback\n>", true},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char doc[8192];
    snprintf(doc, sizeof doc, "%s%s", DOC(REC("192.0.2.1", "1")), cases[i].tail);
    for (size_t chunk = 0; chunk <= 64; chunk = chunk ? chunk * 2 : 1) {
      struct coll c;
      ASSERT_OK(parse(doc, chunk, &c));
      ASSERT_U64_EQ(c.nrec, 1);
      if (c.more != cases[i].more) fprintf(stderr, "case %zu, chunk %zu\n", i, chunk);
      ASSERT_EQ(c.more, cases[i].more);
      coll_free(&c);
    }
    /* every cut of the trailing part into two feeds */
    size_t n = strlen(doc), base = strlen(DOC(REC("192.0.2.1", "1")));
    for (size_t cut = base; cut <= n; cut++) {
      struct coll c;
      memset(&c, 0, sizeof c);
      dp_buf_init(&c.log, 0);
      dp_parser_t *p = dp_parser_create(NULL, &CB, &c);
      ASSERT_NOT_NULL(p);
      ASSERT_OK(dp_parser_feed(p, doc, cut));
      ASSERT_OK(dp_parser_feed(p, doc + cut, n - cut));
      ASSERT_OK(dp_parser_finish(p));
      if (dp_parser_more_reports(p) != cases[i].more) fprintf(stderr, "case %zu, cut %zu\n", i, cut);
      ASSERT_EQ(dp_parser_more_reports(p), cases[i].more);
      /* a reset parser starts over */
      ASSERT_OK(dp_parser_reset(p, &CB, &c));
      ASSERT_FALSE(dp_parser_more_reports(p));
      dp_parser_destroy(p);
      coll_free(&c);
    }
  }
}

/* A leaf whose text ends exactly at the end of the record buffer, then an
 * empty leaf: the empty one's NUL must still be inside the buffer (the
 * fuzzer found a write one byte past it; seen under ASan). Every length up
 * to past the second doubling of the buffer. */
TEST(xml_stream_empty_leaf_after_a_full_record_buffer) {
  static char doc[4096], text[1200];
  for (size_t len = 1; len < sizeof text - 1; len++) {
    memset(text, 'a', len);
    text[len] = '\0';
    snprintf(doc, sizeof doc,
             "<feedback>" META POLICY
             "<record><row><source_ip>192.0.2.1</source_ip><count>1</count></row><identifiers>"
             "<header_from>example.com</header_from><envelope_to>%s</envelope_to>"
             "<envelope_from></envelope_from><envelope_from/></identifiers></record></feedback>",
             text);
    struct coll c;
    ASSERT_OK(parse(doc, 0, &c));
    ASSERT_U64_EQ(c.nrec, 1);
    ASSERT_CONTAINS(c.last, text);
    coll_free(&c);
  }
}

TEST(xml_stream_records_before_refusal_were_delivered) {
  struct coll c;
  ASSERT_EQ(parse(DOC(REC("192.0.2.1", "1") REC("192.0.2.2", "2") REC("bad", "1")), 0, &c), DP_EREPORT);
  ASSERT_U64_EQ(c.nrec, 2);
  ASSERT_EQ(c.begins, 1);
  ASSERT_EQ(c.ends, 0);
  ASSERT_STR_EQ(g_err, "record 3: <source_ip> is not an IP address: \"bad\"");
  coll_free(&c);
}

TEST(xml_stream_limits) {
  dp_limits_t lim;
  dp_limits_default(&lim);
  struct coll c;
  char err[512];
  /* field length */
  lim.max_field_len = 16;
  const char *d = DOC(REC("192.0.2.1", "1"));
  ASSERT_OK(parse_lim(d, strlen(d), 0, &c, &lim, err, sizeof err));
  coll_free(&c);
  const char *longf = "<feedback>" META POLICY "<record><row><source_ip>192.0.2.1</source_ip><count>1"
                      "</count></row><identifiers><header_from>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "</header_from></identifiers></record></feedback>";
  ASSERT_EQ(parse_lim(longf, strlen(longf), 0, &c, &lim, err, sizeof err), DP_ELIMIT);
  ASSERT_STR_EQ(err, "record 1: <header_from> is longer than 16 bytes");
  coll_free(&c);
  const char *longo = "<feedback><report_metadata><org_name>0123456789abcdefg</org_name>";
  ASSERT_EQ(parse_lim(longo, strlen(longo), 0, &c, &lim, err, sizeof err), DP_ELIMIT);
  ASSERT_STR_EQ(err, "<org_name> is longer than 16 bytes");
  coll_free(&c);
  /* depth */
  dp_limits_default(&lim);
  lim.max_xml_depth = 8;
  const char *ok8 = "<feedback>" META POLICY "<record><row><source_ip>192.0.2.1</source_ip><count>1"
                    "</count><policy_evaluated><reason><type><a>x</a></type></reason>"
                    "</policy_evaluated></row></record></feedback>";
  ASSERT_OK(parse_lim(ok8, strlen(ok8), 0, &c, &lim, err, sizeof err));
  coll_free(&c);
  const char *deep9 = "<feedback>" META POLICY "<record><row><source_ip>192.0.2.1</source_ip><count>1"
                      "</count><policy_evaluated><reason><type><a><b><c/></b></a></type></reason>"
                      "</policy_evaluated></row></record></feedback>";
  ASSERT_EQ(parse_lim(deep9, strlen(deep9), 0, &c, &lim, err, sizeof err), DP_ELIMIT);
  ASSERT_STR_EQ(err, "XML elements nested deeper than 8 levels");
  coll_free(&c);
  /* records */
  dp_limits_default(&lim);
  lim.max_records = 2;
  const char *three = DOC(REC("192.0.2.1", "1") REC("192.0.2.2", "1") REC("192.0.2.3", "1"));
  ASSERT_EQ(parse_lim(three, strlen(three), 0, &c, &lim, err, sizeof err), DP_ELIMIT);
  ASSERT_STR_EQ(err, "more than 2 records");
  ASSERT_U64_EQ(c.nrec, 2);
  coll_free(&c);
}

/* A date_range ending past the clock plus max_future_days is refused (a
 * report dated years ahead would create partitions and skew "last seen");
 * the documents are built from the clock so the test holds on any date. */
static void doc_ending_at(int64_t end, char *out, size_t len) {
  snprintf(out, len,
           "<feedback><report_metadata><org_name>Org</org_name><email>r@org.test</email>"
           "<report_id>id-f</report_id><date_range><begin>%" PRId64 "</begin><end>%" PRId64
           "</end></date_range></report_metadata>" POLICY REC("192.0.2.1", "1") "</feedback>",
           end - 86400, end);
}

TEST(xml_stream_future_dates_limit) {
  struct coll c;
  char err[256], d[2048];
  dp_limits_t lim;
  dp_limits_default(&lim);
  ASSERT_EQ(lim.max_future_days, 7);
  int64_t now = (int64_t)time(NULL);
  /* six days ahead (clock skew, time zones): accepted */
  doc_ending_at(now + 6 * 86400, d, sizeof d);
  ASSERT_OK(parse_lim(d, strlen(d), 0, &c, &lim, err, sizeof err));
  ASSERT_U64_EQ(c.nrec, 1);
  coll_free(&c);
  /* year 5138: refused, with the date in the reason */
  doc_ending_at(INT64_C(99999993600), d, sizeof d);
  ASSERT_EQ(parse_lim(d, strlen(d), 0, &c, &lim, err, sizeof err), DP_EREPORT);
  ASSERT_STR_EQ(err, "date_range end 5138-11-16T08:00:00Z is more than 7 days after this "
                     "machine's clock (--max-future-days)");
  ASSERT_U64_EQ(c.nrec, 0);
  coll_free(&c);
  /* eight days ahead with the default: refused; with 30 days: accepted */
  doc_ending_at(now + 8 * 86400, d, sizeof d);
  ASSERT_EQ(parse_lim(d, strlen(d), 0, &c, &lim, err, sizeof err), DP_EREPORT);
  ASSERT_CONTAINS(err, "more than 7 days after");
  coll_free(&c);
  lim.max_future_days = 30;
  ASSERT_OK(parse_lim(d, strlen(d), 0, &c, &lim, err, sizeof err));
  coll_free(&c);
  /* 0 turns the check off: even year 9999 is taken */
  lim.max_future_days = 0;
  doc_ending_at(INT64_C(253402300799), d, sizeof d);
  ASSERT_OK(parse_lim(d, strlen(d), 0, &c, &lim, err, sizeof err));
  ASSERT_U64_EQ(c.nrec, 1);
  coll_free(&c);
}

TEST(xml_stream_callback_abort_is_sticky) {
  struct coll c;
  char err[256];
  const char *d = DOC(REC("192.0.2.1", "1") REC("192.0.2.2", "1") REC("192.0.2.3", "1"));
  g_abort_at = 2;
  int rc = parse_lim(d, strlen(d), 0, &c, NULL, err, sizeof err);
  g_abort_at = 0;
  ASSERT_EQ(rc, 42);
  ASSERT_U64_EQ(c.nrec, 2);
  ASSERT_CONTAINS(err, "aborted by the record callback");
  coll_free(&c);
}

/* ------------------------------------------------------------------------ */
/* Chunked feeding gives the same result as one feed */

TEST(xml_stream_chunked_equals_whole) {
  const char *docs[] = {
    RFC7489_FULL,
    RFC9990_FULL,
    DOC(REC("192.0.2.1", "1") REC("2001:db8::1", "2")),
    "\xef\xbb\xbf<?xml version=\"1.0\" encoding=\"utf-8\"?><!-- x --><junk/>"
    "<feedback>" META POLICY REC("192.0.2.1", "3") "</feedback>",
    "<?xml version='1.0' encoding='ISO-8859-1'?><feedback><report_metadata><org_name>\xe9</org_name>"
    "<report_id>q</report_id><date_range><begin>1</begin><end>2</end></date_range></report_metadata>"
    POLICY REC("192.0.2.1", "3") "</feedback>",
  };
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
    struct coll whole;
    ASSERT_OK(parse(docs[i], 0, &whole));
    ASSERT_EQ(whole.ends, 1);
    size_t chunks[] = {1, 2, 3, 5, 7, 64, 4096};
    for (size_t k = 0; k < sizeof chunks / sizeof *chunks; k++) {
      struct coll part;
      ASSERT_OK(parse(docs[i], chunks[k], &part));
      ASSERT_STR_EQ(part.log.data, whole.log.data);
      coll_free(&part);
    }
    coll_free(&whole);
  }
}

/* ------------------------------------------------------------------------ */
/* Corpora */

static char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  dp_buf_t b;
  dp_buf_init(&b, 0);
  char tmp[65536];
  size_t r;
  while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) dp_buf_append(&b, tmp, r);
  fclose(f);
  return dp_buf_steal(&b, n);
}

/* Split a TSV line in place into at most max fields. */
static int split_tsv(char *line, char **f, int max) {
  int n = 0;
  line[strcspn(line, "\r\n")] = '\0';
  f[n++] = line;
  for (char *c = line; *c && n < max; c++)
    if (*c == '\t') {
      *c = '\0';
      f[n++] = c + 1;
    }
  return n;
}

TEST(xml_stream_real_corpus) {
  char path[4096];
  snprintf(path, sizeof path, "%s/corpus/real/MANIFEST.tsv", dp_test_shared_dir());
  FILE *m = fopen(path, "r");
  ASSERT_NOT_NULL(m);
  char line[4096];
  int n_ok = 0, n_reject = 0, n_any = 0;
  while (fgets(line, sizeof line, m)) {
    char *f[10];
    if (split_tsv(line, f, 10) < 9 || strcmp(f[1], "xml") != 0) continue;
    snprintf(path, sizeof path, "%s/corpus/real/%s", dp_test_shared_dir(), f[0]);
    size_t n;
    char *doc = read_file(path, &n);
    if (!doc) fclose(m);
    ASSERT_NOT_NULL(doc);
    struct coll c, c7;
    char err[512], err7[512];
    int rc = parse_lim(doc, n, 0, &c, NULL, err, sizeof err);
    int rc7 = parse_lim(doc, n, 7, &c7, NULL, err7, sizeof err7);
    free(doc);
    bool same = rc == rc7 && strcmp(c.log.data ? c.log.data : "", c7.log.data ? c7.log.data : "") == 0 &&
                strcmp(err, err7) == 0;
    const char *expect = f[8];
    bool good = same;
    if (strcmp(expect, "ok") == 0) {
      char want_rep[256];
      good = good && rc == 0 && c.ends == 1 && c.nrec == strtoull(f[3], NULL, 10) &&
             c.msgs == strtoull(f[4], NULL, 10);
      snprintf(want_rep, sizeof want_rep, "|id=%s|", f[7]);
      good = good && strstr(c.rep, want_rep);
      snprintf(want_rep, sizeof want_rep, "|domain=%s|", f[5]);
      good = good && strstr(c.rep, want_rep);
      if (f[6][0]) {
        snprintf(want_rep, sizeof want_rep, "|org=%s|", f[6]);
        good = good && strstr(c.rep, want_rep);
      }
      n_ok++;
    } else if (strcmp(expect, "reject") == 0) {
      good = good && rc != 0 && err[0] && c.ends == 0;
      n_reject++;
    } else {
      n_any++;
    }
    if (!good)
      fprintf(stderr, "%s: expect %s, rc %d (chunked %d) nrec %" PRIu64 " msgs %" PRIu64 " err \"%s\"\n%s\n",
              f[0], expect, rc, rc7, c.nrec, c.msgs, err, c.rep);
    coll_free(&c);
    coll_free(&c7);
    if (!good) fclose(m);
    ASSERT_TRUE(good);
  }
  fclose(m);
  ASSERT_EQ(n_ok, 44);
  ASSERT_EQ(n_reject, 2);
  ASSERT_EQ(n_any, 2);
}

TEST(xml_stream_real_corpus_messages) {
  /* the refusals of the real corpus say why */
  char path[4096];
  struct { const char *file; int rc; const char *msg; } cases[] = {
    {"trollByte_dmarc/malformed_report.xml", DP_EREPORT, "root element <invalid_root> is not <feedback>"},
    {"tierpod_dmarc-report-converter/test_empty.xml", DP_EREPORT, "record 1: <source_ip> is missing"},
    {"domainaware_parsedmarc/invalid_xml.xml", DP_EXML, "malformed XML at line 5: "},
    {"trollByte_dmarc/malformed.xml", DP_EXML, "malformed XML at line "},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(path, sizeof path, "%s/corpus/real/%s", dp_test_shared_dir(), cases[i].file);
    size_t n;
    char *doc = read_file(path, &n);
    ASSERT_NOT_NULL(doc);
    struct coll c;
    char err[512];
    int rc = parse_lim(doc, n, 0, &c, NULL, err, sizeof err);
    free(doc);
    coll_free(&c);
    if (rc != cases[i].rc) fprintf(stderr, "%s: %d %s\n", cases[i].file, rc, err);
    ASSERT_EQ(rc, cases[i].rc);
    ASSERT_CONTAINS(err, cases[i].msg);
  }
  /* the invalid UTF-8 byte is salvaged as U+FFFD */
  snprintf(path, sizeof path, "%s/corpus/real/domainaware_parsedmarc/invalid_utf_8.xml", dp_test_shared_dir());
  size_t n;
  char *doc = read_file(path, &n);
  ASSERT_NOT_NULL(doc);
  struct coll c;
  char err[512];
  int rc = parse_lim(doc, n, 0, &c, NULL, err, sizeof err);
  free(doc);
  ASSERT_OK(rc);
  ASSERT_CONTAINS(c.last, "hfrom=bad_byte\xef\xbf\xbd|");
  ASSERT_CONTAINS(c.rep, "org=accurateplastics.com|");
  coll_free(&c);
}

TEST(xml_stream_hostile_corpus) {
  char path[4096];
  snprintf(path, sizeof path, "%s/corpus/hostile/EXPECTED.tsv", dp_test_shared_dir());
  FILE *m = fopen(path, "r");
  ASSERT_NOT_NULL(m);
  /* the first line of /etc/passwd must never appear in anything parsed */
  size_t pwn = 0;
  char *pw = read_file("/etc/passwd", &pwn);
  if (pw) pw[strcspn(pw, "\n")] = '\0';
  char line[1024];
  int seen = 0;
  while (fgets(line, sizeof line, m)) {
    char *f[3];
    if (split_tsv(line, f, 3) < 2) continue;
    size_t fl = strlen(f[0]);
    if (fl < 4 || strcmp(f[0] + fl - 4, ".xml") != 0) continue;
    snprintf(path, sizeof path, "%s/corpus/hostile/%s", dp_test_shared_dir(), f[0]);
    size_t n;
    char *doc = read_file(path, &n);
    ASSERT_NOT_NULL(doc);
    struct coll c;
    char err[512];
    clock_t t0 = clock();
    int rc = parse_lim(doc, n, 0, &c, NULL, err, sizeof err);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    free(doc);
    bool good = secs < 5;
    if (strncmp(f[1], "ok ", 3) == 0) {
      uint64_t want_n = 0, want_m = 0;
      sscanf(f[1] + 3, "%" SCNu64 " %" SCNu64, &want_n, &want_m);
      good = good && rc == 0 && c.ends == 1 && c.nrec == want_n && c.msgs == want_m;
    } else if (strcmp(f[1], "reject") == 0) {
      good = good && rc != 0 && err[0] && !strchr(err, '\n') && c.ends == 0;
    } else if (strcmp(f[1], "noleak") == 0) {
      good = good && (!pw || !pw[0] || !c.log.data || !strstr(c.log.data, pw)) &&
             (!c.log.data || !strstr(c.log.data, "root:"));
    }
    if (!good) fprintf(stderr, "%s: expect %s, rc %d err \"%s\" n %" PRIu64 " m %" PRIu64 " %.2fs\n",
                       f[0], f[1], rc, err, c.nrec, c.msgs, secs);
    coll_free(&c);
    seen++;
    if (!good) { fclose(m); free(pw); }
    ASSERT_TRUE(good);
  }
  fclose(m);
  free(pw);
  ASSERT_EQ(seen, 17);
}

TEST(xml_stream_hostile_messages) {
  struct { const char *file; int rc; const char *msg; } cases[] = {
    {"billion-laughs.xml", DP_EXML, "refused: the document declares the entity \"a\""},
    {"xxe-file.xml", DP_EXML, "refused: the document declares the entity \"x\""},
    {"deep-nesting.xml", DP_ELIMIT, "XML elements nested deeper than 64 levels"},
    {"bad-ip.xml", DP_EREPORT, "record 1: <source_ip> is not an IP address: \"999.1.1.1\""},
    {"missing-report-id.xml", DP_EREPORT, "report_id is required"},
    {"empty-file.xml", DP_EREPORT, "no <feedback> report in document"},
    {"count-negative.xml", DP_EREPORT, "<count> is negative"},
    {"count-garbage.xml", DP_EREPORT, "<count> is not an integer"},
    {"long-string.xml", DP_ELIMIT, "<header_from> is longer than 65536 bytes"},
  };
  char path[4096];
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    snprintf(path, sizeof path, "%s/corpus/hostile/%s", dp_test_shared_dir(), cases[i].file);
    size_t n;
    char *doc = read_file(path, &n);
    ASSERT_NOT_NULL(doc);
    struct coll c;
    char err[512];
    int rc = parse_lim(doc, n, 4096, &c, NULL, err, sizeof err);
    free(doc);
    coll_free(&c);
    if (rc != cases[i].rc || !strstr(err, cases[i].msg)) fprintf(stderr, "%s: %d %s\n", cases[i].file, rc, err);
    ASSERT_EQ(rc, cases[i].rc);
    ASSERT_CONTAINS(err, cases[i].msg);
  }
}

/* ------------------------------------------------------------------------ */
/* Reuse: dp_parser_reset must give what a fresh parser gives, whatever the
 * previous document did (refused, malformed, UTF-16, entities, limits). */

struct corpus_doc {
  char *name;
  char *data;
  size_t n;
  int rc;        /* with a fresh parser */
  char err[512];
  char *log;
};

/* Feed doc into p (reset first) like parse_lim does into a fresh parser. */
static int parse_reused(dp_parser_t *p, const char *doc, size_t n, size_t chunk, struct coll *c,
                        char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  dp_buf_init(&c->log, 0);
  if (dp_parser_reset(p, &CB, c)) return DP_ENOMEM;
  int rc = 0;
  if (chunk == 0) chunk = n ? n : 1;
  for (size_t off = 0; off < n && !rc; off += chunk)
    rc = dp_parser_feed(p, doc + off, n - off < chunk ? n - off : chunk);
  if (!rc) rc = dp_parser_finish(p);
  if (rc) {
    if (dp_parser_feed(p, "x", 1) != rc || dp_parser_finish(p) != rc) rc = -999;
  } else if (dp_parser_error(p)[0]) {
    rc = -998;
  }
  c->more = dp_parser_more_reports(p);
  snprintf(err, errlen, "%s", dp_parser_error(p));
  return rc;
}

static size_t load_corpus(struct corpus_doc *docs, size_t max) {
  size_t nd = 0;
  char path[4096], line[4096];
  const char *lists[2] = {"real/MANIFEST.tsv", "hostile/EXPECTED.tsv"};
  for (int l = 0; l < 2; l++) {
    snprintf(path, sizeof path, "%s/corpus/%s", dp_test_shared_dir(), lists[l]);
    FILE *m = fopen(path, "r");
    if (!m) return 0;
    while (fgets(line, sizeof line, m) && nd < max) {
      char *f[10];
      if (split_tsv(line, f, 10) < 2) continue;
      size_t fl = strlen(f[0]);
      if (fl < 4 || strcmp(f[0] + fl - 4, ".xml") != 0) continue;
      snprintf(path, sizeof path, "%s/corpus/%s/%s", dp_test_shared_dir(), l ? "hostile" : "real", f[0]);
      struct corpus_doc *d = &docs[nd];
      d->data = read_file(path, &d->n);
      if (!d->data) continue;
      d->name = strdup(f[0]);
      struct coll c;
      d->rc = parse_lim(d->data, d->n, 0, &c, NULL, d->err, sizeof d->err);
      d->log = strdup(c.log.data ? c.log.data : "");
      coll_free(&c);
      nd++;
    }
    fclose(m);
  }
  /* and documents of the unit tests above: UTF-16, Latin-1, refusals */
  static const char *extra[] = {
      DOC(REC("192.0.2.1", "1")),
      "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><feedback>" META POLICY
      "<record><row><source_ip>192.0.2.1</source_ip><count>1</count></row><identifiers>"
      "<header_from>caf\xe9.example</header_from></identifiers><auth_results/></record></feedback>",
      "<?xml version=\"1.0\"?><!DOCTYPE f [<!ENTITY a \"aaaa\">]><feedback>&a;</feedback>",
      "<feedback><report_metadata><org_name>x</org_name></report_metadata>",
      "\xef\xbb\xbf  <?xml version=\"1.0\"?><junk/><feedback>" META POLICY REC("2001:DB8::1", "7")
      "</feedback><more/>",
  };
  for (size_t i = 0; i < sizeof extra / sizeof *extra && nd + 2 <= max; i++) {
    struct corpus_doc *d = &docs[nd++];
    d->name = strdup("unit document");
    d->data = strdup(extra[i]);
    d->n = strlen(extra[i]);
    if (i == 0) { /* the same in UTF-16 LE, with its BOM */
      struct corpus_doc *u = &docs[nd++];
      u->name = strdup("unit document, UTF-16");
      u->data = malloc(2 * d->n + 4);
      u->n = utf16(extra[i], u->data, true);
    }
  }
  for (size_t i = 0; i < nd; i++) {
    struct corpus_doc *d = &docs[i];
    if (d->log) continue;
    struct coll c;
    d->rc = parse_lim(d->data, d->n, 0, &c, NULL, d->err, sizeof d->err);
    d->log = strdup(c.log.data ? c.log.data : "");
    coll_free(&c);
  }
  return nd;
}

static void free_corpus(struct corpus_doc *docs, size_t nd) {
  for (size_t i = 0; i < nd; i++) {
    free(docs[i].name);
    free(docs[i].data);
    free(docs[i].log);
  }
}

/* Parse docs[i] on the reused p and compare with the fresh result. */
static bool same_as_fresh(dp_parser_t *p, const struct corpus_doc *d, size_t chunk, const char *after) {
  struct coll c;
  char err[512];
  int rc = parse_reused(p, d->data, d->n, chunk, &c, err, sizeof err);
  bool same = rc == d->rc && !strcmp(err, d->err) && !strcmp(c.log.data ? c.log.data : "", d->log);
  if (!same)
    fprintf(stderr, "%s (after %s, chunk %zu): reused rc %d \"%s\", fresh rc %d \"%s\"\n", d->name,
            after, chunk, rc, err, d->rc, d->err);
  coll_free(&c);
  return same;
}

TEST(xml_stream_reset_equals_fresh_on_corpora) {
  static struct corpus_doc docs[128];
  memset(docs, 0, sizeof docs);
  size_t nd = load_corpus(docs, 128);
  ASSERT_EQ(nd, 49 + 17 + 6); /* real, hostile, unit documents */
  size_t n_refused = 0;
  for (size_t i = 0; i < nd; i++) n_refused += docs[i].rc != 0;
  ASSERT_TRUE(n_refused >= 15); /* refusals of every kind are among them */
  dp_parser_t *p = dp_parser_create(NULL, NULL, NULL);
  ASSERT_NOT_NULL(p);
  bool good = true;
  /* one parser through the whole corpus, forwards whole and backwards in
   * 7-byte chunks */
  for (size_t i = 0; i < nd && good; i++) good = same_as_fresh(p, &docs[i], 0, i ? docs[i - 1].name : "nothing");
  for (size_t i = nd; i-- > 0 && good;) good = same_as_fresh(p, &docs[i], 7, i + 1 < nd ? docs[i + 1].name : docs[0].name);
  /* every document right after every refused one */
  for (size_t r = 0; r < nd && good; r++) {
    if (!docs[r].rc) continue;
    for (size_t i = 0; i < nd && good; i++) {
      good = same_as_fresh(p, &docs[r], 0, "anything");
      good = good && same_as_fresh(p, &docs[i], 0, docs[r].name);
    }
  }
  dp_parser_destroy(p);
  free_corpus(docs, nd);
  ASSERT_TRUE(good);
}

TEST(xml_stream_reset_keeps_limits) {
  /* limits stay those the parser was made with, document after document */
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_records = 2;
  dp_parser_t *p = dp_parser_create(&lim, NULL, NULL);
  ASSERT_NOT_NULL(p);
  const char *three = DOC(REC("192.0.2.1", "1") REC("192.0.2.2", "1") REC("192.0.2.3", "1"));
  const char *two = DOC(REC("192.0.2.1", "1") REC("192.0.2.2", "1"));
  for (int round = 0; round < 3; round++) {
    struct coll c;
    char err[512];
    ASSERT_EQ(parse_reused(p, three, strlen(three), 0, &c, err, sizeof err), DP_ELIMIT);
    ASSERT_STR_EQ(err, "more than 2 records");
    ASSERT_EQ(c.nrec, 2);
    coll_free(&c);
    ASSERT_OK(parse_reused(p, two, strlen(two), 0, &c, err, sizeof err));
    ASSERT_EQ(c.nrec, 2);
    ASSERT_EQ(c.ends, 1);
    coll_free(&c);
  }
  dp_parser_destroy(p);
}

/* ------------------------------------------------------------------------ */
/* Throughput: a generated report of ~20 MB must parse well above the rate at
 * which reports arrive; the figure is printed for the record. */

struct count_only {
  uint64_t nrec, aligned;
};

static int count_record(void *ud, const dp_report_t *r, const dp_record_t *rec) {
  struct count_only *c = ud;
  (void)r;
  c->nrec++;
  c->aligned += rec->dkim_aligned && !rec->spf_aligned;
  return 0;
}

TEST(xml_stream_throughput) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n" META POLICY "\n");
  for (int i = 0; i < 40000; i++)
    dp_buf_printf(&b,
                  "  <record>\n    <row>\n      <source_ip>192.0.%d.%d</source_ip>\n      <count>%d</count>\n"
                  "      <policy_evaluated>\n        <disposition>none</disposition>\n"
                  "        <dkim>pass</dkim>\n        <spf>fail</spf>\n      </policy_evaluated>\n"
                  "    </row>\n    <identifiers>\n      <header_from>example.com</header_from>\n"
                  "    </identifiers>\n    <auth_results>\n      <dkim>\n        <domain>"
                  "mail%d.example.com</domain>\n        <selector>s1</selector>\n"
                  "        <result>pass</result>\n      </dkim>\n      <spf>\n        <domain>"
                  "bounce.esp%d.test</domain>\n        <scope>mfrom</scope>\n        <result>pass"
                  "</result>\n      </spf>\n    </auth_results>\n  </record>\n",
                  (i >> 8) & 255, i & 255, i % 7 + 1, i % 13, i % 17);
  dp_buf_puts(&b, "</feedback>\n");
  struct count_only c = {0, 0};
  static const dp_parse_cb_t cb = {NULL, count_record, NULL};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  dp_parser_t *p = dp_parser_create(NULL, &cb, &c);
  int rc = 0;
  for (size_t off = 0; off < b.len && !rc; off += 65536)
    rc = dp_parser_feed(p, b.data + off, b.len - off < 65536 ? b.len - off : 65536);
  if (!rc) rc = dp_parser_finish(p);
  dp_parser_destroy(p);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("throughput: %.1f MB in %.3f s = %.1f MB/s, %.0f records/s\n", (double)b.len / 1e6, s,
         (double)b.len / 1e6 / s, 40000 / s);
  size_t len = b.len;
  dp_buf_free(&b);
  ASSERT_OK(rc);
  ASSERT_U64_EQ(c.nrec, 40000);
  ASSERT_U64_EQ(c.aligned, 40000);
  ASSERT_TRUE((double)len / 1e6 / s > 5.0);
}

/* The record buffer's own limit (64 maximal fields and 1 KiB) and the field
 * limit on untrimmed text, fed whole, byte by byte and in 7-byte pieces:
 * whitespace around a value counts against the field limit but not against
 * the record buffer, where only the trimmed value is stored. */
static char *many_dkim_doc(int n, const char *pad) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_puts(&b, "<feedback>" META POLICY "<record><row><source_ip>192.0.2.1</source_ip><count>1"
                  "</count></row><identifiers><header_from>example.com</header_from></identifiers>"
                  "<auth_results>");
  for (int i = 0; i < n; i++)
    dp_buf_printf(&b, "<dkim><domain>%sd%011d.a%s</domain><selector>%ss%013d%s</selector></dkim>",
                  pad, i, pad, pad, i, pad);
  dp_buf_puts(&b, "</auth_results></record></feedback>");
  return dp_buf_steal(&b, NULL);
}

TEST(xml_stream_record_buffer_limit) {
  dp_limits_t lim;
  dp_limits_default(&lim);
  lim.max_field_len = 16; /* record buffer: 16 * 64 + 1024 = 2048 bytes */
  static const size_t chunks[] = {0, 1, 7};
  for (size_t k = 0; k < 3; k++) {
    struct coll c;
    char err[512];
    /* 14-byte values padded to 16 bytes, 30 bytes an entry stored after
     * the first 25: 67 entries fit, 68 do not */
    char *ok = many_dkim_doc(67, " ");
    ASSERT_OK(parse_lim(ok, strlen(ok), chunks[k], &c, &lim, err, sizeof err));
    ASSERT_EQ(c.nrec, 1);
    ASSERT_CONTAINS(c.last, "d00000000066.a");
    ASSERT_TRUE(strstr(c.last, " d00000000066.a") == NULL); /* stored trimmed */
    coll_free(&c);
    free(ok);
    char *big = many_dkim_doc(68, "\n");
    ASSERT_EQ(parse_lim(big, strlen(big), chunks[k], &c, &lim, err, sizeof err), DP_ELIMIT);
    ASSERT_STR_EQ(err, "record 1: larger than 2048 bytes");
    coll_free(&c);
    free(big);
    /* two blanks of padding make 17 untrimmed bytes: the field limit */
    char *padded = many_dkim_doc(1, "  ");
    ASSERT_EQ(parse_lim(padded, strlen(padded), chunks[k], &c, &lim, err, sizeof err), DP_ELIMIT);
    ASSERT_STR_EQ(err, "record 1: <domain> is longer than 16 bytes");
    coll_free(&c);
    free(padded);
  }
}

/* ------------------------------------------------------------------------ */
/* Element dispatch (one table over every state, names cached by their
 * dictionary pointer): every name of both schemas in any ASCII case, and
 * unknown elements anywhere, known names in the wrong place included. */

/* doc with every element name (not attributes, not <?xml or <!) put in a
 * case: 0 upper, 1 first letter upper, 2 alternating. Caller frees. */
static char *recase_names(const char *doc, int how) {
  char *out = strdup(doc);
  bool in_name = false;
  size_t k = 0;
  for (char *s = out; *s; s++) {
    if (*s == '<') {
      in_name = s[1] != '?' && s[1] != '!';
      k = 0;
      continue;
    }
    if (in_name && *s == '/' && k == 0) continue;
    if (!in_name || *s == ' ' || *s == '>' || *s == '/' || *s == ':') {
      if (*s == ':') k = 0; /* a prefix: the local name starts again */
      else in_name = false;
      continue;
    }
    bool up = how == 0 || (how == 1 && k == 0) || (how == 2 && k % 2 == 1);
    if (up && *s >= 'a' && *s <= 'z') *s = (char)(*s - 32);
    k++;
  }
  return out;
}

/* doc with `junk` inserted after every start tag (containers and leaves
 * alike: a leaf's child elements are skipped with their text). */
static char *insert_after_start_tags(const char *doc, const char *junk) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  for (const char *s = doc; *s; s++) {
    dp_buf_putc(&b, *s);
    if (*s != '>' || s == doc) continue;
    const char *lt = s;
    while (lt > doc && *lt != '<') lt--;
    if (lt[1] == '/' || lt[1] == '?' || lt[1] == '!' || s[-1] == '/') continue;
    dp_buf_puts(&b, junk);
  }
  return dp_buf_steal(&b, NULL);
}

TEST(xml_stream_dispatch_names_any_case_both_schemas) {
  const char *docs[] = {RFC7489_FULL, RFC9990_FULL};
  for (int d = 0; d < 2; d++) {
    struct coll want, got;
    ASSERT_OK(parse(docs[d], 0, &want));
    ASSERT_EQ(want.nrec, 1);
    for (int how = 0; how < 3; how++) {
      char *doc = recase_names(docs[d], how);
      ASSERT_TRUE(strstr(doc, how == 0 ? "<AUTH_RESULTS>" : how == 1 ? "<Auth_results>" : "<aUtH_ReSuLtS>"));
      for (size_t chunk = 0; chunk <= 3; chunk += 3) {
        ASSERT_OK(parse(doc, chunk, &got));
        ASSERT_STR_EQ(got.rep, want.rep);
        ASSERT_STR_EQ(got.last, want.last);
        ASSERT_EQ(got.schema, d + 1);
        coll_free(&got);
      }
      free(doc);
    }
    coll_free(&want);
  }
  /* <identities> (early drafts) is <identifiers>, in any case as well */
  const char *alias = DOC("<record><row><source_ip>192.0.2.1</source_ip><count>1</count></row>"
                          "<IDENTITIES><header_from>Example.COM</header_from></IDENTITIES></record>");
  struct coll c;
  ASSERT_OK(parse(alias, 0, &c));
  ASSERT_CONTAINS(c.last, "|hfrom=example.com|");
  coll_free(&c);
}

/* A single element repeated with the same value, or empty on one side, is
 * not ambiguous: the report is taken, with the value that is there. */
TEST(xml_stream_harmless_repeats) {
  struct coll c;
  ASSERT_OK(parse("<feedback>" META POLICY
                  "<policy_published><domain>example.com</domain><p></p></policy_published>"
                  "<record><row><source_ip>192.0.2.1</source_ip><count>5</count><count>5</count>"
                  "<count></count></row><identifiers><header_from></header_from>"
                  "<header_from>example.com</header_from></identifiers></record></feedback>",
                  0, &c));
  ASSERT_EQ(c.nrec, 1);
  ASSERT_U64_EQ(c.msgs, 5);
  ASSERT_CONTAINS(c.rep, "p=none");
  ASSERT_CONTAINS(c.log.data, "hfrom=example.com|");
  coll_free(&c);
}

TEST(xml_stream_dispatch_unknown_elements_anywhere) {
  /* unknown names, names a known one starts with or that start with one,
   * a name longer than the lookup's buffer, and known names (fields and
   * containers of every level) where they do not belong */
  static const char junk[] =
      "<zz>junk<domain>evil.test</domain><count>99</count><record><row><source_ip>10.9.9.9"
      "</source_ip><count>5</count></row></record></zz><domains>x</domains><dkim2>x</dkim2>"
      "<p_>x</p_><a_name_longer_than_the_twenty_four_byte_buffer>x"
      "</a_name_longer_than_the_twenty_four_byte_buffer><report_id_x>y</report_id_x>"
      "<x:org_name xmlns:x=\"urn:x\"></x:org_name>";
  const char *docs[] = {RFC7489_FULL, RFC9990_FULL};
  for (int d = 0; d < 2; d++) {
    struct coll want, got;
    ASSERT_OK(parse(docs[d], 0, &want));
    char *doc = insert_after_start_tags(docs[d], junk);
    ASSERT_TRUE(strstr(doc, "<feedback") && strstr(doc, "<zz>"));
    for (size_t chunk = 0; chunk <= 7; chunk += 7) {
      ASSERT_OK(parse(doc, chunk, &got));
      ASSERT_EQ(got.nrec, 1);
      ASSERT_STR_EQ(got.rep, want.rep);
      ASSERT_STR_EQ(got.last, want.last);
      coll_free(&got);
    }
    free(doc);
    coll_free(&want);
  }
}

/* Lower-casing works on words, a short last part as a masked word: every
 * length, upper-case at every position, blanks around, neighbours intact. */
TEST(xml_stream_lower_cases_every_length_and_position) {
  for (size_t len = 1; len <= 20; len++) {
    for (size_t pos = 0; pos < len; pos++) {
      char v[32], lower[32], doc[2048];
      for (size_t i = 0; i < len; i++) v[i] = lower[i] = (char)('a' + (i % 26));
      v[len] = lower[len] = '\0';
      v[pos] = (char)(v[pos] - 32);
      v[len - 1] = len - 1 == pos ? v[len - 1] : 'Z';
      lower[len - 1] = 'z';
      if (len - 1 == pos) lower[len - 1] = (char)(v[len - 1] + 32);
      snprintf(doc, sizeof doc,
               DOC("<record><row><source_ip>192.0.2.1</source_ip><count>1</count>"
                   "<policy_evaluated><disposition>%s%s</disposition><dkim>Fail</dkim>"
                   "</policy_evaluated></row><identifiers><header_from>%s</header_from>"
                   "</identifiers><auth_results><spf><domain>%s</domain><result>%s</result>"
                   "</spf></auth_results></record>"),
               pos & 1 ? " \n" : "", v, v, v, v);
      struct coll c;
      ASSERT_OK(parse(doc, pos & 2 ? 1 : 0, &c));
      char want[512];
      snprintf(want, sizeof want,
               "index=1|ip=192.0.2.1|family=4|count=1|disp=%s|pe_dkim=fail|pe_spf=|hfrom=%s|"
               "efrom=|eto=|spf.d=%s|spf.s=|spf.r=%s|spf.h=|",
               lower, lower, lower, lower);
      if (strlen(c.last) > strlen(want)) c.last[strlen(want)] = '\0'; /* alignment follows */
      ASSERT_STR_EQ(c.last, want);
      coll_free(&c);
    }
  }
}

/* The same with CR and TAB (let through only after a second look) and no
 * LF, and with no bad byte at all: XML reads a lone CR as LF. */
TEST(xml_stream_repair_with_cr_and_tab_at_every_offset) {
  for (size_t k = 0; k <= 40; k++) {
    char org[64], want[160], doc[2048];
    for (size_t i = 0; i < 40; i++) org[i] = (char)(i % 5 == 2 ? '\r' : i % 3 == 1 ? '\t' : 'a' + i % 26);
    org[0] = 'A';
    org[39] = 'z';
    org[40] = '\0';
    char norm[64];
    memcpy(norm, org, sizeof org);
    for (size_t i = 0; i < 40; i++)
      if (norm[i] == '\r') norm[i] = '\n';
    if (k < 40) {
      org[k] = '\x02';
      norm[k] = '\0';
      snprintf(want, sizeof want, "org=%s\xef\xbf\xbd%s|", norm, norm + k + 1);
    } else {
      snprintf(want, sizeof want, "org=%s|", norm);
    }
    snprintf(doc, sizeof doc,
             "<?xml version=\"1.0\"?>\r<feedback>\r\t<report_metadata><org_name>%s</org_name>"
             "<report_id>r</report_id><date_range><begin>1</begin><end>2</end></date_range>"
             "</report_metadata>" POLICY REC("192.0.2.1", "1") "</feedback>",
             org);
    struct coll c;
    for (size_t chunk = 0; chunk <= 17; chunk += 17) {
      ASSERT_OK(parse(doc, chunk, &c));
      ASSERT_CONTAINS(c.rep, want);
      coll_free(&c);
    }
  }
}
