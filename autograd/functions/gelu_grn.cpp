// gelu_grn: validation, the forward kernels on a detached contiguous h, and a backward node running
// the fused backward kernels (core/ops/gelu_grn.h) on the saved h and norms.
#include "autograd/functions/gelu_grn.h"

#include "autograd/autocast.h"
#include "autograd/functions/linear.h"
#include "autograd/node.h"
#include "core/ops/gelu_grn.h"
#include "core/ops/matmul.h"
#include "core/ops/norm.h"

namespace unirep {

namespace {

void check_param(const char* what, const Tensor& p, const Tensor& h) {
  if (!p.defined()) return;
  const int64_t F = h.size(-1);
  bool leading_ones = true;
  for (int64_t d = 0; d + 1 < p.dim(); ++d) leading_ones = leading_ones && p.size(d) == 1;
  UNIREP_CHECK(p.dim() >= 1 && leading_ones && p.size(-1) == F, "gelu_grn: ", what, " must have shape [", F,
               "] or [1, ..., 1, ", F, "] (the channels of h ", shape_str(h.shape()), "), got ",
               shape_str(p.shape()));
  UNIREP_CHECK(p.device() == h.device(), "gelu_grn: ", what, " is on ", p.str(), " but h is ", h.str());
}

GeluGrnShape checked_shape(const Tensor& h, const Tensor& gamma, const Tensor& beta) {
  UNIREP_CHECK(h.defined() && is_floating(h.dtype()), "gelu_grn: expected a floating h, got ",
               h.defined() ? h.str() : "an undefined tensor");
  UNIREP_CHECK(h.dim() >= 2 && h.size(-1) > 0, "gelu_grn: h must be [N, ..., F] with F > 0, got ", h.str());
  UNIREP_CHECK(gamma.defined(), "gelu_grn: gamma is undefined");
  check_param("gamma", gamma, h);
  check_param("beta", beta, h);
  GeluGrnShape s;
  s.batch = h.size(0);
  s.channels = h.size(-1);
  s.positions = s.batch * s.channels == 0 ? 0 : h.numel() / (s.batch * s.channels);
  return s;
}

}  // namespace

Tensor gelu_grn(const Tensor& h, const Tensor& gamma, const Tensor& beta) {
  const GeluGrnShape s = checked_shape(h, gamma, beta);
  const DType pdt = norm_param_dtype("gelu_grn", h.dtype(), {&gamma, &beta});

  const Tensor hd = h.detach().contiguous();
  const Tensor gd = gamma.detach().contiguous();
  const Tensor bd = beta.defined() ? beta.detach().contiguous() : Tensor();
  Tensor norm = Tensor::empty({s.batch * s.channels}, norm_stat_dtype(h.dtype()), h.device());
  Tensor out = Tensor::empty(h.shape(), h.dtype(), h.device());
  gelu_grn_forward(out, norm, hd, gd, bd, s);

  if (needs_grad({h, gamma, beta})) {
    const bool gh = h.requires_grad(), gg = gamma.requires_grad(), gb = beta.defined() && beta.requires_grad();
    record("gelu_grn", {h, gamma, beta}, {out},
           [s, gh, gg, gb, pdt, sh = save(hd), sg = save(gd), norm, gshape = gamma.shape(),
            bshape = beta.defined() ? beta.shape() : Shape{}](const std::vector<Tensor>& g) {
             const Tensor dy = g[0].contiguous();
             Tensor dh = gh ? Tensor::empty(sh.shape(), sh.dtype(), sh.device()) : Tensor();
             Tensor dgamma = gg ? Tensor::empty(gshape, pdt, sh.device()) : Tensor();
             Tensor dbeta = gb ? Tensor::empty(bshape, pdt, sh.device()) : Tensor();
             gelu_grn_backward(dh, dgamma, dbeta, dy, sh, norm, sg, s);
             return std::vector<Tensor>{dh, dgamma, dbeta};
           });
  }
  return out;
}

Tensor gelu_grn_linear(const Tensor& h, const Tensor& gamma, const Tensor& beta, const Tensor& weight,
                       const Tensor& bias) {
  if (autocast_enabled()) {
    const std::vector<Tensor> wb = autocast_inputs(AutocastOp::Linear, {h, weight, bias});
    AutocastGuard plain(autocast_dtype(), false);
    return gelu_grn_linear(wb[0], gamma, beta, wb[1], wb[2]);
  }
  const GeluGrnShape s = checked_shape(h, gamma, beta);
  const DType pdt = norm_param_dtype("gelu_grn", h.dtype(), {&gamma, &beta});
  UNIREP_CHECK(weight.defined() && weight.dim() == 2 && weight.size(1) == s.channels && weight.dtype() == h.dtype() &&
                   weight.device() == h.device(),
               "gelu_grn_linear: weight must be [out, ", s.channels, "] in h's dtype and device (h ", h.str(),
               "), got ", weight.defined() ? weight.str() : "undefined");
  const int64_t out_f = weight.size(0), rows = s.batch * s.positions;
  UNIREP_CHECK(!bias.defined() || (bias.shape() == Shape{out_f} && bias.dtype() == h.dtype() &&
                                   bias.device() == h.device()),
               "gelu_grn_linear: bias must be [", out_f, "] in h's dtype and device, got ", bias.str());
  if (!needs_grad({h, gamma, beta, weight, bias})) return linear(gelu_grn(h, gamma, beta), weight, bias);

  const Tensor hd = h.detach().contiguous();
  const Tensor gd = gamma.detach().contiguous();
  const Tensor bd = beta.defined() ? beta.detach().contiguous() : Tensor();
  const Tensor wd = weight.detach().contiguous();
  const DType stat = norm_stat_dtype(h.dtype());
  Tensor norm = Tensor::empty({s.batch * s.channels}, stat, h.device());
  Tensor scale = Tensor::empty({s.batch * s.channels}, stat, h.device());
  Shape out_shape = h.shape();
  out_shape.back() = out_f;
  Tensor y = Tensor::empty({rows, out_f}, h.dtype(), h.device());
  {
    Tensor z = Tensor::empty({rows, s.channels}, h.dtype(), h.device());
    gelu_grn_forward(z, norm, hd, gd, bd, s, scale);
    linear_gemm(y, z, wd, bias.defined() ? bias.detach().contiguous() : Tensor());
  }
  y = y.view(out_shape);

  const bool gh = h.requires_grad(), gg = gamma.requires_grad(), gbeta = beta.defined() && beta.requires_grad();
  const bool gw = weight.requires_grad(), gbias = bias.defined() && bias.requires_grad();
  record("gelu_grn_linear", {h, gamma, beta, weight, bias}, {y},
         [s, pdt, rows, out_f, gh, gg, gbeta, gw, gbias, sh = save(hd), sg = save(gd), sb = save(bd),
          sw = save(wd), norm, scale, gshape = gamma.shape(), bshape = beta.defined() ? beta.shape() : Shape{}](
             const std::vector<Tensor>& g) {
           const Tensor dy = g[0].contiguous().view({rows, out_f});
           Tensor dw = gw ? Tensor::empty(sw.shape(), sw.dtype(), sw.device()) : Tensor();
           Tensor dbias = gbias ? Tensor::empty({out_f}, dy.dtype(), dy.device()) : Tensor();
           if (gw) {
             Tensor z = Tensor::empty({rows, s.channels}, sh.dtype(), sh.device());
             gelu_grn_apply(z, sh, scale, sb, s);
             linear_weight_grad(dw, dbias, dy, z);
           } else if (gbias) {
             linear_bias_grad(dbias, dy);
           }
           Tensor dh, dgamma, dbeta;
           if (gh || gg || gbeta) {
             Tensor dz = Tensor::empty({rows, s.channels}, dy.dtype(), dy.device());
             gemm(dz, dy, sw, GemmParams{1, rows, s.channels, out_f});
             dh = gh ? Tensor::empty(sh.shape(), sh.dtype(), sh.device()) : Tensor();
             dgamma = gg ? Tensor::empty(gshape, pdt, sh.device()) : Tensor();
             dbeta = gbeta ? Tensor::empty(bshape, pdt, sh.device()) : Tensor();
             gelu_grn_backward(dh, dgamma, dbeta, dz, sh, norm, sg, s);
           }
           return std::vector<Tensor>{dh, dgamma, dbeta, dw, dbias};
         });
  return y;
}

}  // namespace unirep
