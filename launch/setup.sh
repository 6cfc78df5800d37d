#!/usr/bin/env bash
# Installs what unirep needs and builds it. Idempotent: packages already present are not asked for
# (the GPU machine has no package registry), and the build is incremental.
#   UNIREP_BUILD_DIR   build folder (default: build/ in the repository)
#   UNIREP_BUILD_TYPE  CMake build type (default: Release)
#   UNIREP_SETUP_FOR   "tests" (default: everything, the PyTorch reference included) or "quickstart"
#                      (what training needs: no PyTorch, only the unirep executable is built)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${UNIREP_BUILD_DIR:-$root/build}
build_type=${UNIREP_BUILD_TYPE:-Release}
setup_for=${UNIREP_SETUP_FOR:-tests}
[[ $setup_for == tests || $setup_for == quickstart ]] || { echo "setup: UNIREP_SETUP_FOR must be tests or quickstart, got '$setup_for'" >&2; exit 2; }

log() { printf '[setup] %s\n' "$*"; }

# Debian/Ubuntu packages the build links against, and the tools it runs. "a|b|c": any one of them
# will do (the first is installed when none is): the libjpeg API comes from libjpeg-dev, Debian's
# libjpeg62-turbo-dev or Ubuntu's libjpeg-turbo8-dev.
libraries=(libopenblas-dev libgtest-dev libhdf5-dev nlohmann-json3-dev "libjpeg-dev|libjpeg62-turbo-dev|libjpeg-turbo8-dev"
           libpng-dev zlib1g-dev libyaml-cpp-dev libopenmpi-dev openmpi-bin)
# Optional: installed when a package registry answers, otherwise a warning (the GPU machine has no registry).
# Each is also present when what it provides is there by other means.
optional=(dataset-fashion-mnist python3-matplotlib)
declare -A optional_use=(
  [dataset-fashion-mnist]="the quickstart needs Fashion-MNIST in /usr/share/datasets/fashion-mnist"
  [python3-matplotlib]="'unirep plot' needs a Python with matplotlib")
provided_otherwise() {
  case $1 in
    dataset-fashion-mnist) [[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]] ;;
    python3-matplotlib)
      for py in python3 /usr/bin/python3; do "$py" -c 'import matplotlib' >/dev/null 2>&1 && return 0; done
      return 1 ;;
    *) return 1 ;;
  esac
}
declare -A tool_package=([cmake]=cmake [ninja]=ninja-build [g++]=g++)

# A library built from source instead of packaged counts as present when its header is there, an MPI
# installed otherwise (the GPU machine's Open MPI, HPC-X) when its compiler wrapper or launcher is on PATH.
# NCCL comes with the CUDA Toolkit or the GPU machine's image (CMake looks next to the toolkit and in /usr).
declare -A package_header=([libyaml-cpp-dev]=yaml-cpp/yaml.h [nlohmann-json3-dev]=nlohmann/json.hpp [libhdf5-dev]=hdf5/serial/hdf5.h)
declare -A package_command=([libopenmpi-dev]=mpicxx [openmpi-bin]=mpirun)
installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed' && return 0
  local command=${package_command[$1]:-}
  [[ -n $command ]] && command -v "$command" >/dev/null 2>&1 && return 0
  local header=${package_header[$1]:-}
  [[ -n $header && ( -f /usr/include/$header || -f /usr/local/include/$header ) ]]
}
missing=()
for entry in "${libraries[@]}"; do
  IFS='|' read -r -a alternatives <<<"$entry"
  found=0
  for pkg in "${alternatives[@]}"; do installed "$pkg" && { found=1; break; }; done
  ((found)) || missing+=("${alternatives[0]}")
done
for tool in "${!tool_package[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${tool_package[$tool]}")
done
# The PyTorch reference tests need a Python with torch and h5py (Debian: python3-torch, python3-h5py;
# the GPU machine's own Python already has them).
has_torch=0
for py in python3 /usr/bin/python3; do
  "$py" -c 'import torch, h5py' >/dev/null 2>&1 && { has_torch=1; break; }
done
[[ $setup_for == quickstart ]] || ((has_torch)) || missing+=(python3-torch python3-h5py)
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; }; then
    echo "setup: could not install ${missing[*]} (no package registry?). Install them and run again." >&2
    exit 1
  fi
else
  log "packages present"
fi
missing_optional=()
for pkg in "${optional[@]}"; do installed "$pkg" || provided_otherwise "$pkg" || missing_optional+=("$pkg"); done
if ((${#missing_optional[@]})); then
  log "installing optional: ${missing_optional[*]}"
  updated=0
  timeout 60 apt-get update -q -o Acquire::Retries=0 -o Acquire::http::Timeout=10 >/dev/null 2>&1 && updated=1
  # One at a time: a package this distribution lacks must not keep the others out.
  for pkg in "${missing_optional[@]}"; do
    if ! ((updated)) || ! DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q --no-install-recommends "$pkg"; then
      echo "setup: warning: could not install $pkg (no package registry?); ${optional_use[$pkg]}" >&2
    fi
  done
fi

nvcc=${CUDACXX:-}
[[ -z $nvcc && -x /usr/local/cuda/bin/nvcc ]] && nvcc=/usr/local/cuda/bin/nvcc
[[ -z $nvcc ]] && nvcc=$(command -v nvcc || true)
if [[ -z $nvcc ]]; then
  echo "setup: the CUDA compiler nvcc was not found (expected /usr/local/cuda/bin/nvcc); install the CUDA Toolkit 13" >&2
  exit 1
fi

launcher=()
command -v ccache >/dev/null 2>&1 && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
if [[ ! -f $build_dir/build.ninja ]]; then
  log "configuring $build_dir ($build_type)"
  mkdir -p "$build_dir"
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" -DCMAKE_CUDA_COMPILER="$nvcc" \
    "${launcher[@]}" >"$build_dir/configure.log" 2>&1 || { cat "$build_dir/configure.log" >&2; exit 1; }
fi
log "building with $(nproc) jobs"
start=$(date +%s)
targets=()
[[ $setup_for == quickstart ]] && targets=(--target unirep)
cmake --build "$build_dir" -j "$(nproc)" "${targets[@]}"
log "built in $(( $(date +%s) - start )) s: $build_dir/unirep"
