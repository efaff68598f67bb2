#!/usr/bin/env bash
# Build llama-cpp-python once into a wheel cache that installs and CI reuse; does nothing if the wheel exists.
#
# Why: the default native build segfaults on quantized GGUFs on these CPUs (AMX path), so it is built with
# portable AVX2 flags, and never through pip's cache (a crashing wheel may sit there). See DESIGN.md.
#
#   scripts/build_llama_wheel.sh            # prints the wheel path
#   PYTHON=.venv/bin/python LLAMA_CPP_VERSION=0.3.36 scripts/build_llama_wheel.sh
set -euo pipefail

VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
WHEELS="${PHOTO_ENGINE_WHEELS:-$HOME/.cache/photo-engine/wheels}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"

find_wheel() { ls "$WHEELS"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n 1; }

mkdir -p "$WHEELS"
wheel="$(find_wheel || true)"
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $VERSION (portable AVX2, 4-6 minutes on 2 cores) into $WHEELS" >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    "$PYTHON" -m pip wheel --no-cache-dir --no-deps -w "$WHEELS" "llama-cpp-python==$VERSION" >&2
  wheel="$(find_wheel)"
fi
[ -n "$wheel" ] || { echo "error: no llama-cpp-python $VERSION wheel in $WHEELS" >&2; exit 1; }
echo "$wheel"
