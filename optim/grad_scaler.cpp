#include "optim/grad_scaler.h"

#include <cmath>

#include "autograd/ops.h"
#include "optim/optimizer_kernels.h"

namespace unirep {

GradScaler::GradScaler(Options options) : o_(options), scale_(options.init_scale) {
  UNIREP_CHECK(o_.init_scale > 0 && std::isfinite(o_.init_scale), "GradScaler: init_scale must be finite and > 0, got ",
               o_.init_scale);
  UNIREP_CHECK(o_.growth_factor > 1, "GradScaler: growth_factor must be > 1, got ", o_.growth_factor);
  UNIREP_CHECK(o_.backoff_factor > 0 && o_.backoff_factor < 1, "GradScaler: backoff_factor must be in (0, 1), got ",
               o_.backoff_factor);
  UNIREP_CHECK(o_.growth_interval > 0, "GradScaler: growth_interval must be > 0, got ", o_.growth_interval);
}

Tensor GradScaler::scale(const Tensor& loss) const { return o_.enabled ? mul_scalar(loss, scale_) : loss; }

bool GradScaler::unscale_and_check(const std::vector<Tensor>& params) {
  if (!o_.enabled) return false;
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    grads.push_back(g);
  }
  if (grads.empty()) return false;
  Tensor found = Tensor::zeros({}, DType::Float32, grads[0].device());
  unscale_and_find_inf_multi(grads, float(1.0 / scale_), found);
  return found.item() != 0.0;
}

void GradScaler::update(bool found_inf) {
  if (!o_.enabled) return;
  if (found_inf) {
    scale_ *= o_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == o_.growth_interval) {
    double grown = scale_ * o_.growth_factor;
    if (std::isfinite(grown)) scale_ = grown;
    growth_tracker_ = 0;
  }
}

NamedTensors GradScaler::state_dict() const {
  return {{"scale", Tensor::scalar(scale_, DType::Float64)},
          {"growth_tracker", Tensor::scalar(double(growth_tracker_), DType::Int64)}};
}

void GradScaler::load_state_dict(const NamedTensors& state) {
  const Tensor* scale = nullptr;
  const Tensor* tracker = nullptr;
  for (const auto& [name, t] : state) {
    if (name == "scale")
      scale = &t;
    else if (name == "growth_tracker")
      tracker = &t;
    else
      throw Error("GradScaler::load_state_dict: unexpected entry '" + name + "' (expected scale, growth_tracker)");
  }
  UNIREP_CHECK(scale && tracker, "GradScaler::load_state_dict: missing ", scale ? "" : "'scale' ",
               tracker ? "" : "'growth_tracker'");
  UNIREP_CHECK(scale->defined() && scale->numel() == 1 && scale->dtype() == DType::Float64,
               "GradScaler::load_state_dict: scale must be a float64 scalar, got ", scale->defined() ? scale->str() : "undefined");
  UNIREP_CHECK(tracker->defined() && tracker->numel() == 1 && tracker->dtype() == DType::Int64,
               "GradScaler::load_state_dict: growth_tracker must be an int64 scalar, got ",
               tracker->defined() ? tracker->str() : "undefined");
  double s = scale->item();
  int64_t g = int64_t(tracker->item());
  UNIREP_CHECK(s > 0 && std::isfinite(s), "GradScaler::load_state_dict: scale must be finite and > 0, got ", s);
  UNIREP_CHECK(g >= 0, "GradScaler::load_state_dict: growth_tracker must be >= 0, got ", g);
  scale_ = s;
  growth_tracker_ = g;
}

}  // namespace unirep
