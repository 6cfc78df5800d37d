#!/usr/bin/env bash
# Issue 7's small-model comparison, side by side on one machine: UniRepLKNet-A training epochs on
# Fashion-MNIST (32x32, batch 128, data loading included) with `unirep train` and with eager PyTorch
# (launch/fashion_mnist_pytorch.py: the reference model, a DataLoader doing the same shift and flip).
# Prints both epoch times and the ratio.
#
#   launch/fashion_mnist_vs_pytorch.sh [--epochs 2] [--dtype f32|bf16] [--workers 4] [--python EXE] [--limit N]
# (--limit: N images a side, for a smoke test on a CPU)
#   UNIREP_FASHION_MNIST  the IDX files (default /usr/share/datasets/fashion-mnist)
#   UNIREP_DATA_DIR       shard folder for ours (default data/fashion-mnist; converted when missing)
#
# Ours: the quickstart config with its eval turned off until the end, the train loop's img/s from
# result.json (all epochs, the first one's warm-up included). PyTorch: its last epoch (the first pays
# cuDNN's autotuning and the workers' start).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
epochs=2 dtype=f32 workers=4 python=/opt/torch/.venv/bin/python limit=0
while [ $# -gt 0 ]; do
  case $1 in
    --epochs) epochs=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    *) echo "fashion_mnist_vs_pytorch.sh: unknown option '$1' (--epochs, --dtype, --workers, --python, --limit)" >&2
       exit 2 ;;
  esac
done
case $dtype in
  f32) precision=float32 ;;
  bf16) precision=bfloat16 ;;
  *) echo "fashion_mnist_vs_pytorch.sh: --dtype takes f32 or bf16, got '$dtype'" >&2; exit 2 ;;
esac
[ -x "$python" ] || python=/usr/bin/python3
source_dir=${UNIREP_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
data=${UNIREP_DATA_DIR:-$root/data/fashion-mnist}
unirep=$root/build/unirep
[ -x "$unirep" ] || { echo "fashion_mnist_vs_pytorch.sh: build first (launch/setup.sh)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

limit_ours=() limit_theirs=()
if [ "$limit" -gt 0 ]; then
  limit_ours=(--set train.max_steps=$((limit * epochs / 128)))
  limit_theirs=(--limit "$limit")
fi
[ -f "$data/manifest.json" ] || "$unirep" data convert fashion-mnist "$source_dir" "$data" --shards 4
"$unirep" train --config "$root/experiments/fashion_mnist/unireplknet_a.yaml" --set data.path="$data" \
  --set train.epochs="$epochs" --set train.eval_every_epochs=0 --set data.num_workers="$workers" \
  --set precision.dtype="$precision" --set logging.progress=false "${limit_ours[@]}" --out "$out/ours" > "$out/ours.log"
"$python" "$root/launch/fashion_mnist_pytorch.py" --data "$source_dir" --epochs "$epochs" --dtype "$dtype" \
  --workers "$workers" "${limit_theirs[@]}" > "$out/pytorch.jsonl"

"$python" - "$out/ours/result.json" "$out/pytorch.jsonl" "$dtype" <<'PY'
import json, sys
ours = json.load(open(sys.argv[1]))
theirs = [json.loads(line) for line in open(sys.argv[2]) if line.startswith("{")]
last = theirs[-1]
ours_epoch = last["images"] / ours["train_images_per_second"]
print(f"UniRepLKNet-A, Fashion-MNIST 32x32, batch 128, {sys.argv[3]}, {last['device']} (torch {last['torch']})")
print("| | img/s | s per epoch |")
print("|---|---|---|")
print(f"| unirep train | {ours['train_images_per_second']:.0f} | {ours_epoch:.1f} |")
print(f"| PyTorch eager, last epoch | {last['img_per_s']:.0f} | {last['seconds']:.1f} |")
print(f"ours / PyTorch: {last['seconds'] / ours_epoch:.2f}x (final test top-1 of ours: {ours['eval']['top1']:.4f})")
PY
