// Normalisation layers. Both normalise one "channel" dim of a tensor seen as [outer, C, inner]:
// C is the last dim for NHWC activations (channel_dim = -1) and dim 1 for NCHW ones.
#pragma once
#include "core/tensor.h"

namespace unirep {

// Batch norm over every dim but channel_dim. training: batch mean and biased variance normalise,
// and running_mean/running_var (float32 or the input dtype, updated in place when defined) move by
// momentum toward the batch mean and the *unbiased* variance, as PyTorch. eval: running stats.
// weight/bias [C] may be undefined (affine off). weight/bias have the input's dtype, or float32 next
// to a bf16/f16 input (statistics are float32 either way; the output has the input's dtype).
Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum = 0.1, double eps = 1e-5,
                  int64_t channel_dim = -1);

// Layer norm over the single dim `dim` (the spec's channels_first LN on NCHW is dim = 1, its
// channels_last LN and ours on NHWC is dim = -1): y = (x - mean) / sqrt(var + eps) * weight + bias,
// biased variance. weight/bias [C] may be undefined; dtypes as batch_norm's.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-6, int64_t dim = -1);

// The argument checks every batch/layer norm op shares (op names the caller in the message):
// a weight/bias (when defined) is [C] for C = x.size(dim), on x's device, with x's dtype or float32
// next to a bf16/f16 x; a running statistic (when defined) is [C], float32 or x's dtype, on x's
// device, contiguous (updated in place) and not requiring grad.
void check_norm_param(const char* op, const char* what, const Tensor& p, const Tensor& x, int64_t dim);
void check_norm_running(const char* op, const char* what, const Tensor& r, const Tensor& x, int64_t dim);

}  // namespace unirep
