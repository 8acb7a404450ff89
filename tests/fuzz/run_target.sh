#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one libFuzzer target (tests/fuzz/CMakeLists.txt):
#   run_target.sh replay BIN TARGET SRC_DIR                    every file of SRC_DIR/{corpus,regressions}/TARGET once
#   run_target.sh fuzz   BIN TARGET SRC_DIR WORK_DIR SECONDS   fuzz from a fresh copy of the seeds; findings go to
#                                                              WORK_DIR/findings/TARGET/
set -euo pipefail
mode=$1 bin=$2 target=$3 src=$4
case "$mode" in
  replay)
    mapfile -t files < <(find "$src/corpus/$target" "$src/regressions/$target" -type f 2>/dev/null | sort)
    [ "${#files[@]}" -gt 0 ] || { echo "no seeds for $target in $src/corpus/$target"; exit 1; }
    echo "replaying ${#files[@]} inputs"
    exec "$bin" -rss_limit_mb=2048 -timeout=30 "${files[@]}"
    ;;
  fuzz)
    work=$5 seconds=$6
    corpus="$work/campaign/$target" findings="$work/findings/$target"
    rm -rf "$corpus"
    mkdir -p "$corpus" "$findings"
    cp "$src/corpus/$target"/* "$corpus/"
    # -max_len 65536: long enough for any structure the parsers know (the reproducers, some 200 KB, are replayed
    # above); -timeout 10: an input that takes longer is a finding (a hang); -rss_limit_mb 2048: so is a parser that
    # needs more memory than that on an input of at most 64 KiB
    exec "$bin" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$findings/"
    ;;
  *) echo "usage: $0 replay|fuzz BIN TARGET SRC_DIR [WORK_DIR SECONDS]" >&2; exit 2 ;;
esac
