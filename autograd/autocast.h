// Automatic mixed precision, as torch.autocast: inside an AutocastGuard region the ops below choose
// their compute dtype themselves. Parameters stay float32 ("master weights", what the optimizer
// updates); each use casts them with the differentiable cast (autograd/functions/cast.h), so their
// gradients arrive in float32. Each use is a cast kernel of its own unless an AutocastWeightCache
// (autograd/autocast_weight_cache.h) has cast every parameter of the forward in one go; the
// training step uses one. Outside a region nothing is cast and every op behaves as before.
//
//   {
//     AutocastGuard amp(DType::BFloat16, /*enabled=*/on_gpu);
//     loss = cross_entropy(model.forward(x), y);   // convs/linears in bf16, BN/LN statistics and loss in float32
//   }
//   loss.backward();                                // parameter grads float32
//
// The policy: one table (rule_of in autocast.cpp), applied by the ops through autocast_call.
//
//   op                                 | operands cast                               | result
//   -----------------------------------+---------------------------------------------+-------------------------
//   conv2d, linear, matmul             | every float32/bf16/f16 operand (input,      | autocast dtype
//                                      | weight, bias) to the autocast dtype         |
//   softmax, log_softmax,              | bf16/f16 logits (and soft targets) up to    | float32
//   cross_entropy, cross_entropy_soft  | float32                                     |
//   add, sub, mul, div                 | only when the two dtypes differ (both among | autocast dtype
//                                      | float32/bf16/f16): both to the autocast     |
//                                      | dtype                                       |
//   batch_norm, layer_norm             | none: the kernels take a bf16/f16 input     | input's dtype; mean/invstd
//                                      | with float32 weight, bias and running stats | and running stats float32;
//                                      | (core/ops/norm.h)                           | dweight/dbias float32
//   gelu_grn                           | none: bf16/f16 h with float32 gamma/beta    | h's dtype; G and z float32;
//                                      | (core/ops/gelu_grn.h)                       | dgamma/dbeta float32
//   everything else (unary elementwise,| none                                        | input's dtype (the kernels
//   reductions, pooling, drop path,    |                                             | accumulate in float32)
//   views, cat, pad, ...)              |                                             |
//   float64 operands are never cast (as in torch: a float64 op stays float64, and mixing it with
//   a 16-bit operand is still an error).
//
// Why mixed binary ops cast DOWN (torch would promote to float32): in this model the float32
// operand of a mixed add/mul is always a parameter meeting a 16-bit activation (the layer scale
// gamma; GRN gamma/beta where GRN::forward is used instead of the fused gelu_grn). Casting the
// parameter keeps the activation in 16 bits: the residual stream (and GRN's output, the widest
// tensor of a block, 4x channels) stays in the autocast dtype, at half the memory and bandwidth;
// the parameter's gradient still comes back in float32 through the cast. The layers need no
// autocast code. Caveat for float16: a layer scale gamma near its 1e-6 init is an f16 subnormal
// (5 significant bits) while it is that small.
//
// Reductions (GRN::forward's L2 norm, means, pooling) keep the 16-bit dtype: they accumulate in
// float32 and round the result (GRN's norm and mean twice: the sum, then the sqrt or the scaling;
// the fused gelu_grn rounds only its output). A float16 sum, mean or norm reduces a float32 copy of
// its input instead (autograd/functions/reduce_sum.cpp): a float16 sum overflows 65504 long before
// the mean or norm would.
//
// Backward runs with autocast off (the engine suspends it): each backward op runs in the dtypes
// its forward chose, which the saved tensors and incoming gradients carry. Activation
// checkpointing re-enters the forward's autocast state for the recompute, so recomputed
// activations have the dtypes of the original forward.
//
// The state is thread-local (as grad mode). The CPU has bf16/f16 kernels (converting through
// float), so autocast works and is tested there; training on the CPU stays float32 because those
// kernels are slower than float32 ones (a UniRepLKNet-A step: about 1.5x): enable autocast for GPU
// runs only.
//
// float16: same policy with DType::Float16; its narrow range needs dynamic loss scaling, which is
// the GradScaler's job (optim/grad_scaler.h), not autocast's.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace unirep {

// Whether the current thread is inside an enabled autocast region, and its dtype (BFloat16 or
// Float16; BFloat16 when no region was ever entered).
bool autocast_enabled();
DType autocast_dtype();

// Enters (enabled) or suspends (!enabled) autocast until the end of the scope, then restores the
// previous state; regions nest. dtype must be BFloat16 or Float16 when enabled.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType dtype = DType::BFloat16, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool prev_enabled_;
  DType prev_dtype_;
};

// The ops that consult the policy table (rule_of in autocast.cpp maps each to its rule).
enum class AutocastOp {
  Conv2d, Linear, Matmul,
  Softmax, LogSoftmax, CrossEntropy, CrossEntropySoft,
  Add, Sub, Mul, Div,
};

// The operands `op` runs on under the current state: casts applied (differentiably), undefined
// and integer tensors unchanged. Outside autocast, `inputs` as given.
std::vector<Tensor> autocast_inputs(AutocastOp op, const std::vector<Tensor>& inputs);

// Runs f(cast operands) with autocast suspended, so an op can call itself on the operands its
// policy gives without applying the policy twice:
//   if (autocast_enabled()) return autocast_call(AutocastOp::Mul, {a, b}, [](auto& in) { return mul(in[0], in[1]); });
template <class F> Tensor autocast_call(AutocastOp op, const std::vector<Tensor>& inputs, const F& f) {
  const std::vector<Tensor> in = autocast_inputs(op, inputs);
  AutocastGuard plain(autocast_dtype(), false);
  return f(in);
}

}  // namespace unirep
