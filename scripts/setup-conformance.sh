#!/usr/bin/env bash
# Create .venv-conformance (repo root, gitignored) with the pinned Autobahn runner
# `kosoku` and the `websockets` library used by the reference testees
# (scripts/reference_echo_server.py, scripts/reference_autobahn_client.py).
# Idempotent: does nothing when the venv already has the pinned versions.
#
#   bash scripts/setup-conformance.sh          # PYTHON=/path/to/python3 to choose the interpreter
set -euo pipefail

KOSOKU_VERSION=0.1.0      # tested: 517 cases, see conformance/NOTES.md
WEBSOCKETS_VERSION=17.4

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv-conformance"

installed() {
    "$venv/bin/python" - "$KOSOKU_VERSION" "$WEBSOCKETS_VERSION" 2>/dev/null <<'PY'
import importlib.metadata as md, sys
try:
    ok = md.version("kosoku") == sys.argv[1] and md.version("websockets") == sys.argv[2]
except md.PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}

if [ -x "$venv/bin/kosoku" ] && installed; then
    echo "setup-conformance: $venv has kosoku $KOSOKU_VERSION, websockets $WEBSOCKETS_VERSION"
    exit 0
fi

if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    # kosoku needs Python >= 3.10 and an interpreter that can make venvs (ensurepip;
    # Debian's /usr/bin/python3 needs the python3-venv package for that)
    python=""
    for candidate in "${PYTHON:-}" python3 /usr/bin/python3; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            python="$candidate"
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "setup-conformance: no python3 >= 3.10 with venv/ensurepip (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    rm -rf "$venv"
    echo "setup-conformance: creating $venv with $python"
    "$python" -m venv "$venv"
fi

echo "setup-conformance: installing kosoku==$KOSOKU_VERSION websockets==$WEBSOCKETS_VERSION"
"$venv/bin/python" -m pip install --disable-pip-version-check --quiet \
    "kosoku==$KOSOKU_VERSION" "websockets==$WEBSOCKETS_VERSION"
installed
"$venv/bin/kosoku" --help >/dev/null
echo "setup-conformance: ready ($venv/bin/kosoku)"
