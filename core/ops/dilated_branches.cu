// Tensor-level entry points of the fused dilated-branch kernels (core/ops/dilated_branches_kernels.cuh):
// branch-set matching, geometry checks, dtype dispatch, the converted-weight workspace from the tensor
// allocator, launches on the op stream.
#include <climits>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/depthwise_conv.h"
#include "core/ops/dilated_branches.h"
#include "core/ops/dilated_branches_kernels.cuh"

namespace unirep::cuda {

namespace {

using Set = dwconv::K13Branches;

bool is_k13_set(const std::vector<int64_t>& kernels, const std::vector<int64_t>& dilations) {
  if (int(kernels.size()) != Set::kCount || dilations.size() != kernels.size()) return false;
  for (int b = 0; b < Set::kCount; ++b)
    if (kernels[size_t(b)] != Set::kernel(b) || dilations[size_t(b)] != Set::dilation(b)) return false;
  return true;
}

dwconv::Shape union_shape(const Shape& x) {
  return dwconv::branch_union_shape<Set>(int(x[0]), int(x[1]), int(x[2]), int(x[3]));
}

template <class F> void dispatch_storage(DType dt, const F& f) {
  switch (dt) {
    case DType::Float32: f(float{}); break;
    case DType::BFloat16: f(bf16{}); break;
    case DType::Float16: f(f16{}); break;
    default: throw Error(std::string("dilated branch convs: fused kernels take float32/bfloat16/float16, got ") +
                         dtype_name(dt));
  }
}

template <class T> dwconv::BranchIn<T> inputs_of(const std::vector<Tensor>& ts) {
  dwconv::BranchIn<T> in{};
  for (size_t b = 0; b < ts.size(); ++b) in.p[b] = ts[b].data<T>();
  return in;
}

}  // namespace

bool dilated_branches_fused_supported(const Shape& x_shape, DType dtype, const std::vector<int64_t>& kernels,
                                      const std::vector<int64_t>& dilations) {
  if (dtype != DType::Float32 && dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (x_shape.size() != 4 || !is_k13_set(kernels, dilations)) return false;
  for (int64_t v : x_shape)
    if (v < 1 || v > INT_MAX) return false;
  if (x_shape[0] * x_shape[1] * x_shape[2] > INT_MAX) return false;
  return dwconv::branches_supported<Set>(union_shape(x_shape), depthwise_smem_limit());
}

void dilated_branches_forward_fused(const std::vector<Tensor>& zs, const Tensor& x, const std::vector<Tensor>& ws) {
  const dwconv::Shape g = union_shape(x.shape());
  Tensor workspace = Tensor::empty({int64_t(dwconv::branch_weight_floats<Set>(g.C))}, DType::Float32, x.device());
  dispatch_storage(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    dwconv::BranchOut<T> out{};
    for (size_t b = 0; b < zs.size(); ++b) out.p[b] = zs[b].data<T>();
    CUDA_CHECK((dwconv::branches_forward<Set, T>(out, x.data<T>(), inputs_of<T>(ws), g, workspace.data<float>(),
                                                 stream(), depthwise_smem_limit())));
  });
  UNIREP_PROFILE_MARK();  // the launchers report errors as codes (the playground shares them)
}

void dilated_branches_backward_input_fused(const Tensor& dx, const std::vector<Tensor>& dzs,
                                           const std::vector<Tensor>& ws) {
  const dwconv::Shape g = union_shape(dx.shape());
  Tensor workspace = Tensor::empty({int64_t(dwconv::branch_weight_floats<Set>(g.C))}, DType::Float32, dx.device());
  dispatch_storage(dx.dtype(), [&](auto tag) {
    using T = decltype(tag);
    CUDA_CHECK((dwconv::branches_input_grad<Set, T>(dx.data<T>(), inputs_of<T>(dzs), inputs_of<T>(ws), g,
                                                    workspace.data<float>(), stream(), depthwise_smem_limit())));
  });
  UNIREP_PROFILE_MARK();
}

}  // namespace unirep::cuda
