// `unirep bench`: throughput of UniRepLKNet-V on a synthetic batch, for comparing with PyTorch
// (launch/bench_vs_pytorch.sh) and for measuring data-parallel scaling.
//
// The input is a random channels-last batch [N, H, W, 3] and random labels in [0, 1000), made once
// and kept on the device: no data loading, so the numbers are the model's and the optimizer's.
//   train  the trainer's step (launch/trainer.cpp) with its default hyper-parameters: autocast
//          forward (the parameters cast by an AutocastWeightCache), label-smoothed cross-entropy
//          (0.1), backward, AdamW (decay groups, wd 0.05), zero_grad. float16 adds the GradScaler,
//          as in the trainer; its overflow check costs one host synchronisation per step, the only
//          one inside the timed loop.
//   infer  eval-mode forward under no_grad (and autocast); --deploy times the re-parameterised
//          deploy structure (UniRepLKNet::reparameterized, what `unirep reparam` writes).
// Timing: --warmup steps (they also fill the caching allocator), a device synchronize, the peak
// memory counter reset, then --steps steps queued without any host synchronisation, then another
// synchronize. ms/step = elapsed / steps; img/s = batch * steps / elapsed; host ms/step = the time
// to queue the steps. Well under ms/step, the GPU is the bottleneck; close to it, either the host is,
// or the host sat blocked on a full launch queue (CUDA holds about a thousand pending launches) while
// the GPU worked: the same model at --batch 1 leaves only the host's cost per launch. The peak is the caching
// allocator's peak of memory held by tensors over the timed steps (torch.cuda.max_memory_allocated
// measures the same); "reserved" is what the allocator holds from cudaMalloc at the end, and a
// cudaMalloc inside the timed steps means the allocator had not reached its steady state. The CPU
// has no such counters: there peak_mem_bytes, reserved_bytes and cuda_mallocs_in_timed_steps are null.
//
// Under mpirun/srun every rank runs the same step on its own batch (--batch is per rank), starting
// from rank 0's weights; in train mode the GradientReducer averages the gradients during backward,
// exactly as in the trainer. --no-comm builds no reducer: each rank steps on its own gradients, so
// the difference between the two runs is what communication costs beyond its overlap with backward.
// Rank 0 prints every rank's img/s and their sum. --profile adds a GPU-time table by launch site.
// --cuda-graph times replays of the step captured as a CUDA graph after the warm-up (core/cuda/graph.h;
// one rank or --no-comm, not float16 training), as the trainer runs it: host queueing then shrinks to
// one graph launch (plus restaging AdamW's step values) a step.
#include "launch/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/autocast_weight_cache.h"
#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/cuda/context.h"
#include "core/cuda/graph.h"
#include "core/cuda/profiler.h"
#include "core/device.h"
#include "core/error.h"
#include "distributed/process_group.h"
#include "distributed/reducer.h"
#include "launch/args.h"
#include "launch/config.h"
#include "layers/unireplknet/model.h"
#include "optim/grad_scaler.h"
#include "optim/optimizer.h"
#include "optim/param_groups.h"

namespace unirep {

namespace {

constexpr int64_t kNumClasses = 1000, kInChans = 3;
constexpr uint64_t kSeed = 0x62656e6368ull;

struct BenchOptions {
  std::string model = "t", mode = "train", dtype = "bf16", device = "auto", backend = "auto";
  int64_t batch = 128, image_size = 224, steps = 20, warmup = 5;
  bool deploy = false, no_comm = false, json = false, profile = false, cuda_graph = false;
  double timeout_s = 300;
};

BenchOptions parse_options(int argc, char** argv) {
  Args args(argc, argv, 2,
            {"--model", "--mode", "--batch", "--dtype", "--image-size", "--steps", "--warmup", "--device", "--backend",
             "--timeout"},
            {"--deploy", "--no-comm", "--json", "--profile", "--cuda-graph"});
  UNIREP_CHECK(args.positional().empty(), "unirep bench: unexpected argument '",
               args.positional().empty() ? "" : args.positional()[0], "'");
  BenchOptions o;
  o.model = args.get("--model", o.model);
  o.mode = args.get("--mode", o.mode);
  o.dtype = args.get("--dtype", o.dtype);
  o.device = args.get("--device", o.device);
  o.backend = args.get("--backend", o.backend);
  o.batch = args.get_int("--batch", o.batch);
  o.image_size = args.get_int("--image-size", o.image_size);
  o.steps = args.get_int("--steps", o.steps);
  o.warmup = args.get_int("--warmup", o.warmup);
  o.timeout_s = args.get_double("--timeout", o.timeout_s);
  o.deploy = args.flag("--deploy");
  o.no_comm = args.flag("--no-comm");
  o.json = args.flag("--json");
  o.profile = args.flag("--profile");
  o.cuda_graph = args.flag("--cuda-graph");
  UNIREP_CHECK(o.mode == "train" || o.mode == "infer", "unirep bench: --mode expects train or infer, got '", o.mode,
               "'");
  UNIREP_CHECK(o.dtype == "bf16" || o.dtype == "f16" || o.dtype == "f32",
               "unirep bench: --dtype expects bf16, f16 or f32, got '", o.dtype, "'");
  UNIREP_CHECK(o.device == "auto" || o.device == "cpu" || o.device == "cuda",
               "unirep bench: --device expects auto, cpu or cuda, got '", o.device, "'");
  UNIREP_CHECK(o.batch >= 1, "unirep bench: --batch must be positive, got ", o.batch);
  UNIREP_CHECK(o.image_size >= 1, "unirep bench: --image-size must be positive, got ", o.image_size);
  UNIREP_CHECK(o.steps >= 1, "unirep bench: --steps must be positive, got ", o.steps);
  UNIREP_CHECK(o.warmup >= 0, "unirep bench: --warmup must be >= 0, got ", o.warmup);
  UNIREP_CHECK(!o.deploy || o.mode == "infer",
               "unirep bench: --deploy times the deploy structure, which only infers: use it with --mode infer");
  UNIREP_CHECK(!o.no_comm || o.mode == "train",
               "unirep bench: --no-comm leaves out the gradient all-reduce, which only --mode train has");
  if (o.device == "cuda") UNIREP_CHECK(cuda_available(), "unirep bench: --device cuda: no CUDA GPU is available");
  UNIREP_CHECK(!o.profile || o.device != "cpu", "unirep bench: --profile times GPU kernels: not with --device cpu");
  UNIREP_CHECK(!o.cuda_graph || o.device != "cpu", "unirep bench: --cuda-graph replays a CUDA graph: not with --device cpu");
  UNIREP_CHECK(!o.cuda_graph || o.dtype != "f16" || o.mode == "infer",
               "unirep bench: --cuda-graph: a float16 training step skips overflowing steps on the host, which a "
               "graph cannot; use bf16 or f32");
  return o;
}

std::optional<DType> autocast_dtype(const std::string& dtype) {
  if (dtype == "bf16") return DType::BFloat16;
  if (dtype == "f16") return DType::Float16;
  return std::nullopt;
}

void synchronize(Device device) {
  if (device.is_cuda()) cuda::synchronize(device.index);
}

}  // namespace

const char* bench_usage() {
  return "  bench --model V [--mode train|infer] [--batch 128] [--dtype bf16|f16|f32] [--image-size 224]\n"
         "        [--deploy] [--steps 20] [--warmup 5] [--device auto|cpu|cuda] [--backend auto|none|mpi|nccl]\n"
         "        [--no-comm] [--timeout S] [--json] [--profile] [--cuda-graph]\n"
         "       throughput of UniRepLKNet-V (1000 classes) on a synthetic batch: the trainer's step (train) or\n"
         "       an eval forward (infer; --deploy: re-parameterised). Under mpirun/srun data parallel, --batch per\n"
         "       rank; --no-comm skips the gradient all-reduce. --json: one JSON object on rank 0. --profile: then\n"
         "       GPU and host time per launch site over a few more steps (core/cuda/profiler.h), on stderr.\n"
         "       --cuda-graph: time replays of the step captured as a CUDA graph (as the trainer runs it)\n";
}

int command_bench(int argc, char** argv) {
  const BenchOptions o = parse_options(argc, argv);
  const bool train = o.mode == "train";
  Device device = o.device == "cpu" || (o.device == "auto" && !cuda_available()) ? Device::cpu() : Device::cuda();
  std::unique_ptr<Communicator> comm = make_communicator(o.backend, device, o.timeout_s);
  device = comm->device();
  const int rank = comm->rank(), world = comm->size();
  const std::optional<DType> low_precision = autocast_dtype(o.dtype);
  const TrainConfig defaults;

  UniRepLKNetConfig mc = unireplknet_variant(o.model);
  mc.num_classes = kNumClasses;
  mc.in_chans = kInChans;
  auto model = std::make_shared<UniRepLKNet>(mc);
  {
    Generator init_gen(kSeed);
    model->init_weights(init_gen);
  }
  model->train(train);
  if (o.deploy) {
    model = model->reparameterized();
    model->eval();
  }
  model->to(device);
  if (world > 1) broadcast_module_state(*comm, *model);

  Generator data_gen(kSeed + uint64_t(rank));
  const Tensor x = Tensor::randn({o.batch, o.image_size, o.image_size, kInChans}, data_gen, DType::Float32, device);
  std::mt19937_64 label_rng(kSeed + uint64_t(rank));
  std::uniform_int_distribution<int64_t> draw_label(0, kNumClasses - 1);
  std::vector<int64_t> labels(size_t(o.batch));
  for (int64_t& l : labels) l = draw_label(label_rng);
  const Tensor y = Tensor::from_vector(labels, {o.batch}, DType::Int64, device);

  const std::vector<Tensor> params = model->parameters();
  std::unique_ptr<Optimizer> optimizer;
  std::unique_ptr<GradScaler> scaler;
  std::unique_ptr<GradientReducer> reducer;
  if (train) {
    ParamGroupOptions groups;
    groups.weight_decay = defaults.optimizer.weight_decay;
    optimizer = std::make_unique<AdamW>(make_param_groups(model->named_parameters(), groups),
                                        defaults.optimizer.betas[0], defaults.optimizer.betas[1],
                                        defaults.optimizer.eps);
    GradScaler::Options scaler_options;
    scaler_options.enabled = low_precision == DType::Float16;
    scaler_options.init_scale = defaults.precision.loss_scale;
    scaler_options.growth_interval = defaults.precision.loss_scale_growth_interval;
    scaler = std::make_unique<GradScaler>(scaler_options);
    if (comm->backend() != "single" && !o.no_comm)
      reducer = std::make_unique<GradientReducer>(*comm, params, defaults.distributed.bucket_mb << 20);
  }

  auto train_step = [&] {
    Tensor loss;
    {
      AutocastGuard autocast(low_precision.value_or(DType::Float32), low_precision.has_value());
      AutocastWeightCache weights(params);  // every parameter cast in a few launches; ends with the forward
      Tensor logits = cast(model->forward(x), DType::Float32);
      loss = cross_entropy(logits, y, -100, defaults.augment.label_smoothing);
    }
    if (reducer) reducer->prepare_for_backward(/*sync=*/true);
    scaler->scale(loss).backward();
    if (reducer) reducer->finish();
    const bool overflow = scaler->enabled() && scaler->unscale_and_check(params);
    if (!overflow) optimizer->step(defaults.optimizer.lr, defaults.optimizer.weight_decay);
    if (scaler->enabled()) scaler->update(overflow);
    optimizer->zero_grad();
  };
  auto infer_step = [&] {
    NoGradGuard no_grad;
    AutocastGuard autocast(low_precision.value_or(DType::Float32), low_precision.has_value());
    AutocastWeightCache weights(params);
    model->forward(x);
  };
  auto step = [&] { train ? train_step() : infer_step(); };

  for (int64_t i = 0; i < o.warmup; ++i) step();
  // --cuda-graph: the step captured once (its blocks in the graph's own pool, so the shared cache is
  // emptied first) and replayed, the optimizer's step values restaged before each replay.
  std::unique_ptr<cuda::Graph> graph;
  if (o.cuda_graph) {
    UNIREP_CHECK(device.is_cuda(), "unirep bench: --cuda-graph needs a GPU");
    UNIREP_CHECK(!reducer, "unirep bench: --cuda-graph does not capture the gradient all-reduce: add --no-comm");
    cuda_empty_cache(device.index);
    graph = std::make_unique<cuda::Graph>(device.index);
    graph->capture(step);  // counts one optimizer step: its replay follows
    graph->replay();
  }
  auto timed_step = [&] {
    if (!graph) return step();
    if (train) optimizer->restage(defaults.optimizer.lr, defaults.optimizer.weight_decay);
    graph->replay();
  };
  synchronize(device);
  comm->barrier();
  if (device.is_cuda()) cuda_reset_peak_stats(device.index);
  // cudaMalloc inside the timed steps would mean the caching allocator has not reached a steady state.
  const int64_t mallocs_before = device.is_cuda() ? cuda_allocator_stats(device.index).cuda_malloc_calls : 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.steps; ++i) timed_step();
  // How long the host took to queue the steps (see the top: close to the total also when the launch
  // queue was full and the host waited on the GPU).
  const double host_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  synchronize(device);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  int64_t peak_bytes = 0, reserved_bytes = 0, timed_mallocs = 0;
  if (device.is_cuda()) {
    const CudaAllocatorStats stats = cuda_allocator_stats(device.index);
    peak_bytes = stats.peak_allocated_bytes;
    reserved_bytes = stats.reserved_bytes;
    timed_mallocs = stats.cuda_malloc_calls - mallocs_before;
  }
  // A few more steps with every launch timed (the events cost a little), after the figures above were
  // read: where the step's time goes.
  if (o.profile && device.is_cuda()) {
    const int64_t profiled = std::min<int64_t>(o.steps, 5);
    cuda::start_profiling();
    for (int64_t i = 0; i < profiled; ++i) step();
    const std::vector<cuda::ProfileEntry> sites = cuda::stop_profiling();
    double total_ms = 0, total_host_ms = 0;
    for (const cuda::ProfileEntry& e : sites) total_ms += e.ms, total_host_ms += e.host_ms;
    if (rank == 0) {
      std::fprintf(stderr,
                   "time per step by launch site (%lld profiled steps; GPU %.2f ms/step, host %.2f ms/step in all):\n",
                   (long long)profiled, total_ms / double(profiled), total_host_ms / double(profiled));
      std::fprintf(stderr, "%10s %6s %12s %9s  %s\n", "GPU ms", "%", "host ms", "launches", "site");
      for (size_t i = 0; i < sites.size() && i < 40; ++i)
        std::fprintf(stderr, "%10.3f %6.1f %12.3f %9lld  %s\n", sites[i].ms / double(profiled),
                     100 * sites[i].ms / total_ms, sites[i].host_ms / double(profiled),
                     (long long)(sites[i].launches / profiled), sites[i].site.c_str());
    }
  }

  const std::vector<double> img_per_s = all_gather(*comm, double(o.batch * o.steps) / seconds);
  const std::vector<double> ms_per_step = all_gather(*comm, 1e3 * seconds / double(o.steps));
  const std::vector<double> host_ms_per_step = all_gather(*comm, 1e3 * host_seconds / double(o.steps));
  const std::vector<int64_t> peaks = all_gather(*comm, peak_bytes), reserved = all_gather(*comm, reserved_bytes);
  const std::vector<int64_t> mallocs = all_gather(*comm, timed_mallocs);
  if (rank != 0) return 0;

  double total = 0, slowest_ms = 0;
  for (double v : img_per_s) total += v;
  for (double v : ms_per_step) slowest_ms = std::max(slowest_ms, v);
  const double host_ms = *std::max_element(host_ms_per_step.begin(), host_ms_per_step.end());
  const int64_t peak = *std::max_element(peaks.begin(), peaks.end());
  const int64_t most_reserved = *std::max_element(reserved.begin(), reserved.end());
  const int64_t most_mallocs = *std::max_element(mallocs.begin(), mallocs.end());
  if (o.json) {
    nlohmann::json j = {{"model", mc.name},
                        {"mode", o.mode},
                        {"deploy", o.deploy},
                        {"dtype", o.dtype},
                        {"batch", o.batch},
                        {"image_size", o.image_size},
                        {"steps", o.steps},
                        {"warmup", o.warmup},
                        {"world_size", world},
                        {"backend", comm->backend()},
                        {"img_per_s", total},
                        {"per_rank_img_per_s", img_per_s},
                        {"ms_per_step", slowest_ms},
                        {"host_ms_per_step", host_ms},
                        {"peak_mem_bytes", device.is_cuda() ? nlohmann::json(peak) : nlohmann::json(nullptr)},
                        {"reserved_bytes", device.is_cuda() ? nlohmann::json(most_reserved) : nlohmann::json(nullptr)},
                        {"cuda_mallocs_in_timed_steps",
                         device.is_cuda() ? nlohmann::json(most_mallocs) : nlohmann::json(nullptr)},
                        {"device", device.str()},
                        {"no_comm", o.no_comm},
                        {"cuda_graph", o.cuda_graph}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("UniRepLKNet-%s %s%s%s %s, batch %lld x %lldx%lldx%lld on %s", mc.name.c_str(), o.mode.c_str(),
                o.deploy ? " (deploy)" : "", o.cuda_graph ? " (CUDA graph)" : "", o.dtype.c_str(), (long long)o.batch,
                (long long)o.image_size, (long long)o.image_size, (long long)kInChans, device.str().c_str());
    if (world > 1)
      std::printf(", %d ranks (%s%s)", world, comm->backend().c_str(),
                  train ? (o.no_comm ? ", no gradient all-reduce" : ", gradients all-reduced") : "");
    std::printf(": %.1f img/s, %.2f ms/step (host queueing %.2f ms/step) over %lld steps after %lld warm-up", total,
                slowest_ms, host_ms, (long long)o.steps, (long long)o.warmup);
    if (device.is_cuda())
      std::printf(", peak memory %.2f GiB (reserved %.2f GiB), %lld cudaMalloc calls in the timed steps",
                  double(peak) / double(1 << 30), double(most_reserved) / double(1 << 30),
                  (long long)most_mallocs);
    std::printf("\n");
    if (world > 1)
      for (int r = 0; r < world; ++r)
        std::printf("  rank %d: %.1f img/s, %.2f ms/step\n", r, img_per_s[size_t(r)], ms_per_step[size_t(r)]);
  }
  std::fflush(stdout);
  return 0;
}

}  // namespace unirep
