#!/bin/bash
# The requeue path of the real batch template launch/slurm/train.sbatch, on the throw-away single-node
# Slurm of slurm_ci.sh (its functions, its environment variables, its skip rules: exit 77).
#
#   slurm_requeue.sh all CONFIG --set train.max_steps=N [--set KEY=VALUE ...]   start + drill + stop (stop always runs)
#   slurm_requeue.sh run CONFIG --set train.max_steps=N [--set KEY=VALUE ...]   the drill on a Slurm that
#                                                                                slurm_ci.sh start brought up
#
# The drill: two jobs of the template (sbatch options override its #SBATCH lines: 1 node x 2 tasks,
# --gpus-per-node=0 since the node has no GRES, 1 CPU per task) train CONFIG with the --set keys (passed
# through the template's ARGS; train.max_steps must be among them) into two run folders. Once the first job's metrics.jsonl
# shows step PROGRESS_STEP, `scancel --signal=USR1 --batch` does what `--signal=B:USR1@120` does near
# the time limit: the template's handler runs `scontrol requeue`, Slurm SIGTERMs the tasks, the trainer
# stops at the next step with a checkpoint of it and the job starts again (restart 1) from there.
# The second job runs undisturbed (it takes the node while the first waits to restart). Checks:
# both COMPLETED; the first job's log has "restart 1", "SIGTERM received: stopping at step N" (N > 0),
# ranks exiting 143 and "resumed from ... step N" with that same N; its metrics.jsonl step records are
# exactly 1..train.max_steps (no replayed or missing step); its model.h5 equals the second job's byte
# for byte (with 2 ranks every all-reduce is a + b, the same whatever the order, and the data order,
# augmentation and drop-path draws are part of the checkpoint, so nothing may differ).
#
# Environment: SLURM_CI_DIR, SLURM_CI_UNIREP, SLURM_CI_JOB_TIMEOUT as for slurm_ci.sh;
# PROGRESS_STEP (default 6: past the first periodic checkpoint of checkpoint.every_steps 4, so that a
# resume from the periodic checkpoint instead of the stop checkpoint shows).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=slurm_ci.sh
. "$here/slurm_ci.sh"
TEMPLATE=$(realpath "$here/../../launch/slurm/train.sbatch")
PROGRESS_STEP=${PROGRESS_STEP:-6}

submit_template() {  # NAME CONFIG RUN_DIR ARGS -> job id; the template with CONFIG, RUN_DIR, ARGS and UNIREP exported
  # the ranks talk through shared memory only (no TCP listener); one thread each on the 2 cores
  CONFIG=$2 RUN_DIR=$3 ARGS=$4 UNIREP=$UNIREP OMPI_MCA_btl=self,vader OMP_NUM_THREADS=1 in_ns timeout 30 \
    sbatch --parsable --job-name="$1" --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 \
    --chdir="$D/jobs" --output="$D/jobs/%x-%j.out" "$TEMPLATE" || fail "sbatch of $TEMPLATE failed"
}

last_step() {  # RUN_DIR -> the newest step record's step in its metrics.jsonl
  grep '"kind":"step"' "$1/metrics.jsonl" 2>/dev/null | tail -n 1 | sed -n 's/.*"step":\([0-9]*\).*/\1/p'
}

check() {  # WHAT CONDITION...: counts a failed check
  local what=$1
  shift
  if "$@"; then say "ok: $what"; else say "FAILED: $what"; failures=$((failures + 1)); fi
}

do_drill() {
  [ $# -ge 1 ] || fail "needs a config"
  [ -x "$UNIREP" ] || fail "no unirep binary at $UNIREP (set SLURM_CI_UNIREP)"
  local config=$(realpath "$1") args="" total="" t0=$SECONDS
  shift
  while [ $# -gt 0 ]; do
    [ "$1" = --set ] && [ $# -ge 2 ] && [[ $2 != *" "* ]] || fail "expected --set KEY=VALUE (no spaces), got '$1 ${2:-}'"
    args+=" --set $2"
    [[ $2 == train.max_steps=* ]] && total=${2#*=}
    shift 2
  done
  UNIREP=$(realpath "$UNIREP")
  local requeued_dir=$D/jobs/run-requeued reference_dir=$D/jobs/run-reference
  rm -rf "$requeued_dir" "$reference_dir"
  [[ $total =~ ^[0-9]+$ ]] && [ "$total" -gt "$PROGRESS_STEP" ] ||
    fail "--set train.max_steps=N is needed, above PROGRESS_STEP=$PROGRESS_STEP"

  local requeued reference log step state="" stop_step resume_step
  requeued=$(submit_template unirep-requeued "$config" "$requeued_dir" "$args")
  reference=$(submit_template unirep-reference "$config" "$reference_dir" "$args")
  log=$D/jobs/unirep-requeued-$requeued.out
  say "job $requeued (to be requeued) and job $reference (reference): $TEMPLATE, $total steps each"
  for _ in $(seq $((JOB_TIMEOUT * 10))); do
    step=$(last_step "$requeued_dir")
    [ "${step:-0}" -ge "$PROGRESS_STEP" ] && break
    state=$(job_state "$requeued")
    job_ended "$state" && break
    sleep 0.1
  done
  [ "${step:-0}" -ge "$PROGRESS_STEP" ] || { cat "$log" 2>/dev/null; fail "job $requeued did not reach step $PROGRESS_STEP ($state)"; }
  say "job $requeued at step $step: scancel --signal=USR1 --batch (what --signal=B:USR1@120 sends near the time limit)"
  in_ns timeout 10 scancel --signal=USR1 --batch "$requeued" || fail "scancel --signal=USR1 failed"

  local requeued_state reference_state
  requeued_state=$(wait_job "$requeued")
  reference_state=$(wait_job "$reference")
  say "job $requeued: $requeued_state, job $reference: $reference_state, $((SECONDS - t0)) s after the first sbatch"
  echo "----- $log"
  cat "$log" 2>/dev/null
  echo "----- end of $log"

  failures=0
  stop_step=$(sed -n 's/.*SIGTERM received: stopping at step \([0-9]*\) .*/\1/p' "$log" | head -n 1)
  resume_step=$(sed -n 's/^resumed from .*: step \([0-9]*\), epoch .*/\1/p' "$log" | head -n 1)
  local steps expected
  steps=$(grep '"kind":"step"' "$requeued_dir/metrics.jsonl" 2>/dev/null | sed -n 's/.*"step":\([0-9]*\).*/\1/p' | tr '\n' ' ')
  expected=$(seq -s ' ' 1 "$total")' '
  check "both jobs COMPLETED" [ "${requeued_state%% *} ${reference_state%% *}" = "COMPLETED COMPLETED" ]
  check "the template's handler requeued the job" grep -q "time limit near, requeueing" "$log"
  check "restart 1 of the same job id" grep -q "^job $requeued (restart 1) on " "$log"
  check "the trainer stopped at a step (SIGTERM) after step $step" [ "${stop_step:-0}" -ge "$step" ]
  check "both ranks exited 128 + SIGTERM" grep -q "tasks 0-1: Exited with exit code 143" "$log"
  check "restart 1 resumed from the stop checkpoint, step ${stop_step:-?}" [ "${resume_step:-none}" = "${stop_step:-unset}" ]
  check "the second run ended at step $total" grep -q "^run folder $requeued_dir: $total steps" "$log"
  check "metrics.jsonl step records exactly 1..$total (no step replayed or lost)" [ "$steps" = "$expected" ]
  check "model.h5 equals the uninterrupted job's byte for byte" cmp "$requeued_dir/model.h5" "$reference_dir/model.h5"
  [ "$failures" = 0 ] || {
    say "step records: $steps"
    cat "$D/jobs/unirep-reference-$reference.out" 2>/dev/null
    tail -n 20 "$D"/log/slurm*.log >&2
    return 1
  }
  say "requeue drill passed in $((SECONDS - t0)) s: stopped at step $stop_step, resumed there, $total steps, weights bitwise equal"
}

case ${1:-} in
  run) shift; do_drill "$@" ;;
  all)
    shift
    trap do_stop EXIT
    do_start
    do_drill "$@"
    ;;
  *) echo "usage: $0 run|all CONFIG --set train.max_steps=N [--set KEY=VALUE ...]" >&2; exit 2 ;;
esac
