// CPU parallelism: OpenMP threads over index ranges. Nested calls run serially, so a kernel may
// call another parallel kernel without oversubscribing the cores.
#pragma once
#include <algorithm>
#include <cstdint>

#include <omp.h>

namespace unirep {

inline int num_threads() { return omp_get_max_threads(); }

// Calls f(begin_i, end_i) on disjoint chunks covering [begin, end), each at least `grain` long.
template <class F> void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  int64_t n = end - begin;
  if (n <= 0) return;
  int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
  int threads = int(std::min<int64_t>(omp_get_max_threads(), max_chunks));
  if (threads <= 1 || omp_in_parallel()) {
    f(begin, end);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t chunk = (n + nt - 1) / nt;
    int64_t b = begin + t * chunk, e = std::min(end, b + chunk);
    if (b < e) f(b, e);
  }
}

// Work size under which an elementwise loop stays on one thread. With the other threads spinning
// between regions (libgomp's default), a region costs about a microsecond, a 16K-float add a few:
// smaller grains split the tensors of the late stages (e.g. [128, 2, 2, 160]) too, 2-3% per step at
// batch 64 on 2 cores.
constexpr int64_t kGrain = 16384;

}  // namespace unirep
