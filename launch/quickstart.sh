#!/usr/bin/env bash
# The main job: set up and build, convert Fashion-MNIST (Debian's dataset-fashion-mnist) to shards,
# train UniRepLKNet-A on it (experiments/fashion_mnist/unireplknet_a.yaml: 32x32 input, 1 channel),
# evaluate, plot. Uses the GPU when one is present, the CPU otherwise. The last line printed is the
# `unirep eval --json` object of the final model.
#   UNIREP_CONFIG    training config (default experiments/fashion_mnist/unireplknet_a.yaml)
#   UNIREP_DATA_DIR  shard folder (default data/fashion-mnist; converted once, verified after)
#   UNIREP_RUN_DIR   run folder (default runs/fashion-mnist-a-<date-time>)
#   UNIREP_FASHION_MNIST  the IDX files (default /usr/share/datasets/fashion-mnist)
# Extra arguments go to `unirep train` (e.g. --set train.epochs=1).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${UNIREP_BUILD_DIR:-$root/build}
config=${UNIREP_CONFIG:-$root/experiments/fashion_mnist/unireplknet_a.yaml}
data=${UNIREP_DATA_DIR:-$root/data/fashion-mnist}
run=${UNIREP_RUN_DIR:-$root/runs/fashion-mnist-a-$(date +%Y%m%d-%H%M%S)}
source_dir=${UNIREP_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}

UNIREP_SETUP_FOR=quickstart "$root/launch/setup.sh"
unirep=$build_dir/unirep
start=$(date +%s)

if [[ ! -f $data/manifest.json ]]; then
  if [[ ! -f $source_dir/train-images-idx3-ubyte.gz && ! -f $source_dir/train-images-idx3-ubyte ]]; then
    echo "quickstart: Fashion-MNIST is not in $source_dir: apt-get install dataset-fashion-mnist" >&2
    exit 1
  fi
  "$unirep" data convert fashion-mnist "$source_dir" "$data" --shards 4
fi
"$unirep" data inspect "$data" --verify >/dev/null

"$unirep" train --config "$config" --set data.path="$data" --out "$run" "$@"
if ! "$unirep" plot "$run" >/dev/null; then
  echo "quickstart: no plots (unirep plot needs a Python with matplotlib)" >&2
fi
echo "quickstart: convert + train + eval took $(( $(date +%s) - start )) s"
echo "quickstart: run folder $run (config.yaml, metrics.jsonl, checkpoints/, model.h5), plots in $run/plots"
"$unirep" eval --config "$config" --set data.path="$data" --checkpoint "$run/model.h5" --json
