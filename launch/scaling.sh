#!/bin/bash
# Weak scaling of data-parallel training on the GPUs of one machine: `unirep bench` (synthetic data,
# the trainer's step: autocast forward, loss, backward with the bucketed NCCL all-reduce, AdamW) at
# 1, 2, 4, 8 GPUs (as many as there are), a fixed batch per GPU, each world size also with
# --no-comm (no all-reduce: each rank steps on its own gradients) to show how much communication
# the overlap with backward leaves exposed; then NCCL all-reduce bandwidth (dist-check
# --bandwidth) at the largest world size. Prints a Markdown table.
#
#   launch/scaling.sh [--model t] [--batch 128] [--dtype bf16] [--steps 20] [--gpus "1 2 4 8"]
#
# mpirun runs in a loopback-only network namespace (tests/distributed/netns_mpirun.sh): NCCL talks
# over NVLink/PCIe, its bootstrap over loopback. NVLink SHARP (multicast) stays off.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
UNIREP=${UNIREP:-$here/build/unirep}
model=t batch=128 dtype=bf16 steps=20 gpus=""
while [ $# -gt 0 ]; do
  case $1 in
    --model) model=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --dtype) dtype=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    *) echo "scaling.sh: unknown option '$1' (--model, --batch, --dtype, --steps, --gpus)" >&2; exit 2 ;;
  esac
done
available=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
[ "${available:-0}" -ge 1 ] || { echo "scaling.sh: no NVIDIA GPU here" >&2; exit 1; }
if [ -z "$gpus" ]; then
  for n in 1 2 4 8; do [ "$n" -le "$available" ] && gpus="$gpus $n"; done
fi
export NCCL_NVLS_ENABLE=0 NCCL_SOCKET_IFNAME=lo OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

bench() {  # N [extra args] -> the JSON line of rank 0
  local n=$1
  shift
  local args=(bench --model "$model" --mode train --batch "$batch" --dtype "$dtype" --steps "$steps" --json "$@")
  if [ "$n" -eq 1 ]; then
    "$UNIREP" "${args[@]}"
  else
    "$here/tests/distributed/netns_mpirun.sh" "$n" "$UNIREP" "${args[@]}"
  fi | grep '^{' | tail -1
}

for n in $gpus; do
  echo "scaling: $n GPU(s), with and without communication" >&2
  bench "$n" >"$out/comm_$n.json"
  bench "$n" --no-comm >"$out/nocomm_$n.json"
done

python3 - "$out" "$model" "$batch" "$dtype" $gpus <<'PY'
import json, sys
out, model, batch, dtype, *gpus = sys.argv[1:]
rows = []
base = None
for n in map(int, gpus):
    c = json.load(open(f"{out}/comm_{n}.json"))
    q = json.load(open(f"{out}/nocomm_{n}.json"))
    if base is None:
        base = c["img_per_s"] / n
    eff = c["img_per_s"] / (n * base)
    exposed = c["ms_per_step"] - q["ms_per_step"]
    rows.append((n, c["img_per_s"], c["img_per_s"] / n, eff, c["ms_per_step"], q["ms_per_step"], exposed,
                 c.get("peak_mem_bytes", 0) / 2**30, c.get("device", "?")))
print(f"\nWeak scaling, UniRepLKNet-{model.upper()} training, {dtype}, batch {batch} per GPU, on {rows[0][8]}\n")
print("| GPUs | img/s | img/s per GPU | efficiency | ms/step | ms/step without all-reduce | exposed comm ms | peak GiB |")
print("|---|---|---|---|---|---|---|---|")
for n, ips, per, eff, ms, ms_nc, exp, mem, _ in rows:
    print(f"| {n} | {ips:.0f} | {per:.0f} | {eff*100:.1f}% | {ms:.1f} | {ms_nc:.1f} | {exp:.1f} | {mem:.1f} |")
PY

last=${gpus##* }
if [ "$last" -gt 1 ]; then
  echo
  echo "NCCL all-reduce bandwidth, $last GPUs:"
  "$here/tests/distributed/netns_mpirun.sh" "$last" "$UNIREP" dist-check --backend nccl --bandwidth
fi
