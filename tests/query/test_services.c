/* SPDX-License-Identifier: MIT */
/* tests/query/test_services.c - the known-services map: parsing the TSV,
 * overriding, longest-suffix matching on label boundaries, the compiled-in
 * data/services.tsv, the user's file, and hint expansion. */
#include <unistd.h>

#include "../test.h"
#include "core/core.h"
#include "query/query_int.h"

static dp_services_t *map_of(const char *tsv) {
  char err[256] = "";
  dp_services_t *m = dp__query_services_create();
  if (m && dp__query_services_add_tsv(m, tsv, strlen(tsv), "t", err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    dp__query_services_destroy(m);
    return NULL;
  }
  return m;
}

TEST(services_match_longest_suffix_on_label_boundary) {
  dp_services_t *m =
      map_of("# comment\n"
             "\n"
             "google.com\tGoogle Workspace\tworkspace\n"
             "googlegroups.com\tGoogle Groups\tlist\n"
             "bounces.google.com\tGoogle Calendar\tworkspace\t-\t-\t-\r\n"
             "Sendgrid.NET.\tSendGrid\tesp\tdk {domain}\trp {domain}\tinclude:sendgrid.net");
  ASSERT_NOT_NULL(m);
  ASSERT_EQ(dp__query_services_count(m), 4);
  ASSERT_STR_EQ(dp__query_services_match(m, "google.com")->name, "Google Workspace");
  ASSERT_STR_EQ(dp__query_services_match(m, "_spf.google.com")->name, "Google Workspace");
  ASSERT_STR_EQ(dp__query_services_match(m, "calendar-server.bounces.google.com")->name,
                "Google Calendar");
  ASSERT_STR_EQ(dp__query_services_match(m, "bounces.google.com.")->name, "Google Calendar");
  ASSERT_STR_EQ(dp__query_services_match(m, "googlegroups.com")->name, "Google Groups");
  /* suffix, but not on a label boundary */
  ASSERT_TRUE(dp__query_services_match(m, "notgoogle.com") == NULL);
  ASSERT_TRUE(dp__query_services_match(m, "google.com.evil.org") == NULL);
  ASSERT_TRUE(dp__query_services_match(m, "com") == NULL);
  ASSERT_TRUE(dp__query_services_match(m, "") == NULL);
  ASSERT_TRUE(dp__query_services_match(m, NULL) == NULL);
  /* case-insensitive; the pattern was normalised */
  const dp_service_t *sg = dp__query_services_match(m, "U123.WL.SendGrid.Net");
  ASSERT_NOT_NULL(sg);
  ASSERT_STR_EQ(sg->pattern, "sendgrid.net");
  ASSERT_STR_EQ(sg->kind, "esp");
  ASSERT_STR_EQ(sg->spf, "include:sendgrid.net");
  /* missing columns are "not known" (NULL); "-" is kept */
  const dp_service_t *g = dp__query_services_match(m, "google.com");
  ASSERT_TRUE(g->dkim == NULL && g->return_path == NULL && g->spf == NULL);
  ASSERT_STR_EQ(dp__query_services_match(m, "bounces.google.com")->dkim, "-");
  dp__query_services_destroy(m);
}

TEST(services_later_line_overrides) {
  dp_services_t *m = map_of("sendgrid.net\tSendGrid\tesp\n"
                            "sendgrid.net\tOur SendGrid\tesp\tdk\n");
  ASSERT_NOT_NULL(m);
  ASSERT_EQ(dp__query_services_count(m), 1);
  ASSERT_STR_EQ(dp__query_services_match(m, "sendgrid.net")->name, "Our SendGrid");
  ASSERT_STR_EQ(dp__query_services_match(m, "sendgrid.net")->dkim, "dk");
  dp__query_services_destroy(m);
}

TEST(services_bad_lines_named) {
  static const struct {
    const char *tsv, *err;
  } cases[] = {
      {"a.com\tA\n", "t:1: expected TAB-separated"},
      {"ok.com\tOK\tesp\nbad dom.com\tX\tesp\n", "t:2: pattern 'bad dom.com' is not a domain"},
      {"a..com\tA\tesp\n", "t:1: pattern"},
      {"a.com\t\tesp\n", "t:1: empty service name"},
      {"a.com\tA\tbank\n", "t:1: kind 'bank' is not one of"},
      {"a.com\tA\tesp\t1\t2\t3\t4\n", "t:1: more than 6 columns"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dp_services_t *m = dp__query_services_create();
    char err[256] = "";
    ASSERT_EQ(
        dp__query_services_add_tsv(m, cases[i].tsv, strlen(cases[i].tsv), "t", err, sizeof err),
        DP_EUSAGE);
    ASSERT_CONTAINS(err, cases[i].err);
    dp__query_services_destroy(m);
  }
}

TEST(services_builtin_map) {
  dp__query_services_set(NULL);
  const dp_services_t *m = dp__query_services();
  ASSERT_NOT_NULL(m);
  ASSERT_TRUE(dp__query_services_count(m) >= 25);
  static const char *const want[][2] = {
      {"sendgrid.net", "SendGrid"},
      {"u123.wl.sendgrid.net", "SendGrid"},
      {"us-east-1.amazonses.com", "Amazon SES"},
      {"mcsv.net", "Mailchimp"},
      {"mandrillapp.com", "Mandrill (Mailchimp Transactional)"},
      {"_spf.google.com", "Google Workspace"},
      {"example-com.20230601.gappssmtp.com", "Google Workspace"},
      {"spf.protection.outlook.com", "Microsoft 365"},
      {"salesforce.com", "Salesforce"},
      {"exacttarget.com", "Salesforce Marketing Cloud"},
      {"zendesk.com", "Zendesk"},
      {"bf02x.hubspotemail.net", "HubSpot"},
      {"mailgun.org", "Mailgun"},
      {"pm.mtasv.net", "Postmark"},
      {"sparkpostmail.com", "SparkPost"},
      {"groups.io", "Groups.io"},
      {"googlegroups.com", "Google Groups"},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const dp_service_t *s = dp__query_services_match(m, want[i][0]);
    ASSERT_NOT_NULL(s);
    ASSERT_STR_EQ(s->name, want[i][1]);
  }
  ASSERT_STR_EQ(dp__query_services_match(m, "groups.io")->kind, "list");
  ASSERT_CONTAINS(dp__query_services_match(m, "sendgrid.net")->dkim, "s1._domainkey.{domain}");
}

TEST(services_user_file_extends_and_overrides) {
  char dir[] = "/tmp/dp-services-XXXXXX";
  ASSERT_NOT_NULL(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/services.tsv", dir);
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs("relay.example.net\tOur relay\tforwarder\n"
        "sendgrid.net\tSendGrid (our account)\tesp\tCNAME s1._domainkey.{domain}\n",
        f);
  fclose(f);
  char err[256] = "";
  ASSERT_OK(dp__query_services_init(path, err, sizeof err));
  const dp_services_t *m = dp__query_services();
  ASSERT_STR_EQ(dp__query_services_match(m, "relay.example.net")->name, "Our relay");
  ASSERT_STR_EQ(dp__query_services_match(m, "sendgrid.net")->name, "SendGrid (our account)");
  ASSERT_STR_EQ(dp__query_services_match(m, "amazonses.com")->name, "Amazon SES");
  /* a broken user file is an error naming the line; the built-in map stays */
  f = fopen(path, "w");
  fputs("ok.example\tOK\tesp\nbroken\n", f);
  fclose(f);
  ASSERT_EQ(dp__query_services_init(path, err, sizeof err), DP_EUSAGE);
  ASSERT_CONTAINS(err, "services.tsv:2: expected TAB-separated");
  ASSERT_STR_EQ(dp__query_services_match(dp__query_services(), "sendgrid.net")->name, "SendGrid");
  ASSERT_TRUE(dp__query_services_match(dp__query_services(), "ok.example") == NULL);
  /* a named file that does not exist is an error; the default one may be missing */
  unlink(path);
  ASSERT_EQ(dp__query_services_init(path, err, sizeof err), DP_EUSAGE);
  ASSERT_CONTAINS(err, "services.tsv: No such file");
  setenv("XDG_CONFIG_HOME", dir, 1);
  ASSERT_OK(dp__query_services_init(NULL, err, sizeof err));
  /* "services =" in the config file names the file and the setting, not
   * just ": No such file or directory" */
  snprintf(path, sizeof path, "%s/config", dir);
  f = fopen(path, "w");
  fputs("services =\n", f);
  fclose(f);
  ASSERT_OK(dp_config_load(path, err, sizeof err));
  ASSERT_EQ(dp__query_services_init(NULL, err, sizeof err), DP_EUSAGE);
  ASSERT_CONTAINS(err, "/config: the setting 'services' names no file");
  dp_config_free();
  unlink(path);
  rmdir(dir);
  dp__query_services_set(NULL);
}

TEST(services_expand_placeholder) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  ASSERT_OK(
      dp__query_services_expand(&b, "CNAME s1._domainkey.{domain} and em.{domain}{", "ex.org"));
  ASSERT_STR_EQ(b.data, "CNAME s1._domainkey.ex.org and em.ex.org{");
  dp_buf_free(&b);
}
