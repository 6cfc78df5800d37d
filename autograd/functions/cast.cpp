// cast: the conversion kernel of core/ops/copy.h (or a view of the autocast weight cache,
// autograd/autocast_weight_cache.h) plus a node that converts the gradient back.
#include "autograd/functions/cast.h"

#include "autograd/autocast_weight_cache.h"
#include "autograd/node.h"
#include "core/ops/copy.h"

namespace unirep {

Tensor cast(const Tensor& x, DType dtype) {
  UNIREP_CHECK(x.defined(), "cast: undefined input (cast to ", dtype_name(dtype), ")");
  if (x.dtype() == dtype) return x;
  Tensor out = autocast_cached_cast(x, dtype);
  if (!out.defined()) {
    out = Tensor::empty(x.shape(), dtype, x.device());
    copy_tensor(out, x.detach());
  }
  if (is_floating(x.dtype()) && is_floating(dtype) && needs_grad({x})) {
    const DType source = x.dtype();
    record("cast", {x}, {out},
           [source](const std::vector<Tensor>& g) { return std::vector<Tensor>{cast(g[0], source)}; });
  }
  return out;
}

}  // namespace unirep
