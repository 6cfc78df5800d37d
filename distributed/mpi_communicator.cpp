#include "distributed/mpi_communicator.h"

#include <mpi.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "distributed/mpi_runtime.h"

namespace unirep {

namespace {

constexpr int64_t kChunk = int64_t(1) << 30;  // MPI counts are int

MPI_Datatype mpi_type(const char* what, const Tensor& t) {
  UNIREP_CHECK(t.defined(), "MPI ", what, ": the tensor is undefined");
  UNIREP_CHECK(t.device().is_cpu(), "MPI ", what, ": the tensor ", t.str(),
               " is on the GPU; the mpi backend reduces CPU tensors (the nccl backend serves GPUs)");
  UNIREP_CHECK(t.is_contiguous(), "MPI ", what, ": the tensor ", t.str(), " is not contiguous");
  switch (t.dtype()) {
    case DType::Float32: return MPI_FLOAT;
    case DType::Float64: return MPI_DOUBLE;
    case DType::Int32: return MPI_INT32_T;
    case DType::Int64: return MPI_INT64_T;
    default: break;
  }
  throw Error(detail::concat("MPI ", what, ": the tensor ", t.str(),
                             " has a dtype the mpi backend does not reduce (float32, float64, int32, int64)"));
}

// Avg becomes a sum of values scaled by 1/size.
MPI_Op prepare_op(Tensor& t, ReduceOp op, int size) {
  switch (op) {
    case ReduceOp::Sum: return MPI_SUM;
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
    case ReduceOp::Avg:
      UNIREP_CHECK(is_floating(t.dtype()), "MPI all_reduce: avg needs a floating tensor, got ", t.str());
      if (size > 1) t.mul_(1.0 / double(size));
      return MPI_SUM;
  }
  return MPI_SUM;
}

void check(int rc, const char* what) {
  UNIREP_CHECK(rc == MPI_SUCCESS, "MPI: ", what, " failed with code ", rc);
}

std::string describe(const char* what, const Tensor& t, ReduceOp op) {
  return detail::concat(what, " ", reduce_op_name(op), " of ", t.str());
}

class MpiPending : public PendingCollective {
 public:
  MpiPending(std::shared_ptr<Watchdog> watchdog, uint64_t watch_id) : watchdog_(std::move(watchdog)), id_(watch_id) {}
  // The buffer must not be released under a running collective.
  ~MpiPending() override {
    if (!finished_) MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    watchdog_->end(id_);
  }
  std::vector<MPI_Request>& requests() { return requests_; }
  void progress() override {
    if (finished_) return;
    int done = 0;
    check(MPI_Testall(int(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
    if (done) finish();
  }
  void wait() override {
    if (finished_) return;
    check(MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    finish();
  }

 private:
  void finish() {
    finished_ = true;
    watchdog_->end(id_);
  }
  std::shared_ptr<Watchdog> watchdog_;
  uint64_t id_;
  std::vector<MPI_Request> requests_;
  bool finished_ = false;
};

}  // namespace

MpiCommunicator::MpiCommunicator(double timeout_s) {
  UNIREP_CHECK(mpi::initialized(), "MpiCommunicator: MPI is not initialised (use make_communicator)");
  rank_ = mpi::world_rank();
  size_ = mpi::world_size();
  watchdog_ = std::make_shared<Watchdog>(rank_, timeout_s, [] { mpi::abort(1); });
}

void MpiCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  MPI_Datatype type = mpi_type("all_reduce", t);
  MPI_Op mpi_op = prepare_op(t, op, size_);
  const uint64_t id = watchdog_->begin(describe("all_reduce", t, op));
  char* data = static_cast<char*>(t.data_ptr());
  for (int64_t start = 0; start < t.numel(); start += kChunk) {
    const int64_t count = std::min(kChunk, t.numel() - start);
    check(MPI_Allreduce(MPI_IN_PLACE, data + start * int64_t(t.element_size()), int(count), type, mpi_op,
                        MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
  watchdog_->end(id);
}

void MpiCommunicator::broadcast(Tensor& t, int root) {
  MPI_Datatype type = mpi_type("broadcast", t);
  UNIREP_CHECK(root >= 0 && root < size_, "MPI broadcast: root ", root, " outside a world of ", size_);
  const uint64_t id = watchdog_->begin(detail::concat("broadcast from rank ", root, " of ", t.str()));
  char* data = static_cast<char*>(t.data_ptr());
  for (int64_t start = 0; start < t.numel(); start += kChunk) {
    const int64_t count = std::min(kChunk, t.numel() - start);
    check(MPI_Bcast(data + start * int64_t(t.element_size()), int(count), type, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
  watchdog_->end(id);
}

void MpiCommunicator::barrier() {
  const uint64_t id = watchdog_->begin("barrier");
  mpi::barrier();
  watchdog_->end(id);
}

int64_t MpiCommunicator::max_over_ranks(int64_t value) {
  const uint64_t id = watchdog_->begin("max over ranks of a host value");
  value = mpi::max_over_world(value);
  watchdog_->end(id);
  return value;
}

std::unique_ptr<PendingCollective> MpiCommunicator::all_reduce_async(Tensor& t, ReduceOp op) {
  MPI_Datatype type = mpi_type("all_reduce_async", t);
  MPI_Op mpi_op = prepare_op(t, op, size_);
  auto pending = std::make_unique<MpiPending>(watchdog_, watchdog_->begin(describe("all_reduce_async", t, op)));
  char* data = static_cast<char*>(t.data_ptr());
  for (int64_t start = 0; start < t.numel(); start += kChunk) {
    const int64_t count = std::min(kChunk, t.numel() - start);
    pending->requests().emplace_back();
    check(MPI_Iallreduce(MPI_IN_PLACE, data + start * int64_t(t.element_size()), int(count), type, mpi_op,
                         MPI_COMM_WORLD, &pending->requests().back()),
          "MPI_Iallreduce");
  }
  return pending;
}

}  // namespace unirep
