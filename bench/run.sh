#!/usr/bin/env bash
# Runs every benchmark workload against Tether and the peers in bench/peers and writes
# docs/PERFORMANCE.md. Options: see `bench/run.py --help` (--quick for short runs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { echo "run.sh: taskset (util-linux) is needed" >&2; exit 2; }
# kosoku, for the Autobahn compression cases
[ -x .venv-conformance/bin/kosoku ] || bash scripts/setup-conformance.sh
exec python3 bench/run.py "$@"
