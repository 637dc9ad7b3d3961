/* SPDX-License-Identifier: MIT */
/* ingest/unpack_zip.c - every entry of a zip archive held in memory, read
 * with libzip (zip_source_buffer_create + zip_open_from_source) and streamed
 * into a sink per entry. The entry count is capped before any entry is read;
 * libzip checks each entry's CRC when its last byte is read. */
#include "ingest/unpack_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

static void zip_reason(const char *name, zip_error_t *ze, char *out, size_t outlen) {
  if (zip_error_code_zip(ze) == ZIP_ER_CRC)
    snprintf(out, outlen, "zip entry %s: CRC mismatch", name);
  else if (zip_error_code_zip(ze) == ZIP_ER_NOPASSWD || zip_error_code_zip(ze) == ZIP_ER_WRONGPASSWD)
    snprintf(out, outlen, "zip entry %s: encrypted", name);
  else if (zip_error_code_zip(ze) == ZIP_ER_ZLIB || zip_error_code_zip(ze) == ZIP_ER_COMPRESSED_DATA)
    snprintf(out, outlen, "zip entry %s: corrupt compressed data (%s)", name, zip_error_strerror(ze));
  else
    snprintf(out, outlen, "zip entry %s: %s", name, zip_error_strerror(ze));
}

/* Stream one entry into a sink at part/depth+1. Returns an abort value or 0. */
static int read_entry(struct dp__unpack *u, zip_t *za, zip_uint64_t i, const char *zpart,
                      unsigned depth, unsigned char *win) {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(za, i, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME)) {
    char r[160];
    snprintf(r, sizeof r, "zip entry #%llu: %s", (unsigned long long)i, zip_strerror(za));
    char sub[48];
    snprintf(sub, sizeof sub, "entry #%llu", (unsigned long long)i);
    char *p = dp__part_join(zpart, sub);
    if (p) dp__fail(u, p, DP_EZIP, r);
    free(p);
    return u->abort_rc;
  }
  char name[512], sub[540];
  dp_term_copy(st.name, name, sizeof name); /* from the archive */
  snprintf(sub, sizeof sub, "entry %s", name);
  char *part = dp__part_join(zpart, sub);
  if (!part) return u->abort_rc;
  size_t nl = strlen(st.name);
  if (nl && st.name[nl - 1] == '/') {
    dp__note(u, part, "directory, skipped");
    free(part);
    return u->abort_rc;
  }
  /* What macOS's "Compress" adds beside the files (resource forks under
   * __MACOSX/, "._" AppleDouble files, .DS_Store) is no report, and no
   * sign of a broken one either: refusing it sent a good archive to
   * errors and watch's rejected folder. */
  const char *base = strrchr(st.name, '/');
  base = base ? base + 1 : st.name;
  if (!strncmp(st.name, "__MACOSX/", 9) || !strncmp(base, "._", 2) || !strcmp(base, ".DS_Store")) {
    dp__note(u, part, "macOS metadata, skipped");
    free(part);
    return u->abort_rc;
  }
  char r[700];
  zip_file_t *zf = zip_fopen_index(za, i, 0);
  if (!zf) {
    zip_reason(name, zip_get_error(za), r, sizeof r);
    dp__fail(u, part, DP_EZIP, r);
    free(part);
    return u->abort_rc;
  }
  struct dp__sink s;
  if (dp__sink_init(&s, u, part, depth + 1)) {
    zip_fclose(zf);
    dp__fail(u, part, DP_ENOMEM, "out of memory");
    free(part);
    return u->abort_rc;
  }
  uint64_t comp = (st.valid & ZIP_STAT_COMP_SIZE) ? st.comp_size : 0, out = 0;
  int rc = 0, status = 0;
  r[0] = '\0';
  while (!rc && !s.stop) {
    zip_int64_t k = zip_fread(zf, win, DP__UNPACK_CHUNK);
    if (k < 0) {
      zip_reason(name, zip_file_get_error(zf), r, sizeof r);
      status = DP_EZIP;
      break;
    }
    if (k == 0) break;
    out += (uint64_t)k;
    /* out > ratio * comp, overflow-free; stored entries have ratio ~1 */
    if (out >= DP__RATIO_FLOOR && u->lim->max_ratio &&
        (comp == 0 || (out - 1) / comp >= u->lim->max_ratio)) {
      char sz[32];
      dp__human_size(out, sz, sizeof sz);
      snprintf(r, sizeof r, "zip entry %s: decompressed size exceeds ratio limit %llu:1 after %s",
               name, (unsigned long long)u->lim->max_ratio, sz);
      status = DP_ELIMIT;
      break;
    }
    rc = dp__sink_write(&s, win, (size_t)k);
  }
  zip_fclose(zf);
  int rc2 = dp__sink_close(&s, status, r);
  free(part);
  return rc ? rc : rc2;
}

int dp__unpack_zip(struct dp__unpack *u, const char *part, unsigned depth, const void *p, size_t n) {
  zip_error_t ze;
  zip_error_init(&ze);
  char r[300];
  zip_source_t *src = zip_source_buffer_create(p, n, 0, &ze);
  if (!src) {
    snprintf(r, sizeof r, "zip: %s", zip_error_strerror(&ze));
    zip_error_fini(&ze);
    dp__fail(u, part, DP_EZIP, r);
    return u->abort_rc;
  }
  zip_t *za = zip_open_from_source(src, ZIP_RDONLY, &ze);
  if (!za) {
    zip_source_free(src);
    if (zip_error_code_zip(&ze) == ZIP_ER_NOZIP)
      snprintf(r, sizeof r, "zip: not a valid zip archive (no central directory)");
    else
      snprintf(r, sizeof r, "zip: %s", zip_error_strerror(&ze));
    zip_error_fini(&ze);
    dp__fail(u, part, DP_EZIP, r);
    return u->abort_rc;
  }
  zip_error_fini(&ze);
  int rc = 0;
  zip_int64_t ne = zip_get_num_entries(za, 0);
  if (ne < 0) ne = 0;
  if ((uint64_t)ne > u->lim->max_zip_entries) {
    snprintf(r, sizeof r, "zip archive has %lld entries, over the limit of %u", (long long)ne,
             (unsigned)u->lim->max_zip_entries);
    dp__fail(u, part, DP_ELIMIT, r);
  } else if (ne == 0) {
    dp__fail(u, part, DP_EZIP, "zip archive is empty (no entries)");
  } else {
    unsigned char *win = malloc(DP__UNPACK_CHUNK);
    if (!win) {
      dp__fail(u, part, DP_ENOMEM, "out of memory");
    } else {
      for (zip_int64_t i = 0; i < ne && !rc; i++) rc = read_entry(u, za, (zip_uint64_t)i, part, depth, win);
      free(win);
    }
  }
  zip_discard(za); /* read-only: discard also frees the source */
  return rc ? rc : u->abort_rc;
}
