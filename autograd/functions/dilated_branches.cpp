// dilated_branch_convs: validation, forward through core/ops/dilated_branches.h, and a backward that
// computes only the gradients asked for (dx needs the weights, dw_i needs x). Outputs nothing flowed
// into arrive as zeros from the engine (or undefined when called directly): either counts as zero.
#include "autograd/functions/dilated_branches.h"

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "core/ops/dilated_branches.h"

namespace unirep {

namespace {

void validate(const Tensor& x, const std::vector<Tensor>& weights, const std::vector<int64_t>& dilations) {
  const char* op = "dilated_branch_convs";
  UNIREP_CHECK(x.defined(), op, ": input x is undefined");
  UNIREP_CHECK(x.dim() == 4, op, ": expected x of shape [N, H, W, C] (4-d NHWC), got shape ", shape_str(x.shape()));
  UNIREP_CHECK(is_floating(x.dtype()), op, ": expected a floating x, got ", dtype_name(x.dtype()));
  UNIREP_CHECK(x.numel() > 0, op, ": x ", shape_str(x.shape()), " is empty");
  UNIREP_CHECK(!weights.empty(), op, ": expected at least one branch weight");
  UNIREP_CHECK(weights.size() == dilations.size(), op, ": ", weights.size(), " weights but ", dilations.size(),
               " dilations");
  const int64_t C = x.size(3);
  for (size_t i = 0; i < weights.size(); ++i) {
    const Tensor& w = weights[i];
    UNIREP_CHECK(w.defined(), op, ": weight ", i, " is undefined");
    UNIREP_CHECK(w.dim() == 4 && w.size(0) == C && w.size(1) == 1 && w.size(2) == w.size(3) && w.size(2) % 2 == 1,
                 op, ": expected weight ", i, " of shape [", C, ", 1, k, k] with k odd (depthwise over the C = ", C,
                 " channels of x), got shape ", shape_str(w.shape()));
    UNIREP_CHECK(dilations[i] >= 1, op, ": dilation ", i, " must be >= 1, got ", dilations[i]);
    check_same_dtype(op, x, w);
    check_same_device(op, x, w);
  }
}

}  // namespace

std::vector<Tensor> dilated_branch_convs(const Tensor& x, const std::vector<Tensor>& weights,
                                         const std::vector<int64_t>& dilations) {
  if (autocast_enabled()) {
    std::vector<Tensor> operands{x};
    operands.insert(operands.end(), weights.begin(), weights.end());
    const std::vector<Tensor> in = autocast_inputs(AutocastOp::Conv2d, operands);
    AutocastGuard plain(autocast_dtype(), false);
    return dilated_branch_convs(in[0], std::vector<Tensor>(in.begin() + 1, in.end()), dilations);
  }
  validate(x, weights, dilations);
  Tensor xd = x.detach().contiguous();
  std::vector<Tensor> wd, zs;
  for (const Tensor& w : weights) {
    wd.push_back(w.detach().contiguous());
    zs.push_back(Tensor::empty(x.shape(), x.dtype(), x.device()));
  }
  dilated_branches_forward(zs, xd, wd, dilations);
  std::vector<Tensor> inputs{x};
  inputs.insert(inputs.end(), weights.begin(), weights.end());
  if (!needs_grad(inputs)) return zs;
  const bool need_x = x.requires_grad();
  std::vector<bool> need_w;
  bool any_w = false;
  for (const Tensor& w : weights) {
    need_w.push_back(w.requires_grad());
    any_w = any_w || w.requires_grad();
  }
  std::vector<Tensor> saved_w;
  std::vector<Shape> w_shapes;
  for (const Tensor& w : wd) {
    saved_w.push_back(need_x ? save(w) : Tensor());
    w_shapes.push_back(w.shape());
  }
  record("dilated_branch_convs", inputs, zs,
         [need_x, need_w, dilations, saved_w, w_shapes, sx = any_w ? save(xd) : Tensor(), shape = x.shape(),
          dtype = x.dtype(), device = x.device()](const std::vector<Tensor>& grads) {
           std::vector<Tensor> dzs;
           for (const Tensor& g : grads) dzs.push_back(g.defined() ? g.contiguous() : Tensor::zeros(shape, dtype, device));
           std::vector<Tensor> out(1 + need_w.size());
           if (need_x) {
             out[0] = Tensor::empty(shape, dtype, device);
             dilated_branches_backward_input(out[0], dzs, saved_w, dilations);
           }
           std::vector<Tensor> dws(need_w.size());
           for (size_t i = 0; i < need_w.size(); ++i)
             if (need_w[i]) dws[i] = Tensor::empty(w_shapes[i], dtype, device);
           dilated_branches_backward_weight(dws, dzs, sx, dilations);
           for (size_t i = 0; i < dws.size(); ++i) out[1 + i] = dws[i];
           return out;
         });
  return zs;
}

}  // namespace unirep
