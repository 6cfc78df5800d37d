// Exponential moving average of the weights (timm ModelEma, spec 6.2): after every optimizer step
// each floating state-dict entry (parameters and buffers alike) becomes
//   ema = decay * ema + (1 - decay) * model
// in one fused kernel per entry on the EMA's device (no host synchronisation), and each integer
// entry (BatchNorm's num_batches_tracked) is copied. The EMA model is a second module of the same
// structure; reset() copies the training model into it, every entry.
//
// update() writes the EMA's tensors directly, so a module's host-side mirror of a buffer (the
// BatchNorm batch counter) is refreshed only by reset(); the EMA model is evaluated, never trained.
#pragma once
#include "layers/module.h"

namespace unirep {

class ModelEma {
 public:
  ModelEma(Module& ema_model, double decay);  // decay in [0, 1]

  void reset(const Module& model);   // ema <- model, every state entry (strict)
  void update(const Module& model);  // one EMA step
  double decay() const { return decay_; }
  Module& module() { return ema_; }

 private:
  Module& ema_;
  double decay_;
};

}  // namespace unirep
