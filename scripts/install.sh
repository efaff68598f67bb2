#!/usr/bin/env bash
# Install photo-engine and its test tools into a virtual environment. Offline-safe: no model downloads.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Pin torch <= 2.14.1 so pip never pulls a newer multi-GB CUDA build (see DESIGN.md, Environment).
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
