/* SPDX-License-Identifier: MIT */
/* tests/ingest/test_src_imap.c - the IMAP source's pure parts: URL checks
 * (no password in the URL, STARTTLS required off loopback), IMAP response
 * parsing (SEARCH, STATUS, LIST, CAPABILITY, IDLE), folder quoting, options,
 * the committed-UID rule and the poll interval. The server side is
 * tests/e2e/imap_dovecot.sh. */
#include "../test.h"

#include "../../ingest/src_imap.c"

/* Parse url into a fresh struct imap; errors go to a temp file. */
static int parse(struct imap *m, dp_imap_opts_t *io, const char *url) {
  memset(m, 0, sizeof *m);
  m->io = io;
  m->err = tmpfile();
  int rc = parse_url(m, url);
  fclose(m->err);
  return rc;
}

static void unparse(struct imap *m) {
  free(m->base_url);
  free(m->mbox_url);
  free(m->mailbox);
  free(m->name);
  free(m->user);
}

TEST(imap_url_parts) {
  dp_imap_opts_t io;
  memset(&io, 0, sizeof io);
  struct imap m;
  ASSERT_OK(parse(&m, &io, "imaps://dmarc%40example.com@mail.example.com/Reports%20In/"));
  ASSERT_STR_EQ(m.user, "dmarc@example.com");
  ASSERT_STR_EQ(m.base_url, "imaps://mail.example.com:993");
  ASSERT_STR_EQ(m.mbox_url, "imaps://mail.example.com:993/Reports%20In");
  ASSERT_STR_EQ(m.mailbox, "Reports In");
  ASSERT_STR_EQ(m.name, "imaps://dmarc@example.com@mail.example.com:993/Reports In");
  ASSERT_FALSE(m.require_tls);
  unparse(&m);
  ASSERT_OK(parse(&m, &io, "imap://u@127.0.0.1:1430"));
  ASSERT_STR_EQ(m.mailbox, "INBOX");
  ASSERT_STR_EQ(m.mbox_url, "imap://127.0.0.1:1430/INBOX");
  ASSERT_FALSE(m.require_tls); /* loopback: plaintext allowed */
  unparse(&m);
  ASSERT_OK(parse(&m, &io, "imap://u@mail.example.com/INBOX"));
  ASSERT_TRUE(m.require_tls); /* elsewhere: STARTTLS or nothing */
  unparse(&m);
  io.insecure = true;
  ASSERT_OK(parse(&m, &io, "imap://u@mail.example.com/INBOX"));
  ASSERT_FALSE(m.require_tls);
  unparse(&m);
}

TEST(imap_url_refused) {
  dp_imap_opts_t io;
  memset(&io, 0, sizeof io);
  struct imap m;
  ASSERT_EQ(parse(&m, &io, "imaps://u:secret@host/INBOX"), 2);
  unparse(&m);
  ASSERT_EQ(parse(&m, &io, "imaps://host/INBOX"), 2); /* no user */
  unparse(&m);
  ASSERT_EQ(parse(&m, &io, "imaps://u@host/INBOX/;UID=3"), 2);
  unparse(&m);
  ASSERT_EQ(parse(&m, &io, "imaps://u;AUTH=PLAIN@host/INBOX"), 2);
  unparse(&m);
  ASSERT_EQ(parse(&m, &io, "imaps://u@host/INBOX?x"), 2);
  unparse(&m);
}

TEST(imap_loopback) {
  ASSERT_TRUE(host_is_loopback("127.0.0.1"));
  ASSERT_TRUE(host_is_loopback("127.3.2.1"));
  ASSERT_TRUE(host_is_loopback("[::1]"));
  ASSERT_TRUE(host_is_loopback("localhost"));
  ASSERT_FALSE(host_is_loopback("128.0.0.1"));
  ASSERT_FALSE(host_is_loopback("[::2]"));
  ASSERT_FALSE(host_is_loopback("localhost.example.com"));
}

TEST(imap_search) {
  uint32_t *uids = NULL;
  size_t n = 0;
  ASSERT_OK(parse_search("* SEARCH 9 3 4 12\r\n* 2 EXISTS\r\n", 3, &uids, &n));
  ASSERT_EQ(n, 3);
  ASSERT_EQ(uids[0], 4);
  ASSERT_EQ(uids[1], 9);
  ASSERT_EQ(uids[2], 12);
  /* "UID n:*" always matches the last message, even below n */
  ASSERT_OK(parse_search("* SEARCH 7\r\n", 7, &uids, &n));
  ASSERT_EQ(n, 0);
  ASSERT_OK(parse_search("* SEARCH\r\n", 0, &uids, &n));
  ASSERT_EQ(n, 0);
  ASSERT_OK(parse_search("* SEARCH 1 2\r\n* SEARCH 5\r\n", 0, &uids, &n));
  ASSERT_EQ(n, 3);
  ASSERT_EQ(uids[2], 5);
  free(uids);
}

TEST(imap_responses) {
  ASSERT_U64_EQ(parse_uidvalidity("* STATUS INBOX (UIDVALIDITY 1795688696)\r\n"), 1795688696u);
  ASSERT_U64_EQ(parse_uidvalidity("* STATUS INBOX (MESSAGES 2)\r\n"), 0);
  ASSERT_EQ(parse_delim("* LIST (\\Noselect) \"/\" \"\"\r\n"), '/');
  ASSERT_EQ(parse_delim("* LIST (\\Noselect) \".\" \"\"\r\n"), '.');
  ASSERT_EQ(parse_delim("* LIST (\\Noselect) \"\\\\\" \"\"\r\n"), '\\');
  ASSERT_EQ(parse_delim("* LIST (\\Noselect) NIL \"\"\r\n"), 0);
  const char *caps = "* CAPABILITY IMAP4rev1 UIDPLUS MOVE LITERAL+\r\n";
  ASSERT_TRUE(has_cap(caps, "MOVE"));
  ASSERT_TRUE(has_cap(caps, "UIDPLUS"));
  ASSERT_FALSE(has_cap("* CAPABILITY IMAP4rev1 XMOVE MOVEX\r\n", "MOVE"));
}

TEST(imap_quote_folder) {
  struct imap m;
  memset(&m, 0, sizeof m);
  m.delim = '.';
  char *q = quote_folder(&m, "Archive/DMARC \"x\\y\"");
  ASSERT_STR_EQ(q, "\"Archive.DMARC \\\"x\\\\y\\\"\"");
  free(q);
  m.delim = 0; /* unknown: names are sent as given */
  q = quote_folder(&m, "Archive/DMARC");
  ASSERT_STR_EQ(q, "\"Archive/DMARC\"");
  free(q);
}

TEST(imap_options) {
  dp_imap_opts_t o;
  memset(&o, 0, sizeof o);
  FILE *save = stderr;
  stderr = tmpfile();
  ASSERT_OK(dp__imap_setopt(&o, DP_IMAP_OPT_POLL, "2.5"));
  ASSERT_U64_EQ(o.poll_ms, 2500);
  ASSERT_EQ(dp__imap_setopt(&o, DP_IMAP_OPT_POLL, "soon"), 2);
  ASSERT_EQ(dp__imap_setopt(&o, DP_IMAP_OPT_ARCHIVE, "a\nb"), 2);
  ASSERT_OK(dp__imap_setopt(&o, DP_IMAP_OPT_ARCHIVE, ""));
  ASSERT_STR_EQ(o.archive, "");
  ASSERT_OK(dp__imap_setopt(&o, DP_IMAP_OPT_INSECURE, NULL));
  ASSERT_TRUE(o.insecure);
  fclose(stderr);
  stderr = save;
  ASSERT_TRUE(dp__imap_is_url("imaps://u@h/INBOX"));
  ASSERT_TRUE(dp__imap_is_url("imap://u@h/INBOX"));
  ASSERT_FALSE(dp__imap_is_url("/var/mail/imap://x"));
  ASSERT_FALSE(dp__imap_is_url("pop3://u@h"));
}

/* The saved position never passes a message still waiting for its commit. */
TEST(imap_safe_uid) {
  struct imap m;
  memset(&m, 0, sizeof m);
  struct out_msg out[2] = {{7, 5, NULL}, {4, 5, NULL}};
  m.validity = 5;
  m.fetched_upto = 9;
  ASSERT_EQ(safe_uid(&m), 9);
  m.out = out;
  m.n_out = 2;
  ASSERT_EQ(safe_uid(&m), 3);
  out[1].validity = 4; /* from before a UIDVALIDITY change: not ours any more */
  ASSERT_EQ(safe_uid(&m), 6);
}

TEST(imap_secret_file) {
  char path[] = "/tmp/dp-imap-secret.XXXXXX";
  int fd = mkstemp(path);
  ASSERT_TRUE(fd >= 0);
  ASSERT_EQ(write(fd, "tok en \r\nsecond\n", 16), 16);
  close(fd);
  char err[256] = "";
  char *s = read_secret_file(path, err, sizeof err);
  ASSERT_STR_EQ(s, "tok en");
  wipe(s);
  unlink(path);
  ASSERT_TRUE(read_secret_file(path, err, sizeof err) == NULL);
  ASSERT_CONTAINS(err, "cannot read");
  s = run_token_cmd("printf 'abc\\ndef\\n'", err, sizeof err);
  ASSERT_STR_EQ(s, "abc");
  wipe(s);
  ASSERT_TRUE(run_token_cmd("exit 3", err, sizeof err) == NULL);
  ASSERT_CONTAINS(err, "failed");
}

/* IDLE: which response lines announce new mail, end a command or the
 * connection; only the tag of the command in flight counts. */
TEST(imap_idle_classify) {
  ASSERT_EQ(idle_classify("+ idling", "dp4"), IR_CONT);
  ASSERT_EQ(idle_classify("* 10 EXISTS", "dp4"), IR_NEWMAIL);
  ASSERT_EQ(idle_classify("* 7 RECENT", "dp4"), IR_NEWMAIL);
  ASSERT_EQ(idle_classify("* 3 exists", "dp4"), IR_NEWMAIL);
  ASSERT_EQ(idle_classify("* 0 RECENT", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("* 0 EXISTS", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("* 4 EXPUNGE", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("* 5 FETCH (FLAGS (\\Seen))", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("* 5 EXISTSX", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("* OK Still here", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("* BYE Server shutting down.", "dp4"), IR_BYE);
  ASSERT_EQ(idle_classify("* BYE", "dp4"), IR_BYE);
  ASSERT_EQ(idle_classify("* BYEBYE", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("dp4 OK Idle completed (0.001 + 0.000 secs).", "dp4"), IR_OK);
  ASSERT_EQ(idle_classify("dp4 ok", "dp4"), IR_OK);
  ASSERT_EQ(idle_classify("dp4 NO [ALERT] no", "dp4"), IR_FAIL);
  ASSERT_EQ(idle_classify("dp4 BAD Expected DONE.", "dp4"), IR_FAIL);
  ASSERT_EQ(idle_classify("dp4 OKAY", "dp4"), IR_FAIL);
  /* another command's tag, or a longer one sharing the prefix */
  ASSERT_EQ(idle_classify("dp3 OK done", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("dp41 OK done", "dp4"), IR_OTHER);
  ASSERT_EQ(idle_classify("A001 OK done", "dp4"), IR_OTHER);
}

/* CAPABILITY and LIST lines as the IDLE thread collects them. */
TEST(imap_idle_seen) {
  bool idle = false;
  seen_caps("* CAPABILITY IMAP4rev1 SASL-IR IDLE SORT", &idle);
  ASSERT_TRUE(idle);
  idle = false;
  seen_caps("* CAPABILITY IMAP4rev1 XIDLE IDLEX", &idle);
  ASSERT_FALSE(idle);
  seen_caps("* OK [CAPABILITY IMAP4rev1 IDLE] ready", &idle); /* only the untagged answer */
  ASSERT_FALSE(idle);
  seen_caps("* CAPABILITY IMAP4rev1 IDLE", &idle);
  ASSERT_TRUE(idle);
  char delim = 0;
  seen_list("* LIST (\\Noselect) \".\" \"\"", &delim);
  ASSERT_EQ(delim, '.');
  seen_list("* OK whatever", &delim);
  ASSERT_EQ(delim, '.');
  char *q = quote_folder_delim('.', "Archive/DMARC");
  ASSERT_STR_EQ(q, "\"Archive.DMARC\"");
  free(q);
}

/* While IDLE works the poll timer is a slow safety net. */
TEST(imap_idle_poll_interval) {
  dp_imap_opts_t io;
  memset(&io, 0, sizeof io);
  io.poll_ms = 60000;
  struct imap m;
  memset(&m, 0, sizeof m);
  m.io = &io;
  m.idle_seen = IDLE_UNKNOWN;
  ASSERT_U64_EQ(poll_ms(&m), 60000);
  m.idle_seen = IDLE_ACTIVE;
  ASSERT_U64_EQ(poll_ms(&m), 300000);
  m.idle_seen = IDLE_DOWN;
  ASSERT_U64_EQ(poll_ms(&m), 60000);
  m.idle_seen = IDLE_UNSUPPORTED;
  ASSERT_U64_EQ(poll_ms(&m), 60000);
}
