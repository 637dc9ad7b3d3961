#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/corpus_manifest.sh - the real-world corpus against MANIFEST.tsv:
# every file alone gives its listed counts or is refused; the whole folder
# stores each distinct report once with exact totals; loading it again stores
# nothing new; two concurrent ingests store each report exactly once.
source "$(dirname "$0")/lib/common.bash"
REAL="$CORPUS/real"

# 1. Each file alone (parse only): exit status and counts per MANIFEST.
while IFS=$'\t' read -r file kind reports records messages domain org rid expect note; do
  [ "$file" = file ] && continue
  set +e
  out=$("$DP_BIN" ingest --output null "$REAL/$file" 2>&1)
  rc=$?
  set -e
  case "$expect" in
    ok)
      expect_eq "$file: exit status" "$rc" 0
      got=$(printf '%s\n' "$out" | sed -nE 's/.* ([0-9]+) reports stored \(([0-9]+) records, ([0-9]+) messages\).*/\1 \2 \3/p')
      expect_eq "$file: reports records messages" "$got" "$reports $records $messages" ;;
    reject)
      expect_eq "$file: exit status" "$rc" 1
      printf '%s\n' "$out" | grep -qF "$REAL/$file" && ok || fail "$file: error does not name the file: $out"
      got=$(printf '%s\n' "$out" | sed -nE 's/.* ([0-9]+) reports stored.*/\1/p')
      expect_eq "$file: nothing stored" "$got" 0 ;;
    any)
      [ "$rc" -le 1 ] && ok || fail "$file: exit status $rc" ;;
  esac
done < "$REAL/MANIFEST.tsv"

# 2. The whole folder into PostgreSQL. Expected: distinct reports of the ok
# rows (several files hold the same report), with their counts.
new_db corpus
read -r want_reports want_records want_messages < <(awk -F'\t' '
  NR > 1 && $9 == "ok" && $3 > 0 {
    key = $7 "\t" $8 "\t" $6
    if (!(key in seen)) { seen[key] = 1; r += $3; rec += $4; m += $5 }
  }
  END { print r, rec, m }' "$REAL/MANIFEST.tsv")
set +e
"$DP_BIN" ingest --db "$DB" "$REAL" > "$TMP/out1" 2> "$TMP/err1"
rc=$?
set -e
expect_eq "folder ingest exit status (some files are refused)" "$rc" 1
expect_eq "stored reports/records/messages" \
  "$(sql "SELECT count(*), sum(n_records), sum(messages) FROM report" | tr '|' ' ')" \
  "$want_reports $want_records $want_messages"
expect_eq "record rows match report counts" \
  "$(sql "SELECT count(*), sum(count) FROM record")" "$want_records|$want_messages"
# every ok report is there with its exact counts
while IFS=$'\t' read -r file kind reports records messages domain org rid expect note; do
  [ "$expect" = ok ] && [ "$reports" = 1 ] || continue
  got=$(psql "$DB" -XAtq -v rid="$rid" -v dom="$domain" <<< "SELECT n_records || ' ' || messages FROM report WHERE report_id = :'rid' AND domain = :'dom' LIMIT 1")
  [ -n "$got" ] || { fail "$file: report $rid not stored"; continue; }
  # a report_id shared by two orgs: any row with the right counts will do
  n=$(psql "$DB" -XAtq -v rid="$rid" -v dom="$domain" -v rec="$records" -v msg="$messages" <<< "SELECT count(*) FROM report WHERE report_id = :'rid' AND domain = :'dom' AND n_records = :rec AND messages = :msg")
  [ "$n" -ge 1 ] && ok || fail "$file: stored counts '$got', want '$records $messages'"
done < "$REAL/MANIFEST.tsv"
# every rejected file is recorded in ingest_error and named on stderr
while IFS=$'\t' read -r file kind reports records messages domain org rid expect note; do
  [ "$expect" = reject ] || continue
  n=$(psql "$DB" -XAtq -v src="$REAL/$file" <<< "SELECT count(*) FROM ingest_error WHERE source = :'src'")
  [ "$n" -ge 1 ] && ok || fail "$file: no ingest_error row"
  grep -qF "$REAL/$file" "$TMP/err1" && ok || fail "$file: not named on stderr"
done < "$REAL/MANIFEST.tsv"

# 3. Again: nothing new.
set +e
"$DP_BIN" ingest --db "$DB" "$REAL" > /dev/null 2> "$TMP/err2"
set -e
expect_eq "re-ingest stores nothing new" \
  "$(sql "SELECT count(*), sum(n_records) FROM report" | tr '|' ' ')" "$want_reports $want_records"
grep -qE ' 0 reports stored' "$TMP/err2" && ok || fail "re-ingest summary: $(tail -1 "$TMP/err2")"

# 4. Two ingests at once into a fresh database: each report exactly once.
new_db concurrent
set +e
"$DP_BIN" ingest --quiet --db "$DB" "$REAL" 2>/dev/null & p1=$!
"$DP_BIN" ingest --quiet --db "$DB" "$REAL" 2>/dev/null & p2=$!
wait $p1; r1=$?
wait $p2; r2=$?
set -e
expect_eq "concurrent exit statuses" "$r1 $r2" "1 1"
expect_eq "concurrent: stored once" \
  "$(sql "SELECT count(*), sum(n_records), sum(messages) FROM report" | tr '|' ' ')" \
  "$want_reports $want_records $want_messages"
expect_eq "concurrent: records once" "$(sql "SELECT count(*) FROM record")" "$want_records"
finish
