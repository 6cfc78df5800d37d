#!/usr/bin/env bash
# The main job. For now: set up, build, and train a small NHWC conv net end to end with the autograd
# engine on a synthetic task (launch/demo.cpp); it runs on the GPU when one is present.
# The training issue replaces this with UniRepLKNet-A on Fashion-MNIST.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${UNIREP_BUILD_DIR:-$root/build}
"$root/launch/setup.sh"
exec "$build_dir/unirep" demo "$@"
