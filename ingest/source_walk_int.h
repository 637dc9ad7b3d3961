/* SPDX-License-Identifier: MIT */
/* ingest/source_walk_int.h - which files a path given to `ingest` stands for:
 * a file, a directory walked recursively in name order, or a Maildir (only
 * cur/ and new/, Maildir++ folders included). Internal to ingest/. */
#ifndef DP_SOURCE_WALK_INT_H
#define DP_SOURCE_WALK_INT_H

/** 1 when dir is a Maildir: it holds cur/ and new/ subdirectories (real
 *  directories, not symbolic links), else 0. */
int dp_source_is_maildir(const char *dir);

/** Find the input files that path stands for and call add for each, in a
 *  reproducible order. path itself is followed if it is a symbolic link. A
 *  file is one input. A directory is walked recursively in name order;
 *  symbolic links to directories are not followed (no loops), links to files
 *  are. A Maildir (dp_source_is_maildir) yields only the files of cur/ and
 *  new/ (names starting with '.' skipped) and those of its Maildir++ folders
 *  (".Name/" subdirectories that are Maildirs themselves); tmp/ (messages
 *  still being delivered) and the Maildir's own files (indexes, uidlists)
 *  are never read. err gets a path that cannot be read and a one-line reason
 *  ("No such file or directory", "cannot read directory: Permission denied");
 *  the walk goes on. Strings passed to add/err are borrowed for the call.
 *  Returns 0, DP_ENOMEM, or add's first non-zero return (which stops the
 *  walk). Thread-safe: no global state. */
int dp_source_walk(const char *path, int (*add)(void *ud, const char *file),
                   void (*err)(void *ud, const char *path, const char *reason), void *ud);

#endif
