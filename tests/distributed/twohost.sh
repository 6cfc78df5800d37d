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
# Without Slurm, `mpirun -np 2 --host n1:1,n2:1` runs on n1 and starts rank 1's orted on n2 through a
# plm_rsh_agent that enters n2's namespaces instead of ssh (bin/enter-host, written by hosts-up), with the
# same Open MPI limits (oob and btl tcp on $IF only).
#
#   twohost.sh up                        hosts, munged x2, slurmctld, slurmd x2; waits until both nodes idle
#   twohost.sh run-slurm CONFIG [ARGS]   the 2-node job; prints rank hosts/addresses, veth byte counts and
#                                        the job output; rc 0 iff COMPLETED
#   twohost.sh hosts-up                  the two hosts only (no Slurm) and the launcher agent
#   twohost.sh run-mpirun CONFIG [ARGS]  mpirun of unirep train across n1 and n2 (after up or hosts-up); rc 0
#                                        iff the run completed on ranks at 10.77.0.1 and .2 and the gradients
#                                        crossed the veth (at least steps x parameters x 4 bytes each way)
#   twohost.sh down                      stop the daemons, kill what is left in the namespaces, delete them
#   twohost.sh all CONFIG [ARGS]         up + run-slurm + down (down always runs)
#   twohost.sh all-mpirun CONFIG [ARGS]  hosts-up + run-mpirun + down (down always runs)
#
# Exits 77 (CTest: skipped) when not root, or ip/nsenter/unshare/mpirun (and for Slurm: Slurm/munge) are missing.
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

check_prerequisites() {  # [slurm]
  [ "$(id -u)" = 0 ] || skip "needs root (namespaces, veth, Slurm daemons)"
  local c
  for c in ip nsenter unshare setsid mpirun ${1:+slurmctld slurmd sbatch srun munged mungekey}; do
    command -v "$c" >/dev/null || skip "$c is not installed"
  done
}

do_down() {
  local h p pids
  if holder n1 >/dev/null && [ -f "$D/hosts/n1/run/slurmctld.pid" ] && running "$(cat "$D/hosts/n1/run/slurmctld.pid")"; then
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
  check_prerequisites slurm
  do_down
  local t0=$SECONDS h
  make_hosts
  write_agent
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

# Open MPI's remote launch: AGENT [ssh options] HOST WORD... runs WORD... in a shell on HOST (an orted
# that calls mpirun back over the veth). Here "logging in" is entering the host's namespaces.
write_agent() {
  mkdir -p "$D/bin"
  cat >"$D/bin/enter-host" <<AGENT
#!/bin/sh
# plm_rsh_agent for the two-host test (written by twohost.sh): enter host n1 or n2 instead of ssh
while [ \$# -gt 0 ]; do case \$1 in -*) shift ;; *) break ;; esac; done
case \$1 in
  n1 | $NET.1) h=n1 ;;
  n2 | $NET.2) h=n2 ;;
  *) echo "enter-host: unknown host '\$1'" >&2; exit 255 ;;
esac
shift
exec nsenter -t "\$(cat "$D/hosts/\$h/holder.pid")" --net --uts --mount --wd=/ -- /bin/sh -c "\$*"
AGENT
  chmod 755 "$D/bin/enter-host"
}

do_hosts_up() {
  check_prerequisites
  do_down
  make_hosts
  write_agent
  say "hosts n1=$NET.1 and n2=$NET.2 (namespaces $NS-n1, $NS-n2, veth $IF), no Slurm"
}

do_run_mpirun() {
  [ $# -ge 1 ] || fail "run-mpirun needs a config"
  [ -x "$UNIREP" ] || fail "no unirep binary at $UNIREP (set TWOHOST_UNIREP)"
  [ -x "$D/bin/enter-host" ] || fail "no hosts (run: $0 hosts-up)"
  local config=$1 out=$D/jobs/mpirun.out rc=0 before1 before2 after1 after2 t0=$SECONDS
  shift
  config=$(realpath "$config")
  [[ " $* " == *" --out "* ]] || set -- "$@" --out "$D/jobs/run-mpirun"
  mkdir -p "$D/jobs" "$L/tmp"
  local where="echo \"rank \$OMPI_COMM_WORLD_RANK on \$(hostname): \$(ip -4 -o addr show dev $IF | awk '{print \$4}')\"; exec \"\$@\""
  before1=$(veth_bytes n1) before2=$(veth_bytes n2)
  say "on n1: mpirun -np 2 --host n1:1,n2:1 (agent $D/bin/enter-host; oob and btl tcp on $IF) unirep train --config $config $*"
  # --bind-to none: each host would bind its one rank to its core 0, the same core of this machine.
  # The orted on n2 inherits this environment (nsenter is no ssh): root allowed, node-local session folders.
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TMPDIR=$L/tmp OMP_NUM_THREADS=1 \
    on n1 timeout -k 5 "$JOB_TIMEOUT" mpirun -np 2 --host n1:1,n2:1 --map-by node --bind-to none \
    --mca plm_rsh_agent "$D/bin/enter-host" --mca oob_tcp_if_include "$IF" \
    --mca btl self,tcp --mca btl_tcp_if_include "$IF" \
    sh -c "$where" rank "$(realpath "$UNIREP")" train --config "$config" "$@" >"$out" 2>&1 || rc=$?
  after1=$(veth_bytes n1) after2=$(veth_bytes n2)
  cat "$out"
  local rx1=$((${after1% *} - ${before1% *})) tx1=$((${after1#* } - ${before1#* }))
  local rx2=$((${after2% *} - ${before2% *})) tx2=$((${after2#* } - ${before2#* }))
  say "mpirun: rc $rc after $((SECONDS - t0)) s; veth $IF bytes: n1 rx=$rx1 tx=$tx1, n2 rx=$rx2 tx=$tx2"
  [ "$rc" = 0 ] || fail "mpirun failed (rc $rc)"
  grep -qx "rank 0 on n1: $NET.1/24" "$out" && grep -qx "rank 1 on n2: $NET.2/24" "$out" ||
    fail "expected rank 0 on n1 ($NET.1) and rank 1 on n2 ($NET.2)"
  local params steps
  params=$(sed -n 's/.*(\([0-9]*\) parameters,.* on 2 ranks (mpi).*/\1/p' "$out")
  steps=$(sed -n 's/^run folder .*: \([0-9]*\) steps, .*/\1/p' "$out")
  [ -n "$params" ] && [ -n "$steps" ] || fail "no 2-rank (mpi) run that completed"
  # each rank must receive at least the other's whole gradient at every step (float32)
  local least=$((steps * params * 4))
  [ "$rx1" -ge "$least" ] && [ "$rx2" -ge "$least" ] ||
    fail "the veth carried less than $steps steps x $params parameters x 4 bytes = $least each way"
  say "mpirun across n1 and n2: $steps steps, at least $least bytes of gradients each way over the veth"
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
  hosts-up) do_hosts_up ;;
  run-mpirun) shift; do_run_mpirun "$@" ;;
  down) do_down ;;
  all)
    shift
    check_prerequisites slurm
    trap do_down EXIT
    trap 'exit 143' TERM INT
    do_up
    do_run_slurm "$@"
    ;;
  all-mpirun)
    shift
    check_prerequisites
    trap do_down EXIT
    trap 'exit 143' TERM INT
    do_hosts_up
    do_run_mpirun "$@"
    ;;
  *) echo "usage: $0 up|run-slurm CONFIG [ARGS...]|hosts-up|run-mpirun CONFIG [ARGS...]|down|all CONFIG [ARGS...]|all-mpirun CONFIG [ARGS...]" >&2
     exit 2 ;;
esac
