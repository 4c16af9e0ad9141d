#!/usr/bin/env bash
# Runs every fuzz target (cargo-fuzz / libFuzzer, built with the stable
# toolchain: -s none) starting from its seed corpus in fuzz/seeds/ (a
# sample of the corpora of 12-million-run sessions, merged with -merge=1).
#
#   fuzz/run.sh                 # 20 s per target (what CI does)
#   fuzz/run.sh -runs=12000000  # extra libFuzzer flags, e.g. a long run
#
# Installs cargo-fuzz if missing. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script fail.
set -euo pipefail
cd "$(dirname "$0")"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(-max_total_time=20)

cargo fuzz build -s none
for target in decode dispatch native native_gpu admin; do
    mkdir -p "corpus/$target"
    echo "== fuzz $target ${flags[*]}"
    cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
        -rss_limit_mb=4096 -print_final_stats=1 "${flags[@]}" 2>&1 \
        | grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==|thread '|SUMMARY|Failing input|Test unit written)" || true
    if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "fuzz $target found a failing input: $(ls "artifacts/$target")" >&2
        exit 1
    fi
done
