#!/usr/bin/env bash
# Sets everything up (launch/setup.sh) and runs the whole CTest suite. CUDA tests skip without a GPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${UNIREP_BUILD_DIR:-$root/build}
"$root/launch/setup.sh"
cd "$build_dir"
# Two threads per test and half as many tests at once as cores: OpenMP, OpenBLAS and PyTorch each
# size their pools to every core, and 16 tests x 16 spinning threads starve each other.
threads=${OMP_NUM_THREADS:-2}
jobs=$(( $(nproc) / threads ))
(( jobs >= 1 )) || jobs=1
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
start=$(date +%s)
ctest --output-on-failure --timeout 900 -j "$jobs" "$@"
echo "[test] suite finished in $(( $(date +%s) - start )) s"
