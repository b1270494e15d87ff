#!/usr/bin/env bash
# Smoke-runs every cargo-fuzz target in fuzz/ for a bounded time each.
#
#   scripts/fuzz-smoke.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, all targets)
#
# Works on stable Rust: cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...), which
# stable rustc accepts with RUSTC_BOOTSTRAP=1. Each target starts from a copy of its committed
# seed corpus (fuzz/corpus/TARGET) in a temporary directory, so nothing is written into the
# repository; crash reproducers are kept in $FUZZ_ARTIFACTS (default: a temporary directory,
# printed at the end).
#
# Prints one line per target with the executions it ran clean (libFuzzer's final `Done N runs`),
# then `fuzz-smoke: N passed, N failed`. Exits non-zero if any target crashed, hit an invariant,
# timed out on one input, ran out of memory, or failed to build.
#
# Environment:
#   FUZZ_SANITIZER   address (default) or none: `none` builds faster and runs ~2x more inputs.
#   FUZZ_ARTIFACTS   where crash reproducers go (default: a new temporary directory).
#   FUZZ_JOBS        cargo build jobs (default: cargo's own default).
set -euo pipefail

seconds="${1:-20}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/tether-fuzz-smoke.XXXXXX")"
artifacts="${FUZZ_ARTIFACTS:-$work/artifacts}"
mkdir -p "$artifacts"
cleanup() {
    # Keep the work directory only when it holds the artifacts.
    if [ -z "${FUZZ_ARTIFACTS:-}" ] && [ -n "$(find "$artifacts" -type f -print -quit)" ]; then
        rm -rf "$work/corpus"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

cd "$fuzz_dir"
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

build_args=(--sanitizer "$sanitizer")
if [ -n "${FUZZ_JOBS:-}" ]; then
    build_args+=(--jobs "$FUZZ_JOBS")
fi
echo "fuzz-smoke: building ${#targets[@]} targets (sanitizer: $sanitizer)" >&2
build() {
    if [ "$#" -gt 0 ]; then
        for target in "$@"; do
            cargo fuzz build "${build_args[@]}" "$target" || return 1
        done
    else
        cargo fuzz build "${build_args[@]}"
    fi
}
if ! build "$@" >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    echo "fuzz-smoke: build failed" >&2
    echo "fuzz-smoke: 0 passed, ${#targets[@]} failed"
    exit 1
fi

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
    status=0
    # -timeout: one input taking longer than 30 s is a finding (a hang), not a slow run.
    # The outer timeout only guards against libFuzzer itself not stopping.
    timeout --kill-after=30 "$((seconds + 300))" \
        cargo fuzz run "${build_args[@]}" "$target" "$corpus" -- \
        -max_total_time="$seconds" \
        -timeout=30 \
        -rss_limit_mb=2048 \
        -print_final_stats=1 \
        -artifact_prefix="$artifacts/$target/" \
        >"$log" 2>&1 || status=$?
    runs="$(sed -n 's/^Done \([0-9][0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)"
    if [ "$status" -eq 0 ] && [ -n "$runs" ]; then
        passed=$((passed + 1))
        printf '%-22s ok     %12s executions clean in %ss\n' "$target" "$runs" "$seconds"
    else
        failed=$((failed + 1))
        failed_names+=("$target")
        printf '%-22s FAILED (exit %s) after %s executions\n' "$target" "$status" "${runs:-?}"
        # The panic message or sanitizer report, and the reproducer's path.
        grep -E -m 5 "panicked at|^thread '|==ERROR|SUMMARY|Test unit written|deadly signal|timeout after|out-of-memory" "$log" | sed 's/^/    /' || true
        grep -A 1 -m 1 "panicked at" "$log" | tail -n 1 | sed 's/^/    /' || true
        cp "$log" "$artifacts/$target/run.log"
    fi
done

if [ "$failed" -gt 0 ]; then
    echo "fuzz-smoke: failing targets: ${failed_names[*]}; reproducers and logs in $artifacts" >&2
    echo "fuzz-smoke: reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer TARGET ARTIFACT" >&2
fi
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
