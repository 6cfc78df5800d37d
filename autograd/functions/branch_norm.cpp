// batch_norm_branch_sum: validation, the per-branch statistics of core/ops/norm.h (around one packed
// all-reduce under sync), the fused apply, and a backward node running the per-branch reduce and
// the fused dx (core/ops/branch_norm.h). The saved statistics are those the unfused batch_norm /
// sync_batch_norm would save; in eval mode they are copies made from the running stats.
#include "autograd/functions/branch_norm.h"

#include <string>

#include "autograd/functions/norm.h"
#include "autograd/node.h"
#include "core/ops/branch_norm.h"
#include "distributed/communicator.h"

namespace unirep {

namespace {

constexpr const char* kOp = "batch_norm_branch_sum";

std::string describe(const Tensor& t) { return t.defined() ? t.str() : std::string("undefined"); }

// Checks everything before any kernel or collective runs; returns the parameters' dtype.
DType check_inputs(const std::vector<Tensor>& xs, const std::vector<BatchNormBranch>& branches, bool training) {
  UNIREP_CHECK(!xs.empty() && xs.size() <= size_t(kMaxNormBranches), kOp, ": expected 1 to ", kMaxNormBranches,
               " inputs, got ", xs.size());
  UNIREP_CHECK(branches.size() == xs.size(), kOp, ": ", xs.size(), " inputs but ", branches.size(),
               " batch norm branches");
  const Tensor& x0 = xs[0];
  UNIREP_CHECK(x0.defined() && is_floating(x0.dtype()) && x0.dim() >= 1, kOp,
               ": expected a floating input with channels last, got ", describe(x0));
  const Tensor* first_param = nullptr;
  for (size_t i = 0; i < xs.size(); ++i) {
    const std::string tag = "branch " + std::to_string(i) + " ";
    const Tensor& x = xs[i];
    UNIREP_CHECK(x.defined() && x.shape() == x0.shape() && x.dtype() == x0.dtype() && x.device() == x0.device(),
                 kOp, ": every input must match input 0 (", x0.str(), "), got ", tag, "input ", describe(x));
    const BatchNormBranch& b = branches[i];
    check_norm_param(kOp, (tag + "weight").c_str(), b.weight, x0, x0.dim() - 1);
    check_norm_param(kOp, (tag + "bias").c_str(), b.bias, x0, x0.dim() - 1);
    check_norm_running(kOp, (tag + "running_mean").c_str(), b.running_mean, x0, x0.dim() - 1);
    check_norm_running(kOp, (tag + "running_var").c_str(), b.running_var, x0, x0.dim() - 1);
    UNIREP_CHECK(b.running_mean.defined() == b.running_var.defined(), kOp, ": ", tag,
                 "running_mean and running_var must be given together");
    UNIREP_CHECK(!b.running_mean.defined() || b.running_mean.dtype() == b.running_var.dtype(), kOp, ": ", tag,
                 "running_mean is ", dtype_name(b.running_mean.dtype()), " but running_var is ",
                 dtype_name(b.running_var.dtype()));
    UNIREP_CHECK(training || b.running_mean.defined(), kOp, ": eval mode (training = false) needs ", tag,
                 "running_mean and running_var");
    UNIREP_CHECK(b.eps >= 0, kOp, ": ", tag, "eps must be non-negative, got ", b.eps);
    for (const Tensor* p : {&b.weight, &b.bias}) {
      if (!p->defined()) continue;
      if (!first_param) first_param = p;
      UNIREP_CHECK(p->dtype() == first_param->dtype(), kOp, ": every branch's weight and bias must share one dtype, got ",
                   dtype_name(first_param->dtype()), " and ", dtype_name(p->dtype()), " (", tag, ")");
    }
  }
  return first_param ? norm_param_dtype(kOp, x0.dtype(), {first_param}) : x0.dtype();
}

}  // namespace

Tensor batch_norm_branch_sum(const std::vector<Tensor>& xs, const std::vector<BatchNormBranch>& branches,
                             bool training, Communicator* comm) {
  const DType pdt = check_inputs(xs, branches, training);
  const bool sync = training && comm && comm->size() > 1;
  const Tensor& x0 = xs[0];
  const int64_t B = int64_t(xs.size()), C = x0.size(-1);
  const NormShape s{C == 0 ? 0 : x0.numel() / C, C, 1};
  UNIREP_CHECK(!training || sync || s.outer > 1, kOp,
               ": training needs more than one value per channel, got inputs of shape ", shape_str(x0.shape()));

  const DType stat_dtype = norm_stat_dtype(x0.dtype());
  std::vector<NormBranch> saved(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    NormBranch& nb = saved[size_t(i)];
    nb.x = xs[size_t(i)].detach().contiguous();
    nb.mean = Tensor::empty({C}, stat_dtype, x0.device());
    nb.invstd = Tensor::empty({C}, stat_dtype, x0.device());
    nb.weight = save(branches[size_t(i)].weight);
    nb.bias = save(branches[size_t(i)].bias);
  }
  Tensor count;  // the summed count N under sync; the backward's dx needs it on the device
  if (!training) {
    for (int64_t i = 0; i < B; ++i) {
      const BatchNormBranch& b = branches[size_t(i)];
      batch_norm_eval_stats(saved[size_t(i)].mean, saved[size_t(i)].invstd, save(b.running_mean),
                            save(b.running_var), b.eps);
    }
  } else if (!sync) {
    for (int64_t i = 0; i < B; ++i) {
      const BatchNormBranch& b = branches[size_t(i)];
      NormBranch& nb = saved[size_t(i)];
      batch_norm_stats(nb.mean, nb.invstd, nb.x, s, save(b.running_mean), save(b.running_var), b.momentum, b.eps);
    }
  } else {
    Tensor sums = Tensor::empty({B, 2 * C + 1}, DType::Float64, x0.device());
    for (int64_t i = 0; i < B; ++i) batch_norm_partial_sums(sums.select(0, i), saved[size_t(i)].x, s);
    comm->all_reduce(sums, ReduceOp::Sum);
    for (int64_t i = 0; i < B; ++i) {
      const BatchNormBranch& b = branches[size_t(i)];
      NormBranch& nb = saved[size_t(i)];
      batch_norm_stats_from_sums(nb.mean, nb.invstd, sums.select(0, i), save(b.running_mean), save(b.running_var),
                                 b.momentum, b.eps);
    }
    count = sums.select(0, 0).slice(0, 2 * C, 2 * C + 1);
  }
  Tensor y = Tensor::empty(x0.shape(), x0.dtype(), x0.device());
  batch_norm_branch_sum_apply(y, saved, s);

  std::vector<Tensor> inputs = xs;
  for (const BatchNormBranch& b : branches) inputs.push_back(b.weight);
  for (const BatchNormBranch& b : branches) inputs.push_back(b.bias);
  if (!needs_grad(inputs)) return y;
  std::vector<bool> wants(inputs.size());
  bool any_dx = false;
  for (size_t k = 0; k < inputs.size(); ++k) {
    wants[k] = inputs[k].defined() && inputs[k].requires_grad();
    if (k < size_t(B)) any_dx = any_dx || wants[k];
  }
  for (NormBranch& nb : saved) nb.bias = Tensor();  // the backward does not need it
  record(kOp, inputs, {y},
         [s, B, training, any_dx, wants, pdt, stat_dtype, comm = sync ? comm : nullptr, saved,
          count](const std::vector<Tensor>& g) {
           const Tensor dy = g[0].contiguous();
           const Device device = dy.device();
           std::vector<Tensor> grads(size_t(3 * B));
           // Every branch's row of the sums when any dx is wanted: the packed all-reduce carries all.
           Tensor grad_sums =
               training && any_dx ? Tensor::empty({B, 2 * s.channels}, stat_dtype, device) : Tensor();
           for (int64_t i = 0; i < B; ++i) {
             Tensor& dw = grads[size_t(B + i)];
             Tensor& db = grads[size_t(2 * B + i)];
             if (wants[size_t(B + i)]) dw = Tensor::empty({s.channels}, pdt, device);
             if (wants[size_t(2 * B + i)]) db = Tensor::empty({s.channels}, pdt, device);
             const Tensor sums_i = grad_sums.defined() ? grad_sums.select(0, i) : Tensor();
             if (!sums_i.defined() && !dw.defined() && !db.defined()) continue;
             const NormBranch& nb = saved[size_t(i)];
             batch_norm_backward_reduce(sums_i, dw, db, dy, nb.x, nb.mean, nb.invstd, s);
           }
           if (!any_dx) return grads;
           if (comm) comm->all_reduce(grad_sums, ReduceOp::Sum);
           std::vector<Tensor> dxs(static_cast<size_t>(B));
           for (int64_t i = 0; i < B; ++i)
             if (wants[size_t(i)]) dxs[size_t(i)] = Tensor::empty(dy.shape(), dy.dtype(), device);
           batch_norm_branch_sum_dx(dxs, dy, saved, grad_sums, count, s);
           for (int64_t i = 0; i < B; ++i) grads[size_t(i)] = dxs[size_t(i)];
           return grads;
         });
  return y;
}

}  // namespace unirep
