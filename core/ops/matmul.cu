// Batched GEMM (core/ops/matmul.h) on cuBLAS. cuBLAS is column-major: a row-major [r, c] matrix
// is the column-major [c, r] matrix, its transpose. So the row-major C = op(A) op(B) is computed as
// the column-major C^T = op(B)^T op(A)^T: B is passed first, A second, m and n swapped, and the
// leading dimensions are the row-major row lengths. Inputs and outputs in the tensor's dtype,
// accumulation in float32 (CUBLAS_COMPUTE_32F; the handle forbids TF32) or float64 for double.
#include <algorithm>

#include "core/cuda/blas.h"
#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/matmul.h"

namespace unirep::cuda {

namespace {

cudaDataType_t cuda_dtype(DType t) {
  switch (t) {
    case DType::Float32: return CUDA_R_32F;
    case DType::Float64: return CUDA_R_64F;
    case DType::BFloat16: return CUDA_R_16BF;
    case DType::Float16: return CUDA_R_16F;
    default: throw Error(std::string("gemm: expected a floating dtype, got ") + dtype_name(t));
  }
}

// Batches above this are issued in chunks (grid.z limit of some cuBLAS kernels).
constexpr int64_t kMaxBatch = 65535;

}  // namespace

void gemm(const Tensor& c, const Tensor& a, const Tensor& b, const GemmParams& p) {
  UNIREP_CHECK(c.device().index == current_device(), "gemm: operands on ", c.device().str(),
               " but the current device is cuda:", current_device());
  cublasHandle_t handle = blas_handle(c.device().index);
  cudaDataType_t type = cuda_dtype(c.dtype());
  bool is_double = c.dtype() == DType::Float64;
  cublasComputeType_t compute = is_double ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
  double alpha_d = p.alpha, beta_d = p.beta;
  float alpha_f = float(p.alpha), beta_f = float(p.beta);
  const void* alpha = is_double ? static_cast<const void*>(&alpha_d) : static_cast<const void*>(&alpha_f);
  const void* beta = is_double ? static_cast<const void*>(&beta_d) : static_cast<const void*>(&beta_f);
  // Column-major view: C^T (n x m, ld n) = op(B)^T (n x k) * op(A)^T (k x m).
  cublasOperation_t op_b = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_a = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  int ldb = int(p.trans_b ? p.k : p.n), lda = int(p.trans_a ? p.m : p.k), ldc = int(p.n);
  size_t es = c.element_size();
  const char* pa = static_cast<const char*>(a.data_ptr());
  const char* pb = static_cast<const char*>(b.data_ptr());
  char* pc = static_cast<char*>(c.data_ptr());
  int64_t stride_c = p.m * p.n;
  for (int64_t start = 0; start < p.batch; start += kMaxBatch) {
    int count = int(std::min(kMaxBatch, p.batch - start));
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle, op_b, op_a, int(p.n), int(p.m), int(p.k), alpha,
        pb + size_t(start * p.stride_b) * es, type, std::max(ldb, 1), (long long)p.stride_b,
        pa + size_t(start * p.stride_a) * es, type, std::max(lda, 1), (long long)p.stride_a, beta,
        pc + size_t(start * stride_c) * es, type, std::max(ldc, 1), (long long)stride_c, count, compute,
        CUBLAS_GEMM_DEFAULT));
    UNIREP_PROFILE_MARK();
  }
}

}  // namespace unirep::cuda
