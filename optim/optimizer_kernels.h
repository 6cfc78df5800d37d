// The elementwise kernels of the optimisation package, CPU loops in optimizer_kernels.cpp and CUDA
// twins in optimizer_kernels.cu, both calling the functors below per element:
//   adamw_update  one fused AdamW step of a parameter (param, grad, exp_avg, exp_avg_sq)
//   sgd_update    one fused SGD step (param, grad, optional momentum buffer)
//   ema_update    ema = decay ema + (1 - decay) model (timm ModelEma), any floating dtype
//   unscale_and_find_inf  grad *= inv_scale, found = 1 where a value is inf/nan (GradScaler)
//   global_norm / clip_by_norm  the two halves of clip_grad_norm_
// Everything is float32 (the update maths too, as PyTorch's float32 kernels); the per-step scalars
// (bias corrections, step size) are computed in double on the host from the host-side step count
// and rounded to float once, so no kernel reads anything back and nothing synchronises.
// adamw_update and unscale_and_find_inf touch one tensor (CUDA: one launch per tensor); their
// *_multi forms take a list, which CUDA updates in a few multi-tensor launches (tables of up to
// 64-128 tensors passed as the kernel argument, each block one fixed chunk of one tensor) that call
// the same functors per element, so the results are bitwise those of the per-tensor calls. The CPU
// forms of *_multi are loops over the per-tensor ones. global_norm and clip_by_norm are multi-tensor
// on CUDA too.
#pragma once
#include <cmath>
#include <vector>

#include "core/cuda/staged_upload.h"
#include "core/ops/math.h"
#include "core/tensor.h"

namespace unirep {

// torch.optim.AdamW (single-tensor path) for one element, in this order:
//   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
//   p -= step_size * m / (sqrt(v) / sqrt(1 - b2^t) + eps),  step_size = lr / (1 - b1^t).
struct AdamWUpdate {
  float decay_factor, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bias_correction2_sqrt, eps;

  // t: the 1-based step number of this update.
  static AdamWUpdate make(double lr, double weight_decay, double beta1, double beta2, double eps, int64_t t) {
    return {float(1.0 - lr * weight_decay),
            float(beta1),
            float(1.0 - beta1),
            float(beta2),
            float(1.0 - beta2),
            float(lr / (1.0 - std::pow(beta1, double(t)))),
            float(std::sqrt(1.0 - std::pow(beta2, double(t)))),
            float(eps)};
  }
  UNIREP_HD void operator()(float& p, float g, float& m, float& v) const {
    p = p * decay_factor;
    m = m * beta1 + g * one_minus_beta1;
    v = v * beta2 + one_minus_beta2 * g * g;
    float denom = math::sqrt(v) / bias_correction2_sqrt + eps;
    p = p - step_size * (m / denom);
  }
};

// torch.optim.SGD for one element: d = g + wd p (coupled L2); with momentum the buffer becomes d on
// the first step, else momentum b + (1 - dampening) d, and d becomes b (or d + momentum b with
// Nesterov); p -= lr d.
struct SgdUpdate {
  float lr, weight_decay, momentum, one_minus_dampening;
  bool nesterov, first;

  UNIREP_HD float direction(float p, float g) const { return weight_decay != 0.0f ? g + weight_decay * p : g; }
  UNIREP_HD void operator()(float& p, float g) const { p = p - lr * direction(p, g); }
  UNIREP_HD void operator()(float& p, float g, float& b) const {
    float d = direction(p, g);
    b = first ? d : b * momentum + one_minus_dampening * d;
    d = nesterov ? d + momentum * b : b;
    p = p - lr * d;
  }
};

// timm ModelEma: ema * decay + (1 - decay) * model, in the tensor's accumulation type.
struct EmaBlend {
  double decay;
  template <class T> UNIREP_HD T operator()(T ema, T model) const { return ema * T(decay) + T(1.0 - decay) * model; }
};

// param, grad, exp_avg, exp_avg_sq: float32, contiguous, same numel and device.
void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const AdamWUpdate& f);
// One parameter of a multi-tensor AdamW step; `functor` indexes the step's functor list (one per
// param group: lr and weight decay differ between groups).
struct AdamWTensors {
  Tensor param, grad, exp_avg, exp_avg_sq;
  size_t functor = 0;
};
// adamw_update(t.param, t.grad, t.exp_avg, t.exp_avg_sq, functors[t.functor]) for every t, each
// checked as there; all on one device. CUDA: the functors (at most 256) go through `staging` (the
// optimizer's, for that device; core/cuda/staged_upload.h), so a captured step can replay them with
// new values; the CPU ignores it.
void adamw_update_multi(const std::vector<AdamWTensors>& tensors, const std::vector<AdamWUpdate>& functors,
                        cuda::StagedUpload* staging);
// momentum_buffer undefined: plain SGD (f.momentum must be 0).
void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdUpdate& f);
// ema and model: same shape, floating dtype and device.
void ema_update(const Tensor& ema, const Tensor& model, double decay);
// grad: any floating dtype; found: a 0-d float32 tensor on grad's device, set to 1 where grad had an
// inf/nan (checked before scaling, as torch._amp_foreach_non_finite_check_and_unscale_), else left.
void unscale_and_find_inf(const Tensor& grad, float inv_scale, const Tensor& found);
// unscale_and_find_inf for every grad (any mix of floating dtypes, all on found's device).
void unscale_and_find_inf_multi(const std::vector<Tensor>& grads, float inv_scale, const Tensor& found);
// total (0-d float32, grads' device) = sqrt(sum over grads of sum g^2), float32 accumulation in a
// fixed order (deterministic). grads: float32, contiguous, one device.
void global_norm(const std::vector<Tensor>& grads, const Tensor& total);
// grads *= min(1, max_norm / (total + 1e-6)), the factor read from `total` by each kernel.
void clip_by_norm(const std::vector<Tensor>& grads, const Tensor& total, float max_norm);

namespace cuda {
void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const AdamWUpdate& f);
void adamw_update_multi(const std::vector<AdamWTensors>& tensors, const std::vector<AdamWUpdate>& functors,
                        StagedUpload& staging);
void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdUpdate& f);
void ema_update(const Tensor& ema, const Tensor& model, double decay);
void unscale_and_find_inf(const Tensor& grad, float inv_scale, const Tensor& found);
void unscale_and_find_inf_multi(const std::vector<Tensor>& grads, float inv_scale, const Tensor& found);
void global_norm(const std::vector<Tensor>& grads, const Tensor& total);
void clip_by_norm(const std::vector<Tensor>& grads, const Tensor& total, float max_norm);
}  // namespace cuda

}  // namespace unirep
