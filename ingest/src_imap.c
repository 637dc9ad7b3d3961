/* SPDX-License-Identifier: MIT */
/* ingest/src_imap.c - the IMAP/IMAPS source on libcurl. Blocking IMAP work
 * (login, STATUS, UID SEARCH, fetch, MOVE) and the imap_state table run one
 * step at a time in the libuv thread pool; fetched messages are spooled to a
 * private directory and handed to the pipeline on the loop thread; a message
 * is moved (and its spool file removed) only once the pipeline reports it
 * committed. `watch` also keeps a second connection in IDLE (RFC 2177) in a
 * thread of its own when the server offers it: libcurl logs it in
 * (CONNECT_ONLY), IDLE is spoken by hand, and new mail starts a fetch cycle
 * at once; otherwise, and as a safety net, it polls. */
#include "src_imap_int.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "catch_up_sched_int.h"
#include "core/core.h"
#include "parse/parse.h"
#include "store/store.h"

/* Messages fetched per step, and how many may wait in the pipeline. */
#define FETCH_STEP 8 /* at most 32: seen_before() keeps a bit per message */
#define FETCH_AHEAD 32
/* Reconnect backoff (ms): doubling from the first to the last. */
#define BACKOFF_FIRST 1000
#define BACKOFF_MAX 60000
/* One-shot runs give up after this many failed attempts in a row. */
#define ONESHOT_ATTEMPTS 4
/* Command responses (SEARCH of a big folder) are capped. */
#define RESPONSE_CAP (64u << 20)

enum op { OP_NONE, OP_SESSION, OP_FETCH, OP_MOVE };

/* A message handed to the pipeline, waiting for its commit. */
struct out_msg {
  uint32_t uid;
  uint64_t validity;
  char *path; /* spool file, owned */
};

/* A committed message waiting to be moved (folder NULL: left in place). */
struct move_msg {
  uint32_t uid;
  uint64_t validity;
  char *path;
  const char *folder; /* borrowed from the options */
};

struct imap {
  uv_loop_t loop;
  const dp_imap_opts_t *io;
  const dp_pipeline_opts_t *po;
  dp_pipeline_opts_t popts; /* po plus our input_done */
  dp_pipeline_stats_t *st;
  dp_pipeline_t *pipeline;
  FILE *err;
  /* the mailbox, parsed once */
  char *base_url;  /* scheme://host:port */
  char *mbox_url;  /* base_url/encoded-folder */
  char *mailbox;   /* decoded folder name */
  char *name;      /* scheme://user@host:port/Folder: messages and imap_state key */
  char *user;
  bool require_tls;
  char *spool;     /* private spool directory, mode 0700 */
  /* used only inside the current thread-pool step */
  CURL *curl;
  PGconn *db;
  char curl_err[CURL_ERROR_SIZE];
  char delim;      /* the server's hierarchy delimiter, 0 unknown */
  bool cap_move, cap_uidplus;
  /* read position */
  bool state_loaded;
  uint64_t validity;     /* UIDVALIDITY of the folder as last seen */
  uint32_t saved_uid;    /* last_uid in imap_state */
  bool state_dirty;      /* imap_state lacks this UIDVALIDITY: save even at UID 0 */
  uint32_t fetched_upto; /* highest UID fetched (or skipped) under validity */
  uint32_t *todo;        /* UIDs found by the last search, ascending */
  size_t n_todo, next_todo;
  struct out_msg *out;
  size_t n_out, cap_out;
  struct move_msg *moves;
  size_t n_moves, cap_moves;
  uint64_t skipped_seen; /* stats->skipped_messages at the last input_done */
  /* the step in the thread pool */
  uv_work_t req;
  enum op op;
  int op_rc;             /* 0, or DP_E* with op_err */
  char op_err[768];
  bool op_reset;         /* OP_SESSION: UIDVALIDITY changed, positions restarted */
  bool op_fatal;         /* retrying cannot help (login refused, no such folder) */
  uint32_t op_uids[FETCH_STEP];
  char *op_paths[FETCH_STEP]; /* NULL: vanished from the server */
  size_t op_n, op_done;
  struct move_msg *op_moves;
  size_t op_n_moves;
  uint32_t op_save_uid;
  /* scheduling */
  uv_timer_t timer;
  uv_signal_t sigint, sigterm;
  bool waiting;          /* timer running (poll or backoff) */
  bool session_ok;       /* searched in this poll cycle */
  bool stopping;         /* no more fetching: finish and exit */
  bool closing, closed;  /* pipeline close asked / done */
  bool finished;
  bool failed;           /* fatal IMAP error: exit 2 */
  bool give_up;          /* stopping and the server is gone: moves are dropped */
  bool in_outage;
  unsigned attempts;
  uint64_t backoff_ms;
  uint64_t fetched, moved, move_failed, left;
  /* IDLE (watch only): the thread owns its connection; the rest is shared */
  uv_thread_t idle_thread;
  bool idle_started;
  uv_async_t idle_async;   /* the thread wakes the loop: state or news */
  int idle_pipe[2];        /* written once to stop the thread */
  uv_mutex_t idle_mu;      /* guards idle_fd against close and reuse */
  curl_socket_t idle_fd;   /* the IDLE connection's socket, or CURL_SOCKET_BAD */
  atomic_bool idle_stop;
  atomic_int idle_state;   /* enum idle_state */
  atomic_bool idle_news;   /* new mail signalled, not yet seen by the loop */
  int idle_seen;           /* loop thread: idle_state last acted on */
  bool idle_kick;          /* loop thread: run a fetch cycle as soon as possible */
  /* watch into PostgreSQL: the aggregates are folded as `watch DIR` does */
  bool catch_up_on;
  dp__catch_up_sched_t catch_up;
};

static void kick(struct imap *m);

/* ------------------------------------------------------------------------ */
/* Options */

static int parse_seconds(const char *s, uint64_t *ms) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0.05 || v > 86400) return -1;
  *ms = (uint64_t)(v * 1000);
  return 0;
}

/* Folder names go into quoted IMAP strings: no control characters. */
static bool folder_ok(const char *f) {
  for (const unsigned char *p = (const unsigned char *)f; *p; p++)
    if (*p < 0x20 || *p == 0x7f) return false;
  return true;
}

int dp__imap_setopt(dp_imap_opts_t *o, int code, const char *arg) {
  switch (code) {
  case DP_IMAP_OPT_PASSWORD_FILE: o->password_file = arg; break;
  case DP_IMAP_OPT_TOKEN_FILE: o->oauth2_token_file = arg; break;
  case DP_IMAP_OPT_TOKEN_CMD: o->oauth2_token_cmd = arg; break;
  case DP_IMAP_OPT_ARCHIVE: o->archive = arg; break;
  case DP_IMAP_OPT_REJECTED: o->rejected = arg; break;
  case DP_IMAP_OPT_NONREPORT: o->nonreport = arg; break;
  case DP_IMAP_OPT_INSECURE: o->insecure = true; break;
  case DP_IMAP_OPT_POLL:
    if (parse_seconds(arg, &o->poll_ms)) {
      fprintf(stderr, "dmarcpipe: invalid number of seconds '%s' for --imap-poll\n", arg);
      return 2;
    }
    break;
  default: return 2;
  }
  if ((code == DP_IMAP_OPT_ARCHIVE || code == DP_IMAP_OPT_REJECTED ||
       code == DP_IMAP_OPT_NONREPORT) && !folder_ok(arg)) {
    fprintf(stderr, "dmarcpipe: folder name with control characters: '%s'\n", arg);
    return 2;
  }
  return 0;
}

int dp__imap_opts_default(dp_imap_opts_t *o) {
  memset(o, 0, sizeof *o);
  o->archive = "Archive/DMARC";
  o->poll_ms = 60000;
  /* config file settings are named like the long options */
  static const struct { const char *key; int code; } keys[] = {
    {"imap-password-file", DP_IMAP_OPT_PASSWORD_FILE},
    {"imap-oauth2-token-file", DP_IMAP_OPT_TOKEN_FILE},
    {"imap-oauth2-token-cmd", DP_IMAP_OPT_TOKEN_CMD},
    {"imap-archive", DP_IMAP_OPT_ARCHIVE},
    {"imap-rejected", DP_IMAP_OPT_REJECTED},
    {"imap-nonreport", DP_IMAP_OPT_NONREPORT},
    {"imap-poll", DP_IMAP_OPT_POLL},
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    const char *v = dp_config_get(keys[i].key);
    if (v && dp__imap_setopt(o, keys[i].code, v)) return 2;
  }
  const char *v = dp_config_get("insecure-imap");
  if (v && (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))) o->insecure = true;
  return 0;
}

bool dp__imap_is_url(const char *arg) {
  return !strncmp(arg, "imap://", 7) || !strncmp(arg, "imaps://", 8);
}

/* ------------------------------------------------------------------------ */
/* The mailbox URL */

static bool host_is_loopback(const char *host) {
  char h[256];
  size_t n = strlen(host);
  if (n >= sizeof h) return false;
  if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
    memcpy(h, host + 1, n - 2);
    h[n - 2] = '\0';
  } else {
    memcpy(h, host, n + 1);
  }
  if (!strcmp(h, "localhost")) return true;
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, h, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  if (inet_pton(AF_INET6, h, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dup_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = malloc((size_t)n + 1);
  if (!s) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

/* Split io->url into the pieces curl and the messages need. 0, or 2 after
 * printing why the URL is not usable. */
static int parse_url(struct imap *m, const char *url) {
  CURLU *u = curl_url();
  char *scheme = NULL, *user = NULL, *pass = NULL, *opts = NULL, *host = NULL, *port = NULL,
       *path = NULL, *dpath = NULL, *query = NULL, *frag = NULL;
  int ret = 2;
  const char *why = NULL;
  if (!u || curl_url_set(u, CURLUPART_URL, url, 0)) {
    why = "not a valid URL";
    goto out;
  }
  curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
  curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
  curl_url_get(u, CURLUPART_PASSWORD, &pass, 0);
  curl_url_get(u, CURLUPART_OPTIONS, &opts, 0);
  curl_url_get(u, CURLUPART_HOST, &host, 0);
  curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  curl_url_get(u, CURLUPART_PATH, &path, 0);
  curl_url_get(u, CURLUPART_PATH, &dpath, CURLU_URLDECODE);
  curl_url_get(u, CURLUPART_QUERY, &query, 0);
  curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0);
  if (pass) {
    /* a password in the URL shows in `ps` and shell history */
    why = "a password in the URL is not accepted: use $DMARCPIPE_IMAP_PASSWORD or "
          "--imap-password-file";
    goto out;
  }
  if (opts) {
    why = "login options in the URL are not supported (for OAuth2 use --imap-oauth2-token-file "
          "or --imap-oauth2-token-cmd)";
    goto out;
  }
  if (!user || !*user) {
    why = "no user name (imaps://USER@host/Folder)";
    goto out;
  }
  if (!host || !*host || !scheme || !port) {
    why = "no host";
    goto out;
  }
  if (query || frag || (path && strchr(path, ';'))) {
    why = "the URL names a folder only (imaps://user@host/Folder), no ;UID=, ? or #";
    goto out;
  }
  /* the folder: the path without its slashes at either end; INBOX when empty */
  const char *p = path ? path : "";
  while (*p == '/') p++;
  size_t plen = strlen(p);
  while (plen && p[plen - 1] == '/') plen--;
  const char *dp = dpath ? dpath : "";
  while (*dp == '/') dp++;
  size_t dlen = strlen(dp);
  while (dlen && dp[dlen - 1] == '/') dlen--;
  if (!plen) p = "INBOX", plen = 5, dp = "INBOX", dlen = 5;
  m->mailbox = dup_printf("%.*s", (int)dlen, dp);
  if (!folder_ok(m->mailbox)) {
    why = "folder name with control characters";
    goto out;
  }
  bool loop = host_is_loopback(host);
  bool tls = !strcmp(scheme, "imaps");
  if (!tls && !loop && !m->io->insecure) {
    /* plain imap:// elsewhere than loopback: STARTTLS, or refuse to log in */
    m->require_tls = true;
  }
  m->user = strdup(user);
  m->base_url = dup_printf("%s://%s:%s", scheme, host, port);
  m->mbox_url = dup_printf("%s://%s:%s/%.*s", scheme, host, port, (int)plen, p);
  m->name = dup_printf("%s://%s@%s:%s/%s", scheme, user, host, port, m->mailbox);
  if (!m->user || !m->base_url || !m->mbox_url || !m->name) {
    why = "out of memory";
    goto out;
  }
  ret = 0;
out:
  if (why) fprintf(m->err, "dmarcpipe: %s: %s\n", url, why);
  curl_free(scheme);
  curl_free(user);
  curl_free(pass);
  curl_free(opts);
  curl_free(host);
  curl_free(port);
  curl_free(path);
  curl_free(dpath);
  curl_free(query);
  curl_free(frag);
  curl_url_cleanup(u);
  return ret;
}

/* ------------------------------------------------------------------------ */
/* Secrets (worker thread). Never printed; wiped after curl copied them. */

static void wipe(char *s) {
  if (s) explicit_bzero(s, strlen(s));
  free(s);
}

/* The first line of f, trimmed. Caller owns result; wipe() it. */
static char *first_line(FILE *f) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, f);
  if (n < 0) {
    free(line);
    return NULL;
  }
  while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                   line[n - 1] == '\t'))
    line[--n] = '\0';
  if (n == 0) {
    free(line);
    return NULL;
  }
  return line;
}

static char *read_secret_file(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "re");
  if (!f) {
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return NULL;
  }
  char *s = first_line(f);
  fclose(f);
  if (!s) snprintf(err, errlen, "%s: empty", path);
  return s;
}

static char *run_token_cmd(const char *cmd, char *err, size_t errlen) {
  fflush(NULL);
  FILE *f = popen(cmd, "r");
  if (!f) {
    snprintf(err, errlen, "cannot run the token command: %s", strerror(errno));
    return NULL;
  }
  char *s = first_line(f);
  /* drain the rest so that the command does not die of SIGPIPE */
  char sink[4096];
  while (fread(sink, 1, sizeof sink, f) > 0) {
  }
  explicit_bzero(sink, sizeof sink);
  int status = pclose(f);
  if (status != 0) {
    snprintf(err, errlen, "the token command failed (status %d)", status);
    wipe(s);
    return NULL;
  }
  if (!s) snprintf(err, errlen, "the token command printed nothing");
  return s;
}

/* Give curl handle c this session's credentials (read anew each time, so a
 * rotated token is used). Thread-safe. 0 or DP_EIO with err. */
static int set_credentials(const struct imap *m, CURL *c, char *err, size_t errlen) {
  const dp_imap_opts_t *io = m->io;
  char *secret = NULL;
  bool oauth = io->oauth2_token_file || io->oauth2_token_cmd;
  if (io->oauth2_token_cmd) secret = run_token_cmd(io->oauth2_token_cmd, err, errlen);
  else if (io->oauth2_token_file) secret = read_secret_file(io->oauth2_token_file, err, errlen);
  else if (io->password_file) secret = read_secret_file(io->password_file, err, errlen);
  else if (getenv("DMARCPIPE_IMAP_PASSWORD") && *getenv("DMARCPIPE_IMAP_PASSWORD"))
    secret = strdup(getenv("DMARCPIPE_IMAP_PASSWORD"));
  else
    snprintf(err, errlen, "no password: set DMARCPIPE_IMAP_PASSWORD or --imap-password-file "
                          "(or --imap-oauth2-token-file/-cmd)");
  if (!secret) return DP_EIO;
  curl_easy_setopt(c, CURLOPT_USERNAME, m->user);
  if (oauth) {
    curl_easy_setopt(c, CURLOPT_PASSWORD, NULL);
    curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, secret);
    curl_easy_setopt(c, CURLOPT_LOGIN_OPTIONS, "AUTH=XOAUTH2");
  } else {
    curl_easy_setopt(c, CURLOPT_PASSWORD, secret);
  }
  wipe(secret);
  return 0;
}

/* ------------------------------------------------------------------------ */
/* IMAP commands (worker thread) */

static size_t to_buf(char *ptr, size_t size, size_t n, void *ud) {
  return dp_buf_append(ud, ptr, size * n) ? 0 : size * n;
}

/* Run one IMAP command: cmd NULL fetches url. The untagged responses land in
 * out (when not NULL). Returns the CURLcode. */
static CURLcode imap_cmd(struct imap *m, const char *url, const char *cmd, dp_buf_t *out) {
  dp_buf_t discard;
  dp_buf_init(&discard, RESPONSE_CAP);
  m->curl_err[0] = '\0';
  curl_easy_setopt(m->curl, CURLOPT_URL, url);
  curl_easy_setopt(m->curl, CURLOPT_CUSTOMREQUEST, cmd);
  curl_easy_setopt(m->curl, CURLOPT_WRITEFUNCTION, to_buf);
  curl_easy_setopt(m->curl, CURLOPT_WRITEDATA, out ? out : &discard);
  CURLcode rc = curl_easy_perform(m->curl);
  dp_buf_free(&discard);
  return rc;
}

static void curl_why(struct imap *m, CURLcode rc, const char *what) {
  snprintf(m->op_err, sizeof m->op_err, "%s: %s", what,
           m->curl_err[0] ? m->curl_err : curl_easy_strerror(rc));
}

/* A folder as an IMAP quoted string, '/' turned into delim (0: kept). */
static char *quote_folder_delim(char delim, const char *f) {
  dp_buf_t b;
  dp_buf_init(&b, 0);
  dp_buf_putc(&b, '"');
  for (const char *p = f; *p; p++) {
    char c = *p == '/' && delim ? delim : *p;
    if (c == '"' || c == '\\') dp_buf_putc(&b, '\\');
    dp_buf_putc(&b, c);
  }
  dp_buf_putc(&b, '"');
  return dp_buf_steal(&b, NULL);
}

/* A folder as an IMAP quoted string, '/' turned into the server's delimiter. */
static char *quote_folder(const struct imap *m, const char *f) {
  return quote_folder_delim(m->delim, f);
}

/* The numbers after "* SEARCH" (several lines are allowed), ascending. */
static int parse_search(const char *resp, uint32_t above, uint32_t **uids, size_t *n) {
  size_t cap = 0;
  *n = 0;
  const char *p = resp;
  while ((p = strstr(p, "* SEARCH"))) {
    p += 8;
    while (*p && *p != '\r' && *p != '\n') {
      while (*p == ' ') p++;
      char *end;
      unsigned long v = strtoul(p, &end, 10);
      if (end == p) break;
      p = end;
      if (v <= above || v > UINT32_MAX) continue;
      if (*n == cap) {
        size_t nc = cap ? cap * 2 : 256;
        uint32_t *nv = realloc(*uids, nc * sizeof *nv);
        if (!nv) return DP_ENOMEM;
        *uids = nv;
        cap = nc;
      }
      (*uids)[(*n)++] = (uint32_t)v;
    }
  }
  /* servers answer in ascending order; keep it so even if one does not */
  for (size_t i = 1; i < *n; i++) {
    uint32_t v = (*uids)[i];
    size_t j = i;
    while (j && (*uids)[j - 1] > v) {
      (*uids)[j] = (*uids)[j - 1];
      j--;
    }
    (*uids)[j] = v;
  }
  return 0;
}

/* UIDVALIDITY from a STATUS response; 0 when absent. */
static uint64_t parse_uidvalidity(const char *resp) {
  const char *p = strstr(resp, "UIDVALIDITY ");
  return p ? strtoull(p + 12, NULL, 10) : 0;
}

/* The delimiter from `* LIST (...) "/" ""`; 0 for NIL or no answer. */
static char parse_delim(const char *resp) {
  const char *p = strstr(resp, "* LIST ");
  if (!p) return 0;
  p = strchr(p, ')');
  if (!p) return 0;
  p++;
  while (*p == ' ') p++;
  if (p[0] == '"' && p[1] == '\\' && p[2] && p[3] == '"') return p[2];
  if (p[0] == '"' && p[1] && p[2] == '"') return p[1];
  return 0;
}

static bool has_cap(const char *resp, const char *cap) {
  size_t n = strlen(cap);
  for (const char *p = strstr(resp, cap); p; p = strstr(p + 1, cap))
    if (p > resp && p[-1] == ' ' && (p[n] == ' ' || p[n] == '\r' || p[n] == '\n' || !p[n]))
      return true;
  return false;
}

/* ------------------------------------------------------------------------ */
/* Steps (worker thread) */

static int db_ready(struct imap *m) {
  if (m->db && PQstatus(m->db) == CONNECTION_OK) return 0;
  if (m->db) PQfinish(m->db);
  char err[512];
  m->db = dp_store_connect(m->po->conninfo, err, sizeof err);
  if (!m->db) {
    snprintf(m->op_err, sizeof m->op_err, "imap_state: %s", err);
    return DP_EPGCONN;
  }
  return 0;
}

/* Log in (or reuse the connection), read the folder's UIDVALIDITY and the
 * saved position, and search for the UIDs past it. */
static void step_session(struct imap *m) {
  m->op_reset = false;
  int rc = set_credentials(m, m->curl, m->op_err, sizeof m->op_err);
  if (rc) {
    m->op_rc = rc;
    m->op_fatal = true;
    return;
  }
  dp_buf_t r;
  dp_buf_init(&r, RESPONSE_CAP);
  CURLcode cc = imap_cmd(m, m->base_url, "CAPABILITY", &r);
  if (cc) {
    curl_why(m, cc, "connecting or logging in");
    m->op_fatal = cc == CURLE_LOGIN_DENIED || cc == CURLE_REMOTE_ACCESS_DENIED;
    goto fail;
  }
  m->cap_move = has_cap(r.data ? r.data : "", "MOVE");
  m->cap_uidplus = has_cap(r.data ? r.data : "", "UIDPLUS");
  dp_buf_reset(&r);
  if (!m->delim) {
    cc = imap_cmd(m, m->base_url, "LIST \"\" \"\"", &r);
    if (cc) {
      curl_why(m, cc, "LIST");
      goto fail;
    }
    m->delim = parse_delim(r.data ? r.data : "");
    dp_buf_reset(&r);
  }
  char *q = quote_folder(m, m->mailbox);
  char *cmd = q ? dup_printf("STATUS %s (UIDVALIDITY)", q) : NULL;
  free(q);
  if (!cmd) {
    m->op_rc = DP_ENOMEM;
    snprintf(m->op_err, sizeof m->op_err, "out of memory");
    dp_buf_free(&r);
    return;
  }
  cc = imap_cmd(m, m->base_url, cmd, &r);
  free(cmd);
  uint64_t validity = r.data ? parse_uidvalidity(r.data) : 0;
  if (cc || !validity) {
    m->op_fatal = cc == CURLE_QUOTE_ERROR || !cc; /* no such folder */
    if (cc) curl_why(m, cc, "STATUS");
    else snprintf(m->op_err, sizeof m->op_err, "no UIDVALIDITY for folder %s", m->mailbox);
    goto fail;
  }
  dp_buf_reset(&r);
  if (!m->state_loaded) {
    if (m->po->sink == DP_SINK_PG) {
      if ((m->op_rc = db_ready(m))) {
        dp_buf_free(&r);
        return;
      }
      int64_t v = 0, last = 0;
      bool found = false;
      char err[512];
      if (dp_store_imap_state_get(m->db, m->name, &v, &last, &found, err, sizeof err)) {
        snprintf(m->op_err, sizeof m->op_err, "%s", err);
        m->op_rc = DP_EPG;
        dp_buf_free(&r);
        return;
      }
      m->state_dirty = !found;
      if (found) {
        m->validity = (uint64_t)v;
        m->saved_uid = m->fetched_upto = last > 0 && last <= UINT32_MAX ? (uint32_t)last : 0;
      }
    }
    m->state_loaded = true;
  }
  if (m->validity && validity != m->validity) {
    /* every UID is new: read the folder again (loading is idempotent) */
    m->op_reset = true;
    m->state_dirty = true;
    m->saved_uid = m->fetched_upto = 0;
  }
  if (m->validity != validity) m->saved_uid = 0;
  m->validity = validity;
  /* a connection that has the folder selected sees mail that came since
   * only after a command syncs its view (Dovecot: SEARCH alone does not);
   * without this, mail IDLE announced would wait for the next poll */
  cc = imap_cmd(m, m->mbox_url, "NOOP", NULL);
  if (cc) {
    curl_why(m, cc, "NOOP");
    goto fail;
  }
  cmd = dup_printf("UID SEARCH UID %" PRIu32 ":*", m->fetched_upto + 1);
  cc = cmd ? imap_cmd(m, m->mbox_url, cmd, &r) : CURLE_OUT_OF_MEMORY;
  free(cmd);
  if (cc) {
    curl_why(m, cc, "UID SEARCH");
    goto fail;
  }
  m->n_todo = m->next_todo = 0;
  if (parse_search(r.data ? r.data : "", m->fetched_upto, &m->todo, &m->n_todo)) {
    m->op_rc = DP_ENOMEM;
    snprintf(m->op_err, sizeof m->op_err, "out of memory");
  }
  dp_buf_free(&r);
  return;
fail:
  m->op_rc = DP_EIO;
  dp_buf_free(&r);
}

struct spool_file {
  int fd;
  uint64_t written, cap;
  int err;
};

static size_t to_file(char *ptr, size_t size, size_t n, void *ud) {
  struct spool_file *f = ud;
  size_t len = size * n;
  /* one byte past the limit is enough for the pipeline to refuse the message
   * as too large (and record it); the rest is not worth fetching */
  size_t take = f->written + len > f->cap ? (size_t)(f->cap - f->written) : len;
  for (size_t off = 0; off < take;) {
    ssize_t w = write(f->fd, ptr + off, take - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      f->err = errno;
      return 0;
    }
    off += (size_t)w;
  }
  f->written += take;
  return take < len ? 0 : len;
}

/* Which of op_uids carry \Seen already, as a bit per index. libcurl fetches
 * with BODY[] (not BODY.PEEK[]), which marks a message read; knowing the
 * flags before lets step_fetch put them back, so a mailbox people also read
 * keeps its unread mail unread. A server that refuses the search only costs
 * the restoring (0 with *known false); a connection error is returned. */
static CURLcode seen_before(struct imap *m, unsigned *seen, bool *known) {
  char cmd[32 + FETCH_STEP * 11];
  int len = snprintf(cmd, sizeof cmd, "UID SEARCH SEEN UID ");
  for (size_t i = 0; i < m->op_n; i++)
    len += snprintf(cmd + len, sizeof cmd - (size_t)len, "%s%" PRIu32, i ? "," : "",
                    m->op_uids[i]);
  dp_buf_t r;
  dp_buf_init(&r, RESPONSE_CAP);
  *seen = 0;
  *known = false;
  CURLcode cc = imap_cmd(m, m->mbox_url, cmd, &r);
  uint32_t *uids = NULL;
  size_t n = 0;
  if (cc == CURLE_OK && parse_search(r.data ? r.data : "", 0, &uids, &n) == 0) {
    *known = true;
    for (size_t i = 0; i < m->op_n; i++)
      for (size_t j = 0; j < n; j++)
        if (uids[j] == m->op_uids[i]) *seen |= 1u << i;
  }
  free(uids);
  dp_buf_free(&r);
  return cc == CURLE_QUOTE_ERROR ? CURLE_OK : cc;
}

/* Fetch op_uids into spool files. Stops at the first network error (op_rc)
 * with op_done saying how many were handled. */
static void step_fetch(struct imap *m) {
  m->op_done = 0;
  unsigned seen;
  bool seen_known;
  CURLcode scc = seen_before(m, &seen, &seen_known);
  if (scc) {
    m->op_rc = DP_EIO;
    curl_why(m, scc, "UID SEARCH SEEN");
    return;
  }
  for (size_t i = 0; i < m->op_n; i++) {
    uint32_t uid = m->op_uids[i];
    char *path = dup_printf("%s/%s;UIDVALIDITY=%" PRIu64 ";UID=%" PRIu32 ".eml", m->spool,
                            m->mailbox, m->validity, uid);
    if (path)
      for (char *p = path + strlen(m->spool) + 1; *p; p++)
        if (*p == '/') *p = '_'; /* a folder path must not make subdirectories */
    char *url = dup_printf("%s/;UID=%" PRIu32, m->mbox_url, uid);
    int fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    if (!path || !url || fd < 0) {
      m->op_rc = DP_EIO;
      snprintf(m->op_err, sizeof m->op_err, "cannot write the spool file: %s",
               path ? strerror(errno) : "out of memory");
      if (fd >= 0) close(fd);
      free(path);
      free(url);
      return;
    }
    uint64_t max = m->po->limits.max_input_size;
    struct spool_file sf = {fd, 0, max < UINT64_MAX ? max + 1 : max, 0};
    m->curl_err[0] = '\0';
    curl_easy_setopt(m->curl, CURLOPT_URL, url);
    curl_easy_setopt(m->curl, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(m->curl, CURLOPT_WRITEFUNCTION, to_file);
    curl_easy_setopt(m->curl, CURLOPT_WRITEDATA, &sf);
    CURLcode cc = curl_easy_perform(m->curl);
    close(fd);
    free(url);
    if (cc == CURLE_WRITE_ERROR && !sf.err && sf.written == sf.cap) cc = CURLE_OK; /* too large */
    if (cc == CURLE_REMOTE_FILE_NOT_FOUND) {
      /* expunged by someone else since the search */
      unlink(path);
      free(path);
      path = NULL;
    } else if (cc) {
      unlink(path);
      free(path);
      if (sf.err) {
        m->op_rc = DP_EIO;
        snprintf(m->op_err, sizeof m->op_err, "cannot write the spool file: %s",
                 strerror(sf.err));
      } else {
        m->op_rc = DP_EIO;
        char what[64];
        snprintf(what, sizeof what, "fetching UID %" PRIu32, uid);
        curl_why(m, cc, what);
      }
      return;
    }
    if (path && seen_known && !(seen & 1u << i)) {
      /* put the unread mark back (a refusal only leaves the message read) */
      char cmd[64];
      snprintf(cmd, sizeof cmd, "UID STORE %" PRIu32 " -FLAGS.SILENT (\\Seen)", uid);
      CURLcode fc = imap_cmd(m, m->mbox_url, cmd, NULL);
      if (fc && fc != CURLE_QUOTE_ERROR) {
        unlink(path);
        free(path);
        m->op_rc = DP_EIO;
        curl_why(m, fc, "UID STORE -FLAGS (\\Seen)");
        return;
      }
    }
    m->op_paths[i] = path;
    m->op_done = i + 1;
  }
}

/* Move one message; create the folder when the server says it is missing.
 * 0, or a CURLcode. */
static CURLcode move_one(struct imap *m, uint32_t uid, const char *folder) {
  char *q = quote_folder(m, folder);
  if (!q) return CURLE_OUT_OF_MEMORY;
  char cmd[64 + 1024];
  CURLcode cc = CURLE_OK;
  for (int attempt = 0; attempt < 2; attempt++) {
    snprintf(cmd, sizeof cmd, "UID %s %" PRIu32 " %s", m->cap_move ? "MOVE" : "COPY", uid, q);
    cc = imap_cmd(m, m->mbox_url, cmd, NULL);
    if (cc != CURLE_QUOTE_ERROR || attempt) break;
    /* most likely [TRYCREATE]: the folder does not exist yet */
    snprintf(cmd, sizeof cmd, "CREATE %s", q);
    if (imap_cmd(m, m->base_url, cmd, NULL) != CURLE_OK) break;
  }
  free(q);
  if (cc || m->cap_move) return cc;
  /* no MOVE (RFC 6851): copy, flag \Deleted, expunge just this UID if the
   * server can (UIDPLUS), else every \Deleted message of the folder */
  snprintf(cmd, sizeof cmd, "UID STORE %" PRIu32 " +FLAGS.SILENT (\\Deleted)", uid);
  cc = imap_cmd(m, m->mbox_url, cmd, NULL);
  if (cc) return cc;
  if (m->cap_uidplus) snprintf(cmd, sizeof cmd, "UID EXPUNGE %" PRIu32, uid);
  else snprintf(cmd, sizeof cmd, "EXPUNGE");
  return imap_cmd(m, m->mbox_url, cmd, NULL);
}

static void step_move(struct imap *m) {
  for (size_t i = 0; i < m->op_n_moves; i++) {
    struct move_msg *mv = &m->op_moves[i];
    if (mv->folder && *mv->folder && mv->validity == m->validity) {
      CURLcode cc = move_one(m, mv->uid, mv->folder);
      if (cc && cc != CURLE_QUOTE_ERROR) {
        /* connection trouble: this one and the rest wait for the next session */
        memmove(m->op_moves, m->op_moves + i, (m->op_n_moves - i) * sizeof *mv);
        m->op_n_moves -= i;
        m->op_rc = DP_EIO;
        curl_why(m, cc, "moving");
        return;
      }
      if (cc) {
        /* the server said no: the message stays (its UID is past) */
        m->move_failed++;
        fprintf(m->err, "dmarcpipe: %s: UID %" PRIu32 " loaded, but cannot move it to %s: %s\n",
                m->name, mv->uid, mv->folder, m->curl_err[0] ? m->curl_err : curl_easy_strerror(cc));
      } else {
        m->moved++;
      }
    } else {
      m->left++;
    }
    unlink(mv->path);
    free(mv->path);
    mv->path = NULL;
  }
  if (m->po->sink == DP_SINK_PG && (m->op_save_uid > m->saved_uid || m->state_dirty)) {
    char err[512] = "";
    int rc = 0;
    /* a connection the database dropped (a restart) shows only when used:
     * one more try on a new one */
    for (int attempt = 0; attempt < 2; attempt++) {
      rc = db_ready(m);
      if (!rc) rc = dp_store_imap_state_put(m->db, m->name, (int64_t)m->validity, m->op_save_uid,
                                            err, sizeof err);
      if (!rc || !m->db || PQstatus(m->db) == CONNECTION_OK) break;
    }
    if (rc) {
      if (m->db && PQstatus(m->db) != CONNECTION_OK) {
        PQfinish(m->db);
        m->db = NULL;
      }
      /* not fatal: the messages are committed; the next save catches up */
      if (!m->op_rc) {
        m->op_rc = rc;
        if (rc != DP_EPGCONN) snprintf(m->op_err, sizeof m->op_err, "%s", err);
      }
    } else {
      m->saved_uid = m->op_save_uid;
      m->state_dirty = false;
    }
  }
  m->op_n_moves = 0;
}

static void step_work(uv_work_t *req) {
  struct imap *m = req->data;
  m->op_rc = 0;
  m->op_fatal = false;
  m->op_err[0] = '\0';
  switch (m->op) {
  case OP_SESSION: step_session(m); break;
  case OP_FETCH: step_fetch(m); break;
  case OP_MOVE: step_move(m); break;
  default: break;
  }
}

/* ------------------------------------------------------------------------ */
/* IDLE (a thread of its own). libcurl has no IDLE command, but with
 * CURLOPT_CONNECT_ONLY its connect phase does the greeting, STARTTLS and the
 * login (SASL XOAUTH2 included) and then hands over the socket: the thread
 * sends CAPABILITY, LIST, EXAMINE and IDLE itself with curl_easy_send and
 * reads the answers with curl_easy_recv. An EXISTS or RECENT wakes the loop,
 * which runs the same fetch cycle as the poll timer. */

/* RFC 2177: servers may drop an idle client after 30 minutes; renew before. */
#define IDLE_RENEW_MS (25u * 60 * 1000)
/* How long one command on the IDLE connection may take. */
#define IDLE_CMD_MS 60000
/* Response lines longer than this are skipped (they never matter here). */
#define IDLE_LINE_CAP 8192
/* While IDLE works the poll timer is only a safety net: this many times slower. */
#define IDLE_POLL_FACTOR 5

enum idle_state { IDLE_UNKNOWN, IDLE_ACTIVE, IDLE_DOWN, IDLE_UNSUPPORTED };
/* What a response line means to the IDLE thread. */
enum idle_resp { IR_OTHER, IR_CONT, IR_NEWMAIL, IR_BYE, IR_OK, IR_FAIL };
/* Results of the thread's I/O besides 0. */
enum { IDLE_R_TIMEOUT = 1, IDLE_R_STOP, IDLE_R_ERR, IDLE_R_NOIDLE };

/* The IDLE connection; used by the IDLE thread only. */
struct idle_conn {
  CURL *c;
  curl_socket_t fd;
  unsigned tag;            /* number of the last tag sent: "dp<n>" */
  char tagstr[16];
  size_t len, used;        /* bytes in buf; bytes of the line last returned */
  bool skipping;           /* dropping the rest of an over-long line */
  bool active;             /* IDLE was entered on this connection */
  char curl_err[CURL_ERROR_SIZE];
  char why[512];
  char buf[IDLE_LINE_CAP];
};

/* What one response line (CRLF removed) means; tag is the tag of the command
 * in flight. Untagged EXISTS/RECENT with a count above 0 is new mail. */
static enum idle_resp idle_classify(const char *line, const char *tag) {
  size_t tl = strlen(tag);
  if (line[0] == '+') return IR_CONT;
  if (tl && !strncmp(line, tag, tl) && line[tl] == ' ') {
    const char *r = line + tl + 1;
    return !strncasecmp(r, "OK", 2) && (r[2] == ' ' || !r[2]) ? IR_OK : IR_FAIL;
  }
  if (line[0] != '*' || line[1] != ' ') return IR_OTHER;
  const char *p = line + 2;
  if (!strncasecmp(p, "BYE", 3) && (p[3] == ' ' || !p[3])) return IR_BYE;
  if (*p < '0' || *p > '9') return IR_OTHER;
  char *end;
  unsigned long n = strtoul(p, &end, 10);
  if (*end != ' ') return IR_OTHER;
  end++;
  if ((!strncasecmp(end, "EXISTS", 6) || !strncasecmp(end, "RECENT", 6)) && !end[6])
    return n ? IR_NEWMAIL : IR_OTHER;
  return IR_OTHER;
}

/* Wait until fd is ready for events, ms passed or the thread is told to stop.
 * fd CURL_SOCKET_BAD just sleeps. 0 or IDLE_R_*. */
static int idle_wait(struct imap *m, curl_socket_t fd, short events, int ms) {
  struct pollfd p[2] = {{fd, events, 0}, {m->idle_pipe[0], POLLIN, 0}};
  int r;
  do r = poll(p, 2, ms);
  while (r < 0 && errno == EINTR && !atomic_load(&m->idle_stop));
  if (atomic_load(&m->idle_stop)) return IDLE_R_STOP;
  if (r < 0) return IDLE_R_ERR;
  return r == 0 ? IDLE_R_TIMEOUT : 0;
}

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000;
}

/* The next response line (NUL-terminated, CRLF removed) within deadline
 * (now_ms() clock). *line is borrowed; valid until the next idle_read.
 * 0 or IDLE_R_* (IDLE_R_ERR with d->why). */
static int idle_read(struct imap *m, struct idle_conn *d, uint64_t deadline, const char **line) {
  if (d->used) {
    memmove(d->buf, d->buf + d->used, d->len - d->used);
    d->len -= d->used;
    d->used = 0;
  }
  for (;;) {
    if (atomic_load(&m->idle_stop)) return IDLE_R_STOP;
    char *nl = memchr(d->buf, '\n', d->len);
    if (nl) {
      size_t n = (size_t)(nl - d->buf);
      if (d->skipping) {
        d->skipping = false;
        memmove(d->buf, nl + 1, d->len - n - 1);
        d->len -= n + 1;
        continue;
      }
      *nl = '\0';
      if (n && d->buf[n - 1] == '\r') d->buf[n - 1] = '\0';
      d->used = n + 1;
      *line = d->buf;
      return 0;
    }
    if (d->len == sizeof d->buf) {
      d->skipping = true;
      d->len = 0;
    }
    size_t got = 0;
    d->curl_err[0] = '\0';
    CURLcode cc = curl_easy_recv(d->c, d->buf + d->len, sizeof d->buf - d->len, &got);
    if (cc == CURLE_OK && got == 0) {
      snprintf(d->why, sizeof d->why, "the server closed the connection");
      return IDLE_R_ERR;
    }
    if (cc == CURLE_OK) {
      d->len += got;
      continue;
    }
    if (cc != CURLE_AGAIN) {
      snprintf(d->why, sizeof d->why, "%s",
               d->curl_err[0] ? d->curl_err : curl_easy_strerror(cc));
      return IDLE_R_ERR;
    }
    uint64_t now = now_ms();
    if (now >= deadline) return IDLE_R_TIMEOUT;
    int r = idle_wait(m, d->fd, POLLIN, deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now));
    if (r == IDLE_R_STOP || r == IDLE_R_ERR) return r;
  }
}

/* Send all of s. 0 or IDLE_R_* (IDLE_R_ERR with d->why). */
static int idle_send(struct imap *m, struct idle_conn *d, const char *s) {
  size_t len = strlen(s), off = 0;
  while (off < len) {
    size_t n = 0;
    d->curl_err[0] = '\0';
    CURLcode cc = curl_easy_send(d->c, s + off, len - off, &n);
    if (cc == CURLE_AGAIN) {
      int r = idle_wait(m, d->fd, POLLOUT, IDLE_CMD_MS);
      if (r == IDLE_R_TIMEOUT) snprintf(d->why, sizeof d->why, "the server does not read");
      if (r) return r == IDLE_R_TIMEOUT ? IDLE_R_ERR : r;
      continue;
    }
    if (cc) {
      snprintf(d->why, sizeof d->why, "%s",
               d->curl_err[0] ? d->curl_err : curl_easy_strerror(cc));
      return IDLE_R_ERR;
    }
    off += n;
  }
  return 0;
}

/* Send "dp<n> cmd" and read up to its tagged answer. Untagged lines are
 * offered to seen (when not NULL); new mail sets *news (when not NULL).
 * 0 on OK; IDLE_R_NOIDLE for a NO/BAD answer; else IDLE_R_*. */
static int idle_cmd(struct imap *m, struct idle_conn *d, const char *cmd,
                    void (*seen)(const char *line, void *ud), void *ud) {
  char *s = dup_printf("dp%u %s\r\n", ++d->tag, cmd);
  if (!s) {
    snprintf(d->why, sizeof d->why, "out of memory");
    return IDLE_R_ERR;
  }
  snprintf(d->tagstr, sizeof d->tagstr, "dp%u", d->tag);
  int r = idle_send(m, d, s);
  free(s);
  uint64_t deadline = now_ms() + IDLE_CMD_MS;
  while (!r) {
    const char *line;
    r = idle_read(m, d, deadline, &line);
    if (r == IDLE_R_TIMEOUT) {
      snprintf(d->why, sizeof d->why, "no answer to %.40s", cmd);
      r = IDLE_R_ERR;
    }
    if (r) break;
    enum idle_resp k = idle_classify(line, d->tagstr);
    if (k == IR_OK) return 0;
    if (k == IR_FAIL) {
      snprintf(d->why, sizeof d->why, "%.40s refused: %.200s", cmd, line);
      return IDLE_R_NOIDLE;
    }
    if (k == IR_BYE) {
      snprintf(d->why, sizeof d->why, "the server said %.200s", line);
      return IDLE_R_ERR;
    }
    if (seen) seen(line, ud);
  }
  return r;
}

static void seen_caps(const char *line, void *ud) {
  if (!strncasecmp(line, "* CAPABILITY ", 13) && has_cap(line, "IDLE")) *(bool *)ud = true;
}

static void seen_list(const char *line, void *ud) {
  if (!strncmp(line, "* LIST ", 7)) *(char *)ud = parse_delim(line);
}

/* libcurl opens and closes the IDLE socket through these, so that stopping
 * (loop thread) can shut down a connect or login in progress. */
static curl_socket_t idle_opensocket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
  struct imap *m = ud;
  (void)purpose;
  uv_mutex_lock(&m->idle_mu);
  curl_socket_t fd = CURL_SOCKET_BAD;
  if (!atomic_load(&m->idle_stop)) {
    fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0) fd = CURL_SOCKET_BAD;
  }
  m->idle_fd = fd;
  uv_mutex_unlock(&m->idle_mu);
  return fd;
}

static int idle_closesocket(void *ud, curl_socket_t fd) {
  struct imap *m = ud;
  uv_mutex_lock(&m->idle_mu);
  if (m->idle_fd == fd) m->idle_fd = CURL_SOCKET_BAD;
  int r = close(fd);
  uv_mutex_unlock(&m->idle_mu);
  return r;
}

static void idle_set_state(struct imap *m, enum idle_state st, bool news) {
  atomic_store(&m->idle_state, (int)st);
  if (news) atomic_store(&m->idle_news, true);
  uv_async_send(&m->idle_async);
}

/* Log in, check for IDLE, EXAMINE the folder and IDLE until an error or a
 * stop. IDLE_R_STOP, IDLE_R_NOIDLE (the server has no IDLE) or IDLE_R_ERR
 * (d->why). *down: an outage was reported; cleared (and said) on success. */
static int idle_session(struct imap *m, struct idle_conn *d, bool *down) {
  d->c = curl_easy_init();
  if (!d->c) {
    snprintf(d->why, sizeof d->why, "cannot initialise libcurl");
    return IDLE_R_ERR;
  }
  CURL *c = d->c;
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "imap,imaps");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->curl_err);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  if (m->require_tls) curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
  curl_easy_setopt(c, CURLOPT_URL, m->base_url);
  curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, idle_opensocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, m);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, idle_closesocket);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, m);
  char err[512];
  if (set_credentials(m, c, err, sizeof err)) {
    snprintf(d->why, sizeof d->why, "%s", err);
    return IDLE_R_ERR;
  }
  d->curl_err[0] = '\0';
  CURLcode cc = curl_easy_perform(c);
  if (atomic_load(&m->idle_stop)) return IDLE_R_STOP;
  if (!cc) cc = curl_easy_getinfo(c, CURLINFO_ACTIVESOCKET, &d->fd);
  if (!cc && d->fd == CURL_SOCKET_BAD) cc = CURLE_COULDNT_CONNECT;
  if (cc) {
    snprintf(d->why, sizeof d->why, "connecting or logging in: %s",
             d->curl_err[0] ? d->curl_err : curl_easy_strerror(cc));
    return IDLE_R_ERR;
  }
  bool has_idle = false;
  int r = idle_cmd(m, d, "CAPABILITY", seen_caps, &has_idle);
  if (r) return r == IDLE_R_NOIDLE ? IDLE_R_ERR : r;
  if (!has_idle) return IDLE_R_NOIDLE;
  char delim = 0;
  r = idle_cmd(m, d, "LIST \"\" \"\"", seen_list, &delim);
  if (r) return r == IDLE_R_NOIDLE ? IDLE_R_ERR : r;
  char *q = quote_folder_delim(delim, m->mailbox);
  char *cmd = q ? dup_printf("EXAMINE %s", q) : NULL;
  free(q);
  if (!cmd) {
    snprintf(d->why, sizeof d->why, "out of memory");
    return IDLE_R_ERR;
  }
  /* read-only: IDLE must not take \Recent from the fetch connection */
  r = idle_cmd(m, d, cmd, NULL, NULL);
  free(cmd);
  if (r) return r == IDLE_R_NOIDLE ? IDLE_R_ERR : r;
  for (;;) {
    char idle[24];
    snprintf(idle, sizeof idle, "dp%u IDLE\r\n", ++d->tag);
    snprintf(d->tagstr, sizeof d->tagstr, "dp%u", d->tag);
    if ((r = idle_send(m, d, idle))) return r;
    bool news = false, cont = false;
    uint64_t deadline = now_ms() + IDLE_CMD_MS;
    while (!cont) {
      const char *line;
      if ((r = idle_read(m, d, deadline, &line))) break;
      enum idle_resp k = idle_classify(line, d->tagstr);
      if (k == IR_CONT) cont = true;
      else if (k == IR_NEWMAIL) news = true;
      else if (k == IR_OK || k == IR_FAIL) return IDLE_R_NOIDLE;
      else if (k == IR_BYE) r = IDLE_R_ERR;
      if (r) break;
    }
    if (r == IDLE_R_TIMEOUT) snprintf(d->why, sizeof d->why, "no answer to IDLE");
    if (r) return r == IDLE_R_TIMEOUT ? IDLE_R_ERR : r;
    if (!d->active || *down) {
      if (*down) fprintf(m->err, "dmarcpipe: %s: IDLE connected again\n", m->name);
      *down = false;
      /* mail may have come while nobody listened: look once */
      idle_set_state(m, IDLE_ACTIVE, true);
      d->active = true;
    }
    /* idling: until new mail, the renewal time, an error or a stop */
    deadline = now_ms() + IDLE_RENEW_MS;
    while (!news) {
      const char *line;
      if ((r = idle_read(m, d, deadline, &line))) break;
      enum idle_resp k = idle_classify(line, d->tagstr);
      if (k == IR_NEWMAIL) news = true;
      else if (k == IR_BYE || k == IR_OK || k == IR_FAIL) {
        snprintf(d->why, sizeof d->why, "the server ended IDLE: %.200s", line);
        return IDLE_R_ERR;
      }
    }
    if (r && r != IDLE_R_TIMEOUT) return r;
    if (news) idle_set_state(m, IDLE_ACTIVE, true);
    /* leave IDLE (its tagged OK ends it) and enter it again */
    if ((r = idle_send(m, d, "DONE\r\n"))) return r;
    deadline = now_ms() + IDLE_CMD_MS;
    for (;;) {
      const char *line;
      if ((r = idle_read(m, d, deadline, &line))) break;
      enum idle_resp k = idle_classify(line, d->tagstr);
      if (k == IR_NEWMAIL) idle_set_state(m, IDLE_ACTIVE, true);
      if (k == IR_OK) break;
      if (k == IR_FAIL || k == IR_BYE) {
        snprintf(d->why, sizeof d->why, "DONE: %.200s", line);
        return IDLE_R_ERR;
      }
    }
    if (r == IDLE_R_TIMEOUT) snprintf(d->why, sizeof d->why, "no answer to DONE");
    if (r) return r == IDLE_R_TIMEOUT ? IDLE_R_ERR : r;
  }
}

/* Close the IDLE connection. The socket is shut down first so that libcurl's
 * LOGOUT cannot wait for a server that went away (or is mid-IDLE). */
static void idle_close(struct imap *m, struct idle_conn *d) {
  if (!d->c) return;
  uv_mutex_lock(&m->idle_mu);
  if (m->idle_fd != CURL_SOCKET_BAD) shutdown(m->idle_fd, SHUT_RDWR);
  uv_mutex_unlock(&m->idle_mu);
  curl_easy_cleanup(d->c);
  d->c = NULL;
}

static void idle_main(void *arg) {
  struct imap *m = arg;
  struct idle_conn *d = malloc(sizeof *d);
  uint64_t backoff = BACKOFF_FIRST;
  bool down = false;
  while (d && !atomic_load(&m->idle_stop)) {
    memset(d, 0, sizeof *d);
    d->fd = CURL_SOCKET_BAD;
    int r = idle_session(m, d, &down);
    if (r == IDLE_R_NOIDLE && d->c) idle_send(m, d, "dpz LOGOUT\r\n");
    idle_close(m, d);
    if (r == IDLE_R_STOP || atomic_load(&m->idle_stop)) break;
    if (r == IDLE_R_NOIDLE) {
      idle_set_state(m, IDLE_UNSUPPORTED, false);
      break;
    }
    if (d->active) backoff = BACKOFF_FIRST;
    if (!down)
      fprintf(m->err, "dmarcpipe: %s: IDLE: %s; polling until it is back\n", m->name, d->why);
    down = true;
    idle_set_state(m, IDLE_DOWN, false);
    if (idle_wait(m, CURL_SOCKET_BAD, 0, (int)backoff) == IDLE_R_STOP) break;
    backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
  }
  free(d);
}

/* ------------------------------------------------------------------------ */
/* Scheduling (loop thread) */

/* Everything up to the UID before the oldest message still in the pipeline
 * is committed. */
static uint32_t safe_uid(const struct imap *m) {
  uint32_t s = m->fetched_upto;
  for (size_t i = 0; i < m->n_out; i++)
    if (m->out[i].validity == m->validity && m->out[i].uid - 1 < s) s = m->out[i].uid - 1;
  return s;
}

static void on_timer(uv_timer_t *t) {
  struct imap *m = t->data;
  m->waiting = false;
  kick(m);
}

static void wait_then_kick(struct imap *m, uint64_t ms) {
  m->waiting = true;
  uv_timer_start(&m->timer, on_timer, ms, 0);
}

/* The time between two polls: longer while IDLE reports new mail. */
static uint64_t poll_ms(const struct imap *m) {
  return m->idle_seen == IDLE_ACTIVE ? m->io->poll_ms * IDLE_POLL_FACTOR : m->io->poll_ms;
}

/* The IDLE thread changed state or saw new mail. */
static void on_idle(uv_async_t *h) {
  struct imap *m = h->data;
  int st = atomic_load(&m->idle_state);
  bool news = atomic_exchange(&m->idle_news, false);
  if (m->finished) return;
  if (st != m->idle_seen) {
    if (!m->po->quiet && st == IDLE_ACTIVE && m->idle_seen == IDLE_UNKNOWN)
      fprintf(m->err, "dmarcpipe watch: %s: IDLE: new mail is read at once (and the folder "
                      "checked every %g s)\n",
              m->name, (double)m->io->poll_ms * IDLE_POLL_FACTOR / 1000);
    if (!m->po->quiet && st == IDLE_UNSUPPORTED)
      fprintf(m->err, "dmarcpipe watch: %s: the server has no IDLE: polling every %g s\n",
              m->name, (double)m->io->poll_ms / 1000);
    bool was_active = m->idle_seen == IDLE_ACTIVE;
    m->idle_seen = st;
    /* IDLE gone: the slow safety-net poll becomes the normal poll */
    if (was_active && st != IDLE_ACTIVE && m->waiting && !m->in_outage)
      uv_timer_start(&m->timer, on_timer, m->io->poll_ms, 0);
  }
  if (news && !m->stopping) {
    m->idle_kick = true;
    /* a poll wait ends now; a backoff wait (an outage) runs its course */
    if (m->waiting && !m->in_outage) {
      uv_timer_stop(&m->timer);
      m->waiting = false;
    }
    kick(m);
  }
}

/* Start the IDLE thread (watch only). Without it `watch` just polls. */
static void idle_start(struct imap *m) {
  m->idle_fd = CURL_SOCKET_BAD;
  atomic_init(&m->idle_stop, false);
  atomic_init(&m->idle_state, IDLE_UNKNOWN);
  atomic_init(&m->idle_news, false);
  m->idle_pipe[0] = m->idle_pipe[1] = -1;
  if (pipe(m->idle_pipe)) return;
  fcntl(m->idle_pipe[0], F_SETFD, FD_CLOEXEC); /* not for the token command */
  fcntl(m->idle_pipe[1], F_SETFD, FD_CLOEXEC);
  if (uv_mutex_init(&m->idle_mu)) goto fail_pipe;
  if (uv_async_init(&m->loop, &m->idle_async, on_idle)) goto fail_mutex;
  m->idle_async.data = m;
  if (uv_thread_create(&m->idle_thread, idle_main, m)) {
    uv_close((uv_handle_t *)&m->idle_async, NULL);
    goto fail_mutex;
  }
  m->idle_started = true;
  return;
fail_mutex:
  uv_mutex_destroy(&m->idle_mu);
fail_pipe:
  close(m->idle_pipe[0]);
  close(m->idle_pipe[1]);
  m->idle_pipe[0] = m->idle_pipe[1] = -1;
}

/* Tell the IDLE thread to stop; it leaves any wait (and a connect or login
 * in progress) at once. */
static void idle_stop(struct imap *m) {
  if (!m->idle_started || atomic_load(&m->idle_stop)) return;
  uv_mutex_lock(&m->idle_mu);
  atomic_store(&m->idle_stop, true);
  if (m->idle_fd != CURL_SOCKET_BAD) shutdown(m->idle_fd, SHUT_RDWR);
  uv_mutex_unlock(&m->idle_mu);
  ssize_t w;
  do w = write(m->idle_pipe[1], "x", 1);
  while (w < 0 && errno == EINTR);
}

/* Stop and join the IDLE thread, close its handle. */
static void idle_end(struct imap *m) {
  if (!m->idle_started) return;
  idle_stop(m);
  uv_thread_join(&m->idle_thread);
  uv_close((uv_handle_t *)&m->idle_async, NULL);
  uv_mutex_destroy(&m->idle_mu);
  close(m->idle_pipe[0]);
  close(m->idle_pipe[1]);
  m->idle_started = false;
}


/* dp_pipeline_close's callback has no data slot; one IMAP source per process. */
static struct imap *the_imap;

static void closed_cb(dp_pipeline_t *p) {
  (void)p;
  the_imap->closed = true;
  kick(the_imap);
}

static void step_done(uv_work_t *req, int status);

static void start_step(struct imap *m, enum op op) {
  m->op = op;
  m->req.data = m;
  if (uv_queue_work(&m->loop, &m->req, step_work, step_done)) {
    fprintf(m->err, "dmarcpipe: cannot start the thread pool\n");
    m->op = OP_NONE;
    m->failed = m->stopping = m->give_up = true;
  }
}

static void finish(struct imap *m) {
  if (m->finished) return;
  m->finished = true;
  idle_end(m);
  uv_timer_stop(&m->timer);
  uv_close((uv_handle_t *)&m->timer, NULL);
  /* the pipeline has closed: fold what the last commits stored */
  if (m->catch_up_on) dp__catch_up_sched_final(&m->catch_up);
  if (m->io->watch) {
    uv_signal_stop(&m->sigint);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    uv_signal_stop(&m->sigterm);
    uv_close((uv_handle_t *)&m->sigterm, NULL);
  }
}

static void drop_moves(struct imap *m) {
  for (size_t i = 0; i < m->n_moves; i++) {
    unlink(m->moves[i].path);
    free(m->moves[i].path);
    m->left++;
  }
  m->n_moves = 0;
}

/* Start whatever comes next; one step in the thread pool at a time. */
static void kick(struct imap *m) {
  if (m->op != OP_NONE || m->finished) return;
  /* a backoff wait holds everything; a poll wait (up to IDLE_POLL_FACTOR
   * times --imap-poll with IDLE) must not hold the moves of committed mail */
  if (m->waiting && m->in_outage) return;
  if (m->give_up) drop_moves(m);
  uint32_t save = safe_uid(m);
  bool want_save = !m->give_up && m->po->sink == DP_SINK_PG && m->state_loaded &&
                   (save > m->saved_uid || m->state_dirty);
  if (m->n_moves || want_save) {
    /* committed messages first: move them, then save the position */
    m->op_moves = m->moves;
    m->op_n_moves = m->n_moves;
    m->moves = NULL;
    m->n_moves = m->cap_moves = 0;
    m->op_save_uid = save;
    start_step(m, OP_MOVE);
    return;
  }
  if (m->stopping) {
    if (!m->closing) {
      m->closing = true;
      dp_pipeline_close(m->pipeline, closed_cb); /* may call closed_cb (and kick) at once */
    }
    if (m->closed && m->op == OP_NONE && !m->n_moves) finish(m);
    return;
  }
  if (m->waiting) return;
  if (!m->session_ok) {
    m->idle_kick = false; /* this search sees whatever IDLE announced so far */
    start_step(m, OP_SESSION);
    return;
  }
  if (m->next_todo < m->n_todo) {
    if (m->n_out >= FETCH_AHEAD) return; /* input_done kicks again */
    m->op_n = 0;
    while (m->op_n < FETCH_STEP && m->next_todo + m->op_n < m->n_todo) {
      m->op_uids[m->op_n] = m->todo[m->next_todo + m->op_n];
      m->op_paths[m->op_n] = NULL;
      m->op_n++;
    }
    start_step(m, OP_FETCH);
    return;
  }
  /* the folder is read up to what the search found */
  if (!m->io->watch) {
    m->stopping = true;
    kick(m);
    return;
  }
  m->session_ok = false;
  if (m->idle_kick) {
    kick(m); /* IDLE announced mail during this cycle */
    return;
  }
  wait_then_kick(m, poll_ms(m));
}

static int add_out(struct imap *m, uint32_t uid, char *path) {
  if (m->n_out == m->cap_out) {
    size_t nc = m->cap_out ? m->cap_out * 2 : 64;
    struct out_msg *v = realloc(m->out, nc * sizeof *v);
    if (!v) return DP_ENOMEM;
    m->out = v;
    m->cap_out = nc;
  }
  m->out[m->n_out++] = (struct out_msg){uid, m->validity, path};
  return 0;
}

static int add_move(struct imap *m, struct out_msg *o, const char *folder) {
  if (m->n_moves == m->cap_moves) {
    size_t nc = m->cap_moves ? m->cap_moves * 2 : 64;
    struct move_msg *v = realloc(m->moves, nc * sizeof *v);
    if (!v) return DP_ENOMEM;
    m->moves = v;
    m->cap_moves = nc;
  }
  m->moves[m->n_moves++] = (struct move_msg){o->uid, o->validity, o->path, folder};
  return 0;
}

static void step_error(struct imap *m, enum op op) {
  bool oneshot = !m->io->watch;
  m->attempts++;
  if (!m->in_outage || (oneshot && m->op_fatal))
    fprintf(m->err, "dmarcpipe: %s: %s\n", m->name, m->op_err);
  m->in_outage = true;
  if (m->stopping || (oneshot && (m->op_fatal || m->attempts >= ONESHOT_ATTEMPTS))) {
    if (op == OP_SESSION || op == OP_FETCH || oneshot) m->failed = true;
    if (!m->stopping && oneshot) fprintf(m->err, "dmarcpipe: %s: giving up\n", m->name);
    m->stopping = m->give_up = true;
    return;
  }
  m->session_ok = false;
  if (!m->backoff_ms) m->backoff_ms = BACKOFF_FIRST;
  if (!oneshot && m->attempts == 1)
    fprintf(m->err, "dmarcpipe: %s: retrying every %u s at most\n", m->name, BACKOFF_MAX / 1000);
  wait_then_kick(m, m->backoff_ms);
  m->backoff_ms = m->backoff_ms * 2 > BACKOFF_MAX ? BACKOFF_MAX : m->backoff_ms * 2;
}

static void step_done(uv_work_t *req, int status) {
  struct imap *m = req->data;
  enum op op = m->op;
  (void)status;
  if (op == OP_SESSION && !m->op_rc) {
    m->session_ok = true;
    if (m->op_reset)
      fprintf(m->err, "dmarcpipe: %s: UIDVALIDITY changed to %" PRIu64
                      ": every message is read again (stored reports are not doubled)\n",
              m->name, m->validity);
  } else if (op == OP_FETCH) {
    /* m->op stays set: input_done (run from dp_pipeline_add) must not start
     * a step while op_paths is being read */
    for (size_t i = 0; i < m->op_done; i++) {
      uint32_t uid = m->op_uids[i];
      char *path = m->op_paths[i];
      m->op_paths[i] = NULL;
      if (uid > m->fetched_upto) m->fetched_upto = uid;
      if (!path) continue; /* vanished */
      m->fetched++;
      if (add_out(m, uid, path)) {
        unlink(path);
        free(path);
        continue;
      }
      /* stored sources and messages name the message, not the spool file */
      char display[1024];
      snprintf(display, sizeof display, "%s;UIDVALIDITY=%" PRIu64 ";UID=%" PRIu32, m->name,
               (uint64_t)m->validity, uid);
      if (dp_pipeline_add_named(m->pipeline, path, display)) {
        /* closing: it stays on the server and is read next time */
        for (size_t k = 0; k < m->n_out; k++)
          if (m->out[k].path == path) m->out[k] = m->out[--m->n_out];
        unlink(path);
        free(path);
      }
    }
    m->next_todo += m->op_done;
  } else if (op == OP_MOVE) {
    for (size_t i = 0; i < m->op_n_moves; i++) {
      /* left over by a connection error: try again next time */
      struct out_msg o = {m->op_moves[i].uid, m->op_moves[i].validity, m->op_moves[i].path};
      if (add_move(m, &o, m->op_moves[i].folder)) {
        unlink(o.path);
        free(o.path);
      }
    }
    free(m->op_moves);
    m->op_moves = NULL;
    m->op_n_moves = 0;
  }
  m->op = OP_NONE;
  if (m->op_rc) {
    step_error(m, op);
  } else {
    if (m->in_outage && !m->give_up)
      fprintf(m->err, "dmarcpipe: %s: connected again\n", m->name);
    m->in_outage = false;
    m->attempts = 0;
    m->backoff_ms = 0;
  }
  kick(m);
}

/* The pipeline committed path (or it had nothing to commit). */
static void input_done(void *data, const char *path, bool refused) {
  struct imap *m = data;
  /* the pipeline counts a message without a report just before it reports
   * that message done, and such a message is never held for a batch */
  bool nonreport = m->st->skipped_messages != m->skipped_seen;
  m->skipped_seen = m->st->skipped_messages;
  size_t i = 0;
  while (i < m->n_out && strcmp(m->out[i].path, path)) i++;
  if (i == m->n_out) return;
  const char *folder = m->io->archive;
  if (refused && m->io->rejected) folder = m->io->rejected;
  else if (!refused && nonreport) folder = m->io->nonreport;
  if (m->po->sink != DP_SINK_PG || (folder && !*folder)) folder = NULL;
  /* a refused message may have stored reports too; a catch-up that finds
   * nothing pending costs one query */
  if (m->catch_up_on) dp__catch_up_sched_commit(&m->catch_up);
  struct out_msg o = m->out[i];
  m->out[i] = m->out[--m->n_out];
  if (add_move(m, &o, folder)) {
    unlink(o.path);
    free(o.path);
  }
  kick(m);
}

static void on_signal(uv_signal_t *h, int signum) {
  struct imap *m = h->data;
  if (!m->stopping && !m->po->quiet)
    fprintf(m->err, "dmarcpipe watch: %s: finishing the work in flight\n",
            signum == SIGINT ? "interrupted" : "terminated");
  m->stopping = true;
  idle_stop(m);
  if (m->waiting) {
    uv_timer_stop(&m->timer);
    m->waiting = false;
  }
  kick(m);
}

/* ------------------------------------------------------------------------ */
/* Running */

static void remove_spool(struct imap *m) {
  if (!m->spool) return;
  uv_fs_t req;
  if (uv_fs_scandir(NULL, &req, m->spool, 0, NULL) >= 0) {
    uv_dirent_t ent;
    while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
      char *p = dup_printf("%s/%s", m->spool, ent.name);
      if (p) unlink(p);
      free(p);
    }
  }
  uv_fs_req_cleanup(&req);
  rmdir(m->spool);
}

static void imap_free(struct imap *m) {
  for (size_t i = 0; i < m->n_out; i++) free(m->out[i].path);
  for (size_t i = 0; i < m->n_moves; i++) free(m->moves[i].path);
  remove_spool(m);
  free(m->out);
  free(m->moves);
  free(m->todo);
  free(m->spool);
  free(m->base_url);
  free(m->mbox_url);
  free(m->mailbox);
  free(m->name);
  free(m->user);
  if (m->curl) curl_easy_cleanup(m->curl);
  if (m->db) PQfinish(m->db);
  free(m);
}

static int setup(struct imap *m) {
  const char *tmp = getenv("TMPDIR");
  m->spool = dup_printf("%s/dmarcpipe-imap.XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!m->spool || !mkdtemp(m->spool)) { /* mkdtemp: mode 0700 */
    fprintf(m->err, "dmarcpipe: cannot create a spool directory in %s: %s\n",
            tmp && *tmp ? tmp : "/tmp", strerror(errno));
    free(m->spool);
    m->spool = NULL;
    return 2;
  }
  m->curl = curl_easy_init();
  if (!m->curl) {
    fprintf(m->err, "dmarcpipe: cannot initialise libcurl\n");
    return 2;
  }
  CURL *c = m->curl;
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we run in worker threads */
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "imap,imaps");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, m->curl_err);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  /* a server that stops answering must not hang the source forever */
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 120L);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  if (m->require_tls) curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
  return 0;
}

int dp__imap_run(const dp_imap_opts_t *io, const dp_pipeline_opts_t *po,
                 dp_pipeline_stats_t *stats) {
  memset(stats, 0, sizeof *stats);
  struct imap *m = calloc(1, sizeof *m);
  if (!m) {
    fprintf(po->err, "dmarcpipe: out of memory\n");
    return 2;
  }
  m->io = io;
  m->po = po;
  m->err = po->err;
  m->st = stats;
  if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
    fprintf(m->err, "dmarcpipe: cannot initialise libcurl\n");
    free(m);
    return 2;
  }
  if (parse_url(m, io->url) || setup(m)) {
    imap_free(m);
    curl_global_cleanup();
    return 2;
  }
  if (uv_loop_init(&m->loop)) {
    fprintf(m->err, "dmarcpipe: cannot start the event loop\n");
    imap_free(m);
    curl_global_cleanup();
    return 2;
  }
  m->popts = *po;
  m->popts.input_done = input_done;
  m->popts.data = m;
  m->pipeline = dp_pipeline_create(&m->loop, &m->popts, stats);
  if (!m->pipeline) {
    uv_loop_close(&m->loop);
    imap_free(m);
    curl_global_cleanup();
    return 2;
  }
  the_imap = m;
  uv_timer_init(&m->loop, &m->timer);
  m->timer.data = m;
  if (io->watch && po->sink == DP_SINK_PG &&
      !dp__catch_up_sched_init(&m->catch_up, &m->loop, po->conninfo, "dmarcpipe watch",
                               po->quiet)) {
    m->catch_up_on = true;
    dp__catch_up_sched_commit(&m->catch_up); /* an earlier run's backlog too */
  }
  if (io->watch) {
    uv_signal_init(&m->loop, &m->sigint);
    m->sigint.data = m;
    uv_signal_start(&m->sigint, on_signal, SIGINT);
    uv_signal_init(&m->loop, &m->sigterm);
    m->sigterm.data = m;
    uv_signal_start(&m->sigterm, on_signal, SIGTERM);
    if (!po->quiet)
      fprintf(m->err, "dmarcpipe watch: reading %s every %g s (archive: %s)\n", m->name,
              (double)io->poll_ms / 1000, io->archive && *io->archive ? io->archive : "none");
    idle_start(m);
  }
  kick(m);
  uv_run(&m->loop, UV_RUN_DEFAULT);
  bool failed = m->failed || dp_pipeline_failed(m->pipeline);
  dp_pipeline_destroy(m->pipeline);
  if (uv_loop_close(&m->loop)) fprintf(m->err, "dmarcpipe: internal error: handles left open\n");
  if (!po->quiet)
    fprintf(m->err,
            "dmarcpipe: %s: %" PRIu64 " message%s fetched, %" PRIu64 " moved, %" PRIu64
            " left in place%s\n",
            m->name, m->fetched, m->fetched == 1 ? "" : "s", m->moved, m->left + m->move_failed,
            po->sink == DP_SINK_PG ? "" : " (--output null: nothing moved)");
  the_imap = NULL;
  imap_free(m);
  curl_global_cleanup();
  if (failed) return 2;
  return stats->inputs_refused || stats->reports_refused ? 1 : 0;
}

int dp__imap_watch_cmd(dp_imap_opts_t *io, const char *db, bool quiet) {
  io->watch = true;
  dp_pipeline_opts_t o;
  dp_pipeline_opts_default(&o);
  o.quiet = quiet;
  o.outage_budget_ms = 0; /* a service waits for its database */
  if (dp__ingest_apply_config(&o)) return 2;
  if (dp_align_global_init()) {
    fprintf(stderr, "dmarcpipe: cannot load the Public Suffix List (package publicsuffix)\n");
    return 2;
  }
  char err[1024];
  char *conninfo = NULL;
  if (dp_store_select(db, &conninfo, err, sizeof err)) {
    fprintf(stderr, "dmarcpipe: %s\n", err);
    dp_align_global_cleanup();
    return 2;
  }
  o.conninfo = conninfo;
  dp_pipeline_stats_t st;
  int rc = dp__imap_run(io, &o, &st);
  if (!quiet && rc != 2)
    fprintf(stderr,
            "dmarcpipe watch: %" PRIu64 " inputs: %" PRIu64 " reports stored (%" PRIu64
            " records), %" PRIu64 " already stored, %" PRIu64 " refused\n",
            st.inputs, st.reports_new, st.records, st.reports_dup,
            st.reports_refused + st.inputs_refused);
  free(conninfo);
  dp_align_global_cleanup();
  /* like `watch DIR`: a clean stop is success, refusals were recorded */
  return rc == 2 ? 2 : 0;
}
