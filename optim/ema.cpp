#include "optim/ema.h"

#include "autograd/grad_mode.h"
#include "optim/optimizer_kernels.h"

namespace unirep {

ModelEma::ModelEma(Module& ema_model, double decay) : ema_(ema_model), decay_(decay) {
  UNIREP_CHECK(decay >= 0 && decay <= 1, "ModelEma: decay must be in [0, 1], got ", decay);
}

void ModelEma::reset(const Module& model) { ema_.load_state_dict(model.state_dict(), true); }

void ModelEma::update(const Module& model) {
  NamedTensors ema = ema_.state_dict();
  NamedTensors src = model.state_dict();
  UNIREP_CHECK(ema.size() == src.size(), "ModelEma::update: the EMA model has ", ema.size(),
               " state entries, the model ", src.size());
  NoGradGuard no_grad;
  for (size_t i = 0; i < ema.size(); ++i) {
    const std::string& name = ema[i].first;
    Tensor e = ema[i].second, m = src[i].second;
    UNIREP_CHECK(src[i].first == name && m.shape() == e.shape(), "ModelEma::update: entry ", i, " is '", name, "' ",
                 shape_str(e.shape()), " in the EMA model but '", src[i].first, "' ", shape_str(m.shape()),
                 " in the model");
    if (m.device() != e.device() || m.dtype() != e.dtype()) m = m.to(e.device()).to(e.dtype());
    if (is_floating(e.dtype()))
      ema_update(e, m, decay_);
    else
      e.copy_(m);
  }
}

}  // namespace unirep
