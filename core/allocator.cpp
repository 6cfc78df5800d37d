#include "core/allocator.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/error.h"

namespace unirep {

namespace {

constexpr size_t kCpuAlignment = 64;
constexpr size_t kSmallLimit = 1 << 20;   // below: rounded to 512 B
constexpr size_t kLargeRound = 1 << 20;   // at or above: rounded to 1 MiB

size_t round_cuda_size(size_t n) {
  if (n == 0) n = 1;
  size_t r = n < kSmallLimit ? 512 : kLargeRound;
  return (n + r - 1) / r * r;
}

// The pool (0: the shared cache) this thread's device allocations come from (CudaPoolScope).
thread_local int64_t tls_pool = 0;

// Best-fit cache of freed device blocks. A cached block is reused for a request up to 25% smaller
// (small) or 2 MiB smaller (large), which bounds the waste while keeping the pools few. Blocks of a
// private pool (a captured CUDA graph's) go back to that pool's free list, never to the shared one.
class CudaCache {
 public:
  void* allocate(size_t nbytes, int device) {
    size_t size = round_cuda_size(nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t pool = tls_pool;
    UNIREP_CHECK(pool == 0 || pools_.count(pool), "CUDA allocator: pool ", pool, " was released");
    std::multimap<size_t, void*>& free_list = pool == 0 ? free_ : pools_[pool];
    auto it = free_list.lower_bound(size);
    size_t slack = size < kSmallLimit ? size / 4 : 2 * kLargeRound;
    if (it != free_list.end() && it->first <= size + slack) {
      void* p = it->second;
      live_[p] = {it->first, pool};
      stats_.allocated_bytes += int64_t(it->first);
      free_list.erase(it);
      note_peak();
      return p;
    }
    void* p = nullptr;
    int prev = 0;
    CUDA_CHECK(cudaGetDevice(&prev));
    if (prev != device) CUDA_CHECK(cudaSetDevice(device));
    cudaError_t err = cudaMalloc(&p, size);
    if (err != cudaSuccess) {
      cudaGetLastError();
      release_cached_locked();
      err = cudaMalloc(&p, size);
    }
    if (prev != device) CUDA_CHECK(cudaSetDevice(prev));
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw Error(detail::concat("CUDA allocator: out of memory allocating ", size, " bytes on cuda:", device,
                                 " (", stats_.allocated_bytes, " bytes held by tensors, ",
                                 stats_.reserved_bytes, " reserved): ", cudaGetErrorString(err)));
    }
    ++stats_.cuda_malloc_calls;
    stats_.reserved_bytes += int64_t(size);
    stats_.allocated_bytes += int64_t(size);
    live_[p] = {size, pool};
    note_peak();
    return p;
  }

  void release(void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    const auto [size, pool] = it->second;
    stats_.allocated_bytes -= int64_t(size);
    (pool == 0 ? free_ : pools_[pool]).emplace(size, p);
    live_.erase(it);
  }

  int64_t create_pool() {
    std::lock_guard<std::mutex> lock(mutex_);
    const int64_t id = ++last_pool_;
    pools_[id];
    return id;
  }

  // The pool's blocks join the shared cache: its free ones now, its live ones when released.
  void release_pool(int64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pools_.find(id);
    if (it == pools_.end()) return;
    free_.insert(it->second.begin(), it->second.end());
    pools_.erase(it);
    for (auto& [p, block] : live_)
      if (block.pool == id) block.pool = 0;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    release_cached_locked();
  }

  CudaAllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }

 private:
  void note_peak() {
    if (stats_.allocated_bytes > stats_.peak_allocated_bytes) stats_.peak_allocated_bytes = stats_.allocated_bytes;
  }
  void release_cached_locked() {
    if (!free_.empty()) CUDA_CHECK(cudaDeviceSynchronize());  // blocks may still be read by queued kernels
    for (auto& [size, p] : free_) {
      CUDA_CHECK(cudaFree(p));
      stats_.reserved_bytes -= int64_t(size);
      ++stats_.cuda_free_calls;
    }
    free_.clear();
  }

  struct Block {
    size_t size;
    int64_t pool;
  };
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  std::map<int64_t, std::multimap<size_t, void*>> pools_;  // private pools' free blocks
  int64_t last_pool_ = 0;
  std::unordered_map<void*, Block> live_;
  CudaAllocatorStats stats_;
};

CudaCache& cache_for(int device) {
  static std::mutex m;
  static std::vector<std::unique_ptr<CudaCache>> caches;
  std::lock_guard<std::mutex> lock(m);
  UNIREP_CHECK(device >= 0 && device < cuda_device_count(), "CUDA allocator: device ", device,
               " does not exist (", cuda_device_count(), " devices)");
  if (caches.empty()) caches.resize(cuda_device_count());
  if (!caches[device]) caches[device] = std::make_unique<CudaCache>();
  return *caches[device];
}

// CPU blocks from kCpuCacheFrom bytes on: size classes of 8 per power of two (at most 12.5% more
// than asked), freed blocks kept per class for the next request of that class.
constexpr size_t kCpuCacheFrom = size_t(64) << 10;
constexpr size_t kCpuCacheLimit = size_t(1) << 30;

size_t cpu_block_size(size_t nbytes) {
  size_t size = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  if (size < kCpuCacheFrom) return size == 0 ? kCpuAlignment : size;
  int log2 = 63 - __builtin_clzll(size);
  size_t step = size_t(1) << (log2 - 3);
  return (size + step - 1) / step * step;
}

class CpuCache {
 public:
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(size);
    if (it == free_.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    cached_ -= size;
    return p;
  }
  // False when the cache is full (the caller frees the block).
  bool give(void* p, size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + size > kCpuCacheLimit) return false;
    free_[size].push_back(p);
    cached_ += size;
    return true;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

CpuCache& cpu_cache() {
  static CpuCache* cache = new CpuCache;  // never destroyed: tensors may be freed during static destruction
  return *cache;
}

// UNIREP_POISON_ALLOC=1 fills every new allocation with 0xFF bytes (NaN in every floating dtype),
// so a kernel that leaves an output element unwritten fails the tests instead of passing on stale
// or zeroed memory. The test suite runs with it on.
bool poison_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("UNIREP_POISON_ALLOC");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}

}  // namespace

void* device_alloc(size_t nbytes, Device device) {
  if (device.is_cpu()) {
    const size_t size = cpu_block_size(nbytes);
    void* p = size >= kCpuCacheFrom ? cpu_cache().take(size) : nullptr;
    if (!p) p = std::aligned_alloc(kCpuAlignment, size);
    UNIREP_CHECK(p != nullptr, "CPU allocator: out of memory allocating ", nbytes, " bytes");
    if (poison_enabled()) std::memset(p, 0xFF, nbytes);
    return p;
  }
  void* p = cache_for(device.index).allocate(nbytes, device.index);
  if (poison_enabled() && nbytes > 0) CUDA_CHECK(cudaMemsetAsync(p, 0xFF, nbytes, cuda::stream(device.index)));
  return p;
}

void device_free(void* ptr, size_t nbytes, Device device) {
  if (!ptr) return;
  if (device.is_cpu()) {
    const size_t size = cpu_block_size(nbytes);
    if (size < kCpuCacheFrom || !cpu_cache().give(ptr, size)) std::free(ptr);
    return;
  }
  cache_for(device.index).release(ptr);
}

int64_t cuda_create_pool(int device) { return cache_for(device).create_pool(); }
void cuda_release_pool(int device, int64_t pool) { cache_for(device).release_pool(pool); }

CudaPoolScope::CudaPoolScope(int64_t pool) : previous_(tls_pool) { tls_pool = pool; }
CudaPoolScope::~CudaPoolScope() { tls_pool = previous_; }

CudaAllocatorStats cuda_allocator_stats(int device) { return cache_for(device).stats(); }
void cuda_reset_peak_stats(int device) { cache_for(device).reset_peak(); }
void cuda_empty_cache(int device) { cache_for(device).empty_cache(); }

}  // namespace unirep
