#!/usr/bin/env bash
# The long fuzz run of issue #8: each named cargo-fuzz target for a budget of CPU time (not wall
# time), at the lowest CPU priority, so it can run beside other work and only takes idle CPU.
#
#   scripts/fuzz-long.sh [CPU_SECONDS_PER_TARGET] [TARGET...]    (default 3600 s, all targets)
#
# Each target starts from a copy of its committed seed corpus (fuzz/corpus/TARGET). Its
# libFuzzer process is watched: once its user+system CPU time reaches the budget it gets SIGINT
# and prints its final stats. One line per target reports the executions it ran clean, the CPU
# and wall seconds, and the corpus it grew to. With FUZZ_MERGE=1 the inputs that add coverage
# are merged (minimized by libFuzzer's -merge=1) into fuzz/corpus/TARGET, for committing.
#
# Exits non-zero if a target crashed, hit an invariant, timed out on one input (30 s) or ran out
# of memory (2 GiB); the reproducer is kept in $FUZZ_ARTIFACTS (default: a temporary
# directory, printed at the end).
#
# Do not SIGSTOP a running fuzzer to free the CPU for something else: libFuzzer's per-input
# timeout (-timeout=30) runs on wall time, so the input it was on is reported as a timeout.
#
# Environment: FUZZ_SANITIZER (address, the default, or none), FUZZ_ARTIFACTS, FUZZ_MERGE,
# FUZZ_NICE (default 19).
set -euo pipefail

budget="${1:-3600}"
shift || true
if ! [[ "$budget" =~ ^[0-9]+$ ]] || [ "$budget" -lt 1 ]; then
    echo "usage: $0 [CPU_SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sanitizer="${FUZZ_SANITIZER:-address}"
niceness="${FUZZ_NICE:-19}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-long: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tether-fuzz-long.XXXXXX")"
artifacts="${FUZZ_ARTIFACTS:-$work/artifacts}"
mkdir -p "$artifacts"
fuzzer_pid=""
cleanup() {
    if [ -n "$fuzzer_pid" ]; then
        kill "$fuzzer_pid" 2>/dev/null || true
    fi
    if [ -z "${FUZZ_ARTIFACTS:-}" ] && [ -n "$(find "$artifacts" -type f -print -quit)" ]; then
        rm -rf "$work/corpus"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

cd "$root/fuzz"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

echo "fuzz-long: building ${#targets[@]} targets (sanitizer: $sanitizer)" >&2
for target in "${targets[@]}"; do
    if ! cargo fuzz build --sanitizer "$sanitizer" "$target" >"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        echo "fuzz-long: build of $target failed" >&2
        exit 1
    fi
done
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$root/fuzz/target/$triple/release"

# CPU seconds (user + system) that process PID has used, from /proc/PID/stat fields 14 and 15.
cpu_seconds() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # Drop everything up to the command's closing parenthesis: the name may hold spaces.
    set -- ${stat##*") "}
    echo $(((${12} + ${13}) / $(getconf CLK_TCK)))
}

passed=0
failed=0
failed_names=()
for target in "${targets[@]}"; do
    corpus="$work/corpus/$target"
    mkdir -p "$corpus" "$artifacts/$target"
    if [ -d "corpus/$target" ]; then
        cp -R "corpus/$target/." "$corpus/"
    fi
    log="$work/$target.log"
    start=$SECONDS
    # -max_total_time only bounds the wall time (a generous multiple of the CPU budget, in case
    # other work keeps the fuzzer off the CPU); the CPU budget below is what ends the run.
    nice -n "$niceness" "$bin_dir/$target" "$corpus" \
        -max_total_time="$((budget * 20))" \
        -timeout=30 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/$target/" \
        >"$log" 2>&1 &
    fuzzer_pid=$!
    cpu=0
    while kill -0 "$fuzzer_pid" 2>/dev/null; do
        cpu="$(cpu_seconds "$fuzzer_pid" || echo "$cpu")"
        if [ "$cpu" -ge "$budget" ]; then
            kill -INT "$fuzzer_pid"
            break
        fi
        sleep 5
    done
    status=0
    wait "$fuzzer_pid" || status=$?
    fuzzer_pid=""
    wall=$((SECONDS - start))
    runs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)"
    # libFuzzer exits 0 at -max_total_time and 72 when interrupted by SIGINT; either is clean
    # provided it wrote no crash, leak, timeout or out-of-memory report.
    if { [ "$status" -eq 0 ] || [ "$status" -eq 72 ]; } && [ -n "$runs" ] &&
        ! grep -q -E "^==[0-9]+== ?ERROR|deadly signal|panicked at|ALARM: working on the last Unit" "$log"; then
        passed=$((passed + 1))
        files="$(find "$corpus" -type f | wc -l)"
        printf '%-22s ok     %13s executions clean, %s CPU s, %s wall s, corpus %s files\n' \
            "$target" "$runs" "$cpu" "$wall" "$files"
        if [ "${FUZZ_MERGE:-0}" = 1 ]; then
            before="$(find "corpus/$target" -type f | wc -l)"
            mkdir -p "corpus/$target"
            "$bin_dir/$target" -merge=1 "corpus/$target" "$corpus" >"$work/$target.merge.log" 2>&1
            after="$(find "corpus/$target" -type f | wc -l)"
            echo "    merged into fuzz/corpus/$target: $before -> $after files"
        fi
    else
        failed=$((failed + 1))
        failed_names+=("$target")
        printf '%-22s FAILED (exit %s) after %s executions\n' "$target" "$status" "${runs:-?}"
        grep -E -m 5 "panicked at|^thread '|==ERROR|SUMMARY|Test unit written|deadly signal|timeout after|out-of-memory" "$log" | sed 's/^/    /' || true
        cp "$log" "$artifacts/$target/run.log"
    fi
done

if [ "$failed" -gt 0 ]; then
    echo "fuzz-long: failing targets: ${failed_names[*]}; reproducers and logs in $artifacts" >&2
fi
echo "fuzz-long: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
