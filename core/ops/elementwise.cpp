#include "core/ops/elementwise.h"

#include "core/ops/loops_cpu.h"

namespace unirep {

template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a) {
  if (out.is_cuda()) return cuda::elementwise(out, f, a);
  UNIREP_DISPATCH_FLOATING(out.dtype(), "elementwise", [&] { cpu_elementwise<scalar_t>(out, f, a); });
}

template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a, const Tensor& b) {
  if (out.is_cuda()) return cuda::elementwise(out, f, a, b);
  UNIREP_DISPATCH_FLOATING(out.dtype(), "elementwise", [&] { cpu_elementwise<scalar_t>(out, f, a, b); });
}

#define UNIREP_INSTANTIATE_UNARY(F) template void elementwise(const Tensor&, const ew::F&, const Tensor&);
#define UNIREP_INSTANTIATE_BINARY(F) \
  template void elementwise(const Tensor&, const ew::F&, const Tensor&, const Tensor&);
UNIREP_EW_UNARY_OPS(UNIREP_INSTANTIATE_UNARY)
UNIREP_EW_BINARY_OPS(UNIREP_INSTANTIATE_BINARY)

}  // namespace unirep
