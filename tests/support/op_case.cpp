#include "tests/support/op_case.h"

#include <cmath>
#include <algorithm>
#include <cstdio>

namespace unirep::testing {

Tensor randn64(Generator& gen, const Shape& shape, bool requires_grad, double scale) {
  Tensor t = Tensor::randn(shape, gen, DType::Float64);
  if (scale != 1.0) {
    NoGradGuard no_grad;
    t = mul_scalar(t, scale);
  }
  if (requires_grad) t.requires_grad_();
  return t;
}

Tensor rand64(Generator& gen, const Shape& shape, double lo, double hi, bool requires_grad) {
  Tensor t = Tensor::rand(shape, gen, lo, hi, DType::Float64);
  if (requires_grad) t.requires_grad_();
  return t;
}

double relative_error(const Tensor& actual, const Tensor& expected) {
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double diff = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(e[i])) return INFINITY;
    diff += (a[i] - e[i]) * (a[i] - e[i]);
    ref += e[i] * e[i];
  }
  if (ref == 0) return std::sqrt(diff);
  return std::sqrt(diff / ref);
}

::testing::AssertionResult check_gradients(const OpCase& c) {
  if (!c.gradcheck) return ::testing::AssertionSuccess();
  Generator gen(42);
  std::vector<Tensor> inputs = c.make_inputs(gen);
  GradcheckResult r = gradcheck(c.fn, inputs, c.gradcheck_options);
  if (r.ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << c.name << ": " << r.message;
}

namespace {

struct RunResult {
  Tensor out;
  std::vector<Tensor> grads;
};

RunResult run_on(const OpCase& c, const std::vector<Tensor>& inputs64, const Tensor& upstream64, DType dtype,
                 Device device) {
  std::vector<Tensor> inputs;
  for (const Tensor& t : inputs64) {
    if (!t.defined()) {
      inputs.push_back(t);
      continue;
    }
    Tensor x = (is_floating(t.dtype()) ? t.detach().to(dtype) : t.detach()).to(device);
    if (t.requires_grad()) x.requires_grad_();
    inputs.push_back(x);
  }
  RunResult r;
  r.out = c.fn(inputs);
  if (r.out.requires_grad()) r.out.backward(upstream64.to(r.out.dtype()).to(device));
  for (size_t i = 0; i < inputs.size(); ++i)
    r.grads.push_back(inputs64[i].defined() && inputs64[i].requires_grad() ? inputs[i].grad() : Tensor());
  return r;
}

}  // namespace

::testing::AssertionResult check_cuda_matches_cpu(const OpCase& c, DType dtype) {
  Generator gen(7);
  std::vector<Tensor> inputs64 = c.make_inputs(gen);
  Tensor probe;
  {
    NoGradGuard no_grad;
    probe = c.fn(inputs64);
  }
  Tensor upstream = Tensor::randn(probe.shape(), gen, DType::Float64);
  RunResult cpu = run_on(c, inputs64, upstream, dtype, Device::cpu());
  RunResult gpu = run_on(c, inputs64, upstream, dtype, Device::cuda(0));
  double tol = dtype == DType::BFloat16 ? c.bf16_tol : c.f32_tol;
  auto fail = ::testing::AssertionFailure();
  bool ok = true;
  if (gpu.out.dtype() != cpu.out.dtype() || gpu.out.shape() != cpu.out.shape() || !gpu.out.is_cuda()) {
    return fail << c.name << ": CUDA output " << gpu.out.str() << " vs CPU output " << cpu.out.str();
  }
  double err = relative_error(gpu.out, cpu.out);
  if (!(err <= tol)) {
    ok = false;
    fail << c.name << " [" << dtype_name(dtype) << "] forward rel. error " << err << " > " << tol << "; ";
  }
  for (size_t i = 0; i < cpu.grads.size(); ++i) {
    if (!cpu.grads[i].defined() && !gpu.grads[i].defined()) continue;
    if (!cpu.grads[i].defined() || !gpu.grads[i].defined()) {
      ok = false;
      fail << c.name << ": gradient of input " << i << " defined on one device only; ";
      continue;
    }
    double gerr = relative_error(gpu.grads[i], cpu.grads[i]);
    if (!(gerr <= tol)) {
      ok = false;
      fail << c.name << " [" << dtype_name(dtype) << "] grad of input " << i << " rel. error " << gerr << " > "
           << tol << "; ";
    }
  }
  double worst_grad = 0;
  for (size_t i = 0; i < cpu.grads.size(); ++i)
    if (cpu.grads[i].defined() && gpu.grads[i].defined())
      worst_grad = std::max(worst_grad, relative_error(gpu.grads[i], cpu.grads[i]));
  std::printf("[cuda-vs-cpu] %-34s %-8s forward %.2e  grads %.2e  (tol %.0e)\n", c.name.c_str(), dtype_name(dtype),
              err, worst_grad, tol);
  return ok ? ::testing::AssertionSuccess() : fail;
}

}  // namespace unirep::testing
