#include "core/cuda/cudnn.h"

#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/device.h"

namespace unirep::cuda {

namespace {
std::mutex g_cudnn_mutex;
std::vector<cudnnHandle_t> g_cudnn_handles;
}  // namespace

cudnnHandle_t cudnn_handle(int device) {
  if (device < 0) device = current_device();
  cudaStream_t s = stream(device);  // validates the device number
  std::lock_guard<std::mutex> lock(g_cudnn_mutex);
  if (g_cudnn_handles.empty()) g_cudnn_handles.resize(size_t(cuda_device_count()), nullptr);
  cudnnHandle_t& h = g_cudnn_handles[size_t(device)];
  if (!h) {
    int prev = current_device();
    CUDA_CHECK(cudaSetDevice(device));  // cudnnCreate binds the handle to the current device
    cudnnHandle_t created = nullptr;
    CUDNN_CHECK(cudnnCreate(&created));
    CUDNN_CHECK(cudnnSetStream(created, s));
    h = created;
    CUDA_CHECK(cudaSetDevice(prev));
  }
  return h;
}

}  // namespace unirep::cuda
