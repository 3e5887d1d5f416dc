#!/usr/bin/env bash
# Builds attnc and runs every test suite (lit + GoogleTest + numerics).
# Usage: scripts/test.sh [build-dir]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build}"
JOBS="${JOBS:-2}"

bash scripts/setup.sh
cmake -G Ninja -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
start=$(date +%s)
cmake --build "$BUILD_DIR" -j "$JOBS"
echo "build: $(( $(date +%s) - start )) s"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS"
