// Dispatch of the dilated-branch convs: the fused CUDA kernels where they apply, else one conv2d kernel
// per branch (CPU or CUDA), the input gradients summed into dx in branch order.
#include "core/ops/dilated_branches.h"

#include "core/ops/elementwise.h"

namespace unirep {

namespace {

bool fused(const Tensor& x, const std::vector<Tensor>& ws, const std::vector<int64_t>& dilations) {
  if (!x.is_cuda()) return false;
  std::vector<int64_t> kernels;
  for (const Tensor& w : ws) kernels.push_back(w.size(2));
  return cuda::dilated_branches_fused_supported(x.shape(), x.dtype(), kernels, dilations);
}

}  // namespace

ConvGeometry dilated_branch_geometry(const Shape& x_shape, int64_t kernel, int64_t dilation) {
  ConvGeometry g;
  g.N = x_shape[0];
  g.H = g.Ho = x_shape[1];
  g.W = g.Wo = x_shape[2];
  g.C = g.K = g.groups = x_shape[3];
  g.R = g.S = kernel;
  g.ph = g.pw = dilation * (kernel - 1) / 2;
  g.dh = g.dw = dilation;
  return g;
}

void dilated_branches_forward(const std::vector<Tensor>& zs, const Tensor& x, const std::vector<Tensor>& ws,
                              const std::vector<int64_t>& dilations) {
  if (fused(x, ws, dilations))
    return cuda::dilated_branches_forward_fused(zs, x, ws);
  for (size_t i = 0; i < ws.size(); ++i)
    conv2d_forward(zs[i], x, ws[i], Tensor(), dilated_branch_geometry(x.shape(), ws[i].size(2), dilations[i]));
}

void dilated_branches_backward_input(const Tensor& dx, const std::vector<Tensor>& dzs, const std::vector<Tensor>& ws,
                                     const std::vector<int64_t>& dilations) {
  if (fused(dx, ws, dilations))
    return cuda::dilated_branches_backward_input_fused(dx, dzs, ws);
  Tensor part;
  for (size_t i = 0; i < ws.size(); ++i) {
    const ConvGeometry g = dilated_branch_geometry(dx.shape(), ws[i].size(2), dilations[i]);
    if (i == 0) {
      conv2d_backward_input(dx, dzs[i], ws[i], g);
      continue;
    }
    if (!part.defined()) part = Tensor::empty(dx.shape(), dx.dtype(), dx.device());
    conv2d_backward_input(part, dzs[i], ws[i], g);
    elementwise(dx, ew::Add{}, dx, part);
  }
}

void dilated_branches_backward_weight(const std::vector<Tensor>& dws, const std::vector<Tensor>& dzs, const Tensor& x,
                                      const std::vector<int64_t>& dilations) {
  for (size_t i = 0; i < dws.size(); ++i)
    if (dws[i].defined())
      conv2d_backward_weight(dws[i], dzs[i], x, dilated_branch_geometry(x.shape(), dws[i].size(2), dilations[i]));
}

}  // namespace unirep
