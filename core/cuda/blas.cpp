// Lazily created per-device cuBLAS handles (see blas.h).
#include "core/cuda/blas.h"

#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/device.h"

namespace unirep::cuda {

namespace {
std::mutex g_blas_mutex;
std::vector<cublasHandle_t> g_blas_handles;
std::vector<BlasLt> g_blas_lt;
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;  // what cuBLAS itself reserves per handle on Hopper
}  // namespace

cublasHandle_t blas_handle(int device) {
  if (device < 0) device = current_device();
  cudaStream_t s = stream(device);  // validates the device index; takes its own lock
  std::lock_guard<std::mutex> lock(g_blas_mutex);
  if (g_blas_handles.empty()) g_blas_handles.resize(size_t(cuda_device_count()), nullptr);
  cublasHandle_t& h = g_blas_handles[size_t(device)];
  if (!h) {
    int prev = current_device();
    CUDA_CHECK(cudaSetDevice(device));
    cublasHandle_t created = nullptr;
    try {
      CUBLAS_CHECK(cublasCreate(&created));
      CUBLAS_CHECK(cublasSetStream(created, s));
      CUBLAS_CHECK(cublasSetMathMode(created, CUBLAS_DEFAULT_MATH));
      CUBLAS_CHECK(cublasSetPointerMode(created, CUBLAS_POINTER_MODE_HOST));
    } catch (...) {
      if (created) cublasDestroy(created);
      cudaSetDevice(prev);
      throw;
    }
    CUDA_CHECK(cudaSetDevice(prev));
    h = created;  // never destroyed: lives until the process exits, like the streams
  }
  return h;
}

const BlasLt& blas_lt(int device) {
  if (device < 0) device = current_device();
  stream(device);  // validates the device index
  std::lock_guard<std::mutex> lock(g_blas_mutex);
  if (g_blas_lt.empty()) g_blas_lt.resize(size_t(cuda_device_count()));
  BlasLt& lt = g_blas_lt[size_t(device)];
  if (!lt.handle) {
    int prev = current_device();
    CUDA_CHECK(cudaSetDevice(device));
    BlasLt created;
    try {
      CUBLAS_CHECK(cublasLtCreate(&created.handle));
      CUDA_CHECK(cudaMalloc(&created.workspace, kLtWorkspaceBytes));
      created.workspace_bytes = kLtWorkspaceBytes;
    } catch (...) {
      if (created.handle) cublasLtDestroy(created.handle);
      cudaSetDevice(prev);
      throw;
    }
    CUDA_CHECK(cudaSetDevice(prev));
    lt = created;  // kept until the process exits, like the cuBLAS handle
  }
  return lt;
}

}  // namespace unirep::cuda
