#include "distributed/mpi_runtime.h"

#include <mpi.h>

#include <cstdlib>
#include <mutex>

#include "core/error.h"

namespace unirep::mpi {

namespace {
std::once_flag g_init_once;
bool g_we_initialised = false;

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw Error(detail::concat("MPI: ", what, " failed: ", std::string(text, size_t(length))));
}

void finalize_at_exit() { finalize(); }
}  // namespace

void ensure_initialized(const DistributedEnv& env) {
  std::call_once(g_init_once, [&] {
    int already = 0;
    MPI_Initialized(&already);
    if (already) return;
    if (!env.launched) {
      ::setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
      ::setenv("OMPI_MCA_btl", "self,vader", 0);
    }
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_we_initialised = true;
    std::atexit(finalize_at_exit);
    UNIREP_CHECK(provided >= MPI_THREAD_FUNNELED, "MPI: the library provides thread level ", provided,
                 ", at least MPI_THREAD_FUNNELED is needed");
  });
  const int rank = world_rank(), size = world_size();
  UNIREP_CHECK(!env.launched || (rank == env.rank && size == env.size), "MPI: the launcher (", env.launcher,
               ") set rank ", env.rank, " of ", env.size, " but MPI sees rank ", rank, " of ", size,
               " (under Slurm launch with srun --mpi=pmix; plain srun starts unconnected singletons)");
}

bool initialized() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

int world_rank() {
  int r = 0;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &r), "MPI_Comm_rank");
  return r;
}

int world_size() {
  int s = 0;
  check(MPI_Comm_size(MPI_COMM_WORLD, &s), "MPI_Comm_size");
  return s;
}

void node_rank_size(int& rank, int& size) {
  MPI_Comm node;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank(), MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  MPI_Comm_rank(node, &rank);
  MPI_Comm_size(node, &size);
  MPI_Comm_free(&node);
}

void broadcast_bytes(void* data, size_t bytes, int root) {
  UNIREP_CHECK(bytes <= size_t(1) << 30, "MPI: broadcast of ", bytes, " bytes, at most 1 GiB at once");
  check(MPI_Bcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
}

void barrier() { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

int64_t max_over_world(int64_t value) {
  long long v = value;
  check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_LONG_LONG, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
  return int64_t(v);
}

void abort(int code) {
  if (initialized()) MPI_Abort(MPI_COMM_WORLD, code);
}

void finalize() {
  if (g_we_initialised && initialized()) MPI_Finalize();
}

}  // namespace unirep::mpi
