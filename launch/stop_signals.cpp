#include "launch/stop_signals.h"

#include <signal.h>

#include <array>
#include <atomic>
#include <cstring>

#include "core/error.h"

namespace unirep {

namespace {
constexpr std::array<int, 3> kStopSignals = {SIGTERM, SIGINT, SIGUSR1};
volatile sig_atomic_t g_received = 0;
std::atomic<bool> g_installed{false};
struct sigaction g_previous[kStopSignals.size()];

void on_stop_signal(int signal) {
  if (g_received == 0) g_received = signal;
}
}  // namespace

StopSignals::StopSignals() {
  UNIREP_CHECK(!g_installed.exchange(true), "StopSignals: the handlers are already installed");
  g_received = 0;
  struct sigaction action;
  std::memset(&action, 0, sizeof action);
  action.sa_handler = on_stop_signal;
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  sigemptyset(&action.sa_mask);
  for (size_t i = 0; i < kStopSignals.size(); ++i) sigaction(kStopSignals[i], &action, &g_previous[i]);
}

StopSignals::~StopSignals() {
  for (size_t i = 0; i < kStopSignals.size(); ++i) sigaction(kStopSignals[i], &g_previous[i], nullptr);
  g_installed = false;
}

int StopSignals::received() const { return g_received; }

std::string signal_name(int signal) {
  switch (signal) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGUSR1: return "SIGUSR1";
  }
  return "signal " + std::to_string(signal);
}

}  // namespace unirep
