// cuBLAS: one handle per device, created on first use and bound to that device's unirep stream
// (cuda::stream()), so GEMMs queue behind the kernels that produced their operands. The handles
// use pure float32 math (CUBLAS_DEFAULT_MATH: no TF32), so float32 products match the CPU
// reference; callers pick the compute type per call (CUBLAS_COMPUTE_32F, 64F for double).
#pragma once
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstddef>

#include "core/error.h"

namespace unirep::cuda {

// The handle of `device` (-1: the current device). The caller must have that device current when
// it issues calls on the handle, as for every kernel launch.
cublasHandle_t blas_handle(int device = -1);

// cuBLASLt (the matmuls with fused epilogues, core/ops/matmul.h): the handle of `device` and its
// workspace, allocated once and kept like the handle; both used only on that device's unirep stream.
struct BlasLt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
const BlasLt& blas_lt(int device = -1);

}  // namespace unirep::cuda

// Every cuBLAS call: a failure throws unirep::Error naming the call, the file and line, and the status.
#define CUBLAS_CHECK(EXPR)                                                                           \
  do {                                                                                               \
    cublasStatus_t unirep_blas_status_ = (EXPR);                                                     \
    if (unirep_blas_status_ != CUBLAS_STATUS_SUCCESS)                                                \
      throw ::unirep::Error(::unirep::detail::concat("cuBLAS error '",                               \
                                                     cublasGetStatusString(unirep_blas_status_),     \
                                                     "' in ", #EXPR, " at ", __FILE__, ":", __LINE__)); \
  } while (0)
