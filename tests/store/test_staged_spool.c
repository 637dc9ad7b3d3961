/* SPDX-License-Identifier: MIT */
/* tests/store/test_staged_spool.c - a staged report's record rows moved to its
 * spool file keep their order and bytes, and the size cap holds. */
#include <unistd.h>

#include "store/store.h"
#include "../test.h"

TEST(staged_spool_keeps_rows_in_order) {
  dp_staged_t *s = dp_staged_create();
  ASSERT_NOT_NULL(s);
  ASSERT_EQ(s->spool_fd, -1);
  ASSERT_OK(dp_staged_spool(s, 1000)); /* nothing to spool: no file */
  ASSERT_EQ(s->spool_fd, -1);
  ASSERT_OK(dp_buf_puts(&s->record_rows, "row1\n"));
  ASSERT_OK(dp_staged_spool(s, 1000));
  ASSERT_TRUE(s->spool_fd >= 0);
  ASSERT_EQ(s->record_rows.len, 0);
  ASSERT_OK(dp_buf_puts(&s->record_rows, "row2\n"));
  ASSERT_OK(dp_staged_spool(s, 1000));
  ASSERT_OK(dp_buf_puts(&s->record_rows, "row3\n"));
  ASSERT_U64_EQ(s->spool_len, 10);
  ASSERT_U64_EQ(dp_staged_rows_len(s), 15);
  char buf[32] = "";
  ASSERT_EQ(pread(s->spool_fd, buf, sizeof buf - 1, 0), 10);
  ASSERT_STR_EQ(buf, "row1\nrow2\n");
  dp_staged_free(s);
}

TEST(staged_spool_cap) {
  dp_staged_t *s = dp_staged_create();
  ASSERT_OK(dp_buf_puts(&s->record_rows, "0123456789"));
  ASSERT_OK(dp_staged_spool(s, 12));
  ASSERT_OK(dp_buf_puts(&s->record_rows, "abc"));
  ASSERT_EQ(dp_staged_spool(s, 12), DP_ELIMIT);
  ASSERT_EQ(s->record_rows.len, 3); /* on failure the rows stay in memory */
  ASSERT_U64_EQ(s->spool_len, 10);
  dp_staged_free(s);
}
