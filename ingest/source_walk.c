/* SPDX-License-Identifier: MIT */
/* ingest/source_walk.c - turn the paths given to `ingest` into input files:
 * plain files, directories (recursive, name order, directory symlinks not
 * followed) and Maildirs, where only delivered messages (cur/, new/, and the
 * same in Maildir++ and LAYOUT=fs folders) are read, never tmp/ or the index
 * files. */
#include "ingest/source_walk_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"

/* Deeper directory trees are not report drops; the cap also bounds the stack. */
#define WALK_MAX_DEPTH 64

struct walker {
  int (*add)(void *ud, const char *file);
  void (*err)(void *ud, const char *path, const char *reason);
  void *ud;
};

/* A directory entry: its name and what readdir says it is (d_type), which
 * spares a stat per file on file systems that fill it in. */
struct entry {
  char *name;
  unsigned char type; /* DT_REG, DT_DIR, DT_LNK, ... or DT_UNKNOWN */
};

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static void free_entries(struct entry *e, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(e[i].name);
  free(e);
}

/* The entries of dir but "." and "..", sorted by name; caller owns *out
 * (free_entries). Returns 0, DP_ENOMEM, or 1 when dir cannot be read (reported). */
static int list_dir(struct walker *w, const char *dir, struct entry **out, size_t *nout) {
  *out = NULL;
  *nout = 0;
  DIR *d = opendir(dir);
  if (!d) {
    char r[300];
    snprintf(r, sizeof r, "cannot read directory: %s", strerror(errno));
    w->err(w->ud, dir, r);
    return 1;
  }
  struct entry *ents = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  int rc = 0;
  while (!rc && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 64;
      struct entry *v = realloc(ents, nc * sizeof *v);
      if (!v) {
        rc = DP_ENOMEM;
        break;
      }
      ents = v;
      cap = nc;
    }
    ents[n].name = strdup(e->d_name);
    ents[n].type = e->d_type;
    if (!ents[n].name)
      rc = DP_ENOMEM;
    else
      n++;
  }
  closedir(d);
  if (rc) {
    free_entries(ents, n);
    return rc;
  }
  if (n) qsort(ents, n, sizeof *ents, cmp_entry);
  *out = ents;
  *nout = n;
  return 0;
}

/* "dir/name" without doubling a trailing '/'; caller owns result; NULL on ENOMEM. */
static char *join(const char *dir, const char *name) {
  size_t a = strlen(dir), len = a + strlen(name) + 2;
  char *p = malloc(len);
  if (p) snprintf(p, len, "%s%s%s", dir, a && dir[a - 1] == '/' ? "" : "/", name);
  return p;
}

/* A real directory (lstat: a symbolic link is not one). */
static int is_real_dir(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A regular file, following a symbolic link. */
static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The same for a directory entry: readdir's d_type answers without a stat
 * for a regular file (and rules out what is neither file nor link). */
static int entry_is_file(const struct entry *e, const char *path) {
  if (e->type == DT_REG) return 1;
  if (e->type != DT_LNK && e->type != DT_UNKNOWN) return 0;
  return is_file(path);
}

int dp_source_is_maildir(const char *dir) {
  char *cur = join(dir, "cur"), *nw = join(dir, "new");
  int r = cur && nw && is_real_dir(cur) && is_real_dir(nw);
  free(cur);
  free(nw);
  return r;
}

/* The messages of one Maildir folder's cur/ or new/: files only, no
 * recursion; names starting with '.' are not messages (Maildir convention). */
static int walk_msgdir(struct walker *w, const char *dir) {
  struct entry *ents;
  size_t n;
  int rc = list_dir(w, dir, &ents, &n);
  if (rc) return rc > 0 ? 0 : rc;
  for (size_t i = 0; i < n && !rc; i++) {
    if (ents[i].name[0] == '.') continue;
    char *path = join(dir, ents[i].name);
    if (!path)
      rc = DP_ENOMEM;
    else if (entry_is_file(&ents[i], path))
      rc = w->add(w->ud, path);
    free(path);
  }
  free_entries(ents, n);
  return rc;
}

static int walk_maildir(struct walker *w, const char *dir, unsigned depth) {
  if (depth > WALK_MAX_DEPTH) return 0;
  struct entry *ents;
  size_t n;
  int rc = list_dir(w, dir, &ents, &n);
  if (rc) return rc > 0 ? 0 : rc;
  /* name order: ".Folder"s sort before "cur" and "new". A folder is a
   * Maildir++ ".Folder" or, in Dovecot's LAYOUT=fs, a plain subdirectory
   * that is a Maildir itself (a "Reports" folder filed by a Sieve rule);
   * any other entry is the Maildir's own (tmp/, dovecot-uidlist, ...). */
  for (size_t i = 0; i < n && !rc; i++) {
    const char *nm = ents[i].name;
    int msgdir = !strcmp(nm, "cur") || !strcmp(nm, "new");
    int folder = !msgdir && strcmp(nm, "tmp") && (nm[0] == '.' || ents[i].type == DT_DIR ||
                                                   ents[i].type == DT_UNKNOWN);
    if (!msgdir && !folder) continue;
    char *path = join(dir, nm);
    if (!path) {
      rc = DP_ENOMEM;
      break;
    }
    if (msgdir)
      rc = walk_msgdir(w, path);
    else if (is_real_dir(path) && dp_source_is_maildir(path))
      rc = walk_maildir(w, path, depth + 1);
    free(path);
  }
  free_entries(ents, n);
  return rc;
}

static int walk_dir(struct walker *w, const char *dir, unsigned depth) {
  if (depth > WALK_MAX_DEPTH) return 0;
  if (dp_source_is_maildir(dir)) return walk_maildir(w, dir, depth);
  struct entry *ents;
  size_t n;
  int rc = list_dir(w, dir, &ents, &n);
  if (rc) return rc > 0 ? 0 : rc;
  for (size_t i = 0; i < n && !rc; i++) {
    char *path = join(dir, ents[i].name);
    if (!path) {
      rc = DP_ENOMEM;
      break;
    }
    unsigned char t = ents[i].type;
    if (t == DT_UNKNOWN) {
      /* the file system does not say: ask (lstat: a link is not a directory) */
      struct stat lst;
      t = lstat(path, &lst) != 0 ? DT_UNKNOWN : S_ISDIR(lst.st_mode) ? DT_DIR
          : S_ISLNK(lst.st_mode) ? DT_LNK : S_ISREG(lst.st_mode) ? DT_REG : DT_FIFO;
      if (t == DT_UNKNOWN) {
        free(path);
        continue; /* vanished */
      }
    }
    struct entry e = {ents[i].name, t};
    if (t == DT_DIR)
      rc = walk_dir(w, path, depth + 1);
    else if (entry_is_file(&e, path))
      rc = w->add(w->ud, path);
    free(path);
  }
  free_entries(ents, n);
  return rc;
}

int dp_source_walk(const char *path, int (*add)(void *ud, const char *file),
                   void (*err)(void *ud, const char *path, const char *reason), void *ud) {
  struct walker w = {add, err, ud};
  struct stat st;
  if (stat(path, &st) != 0) {
    err(ud, path, strerror(errno));
    return 0;
  }
  if (S_ISDIR(st.st_mode)) return walk_dir(&w, path, 0);
  return add(ud, path);
}
