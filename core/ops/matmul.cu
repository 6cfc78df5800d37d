// Batched GEMM (core/ops/matmul.h) on cuBLAS. cuBLAS is column-major: a row-major [r, c] matrix
// is the column-major [c, r] matrix, its transpose. So the row-major C = op(A) op(B) is computed as
// the column-major C^T = op(B)^T op(A)^T: B is passed first, A second, m and n swapped, and the
// leading dimensions are the row-major row lengths. Inputs and outputs in the tensor's dtype,
// accumulation in float32 (CUBLAS_COMPUTE_32F; the handle forbids TF32) or float64 for double.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

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

namespace {

// Largest power of two (up to 256) dividing the address: cuBLASLt picks kernels for the alignment
// it is promised, so each operand's real one is part of the plan's key.
unsigned alignment_of(const void* p) {
  unsigned a = 256;
  while (a > 1 && reinterpret_cast<uintptr_t>(p) % a != 0) a >>= 1;
  return a;
}

// One cuBLASLt matmul in column-major terms, D [m x n] (ld m) = op_a(A) op_b(B) with A stored
// [a_rows x a_cols] (ld a_rows), B [b_rows x b_cols] (ld b_rows), and an epilogue whose vector
// (bias or bias gradient) is passed per call.
struct LtProblem {
  cublasOperation_t trans_a, trans_b;
  int64_t m, n, k, a_rows, a_cols, b_rows, b_cols;
  cublasLtEpilogue_t epilogue;
};

// A plan per (device, dtype, problem, alignments): descriptors and the heuristic's first algorithm,
// made once (the heuristic query costs far more than the matmul's launch).
struct LtPlan {
  bool supported = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};
using LtKey = std::tuple<int, int, int, int, int, int64_t, int64_t, int64_t, unsigned, unsigned, unsigned>;
std::mutex g_plan_mutex;
std::map<LtKey, LtPlan> g_plans;

LtPlan make_plan(const BlasLt& lt, cudaDataType_t type, const LtProblem& q, const unsigned align[3]) {
  LtPlan plan;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &q.trans_a, sizeof(q.trans_a)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &q.trans_b, sizeof(q.trans_b)));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &q.epilogue, sizeof(q.epilogue)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, sizeof(type)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, type, uint64_t(q.a_rows), uint64_t(q.a_cols), q.a_rows));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, type, uint64_t(q.b_rows), uint64_t(q.b_cols), q.b_rows));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.d, type, uint64_t(q.m), uint64_t(q.n), q.m));
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const size_t workspace = lt.workspace_bytes;
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                    sizeof(workspace)));
  const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4; ++i) {
    const uint32_t bytes = align[i < 3 ? i : 2];  // C is D
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, align_attr[i], &bytes, sizeof(bytes)));
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status =
      cublasLtMatmulAlgoGetHeuristic(lt.handle, plan.desc, plan.a, plan.b, plan.d, plan.d, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status == CUBLAS_STATUS_SUCCESS && found > 0) {
    plan.algo = result.algo;
    plan.supported = true;
  }
  return plan;
}

// Queues D = op_a(A) op_b(B) with the problem's epilogue on `vec` (16-byte aligned); false (nothing
// queued) when cuBLASLt has no algorithm for it or an extent needs more than 32 bits.
bool lt_matmul(const LtProblem& q, DType dtype, const void* a, const void* b, void* d, void* vec) {
  if (dtype == DType::Float64 || q.m > INT_MAX || q.n > INT_MAX || q.k > INT_MAX) return false;
  if (alignment_of(vec) < 16) return false;
  const int device = current_device();
  const BlasLt& lt = blas_lt(device);
  const cudaDataType_t type = cuda_dtype(dtype);
  const unsigned align[3] = {alignment_of(a), alignment_of(b), alignment_of(d)};
  const LtKey key{device, int(dtype), int(q.epilogue), int(q.trans_a), int(q.trans_b), q.m, q.n, q.k,
                  align[0], align[1], align[2]};
  std::lock_guard<std::mutex> lock(g_plan_mutex);  // the vector pointer is set on the shared descriptor
  auto it = g_plans.find(key);
  if (it == g_plans.end()) it = g_plans.emplace(key, make_plan(lt, type, q, align)).first;
  const LtPlan& plan = it->second;
  if (!plan.supported) return false;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &vec, sizeof(vec)));
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(lt.handle, plan.desc, &one, a, plan.a, b, plan.b, &zero, d, plan.d, d, plan.d,
                              &plan.algo, lt.workspace, lt.workspace_bytes, stream()));
  UNIREP_PROFILE_MARK();
  return true;
}

}  // namespace

// Column-major: y^T [out x rows] = op_T(w as [in x out]) * x^T [in x rows]; the bias (length m = out)
// is added in the epilogue.
bool linear_gemm_lt(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias) {
  UNIREP_CHECK(y.device().index == current_device(), "linear_gemm: operands on ", y.device().str(),
               " but the current device is cuda:", current_device());
  const int64_t rows = x.size(0), out_f = w.size(0), in_f = w.size(1);
  const LtProblem q{CUBLAS_OP_T, CUBLAS_OP_N, out_f, rows, in_f, in_f, out_f, in_f, rows, CUBLASLT_EPILOGUE_BIAS};
  return lt_matmul(q, y.dtype(), w.data_ptr(), x.data_ptr(), y.data_ptr(), bias.data_ptr());
}

// Column-major: dw^T [in x out] = x^T [in x rows] * op_T(dy as [out x rows]); the epilogue's bias
// gradient sums op_T(dy) over k = rows, one value per column of D: db[out].
bool linear_weight_grad_lt(const Tensor& dw, const Tensor& db, const Tensor& dy, const Tensor& x) {
  UNIREP_CHECK(dw.device().index == current_device(), "linear_weight_grad: operands on ", dw.device().str(),
               " but the current device is cuda:", current_device());
  const int64_t rows = x.size(0), in_f = x.size(1), out_f = dy.size(1);
  const LtProblem q{CUBLAS_OP_N, CUBLAS_OP_T, in_f, out_f, rows, in_f, rows, out_f, rows, CUBLASLT_EPILOGUE_BGRADB};
  return lt_matmul(q, dw.dtype(), x.data_ptr(), dy.data_ptr(), dw.data_ptr(), db.data_ptr());
}

}  // namespace unirep::cuda
