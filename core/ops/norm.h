// Batch norm and layer norm kernels. x is contiguous and seen as [outer, C, inner] around one
// channel dim (NHWC activations: inner = 1; NCHW: outer = N, inner = H*W).
//
// Batch norm normalises each channel c over the outer*inner positions; layer norm normalises each
// position (o, i) over the C channels. Statistics are accumulated in acc_t (float32 for bf16/f16)
// and the saved mean/invstd tensors have that dtype (norm_stat_dtype). Variances are never computed
// as E[x^2] - E[x]^2 of raw values: the CPU kernels take two passes (mean first, then the centred
// sum of squares, which also corrects the mean's rounding); the CUDA batch norm statistics take one
// read of x (Welford per thread, partials merged by Chan's formula, norm.cu).
//
//   y   = (x - mean) * invstd * w + b,          invstd = 1 / sqrt(var + eps), var biased
//   batch norm backward (training), n = outer*inner, sums over the channel's positions:
//     db = sum(dy),  dw = invstd * sum(dy * (x - mean)),
//     dx = w * invstd * (dy - db / n - (x - mean) * invstd^2 * sum(dy * (x - mean)) / n)
//   batch norm backward (eval, mean/invstd from the running stats): dx = w * invstd * dy
//   layer norm backward, per position, g = dy * w, xhat = (x - mean) * invstd, means over C:
//     dx = invstd * (g - mean(g) - xhat * mean(g * xhat)),  dw = sum_pos(dy * xhat), db = sum_pos(dy)
//
// weight/bias (and dx/dweight/dbias in the backward kernels) may be undefined: affine off, or that
// gradient not wanted.
//
// Mixed precision (autograd/autocast.h): weight, bias, dweight and dbias share one dtype, the
// input's, or float32 next to a bf16/f16 input (float32 master parameters). y and dx always have
// the input's dtype; everything is computed in float32 either way, so a bf16 input with float32
// parameters gives what the float32 kernels give on the same (rounded) input, rounded once.
#pragma once
#include <initializer_list>
#include <type_traits>

#include "core/tensor.h"

namespace unirep {

struct NormShape {
  int64_t outer = 1, channels = 1, inner = 1;
  int64_t numel() const { return outer * channels * inner; }
};

// dtype of the saved statistics: float64 for float64 inputs, float32 otherwise.
inline DType norm_stat_dtype(DType t) { return t == DType::Float64 ? DType::Float64 : DType::Float32; }

// The dtype the defined tensors of `params` share (weight, bias or their gradients): x's, or float32
// for a bf16/f16 x; x's when none is defined. Throws naming `op` otherwise.
DType norm_param_dtype(const char* op, DType x, std::initializer_list<const Tensor*> params);

// Element type of the parameters: calls f(NormParam<P>()) with P = T, or float when T is bf16/f16
// and `param` is float32 (the two combinations norm_param_dtype allows).
template <class P> struct NormParam { using type = P; };
template <class T, class F> void with_norm_param(DType param, const F& f) {
  if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
    if (param == DType::Float32) return f(NormParam<float>());
  }
  f(NormParam<T>());
}

// Training statistics of x: mean[C], invstd[C] (norm_stat_dtype). When running_mean/running_var are
// defined ([C], contiguous, any floating dtype) they are updated in place:
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var * n / (n - 1)
void batch_norm_stats(const Tensor& mean, const Tensor& invstd, const Tensor& x, NormShape s,
                      const Tensor& running_mean, const Tensor& running_var, double momentum, double eps);
// Eval statistics: mean = running_mean, invstd = 1 / sqrt(running_var + eps) (into norm_stat_dtype).
void batch_norm_eval_stats(const Tensor& mean, const Tensor& invstd, const Tensor& running_mean,
                           const Tensor& running_var, double eps);
// y = (x - mean[c]) * invstd[c] * w[c] + b[c].
void batch_norm_apply(const Tensor& y, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias, NormShape s);
// Gradients of batch_norm_apply with mean/invstd the batch statistics (training: they depend on x)
// or constants (eval).
void batch_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s, bool training);

// ---- batch norm over a batch split between processes (distributed/sync_batch_norm.h)
// Forward: each part reduces to per-channel sums that add up across parts (one all-reduce), float64
// whatever x's dtype:
//   sums[2C + 1] = [sum(x) per channel, sum(x^2) per channel, n]   (n = outer * inner, may be 0)
// They are formed from the part's mean m and centred M2 = sum((x - m)^2) (as the statistics above
// compute them) as n m and M2 + n m^2 in float64, so the combined variance sum(x^2) / N - mean^2 loses nothing to float32
// cancellation. The summed sums then give mean/invstd (norm_stat_dtype) and move the running stats
// as batch_norm_stats does, with n the total count N:
void batch_norm_partial_sums(const Tensor& sums, const Tensor& x, NormShape s);
void batch_norm_stats_from_sums(const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                const Tensor& running_mean, const Tensor& running_var, double momentum, double eps);
// Backward in two halves around the all-reduce of grad_sums[2C] (norm_stat_dtype):
//   reduce: grad_sums = [sum(dy), sum(dy (x - mean))] over this part (grad_sums may be undefined),
//           dweight = invstd sum(dy (x - mean)) and dbias = sum(dy) of this part when defined;
//   elemt:  dx = w invstd (dy - grad_sums[c] / N - (x - mean) invstd^2 grad_sums[C + c] / N) with
//           grad_sums summed over the parts and N = count[0] (float64, on x's device: the summed
//           sums[2C], so no host ever reads it).
void batch_norm_backward_reduce(const Tensor& grad_sums, const Tensor& dweight, const Tensor& dbias,
                                const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                NormShape s);
void batch_norm_backward_elemt(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& mean,
                               const Tensor& invstd, const Tensor& weight, const Tensor& grad_sums,
                               const Tensor& count, NormShape s);

// y = layer norm of x over C; mean/invstd [outer * inner] (norm_stat_dtype) are written when defined.
void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                        const Tensor& weight, const Tensor& bias, NormShape s, double eps);
void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s);

namespace cuda {
void batch_norm_stats(const Tensor& mean, const Tensor& invstd, const Tensor& x, NormShape s,
                      const Tensor& running_mean, const Tensor& running_var, double momentum, double eps);
void batch_norm_eval_stats(const Tensor& mean, const Tensor& invstd, const Tensor& running_mean,
                           const Tensor& running_var, double eps);
void batch_norm_apply(const Tensor& y, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias, NormShape s);
void batch_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s, bool training);
void batch_norm_partial_sums(const Tensor& sums, const Tensor& x, NormShape s);
void batch_norm_stats_from_sums(const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                const Tensor& running_mean, const Tensor& running_var, double momentum, double eps);
void batch_norm_backward_reduce(const Tensor& grad_sums, const Tensor& dweight, const Tensor& dbias,
                                const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                NormShape s);
void batch_norm_backward_elemt(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& mean,
                               const Tensor& invstd, const Tensor& weight, const Tensor& grad_sums,
                               const Tensor& count, NormShape s);
void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                        const Tensor& weight, const Tensor& bias, NormShape s, double eps);
void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s);
}  // namespace cuda

}  // namespace unirep
