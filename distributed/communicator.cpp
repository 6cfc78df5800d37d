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

}  // namespace unirep
