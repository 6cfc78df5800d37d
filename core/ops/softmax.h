// Softmax, log-softmax and the fused cross-entropy kernels.
//
// Softmax over dim d of a contiguous tensor sees it as [outer, C, inner] (C = size(d)). Every row
// (one (outer, inner) position, C elements apart by `inner`) is made numerically stable by
// subtracting its maximum m:  S = sum_c exp(x_c - m),  softmax_c = exp(x_c - m) / S,
// log_softmax_c = x_c - m - log S. Backward, from the saved output y and upstream dy:
//   softmax:      dx = y (dy - sum_c dy_c y_c)
//   log_softmax:  dx = dy - exp(y) sum_c dy_c
// All sums accumulate in acc_t (float, double for float64).
//
// Cross entropy works on logits [N, C] and never materialises log_softmax: per row it computes
// m, S and lse = m + log S, then
//   hard target t, label smoothing e:  loss = -(1-e) logp_t - (e/C) sum_c logp_c
//                                           = log S - (1-e)(x_t - m) - (e/C) sum_c (x_c - m)
//   soft target q:                     loss = -sum_c q_c logp_c = sum_c q_c (lse - x_c)
// and saves lse (in the accumulation dtype) for the backward, which is elementwise:
//   hard:  dx_c = g (exp(x_c - lse) - (1-e) [c == t] - e/C)       (0 for ignored rows)
//   soft:  dx_c = g (exp(x_c - lse) sum_c' q_c' - q_c),   dq_c = g (lse - x_c)
// where g is the upstream gradient of the row times the reduction's scale (1 / kept rows for a mean).
#pragma once
#include "core/tensor.h"

namespace unirep {

// y, x (and dx, dy) contiguous, of equal shape and floating dtype, viewed as [outer, C, inner].
void softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t C, int64_t inner, bool log);
void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t C,
                      int64_t inner, bool log);

// Dtype of the per-row loss and lse buffers: Float64 for float64 logits, else Float32.
inline DType loss_acc_dtype(DType logits) { return logits == DType::Float64 ? DType::Float64 : DType::Float32; }

// Checks that every target (int32/int64, CPU) is ignore_index or in [0, classes); throws an Error
// naming `op`, the first bad row and its value. CUDA targets are not checked on the host (that
// would synchronise the stream every step): the CUDA kernels give an out-of-range row a NaN loss.
void check_class_targets(const char* op, const Tensor& target, int64_t classes, int64_t ignore_index);

// logits [N, C] contiguous floating; target [N] contiguous int32/int64 (on the CPU validated by
// check_class_targets; on CUDA an out-of-range target gives its row a NaN loss and lse).
// loss, lse, kept: [N] contiguous of loss_acc_dtype(logits.dtype()); loss is 0 and kept 0 for ignored
// rows, kept 1 for the others (a mean divides by their sum, computed where the rows are: no host sync).
void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& kept, const Tensor& logits,
                           const Tensor& target, int64_t ignore_index, double label_smoothing);
// dlogits [N, C] contiguous (logits dtype); grad: the upstream gradient in logits dtype, [N]
// contiguous or a single element (used for every row). divisor: undefined, or a 0-d acc-dtype tensor
// (the kept-row count of a mean) that every row's gradient is divided by (0: the gradient is 0).
void cross_entropy_backward(const Tensor& dlogits, const Tensor& grad, const Tensor& divisor, const Tensor& logits,
                            const Tensor& lse, const Tensor& target, int64_t ignore_index, double label_smoothing);

// Soft targets q [N, C] contiguous of logits' dtype. loss, lse, qsum (= sum_c q_c): [N] acc dtype.
void soft_cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& qsum, const Tensor& logits,
                                const Tensor& q);
// dlogits and dq ([N, C], logits dtype) may each be undefined when not needed.
void soft_cross_entropy_backward(const Tensor& dlogits, const Tensor& dq, const Tensor& grad, double scale,
                                 const Tensor& logits, const Tensor& q, const Tensor& lse, const Tensor& qsum);

namespace cuda {
void softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t C, int64_t inner, bool log);
void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t C,
                      int64_t inner, bool log);
void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& kept, const Tensor& logits,
                           const Tensor& target, int64_t ignore_index, double label_smoothing);
void cross_entropy_backward(const Tensor& dlogits, const Tensor& grad, const Tensor& divisor, const Tensor& logits,
                            const Tensor& lse, const Tensor& target, int64_t ignore_index, double label_smoothing);
void soft_cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& qsum, const Tensor& logits,
                                const Tensor& q);
void soft_cross_entropy_backward(const Tensor& dlogits, const Tensor& dq, const Tensor& grad, double scale,
                                 const Tensor& logits, const Tensor& q, const Tensor& lse, const Tensor& qsum);
}  // namespace cuda

}  // namespace unirep
