#!/bin/sh
# unirep against PyTorch on the same model and shapes (issue 7). The real numbers come from the GPU
# machine (PyTorch 2.x + CUDA in /opt/torch/.venv); on a CPU it is a smoke test with tiny shapes.
#
# Times the from-spec PyTorch UniRepLKNet (tests/reference/unireplknet_ref.py) with
# launch/bench_pytorch.py and `build/unirep bench --json` with the same settings:
#   train  bf16 autocast, channels_last, AdamW, --batch x --image-size: ours, eager, torch.compile
#   infer  eval forward, training and deploy structure: ours and eager
# then prints a Markdown table with img/s, the ratios ours / eager and ours / compile, and peak
# memory. --only kernels (part of the default run) times PyTorch's depthwise conv2d at the shapes
# of the first --models variant's blocks. About 4-6 minutes on an H100 with the defaults (compiling
# T takes 1-2 of them).
#
#   launch/bench_vs_pytorch.sh [--models t] [--infer-models t,a,s] [--batch 128] [--image-size 224]
#       [--steps 20] [--warmup 5] [--dtype bf16] [--device cuda] [--only ours,eager,compile,kernels]
#       [--out results.jsonl] [--python EXE] [--unirep EXE]
# CPU smoke test:
#   launch/bench_vs_pytorch.sh --device cpu --models a --infer-models a --image-size 32 --batch 2 \
#       --steps 1 --warmup 1 --dtype f32 --only ours,eager,kernels --python /usr/bin/python3
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
models=t infer_models=t,a,s batch=128 image_size=224 steps=20 warmup=5 dtype=bf16 device=cuda
only=ours,eager,compile,kernels out="" python="" unirep="$root/build/unirep"

usage() {
  sed -n '14,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "bench_vs_pytorch.sh: $1 needs a value (or is unknown)" >&2; usage; }
  case $1 in
    --models) models=$2 ;;
    --infer-models) infer_models=$2 ;;
    --batch) batch=$2 ;;
    --image-size) image_size=$2 ;;
    --steps) steps=$2 ;;
    --warmup) warmup=$2 ;;
    --dtype) dtype=$2 ;;
    --device) device=$2 ;;
    --only) only=$2 ;;
    --out) out=$2 ;;
    --python) python=$2 ;;
    --unirep) unirep=$2 ;;
    *) echo "bench_vs_pytorch.sh: unknown option '$1'" >&2; usage ;;
  esac
  shift 2
done
for part in $(echo "$only" | tr ',' ' '); do
  case $part in
    ours | eager | compile | kernels) ;;
    *) echo "bench_vs_pytorch.sh: --only takes ours, eager, compile, kernels (comma-separated), got '$part'" >&2; exit 2 ;;
  esac
done
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

if [ -z "$python" ]; then
  python=/opt/torch/.venv/bin/python
  [ -x "$python" ] || python=/usr/bin/python3
fi
if wants ours && [ ! -x "$unirep" ]; then
  echo "bench_vs_pytorch.sh: no unirep binary at $unirep (build it, or pass --unirep)" >&2
  exit 1
fi
[ -n "$out" ] || out=$(mktemp /tmp/bench_vs_pytorch.XXXXXX.jsonl)
: > "$out"

shape="--batch $batch --image-size $image_size --steps $steps --warmup $warmup --dtype $dtype"
pytorch="$python $here/bench_pytorch.py $shape --device $device --models $models --infer-models $infer_models"
start=$(date +%s)
stamp() { echo "[$(($(date +%s) - start)) s] $*" >&2; }
# A part that fails leaves its column empty; the others still run and the table still prints.
failed=""
run_part() {
  name=$1
  shift
  "$@" >> "$out" || { failed="$failed $name"; stamp "$name failed (its cells stay '-')"; }
}

if wants ours; then
  for m in $(echo "$models" | tr ',' ' '); do
    stamp "ours: train $m"
    run_part "ours train $m" "$unirep" bench --model "$m" --mode train $shape --device "$device" --json
  done
  for m in $(echo "$infer_models" | tr ',' ' '); do
    stamp "ours: infer $m"
    run_part "ours infer $m" "$unirep" bench --model "$m" --mode infer $shape --device "$device" --json
    run_part "ours infer $m deploy" "$unirep" bench --model "$m" --mode infer --deploy $shape --device "$device" --json
  done
fi
if wants eager; then
  stamp "PyTorch eager"
  run_part "PyTorch eager" $pytorch --part eager
fi
if wants compile; then
  stamp "PyTorch torch.compile (compiling takes a minute or two)"
  run_part "PyTorch compile" $pytorch --part compile
fi
stamp "done; measurements in $out"

echo
echo "UniRepLKNet, unirep vs PyTorch ($($python -c 'import torch; print(torch.__version__)'), $device)"
echo
$python "$here/bench_pytorch.py" --table "$out"
if wants kernels; then
  echo
  $pytorch --part kernels || failed="$failed kernels"
fi
if [ -n "$failed" ]; then
  echo "bench_vs_pytorch.sh: failed:$failed" >&2
  exit 1
fi
