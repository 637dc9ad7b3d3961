#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/bench_smoke.sh - `dmarcpipe bench` runs every stage on a tiny
# corpus and reports it (the aggregate catch-ups after the big report's and
# the small set's loads included): the JSON holds each stage with one positive timing
# per run, the corpus sizes it generated, and the issue's targets. No speed
# is asserted (speed lives in benchmarks, not tests); this keeps the harness
# that produces the figures in docs/performance.md working.
source "$(dirname "$0")/lib/common.bash"
"$DP_BIN" bench --runs 2 --big-records 3000 --reports 30 --json --db "$DP_TEST_DB" \
  --workdir "$TMP/w" > "$TMP/b.json" 2> "$TMP/b.err" || fail "bench exited non-zero: $(tail -5 "$TMP/b.err")"
python3 - "$TMP/b.json" <<'PY' && ok || fail "bench JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["runs"] == 2 and d["seed"] == 1, d
c = d["corpus"]
assert c["big"]["records"] == 3000 and c["big"]["gzip_bytes"] > 0, c
assert c["big"]["xml_bytes"] > c["big"]["gzip_bytes"], c
assert c["small"]["reports"] == 30 and 30 <= c["small"]["records"] <= 300, c
want = {"inflate", "unpack", "sax", "parse_null", "parse_null_xml", "jsonl", "copy", "e2e_pg", "agg_catch_up",
        "small_null", "small_null_1thread", "small_pg", "agg_catch_up_small"}
assert want <= set(d["stages"]), set(d["stages"])
for k in want:
    s = d["stages"][k]
    assert len(s["seconds"]) == 2 and all(t > 0 for t in s["seconds"]), (k, s)
    assert s["peak_rss_mb"]["max"] > 0, (k, s)
# the small set's catch-up is timed over what was loaded (the stage fails
# when it folds anything else)
a = d["stages"]["agg_catch_up_small"]
folded = a["records_per_s"]["max"] * min(a["seconds"])
assert abs(folded - c["small"]["records"]) < 0.01 * c["small"]["records"], (a, c["small"])
assert d["ratios"]["agg_small_vs_small_pg"] > 0, d["ratios"]
assert d["ratios"]["jsonl_vs_parse_null"] > 0, d["ratios"]
keys = {t["key"] for t in d["targets"]}
assert {"parse_null_vs_sax", "e2e_vs_ceiling", "small_vs_big", "peak_rss", "parallel"} <= keys, keys
for t in d["targets"]:
    assert isinstance(t["met"], bool) and t["value"] > 0, t
PY
# the generated corpus is kept with --workdir and is the same for the same seed
[ -n "$(ls "$TMP/w/big")" ] && ok || fail "--workdir kept nothing"
"$DP_BIN" bench --runs 1 --big-records 3000 --reports 30 --sink null --workdir "$TMP/w2" > /dev/null 2>&1 ||
  fail "bench --sink null"
cmp -s <(cd "$TMP/w" && find big small -type f -exec md5sum {} + | sort -k2) \
       <(cd "$TMP/w2" && find big small -type f -exec md5sum {} + | sort -k2) && ok ||
  fail "the same seed generated different corpora"
# a mix long enough to run past the clock (its days go on from 2026-01-01,
# seven reports a day): the bench measures generated dates, it does not refuse
# them, and a fresh database gets the partitions of every month it spans
"$DP_BIN" bench --runs 1 --big-records 0 --reports 0 --mix 3500 --sink pg --db "$DP_TEST_DB" \
  --json > "$TMP/m.json" 2> "$TMP/m.err" || fail "bench --mix 3500: $(tail -3 "$TMP/m.err")"
python3 - "$TMP/m.json" <<'PY' && ok || fail "bench --mix 3500 JSON"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["corpus"]["mix"]["reports"] == 3500, d["corpus"]
assert len(d["stages"]["mix_pg"]["seconds"]) == 1, d["stages"]
PY
finish
