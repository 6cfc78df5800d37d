#include "core/cuda/loops.cuh"
#include "core/ops/elementwise.h"

namespace unirep::cuda {

template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a) {
  UNIREP_DISPATCH_FLOATING(out.dtype(), "elementwise", [&] { cuda_elementwise<scalar_t>(out, f, a); });
}

template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a, const Tensor& b) {
  UNIREP_DISPATCH_FLOATING(out.dtype(), "elementwise", [&] { cuda_elementwise<scalar_t>(out, f, a, b); });
}

#define UNIREP_INSTANTIATE_UNARY(F) template void elementwise(const Tensor&, const ew::F&, const Tensor&);
#define UNIREP_INSTANTIATE_BINARY(F) \
  template void elementwise(const Tensor&, const ew::F&, const Tensor&, const Tensor&);
UNIREP_EW_UNARY_OPS(UNIREP_INSTANTIATE_UNARY)
UNIREP_EW_BINARY_OPS(UNIREP_INSTANTIATE_BINARY)

}  // namespace unirep::cuda
