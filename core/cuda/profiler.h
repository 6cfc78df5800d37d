// A GPU-time breakdown by launch site, for `unirep bench --profile` (the device has no Nsight
// Systems). While profiling is on, every kernel launch check (CUDA_CHECK_LAUNCH) and every library
// call marked with UNIREP_PROFILE_MARK records a CUDA event on the compute stream right after the
// work it queued. Consecutive events bracket that work, so the time between an event and the one
// before it is charged to the event's call site (file:line). Idle gaps on the stream, where the GPU
// waited for the host, are charged to the next site: in a host-bound region the report shows it as
// time of small kernels. Each mark also takes the host clock, so the host time spent between two
// marks (autograd, allocation, argument checks, the launch itself) is charged to the later site in
// the same way: where it exceeds the GPU time, the host is what the step waits for. The events are
// pooled; off, a mark costs one branch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace unirep::cuda {

extern bool g_profiling;
inline bool profiling() { return g_profiling; }
void profile_mark(const char* site);
// A mark named by the mangled type of the launched functor (typeid(F).name()): the elementwise loops
// serve every pointwise op from one launch site, and nvcc's wrapper of a __device__ lambda carries
// the enclosing function (e.g. unirep::cuda::gelu_forward), which the report shows instead.
void profile_mark_functor(const char* mangled_type);

struct ProfileEntry {
  std::string site;  // "core/ops/conv2d.cu:406", or the function whose lambda an elementwise loop ran
  double ms = 0;       // GPU time, summed over the launches
  double host_ms = 0;  // host time since the previous mark, summed likewise
  int64_t launches = 0;
};
// Starts a profile on the current device (drops any previous one).
void start_profiling();
// Synchronises the stream, ends the profile and returns its sites, the most expensive first.
std::vector<ProfileEntry> stop_profiling();

}  // namespace unirep::cuda

#define UNIREP_PROFILE_STRINGIFY2(x) #x
#define UNIREP_PROFILE_STRINGIFY(x) UNIREP_PROFILE_STRINGIFY2(x)
#define UNIREP_PROFILE_MARK()                                                                  \
  do {                                                                                         \
    if (::unirep::cuda::profiling()) ::unirep::cuda::profile_mark(__FILE__ ":" UNIREP_PROFILE_STRINGIFY(__LINE__)); \
  } while (0)
