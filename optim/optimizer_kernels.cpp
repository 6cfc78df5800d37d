#include "optim/optimizer_kernels.h"

#include <algorithm>
#include <cmath>

#include "core/ops/loops_cpu.h"
#include "core/parallel.h"

namespace unirep {

namespace {

// `t` must be a contiguous float32 tensor like `ref` (same numel and device).
void check_like(const char* op, const char* what, const Tensor& t, const Tensor& ref) {
  UNIREP_CHECK(t.defined(), op, ": ", what, " is undefined");
  UNIREP_CHECK(t.dtype() == DType::Float32, op, ": ", what, " must be float32, got ", dtype_name(t.dtype()));
  UNIREP_CHECK(t.is_contiguous(), op, ": ", what, " must be contiguous, got ", t.str());
  UNIREP_CHECK(t.numel() == ref.numel() && t.device() == ref.device(), op, ": ", what, " ", t.str(),
               " does not match the parameter ", ref.str());
}

void check_grads(const char* op, const std::vector<Tensor>& grads) {
  for (const Tensor& g : grads) {
    UNIREP_CHECK(g.defined() && g.dtype() == DType::Float32 && g.is_contiguous(), op,
                 ": every grad must be a contiguous float32 tensor, got ", g.defined() ? g.str() : "an undefined one");
    UNIREP_CHECK(g.device() == grads[0].device(), op, ": grads on ", grads[0].device().str(), " and ",
                 g.device().str(), ", expected one device");
  }
}

// Sum of squares over fixed 4096-element chunks, then over the chunks: float32 all the way, and
// the same order whatever the thread count.
constexpr int64_t kNormChunk = 4096;

float sum_squares(const float* x, int64_t n) {
  int64_t chunks = (n + kNormChunk - 1) / kNormChunk;
  std::vector<float> partial(size_t(chunks), 0.0f);
  parallel_for(0, chunks, 8, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      float a = 0.0f;
      for (int64_t i = c * kNormChunk, end = std::min(n, i + kNormChunk); i < end; ++i) a += x[i] * x[i];
      partial[size_t(c)] = a;
    }
  });
  float total = 0.0f;
  for (float p : partial) total += p;
  return total;
}

}  // namespace

void adamw_update(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const AdamWUpdate& f) {
  check_like("adamw_update", "param", param, param);
  check_like("adamw_update", "grad", grad, param);
  check_like("adamw_update", "exp_avg", exp_avg, param);
  check_like("adamw_update", "exp_avg_sq", exp_avg_sq, param);
  if (param.is_cuda()) return cuda::adamw_update(param, grad, exp_avg, exp_avg_sq, f);
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float* m = exp_avg.data<float>();
  float* v = exp_avg_sq.data<float>();
  parallel_for(0, param.numel(), kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(p[i], g[i], m[i], v[i]);
  });
}

void adamw_update_multi(const std::vector<AdamWTensors>& tensors, const std::vector<AdamWUpdate>& functors,
                        cuda::StagedUpload* staging) {
  if (tensors.empty()) return;
  for (const AdamWTensors& t : tensors) {
    check_like("adamw_update_multi", "param", t.param, t.param);
    check_like("adamw_update_multi", "grad", t.grad, t.param);
    check_like("adamw_update_multi", "exp_avg", t.exp_avg, t.param);
    check_like("adamw_update_multi", "exp_avg_sq", t.exp_avg_sq, t.param);
    UNIREP_CHECK(t.functor < functors.size(), "adamw_update_multi: functor index ", t.functor, " of ",
                 functors.size(), " functors");
    UNIREP_CHECK(t.param.device() == tensors[0].param.device(), "adamw_update_multi: params on ",
                 tensors[0].param.device().str(), " and ", t.param.device().str(), ", expected one device");
  }
  if (tensors[0].param.is_cuda()) {
    UNIREP_CHECK(staging != nullptr, "adamw_update_multi: CUDA parameters need a StagedUpload for the functors");
    return cuda::adamw_update_multi(tensors, functors, *staging);
  }
  for (const AdamWTensors& t : tensors) adamw_update(t.param, t.grad, t.exp_avg, t.exp_avg_sq, functors[t.functor]);
}

void sgd_update(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdUpdate& f) {
  check_like("sgd_update", "param", param, param);
  check_like("sgd_update", "grad", grad, param);
  bool has_buffer = momentum_buffer.defined();
  if (has_buffer) check_like("sgd_update", "momentum_buffer", momentum_buffer, param);
  UNIREP_CHECK(has_buffer || f.momentum == 0.0f, "sgd_update: momentum ", f.momentum, " needs a momentum buffer");
  if (param.is_cuda()) return cuda::sgd_update(param, grad, momentum_buffer, f);
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  float* buf = has_buffer ? momentum_buffer.data<float>() : nullptr;
  parallel_for(0, param.numel(), kGrain, [&](int64_t b, int64_t e) {
    if (buf)
      for (int64_t i = b; i < e; ++i) f(p[i], g[i], buf[i]);
    else
      for (int64_t i = b; i < e; ++i) f(p[i], g[i]);
  });
}

void ema_update(const Tensor& ema, const Tensor& model, double decay) {
  UNIREP_CHECK(ema.shape() == model.shape() && ema.dtype() == model.dtype() && ema.device() == model.device(),
               "ema_update: the EMA tensor ", ema.str(), " and the model tensor ", model.str(),
               " differ in shape, dtype or device");
  if (ema.is_cuda()) return cuda::ema_update(ema, model, decay);
  UNIREP_DISPATCH_FLOATING(ema.dtype(), "ema_update", [&] { cpu_elementwise<scalar_t>(ema, EmaBlend{decay}, ema, model); });
}

void unscale_and_find_inf(const Tensor& grad, float inv_scale, const Tensor& found) {
  UNIREP_CHECK(grad.is_contiguous(), "unscale_and_find_inf: grad must be contiguous, got ", grad.str());
  UNIREP_CHECK(found.dtype() == DType::Float32 && found.numel() == 1 && found.device() == grad.device(),
               "unscale_and_find_inf: found must be a float32 scalar on the grad's device, got ", found.str());
  if (grad.is_cuda()) return cuda::unscale_and_find_inf(grad, inv_scale, found);
  UNIREP_DISPATCH_FLOATING(grad.dtype(), "unscale_and_find_inf", [&] {
    using acc = acc_t<scalar_t>;
    scalar_t* g = grad.data<scalar_t>();
    bool any = false;
    for (int64_t i = 0, n = grad.numel(); i < n; ++i) {
      acc v = static_cast<acc>(g[i]);
      if (!std::isfinite(v)) any = true;
      g[i] = static_cast<scalar_t>(v * acc(inv_scale));
    }
    if (any) *found.data<float>() = 1.0f;
  });
}

void unscale_and_find_inf_multi(const std::vector<Tensor>& grads, float inv_scale, const Tensor& found) {
  UNIREP_CHECK(found.defined() && found.dtype() == DType::Float32 && found.numel() == 1,
               "unscale_and_find_inf_multi: found must be a float32 scalar, got ", found.defined() ? found.str() : "undefined");
  for (const Tensor& g : grads) {
    UNIREP_CHECK(g.defined() && is_floating(g.dtype()) && g.is_contiguous(),
                 "unscale_and_find_inf_multi: every grad must be a contiguous floating tensor, got ",
                 g.defined() ? g.str() : "an undefined one");
    UNIREP_CHECK(g.device() == found.device(), "unscale_and_find_inf_multi: a grad on ", g.device().str(),
                 ", found on ", found.device().str(), ", expected one device");
  }
  if (found.is_cuda()) return cuda::unscale_and_find_inf_multi(grads, inv_scale, found);
  for (const Tensor& g : grads) unscale_and_find_inf(g, inv_scale, found);
}

void global_norm(const std::vector<Tensor>& grads, const Tensor& total) {
  UNIREP_CHECK(total.dtype() == DType::Float32 && total.numel() == 1, "global_norm: total must be a float32 scalar, got ",
               total.str());
  if (grads.empty()) {
    Tensor(total).zero_();
    return;
  }
  check_grads("global_norm", grads);
  UNIREP_CHECK(total.device() == grads[0].device(), "global_norm: total ", total.str(), " is not on the grads' device");
  if (total.is_cuda()) return cuda::global_norm(grads, total);
  float sum = 0.0f;
  for (const Tensor& g : grads) sum += sum_squares(g.data<float>(), g.numel());
  *total.data<float>() = std::sqrt(sum);
}

void clip_by_norm(const std::vector<Tensor>& grads, const Tensor& total, float max_norm) {
  if (grads.empty()) return;
  check_grads("clip_by_norm", grads);
  UNIREP_CHECK(total.dtype() == DType::Float32 && total.numel() == 1 && total.device() == grads[0].device(),
               "clip_by_norm: total must be a float32 scalar on the grads' device, got ", total.str());
  if (total.is_cuda()) return cuda::clip_by_norm(grads, total, max_norm);
  float coef = std::min(1.0f, max_norm / (*total.data<float>() + 1e-6f));
  for (const Tensor& g : grads) {
    float* x = g.data<float>();
    parallel_for(0, g.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) x[i] *= coef;
    });
  }
}

}  // namespace unirep
