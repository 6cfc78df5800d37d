// Collectives between GPUs through NCCL, one GPU per rank.
//
// Bootstrap: rank 0 asks NCCL for a unique id and broadcasts its bytes over MPI; every rank then
// joins the communicator with ncclCommInitRank on its GPU. A world of one makes its id itself and
// needs no MPI. all_reduce/broadcast run on the compute stream (unirep::cuda::stream()), so they
// are ordered after the kernels that produced their input and before the ones that read their
// output, without host synchronisation. all_reduce_async runs on a communication stream of high
// priority: it waits (cudaEvent) for the compute stream at the call, and wait() makes the compute
// stream wait for it, so the gradient reducer's all-reduces overlap the rest of backward.
// Types: float32, bfloat16, float16, float64, int32, int64, uint8. Avg is NCCL's ncclAvg.
//
// Failure: every collective is watched until its completion event (distributed/watchdog.h); a
// timeout or an asynchronous NCCL error (ncclCommGetAsyncError, polled by the watchdog) aborts the
// communicator (ncclCommAbort), then MPI, and exits with status 1.
#pragma once
#include <memory>

#include "distributed/communicator.h"

namespace unirep {

class NcclCommunicator : public Communicator {
 public:
  // Makes cuda_device current. With size > 1, MPI must be initialised (make_communicator does it).
  NcclCommunicator(int cuda_device, int rank, int size, double timeout_s = 300);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  Device device() const override { return Device::cuda(cuda_device_); }
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  void broadcast(Tensor& t, int root = 0) override;
  void barrier() override;
  int64_t max_over_ranks(int64_t value) override;
  std::unique_ptr<PendingCollective> all_reduce_async(Tensor& t, ReduceOp op = ReduceOp::Sum) override;

 private:
  struct State;
  int cuda_device_, rank_, size_;
  std::unique_ptr<State> state_;
};

}  // namespace unirep
