#include "distributed/communicator.h"

namespace unirep {

namespace {
struct CompletedCollective : PendingCollective {
  void wait() override {}
};
}  // namespace

std::unique_ptr<PendingCollective> Communicator::all_reduce_async(Tensor& t, ReduceOp op) {
  all_reduce(t, op);
  return std::make_unique<CompletedCollective>();
}

int64_t Communicator::max_over_ranks(int64_t value) {
  Tensor t = Tensor::full({1}, double(value), DType::Int64, device());
  all_reduce(t, ReduceOp::Max);
  return t.to(Device::cpu()).data<int64_t>()[0];
}

}  // namespace unirep
