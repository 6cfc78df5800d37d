#include "distributed/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/error.h"
#include "distributed/mpi_runtime.h"
#include "distributed/watchdog.h"

#define NCCL_CHECK(EXPR)                                                                                  \
  do {                                                                                                    \
    ncclResult_t unirep_nccl_ = (EXPR);                                                                   \
    if (unirep_nccl_ != ncclSuccess)                                                                      \
      throw ::unirep::Error(::unirep::detail::concat("NCCL error '", ncclGetErrorString(unirep_nccl_), "' in ", \
                                                     #EXPR, " at ", __FILE__, ":", __LINE__));            \
  } while (0)

namespace unirep {

namespace {

ncclDataType_t nccl_type(const char* what, const Tensor& t, int device) {
  UNIREP_CHECK(t.defined(), "NCCL ", what, ": the tensor is undefined");
  UNIREP_CHECK(t.device() == Device::cuda(device), "NCCL ", what, ": the tensor ", t.str(), " is not on cuda:",
               device, ", the GPU of this rank");
  UNIREP_CHECK(t.is_contiguous(), "NCCL ", what, ": the tensor ", t.str(), " is not contiguous");
  switch (t.dtype()) {
    case DType::Float32: return ncclFloat32;
    case DType::Float64: return ncclFloat64;
    case DType::BFloat16: return ncclBfloat16;
    case DType::Float16: return ncclFloat16;
    case DType::Int32: return ncclInt32;
    case DType::Int64: return ncclInt64;
    case DType::UInt8: return ncclUint8;
  }
  throw Error(detail::concat("NCCL ", what, ": unsupported dtype of ", t.str()));
}

ncclRedOp_t nccl_op(ReduceOp op, const Tensor& t) {
  switch (op) {
    case ReduceOp::Sum: return ncclSum;
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
    case ReduceOp::Avg:
      UNIREP_CHECK(is_floating(t.dtype()), "NCCL all_reduce: avg needs a floating tensor, got ", t.str());
      return ncclAvg;
  }
  return ncclSum;
}

struct Event {
  cudaEvent_t event = nullptr;
  explicit Event(cudaStream_t stream) {
    CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(event, stream));
  }
  ~Event() { cudaEventDestroy(event); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

class NcclPending : public PendingCollective {
 public:
  NcclPending(std::shared_ptr<Event> done, cudaStream_t compute) : done_(std::move(done)), compute_(compute) {}
  void wait() override { CUDA_CHECK(cudaStreamWaitEvent(compute_, done_->event, 0)); }

 private:
  std::shared_ptr<Event> done_;
  cudaStream_t compute_;
};

}  // namespace

struct NcclCommunicator::State {
  int device = 0;
  std::atomic<ncclComm_t> comm{nullptr};
  cudaStream_t comm_stream = nullptr;
  std::unique_ptr<Watchdog> watchdog;

  // Runs the NCCL call `enqueue` watched as a host-blocking collective: the first collective of a
  // kind sets up its connections inside the call (NCCL's lazy runtime connect), which waits for the
  // peers on the host, so a peer that never joins must be caught there too (seen: a stalled rank).
  template <class F>
  void enqueue_watched(const std::string& op, F&& enqueue) {
    struct Watched {
      Watchdog& dog;
      uint64_t id;
      ~Watched() { dog.end(id); }  // also when the call throws
    } watched{*watchdog, watchdog->begin(op)};
    enqueue();
  }

  // Watches the work queued on `stream` so far as collective `op`; returns its completion event.
  std::shared_ptr<Event> watch(std::string op, cudaStream_t stream) {
    auto done = std::make_shared<Event>(stream);
    const int dev = device;
    watchdog->track(std::move(op), [done, dev] {
      cudaSetDevice(dev);  // the watchdog thread's current device
      return cudaEventQuery(done->event) != cudaErrorNotReady;
    });
    return done;
  }
};

NcclCommunicator::NcclCommunicator(int cuda_device, int rank, int size, double timeout_s)
    : cuda_device_(cuda_device), rank_(rank), size_(size), state_(std::make_unique<State>()) {
  UNIREP_CHECK(size >= 1 && rank >= 0 && rank < size, "NcclCommunicator: rank ", rank, " outside a world of ", size);
  UNIREP_CHECK(size == 1 || mpi::initialized(), "NcclCommunicator: ", size, " ranks need MPI for the bootstrap");
  State& s = *state_;
  s.device = cuda_device;
  cuda::set_device(cuda_device);
  State* raw = state_.get();
  s.watchdog = std::make_unique<Watchdog>(
      rank, timeout_s,
      [raw] {
        if (ncclComm_t comm = raw->comm.load()) ncclCommAbort(comm);
        mpi::abort(1);
      },
      [raw]() -> std::string {
        ncclComm_t comm = raw->comm.load();
        if (!comm) return "";
        ncclResult_t error = ncclSuccess;
        if (ncclCommGetAsyncError(comm, &error) != ncclSuccess || error == ncclSuccess || error == ncclInProgress)
          return "";
        return detail::concat("NCCL asynchronous error '", ncclGetErrorString(error), "': ", ncclGetLastError(comm));
      });
  ncclUniqueId id;
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  const uint64_t watch = s.watchdog->begin("NCCL bootstrap (unique id broadcast and ncclCommInitRank)");
  if (size > 1) mpi::broadcast_bytes(&id, sizeof(id), 0);
  ncclComm_t comm = nullptr;
  NCCL_CHECK(ncclCommInitRank(&comm, size, id, rank));
  s.comm.store(comm);
  s.watchdog->end(watch);
  int low = 0, high = 0;
  CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&low, &high));
  CUDA_CHECK(cudaStreamCreateWithPriority(&s.comm_stream, cudaStreamNonBlocking, high));
}

NcclCommunicator::~NcclCommunicator() {
  State& s = *state_;
  // Drain first, still watched: ncclCommDestroy would wait for queued work without a timeout.
  cudaSetDevice(cuda_device_);
  cudaStreamSynchronize(s.comm_stream);
  cudaStreamSynchronize(cuda::stream(cuda_device_));
  s.watchdog.reset();
  if (ncclComm_t comm = s.comm.exchange(nullptr)) ncclCommDestroy(comm);
  cudaStreamDestroy(s.comm_stream);
}

void NcclCommunicator::all_reduce(Tensor& t, ReduceOp op) {
  ncclDataType_t type = nccl_type("all_reduce", t, cuda_device_);
  ncclRedOp_t nop = nccl_op(op, t);
  cudaStream_t stream = cuda::stream(cuda_device_);
  const std::string what = detail::concat("all_reduce ", reduce_op_name(op), " of ", t.str());
  state_->enqueue_watched(what, [&] {
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), type, nop, state_->comm.load(), stream));
  });
  state_->watch(what, stream);
}

void NcclCommunicator::broadcast(Tensor& t, int root) {
  ncclDataType_t type = nccl_type("broadcast", t, cuda_device_);
  UNIREP_CHECK(root >= 0 && root < size_, "NCCL broadcast: root ", root, " outside a world of ", size_);
  cudaStream_t stream = cuda::stream(cuda_device_);
  const std::string what = detail::concat("broadcast from rank ", root, " of ", t.str());
  state_->enqueue_watched(what, [&] {
    NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), type, root, state_->comm.load(), stream));
  });
  state_->watch(what, stream);
}

void NcclCommunicator::barrier() {
  if (size_ == 1) return;
  const uint64_t watch = state_->watchdog->begin("barrier");
  mpi::barrier();
  state_->watchdog->end(watch);
}

int64_t NcclCommunicator::max_over_ranks(int64_t value) {
  if (size_ == 1) return value;
  const uint64_t watch = state_->watchdog->begin("max over ranks of a host value");
  value = mpi::max_over_world(value);
  state_->watchdog->end(watch);
  return value;
}

std::unique_ptr<PendingCollective> NcclCommunicator::all_reduce_async(Tensor& t, ReduceOp op) {
  ncclDataType_t type = nccl_type("all_reduce_async", t, cuda_device_);
  ncclRedOp_t nop = nccl_op(op, t);
  State& s = *state_;
  cudaStream_t compute = cuda::stream(cuda_device_);
  Event ready(compute);
  CUDA_CHECK(cudaStreamWaitEvent(s.comm_stream, ready.event, 0));
  const std::string what = detail::concat("all_reduce_async ", reduce_op_name(op), " of ", t.str());
  s.enqueue_watched(what, [&] {
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), type, nop, s.comm.load(), s.comm_stream));
  });
  auto done = s.watch(what, s.comm_stream);
  return std::make_unique<NcclPending>(std::move(done), compute);
}

}  // namespace unirep
