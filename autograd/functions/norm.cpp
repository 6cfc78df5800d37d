// batch_norm and layer_norm: validation, the forward kernels on detached contiguous inputs, and a
// backward node running the dedicated backward kernels (core/ops/norm.h). The saved statistics are
// mean/invstd in the accumulation dtype; in eval mode batch norm saves copies made from the running
// stats, so a later in-place update of the buffers cannot change this graph's gradients.
// A bf16/f16 input may come with float32 weight/bias (autocast's master parameters): their
// gradients are then float32 too, the input's gradient has the input's dtype.
#include "autograd/functions/norm.h"

#include "autograd/node.h"
#include "core/ops/norm.h"

namespace unirep {

namespace {

NormShape norm_shape(const Tensor& x, int64_t dim) {
  NormShape s;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < dim) s.outer *= x.size(d);
    else if (d == dim) s.channels = x.size(d);
    else s.inner *= x.size(d);
  }
  return s;
}

void check_input(const char* op, const Tensor& x) {
  UNIREP_CHECK(x.defined(), op, ": input is undefined");
  UNIREP_CHECK(is_floating(x.dtype()), op, ": expected a floating input, got ", x.str());
  UNIREP_CHECK(x.dim() >= 1, op, ": expected an input with at least one dim, got ", x.str());
}

// The dtype weight and bias share (checked): the dtype of their gradients.
DType param_dtype(const char* op, const Tensor& weight, const Tensor& bias, const Tensor& x) {
  UNIREP_CHECK(!weight.defined() || !bias.defined() || weight.dtype() == bias.dtype(), op, ": weight is ",
               dtype_name(weight.defined() ? weight.dtype() : x.dtype()), " but bias is ",
               dtype_name(bias.defined() ? bias.dtype() : x.dtype()), "; they must share one dtype");
  return weight.defined() ? weight.dtype() : bias.defined() ? bias.dtype() : x.dtype();
}

}  // namespace

void check_norm_param(const char* op, const char* what, const Tensor& p, const Tensor& x, int64_t dim) {
  if (!p.defined()) return;
  const int64_t C = x.size(dim);
  UNIREP_CHECK(p.dim() == 1 && p.size(0) == C, op, ": ", what, " must have shape [", C, "] (size of dim ", dim,
               " of the input ", shape_str(x.shape()), "), got ", shape_str(p.shape()));
  const bool low = x.dtype() == DType::BFloat16 || x.dtype() == DType::Float16;
  UNIREP_CHECK(p.dtype() == x.dtype() || (low && p.dtype() == DType::Float32), op, ": ", what, " has dtype ",
               dtype_name(p.dtype()), " but the input is ", dtype_name(x.dtype()),
               low ? " (parameters must have the input's dtype or float32)" : "");
  UNIREP_CHECK(p.device() == x.device(), op, ": ", what, " is on ", p.str(), " but the input is ", x.str());
}

void check_norm_running(const char* op, const char* what, const Tensor& r, const Tensor& x, int64_t dim) {
  if (!r.defined()) return;
  const int64_t C = x.size(dim);
  UNIREP_CHECK(r.dim() == 1 && r.size(0) == C, op, ": ", what, " must have shape [", C, "] (size of dim ", dim,
               " of the input ", shape_str(x.shape()), "), got ", shape_str(r.shape()));
  UNIREP_CHECK(r.dtype() == DType::Float32 || r.dtype() == x.dtype(), op, ": ", what,
               " must be float32 or the input's dtype ", dtype_name(x.dtype()), ", got ", dtype_name(r.dtype()));
  UNIREP_CHECK(r.device() == x.device(), op, ": ", what, " is on ", r.str(), " but the input is ", x.str());
  UNIREP_CHECK(r.is_contiguous(), op, ": ", what, " must be contiguous (it is updated in place), got ", r.str());
  UNIREP_CHECK(!r.requires_grad(), op, ": ", what, " is a buffer and must not require grad");
}

Tensor batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                  const Tensor& running_var, bool training, double momentum, double eps, int64_t channel_dim) {
  const char* op = "batch_norm";
  check_input(op, x);
  const int64_t dim = wrap_dim(channel_dim, x.dim(), op);
  check_norm_param(op, "weight", weight, x, dim);
  check_norm_param(op, "bias", bias, x, dim);
  const DType pdt = param_dtype(op, weight, bias, x);
  check_norm_running(op, "running_mean", running_mean, x, dim);
  check_norm_running(op, "running_var", running_var, x, dim);
  UNIREP_CHECK(running_mean.defined() == running_var.defined(), op,
               ": running_mean and running_var must be given together (got only ",
               running_mean.defined() ? "running_mean" : "running_var", ")");
  UNIREP_CHECK(!running_mean.defined() || running_mean.dtype() == running_var.dtype(), op, ": running_mean is ",
               dtype_name(running_mean.defined() ? running_mean.dtype() : DType::Float32), " but running_var is ",
               dtype_name(running_var.defined() ? running_var.dtype() : DType::Float32));
  UNIREP_CHECK(training || running_mean.defined(), op,
               ": eval mode (training = false) needs running_mean and running_var");
  UNIREP_CHECK(eps >= 0, op, ": eps must be non-negative, got ", eps);
  const NormShape s = norm_shape(x, dim);
  UNIREP_CHECK(!training || s.outer * s.inner > 1, op,
               ": training needs more than one value per channel, got an input of shape ", shape_str(x.shape()),
               " with channel dim ", dim);

  const Tensor xd = x.detach().contiguous();
  const DType stat_dtype = norm_stat_dtype(x.dtype());
  Tensor mean = Tensor::empty({s.channels}, stat_dtype, x.device());
  Tensor invstd = Tensor::empty({s.channels}, stat_dtype, x.device());
  if (training)
    batch_norm_stats(mean, invstd, xd, s, save(running_mean), save(running_var), momentum, eps);
  else
    batch_norm_eval_stats(mean, invstd, save(running_mean), save(running_var), eps);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  batch_norm_apply(y, xd, mean, invstd, save(weight), save(bias), s);

  if (needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
               gb = bias.defined() && bias.requires_grad();
    record(op, {x, weight, bias}, {y},
           [s, training, gx, gw, gb, pdt, sx = save(xd), sw = save(weight), mean,
            invstd](const std::vector<Tensor>& g) {
             const Tensor dy = g[0].contiguous();
             Tensor dx = gx ? Tensor::empty(sx.shape(), sx.dtype(), sx.device()) : Tensor();
             Tensor dw = gw ? Tensor::empty({s.channels}, pdt, sx.device()) : Tensor();
             Tensor db = gb ? Tensor::empty({s.channels}, pdt, sx.device()) : Tensor();
             batch_norm_backward(dx, dw, db, dy, sx, mean, invstd, sw, s, training);
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return y;
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, int64_t dim) {
  const char* op = "layer_norm";
  check_input(op, x);
  const int64_t d = wrap_dim(dim, x.dim(), op);
  UNIREP_CHECK(x.size(d) > 0, op, ": the normalised dim ", d, " of the input ", shape_str(x.shape()), " is empty");
  check_norm_param(op, "weight", weight, x, d);
  check_norm_param(op, "bias", bias, x, d);
  const DType pdt = param_dtype(op, weight, bias, x);
  UNIREP_CHECK(eps >= 0, op, ": eps must be non-negative, got ", eps);
  const NormShape s = norm_shape(x, d);

  const Tensor xd = x.detach().contiguous();
  const bool grad = needs_grad({x, weight, bias});
  const DType stat_dtype = norm_stat_dtype(x.dtype());
  Tensor mean = grad ? Tensor::empty({s.outer * s.inner}, stat_dtype, x.device()) : Tensor();
  Tensor invstd = grad ? Tensor::empty({s.outer * s.inner}, stat_dtype, x.device()) : Tensor();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  layer_norm_forward(y, mean, invstd, xd, save(weight), save(bias), s, eps);

  if (grad) {
    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
               gb = bias.defined() && bias.requires_grad();
    record(op, {x, weight, bias}, {y},
           [s, gx, gw, gb, pdt, sx = save(xd), sw = save(weight), mean, invstd](const std::vector<Tensor>& g) {
             const Tensor dy = g[0].contiguous();
             Tensor dx = gx ? Tensor::empty(sx.shape(), sx.dtype(), sx.device()) : Tensor();
             Tensor dw = gw ? Tensor::empty({s.channels}, pdt, sx.device()) : Tensor();
             Tensor db = gb ? Tensor::empty({s.channels}, pdt, sx.device()) : Tensor();
             layer_norm_backward(dx, dw, db, dy, sx, mean, invstd, sw, s);
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return y;
}

}  // namespace unirep
