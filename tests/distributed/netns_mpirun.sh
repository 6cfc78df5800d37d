#!/bin/sh
# Runs `mpirun -np N PROGRAM ARGS...` inside a private network namespace that has only loopback:
# mpirun's out-of-band channel and the tcp transport bind 0.0.0.0 whatever their interface options
# say, and nothing may listen beyond loopback. Exits 77 (CTest: skipped) where unshare --net is
# not permitted.
#   netns_mpirun.sh N PROGRAM [ARGS...]
set -eu
np=$1
shift
if ! unshare --net true 2>/dev/null; then
  echo "netns_mpirun: unshare --net is not permitted here: skipped"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
here=$(cd "$(dirname "$0")" && pwd)
exec unshare --net sh -c '"$0" && np=$1 && shift && exec mpirun -np "$np" --oversubscribe --mca btl self,tcp \
  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo "$@"' "$here/loopback_up.sh" "$np" "$@"
