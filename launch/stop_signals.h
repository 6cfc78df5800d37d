// Graceful stop of a training run. SIGTERM (Slurm's scancel, requeue and preemption, `docker stop`),
// SIGINT (Ctrl-C) and SIGUSR1 (mpirun forwards it to every rank; `sbatch --signal=USR1@T` without
// `B:`) only raise a flag here; the trainer reads it at the next optimizer-step boundary, where all
// ranks agree on it (the largest signal number over the ranks), writes a checkpoint and stops, so
// `--resume auto` continues from that very step. The handlers are one-shot (SA_RESETHAND): a second
// signal of the same kind takes its default action, so a stuck run still dies at a second Ctrl-C or at
// Slurm's SIGKILL after KillWait.
#pragma once
#include <string>

namespace unirep {

class StopSignals {
 public:
  StopSignals();   // installs the handlers (one instance at a time)
  ~StopSignals();  // restores the previous dispositions
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // 0 while none arrived, else the number of the first one.
  int received() const;
};

// "SIGTERM", "SIGINT", "SIGUSR1" (the stop signals), "signal N" for others.
std::string signal_name(int signal);

}  // namespace unirep
