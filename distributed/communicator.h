// The collectives the rest of the code base uses, whatever carries them (NCCL between GPUs, MPI
// between CPU processes). Implementations live in distributed/ and nothing else talks to MPI or
// NCCL. Every call is collective: all ranks make the same calls in the same order with tensors of
// the same shape and dtype.
#pragma once
#include <memory>
#include <string>

#include "core/tensor.h"

namespace unirep {

// Avg: floating dtypes only; each rank's value is multiplied by 1/size before the sum (NCCL's
// ncclAvg does the same), so the sum of scaled fp16/bf16 gradients stays in range.
enum class ReduceOp { Sum, Max, Min, Avg };

// "sum", "max", "min", "avg": for messages.
inline const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum: return "sum";
    case ReduceOp::Max: return "max";
    case ReduceOp::Min: return "min";
    case ReduceOp::Avg: return "avg";
  }
  return "?";
}

// A collective started by Communicator::all_reduce_async.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Lets the transport move data while the caller computes (MPI progresses non-blocking
  // collectives only inside MPI calls); cheap, never blocks.
  virtual void progress() {}
  // After wait(), work queued on the compute stream (GPU) or done by the caller (CPU) sees the
  // result. On a GPU the compute stream waits for the collective; the host does not.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "nccl", "mpi" or "single"
  // The device whose tensors the collectives take: cuda:<local rank % GPUs> for NCCL, else the CPU.
  virtual Device device() const { return Device::cpu(); }
  // In place: t = op over the ranks' t. t is contiguous, on the device the backend serves. On a GPU
  // the reduction is ordered on the compute stream (unirep::cuda::stream()): no host synchronisation.
  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // In place: every rank's t becomes root's.
  virtual void broadcast(Tensor& t, int root = 0) = 0;
  virtual void barrier() = 0;
  // Starts all_reduce(t, op) and returns at once. On a GPU it runs on a communication stream that
  // first waits for the work queued so far on the compute stream, so it overlaps what the compute
  // stream does next. t must stay alive and untouched until wait() returns. Collectives started
  // this way and blocking ones must still be issued in the same order on every rank. The default
  // runs the blocking all_reduce.
  virtual std::unique_ptr<PendingCollective> all_reduce_async(Tensor& t, ReduceOp op = ReduceOp::Sum);
  // The largest of the ranks' host values, returned on every rank (e.g. the trainer's stop flag at a
  // step boundary). The MPI-bootstrapped backends exchange it on the host, without touching a GPU
  // stream; the default goes through all_reduce on device().
  virtual int64_t max_over_ranks(int64_t value);
};

}  // namespace unirep
