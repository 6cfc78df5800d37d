// The fused batch-norm branch sum, CPU reference kernels and the checks shared with CUDA (the math
// is in branch_norm.h). Per-(branch, channel) coefficients are folded first; rows are walked in
// parallel, and each element adds its branches in branch order, so the result does not depend on
// the thread count.
#include "core/ops/branch_norm.h"

#include <algorithm>
#include <string>

#include "core/parallel.h"

namespace unirep {

namespace {

const char* kApply = "batch_norm_branch_sum";
const char* kDx = "batch_norm_branch_sum_backward";

std::string describe(const Tensor& t) { return t.defined() ? t.str() : std::string("undefined"); }

void check_rows(const char* op, const char* what, const Tensor& t, const Tensor& ref, NormShape s) {
  UNIREP_CHECK(t.defined() && t.is_contiguous() && t.numel() == s.numel() && t.dtype() == ref.dtype() &&
                   t.device() == ref.device(),
               op, ": ", what, " must be a contiguous ", dtype_name(ref.dtype()), " tensor of ", s.numel(),
               " elements ([rows, C] = [", s.outer, ", ", s.channels, "]) on ", ref.str(), "'s device, got ",
               describe(t));
}

void check_per_channel(const char* op, const char* what, const Tensor& t, DType dtype, int64_t numel,
                       const Tensor& ref) {
  UNIREP_CHECK(t.defined() && t.is_contiguous() && t.dtype() == dtype && t.numel() == numel &&
                   t.device() == ref.device(),
               op, ": ", what, " must be a contiguous ", dtype_name(dtype), " tensor of ", numel, " values on ",
               ref.str(), "'s device, got ", describe(t));
}

// Checks the branches against `ref` (y or dy) and returns the dtype of their parameters.
DType check_branches(const char* op, const Tensor& ref, const std::vector<NormBranch>& branches, NormShape s) {
  UNIREP_CHECK(!branches.empty() && branches.size() <= size_t(kMaxNormBranches), op, ": expected 1 to ",
               kMaxNormBranches, " branches, got ", branches.size());
  UNIREP_CHECK(s.inner == 1, op, ": channels-last data only (inner = 1), got inner = ", s.inner);
  UNIREP_CHECK(is_floating(ref.dtype()), op, ": expected floating tensors, got ", ref.str());
  const DType stat = norm_stat_dtype(ref.dtype());
  std::vector<const Tensor*> params;
  for (size_t i = 0; i < branches.size(); ++i) {
    const NormBranch& b = branches[i];
    const std::string tag = "branch " + std::to_string(i) + " ";
    check_rows(op, (tag + "x").c_str(), b.x, ref, s);
    check_per_channel(op, (tag + "mean").c_str(), b.mean, stat, s.channels, ref);
    check_per_channel(op, (tag + "invstd").c_str(), b.invstd, stat, s.channels, ref);
    for (const Tensor* p : {&b.weight, &b.bias}) {
      if (!p->defined()) continue;
      check_per_channel(op, (tag + (p == &b.weight ? "weight" : "bias")).c_str(), *p, p->dtype(), s.channels, ref);
      params.push_back(p);
    }
  }
  if (params.empty()) return ref.dtype();
  for (const Tensor* p : params)
    UNIREP_CHECK(p->dtype() == params.front()->dtype(), op, ": every branch's weight and bias must share one dtype, got ",
                 dtype_name(params.front()->dtype()), " and ", dtype_name(p->dtype()));
  return norm_param_dtype(op, ref.dtype(), {params.front()});
}

template <class T> const T* opt_data(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

template <class T, class P> void apply_cpu(const Tensor& y_t, const std::vector<NormBranch>& branches, NormShape s) {
  using acc = acc_t<T>;
  const int64_t C = s.channels, B = int64_t(branches.size());
  std::vector<acc> mean(size_t(B * C)), scale(size_t(B * C)), shift(size_t(B * C));
  std::vector<const T*> x(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    const NormBranch& b = branches[size_t(i)];
    const acc* m = b.mean.data<acc>();
    const acc* inv = b.invstd.data<acc>();
    const P* w = opt_data<P>(b.weight);
    const P* bias = opt_data<P>(b.bias);
    for (int64_t c = 0; c < C; ++c) {
      mean[size_t(i * C + c)] = m[c];
      scale[size_t(i * C + c)] = inv[c] * (w ? static_cast<acc>(w[c]) : acc(1));
      shift[size_t(i * C + c)] = bias ? static_cast<acc>(bias[c]) : acc(0);
    }
    x[size_t(i)] = b.x.data<T>();
  }
  T* y = y_t.data<T>();
  parallel_for(0, s.outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(B * C, 1)), [&](int64_t rb, int64_t re) {
    for (int64_t r = rb; r < re; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const int64_t e = r * C + c;
        acc t = 0;
        for (int64_t i = 0; i < B; ++i) {
          const size_t k = size_t(i * C + c);
          t += (static_cast<acc>(x[size_t(i)][e]) - mean[k]) * scale[k] + shift[k];
        }
        y[e] = static_cast<T>(t);
      }
  });
}

template <class T, class P>
void dx_cpu(const std::vector<Tensor>& dxs, const Tensor& dy_t, const std::vector<NormBranch>& branches,
            const Tensor& grad_sums, const Tensor& count, NormShape s) {
  using acc = acc_t<T>;
  const int64_t C = s.channels, B = int64_t(branches.size());
  const acc n = count.defined() ? acc(count.data<double>()[0]) : acc(s.outer);
  const acc* gs = opt_data<acc>(grad_sums);
  // dx = k (dy - a - (x - mean) q): k = w invstd, a = sum(dy) / N, q = invstd^2 sum(dy (x - mean)) / N.
  std::vector<acc> mean(size_t(B * C)), k(size_t(B * C)), a(size_t(B * C), acc(0)), q(size_t(B * C), acc(0));
  for (int64_t i = 0; i < B; ++i) {
    const NormBranch& b = branches[size_t(i)];
    const acc* m = b.mean.data<acc>();
    const acc* inv = b.invstd.data<acc>();
    const P* w = opt_data<P>(b.weight);
    for (int64_t c = 0; c < C; ++c) {
      const size_t j = size_t(i * C + c);
      mean[j] = m[c];
      k[j] = inv[c] * (w ? static_cast<acc>(w[c]) : acc(1));
      if (gs) {
        a[j] = gs[i * 2 * C + c] / n;
        q[j] = inv[c] * inv[c] * gs[i * 2 * C + C + c] / n;
      }
    }
  }
  const T* dy = dy_t.data<T>();
  parallel_for(0, s.outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(B * C, 1)), [&](int64_t rb, int64_t re) {
    for (int64_t i = 0; i < B; ++i) {
      if (!dxs[size_t(i)].defined()) continue;
      const T* x = branches[size_t(i)].x.data<T>();
      T* dx = dxs[size_t(i)].data<T>();
      const acc *mi = mean.data() + i * C, *ki = k.data() + i * C, *ai = a.data() + i * C, *qi = q.data() + i * C;
      for (int64_t r = rb; r < re; ++r)
        for (int64_t c = 0, e = r * C; c < C; ++c, ++e)
          dx[e] = static_cast<T>(ki[c] * (static_cast<acc>(dy[e]) - ai[c] - (static_cast<acc>(x[e]) - mi[c]) * qi[c]));
    }
  });
}

}  // namespace

void batch_norm_branch_sum_apply(const Tensor& y, const std::vector<NormBranch>& branches, NormShape s) {
  UNIREP_CHECK(y.defined(), kApply, ": output is undefined");
  check_rows(kApply, "output", y, y, s);
  const DType pdt = check_branches(kApply, y, branches, s);
  if (s.numel() == 0) return;
  if (y.is_cuda()) return cuda::batch_norm_branch_sum_apply(y, branches, s);
  UNIREP_DISPATCH_FLOATING(y.dtype(), kApply, [&] {
    using T = scalar_t;
    with_norm_param<T>(pdt, [&](auto p) { apply_cpu<T, typename decltype(p)::type>(y, branches, s); });
  });
}

void batch_norm_branch_sum_dx(const std::vector<Tensor>& dxs, const Tensor& dy, const std::vector<NormBranch>& branches,
                              const Tensor& grad_sums, const Tensor& count, NormShape s) {
  UNIREP_CHECK(dy.defined(), kDx, ": dy is undefined");
  check_rows(kDx, "dy", dy, dy, s);
  const DType pdt = check_branches(kDx, dy, branches, s);
  UNIREP_CHECK(dxs.size() == branches.size(), kDx, ": ", branches.size(), " branches but ", dxs.size(),
               " input gradients");
  for (size_t i = 0; i < dxs.size(); ++i)
    if (dxs[i].defined()) check_rows(kDx, ("branch " + std::to_string(i) + " dx").c_str(), dxs[i], dy, s);
  if (grad_sums.defined())
    check_per_channel(kDx, "grad_sums", grad_sums, norm_stat_dtype(dy.dtype()),
                      int64_t(branches.size()) * 2 * s.channels, dy);
  if (count.defined()) check_per_channel(kDx, "count", count, DType::Float64, 1, dy);
  if (s.numel() == 0) return;
  if (dy.is_cuda()) return cuda::batch_norm_branch_sum_dx(dxs, dy, branches, grad_sums, count, s);
  UNIREP_DISPATCH_FLOATING(dy.dtype(), kDx, [&] {
    using T = scalar_t;
    with_norm_param<T>(pdt, [&](auto p) {
      dx_cpu<T, typename decltype(p)::type>(dxs, dy, branches, grad_sums, count, s);
    });
  });
}

}  // namespace unirep
