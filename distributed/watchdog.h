// Turns a hung or failed collective into a prompt, clean failure of the whole job.
//
// A collective blocks until every rank joins it. When a rank dies, mpirun (or srun
// --kill-on-bad-exit=1) takes the others down; but a rank that hangs, a lost network path or a
// failed NCCL kernel would leave them waiting for ever. The communicators register every
// collective here: host-blocking ones (MPI) from begin() to end(), GPU ones (NCCL) until their
// completion event is reached. Two threads watch: one polls the events and the backend's
// asynchronous error (ncclCommGetAsyncError); the other only reads the clock, because those
// queries can themselves block behind a stuck GPU (seen with a stalled NCCL peer on two H100s).
// When the oldest collective is older than the timeout, or the backend reports an error, it prints
//   rank R: <op> did not complete within T s (collective #n); aborting
// (or the error) to stderr, tears the transport down (ncclCommAbort, MPI_Abort, which also ends
// the other ranks under mpirun) and exits the process with status 1, whatever the main thread is
// blocked in. A third thread forces the exit 5 s later if the teardown itself hangs.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>

namespace unirep {

class Watchdog {
 public:
  // abort_backend runs on a watchdog thread just before the exit; async_error returns "" while
  // the backend is healthy, else what went wrong. Both may be empty.
  Watchdog(int rank, double timeout_s, std::function<void()> abort_backend,
           std::function<std::string()> async_error = {});
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // A collective the host waits for: watched from begin() until end(id).
  uint64_t begin(std::string op);
  void end(uint64_t id);
  // A collective queued on a GPU stream: watched until done() (polled on a watchdog thread,
  // so it must be thread-safe, e.g. cudaEventQuery) returns true.
  void track(std::string op, std::function<bool()> done);

  double timeout_s() const { return timeout_s_; }
  uint64_t collectives() const;  // begun or tracked so far

 private:
  struct Entry {
    uint64_t id;
    std::string op;
    std::chrono::steady_clock::time_point start;
    std::function<bool()> done;  // empty: ended by end()
  };
  void poll_completions();  // retires finished GPU collectives, reads the backend's async error
  void check_deadlines();   // only clock reads: fires even while a backend query is stuck
  [[noreturn]] void fail(const std::string& message);

  const int rank_;
  const double timeout_s_;
  std::function<void()> abort_backend_;
  std::function<std::string()> async_error_;
  mutable std::mutex mutex_;
  std::condition_variable wake_, deadline_wake_;
  std::list<Entry> pending_;  // oldest first
  uint64_t next_id_ = 1;
  bool stop_ = false;
  std::thread poller_, timer_;
};

}  // namespace unirep
