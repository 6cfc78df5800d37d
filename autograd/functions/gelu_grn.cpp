// gelu_grn: validation, the forward kernels on a detached contiguous h, and a backward node running
// the fused backward kernels (core/ops/gelu_grn.h) on the saved h and norms.
#include "autograd/functions/gelu_grn.h"

#include "autograd/node.h"
#include "core/ops/gelu_grn.h"
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

}  // namespace

Tensor gelu_grn(const Tensor& h, const Tensor& gamma, const Tensor& beta) {
  UNIREP_CHECK(h.defined() && is_floating(h.dtype()), "gelu_grn: expected a floating h, got ",
               h.defined() ? h.str() : "an undefined tensor");
  UNIREP_CHECK(h.dim() >= 2 && h.size(-1) > 0, "gelu_grn: h must be [N, ..., F] with F > 0, got ", h.str());
  UNIREP_CHECK(gamma.defined(), "gelu_grn: gamma is undefined");
  check_param("gamma", gamma, h);
  check_param("beta", beta, h);
  const DType pdt = norm_param_dtype("gelu_grn", h.dtype(), {&gamma, &beta});
  GeluGrnShape s;
  s.batch = h.size(0);
  s.channels = h.size(-1);
  s.positions = s.batch * s.channels == 0 ? 0 : h.numel() / (s.batch * s.channels);

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

}  // namespace unirep
