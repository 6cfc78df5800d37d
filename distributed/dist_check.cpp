#include "distributed/dist_check.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "autograd/ops.h"
#include "core/cuda/context.h"
#include "core/error.h"
#include "core/generator.h"
#include "distributed/process_group.h"
#include "distributed/reducer.h"
#include "launch/args.h"
#include "layers/basic.h"
#include "layers/module.h"

namespace unirep {

namespace {

struct Net : Container {
  Net() {
    l1 = add("0", std::make_shared<Linear>(8, 32));
    l2 = add("1", std::make_shared<Linear>(32, 32));
    l3 = add("2", std::make_shared<Linear>(32, 4));
  }
  Tensor loss(const Tensor& x) const {
    Tensor y = l3->forward(relu(l2->forward(relu(l1->forward(x)))));
    return mean(mul(y, y));
  }
  Linear *l1, *l2, *l3;
};

void init(Net& net, uint64_t seed, Device device) {
  NoGradGuard no_grad;
  net.to(device);
  Generator gen(seed);
  for (Tensor& p : net.parameters()) p.copy_(Tensor::randn(p.shape(), gen).mul_(0.3).to(device));
}

Tensor input_of(int rank, Device device) {
  Generator gen(2000 + uint64_t(rank));
  return Tensor::randn({16, 8}, gen, DType::Float32, device);
}

// Largest |a - b| relative to max(1, |b|).
double max_rel_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]) / std::max(1.0, std::abs(y[i])));
  return worst;
}

struct Failure {
  std::string what;
};

void expect(bool ok, const std::string& what) {
  if (!ok) throw Failure{what};
}

Device pick_device(const std::string& backend, const std::string& device_name) {
  if (device_name == "cuda" || (device_name == "auto" && backend != "mpi" && cuda_available())) return Device::cuda();
  return Device::cpu();
}

int run(const std::string& backend, const std::string& device_name, double timeout_s, int die_at, int stall_at) {
  std::unique_ptr<Communicator> comm = make_communicator(backend, pick_device(backend, device_name), timeout_s);
  const Device device = comm->device();
  const int rank = comm->rank(), size = comm->size();
  std::string failure;
  try {
    // Sum of float32: rank r contributes r + 1 everywhere.
    Tensor f = Tensor::full({1000}, double(rank + 1), DType::Float32, device);
    comm->all_reduce(f, ReduceOp::Sum);
    const double expected_sum = double(size) * double(size + 1) / 2;
    for (double v : f.to_vector<double>()) expect(v == expected_sum, "all_reduce sum of float32");
    // Max of int64 beyond float precision: rank r contributes 2^53 + r and -r.
    const int64_t big = int64_t(1) << 53;
    Tensor m = Tensor::from_vector(std::vector<int64_t>{big + rank, -rank}, {2}).to(device);
    comm->all_reduce(m, ReduceOp::Max);
    expect(m.to_vector<int64_t>() == std::vector<int64_t>{big + size - 1, 0}, "all_reduce max of int64");
    // Broadcast from the last rank.
    Tensor b = Tensor::full({3, 5}, rank == size - 1 ? 7.5 : -1.0, DType::Float32, device);
    comm->broadcast(b, size - 1);
    for (double v : b.to_vector<double>()) expect(v == 7.5, "broadcast from the last rank");

    // Every rank starts from its own weights; the broadcast makes them rank 0's.
    Net net;
    init(net, 1000 + uint64_t(rank), device);
    broadcast_module_state(*comm, net);
    Net reference;
    init(reference, 1000, device);
    const std::vector<Tensor> params = net.parameters(), reference_params = reference.parameters();
    for (size_t i = 0; i < params.size(); ++i)
      expect(max_rel_diff(params[i], reference_params[i]) == 0, "broadcast_module_state");

    // The mean of every rank's gradient, computed here without communication.
    std::vector<Tensor> mean_grad;
    for (int q = 0; q < size; ++q) {
      for (const Tensor& p : params) p.set_grad(Tensor());
      net.loss(input_of(q, device)).backward();
      for (size_t i = 0; i < params.size(); ++i) {
        Tensor g = params[i].grad().clone();
        if (q == 0)
          mean_grad.push_back(g);
        else
          mean_grad[i].add_(g);
      }
    }
    for (Tensor& g : mean_grad) g.mul_(1.0 / double(size));

    for (const Tensor& p : params) p.set_grad(Tensor());
    if (rank == die_at || rank == stall_at) {
      // The first layer's weight is final last; registered before the reducer's hook, this one
      // fires while the bucket holding it is not yet issued but the earlier ones are on the wire.
      const bool die = rank == die_at;
      params[0].register_grad_ready_hook([die, rank](const Tensor&) {
        std::fprintf(stderr, "rank %d: %s in the middle of backward\n", rank, die ? "killing itself" : "stalling");
        std::fflush(stderr);
        if (die) ::kill(::getpid(), SIGKILL);
        for (;;) ::pause();
      });
    }
    GradientReducer reducer(*comm, params, /*bucket_bytes=*/1024, /*first_bucket_bytes=*/256);
    reducer.prepare_for_backward(true);
    net.loss(input_of(rank, device)).backward();
    const int64_t issued_in_backward = reducer.collectives_issued();
    reducer.finish();
    const int64_t buckets = int64_t(reducer.bucket_layout().size());
    expect(issued_in_backward == buckets, "all bucket all-reduces issued during backward");
    for (size_t i = 0; i < params.size(); ++i)
      expect(max_rel_diff(params[i].grad(), mean_grad[i]) < 1e-5, "averaged gradients");
    if (rank == 0)
      std::printf("rank 0: %lld buckets, all-reduced as backward produced them\n", (long long)buckets);
  } catch (const Failure& f) {
    failure = f.what;
  }
  std::printf("rank %d/%d %s %s\n", rank, size, comm->backend().c_str(),
              failure.empty() ? "OK" : ("FAILED: " + failure).c_str());
  std::fflush(stdout);
  const int64_t ok = all_reduce_sum(*comm, std::vector<int64_t>{failure.empty() ? 1 : 0})[0];
  if (rank == 0) {
    if (ok == size)
      std::printf("dist-check: all %d ranks OK (%s)\n", size, comm->backend().c_str());
    else
      std::printf("dist-check: %lld of %d ranks OK (%s)\n", (long long)ok, size, comm->backend().c_str());
  }
  std::fflush(stdout);
  return ok == size ? 0 : 1;
}

// All-reduce (sum) bandwidth over sizes 1 MiB .. max_mb MiB, doubling, in the nccl-tests terms:
// algbw = bytes / time, busbw = algbw * 2 (n - 1) / n (what each rank's link carries in a ring
// all-reduce, comparable across world sizes). Each size: `warmup` untimed all-reduces, then `iters`
// queued back to back between two synchronisations (a GPU's stream, an MPI call's return).
int run_bandwidth(const std::string& backend, const std::string& device_name, double timeout_s, int64_t max_mb,
                  int64_t iters, int64_t warmup) {
  std::unique_ptr<Communicator> comm = make_communicator(backend, pick_device(backend, device_name), timeout_s);
  const Device device = comm->device();
  const int rank = comm->rank(), size = comm->size();
  UNIREP_CHECK(comm->backend() != "single", "unirep dist-check --bandwidth: one process without a backend has no ",
               "all-reduce to time: launch it under mpirun/srun, or pass --backend nccl (or mpi)");
  auto synchronize = [&] {
    if (device.is_cuda()) cuda::synchronize(device.index);
  };
  std::vector<DType> dtypes = {DType::Float32};
  if (comm->backend() == "nccl") dtypes.push_back(DType::BFloat16);
  if (rank == 0) {
    std::printf("all_reduce sum bandwidth, %d ranks (%s) on %s, %lld iterations after %lld warm-up per size\n", size,
                comm->backend().c_str(), device.str().c_str(), (long long)iters, (long long)warmup);
    if (comm->backend() != "nccl") std::printf("(bf16: not timed; the %s backend reduces float32/float64/integers)\n",
                                               comm->backend().c_str());
    std::printf("%-9s %10s %14s %14s %14s\n", "dtype", "MiB", "time (us)", "algbw (GB/s)", "busbw (GB/s)");
  }
  for (DType dtype : dtypes) {
    for (int64_t mb = 1; mb <= max_mb; mb *= 2) {
      const int64_t bytes = mb << 20;
      // Zeros: a sum of zeros stays finite however often it is repeated.
      Tensor buffer = Tensor::zeros({bytes / int64_t(dtype_size(dtype))}, dtype, device);
      for (int64_t i = 0; i < warmup; ++i) comm->all_reduce(buffer, ReduceOp::Sum);
      synchronize();
      comm->barrier();
      const auto start = std::chrono::steady_clock::now();
      for (int64_t i = 0; i < iters; ++i) comm->all_reduce(buffer, ReduceOp::Sum);
      synchronize();
      const double local = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      // The slowest rank's time is the collective's.
      const std::vector<double> seconds = all_gather(*comm, local);
      const double time = *std::max_element(seconds.begin(), seconds.end()) / double(iters);
      const double algbw = double(bytes) / time / 1e9, busbw = algbw * 2.0 * double(size - 1) / double(size);
      if (rank == 0)
        std::printf("%-9s %10lld %14.3f %14.3f %14.3f\n", dtype_name(dtype), (long long)mb, time * 1e6, algbw, busbw);
    }
  }
  if (rank == 0) std::printf("dist-check: bandwidth done (%d ranks, %s)\n", size, comm->backend().c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace

const char* dist_check_usage() {
  return "  dist-check [--backend auto|mpi|nccl] [--device auto|cpu|cuda] [--timeout S] [--die-at-rank R]\n"
         "             [--stall-at-rank R] [--bandwidth [--max-mb 256] [--iters 20] [--warmup 5]]\n"
         "       check data-parallel training under the launcher (mpirun -np N unirep dist-check): collectives,\n"
         "       state broadcast and the gradient reducer; --die-at-rank/--stall-at-rank drill failure handling;\n"
         "       --bandwidth instead times all-reduces of 1 MiB .. --max-mb MiB (float32, and bf16 on NCCL) and\n"
         "       prints time, algbw and busbw per size (nccl-tests definitions)\n";
}

int command_dist_check(int argc, char** argv) {
  Args args(argc, argv, 2,
            {"--backend", "--device", "--timeout", "--die-at-rank", "--stall-at-rank", "--max-mb", "--iters", "--warmup"},
            {"--bandwidth"});
  const std::string backend = args.get("--backend", "auto"), device = args.get("--device", "auto");
  UNIREP_CHECK(device == "auto" || device == "cpu" || device == "cuda",
               "unirep dist-check: --device expects auto, cpu or cuda, got '", device, "'");
  const double timeout_s = args.get_double("--timeout", 300);
  const int die_at = int(args.get_int("--die-at-rank", -1)), stall_at = int(args.get_int("--stall-at-rank", -1));
  const bool bandwidth = args.flag("--bandwidth");
  const int64_t max_mb = args.get_int("--max-mb", 256), iters = args.get_int("--iters", 20);
  const int64_t warmup = args.get_int("--warmup", 5);
  UNIREP_CHECK(bandwidth || (!args.has("--max-mb") && !args.has("--iters") && !args.has("--warmup")),
               "unirep dist-check: --max-mb, --iters and --warmup apply to --bandwidth");
  UNIREP_CHECK(max_mb >= 1, "unirep dist-check: --max-mb must be >= 1, got ", max_mb);
  UNIREP_CHECK(iters >= 1 && warmup >= 0, "unirep dist-check: --iters must be >= 1 and --warmup >= 0, got ", iters,
               " and ", warmup);
  UNIREP_CHECK(!bandwidth || (die_at < 0 && stall_at < 0),
               "unirep dist-check: --bandwidth does not combine with --die-at-rank/--stall-at-rank");
  int rc = 1;
  try {
    rc = bandwidth ? run_bandwidth(backend, device, timeout_s, max_mb, iters, warmup)
                   : run(backend, device, timeout_s, die_at, stall_at);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unirep dist-check: %s\n", e.what());
    std::fflush(stderr);
    rc = 1;
  }
  shutdown_distributed(rc);
  return rc;
}

}  // namespace unirep
