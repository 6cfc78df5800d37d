// A whole UniRepLKNet-A trained one step under bf16 and f16 autocast against the same step in
// float32: parameters, gradients and running statistics stay float32, the gradients and logits
// are close to float32's, and the running statistics are updated. Then the same on the GPU
// against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "layers/unireplknet/model.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::relative_error;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Spec init, then the other parameters away from their trivial init, as in a network some way
// into training: norm weights U(0.5, 1.5), layer scales U(0.05, 0.15) (1e-6 at init would switch
// the residual branches off and hide their gradients), biases and GRN parameters N(0, 0.1^2).
void randomise(UniRepLKNet& m, Generator& gen) {
  NoGradGuard no_grad;
  m.init_weights(gen);
  for (auto& [name, t] : m.named_parameters()) {
    if (t.dim() == 1 && ends_with(name, ".gamma"))
      t.copy_(Tensor::rand(t.shape(), gen, 0.05, 0.15));
    else if (t.dim() == 1 && ends_with(name, ".weight"))
      t.copy_(Tensor::rand(t.shape(), gen, 0.5, 1.5));
    else if (t.dim() == 1 || name.find("act.1.") != std::string::npos)
      t.copy_(Tensor::randn(t.shape(), gen).mul_(0.1));
  }
}

struct Step {
  Tensor logits, loss;
  NamedTensors params, grads, buffers;
};

// One training forward + backward of UniRepLKNet-A (10 classes) on 4 images of 48 x 48; autocast
// in `amp` (Float32: off). Why not 32 x 32: the last stage is then 1 x 1, its large-kernel convs
// see only their centre tap, and each branch's BN cancels the scale of that one tap, so those
// gradients are near zero by construction and the step is ill-conditioned: there float32 itself
// differs from float64 by 3.3e-5 in the gradient vector (6e-7 at 48 x 48), bf16 autocast by 0.35
// and f16 by 0.04. 48 x 48 gives a 2 x 2 last stage.
Step train_step(DType amp, Device device) {
  UniRepLKNetConfig c = unireplknet_variant("a");
  c.num_classes = 10;
  UniRepLKNet m(c);
  Generator gen(21);
  randomise(m, gen);
  m.to(device);
  Tensor x = Tensor::randn({4, 48, 48, 3}, gen).to(device);
  Tensor target = Tensor::from_vector(std::vector<int64_t>{3, 7, 0, 9}, {4}).to(device);
  Step s;
  {
    AutocastGuard guard(amp == DType::Float32 ? DType::BFloat16 : amp, amp != DType::Float32);
    s.logits = m.forward(x);
    s.loss = cross_entropy(s.logits, target);
  }
  s.loss.backward();
  s.logits = s.logits.cpu();
  for (auto& [name, p] : m.named_parameters()) {
    s.params.emplace_back(name, p);
    s.grads.emplace_back(name, p.grad().cpu());
  }
  for (auto& [name, b] : m.named_buffers())
    if (name.find("running_") != std::string::npos) s.buffers.emplace_back(name, b.cpu());
  return s;
}

// Relative L2 error of `got` against `ref`, the tensors of each taken as one vector, and the worst
// single tensor.
struct VectorError {
  double whole = 0, worst = 0;
  std::string worst_name;
};

VectorError vector_error(const NamedTensors& got, const NamedTensors& ref) {
  VectorError e;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const std::vector<double> a = got[i].second.to_vector<double>(), b = ref[i].second.to_vector<double>();
    double d = 0, r = 0;
    for (size_t j = 0; j < a.size(); ++j) d += (a[j] - b[j]) * (a[j] - b[j]), r += b[j] * b[j];
    diff += d;
    norm += r;
    const double single = r > 0 ? std::sqrt(d / r) : std::sqrt(d);
    if (single > e.worst) e.worst = single, e.worst_name = got[i].first;
  }
  e.whole = std::sqrt(diff / norm);
  return e;
}

struct Errors {
  double logits;
  VectorError grads, buffers;
};

Errors compare(const Step& got, const Step& ref) {
  return {relative_error(got.logits, ref.logits), vector_error(got.grads, ref.grads),
          vector_error(got.buffers, ref.buffers)};
}

// Measured on this machine's CPU, relative L2 errors against the float32 step:
//   bf16: logits 7.5e-3, whole gradient vector 1.3e-2, running stats 8.7e-4
//   f16:  logits 8.5e-4, whole gradient vector 1.7e-3, running stats 1.1e-4
// The gradient errors are 3.4 units of roundoff (2^-8 for bf16, 2^-11 for f16): they scale
// with the 16-bit precision of the activations, as they must if nothing but rounding separates
// the runs (a wrong gradient would leave an error that does not shrink with the precision). The
// bounds leave a factor of about 3. Single tensors can be far worse: gradients that are analytically
// zero in training mode (the bias of a BN followed by another BN) are pure rounding noise in
// either precision; hence a bound on the whole vector, which is what an optimizer step sees.
TEST(AutocastModel, UniRepLKNetAStepMatchesFloat32) {
  const Step ref = train_step(DType::Float32, Device::cpu());
  for (DType amp : {DType::BFloat16, DType::Float16}) {
    const Step s = train_step(amp, Device::cpu());
    const char* name = dtype_name(amp);
    EXPECT_EQ(s.logits.dtype(), amp) << name;
    EXPECT_EQ(s.loss.dtype(), DType::Float32) << name;
    for (size_t i = 0; i < s.params.size(); ++i) {
      EXPECT_EQ(s.params[i].second.dtype(), DType::Float32) << s.params[i].first;
      EXPECT_EQ(s.grads[i].second.dtype(), DType::Float32) << s.grads[i].first;
    }
    ASSERT_EQ(s.buffers.size(), ref.buffers.size());
    for (size_t i = 0; i < s.buffers.size(); ++i) {
      const auto& [bname, b] = s.buffers[i];
      EXPECT_EQ(b.dtype(), DType::Float32) << bname;
      // Updated from the init (mean 0, var 1) by momentum 0.1 times the batch statistics.
      const Tensor init = bname.find("running_mean") != std::string::npos ? Tensor::zeros(b.shape())
                                                                           : Tensor::ones(b.shape());
      EXPECT_GT(relative_error(b, init), 1e-3) << bname;
    }
    const Errors e = compare(s, ref);
    std::printf("[autocast A] %s vs float32: logits %.2e, gradient vector %.2e (worst tensor %.2e, %s), "
                "running stats %.2e; loss %.5f vs %.5f\n",
                name, e.logits, e.grads.whole, e.grads.worst, e.grads.worst_name.c_str(), e.buffers.whole,
                s.loss.item(), ref.loss.item());
    const bool bf16 = amp == DType::BFloat16;
    EXPECT_LE(e.logits, bf16 ? 2e-2 : 2.5e-3) << name;
    EXPECT_LE(e.grads.whole, bf16 ? 4e-2 : 5e-3) << name;
    EXPECT_LE(e.buffers.whole, bf16 ? 3e-3 : 4e-4) << name;
    EXPECT_NEAR(s.loss.item(), ref.loss.item(), (bf16 ? 1e-2 : 1.5e-3) * ref.loss.item()) << name;
  }
}

// The autocast step on the GPU against the same step on the CPU: both run the same casts and
// kernels, so they differ only by summation order, whose float32 differences flip a few 16-bit
// roundings; those compound as in the comparison with float32 above, so the same bounds apply.
TEST(AutocastModel, CudaMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  for (DType amp : {DType::BFloat16, DType::Float16}) {
    const Step cpu = train_step(amp, Device::cpu());
    const Step gpu = train_step(amp, Device::cuda());
    const char* name = dtype_name(amp);
    EXPECT_EQ(gpu.logits.dtype(), amp) << name;
    for (size_t i = 0; i < gpu.grads.size(); ++i) EXPECT_EQ(gpu.grads[i].second.dtype(), DType::Float32);
    const Errors e = compare(gpu, cpu);
    std::printf("[autocast A cuda-vs-cpu] %s: logits %.2e, gradient vector %.2e (worst tensor %.2e, %s), "
                "running stats %.2e\n",
                name, e.logits, e.grads.whole, e.grads.worst, e.grads.worst_name.c_str(), e.buffers.whole);
    const bool bf16 = amp == DType::BFloat16;
    EXPECT_LE(e.logits, bf16 ? 2e-2 : 2.5e-3) << name;
    EXPECT_LE(e.grads.whole, bf16 ? 4e-2 : 5e-3) << name;
    EXPECT_LE(e.buffers.whole, bf16 ? 3e-3 : 4e-4) << name;
  }
}

}  // namespace
}  // namespace unirep
