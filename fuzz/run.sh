#!/usr/bin/env bash
# Runs every fuzz target (cargo-fuzz / libFuzzer, built with the stable
# toolchain: -s none) starting from its seed corpus in fuzz/seeds/ (a
# sample of the corpora of 12-million-run sessions, merged with -merge=1).
#
#   fuzz/run.sh                 # 20 s per target (what CI does)
#   fuzz/run.sh -runs=12000000  # extra libFuzzer flags, e.g. a long run
#
# Installs cargo-fuzz if missing. Fails when a target fails (libFuzzer's
# exit status: a crash, a leak, a timeout, an out-of-memory, or a target
# that would not start), printing the end of its output; a crash's input
# is left in fuzz/artifacts/<target>/, which is emptied before each run so
# that an old artifact never fails a new run.
set -euo pipefail
cd "$(dirname "$0")"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(-max_total_time=20)

cargo fuzz build -s none
log=$(mktemp)
trap 'rm -f "$log"' EXIT
failed=()
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    rm -rf "artifacts/$target"
    echo "== fuzz $target ${flags[*]}"
    status=0
    cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
        -rss_limit_mb=4096 -print_final_stats=1 "${flags[@]}" >"$log" 2>&1 || status=$?
    grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==|thread '|SUMMARY|Failing input|Test unit written)" "$log" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz $target failed (exit status $status); the end of its output:" >&2
        tail -40 "$log" >&2
        if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
            echo "failing input: $(ls "artifacts/$target")" >&2
        fi
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz/run.sh: ${failed[*]} failed" >&2
    exit 1
fi
echo "fuzz/run.sh: every target ran clean"
