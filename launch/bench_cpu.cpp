// `unirep bench-cpu`: times the CPU training step of a UniRepLKNet variant (forward, label-smoothed
// cross-entropy, backward into fresh gradients; no optimizer) on a fixed random NHWC batch and prints
// the median and best images per second over the timed steps, after one warm-up step (which fills the
// allocator's cache). The numbers of core/PERF_CPU.md come from it:
//   OMP_NUM_THREADS=2 unirep bench-cpu --model a --batch 128 --image-size 32 --in-chans 1 --num-classes 10
#include "launch/bench_cpu.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "autograd/ops.h"
#include "core/parallel.h"
#include "launch/args.h"
#include "layers/unireplknet/model.h"

namespace unirep {

int command_bench_cpu(int argc, char** argv) {
  Args args(argc, argv, 2, {"--model", "--batch", "--image-size", "--in-chans", "--num-classes", "--steps"}, {});
  UniRepLKNetConfig c = unireplknet_variant(args.get("--model", "a"));
  c.in_chans = args.get_int("--in-chans", 1);
  c.num_classes = args.get_int("--num-classes", 10);
  const int64_t batch = args.get_int("--batch", 128), size = args.get_int("--image-size", 32);
  const int64_t steps = args.get_int("--steps", 10);
  UNIREP_CHECK(batch >= 1 && size >= 1 && steps >= 1 && c.in_chans >= 1 && c.num_classes >= 1,
               "bench-cpu: --batch, --image-size, --in-chans, --num-classes and --steps must be positive");

  UniRepLKNet model(c);
  Generator gen(0);
  model.init_weights(gen);
  Tensor x = Tensor::randn({batch, size, size, c.in_chans}, gen);
  std::vector<int64_t> labels(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) labels[size_t(i)] = i % c.num_classes;
  Tensor y = Tensor::from_vector(labels, {batch}, DType::Int64, Device::cpu());

  std::vector<double> seconds;
  for (int64_t step = 0; step <= steps; ++step) {
    auto start = std::chrono::steady_clock::now();
    for (Tensor& p : model.parameters()) p.set_grad(Tensor());
    Tensor loss = cross_entropy(model.forward(x), y, -100, 0.1);
    loss.backward();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (step > 0) seconds.push_back(s);  // step 0 warms up
  }
  std::sort(seconds.begin(), seconds.end());
  std::printf("UniRepLKNet-%s, batch %lld, %lldx%lld x %lld, %d threads: median %.0f img/s (%.1f ms/step), "
              "best %.0f img/s over %lld steps\n",
              c.name.c_str(), (long long)batch, (long long)size, (long long)size, (long long)c.in_chans,
              num_threads(), double(batch) / seconds[seconds.size() / 2], 1e3 * seconds[seconds.size() / 2],
              double(batch) / seconds.front(), (long long)steps);
  return 0;
}

}  // namespace unirep
