#include "core/cuda/context.h"

#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/device.h"

namespace unirep {

int cuda_device_count() {
  static int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver" error
      return 0;
    }
    return n;
  }();
  return count;
}

namespace cuda {

namespace {
std::mutex g_mutex;
std::vector<cudaStream_t> g_streams;
}  // namespace

int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int device) { CUDA_CHECK(cudaSetDevice(device)); }

cudaStream_t stream(int device) {
  if (device < 0) device = current_device();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_streams.empty()) {
    UNIREP_CHECK(cuda_device_count() > 0, "CUDA: no GPU is available (cudaGetDeviceCount found none)");
    g_streams.resize(cuda_device_count(), nullptr);
  }
  UNIREP_CHECK(device < int(g_streams.size()), "CUDA: device ", device, " does not exist (",
               g_streams.size(), " devices)");
  if (!g_streams[device]) {
    int prev = current_device();
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_streams[device], cudaStreamNonBlocking));
    CUDA_CHECK(cudaSetDevice(prev));
  }
  return g_streams[device];
}

void synchronize(int device) { CUDA_CHECK(cudaStreamSynchronize(stream(device))); }

}  // namespace cuda
}  // namespace unirep
