// The collectives the rest of the code base uses, whatever carries them (NCCL between GPUs, MPI
// between CPU processes). Implementations live in distributed/ and nothing else talks to MPI or
// NCCL. Every call is collective: all ranks make the same calls in the same order with tensors of
// the same shape and dtype.
#pragma once
#include <string>

#include "core/tensor.h"

namespace unirep {

enum class ReduceOp { Sum, Max, Min };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "nccl", "mpi" or "single"
  // In place: t = op over the ranks' t. t is contiguous, on the device the backend serves. On a GPU
  // the reduction is ordered on the compute stream (unirep::cuda::stream()): no host synchronisation.
  virtual void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) = 0;
  // In place: every rank's t becomes root's.
  virtual void broadcast(Tensor& t, int root = 0) = 0;
  virtual void barrier() = 0;
};

}  // namespace unirep
