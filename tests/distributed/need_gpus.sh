#!/bin/sh
# Runs COMMAND when this machine has at least N NVIDIA GPUs, else exits 77 (CTest: skipped).
#   need_gpus.sh N COMMAND [ARGS...]
set -u
need=$1
shift
have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "${have:-0}" -lt "$need" ]; then
  echo "need_gpus: $need GPUs needed, ${have:-0} here: skipped"
  exit 77
fi
exec "$@"
