// Collectives over MPI_COMM_WORLD on CPU tensors (float32, float64, int32, int64): CPU clusters and
// CI train data-parallel with the same code as GPUs. Sum/Max/Min map to MPI's operations; Avg
// scales by 1/size, then sums (as NCCL's ncclAvg). all_reduce_async is MPI_Iallreduce: Open MPI
// moves its data only inside MPI calls, so the reducer calls progress() (MPI_Test) from each later
// gradient hook. Every collective is watched (distributed/watchdog.h).
#pragma once
#include <memory>

#include "distributed/communicator.h"
#include "distributed/watchdog.h"

namespace unirep {

class MpiCommunicator : public Communicator {
 public:
  // MPI must be initialised (make_communicator does it).
  explicit MpiCommunicator(double timeout_s = 300);
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  void all_reduce(Tensor& t, ReduceOp op = ReduceOp::Sum) override;
  void broadcast(Tensor& t, int root = 0) override;
  void barrier() override;
  int64_t max_over_ranks(int64_t value) override;
  std::unique_ptr<PendingCollective> all_reduce_async(Tensor& t, ReduceOp op = ReduceOp::Sum) override;

 private:
  int rank_ = 0, size_ = 1;
  std::shared_ptr<Watchdog> watchdog_;
};

}  // namespace unirep
