#include "autograd/gradcheck.h"

#include <cmath>
#include <sstream>

#include "autograd/ops.h"
#include "core/generator.h"

namespace unirep {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& fn,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opt) {
  GradcheckResult result;
  auto fail = [&](const std::string& msg) {
    result.ok = false;
    result.message = msg;
    return result;
  };
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad())
      UNIREP_CHECK(t.dtype() == DType::Float64 && !t.is_cuda() && t.is_contiguous(),
                   "gradcheck: differentiable inputs must be contiguous float64 CPU tensors, got ", t.str());

  Tensor out0;
  {
    NoGradGuard no_grad;
    out0 = fn(inputs);
  }
  if (out0.dtype() != DType::Float64) return fail("output dtype is " + std::string(dtype_name(out0.dtype())));
  const int64_t n_out = out0.numel();

  // Numeric Jacobian, column by column: jac[i][j * n_out + k] = d out_k / d input_i[j].
  std::vector<std::vector<double>> jac(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i];
    if (!x.defined() || !x.requires_grad()) continue;
    double* p = x.data<double>();
    jac[i].resize(size_t(x.numel() * n_out));
    for (int64_t j = 0; j < x.numel(); ++j) {
      double orig = p[j];
      NoGradGuard no_grad;
      p[j] = orig + opt.eps;
      std::vector<double> plus = fn(inputs).to_vector<double>();
      p[j] = orig - opt.eps;
      std::vector<double> minus = fn(inputs).to_vector<double>();
      p[j] = orig;
      for (int64_t k = 0; k < n_out; ++k) jac[i][size_t(j * n_out + k)] = (plus[k] - minus[k]) / (2 * opt.eps);
    }
  }

  bool full = n_out <= opt.full_jacobian_max_outputs;
  int64_t n_proj = full ? n_out : opt.random_projections;
  Generator gen(1234);
  for (int64_t pi = 0; pi < n_proj; ++pi) {
    std::vector<double> u(size_t(n_out), 0.0);
    if (full) {
      u[size_t(pi)] = 1.0;
    } else {
      u = Tensor::randn({n_out}, gen, DType::Float64).to_vector<double>();
    }
    for (const Tensor& t : inputs)
      if (t.defined() && t.requires_grad()) t.set_grad(Tensor());
    Tensor out = fn(inputs);
    if (!out.requires_grad()) return fail("output does not require grad (no graph was recorded)");
    out.backward(Tensor::from_vector(u, out.shape()));
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Tensor& x = inputs[i];
      if (!x.defined() || !x.requires_grad()) continue;
      Tensor g = x.grad();
      std::vector<double> analytic(size_t(x.numel()), 0.0);
      if (g.defined()) {
        if (g.shape() != x.shape())
          return fail(detail::concat("input ", i, ": gradient shape ", shape_str(g.shape()), " != input shape ",
                                     shape_str(x.shape())));
        analytic = g.to_vector<double>();
      }
      for (int64_t j = 0; j < x.numel(); ++j) {
        double numeric = 0;
        for (int64_t k = 0; k < n_out; ++k) numeric += u[size_t(k)] * jac[i][size_t(j * n_out + k)];
        double a = analytic[size_t(j)];
        if (!(std::fabs(a - numeric) <= opt.atol + opt.rtol * std::fabs(numeric)))
          return fail(detail::concat("input ", i, " ", x.str(), " element ", j, ", ",
                                     full ? "output element " : "random projection ", pi, ": analytic ", a,
                                     " vs numeric ", numeric));
      }
    }
  }
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) t.set_grad(Tensor());
  return result;
}

}  // namespace unirep
