#include "autograd/functions/scaled_residual.h"

#include "autograd/functions/elementwise.h"
#include "autograd/node.h"
#include "core/ops/norm.h"
#include "core/ops/scaled_residual.h"

namespace unirep {

Tensor scaled_residual_add(const Tensor& x, const Tensor& branch, const Tensor& gamma, double drop_rate, bool training,
                           Generator& gen) {
  const char* op = "scaled_residual_add";
  UNIREP_CHECK(x.defined() && branch.defined(), op, ": undefined input");
  UNIREP_CHECK(x.shape() == branch.shape(), op, ": x ", shape_str(x.shape()), " and branch ", shape_str(branch.shape()),
               " differ in shape");
  UNIREP_CHECK(is_floating(x.dtype()) && x.dtype() == branch.dtype(), op, ": x (", dtype_name(x.dtype()),
               ") and branch (", dtype_name(branch.dtype()), ") must share one floating dtype");
  UNIREP_CHECK(x.device() == branch.device(), op, ": x on ", x.device().str(), ", branch on ", branch.device().str());
  UNIREP_CHECK(x.dim() >= 1, op, ": x needs a batch dim (dim 0), got ", shape_str(x.shape()));
  UNIREP_CHECK(drop_rate >= 0.0 && drop_rate <= 1.0, op, ": drop_rate must be in [0, 1], got ", drop_rate);
  const int64_t C = x.dim() >= 2 ? x.size(-1) : 1;
  if (gamma.defined()) {
    UNIREP_CHECK(gamma.shape() == Shape{C}, op, ": gamma ", shape_str(gamma.shape()), " does not match the ", C,
                 " channels (last dim) of x ", shape_str(x.shape()));
    UNIREP_CHECK(gamma.device() == x.device(), op, ": gamma on ", gamma.device().str(), ", x on ", x.device().str());
    norm_param_dtype(op, x.dtype(), {&gamma});
  }
  const bool drop = training && drop_rate > 0.0;
  if (!drop && !gamma.defined()) return add(x, branch);

  ResidualScale s;
  if (drop) {
    s.drop = true;
    s.p = drop_rate;
    s.keep_scale = drop_rate < 1.0 ? 1.0 / (1.0 - drop_rate) : 1.0;
    s.per_sample = x.numel() / std::max<int64_t>(x.size(0), 1);
    s.seed = gen.seed();
    s.offset = gen.advance(uint64_t(x.size(0)));
  }
  const Tensor xd = x.detach().contiguous(), bd = branch.detach().contiguous();
  const Tensor gd = gamma.defined() ? gamma.detach().contiguous() : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  scaled_residual_forward(out, xd, bd, gd, s);

  if (needs_grad({x, branch, gamma})) {
    const bool gx = x.requires_grad(), gb = branch.requires_grad(), gg = gamma.defined() && gamma.requires_grad();
    record(op, {x, branch, gamma}, {out},
           [s, gx, gb, gg, sb = gg ? save(bd) : Tensor(), sg = save(gd)](const std::vector<Tensor>& g) {
             const Tensor dout = g[0].contiguous();
             Tensor dbranch = gb ? Tensor::empty(dout.shape(), dout.dtype(), dout.device()) : Tensor();
             Tensor dgamma = gg ? Tensor::empty(sg.shape(), sg.dtype(), sg.device()) : Tensor();
             if (gb || gg) scaled_residual_backward(dbranch, dgamma, dout, sb, sg, s);
             return std::vector<Tensor>{gx ? dout : Tensor(), dbranch, dgamma};
           });
  }
  return out;
}

}  // namespace unirep
