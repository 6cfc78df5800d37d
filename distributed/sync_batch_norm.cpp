// sync_batch_norm: validation, the split batch norm kernels of core/ops/norm.h around one
// all-reduce per direction, and the module-tree switch (the math is in the header).
#include "distributed/sync_batch_norm.h"

#include "autograd/functions/norm.h"
#include "autograd/node.h"
#include "core/ops/norm.h"
#include "layers/basic.h"

namespace unirep {

namespace {

constexpr const char* kOp = "sync_batch_norm";

}  // namespace

Tensor sync_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                       const Tensor& running_var, bool training, double momentum, double eps, Communicator& comm) {
  if (!training) return batch_norm(x, weight, bias, running_mean, running_var, false, momentum, eps);
  UNIREP_CHECK(x.defined() && is_floating(x.dtype()) && x.dim() >= 1, kOp,
               ": expected a floating input with channels last, got ",
               x.defined() ? x.str() : std::string("undefined"));
  check_norm_param(kOp, "weight", weight, x, x.dim() - 1);
  check_norm_param(kOp, "bias", bias, x, x.dim() - 1);
  check_norm_running(kOp, "running_mean", running_mean, x, x.dim() - 1);
  check_norm_running(kOp, "running_var", running_var, x, x.dim() - 1);
  UNIREP_CHECK(running_mean.defined() == running_var.defined(), kOp,
               ": running_mean and running_var must be given together (got only ",
               running_mean.defined() ? "running_mean" : "running_var", ")");
  UNIREP_CHECK(!running_mean.defined() || running_mean.dtype() == running_var.dtype(), kOp, ": running_mean is ",
               dtype_name(running_mean.defined() ? running_mean.dtype() : DType::Float32), " but running_var is ",
               dtype_name(running_var.defined() ? running_var.dtype() : DType::Float32));
  UNIREP_CHECK(eps >= 0, kOp, ": eps must be non-negative, got ", eps);
  const int64_t C = x.size(-1);
  const NormShape s{C == 0 ? 0 : x.numel() / C, C, 1};
  UNIREP_CHECK(comm.size() > 1 || s.outer > 1, kOp,
               ": training needs more than one value per channel, got an input of shape ", shape_str(x.shape()));
  // weight, bias and their gradients share one dtype, checked here before any collective.
  const DType pdt = norm_param_dtype(kOp, x.dtype(), {&weight, &bias});

  const Tensor xd = x.detach().contiguous();
  Tensor sums = Tensor::empty({2 * C + 1}, DType::Float64, x.device());
  batch_norm_partial_sums(sums, xd, s);
  comm.all_reduce(sums, ReduceOp::Sum);
  const DType stat_dtype = norm_stat_dtype(x.dtype());
  Tensor mean = Tensor::empty({C}, stat_dtype, x.device());
  Tensor invstd = Tensor::empty({C}, stat_dtype, x.device());
  batch_norm_stats_from_sums(mean, invstd, sums, save(running_mean), save(running_var), momentum, eps);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  batch_norm_apply(y, xd, mean, invstd, save(weight), save(bias), s);

  if (needs_grad({x, weight, bias})) {
    const bool gx = x.requires_grad(), gw = weight.defined() && weight.requires_grad(),
               gb = bias.defined() && bias.requires_grad();
    Tensor count = sums.slice(0, 2 * C, 2 * C + 1);  // N, summed over the ranks
    record(kOp, {x, weight, bias}, {y},
           [s, gx, gw, gb, pdt, stat_dtype, comm = &comm, sx = save(xd), sw = save(weight), mean, invstd,
            count](const std::vector<Tensor>& g) {
             const Tensor dy = g[0].contiguous();
             const Device device = sx.device();
             Tensor grad_sums = gx ? Tensor::empty({2 * s.channels}, stat_dtype, device) : Tensor();
             Tensor dw = gw ? Tensor::empty({s.channels}, pdt, device) : Tensor();
             Tensor db = gb ? Tensor::empty({s.channels}, pdt, device) : Tensor();
             batch_norm_backward_reduce(grad_sums, dw, db, dy, sx, mean, invstd, s);
             Tensor dx;
             if (gx) {
               comm->all_reduce(grad_sums, ReduceOp::Sum);
               dx = Tensor::empty(sx.shape(), sx.dtype(), device);
               batch_norm_backward_elemt(dx, dy, sx, mean, invstd, sw, grad_sums, count, s);
             }
             return std::vector<Tensor>{dx, dw, db};
           });
  }
  return y;
}

int convert_sync_batch_norm(Module& root, Communicator* comm) {
  int converted = 0;
  if (auto* bn = dynamic_cast<BatchNorm2d*>(&root)) {
    bn->sync = comm;
    ++converted;
  }
  for (auto& [name, child] : root.children()) converted += convert_sync_batch_norm(*child, comm);
  return converted;
}

}  // namespace unirep
