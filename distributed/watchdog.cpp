#include "distributed/watchdog.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "core/error.h"

namespace unirep {

Watchdog::Watchdog(int rank, double timeout_s, std::function<void()> abort_backend,
                   std::function<std::string()> async_error)
    : rank_(rank), timeout_s_(timeout_s), abort_backend_(std::move(abort_backend)), async_error_(std::move(async_error)) {
  UNIREP_CHECK(timeout_s > 0, "Watchdog: the timeout must be > 0 s, got ", timeout_s);
  poller_ = std::thread([this] { poll_completions(); });
  timer_ = std::thread([this] { check_deadlines(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  deadline_wake_.notify_one();
  poller_.join();
  timer_.join();
}

uint64_t Watchdog::begin(std::string op) {
  std::lock_guard<std::mutex> lock(mutex_);
  const uint64_t id = next_id_++;
  pending_.push_back({id, std::move(op), std::chrono::steady_clock::now(), {}});
  return id;
}

void Watchdog::end(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.remove_if([id](const Entry& e) { return e.id == id; });
}

void Watchdog::track(std::string op, std::function<bool()> done) {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.push_back({next_id_++, std::move(op), std::chrono::steady_clock::now(), std::move(done)});
}

uint64_t Watchdog::collectives() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_id_ - 1;
}

void Watchdog::poll_completions() {
  // A twentieth of the timeout between polls: the abort comes at most 5% late.
  const auto poll = std::chrono::duration<double>(std::clamp(timeout_s_ / 20, 0.01, 1.0));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, poll);
    if (stop_) break;
    // Nothing that can call into the backend runs under the lock: the queries (cudaEventQuery,
    // ncclCommGetAsyncError) and the destruction of retired entries (cudaEventDestroy) can block
    // behind a stuck GPU, and check_deadlines() needs the lock to fire (seen on two H100s: a
    // stalled NCCL peer left this thread in cudaEventDestroy).
    std::vector<std::pair<uint64_t, std::function<bool()>>> polled;
    for (const Entry& e : pending_)
      if (e.done) polled.emplace_back(e.id, e.done);
    lock.unlock();
    const std::string error = async_error_ ? async_error_() : std::string();
    std::vector<uint64_t> finished;
    for (auto& [id, done] : polled)
      if (done()) finished.push_back(id);
    polled.clear();
    std::list<Entry> retired;
    lock.lock();
    if (!error.empty())
      fail(detail::concat("rank ", rank_, ": ", error, " (after collective #", next_id_ - 1, "); aborting"));
    for (auto it = pending_.begin(); it != pending_.end();) {
      auto next = std::next(it);
      if (std::find(finished.begin(), finished.end(), it->id) != finished.end()) retired.splice(retired.end(), pending_, it);
      it = next;
    }
    lock.unlock();
    retired.clear();
    lock.lock();
  }
}

void Watchdog::check_deadlines() {
  const auto poll = std::chrono::duration<double>(std::clamp(timeout_s_ / 20, 0.01, 1.0));
  const auto timeout = std::chrono::duration<double>(timeout_s_);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    deadline_wake_.wait_for(lock, poll);
    if (stop_ || pending_.empty()) continue;
    const Entry& oldest = pending_.front();
    if (std::chrono::steady_clock::now() - oldest.start > timeout)
      fail(detail::concat("rank ", rank_, ": ", oldest.op, " did not complete within ", timeout_s_,
                          " s (collective #", oldest.id, "); aborting"));
  }
}

void Watchdog::fail(const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  // ncclCommAbort or MPI_Abort can block on a broken peer themselves.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(5));
    std::_Exit(1);
  }).detach();
  if (abort_backend_) abort_backend_();
  std::_Exit(1);
}

}  // namespace unirep
