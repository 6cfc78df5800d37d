#include "distributed/dist_check.h"

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "autograd/ops.h"
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

int run(const std::string& backend, const std::string& device_name, double timeout_s, int die_at, int stall_at) {
  Device device = Device::cpu();
  if (device_name == "cuda" || (device_name == "auto" && backend != "mpi" && cuda_available())) device = Device::cuda();
  std::unique_ptr<Communicator> comm = make_communicator(backend, device, timeout_s);
  device = comm->device();
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

}  // namespace

const char* dist_check_usage() {
  return "  dist-check [--backend auto|mpi|nccl] [--device auto|cpu|cuda] [--timeout S] [--die-at-rank R]\n"
         "             [--stall-at-rank R]\n"
         "       check data-parallel training under the launcher (mpirun -np N unirep dist-check): collectives,\n"
         "       state broadcast and the gradient reducer; --die-at-rank/--stall-at-rank drill failure handling\n";
}

int command_dist_check(int argc, char** argv) {
  Args args(argc, argv, 2, {"--backend", "--device", "--timeout", "--die-at-rank", "--stall-at-rank"}, {});
  const std::string backend = args.get("--backend", "auto"), device = args.get("--device", "auto");
  UNIREP_CHECK(device == "auto" || device == "cpu" || device == "cuda",
               "unirep dist-check: --device expects auto, cpu or cuda, got '", device, "'");
  const double timeout_s = args.get_double("--timeout", 300);
  const int die_at = int(args.get_int("--die-at-rank", -1)), stall_at = int(args.get_int("--stall-at-rank", -1));
  int rc = 1;
  try {
    rc = run(backend, device, timeout_s, die_at, stall_at);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unirep dist-check: %s\n", e.what());
    std::fflush(stderr);
    rc = 1;
  }
  shutdown_distributed(rc);
  return rc;
}

}  // namespace unirep
