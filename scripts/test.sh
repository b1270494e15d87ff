#!/usr/bin/env bash
# The project's single test command: formatting, lints, docs, unit/property/integration tests,
# a smoke run of the benchmarks and of every fuzz target, then the Autobahn TestSuite (through
# kosoku) against the tether examples, as a server (echo_server) and as a client
# (autobahn_client), against the gateway's echo route (`tether serve`), and through the
# gateway's proxy route to echo_server.
#
# Installs what it needs on first use: kosoku and Python's websockets in .venv-conformance
# (scripts/setup-conformance.sh), Node's ws for the gateway's peer tests (npm ci in
# crates/tether-gateway/tests/peers), playwright-core for the browser tests (npm ci in
# tests/browser; Chromium itself is Debian's, installed by .ci/run), and cargo-fuzz
# (scripts/fuzz-smoke.sh). Autobahn reports go to target/autobahn/{server,client,gateway,proxy}/.
#
# Environment: FUZZ_SECONDS (per fuzz target, default 15), TETHER_SOAK_SECS (the soak's
# length, default 60; 600 for the ten-minute run). With CI set, the run keeps its disk use low:
# no incremental build caches, and each build tree is deleted once the stages that use it are
# done (target/debug after the soak, fuzz/target after the fuzz smoke run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

low_disk=
if [ -n "${CI:-}" ]; then
    low_disk=1
    # incremental caches only pay off across edits; in CI they were 40% of target/debug
    export CARGO_INCREMENTAL=0
fi
# Prints the disk use of the build trees, and deletes them with CI set.
drop_tree() {
    local dir
    for dir in "$@"; do
        [ -d "$dir" ] || continue
        echo "disk: $dir holds $(du -sh "$dir" | cut -f1); free on its filesystem: $(df -h --output=avail "$dir" | tail -1 | tr -d ' ')"
        if [ -n "$low_disk" ]; then
            rm -rf "$dir"
            echo "disk: deleted $dir (CI)"
        fi
    done
}

section() { printf '\n========== %s ==========\n' "$*"; }
t0=$SECONDS
passed=0
failed=0
failures=()
# Runs one stage; a failing stage is recorded and the next stages still run, so one log shows all.
stage() {
    local name="$1"
    shift
    section "$name"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "stage ok: $name ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "STAGE FAILED: $name ($((SECONDS - start)) s)"
    fi
}

# The gateway's tests run independent peers (tests/peers.rs): Python's websockets from the venv,
# Node's ws from tests/peers/node_modules.
if ! [ -x .venv-conformance/bin/kosoku ]; then
    section "install kosoku and websockets"
    bash scripts/setup-conformance.sh
fi
peers=crates/tether-gateway/tests/peers
if command -v npm >/dev/null && ! [ -f "$peers/node_modules/ws/package.json" ]; then
    section "install the Node test peers"
    (cd "$peers" && npm ci --no-audit --no-fund)
fi
# The pages' tests (tests/browser): playwright-core and ws; Chromium comes from Debian (.ci/run).
if command -v npm >/dev/null && ! [ -f tests/browser/node_modules/playwright-core/package.json ]; then
    section "install the browser tests' packages"
    (cd tests/browser && npm ci --no-audit --no-fund)
fi

stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
stage "cargo doc -D warnings" env RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --quiet
# The hostile-input matrix runs on its own with --nocapture so the log shows its table and
# figures; it holds 3,000 sockets on each side, so it needs more open files than 1024.
# The soak (tests/soak.rs) runs on its own too, for TETHER_SOAK_SECS (default 60), printing
# its figures; the fault tests (tests/faults/) run within cargo test, a few seconds each.
stage "cargo test" cargo test --workspace -- --skip hostile_input --skip soak_churn
stage "hostile input matrix (tether serve)" bash -c \
    'ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"; cargo test --workspace --test hostile -- --nocapture'
stage "Soak (tether serve, ${TETHER_SOAK_SECS:-60} s)" \
    cargo test --workspace --test soak -- --nocapture
# The later stages build release trees only.
drop_tree target/debug
stage "criterion benches (smoke: each once)" cargo bench -p tether-proto --quiet -- --test
stage "fuzz targets (smoke)" bash scripts/fuzz-smoke.sh "${FUZZ_SECONDS:-15}"
drop_tree fuzz/target

section "build release examples and the tether binary for Autobahn"
# target flags apply to every -p: name both kinds so the tether binary is built too
cargo build --release -p tether -p tether-cli --bins --examples

# tether.js unit tests (node --test, ws) and the built-in pages in headless Chromium
# (playwright-core driving /usr/bin/chromium or $CHROMIUM), against target/release/tether.
# They write docs/screenshots/*.png.
stage "tether.js and the pages in headless Chromium (tests/browser)" \
    env TETHER_BIN="$PWD/target/release/tether" \
    bash -c 'cd tests/browser && node --test client.test.mjs pages.test.mjs'

stage "Autobahn TestSuite: tether as server (examples/echo_server)" \
    python3 scripts/autobahn.py server \
    --cmd "target/release/examples/echo_server 127.0.0.1:{port}" \
    --expected conformance/expected-server.json \
    --out target/autobahn/server -p 2
stage "Autobahn TestSuite: tether as client (examples/autobahn_client)" \
    python3 scripts/autobahn.py client \
    --cmd "target/release/examples/autobahn_client {url}" \
    --expected conformance/expected-client.json \
    --out target/autobahn/client
stage "Autobahn TestSuite: the gateway's echo route (tether serve)" \
    python3 scripts/autobahn.py server \
    --cmd "target/release/tether serve --config conformance/gateway-echo.toml --listen 127.0.0.1:{port}" \
    --expected conformance/expected-server.json \
    --out target/autobahn/gateway -p 2 --label autobahn-gateway
stage "Autobahn TestSuite: the gateway's proxy route (tether serve -> examples/echo_server)" \
    python3 scripts/autobahn.py server \
    --upstream-cmd "target/release/examples/echo_server 127.0.0.1:{upstream_port}" \
    --config-template conformance/gateway-proxy.toml \
    --cmd "target/release/tether serve --config {config} --listen 127.0.0.1:{port}" \
    --expected conformance/expected-server.json \
    --out target/autobahn/proxy -p 2 --label autobahn-proxy

section "done in $((SECONDS - t0)) s"
echo "disk: target holds $(du -sh target | cut -f1); free: $(df -h --output=avail . | tail -1 | tr -d ' ')"
for f in "${failures[@]+"${failures[@]}"}"; do
    echo "failed stage: $f"
done
echo "stages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
