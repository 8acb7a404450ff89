#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A longer fuzzing campaign than CI's 10 s per target (tests/fuzz/). Builds the targets (`cmake --preset fuzz`: clang,
# ASan + UBSan) if needed, fuzzes each for --minutes from a persistent corpus (build-fuzz/long-campaign/<target>,
# seeded from tests/fuzz/corpus), and prints a Markdown table of executions and libFuzzer's coverage counters. With
# --coverage it also replays each campaign corpus through a source-coverage build and reports the line coverage of
# the parsers' headers (llvm-cov). A finding stops nothing: it is saved to build-fuzz/long-campaign/findings/<target>/
# and listed at the end (exit status 1).
#
# Usage: scripts/fuzz.sh [--minutes N] [--jobs J] [--targets a,b,...] [--coverage]
#   --minutes N   per target (default 10)     --jobs J   targets fuzzed at once (default: nproc)
#   --targets     a subset (default: every tests/fuzz/fuzz_*.cpp)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=10 jobs=$(nproc) targets="" coverage=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --targets) targets=${2//,/ }; shift 2 ;;
    --coverage) coverage=1; shift ;;
    *) echo "usage: $0 [--minutes N] [--jobs J] [--targets a,b] [--coverage]" >&2; exit 2 ;;
  esac
done
[ -n "$targets" ] || targets=$(ls tests/fuzz/fuzz_*.cpp | sed 's|.*/fuzz_||; s|\.cpp$||' | tr '\n' ' ')

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz
out=build-fuzz/long-campaign
mkdir -p "$out"
seconds=$(awk -v m="$minutes" 'BEGIN { print int(m * 60) }')
echo "fuzzing $(echo $targets | wc -w) targets for $minutes min each, $jobs at a time (CPU: $(lscpu | sed -n 's/^Model name: *//p'))"

run_one() {
  local t=$1 corpus="$out/$1" findings="$out/findings/$1"
  mkdir -p "$corpus" "$findings"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus/"
  build-fuzz/tests/fuzz/fuzz_"$t" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/" >"$out/$t.log" 2>&1 || true
  echo "$t done"
}
export -f run_one
export out seconds
printf '%s\n' $targets | xargs -P "$jobs" -I{} bash -c 'run_one {}'

declare -A lines
if [ "$coverage" = 1 ]; then
  cmake -S . -B build-fuzz-cov -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ -DMINIBERT_CUDA=OFF \
    -DMINIBERT_BUILD_FUZZERS=ON -DMINIBERT_BUILD_TESTS=OFF -DMINIBERT_BUILD_EXAMPLES=OFF -DMINIBERT_INSTALL=OFF \
    -DMINIBERT_FUZZ_SANITIZERS= "-DCMAKE_CXX_FLAGS=-fprofile-instr-generate -fcoverage-mapping" \
    "-DCMAKE_EXE_LINKER_FLAGS=-fprofile-instr-generate" >/dev/null
  cmake --build build-fuzz-cov
  for t in $targets; do
    bin=build-fuzz-cov/tests/fuzz/fuzz_$t
    if ! LLVM_PROFILE_FILE="$out/$t.profraw" "$bin" -runs=0 "$out/$t" -artifact_prefix="$out/findings/$t/" \
         >"$out/$t.coverage.log" 2>&1; then
      lines[$t]="replay failed: see $out/$t.coverage.log" # a finding of the build without sanitizers
      continue
    fi
    llvm-profdata merge -sparse "$out/$t.profraw" -o "$out/$t.profdata"
    # the library's own headers only (not the target, nlohmann, utf8proc or the standard library)
    lines[$t]=$(llvm-cov report "$bin" -instr-profile="$out/$t.profdata" "$PWD/include/minibert" 2>/dev/null |
                awk '/^TOTAL/ {print $10" ("$8-$9" of "$8" lines)"}')
    # TOTAL's columns: regions, missed, cover; functions, missed, executed; lines ($8), missed ($9), cover ($10)
  done
fi

printf '\n| target | executions | exec/s | cov (edges) | ft (features) | corpus | findings |%s\n' \
  "$([ "$coverage" = 1 ] && echo ' line coverage of include/minibert |')"
printf '|---|---:|---:|---:|---:|---:|---:|%s\n' "$([ "$coverage" = 1 ] && echo '---|')"
status=0
for t in $targets; do
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$out/$t.log" | tail -1 || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$out/$t.log" | tail -1)
  nfind=$(find "$out/findings/$t" -type f | wc -l)
  [ "$nfind" -eq 0 ] || status=1
  printf '| %s | %s | %s | %s | %s | %s | %s |%s\n' "$t" "${execs:-?}" \
    "$(sed -n 's/.*exec\/s: \([0-9]*\).*/\1/p' <<<"$done_line")" "$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$done_line")" \
    "$(sed -n 's/.*ft: \([0-9]*\).*/\1/p' <<<"$done_line")" "$(ls "$out/$t" | wc -l)" "$nfind" \
    "$([ "$coverage" = 1 ] && echo " ${lines[$t]} |")"
done
[ "$status" = 0 ] || { echo; echo "findings:"; find "$out/findings" -type f; }
exit $status
