/* SPDX-License-Identifier: MIT */
/* query/query.h - the read side: analysis SQL over the stored reports and its
 * output as a table for people, CSV or JSON for machines. */
#ifndef DP_QUERY_H
#define DP_QUERY_H

/* Each command parses its own options (argv[0] is the command name), connects
 * with dp_store_select/dp_store_connect, prints to stdout, and returns the
 * process exit status: 0 ok, 2 usage or fatal error (message on stderr). */

/** `dmarcpipe reports [--db DSN] [--domain D] [--since DURATION|DATE] [--format table|csv|json]` */
int dp_reports_cmd(int argc, char **argv);
/** `dmarcpipe senders --domain D [--db DSN] [--since DURATION|DATE] [--fail spf|dkim|any] [--format table|csv|json]` */
int dp_senders_cmd(int argc, char **argv);
/** `dmarcpipe errors [--db DSN] [--since DURATION|DATE] [--format table|csv|json]` */
int dp_errors_cmd(int argc, char **argv);
/** `dmarcpipe readiness --domain D [--db DSN] [--since S] [--by day|week] [--format table|csv|json]` */
int dp_readiness_cmd(int argc, char **argv);
/** `dmarcpipe domains [--db DSN] [--since S] [--format table|csv|json]` */
int dp_domains_cmd(int argc, char **argv);
/** `dmarcpipe report --domain D --html FILE [--db DSN] [--since S] [--by day|week] [--redact]` */
int dp_report_cmd(int argc, char **argv);

#endif
