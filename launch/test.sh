#!/usr/bin/env bash
# Sets everything up (launch/setup.sh) and runs the whole CTest suite. CUDA tests skip without a GPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${UNIREP_BUILD_DIR:-$root/build}
"$root/launch/setup.sh"
cd "$build_dir"
start=$(date +%s)
ctest --output-on-failure --timeout 600 -j "$(nproc)" "$@"
echo "[test] suite finished in $(( $(date +%s) - start )) s"
