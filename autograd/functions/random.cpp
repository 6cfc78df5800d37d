// Differentiable dropout and drop_path (autograd/functions/random.h). The forward reserves its
// Philox counters from the generator; the backward keeps only (seed, offset) and regenerates the
// mask on the gradient with the same kernel (core/ops/random.h), so no mask is saved.
#include "autograd/functions/random.h"

#include "autograd/node.h"
#include "core/ops/random.h"

namespace unirep {

namespace {

void check_input(const char* op, const Tensor& x, double p) {
  UNIREP_CHECK(x.defined(), op, ": undefined input");
  UNIREP_CHECK(p >= 0.0 && p <= 1.0, op, ": probability p must be in [0, 1], got ", p, " (x has shape ",
               shape_str(x.shape()), ")");
}

template <class Kernel>
Tensor apply_mask(const char* op, const Tensor& x, uint64_t seed, uint64_t offset, const Kernel& kernel) {
  UNIREP_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor, got ", dtype_name(x.dtype()),
               " with shape ", shape_str(x.shape()));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  kernel(out, x.detach().contiguous(), seed, offset);
  if (needs_grad({x})) {
    record(op, {x}, {out}, [kernel, seed, offset](const std::vector<Tensor>& g) {
      Tensor gc = g[0].contiguous();
      Tensor gx = Tensor::empty(gc.shape(), gc.dtype(), gc.device());
      kernel(gx, gc, seed, offset);
      return std::vector<Tensor>{gx};
    });
  }
  return out;
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  check_input("dropout", x, p);
  if (!training || p == 0.0) return x;
  const double scale = p < 1.0 ? 1.0 / (1.0 - p) : 0.0;
  const uint64_t seed = gen.seed(), offset = gen.advance(uint64_t(x.numel()));
  return apply_mask("dropout", x, seed, offset,
                    [p, scale](const Tensor& out, const Tensor& in, uint64_t s, uint64_t o) {
                      dropout_kernel(out, in, s, o, p, scale);
                    });
}

Tensor drop_path(const Tensor& x, double p, bool training, Generator& gen, bool scale_by_keep) {
  check_input("drop_path", x, p);
  if (!training || p == 0.0) return x;
  UNIREP_CHECK(x.dim() > 0, "drop_path: x is zero-dimensional; drop_path needs a batch dim (dim 0)");
  const double scale = scale_by_keep && p < 1.0 ? 1.0 / (1.0 - p) : 1.0;
  const int64_t samples = x.size(0);
  const uint64_t seed = gen.seed(), offset = gen.advance(uint64_t(samples));
  return apply_mask("drop_path", x, seed, offset,
                    [p, scale, samples](const Tensor& out, const Tensor& in, uint64_t s, uint64_t o) {
                      drop_path_kernel(out, in, s, o, p, scale, samples);
                    });
}

}  // namespace unirep
