#!/bin/bash
# The requeue path of the real batch template launch/slurm/train.sbatch, on the throw-away single-node
# Slurm of slurm_ci.sh (its functions, its environment variables, its skip rules: exit 77).
#
#   slurm_requeue.sh all CONFIG [--set KEY=VALUE ...]   start + drill + stop (stop always runs)
#   slurm_requeue.sh run CONFIG [--set KEY=VALUE ...]   the drill on a Slurm that slurm_ci.sh start brought up
#
# The drill: CONFIG with the --set keys (SECTION.KEY only) becomes one config file; two jobs of the
# template (sbatch options override its #SBATCH lines: 1 node x 2 tasks, --gpus-per-node=0 since the
# node has no GRES, 1 CPU per task) run it into two run folders. Once the first job's metrics.jsonl
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

derive_config() {  # BASE OUT SECTION.KEY=VALUE...: BASE with those keys replaced, or added to their section
  local base=$1 out=$2 kv
  shift 2
  for kv in "$@"; do
    [[ $kv =~ ^[a-z_]+\.[a-z_]+= ]] || fail "--set $kv: expected SECTION.KEY=VALUE"
  done
  awk -v sets="$(printf '%s\n' "$@")" '
    BEGIN {
      n = split(sets, kv, "\n")
      for (i = 1; i <= n; i++) {
        if (kv[i] == "") continue
        eq = index(kv[i], "="); k = substr(kv[i], 1, eq - 1); dot = index(k, ".")
        val[k] = substr(kv[i], eq + 1); sec[k] = substr(k, 1, dot - 1); name[k] = substr(k, dot + 1); order[++m] = k
      }
    }
    function add_missing(s,   i, k) {
      for (i = 1; i <= m; i++) { k = order[i]; if (sec[k] == s && !(k in done)) { print "  " name[k] ": " val[k]; done[k] = 1 } }
    }
    /^[a-z_]+:/ { add_missing(section); section = substr($1, 1, length($1) - 1); print; next }
    section != "" && /^  [a-z_]+:/ {
      k = section "." substr($1, 1, length($1) - 1)
      if (k in val) { print "  " name[k] ": " val[k]; done[k] = 1; next }
    }
    { print }
    END {
      add_missing(section)
      for (i = 1; i <= m; i++) if (!(order[i] in done)) { print sec[order[i]] ":"; add_missing(sec[order[i]]) }
    }' "$base" >"$out" || fail "cannot write $out"
}

config_value() {  # FILE SECTION.KEY -> the value in a config written by derive_config
  awk -v s="${2%%.*}" -v k="${2#*.}" '/^[a-z_]+:/ { in_s = ($1 == s ":") } in_s && $1 == k ":" { print $2 }' "$1"
}

submit_template() {  # NAME CONFIG RUN_DIR -> job id; the template with CONFIG, RUN_DIR and UNIREP exported
  # the ranks talk through shared memory only (no TCP listener); one thread each on the 2 cores
  CONFIG=$2 RUN_DIR=$3 UNIREP=$UNIREP OMPI_MCA_btl=self,vader OMP_NUM_THREADS=1 in_ns timeout 30 \
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
  local base=$1 sets=() t0=$SECONDS
  shift
  while [ $# -gt 0 ]; do
    [ "$1" = --set ] && [ $# -ge 2 ] || fail "expected --set KEY=VALUE, got '$1'"
    sets+=("$2")
    shift 2
  done
  UNIREP=$(realpath "$UNIREP")
  local config=$D/jobs/requeue.yaml requeued_dir=$D/jobs/run-requeued reference_dir=$D/jobs/run-reference
  rm -rf "$requeued_dir" "$reference_dir"
  derive_config "$base" "$config" "${sets[@]}"
  local total
  total=$(config_value "$config" train.max_steps)
  [[ $total =~ ^[0-9]+$ ]] && [ "$total" -gt "$PROGRESS_STEP" ] ||
    fail "train.max_steps must be set and above PROGRESS_STEP=$PROGRESS_STEP"

  local requeued reference log step state="" stop_step resume_step
  requeued=$(submit_template unirep-requeued "$config" "$requeued_dir")
  reference=$(submit_template unirep-reference "$config" "$reference_dir")
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
  *) echo "usage: $0 run|all CONFIG [--set SECTION.KEY=VALUE ...]" >&2; exit 2 ;;
esac
