// The process's one MPI session, for the communicators in distributed/ (nothing else calls MPI).
// mpi.h stays out of the headers: callers see plain C++.
#pragma once
#include <cstddef>

#include "distributed/process_group.h"

namespace unirep::mpi {

// MPI_Init_thread(FUNNELED) once; registers MPI_Finalize at exit. Without a launcher (env.launched
// false) the process runs as an isolated singleton on shared-memory transports (no TCP listener).
// Throws when MPI's world differs from what the launcher's variables said (e.g. plain srun of a
// build whose MPI needs --mpi=pmix).
void ensure_initialized(const DistributedEnv& env);
bool initialized();
int world_rank();
int world_size();
// Rank and size among the processes of this node (MPI_Comm_split_type shared memory).
void node_rank_size(int& rank, int& size);
void broadcast_bytes(void* data, size_t bytes, int root);
void barrier();
// MPI_Allreduce(MPI_MAX) of one host value over the world.
int64_t max_over_world(int64_t value);
// MPI_Abort on the world; best effort from any thread (the watchdog's), which std::_Exit backs up.
void abort(int code);
void finalize();

}  // namespace unirep::mpi
