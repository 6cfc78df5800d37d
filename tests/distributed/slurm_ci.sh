#!/bin/bash
# A throw-away single-node Slurm (Debian's slurm-wlm 22.05 + munge) for CI, run by root without systemd
# or cgroups, everything listening on loopback only inside a private network namespace; then a 2-task
# `srun --mpi=pmix unirep train` batch job on it.
#
#   slurm_ci.sh install                   apt-get slurmctld slurmd slurm-client munge (skipped if present)
#   slurm_ci.sh start                     config, munged, slurmctld, slurmd; waits until the node is idle
#   slurm_ci.sh submit CONFIG [ARGS...]   sbatch `srun --mpi=pmix -n 2 unirep train --config CONFIG ARGS...`,
#                                         waits (bounded) for the job, prints its output; rc 0 iff COMPLETED
#   slurm_ci.sh stop                      cancel jobs, stop the daemons, delete state and the namespace
#   slurm_ci.sh all CONFIG [ARGS...]      install + start + submit + stop (stop always runs)
#
# Sourced (slurm_requeue.sh), it only defines its functions.
#
# Exits 77 (CTest: skipped) where this cannot work: not root, packages missing and not installable,
# no network namespaces, or a host name that does not resolve to 127.x.
#
# Environment: SLURM_CI_DIR (state, default /tmp/unirep-slurm-ci), SLURM_CI_UNIREP (the binary,
# default build/unirep of this checkout), SLURM_CI_JOB_TIMEOUT (seconds, default 240).
#
# Why the unusual settings (all found the hard way, /work/shared/notes/stack.md section 3):
# - only the network namespace is switched (nsenter --net): `ip netns exec` remounts /sys, hiding
#   /sys/fs/cgroup, and slurmd 22.05 dies initialising its cgroup plugin even with cgroups unused;
# - lo gets a second address 127.0.0.2: getaddrinfo(AI_ADDRCONFIG) finds no IPv4 host when 127.0.0.1 is
#   the only address, and Slurm then resolves no name at all;
# - CommunicationParameters=NoCtldInAddrAny,NoInAddrAny: daemons, srun and slurmstepd bind what the host
#   name resolves to instead of 0.0.0.0, so the host name must resolve to 127.x;
# - the node is called localhost (slurmd -N localhost), not the machine's host name;
# - liveness is read from ps (a killed daemon is a zombie for seconds here and kill -0 succeeds on it)
#   and every client call is bounded by timeout (they retry an absent controller for minutes);
# - jobs are polled with scontrol (sbatch --wait reports seconds late and can hang forever);
# - AuthInfo cred_expire=5 (default 120): a requeued job may start again only cred_expire + 1 s after
#   the requeue (its BeginTime; measured: 121 s by default, 6 s with 5);
# - batch_sched_delay=0: every batch job but the first starts in about 1 s instead of up to 3 s.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
D=${SLURM_CI_DIR:-/tmp/unirep-slurm-ci}
UNIREP=${SLURM_CI_UNIREP:-$here/../../build/unirep}
JOB_TIMEOUT=${SLURM_CI_JOB_TIMEOUT:-240}
CRED_EXPIRE=5   # seconds; a requeued job waits this + 1 before it may start again (default 120)
NS=unirep-slurm-$(printf %s "$D" | cksum | cut -d' ' -f1)   # one namespace per state folder
export SLURM_CONF=$D/etc/slurm.conf

say() { printf '[slurm_ci %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { say "error: $*"; exit 1; }
skip() { say "skipped: $*"; exit 77; }
in_ns() { nsenter --net="/run/netns/$NS" -- "$@"; }
# shellcheck source=daemons.sh
. "$here/daemons.sh"

installed() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } >/dev/null

do_install() {
  installed && return 0
  [ "$(id -u)" = 0 ] || skip "Slurm is not installed and installing it needs root"
  say "installing slurmctld slurmd slurm-client munge"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge \
    >"${TMPDIR:-/tmp}/slurm_ci_apt.log" 2>&1 || skip "apt-get install failed (${TMPDIR:-/tmp}/slurm_ci_apt.log)"
  installed || skip "Slurm still missing after apt-get"
}

check_prerequisites() {
  [ "$(id -u)" = 0 ] || skip "the daemons run as root here"
  command -v ip >/dev/null && command -v nsenter >/dev/null || skip "needs ip and nsenter"
  local addr
  addr=$(getent ahostsv4 "$(hostname)" | awk 'NR == 1 { print $1 }')
  [[ $addr == 127.* ]] || skip "host name $(hostname) resolves to '$addr', not 127.x"
}

write_config() {
  mkdir -p "$D"/{etc,log,run,jobs,spool/slurmd,spool/slurmctld,munge}
  chmod 755 "$D" "$D/munge"   # munged insists that every user may traverse its socket folder
  # the node's layout as slurmd measures it (RealMemory left out: more than measured drains the node)
  local node
  node=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
  cat >"$SLURM_CONF" <<CONF
ClusterName=unirepci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.sock,cred_expire=$CRED_EXPIRE
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$D/spool/slurmctld
SlurmdSpoolDir=$D/spool/slurmd
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
MailProg=/bin/true
ReturnToService=2
KillWait=5
NodeName=localhost NodeHostname=localhost NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

do_stop() {
  if [ -e "/run/netns/$NS" ] && [ -f "$D/run/slurmctld.pid" ] && running "$(cat "$D/run/slurmctld.pid")"; then
    in_ns timeout 10 scancel --quiet --user=root 2>/dev/null
    for _ in $(seq 25); do [ -z "$(in_ns timeout 5 squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  stop_daemon slurmd "$D/run/slurmd.pid"
  stop_daemon slurmctld "$D/run/slurmctld.pid"
  stop_daemon munged "$D/munge/munged.pid"
  [ -e "/run/netns/$NS" ] && ip netns del "$NS"
  rm -rf "$D"
  return 0
}

wait_until() {  # SECONDS WHAT CMD...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  tail -n 20 "$D"/log/*.log >&2
  fail "no $what after ${seconds} s"
}
controller_up() { in_ns timeout 5 scontrol ping | grep -q 'is UP'; }
node_idle() { [ "$(in_ns timeout 5 sinfo -h -n localhost -o %t)" = idle ]; }

do_start() {
  check_prerequisites
  do_install
  do_stop
  ip netns add "$NS" 2>/dev/null || skip "cannot create a network namespace (ip netns add)"
  in_ns ip link set lo up && in_ns ip addr add 127.0.0.2/8 dev lo || fail "cannot configure lo in $NS"
  write_config
  mungekey -c -k "$D/munge/munge.key" >/dev/null && chmod 600 "$D/munge/munge.key"
  munged -S "$D/munge/munge.sock" --key-file="$D/munge/munge.key" --pid-file="$D/munge/munged.pid" \
    --log-file="$D/log/munged.log" --seed-file="$D/munge/munged.seed" || fail "munged did not start"
  in_ns slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
  wait_until 30 "controller" controller_up
  in_ns slurmd -f "$SLURM_CONF" -N localhost || fail "slurmd did not start"
  wait_until 30 "idle node" node_idle
  say "Slurm up in network namespace $NS (state in $D)"
}

job_state() {  # JOBID -> "STATE EXITCODE"
  in_ns timeout 5 scontrol show job -o "$1" 2>/dev/null |
    sed -n 's/.*JobState=\([A-Z_]*\).* ExitCode=\([0-9:]*\).*/\1 \2/p'
}

job_ended() {  # "STATE EXITCODE" -> whether the job is in a final state
  case ${1%% *} in
    "" | PENDING | CONFIGURING | RUNNING | COMPLETING | REQUEUED | RESIZING | SUSPENDED) return 1 ;;
  esac
}

wait_job() {  # JOBID -> its final "STATE EXITCODE" (or the last one seen after JOB_TIMEOUT seconds)
  local state=""
  for _ in $(seq $((JOB_TIMEOUT * 5))); do
    state=$(job_state "$1")
    job_ended "$state" && break
    sleep 0.2
  done
  echo "$state"
}

do_submit() {
  [ $# -ge 1 ] || fail "submit needs a config"
  [ -x "$UNIREP" ] || fail "no unirep binary at $UNIREP (set SLURM_CI_UNIREP)"
  local config=$1 jobid state out
  shift
  out=$D/jobs/train-%j.out
  # without --out the run folder is a fresh one under the state folder (a finished run is not re-run)
  [[ " $* " == *" --out "* ]] || set -- "$@" --out "$D/jobs/run"
  # the job inherits this environment: the ranks talk through shared memory only (no TCP listener)
  jobid=$(OMPI_MCA_btl=self,vader OMP_NUM_THREADS=1 in_ns timeout 30 sbatch --parsable --job-name=unirep-ci \
      --ntasks=2 --cpus-per-task=1 --time=10 --output="$out" \
      --wrap="$(printf '%q ' srun --kill-on-bad-exit=1 --mpi=pmix "$UNIREP" train --config "$config" "$@")") ||
    fail "sbatch failed"
  out=${out/\%j/$jobid}
  say "job $jobid submitted: 2 tasks of unirep train --config $config $*"
  state=$(wait_job "$jobid")
  cat "$out" 2>/dev/null
  say "job $jobid: ${state:-unknown}"
  [ "${state%% *}" = COMPLETED ] || { tail -n 20 "$D"/log/slurm*.log >&2; return 1; }
}

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0   # sourced (slurm_requeue.sh): the functions only

case ${1:-} in
  install) do_install ;;
  start) do_start ;;
  submit) shift; do_submit "$@" ;;
  stop) do_stop ;;
  all)
    shift
    trap do_stop EXIT
    do_start
    do_submit "$@"
    ;;
  *) echo "usage: $0 install|start|submit CONFIG [ARGS...]|stop|all CONFIG [ARGS...]" >&2; exit 2 ;;
esac
