// Data-parallel gradient averaging in the manner of PyTorch DDP's Reducer, and the start-of-run
// state broadcast.
//
// Buckets. The parameters are packed, in reverse registration order (the order in which backward
// makes their gradients final: last layer first), into flat buffers of one dtype: the first bucket
// closes once it holds first_bucket_bytes (1 MiB), every later one at bucket_bytes (25 MiB); a
// parameter larger than the cap gets a bucket of its own. Each parameter's slot starts on a 64-byte
// boundary (the gaps stay zero). The layout is fixed at construction, so it is the same on every rank.
//
// No gradient copy. prepare_for_backward() makes every parameter's .grad a view into its bucket
// (zeroing it when the grad was undefined, e.g. after Optimizer::zero_grad(), copying it in when it
// was another tensor), and the autograd engine adds into an existing grad in place, so backward
// writes the gradients straight into the buckets and the averaged values land in .grad.
//
// Overlap. A grad-ready hook per parameter (Tensor::register_grad_ready_hook) counts the bucket's
// missing gradients; when a bucket is complete, it and every complete bucket after it in index
// order is handed to Communicator::all_reduce_async with ReduceOp::Avg. Buckets always go out in
// index order, so every rank issues the same collectives in the same order even when gradients
// become ready in a different order. On a GPU the all-reduce runs on the communication stream while
// backward continues; on MPI it is an MPI_Iallreduce that later hooks progress. finish() issues
// the buckets that never completed (parameters unused in this backward: their zero gradients are
// averaged too, so every rank takes part) and waits: afterwards every .grad holds the mean over the
// ranks (on a GPU: for all work queued on the compute stream after finish(); the host never waits).
//
// The mean: each rank's gradient is multiplied by 1/world size before the sum (ncclAvg does that
// inside the NCCL kernel, MPI scales the bucket first), not divided after: the summed values then
// stay within the range of the per-rank ones (what loss-scaled fp16/bf16 gradients need), and no
// extra pass over the buckets runs after the collective. With a power-of-two world size both
// orders give the same float32 values.
//
// Gradient accumulation: prepare_for_backward(false) on the micro-steps that only accumulate,
// prepare_for_backward(true) before the last one, then finish(). Without sync nothing is
// communicated and finish() is not needed.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "distributed/communicator.h"

namespace unirep {

class Module;

class GradientReducer {
 public:
  // params in registration order (Module::parameters()); those that do not require grad are left
  // out. All on comm.device(). The reducer may be destroyed before the parameters (the hooks it
  // leaves on them then do nothing).
  GradientReducer(Communicator& comm, const std::vector<Tensor>& params, int64_t bucket_bytes = int64_t(25) << 20,
                  int64_t first_bucket_bytes = int64_t(1) << 20);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Before each backward; sync false on gradient-accumulation micro-steps.
  void prepare_for_backward(bool sync);
  // After a synchronising backward: issues what is left, waits; grads are averaged.
  void finish();

  // Indices (registration order, among all params given) of each bucket's parameters, bucket by bucket.
  std::vector<std::vector<int64_t>> bucket_layout() const;
  int64_t collectives_issued() const;  // bucket all-reduces since construction

 private:
  struct State;
  std::shared_ptr<State> state_;
};

// Makes every rank's parameters and buffers (Module::state_dict() order) equal to root's: called
// once after the model is built and before training, so all ranks start from the same weights and
// BatchNorm statistics.
void broadcast_module_state(Communicator& comm, Module& module, int root = 0);

// Exact totals of per-rank counts or sums (eval metrics: correct top-1/top-5, images as int64,
// loss sums as float64), reduced in one collective on comm.device() and returned on the host.
std::vector<int64_t> all_reduce_sum(Communicator& comm, const std::vector<int64_t>& values);
std::vector<double> all_reduce_sum(Communicator& comm, const std::vector<double>& values);
// Every rank's value, indexed by rank, on every rank (each rank fills its own slot of a zero vector;
// the slots are then summed): timings and memory figures reported by rank 0.
std::vector<int64_t> all_gather(Communicator& comm, int64_t value);
std::vector<double> all_gather(Communicator& comm, double value);

}  // namespace unirep
