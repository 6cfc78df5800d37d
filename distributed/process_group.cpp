#include "distributed/process_group.h"

#include <cstdlib>
#include <string>

#include "core/error.h"
#include "distributed/mpi_communicator.h"
#include "distributed/mpi_runtime.h"
#include "distributed/nccl_communicator.h"

namespace unirep {

namespace {

int env_int(const std::function<const char*(const char*)>& get, const char* name) {
  const char* text = get(name);
  std::string s = text;
  size_t used = 0;
  int value = -1;
  try {
    value = std::stoi(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  UNIREP_CHECK(used == s.size() && !s.empty() && value >= 0, "distributed: ", name,
               " must be a non-negative integer, got '", s, "'");
  return value;
}

bool has(const std::function<const char*(const char*)>& get, const char* name) { return get(name) != nullptr; }

}  // namespace

DistributedEnv read_distributed_env(const std::function<const char*(const char*)>& get) {
  DistributedEnv e;
  if (has(get, "OMPI_COMM_WORLD_RANK") && has(get, "OMPI_COMM_WORLD_SIZE")) {
    e.launcher = "mpirun";
    e.rank = env_int(get, "OMPI_COMM_WORLD_RANK");
    e.size = env_int(get, "OMPI_COMM_WORLD_SIZE");
    e.local_rank = has(get, "OMPI_COMM_WORLD_LOCAL_RANK") ? env_int(get, "OMPI_COMM_WORLD_LOCAL_RANK") : 0;
    e.local_size = has(get, "OMPI_COMM_WORLD_LOCAL_SIZE") ? env_int(get, "OMPI_COMM_WORLD_LOCAL_SIZE") : 1;
  } else if (has(get, "SLURM_PROCID") && has(get, "SLURM_NTASKS")) {
    // srun --mpi=pmix also sets PMIX_RANK, which must agree with Slurm's task id.
    e.launcher = has(get, "PMIX_RANK") ? "pmix" : "slurm";
    e.rank = env_int(get, "SLURM_PROCID");
    e.size = env_int(get, "SLURM_NTASKS");
    UNIREP_CHECK(!has(get, "PMIX_RANK") || env_int(get, "PMIX_RANK") == e.rank, "distributed: PMIX_RANK ",
                 get("PMIX_RANK"), " differs from SLURM_PROCID ", e.rank);
    e.local_rank = has(get, "SLURM_LOCALID") ? env_int(get, "SLURM_LOCALID") : 0;
    const char* per_node = get("SLURM_NTASKS_PER_NODE");
    e.local_size = per_node && std::string(per_node).find_first_not_of("0123456789") == std::string::npos &&
                           *per_node
                       ? env_int(get, "SLURM_NTASKS_PER_NODE")
                       : e.local_rank + 1;
  } else {
    return e;
  }
  e.launched = true;
  UNIREP_CHECK(e.size >= 1 && e.rank < e.size, "distributed: rank ", e.rank, " outside a world of ", e.size,
               " (", e.launcher, ")");
  UNIREP_CHECK(e.local_size >= 1 && e.local_rank < e.local_size, "distributed: local rank ", e.local_rank,
               " outside a node of ", e.local_size, " (", e.launcher, ")");
  return e;
}

DistributedEnv read_distributed_env() {
  return read_distributed_env([](const char* name) -> const char* { return std::getenv(name); });
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend, Device device, double timeout_s) {
  UNIREP_CHECK(backend == "auto" || backend == "none" || backend == "single" || backend == "mpi" ||
                   backend == "nccl",
               "distributed: backend must be auto, none, mpi or nccl, got '", backend, "'");
  UNIREP_CHECK(timeout_s > 0, "distributed: the collective timeout must be > 0 s, got ", timeout_s);
  const DistributedEnv env = read_distributed_env();
  std::string chosen = backend;
  if (backend == "auto") chosen = !env.launched || env.size == 1 ? "single" : device.is_cuda() ? "nccl" : "mpi";
  if (chosen == "none" || chosen == "single") {
    UNIREP_CHECK(!env.launched || env.size == 1, "distributed: backend '", backend, "' runs one process, but ",
                 env.launcher, " started ", env.size);
    return std::make_unique<SingleCommunicator>(device);
  }
  if (chosen == "mpi") {
    UNIREP_CHECK(device.is_cpu(), "distributed: the mpi backend reduces CPU tensors, but the model is on ",
                 device.str(), " (use --backend nccl or auto)");
    mpi::ensure_initialized(env);
    return std::make_unique<MpiCommunicator>(timeout_s);
  }
  UNIREP_CHECK(device.is_cuda(), "distributed: the nccl backend needs a CUDA device, got ", device.str());
  const int gpus = cuda_device_count();
  UNIREP_CHECK(gpus > 0, "distributed: the nccl backend needs a GPU, but none is visible");
  // A plain run needs no MPI: NCCL makes its own id for a world of one. When every rank is on this
  // node, NCCL's bootstrap sockets stay on loopback (unless NCCL_SOCKET_IFNAME says otherwise).
  if (!env.launched) {
    ::setenv("NCCL_SOCKET_IFNAME", "lo", 0);
    return std::make_unique<NcclCommunicator>(device.index, 0, 1, timeout_s);
  }
  mpi::ensure_initialized(env);
  int node_rank = 0, node_size = 1;
  mpi::node_rank_size(node_rank, node_size);
  if (node_size == mpi::world_size()) ::setenv("NCCL_SOCKET_IFNAME", "lo", 0);
  // Modulo, not equality: with one visible GPU per rank (CUDA_VISIBLE_DEVICES) every rank takes device 0.
  return std::make_unique<NcclCommunicator>(node_rank % gpus, mpi::world_rank(), mpi::world_size(), timeout_s);
}

void shutdown_distributed(int exit_code) {
  if (!mpi::initialized()) return;
  if (exit_code != 0 && mpi::world_size() > 1) mpi::abort(exit_code);
  mpi::finalize();
}

}  // namespace unirep
