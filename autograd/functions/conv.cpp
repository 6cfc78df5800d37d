// conv2d: validation, forward through core/ops/conv2d.h, and a backward that computes only the
// gradients asked for (dx needs the weight, dW needs the input, db needs neither, so each is saved
// only when its consumer is required).
#include "autograd/functions/conv.h"

#include "autograd/autocast.h"
#include "autograd/node.h"
#include "core/ops/conv2d.h"

namespace unirep {

namespace {

std::string params_str(const Conv2dParams& p) {
  return detail::concat("stride [", p.stride_h, ", ", p.stride_w, "], padding [", p.pad_h, ", ", p.pad_w,
                        "], dilation [", p.dilation_h, ", ", p.dilation_w, "], groups ", p.groups);
}

ConvGeometry validate(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  const char* op = "conv2d";
  UNIREP_CHECK(x.defined(), "conv2d: input x is undefined");
  UNIREP_CHECK(weight.defined(), "conv2d: weight is undefined");
  UNIREP_CHECK(x.dim() == 4, "conv2d: expected x of shape [N, H, W, C_in] (4-d NHWC), got shape ",
               shape_str(x.shape()));
  UNIREP_CHECK(weight.dim() == 4, "conv2d: expected weight of shape [C_out, C_in / groups, kH, kW] (4-d), got shape ",
               shape_str(weight.shape()));
  UNIREP_CHECK(is_floating(x.dtype()), "conv2d: expected a floating x, got ", dtype_name(x.dtype()));
  check_same_dtype(op, x, weight);
  check_same_device(op, x, weight);
  UNIREP_CHECK(p.stride_h >= 1 && p.stride_w >= 1 && p.dilation_h >= 1 && p.dilation_w >= 1 && p.pad_h >= 0 &&
                   p.pad_w >= 0 && p.groups >= 1,
               "conv2d: invalid parameters (", params_str(p),
               "): strides, dilations and groups must be >= 1 and paddings >= 0");
  ConvGeometry g;
  g.N = x.size(0);
  g.H = x.size(1);
  g.W = x.size(2);
  g.C = x.size(3);
  g.K = weight.size(0);
  g.R = weight.size(2);
  g.S = weight.size(3);
  g.sh = p.stride_h;
  g.sw = p.stride_w;
  g.ph = p.pad_h;
  g.pw = p.pad_w;
  g.dh = p.dilation_h;
  g.dw = p.dilation_w;
  g.groups = p.groups;
  UNIREP_CHECK(g.C % g.groups == 0, "conv2d: C_in = ", g.C, " of x ", shape_str(x.shape()),
               " is not divisible by groups = ", g.groups);
  UNIREP_CHECK(g.K % g.groups == 0, "conv2d: C_out = ", g.K, " of weight ", shape_str(weight.shape()),
               " is not divisible by groups = ", g.groups);
  UNIREP_CHECK(weight.size(1) == g.C / g.groups, "conv2d: weight ", shape_str(weight.shape()),
               " expects C_in / groups = ", weight.size(1), " input channels per group, but x ",
               shape_str(x.shape()), " with groups = ", g.groups, " has ", g.C / g.groups);
  UNIREP_CHECK(g.R >= 1 && g.S >= 1, "conv2d: empty kernel in weight ", shape_str(weight.shape()));
  if (bias.defined()) {
    UNIREP_CHECK(bias.dim() == 1 && bias.size(0) == g.K, "conv2d: expected bias of shape [", g.K,
                 "] (C_out of weight ", shape_str(weight.shape()), "), got shape ", shape_str(bias.shape()));
    check_same_dtype(op, x, bias);
    check_same_device(op, x, bias);
  }
  const int64_t eff_h = g.dh * (g.R - 1) + 1, eff_w = g.dw * (g.S - 1) + 1;
  const int64_t span_h = g.H + 2 * g.ph - eff_h, span_w = g.W + 2 * g.pw - eff_w;
  g.Ho = span_h < 0 ? 0 : span_h / g.sh + 1;
  g.Wo = span_w < 0 ? 0 : span_w / g.sw + 1;
  UNIREP_CHECK(g.Ho > 0 && g.Wo > 0, "conv2d: output size [", g.Ho, ", ", g.Wo, "] is not positive for x ",
               shape_str(x.shape()), " and weight ", shape_str(weight.shape()), " with ", params_str(p),
               " (dilated kernel ", eff_h, "x", eff_w, " exceeds the padded input ", g.H + 2 * g.ph, "x",
               g.W + 2 * g.pw, ")");
  return g;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Conv2d, {x, weight, bias},
                         [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], in[2], params); });
  const ConvGeometry g = validate(x, weight, bias, params);
  Tensor xd = x.detach().contiguous(), wd = weight.detach().contiguous();
  Tensor bd = bias.defined() ? bias.detach().contiguous() : Tensor();
  Tensor y = Tensor::empty({g.N, g.Ho, g.Wo, g.K}, x.dtype(), x.device());
  conv2d_forward(y, xd, wd, bd, g);
  if (needs_grad({x, weight, bias})) {
    const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
    const bool need_b = bias.defined() && bias.requires_grad();
    record("conv2d", {x, weight, bias}, {y},
           [g, need_x, need_w, need_b, sx = need_w ? save(xd) : Tensor(), sw = need_x ? save(wd) : Tensor(),
            wshape = weight.shape()](const std::vector<Tensor>& grads) {
             Tensor dy = grads[0].contiguous();
             Tensor dx, dw, db;
             if (need_x) {
               dx = Tensor::empty({g.N, g.H, g.W, g.C}, dy.dtype(), dy.device());
               conv2d_backward_input(dx, dy, sw, g);
             }
             if (need_w) {
               dw = Tensor::empty(wshape, dy.dtype(), dy.device());
               conv2d_backward_weight(dw, dy, sx, g);
             }
             if (need_b) {
               db = Tensor::empty({g.K}, dy.dtype(), dy.device());
               conv2d_backward_bias(db, dy);
             }
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return y;
}

}  // namespace unirep
