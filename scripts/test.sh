#!/usr/bin/env bash
# The project's single test command: formatting, lints, unit/integration tests,
# then the Autobahn TestSuite (through kosoku) against the tether examples, as a
# server (echo_server) and as a client (autobahn_client).
#
# Needs kosoku in .venv-conformance (scripts/setup-conformance.sh; run here if missing).
# Autobahn reports go to target/autobahn/{server,client}/ (index.html to browse).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n========== %s ==========\n' "$*"; }
t0=$SECONDS

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo test"
cargo test --workspace

section "build release examples for Autobahn"
cargo build --release -p tether --examples

if ! [ -x .venv-conformance/bin/kosoku ]; then
    section "install kosoku"
    bash scripts/setup-conformance.sh
fi

# Both runs go ahead even if the first fails, so one CI log shows both.
status=0

section "Autobahn TestSuite: tether server (examples/echo_server)"
python3 scripts/autobahn.py server \
    --cmd "target/release/examples/echo_server 127.0.0.1:{port}" \
    --expected conformance/expected-server.json \
    --out target/autobahn/server -p 2 || status=1

section "Autobahn TestSuite: tether client (examples/autobahn_client)"
python3 scripts/autobahn.py client \
    --cmd "target/release/examples/autobahn_client {url}" \
    --expected conformance/expected-client.json \
    --out target/autobahn/client || status=1

section "done in $((SECONDS - t0)) s"
exit "$status"
