// Per-device CUDA state: one stream per device on which every kernel, copy, cuBLAS and cuDNN call
// of the process is queued (so ordering between ops needs no events), and the library handles bound
// to it. Created lazily on first use.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

namespace unirep::cuda {

int current_device();
void set_device(int device);
cudaStream_t stream(int device = -1);  // -1: the current device
void synchronize(int device = -1);

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > (1 << 30) ? (1 << 30) : b));
}

}  // namespace unirep::cuda
