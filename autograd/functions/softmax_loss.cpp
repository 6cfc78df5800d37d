// softmax, log_softmax, cross_entropy and cross_entropy_soft (declared in reduce.h) over the kernels
// of core/ops/softmax.h. The losses run fused kernels that never materialise log_softmax; they keep
// per-row losses and log-sum-exps in the accumulation dtype (float32, float64 for float64 logits)
// and round to the logits' dtype only at the end.
#include <cmath>
#include <limits>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/softmax.h"

namespace unirep {

namespace {

Tensor softmax_impl(const char* op, const Tensor& x, int64_t dim, bool log) {
  UNIREP_CHECK(x.defined(), op, ": undefined input");
  UNIREP_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor, got ", x.str());
  const int64_t d = wrap_dim(dim, x.dim(), op);
  int64_t outer = 1, C = 1, inner = 1;
  for (int64_t i = 0; i < x.dim(); ++i) {
    if (i < d) outer *= x.size(i);
    else if (i == d) C = x.size(i);
    else inner *= x.size(i);
  }
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  softmax_forward(y, xc, outer, C, inner, log);
  if (needs_grad({x})) {
    record(op, {x}, {y}, [sy = save(y), outer, C, inner, log](const std::vector<Tensor>& g) {
      Tensor dy = g[0].contiguous();
      Tensor dx = Tensor::like(sy);
      softmax_backward(dx, dy, sy, outer, C, inner, log);
      return std::vector<Tensor>{dx};
    });
  }
  return y;
}

void check_logits(const char* op, const Tensor& logits) {
  UNIREP_CHECK(logits.defined(), op, ": undefined logits");
  UNIREP_CHECK(is_floating(logits.dtype()), op, ": expected floating logits [N, C], got ", logits.str());
  UNIREP_CHECK(logits.dim() == 2, op, ": expected logits of shape [N, C], got shape ", shape_str(logits.shape()));
}

// Per-row losses (accumulation dtype, [N]) -> the result in `dtype`: [N], or a 0-d sum, or a 0-d
// mean: the sum times mean_scale (soft targets: 1 / N), or divided by `count` where that is defined
// (hard targets: a 0-d tensor of the kept rows on the rows' device; none kept gives NaN).
Tensor reduce_rows_loss(const Tensor& rows, Reduction reduction, double mean_scale, const Tensor& count, DType dtype) {
  if (reduction == Reduction::None) return rows.to(dtype);
  Tensor total = Tensor::empty({}, rows.dtype(), rows.device());
  reduce_rows(total, rows, 1, rows.numel(), ReduceOp::Sum);
  if (reduction == Reduction::Mean) {
    if (count.defined())
      elementwise(total, ew::Div{}, total, count);
    else
      elementwise(total, ew::MulScalar{mean_scale}, total);
  }
  return total.to(dtype);
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Softmax, {x}, [&](const std::vector<Tensor>& in) { return softmax(in[0], dim); });
  return softmax_impl("softmax", x, dim, false);
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::LogSoftmax, {x},
                         [&](const std::vector<Tensor>& in) { return log_softmax(in[0], dim); });
  return softmax_impl("log_softmax", x, dim, true);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     Reduction reduction) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::CrossEntropy, {logits}, [&](const std::vector<Tensor>& in) {
      return cross_entropy(in[0], target, ignore_index, label_smoothing, reduction);
    });
  const char* op = "cross_entropy";
  check_logits(op, logits);
  const int64_t N = logits.size(0), C = logits.size(1);
  UNIREP_CHECK(target.defined(), op, ": undefined target, expected int64 [", N, "] for logits ",
               shape_str(logits.shape()));
  UNIREP_CHECK(target.dtype() == DType::Int64 || target.dtype() == DType::Int32, op,
               ": expected int64 (or int32) class indices [", N, "] as target for logits ",
               shape_str(logits.shape()), ", got ", target.str());
  UNIREP_CHECK(target.dim() == 1 && target.size(0) == N, op, ": expected target of shape [", N, "] for logits ",
               shape_str(logits.shape()), ", got shape ", shape_str(target.shape()));
  check_same_device(op, logits, target);
  UNIREP_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, op, ": label_smoothing must be in [0, 1], got ",
               label_smoothing);

  if (!target.is_cuda()) check_class_targets(op, target, C, ignore_index);

  Tensor x = logits.detach().contiguous(), t = target.detach().contiguous();
  const DType acc = loss_acc_dtype(logits.dtype());
  Tensor rows = Tensor::empty({N}, acc, logits.device());
  Tensor lse = Tensor::empty({N}, acc, logits.device());
  Tensor kept = Tensor::empty({N}, acc, logits.device());
  cross_entropy_forward(rows, lse, kept, x, t, ignore_index, label_smoothing);
  // A mean divides by the kept rows, counted where the rows are: no host synchronisation on CUDA.
  Tensor kept_count;
  if (reduction == Reduction::Mean) {
    kept_count = Tensor::empty({}, acc, logits.device());
    reduce_rows(kept_count, kept, 1, N, ReduceOp::Sum);
  }
  Tensor out = reduce_rows_loss(rows, reduction, 1.0, kept_count, logits.dtype());

  if (needs_grad({logits})) {
    // A mean over no kept rows has no gradient to spread: every row is ignored and gets 0.
    record(op, {logits}, {out},
           [x, t, lse, kept_count, ignore_index, label_smoothing](const std::vector<Tensor>& g) {
             Tensor dx = Tensor::like(x);
             cross_entropy_backward(dx, g[0].contiguous(), kept_count, x, lse, t, ignore_index, label_smoothing);
             return std::vector<Tensor>{dx};
           });
  }
  return out;
}

Tensor cross_entropy_soft(const Tensor& logits, const Tensor& soft_target, Reduction reduction) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::CrossEntropySoft, {logits, soft_target},
                         [&](const std::vector<Tensor>& in) { return cross_entropy_soft(in[0], in[1], reduction); });
  const char* op = "cross_entropy_soft";
  check_logits(op, logits);
  UNIREP_CHECK(soft_target.defined(), op, ": undefined soft_target, expected shape ", shape_str(logits.shape()));
  UNIREP_CHECK(soft_target.shape() == logits.shape(), op, ": soft_target of shape ",
               shape_str(soft_target.shape()), " does not match logits of shape ", shape_str(logits.shape()));
  check_same_dtype(op, logits, soft_target);
  check_same_device(op, logits, soft_target);

  const int64_t N = logits.size(0);
  Tensor x = logits.detach().contiguous(), q = soft_target.detach().contiguous();
  const DType acc = loss_acc_dtype(logits.dtype());
  Tensor rows = Tensor::empty({N}, acc, logits.device());
  Tensor lse = Tensor::empty({N}, acc, logits.device());
  Tensor qsum = Tensor::empty({N}, acc, logits.device());
  soft_cross_entropy_forward(rows, lse, qsum, x, q);
  const double mean_scale = N > 0 ? 1.0 / double(N) : std::numeric_limits<double>::quiet_NaN();
  Tensor out = reduce_rows_loss(rows, reduction, mean_scale, Tensor(), logits.dtype());

  if (needs_grad({logits, soft_target})) {
    const bool need_x = logits.requires_grad(), need_q = soft_target.requires_grad();
    const double scale = reduction == Reduction::Mean ? mean_scale : 1.0;
    record(op, {logits, soft_target}, {out},
           [x, q, lse, qsum, scale, need_x, need_q](const std::vector<Tensor>& g) {
             Tensor dx = need_x ? Tensor::like(x) : Tensor();
             Tensor dq = need_q ? Tensor::like(q) : Tensor();
             soft_cross_entropy_backward(dx, dq, g[0].contiguous(), scale, x, q, lse, qsum);
             return std::vector<Tensor>{dx, dq};
           });
  }
  return out;
}

}  // namespace unirep
