// Memory for tensors. The CPU side is 64-byte aligned heap memory; blocks of 64 KiB and more are
// rounded up to one of 8 sizes per power of two and cached when freed (up to 1 GiB in all), so a
// training step in the steady state takes its activations from the cache instead of fresh pages
// from the kernel (page faults and zeroing cost about 5% of a CPU step). The CUDA side is a caching
// allocator: freed blocks go back to per-size pools instead of cudaFree, so a training step in the
// steady state makes no cudaMalloc/cudaFree calls (it also keeps kernels from serialising on them).
// Blocks are stream-ordered on the device's one stream, so a block freed while a kernel still reads
// it can be handed out again immediately: the next user's kernels queue behind that kernel.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/device.h"

namespace unirep {

void* device_alloc(size_t nbytes, Device device);
void device_free(void* ptr, size_t nbytes, Device device);

struct CudaAllocatorStats {
  int64_t allocated_bytes = 0;       // held by live tensors
  int64_t reserved_bytes = 0;        // obtained from cudaMalloc (allocated + cached)
  int64_t peak_allocated_bytes = 0;
  int64_t cuda_malloc_calls = 0;
  int64_t cuda_free_calls = 0;
};
CudaAllocatorStats cuda_allocator_stats(int device = 0);
void cuda_reset_peak_stats(int device = 0);
// Returns every cached (unused) block of the shared cache to the driver.
void cuda_empty_cache(int device = 0);

// Private pools, for captured CUDA graphs: a graph replays into the addresses its capture was given,
// so no other tensor may hold them between replays. While a CudaPoolScope is open, this thread's
// allocations on any device come from the pool (its freed blocks, else new cudaMalloc'd ones), and a
// pool's blocks, freed at any time, go back to the pool. cuda_release_pool (after the graph is
// destroyed and its last replay has finished) hands them to the shared cache. A pool id belongs to
// one device.
int64_t cuda_create_pool(int device);
void cuda_release_pool(int device, int64_t pool);
class CudaPoolScope {
 public:
  explicit CudaPoolScope(int64_t pool);
  ~CudaPoolScope();
  CudaPoolScope(const CudaPoolScope&) = delete;
  CudaPoolScope& operator=(const CudaPoolScope&) = delete;

 private:
  int64_t previous_;
};

}  // namespace unirep
