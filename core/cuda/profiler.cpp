#include "core/cuda/profiler.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "core/cuda/check.h"
#include "core/cuda/context.h"

namespace unirep::cuda {

bool g_profiling = false;

namespace {
struct Mark {
  const char* site;
  cudaEvent_t event;
};
std::vector<Mark> g_marks;
std::vector<cudaEvent_t> g_free_events;

cudaEvent_t take_event() {
  if (!g_free_events.empty()) {
    cudaEvent_t e = g_free_events.back();
    g_free_events.pop_back();
    return e;
  }
  cudaEvent_t e;
  CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

// The path from the repository root: the build's absolute __FILE__ prefixes differ between machines.
std::string short_site(const char* site) {
  for (const char* root : {"/core/", "/autograd/", "/layers/", "/optim/", "/distributed/", "/launch/"}) {
    const char* p = std::strstr(site, root);
    if (p) return p + 1;
  }
  return site;
}
}  // namespace

void profile_mark(const char* site) {
  Mark m{site, take_event()};
  CUDA_CHECK(cudaEventRecord(m.event, stream()));
  g_marks.push_back(m);
}

void start_profiling() {
  for (Mark& m : g_marks) g_free_events.push_back(m.event);
  g_marks.clear();
  g_profiling = true;
  profile_mark("(start)");
}

std::vector<ProfileEntry> stop_profiling() {
  g_profiling = false;
  synchronize();
  std::map<std::string, ProfileEntry> by_site;
  for (size_t i = 1; i < g_marks.size(); ++i) {
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, g_marks[i - 1].event, g_marks[i].event));
    ProfileEntry& e = by_site[short_site(g_marks[i].site)];
    e.ms += ms;
    ++e.launches;
  }
  for (Mark& m : g_marks) g_free_events.push_back(m.event);
  g_marks.clear();
  std::vector<ProfileEntry> out;
  for (auto& [site, e] : by_site) {
    e.site = site;
    out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const ProfileEntry& a, const ProfileEntry& b) { return a.ms > b.ms; });
  return out;
}

}  // namespace unirep::cuda
