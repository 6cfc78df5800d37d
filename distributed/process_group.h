// Who this process is in a data-parallel job and the communicator that connects it to the others.
//
// The launcher (mpirun, or srun --mpi=pmix) starts one process per GPU (or per CPU node) and tells
// each its rank in the environment; read_distributed_env() reads that without touching MPI, so a
// plain single-process run never initialises MPI (a singleton MPI_Init would fork an orted that
// listens on every interface). make_communicator() then builds the backend:
//   single  one process; every collective is a no-op. What "auto" picks when not launched.
//   mpi     MPI_Allreduce/MPI_Bcast over CPU tensors (CPU clusters, CI). "auto" on the CPU.
//   nccl    NCCL over the GPUs, one per rank, bootstrapped by a unique id that rank 0 broadcasts
//           over MPI. "auto" on a GPU. Rank r drives GPU (local rank % GPUs of the node) and makes
//           it the current device.
// MPI is initialised once per process (MPI_THREAD_FUNNELED: only the main thread calls MPI; the
// watchdog thread only aborts) and finalised at exit. When MPI must run without a launcher (backend
// mpi in a plain run), it runs as an isolated singleton with shared-memory transports only, so it
// opens no TCP port (OMPI_MCA_ess_singleton_isolated=1, OMPI_MCA_btl=self,vader unless set).
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "core/device.h"
#include "distributed/communicator.h"

namespace unirep {

struct DistributedEnv {
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  bool launched = false;  // a launcher's variables are set
  std::string launcher;   // "mpirun", "pmix", "slurm" or "" (not launched)
};

// Open MPI's OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} first, then PMIX_RANK (srun --mpi=pmix)
// with Slurm's counts, then SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID (SLURM_NTASKS_PER_NODE for the
// local size when it is a plain number). Inconsistent values throw naming the variable.
DistributedEnv read_distributed_env();
// The same from another source of variables (tests); get returns nullptr for an unset variable.
DistributedEnv read_distributed_env(const std::function<const char*(const char*)>& get);

// backend: auto, none (or single), mpi, nccl (see above). device: where the model lives; a CUDA
// device selects NCCL under auto. timeout_s: a collective that has not completed after this many
// seconds (a rank died or hangs) makes every rank abort with a message naming the rank and the
// collective (distributed/watchdog.h). Use the returned communicator's device() for the model.
std::unique_ptr<Communicator> make_communicator(const std::string& backend, Device device, double timeout_s = 300);

// Ends MPI for this process (a no-op when it was never initialised). exit_code 0: MPI_Finalize.
// Otherwise MPI_Abort, which takes the other ranks down at once instead of leaving them blocked in
// a collective until their watchdog fires. Without a call MPI_Finalize runs at exit.
void shutdown_distributed(int exit_code);

// World size 1: every collective leaves the tensor as it is.
class SingleCommunicator : public Communicator {
 public:
  explicit SingleCommunicator(Device device = Device::cpu()) : device_(device) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  Device device() const override { return device_; }
  void all_reduce(Tensor&, ReduceOp) override {}
  void broadcast(Tensor&, int) override {}
  void barrier() override {}
  int64_t max_over_ranks(int64_t value) override { return value; }

 private:
  Device device_;
};

}  // namespace unirep
