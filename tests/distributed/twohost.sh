#!/bin/bash
# Two "hosts" on one machine, joined by a real (virtual) wire, for multi-node CI of `unirep train`.
#
# Host nI (I = 1, 2) is a network namespace plus UTS and mount namespaces kept open by a holder process:
# hostname nI, a private /etc/hosts (n1, n2 only) and /etc/resolv.conf (127.0.0.1, so no lookup leaves),
# and a node-local folder $D/local (bind-mounted from $D/hosts/nI) for spool, tmp, pid files and the munge
# socket. A veth pair is created with one end directly inside each network namespace (both ends named
# $IF, 10.77.0.1 and 10.77.0.2/24, no default route): it never exists on the machine and dies with them.
# n1 runs munged, slurmctld and a slurmd; n2 a munged and a slurmd. The job is `sbatch -N 2
# --ntasks-per-node=1` of `srun --mpi=pmix unirep train`, with Open MPI limited to TCP over the veth
# (btl self,tcp; btl_tcp_if_include $IF), so the gradients cross the wire, never shared memory.
#
#   twohost.sh up                        hosts, munged x2, slurmctld, slurmd x2; waits until both nodes idle
#   twohost.sh run-slurm CONFIG [ARGS]   the 2-node job; prints rank hosts/addresses, veth byte counts and
#                                        the job output; rc 0 iff COMPLETED
#   twohost.sh down                      stop the daemons, kill what is left in the namespaces, delete them
#   twohost.sh all CONFIG [ARGS]         up + run-slurm + down (down always runs)
#
# Exits 77 (CTest: skipped) when not root, or ip/nsenter/unshare/Slurm/munge/mpirun are missing.
# Environment: TWOHOST_DIR (state, default /tmp/unirep-twohost), TWOHOST_UNIREP (the binary, default
# build/unirep of this checkout), TWOHOST_JOB_TIMEOUT (seconds, default 240).
# Why: nsenter + unshare --mount, never `ip netns exec` (it remounts /sys and slurmd 22.05 needs
# /sys/fs/cgroup); liveness from ps (zombies linger here); every client call bounded by timeout.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
D=${TWOHOST_DIR:-/tmp/unirep-twohost}
UNIREP=${TWOHOST_UNIREP:-$here/../../build/unirep}
JOB_TIMEOUT=${TWOHOST_JOB_TIMEOUT:-240}
NS=uth$(printf %s "$D" | cksum | cut -c1-6)   # namespace prefix, one per state folder
IF=uth0
NET=10.77.0
L=$D/local
export SLURM_CONF=$D/etc/slurm.conf

say() { printf '[twohost %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { say "error: $*"; exit 1; }
skip() { say "skipped: $*"; exit 77; }
# shellcheck source=daemons.sh
. "$here/daemons.sh"

holder() {  # the PID of host $1's holder, if it still is ours
  local f=$D/hosts/$1/holder.pid p
  [ -f "$f" ] && p=$(cat "$f") && running "$p" &&
    [[ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" == "twohost-holder-$1 "* ]] && echo "$p"
}
on() {  # on HOST CMD...: run CMD inside HOST's namespaces, keeping cwd and environment
  local p h=$1
  shift
  p=$(holder "$h") || fail "host $h is not up"
  nsenter -t "$p" --net --uts --mount --wd="$PWD" -- "$@"
}
veth_bytes() { ip -n "$NS-$1" -s link show dev "$IF" | awk '/RX:/{getline; r=$1} /TX:/{getline; t=$1} END{print r, t}'; }

check_prerequisites() {
  [ "$(id -u)" = 0 ] || skip "needs root (namespaces, veth, Slurm daemons)"
  local c
  for c in ip nsenter unshare setsid slurmctld slurmd sbatch srun munged mungekey mpirun; do
    command -v "$c" >/dev/null || skip "$c is not installed"
  done
}

do_down() {
  local h p pids
  if holder n1 >/dev/null; then
    on n1 timeout 10 scancel --quiet --user=root 2>/dev/null
    for _ in $(seq 25); do [ -z "$(on n1 timeout 5 squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for h in n1 n2; do
    stop_daemon slurmd "$D/hosts/$h/run/slurmd.pid"
    stop_daemon slurmctld "$D/hosts/$h/run/slurmctld.pid"
    stop_daemon munged "$D/hosts/$h/munge/munged.pid"
  done
  for h in n1 n2; do
    p=$(holder "$h") && kill "$p" 2>/dev/null
    [ -e "/run/netns/$NS-$h" ] || continue
    # whatever still runs in our namespace was started by us: TERM it by PID, KILL it after 5 s
    pids=$(ip netns pids "$NS-$h" 2>/dev/null | tr '\n' ' ')
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do
      for _ in $(seq 50); do running "$p" || break; sleep 0.1; done
      running "$p" && kill -9 "$p" 2>/dev/null
    done
    ip netns del "$NS-$h"   # takes the veth pair with it
  done
  rm -rf "$D"
  return 0
}

make_hosts() {
  local i h hd
  mkdir -p "$L"
  for i in 1 2; do
    h=n$i hd=$D/hosts/n$i
    mkdir -p "$hd"/{etc,spool,tmp,run,munge,ctld}
    chmod 755 "$D" "$D/hosts" "$hd" "$hd/munge"   # munged insists that every user may traverse its socket folder
    printf '127.0.0.1 localhost\n%s.1 n1\n%s.2 n2\n' "$NET" "$NET" >"$hd/etc/hosts"
    echo 'nameserver 127.0.0.1' >"$hd/etc/resolv.conf"
    ip netns add "$NS-$h" || skip "cannot create a network namespace (ip netns add)"
    # /run/netns is unmounted in the copy so that this host does not pin the other's namespace
    setsid nsenter --net="/run/netns/$NS-$h" -- unshare --uts --mount --propagation private -- bash -c '
      set -e
      hostname "$1"
      mount --bind "$2/etc/hosts" /etc/hosts
      mount --bind "$2/etc/resolv.conf" /etc/resolv.conf
      mount --bind "$2" "$3"
      umount -R -l /run/netns 2>/dev/null || true
      touch "$2/ready"
      exec -a "twohost-holder-$1" sleep infinity' holder "$h" "$hd" "$L" </dev/null >"$hd/../$h-holder.log" 2>&1 &
    echo $! >"$D/hosts/$h/holder.pid"
  done
  ip link add "$IF" netns "$NS-n1" type veth peer name "$IF" netns "$NS-n2" || skip "cannot create a veth pair"
  for i in 1 2; do
    ip -n "$NS-n$i" link set lo up
    ip -n "$NS-n$i" addr add "$NET.$i/24" dev "$IF"
    ip -n "$NS-n$i" link set "$IF" up
  done
  for h in n1 n2; do
    for _ in $(seq 50); do [ -e "$D/hosts/$h/ready" ] && break; sleep 0.1; done
    holder "$h" >/dev/null || fail "host $h did not come up: $(cat "$D/hosts/$h-holder.log")"
    [ "$(on "$h" hostname)" = "$h" ] || fail "host $h has the wrong host name"
  done
}

write_config() {
  local hw
  hw=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')
  mkdir -p "$D"/{etc,log,jobs}
  cat >"$SLURM_CONF" <<CONF
ClusterName=unireptwohost
SlurmctldHost=n1($NET.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$L/munge/munge.sock
StateSaveLocation=$L/ctld
SlurmdSpoolDir=$L/spool
TmpFS=$L/tmp
SlurmctldPidFile=$L/run/slurmctld.pid
SlurmdPidFile=$L/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
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
InactiveLimit=0
KillWait=5
NodeName=n1 NodeHostname=n1 NodeAddr=$NET.1 $hw State=UNKNOWN
NodeName=n2 NodeHostname=n2 NodeAddr=$NET.2 $hw State=UNKNOWN
PartitionName=ci Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
}

wait_until() {  # SECONDS WHAT CMD...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq $((seconds * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  tail -n 20 "$D"/log/*.log >&2
  fail "no $what after ${seconds} s"
}
controller_up() { on "$1" timeout 5 scontrol ping | grep -q 'is UP'; }
nodes_idle() { [ "$(on n1 timeout 5 sinfo -h -N -o '%N=%t' | sort | tr '\n' ' ')" = "n1=idle n2=idle " ]; }

do_up() {
  check_prerequisites
  do_down
  local t0=$SECONDS h
  make_hosts
  write_config
  mungekey -c -k "$D/etc/munge.key" >/dev/null 2>&1 && chmod 600 "$D/etc/munge.key" || fail "mungekey failed"
  for h in n1 n2; do
    on "$h" munged -S "$L/munge/munge.sock" --key-file="$D/etc/munge.key" --pid-file="$L/munge/munged.pid" \
      --log-file="$D/log/munged-$h.log" --seed-file="$L/munge/munged.seed" || fail "munged on $h did not start"
  done
  on n1 slurmctld || fail "slurmctld did not start"
  wait_until 30 "controller" controller_up n1
  controller_up n2 || fail "slurmctld on n1 is not reachable from n2"
  on n1 slurmd -N n1 || fail "slurmd on n1 did not start"
  on n2 slurmd -N n2 || fail "slurmd on n2 did not start"
  wait_until 30 "idle nodes n1 and n2" nodes_idle
  say "hosts n1=$NET.1 and n2=$NET.2 (namespaces $NS-n1, $NS-n2, veth $IF) with Slurm up in $((SECONDS - t0)) s"
}

job_state() {  # JOBID -> "STATE EXITCODE"
  on n1 timeout 5 scontrol show job -o "$1" 2>/dev/null |
    sed -n 's/.*JobState=\([A-Z_]*\).* ExitCode=\([0-9:]*\).*/\1 \2/p'
}

do_run_slurm() {
  [ $# -ge 1 ] || fail "run-slurm needs a config"
  [ -x "$UNIREP" ] || fail "no unirep binary at $UNIREP (set TWOHOST_UNIREP)"
  local config=$1 jobid state out before1 before2 after1 after2 t0=$SECONDS
  shift
  config=$(realpath "$config")
  [[ " $* " == *" --out "* ]] || set -- "$@" --out "$D/jobs/run"
  out=$D/jobs/train-%j.out
  local where="echo \"rank \$SLURM_PROCID on \$(hostname): \$(ip -4 -o addr show dev $IF | awk '{print \$4}')\""
  local script
  script="$(printf '%q ' srun --kill-on-bad-exit=1 sh -c "$where")
$(printf '%q ' srun --kill-on-bad-exit=1 --mpi=pmix "$(realpath "$UNIREP")" train --config "$config" "$@")"
  before1=$(veth_bytes n1) before2=$(veth_bytes n2)
  # the job inherits this environment: Open MPI may only use TCP over the veth between the two hosts
  jobid=$(OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=$IF OMPI_MCA_oob_tcp_if_include=$IF \
      OMP_NUM_THREADS=1 on n1 timeout 30 sbatch --parsable --job-name=unirep-twohost -N 2 --ntasks-per-node=1 \
      --cpus-per-task=1 --time=10 --output="$out" --wrap="$script") || fail "sbatch failed"
  out=${out/\%j/$jobid}
  say "job $jobid: 2 nodes x 1 task of unirep train --config $config $*"
  state=""
  for _ in $(seq $((JOB_TIMEOUT * 5))); do
    state=$(job_state "$jobid")
    case ${state%% *} in
      "" | PENDING | CONFIGURING | RUNNING | COMPLETING | REQUEUED | RESIZING | SUSPENDED) sleep 0.2 ;;
      *) break ;;
    esac
  done
  after1=$(veth_bytes n1) after2=$(veth_bytes n2)
  cat "$out" 2>/dev/null
  say "job $jobid: ${state:-unknown} after $((SECONDS - t0)) s"
  say "veth $IF bytes during the job: n1 rx=$((${after1% *} - ${before1% *})) tx=$((${after1#* } - ${before1#* }))," \
    "n2 rx=$((${after2% *} - ${before2% *})) tx=$((${after2#* } - ${before2#* }))"
  [ "${state%% *}" = COMPLETED ] || { tail -n 20 "$D"/log/slurm*.log >&2; return 1; }
}

case ${1:-} in
  up) do_up ;;
  run-slurm) shift; do_run_slurm "$@" ;;
  down) do_down ;;
  all)
    shift
    check_prerequisites
    trap do_down EXIT
    trap 'exit 143' TERM INT
    do_up
    do_run_slurm "$@"
    ;;
  *) echo "usage: $0 up|run-slurm CONFIG [ARGS...]|down|all CONFIG [ARGS...]" >&2; exit 2 ;;
esac
