// Dynamic loss scaling for float16 training (torch.cuda.amp.GradScaler semantics). A step:
//   scale(loss).backward();
//   bool found = unscale_and_check(params);  // grads /= scale; any inf/nan? (one host sync)
//   if (!found) optimizer.step(...);
//   update(found);  // inf: scale *= backoff_factor; growth_interval clean steps in a row: scale *= growth_factor
// Disabled, every call is an identity / no-op (unscale_and_check returns false, touching nothing).
// The scale is a host double; grads are multiplied by float(1 / scale), as torch.
#pragma once
#include <cstdint>
#include <vector>

#include "layers/module.h"

namespace unirep {

class GradScaler {
 public:
  struct Options {
    bool enabled = false;
    double init_scale = 65536;
    double growth_factor = 2;
    double backoff_factor = 0.5;
    int64_t growth_interval = 2000;
  };
  explicit GradScaler(Options options);

  Tensor scale(const Tensor& loss) const;  // loss * scale, differentiable
  bool unscale_and_check(const std::vector<Tensor>& params);
  void update(bool found_inf);
  double scale_value() const { return scale_; }
  bool enabled() const { return o_.enabled; }
  int64_t growth_tracker() const { return growth_tracker_; }

  // "scale" (0-d float64) and "growth_tracker" (0-d int64), on the CPU; loading is strict.
  NamedTensors state_dict() const;
  void load_state_dict(const NamedTensors& state);

 private:
  Options o_;
  double scale_;
  int64_t growth_tracker_ = 0;  // clean steps since the last change of scale
};

}  // namespace unirep
