// The launch-site profiler (core/cuda/profiler.h): every launch inside a profile is charged to its
// call site (an elementwise loop to the function that launched it), the times are positive and add
// up to the wall time of the bracketed GPU work.
#include <gtest/gtest.h>

#include <chrono>

#include "autograd/ops.h"
#include "core/cuda/context.h"
#include "core/cuda/profiler.h"
#include "core/device.h"
#include "core/generator.h"

namespace unirep {
namespace {

TEST(CudaProfiler, ChargesEveryLaunchToItsSite) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator gen(1);
  const Device gpu = Device::cuda(0);
  Tensor a = Tensor::randn({1 << 22}, gen).to(gpu), b = Tensor::randn({1 << 22}, gen).to(gpu);
  Tensor warm = add(a, b);
  cuda::synchronize();
  const auto start = std::chrono::steady_clock::now();
  cuda::start_profiling();
  for (int i = 0; i < 10; ++i) warm = add(warm, b);
  const std::vector<cuda::ProfileEntry> sites = cuda::stop_profiling();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(sites.empty());
  int64_t launches = 0;
  double total_ms = 0;
  for (const cuda::ProfileEntry& e : sites) {
    EXPECT_GE(e.ms, 0) << e.site;
    EXPECT_GE(e.host_ms, 0) << e.site;
    launches += e.launches, total_ms += e.ms;
  }
  EXPECT_EQ(launches, 10) << "one elementwise kernel per add";
  // An elementwise loop is named by the function that launched it (its __device__ lambda's type).
  EXPECT_EQ(sites[0].site.rfind("elementwise: unirep::", 0), 0u) << sites[0].site;
  EXPECT_GT(total_ms, 0);
  EXPECT_LE(total_ms, wall_ms * 1.01 + 0.05);
  // Off again: further launches leave no marks.
  warm = add(warm, b);
  EXPECT_TRUE(cuda::stop_profiling().empty());
}

}  // namespace
}  // namespace unirep
