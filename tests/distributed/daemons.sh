# Process helpers shared by the Slurm test scripts (sourced by slurm_ci.sh and twohost.sh).

# Whether PID names a live process (a zombie, which PID 1 may reap late, does not count).
running() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }

# stop_daemon NAME PIDFILE: stops the process in PIDFILE if it still is NAME (TERM, then KILL after
# 5 s), and removes PIDFILE.
stop_daemon() {
  local pid
  [ -f "$2" ] || return 0
  pid=$(cat "$2")
  if running "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
    running "$pid" && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$2"
}
