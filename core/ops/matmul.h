// Batched GEMM, the kernel under matmul and linear:
//   C[i] = alpha * op(A[i]) @ op(B[i]) + beta * C[i],   i < batch,
// with op(A[i]) m x k and op(B[i]) k x n. Every matrix is row-major and dense: A[i] is stored as
// [m, k] ([k, m] when trans_a), B[i] as [k, n] ([n, k] when trans_b), C[i] as [m, n]. A[i] starts
// stride_a elements after A[i-1] (0 broadcasts one matrix over the batch; -1 means packed, the
// matrix size), likewise B; C is a contiguous [batch, m, n] tensor. beta = 0 ignores C's contents.
// CPU: OpenBLAS (bf16/f16 converted to float, multiplied with sgemm, rounded once).
// CUDA: cublasGemmStridedBatchedEx, accumulating in float32 (float64 for double), no TF32.
#pragma once
#include "core/tensor.h"

namespace unirep {

struct GemmParams {
  int64_t batch = 1, m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  int64_t stride_a = -1, stride_b = -1;  // elements between consecutive matrices; -1 packed, 0 broadcast
  double alpha = 1.0, beta = 0.0;
};

// a, b, c: same floating dtype and device; a and b address their matrices from data_ptr() (any
// tensor whose storage holds them, e.g. a contiguous [batch, m, k] or a single [m, k] with stride 0).
void gemm(const Tensor& c, const Tensor& a, const Tensor& b, const GemmParams& p);

// A linear layer's forward: y[rows, out] = x[rows, in] @ w[out, in]^T + bias[out] (bias may be
// undefined); x, w, y contiguous, one dtype and device, bias too. On CUDA (float32, bf16, f16) one
// cuBLASLt matmul adds the bias in its epilogue: no pass that writes the bias over every row first
// and none that reads it back as C, which for the 4x-wide pwconv1 output of a UniRepLKNet block
// are two passes over the block's largest tensor. Elsewhere, and where cuBLASLt offers no
// algorithm: the bias copied into y, then gemm with beta = 1. Both round once, after the bias.
void linear_gemm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias);

// A linear layer's parameter gradients over all rows: dw[out, in] = dy[rows, out]^T @ x[rows, in]
// and, when db is defined, db[out] = sum over rows of dy; dy, x, dw, db contiguous, one dtype and
// device. On CUDA (float32, bf16, f16) one cuBLASLt matmul computes both (the bias gradient in its
// BGRADB epilogue: no second pass over dy); elsewhere, and where cuBLASLt offers no algorithm,
// db is the product 1^T dy.
void linear_weight_grad(const Tensor& dw, const Tensor& db, const Tensor& dy, const Tensor& x);
// db[out] = sum over rows of dy[rows, out], as the product 1^T dy (the bias gradient alone, and
// linear_weight_grad's fallback).
void linear_bias_grad(const Tensor& db, const Tensor& dy);

// A contiguous [n] vector of ones in `dtype` on `device`: a view of a buffer kept per (device, dtype)
// and grown when a longer one is asked for, so the bias gradient's 1^T dY product (one per linear
// layer and step) needs no fill launch. Read only.
Tensor ones_vector(int64_t n, DType dtype, Device device);

namespace cuda {
// Strides already resolved (no -1); dtypes and extents already validated.
void gemm(const Tensor& c, const Tensor& a, const Tensor& b, const GemmParams& p);
// linear_gemm with a bias through cuBLASLt; false (nothing queued) when it has no algorithm for it.
bool linear_gemm_lt(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias);
// linear_weight_grad with a bias gradient through cuBLASLt; false (nothing queued) likewise.
bool linear_weight_grad_lt(const Tensor& dw, const Tensor& db, const Tensor& dy, const Tensor& x);
}  // namespace cuda

}  // namespace unirep
