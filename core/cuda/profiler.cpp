#include "core/cuda/profiler.h"

#include <cxxabi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
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
  bool functor = false;  // site is a mangled functor type
  std::chrono::steady_clock::time_point host;
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
// "elementwise: unirep::cuda::gelu_forward" out of nvcc's lambda wrapper
// __nv_dl_wrapper_t<__nv_dl_tag<void (*)(...), &unirep::cuda::gelu_forward, 1u>, ...>.
std::string functor_site(const char* mangled) {
  int status = 0;
  char* text = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string name = status == 0 && text ? text : mangled;
  std::free(text);
  const size_t amp = name.find('&');
  if (amp != std::string::npos) {
    const size_t end = name.find_first_of(",>", amp);
    name = name.substr(amp + 1, end == std::string::npos ? std::string::npos : end - amp - 1);
  }
  return "elementwise: " + name;
}

void record(const char* site, bool functor) {
  Mark m{site, take_event(), functor, std::chrono::steady_clock::now()};
  CUDA_CHECK(cudaEventRecord(m.event, stream()));
  g_marks.push_back(m);
}
}  // namespace

void profile_mark(const char* site) { record(site, false); }
void profile_mark_functor(const char* mangled_type) { record(mangled_type, true); }

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
    ProfileEntry& e = by_site[g_marks[i].functor ? functor_site(g_marks[i].site) : short_site(g_marks[i].site)];
    e.ms += ms;
    e.host_ms += std::chrono::duration<double, std::milli>(g_marks[i].host - g_marks[i - 1].host).count();
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
