// batch_norm_branch_sum (autograd/functions/branch_norm.h, core/ops/branch_norm.h): gradcheck and
// CUDA-vs-CPU over branch counts, odd and vector-width channel counts, eval; the op against the
// unfused sum of batch_norms (outputs, gradients, running stats), the BatchNorm2d-level function
// against the modules' own forwards over several steps and in eval, bf16 inputs with float32
// parameters, the CUDA kernels on unaligned tensors and a device-side count, and bad input.
#include <string>

#include "core/ops/branch_norm.h"
#include "layers/basic.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::OpCase;
using testing::rand64;
using testing::randn64;
using testing::relative_error;

struct BranchSpec {
  Shape shape;
  int branches = 6;
  bool training = true;
  bool affine = true;
};

// Inputs: x_0..x_{B-1}, weight_0.., bias_0.., running_mean_0.., running_var_0.. (eval only).
OpCase branch_case(std::string name, BranchSpec spec, bool gradcheck = true) {
  const size_t B = size_t(spec.branches);
  OpCase c{name,
           [spec, B](Generator& g) {
             const int64_t C = spec.shape.back();
             std::vector<Tensor> in;
             for (size_t i = 0; i < B; ++i) {
               NoGradGuard no_grad;  // shifted and scaled per branch: statistics far from (0, 1)
               in.push_back(add_scalar(randn64(g, spec.shape, false, 1.0 + double(i)), 0.3 * double(i))
                                .detach()
                                .requires_grad_());
             }
             for (size_t i = 0; i < B; ++i) in.push_back(spec.affine ? rand64(g, {C}, 0.5, 1.5) : Tensor());
             for (size_t i = 0; i < B; ++i) in.push_back(spec.affine ? randn64(g, {C}) : Tensor());
             if (!spec.training) {
               for (size_t i = 0; i < B; ++i) in.push_back(randn64(g, {C}, false));
               for (size_t i = 0; i < B; ++i) in.push_back(rand64(g, {C}, 0.5, 2.0, false));
             }
             return in;
           },
           [spec, B](const std::vector<Tensor>& in) {
             std::vector<Tensor> xs(in.begin(), in.begin() + long(B));
             std::vector<BatchNormBranch> br(B);
             for (size_t i = 0; i < B; ++i) {
               br[i].weight = in[B + i];
               br[i].bias = in[2 * B + i];
               if (!spec.training) {
                 br[i].running_mean = in[3 * B + i];
                 br[i].running_var = in[4 * B + i];
               }
             }
             return batch_norm_branch_sum(xs, br, spec.training);
           }};
  c.gradcheck = gradcheck;
  return c;
}

std::vector<OpCase> branch_norm_cases() {
  return {
      branch_case("six branches [2,3,3,8]", {{2, 3, 3, 8}}),
      branch_case("three branches odd C [3,2,2,5]", {{3, 2, 2, 5}, 3}),
      branch_case("one branch [5,4]", {{5, 4}, 1}),
      branch_case("eight branches [2,2,2,4]", {{2, 2, 2, 4}, 8}),
      branch_case("affine off [3,2,2,3]", {{3, 2, 2, 3}, 2, true, false}),
      branch_case("eval six branches [2,2,3,8]", {{2, 2, 3, 8}, 6, false}),
      // Sized for the GPU: vector loads (C % 8 == 0), f32-only vectors (C = 20), odd C (scalar),
      // several column tiles per row (C = 1024, eight branches), eval.
      branch_case("six branches [4,7,7,160]", {{4, 7, 7, 160}}, false),
      branch_case("six branches [3,5,5,20]", {{3, 5, 5, 20}}, false),
      branch_case("six branches [4,5,5,643]", {{4, 5, 5, 643}}, false),
      branch_case("eight branches [2,4,4,1024]", {{2, 4, 4, 1024}, 8}, false),
      branch_case("eval six branches [4,7,7,64]", {{4, 7, 7, 64}, 6, false}, false),
  };
}

UNIREP_OP_CASE_TESTS(BranchNorm, branch_norm_cases)

// The unfused composition: batch_norm per branch, then the adds.
Tensor unfused(const std::vector<Tensor>& xs, const std::vector<BatchNormBranch>& br, bool training) {
  Tensor out;
  for (size_t i = 0; i < xs.size(); ++i) {
    Tensor y = batch_norm(xs[i], br[i].weight, br[i].bias, br[i].running_mean, br[i].running_var, training,
                          br[i].momentum, br[i].eps);
    out = i == 0 ? y : add(out, y);
  }
  return out;
}

::testing::AssertionResult close(const std::string& what, const Tensor& a, const Tensor& b, double tol) {
  if (!a.defined() || !b.defined() || a.shape() != b.shape())
    return ::testing::AssertionFailure() << what << ": " << (a.defined() ? a.str() : "undefined") << " vs "
                                         << (b.defined() ? b.str() : "undefined");
  const double err = relative_error(a.to(DType::Float64), b.to(DType::Float64));
  if (err <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": relative error " << err << " > " << tol;
}

struct Problem {
  std::vector<Tensor> xs;
  std::vector<BatchNormBranch> br;
};

// B branches of float64 data, parameters and running stats (different momentum/eps per branch).
Problem make_problem(Generator& g, const Shape& shape, int B) {
  Problem p;
  const int64_t C = shape.back();
  for (int i = 0; i < B; ++i) {
    p.xs.push_back(add_scalar(Tensor::randn(shape, g, DType::Float64), 0.5 * i).requires_grad_());
    BatchNormBranch b;
    b.weight = rand64(g, {C}, 0.5, 1.5);
    b.bias = randn64(g, {C});
    b.running_mean = randn64(g, {C}, false);
    b.running_var = rand64(g, {C}, 0.5, 2.0, false);
    b.momentum = 0.1 + 0.05 * i;
    b.eps = 1e-5 * (i + 1);
    p.br.push_back(b);
  }
  return p;
}

Problem clone(const Problem& p) {
  Problem q;
  for (const Tensor& x : p.xs) q.xs.push_back(x.detach().clone().requires_grad_());
  for (const BatchNormBranch& b : p.br)
    q.br.push_back({b.weight.detach().clone().requires_grad_(), b.bias.detach().clone().requires_grad_(),
                    b.running_mean.clone(), b.running_var.clone(), b.momentum, b.eps});
  return q;
}

void expect_same_state(const Problem& fused, const Problem& ref, double tol) {
  for (size_t i = 0; i < fused.xs.size(); ++i) {
    const std::string tag = "branch " + std::to_string(i) + " ";
    EXPECT_TRUE(close(tag + "x.grad", fused.xs[i].grad(), ref.xs[i].grad(), tol));
    EXPECT_TRUE(close(tag + "weight.grad", fused.br[i].weight.grad(), ref.br[i].weight.grad(), tol));
    EXPECT_TRUE(close(tag + "bias.grad", fused.br[i].bias.grad(), ref.br[i].bias.grad(), tol));
    EXPECT_TRUE(close(tag + "running_mean", fused.br[i].running_mean, ref.br[i].running_mean, tol));
    EXPECT_TRUE(close(tag + "running_var", fused.br[i].running_var, ref.br[i].running_var, tol));
  }
}

// Training and eval, forward and every gradient, and the running stats moved by the training call.
TEST(BranchNorm, MatchesUnfusedFloat64) {
  Generator g(11);
  for (bool training : {true, false}) {
    const Problem ref = make_problem(g, {3, 4, 5, 7}, 6), fused = clone(ref);
    const Tensor u = Tensor::randn({3, 4, 5, 7}, g, DType::Float64);
    const Tensor y_ref = unfused(ref.xs, ref.br, training), y = batch_norm_branch_sum(fused.xs, fused.br, training);
    EXPECT_TRUE(close(training ? "training forward" : "eval forward", y, y_ref, 1e-13));
    sum(mul(y_ref, u)).backward();
    sum(mul(y, u)).backward();
    expect_same_state(fused, ref, 1e-12);
  }
}

// bf16 branches with float32 parameters and running stats (autocast): statistics match exactly
// (the same kernels), the output and input gradients within bf16 rounding of the unfused path's,
// which rounds every BN output and every partial sum.
TEST(BranchNorm, BFloat16InputFloat32ParametersMatchUnfused) {
  Generator g(12);
  Problem ref = make_problem(g, {4, 5, 5, 16}, 6);
  for (Tensor& x : ref.xs) x = x.detach().to(DType::BFloat16).requires_grad_();
  for (BatchNormBranch& b : ref.br) {
    b.weight = b.weight.detach().to(DType::Float32).requires_grad_();
    b.bias = b.bias.detach().to(DType::Float32).requires_grad_();
    b.running_mean = b.running_mean.to(DType::Float32);
    b.running_var = b.running_var.to(DType::Float32);
  }
  const Problem fused = clone(ref);
  const Tensor u = Tensor::randn({4, 5, 5, 16}, g, DType::BFloat16);
  const Tensor y_ref = unfused(ref.xs, ref.br, true), y = batch_norm_branch_sum(fused.xs, fused.br, true);
  EXPECT_EQ(y.dtype(), DType::BFloat16);
  EXPECT_TRUE(close("forward", y, y_ref, 1e-2));
  sum(mul(y_ref, u)).backward();
  sum(mul(y, u)).backward();
  EXPECT_EQ(fused.xs[0].grad().dtype(), DType::BFloat16);
  EXPECT_EQ(fused.br[0].weight.grad().dtype(), DType::Float32);
  expect_same_state(fused, ref, 1e-2);
  for (size_t i = 0; i < ref.br.size(); ++i)
    EXPECT_TRUE(close("running_var exactly", fused.br[i].running_var, ref.br[i].running_var, 0.0));
}

// The BatchNorm2d-level function against each module's own forward and the adds: three training
// steps (outputs, gradients accumulated over the steps, running stats, num_batches_tracked), then eval.
TEST(BranchNorm, BatchNorm2dStepsAndEvalMatchUnfused) {
  Generator g(13);
  const int64_t C = 6;
  const Shape shape{3, 4, 4, C};
  std::vector<std::shared_ptr<BatchNorm2d>> ref, fused;
  for (int i = 0; i < 6; ++i) {
    ref.push_back(std::make_shared<BatchNorm2d>(C, 1e-5 * (i + 1), 0.1 + 0.1 * i));
    ref.back()->to(DType::Float64);
    NoGradGuard no_grad;
    ref.back()->weight.copy_(rand64(g, {C}, 0.5, 1.5, false));
    ref.back()->bias.copy_(randn64(g, {C}, false));
    fused.push_back(std::make_shared<BatchNorm2d>(C, 1e-5 * (i + 1), 0.1 + 0.1 * i));
    fused.back()->to(DType::Float64);
    fused.back()->load_state_dict(ref.back()->state_dict());
  }
  std::vector<BatchNorm2d*> bns;
  for (auto& bn : fused) bns.push_back(bn.get());
  for (int step = 0; step < 4; ++step) {
    const bool training = step < 3;
    for (int i = 0; i < 6; ++i) {
      ref[size_t(i)]->train(training);
      fused[size_t(i)]->train(training);
    }
    std::vector<Tensor> xs_ref, xs;
    for (int i = 0; i < 6; ++i) {
      xs_ref.push_back(add_scalar(Tensor::randn(shape, g, DType::Float64), double(i)).requires_grad_());
      xs.push_back(xs_ref.back().detach().clone().requires_grad_());
    }
    Tensor y_ref;
    for (int i = 0; i < 6; ++i) {
      Tensor y = ref[size_t(i)]->forward(xs_ref[size_t(i)]);
      y_ref = i == 0 ? y : add(y_ref, y);
    }
    const Tensor y = batch_norm_branch_sum(xs, bns);
    const std::string tag = "step " + std::to_string(step) + " ";
    EXPECT_TRUE(close(tag + "forward", y, y_ref, 1e-13));
    const Tensor u = Tensor::randn(shape, g, DType::Float64);
    sum(mul(y_ref, u)).backward();
    sum(mul(y, u)).backward();
    for (size_t i = 0; i < 6; ++i) {
      const std::string t = tag + "branch " + std::to_string(i) + " ";
      EXPECT_TRUE(close(t + "x.grad", xs[i].grad(), xs_ref[i].grad(), 1e-12));
      EXPECT_TRUE(close(t + "weight.grad", fused[i]->weight.grad(), ref[i]->weight.grad(), 1e-12));
      EXPECT_TRUE(close(t + "bias.grad", fused[i]->bias.grad(), ref[i]->bias.grad(), 1e-12));
      EXPECT_TRUE(close(t + "running_mean", fused[i]->running_mean, ref[i]->running_mean, 1e-14));
      EXPECT_TRUE(close(t + "running_var", fused[i]->running_var, ref[i]->running_var, 1e-14));
      EXPECT_EQ(fused[i]->num_batches_tracked.item(), ref[i]->num_batches_tracked.item()) << t;
      EXPECT_EQ(fused[i]->num_batches_tracked.item(), double(std::min(step + 1, 3))) << t;
    }
  }
}

// Kernel level on the GPU against the CPU: tensors 4 bytes off 16-byte alignment (the scalar
// path even where C allows vectors), bf16 with float32 parameters, a device-side count, an
// undefined dx.
TEST(BranchNorm, CudaKernelsUnalignedMixedMatchCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator g(14);
  const int64_t rows = 150, C = 64, B = 5;
  const NormShape s{rows, C, 1};
  for (DType dtype : {DType::Float32, DType::BFloat16}) {
    for (bool aligned : {true, false}) {
      // A contiguous [rows, C] tensor on `device` whose data starts `aligned ? 0 : 2` elements into
      // its storage (bf16: 4 bytes, f32: 8 bytes, neither a multiple of 16).
      auto place = [&](const Tensor& src, Device device) {
        const int64_t off = aligned ? 0 : 2;
        Tensor buf = Tensor::zeros({src.numel() + off}, src.dtype(), device);
        Tensor view = buf.slice(0, off, off + src.numel()).reshape(src.shape());
        view.copy_(src);
        return view;
      };
      std::vector<NormBranch> cpu(B), gpu(B);
      std::vector<Tensor> dx_cpu(B), dx_gpu(B);
      Tensor grad_sums = randn64(g, {B, 2 * C}, false).to(DType::Float32);
      Tensor count = Tensor::full({1}, 300.0, DType::Float64);
      for (int64_t i = 0; i < B; ++i) {
        NormBranch& c = cpu[size_t(i)];
        c.x = randn64(g, {rows, C}, false).to(dtype);
        c.mean = randn64(g, {C}, false, 0.1).to(DType::Float32);
        c.invstd = rand64(g, {C}, 0.5, 2.0, false).to(DType::Float32);
        c.weight = rand64(g, {C}, 0.5, 1.5, false).to(DType::Float32);
        c.bias = randn64(g, {C}, false).to(DType::Float32);
        gpu[size_t(i)] = {place(c.x, Device::cuda(0)), c.mean.to(Device::cuda(0)), c.invstd.to(Device::cuda(0)),
                          c.weight.to(Device::cuda(0)), c.bias.to(Device::cuda(0))};
        if (i != 2) {  // branch 2's gradient not wanted
          dx_cpu[size_t(i)] = Tensor::empty({rows, C}, dtype);
          dx_gpu[size_t(i)] = place(dx_cpu[size_t(i)], Device::cuda(0));
        }
      }
      Tensor dy = randn64(g, {rows, C}, false).to(dtype);
      Tensor y_cpu = Tensor::empty({rows, C}, dtype), y_gpu = place(y_cpu, Device::cuda(0));
      batch_norm_branch_sum_apply(y_cpu, cpu, s);
      batch_norm_branch_sum_apply(y_gpu, gpu, s);
      const std::string tag = std::string(dtype_name(dtype)) + (aligned ? " aligned " : " unaligned ");
      const double tol = dtype == DType::BFloat16 ? 1e-2 : 1e-6;
      EXPECT_TRUE(close(tag + "forward", y_gpu.to(Device::cpu()), y_cpu, tol));
      for (bool training : {true, false}) {
        batch_norm_branch_sum_dx(dx_cpu, dy, cpu, training ? grad_sums : Tensor(), count, s);
        batch_norm_branch_sum_dx(dx_gpu, place(dy, Device::cuda(0)), gpu,
                                 training ? grad_sums.to(Device::cuda(0)) : Tensor(), count.to(Device::cuda(0)), s);
        for (int64_t i = 0; i < B; ++i) {
          if (i == 2) continue;
          EXPECT_TRUE(close(tag + (training ? "training" : "eval") + " dx " + std::to_string(i),
                            dx_gpu[size_t(i)].to(Device::cpu()), dx_cpu[size_t(i)], tol));
        }
      }
    }
  }
}

TEST(BranchNorm, BadInput) {
  Generator g(15);
  auto x = [&](const Shape& s) { return Tensor::randn(s, g); };
  const BatchNormBranch plain;
  EXPECT_THROW(batch_norm_branch_sum({}, {}, true), Error);
  EXPECT_THROW(batch_norm_branch_sum(std::vector<Tensor>(9, x({4, 3})), std::vector<BatchNormBranch>(9), true),
               Error);
  EXPECT_THROW(batch_norm_branch_sum({x({4, 3}), x({4, 3})}, {plain}, true), Error);        // counts differ
  EXPECT_THROW(batch_norm_branch_sum({x({4, 3}), x({4, 4})}, {plain, plain}, true), Error);  // shapes differ
  EXPECT_THROW(batch_norm_branch_sum({x({4, 3}), x({4, 3}).to(DType::Float64)}, {plain, plain}, true), Error);
  EXPECT_THROW(batch_norm_branch_sum({x({1, 3})}, {plain}, true), Error);  // one value per channel
  EXPECT_THROW(batch_norm_branch_sum({x({4, 3})}, {plain}, false), Error);  // eval without running stats
  BatchNormBranch wrong_c;
  wrong_c.weight = Tensor::ones({4});
  EXPECT_THROW(batch_norm_branch_sum({x({4, 3})}, {wrong_c}, true), Error);
  BatchNormBranch f32, f64;
  f32.weight = Tensor::ones({3});
  f64.weight = Tensor::ones({3}, DType::Float64);
  EXPECT_THROW(batch_norm_branch_sum({x({4, 3}), x({4, 3})}, {f32, f64}, true), Error);  // param dtypes differ
  BatchNorm2d a(3), b(3);
  b.eval();
  EXPECT_THROW(batch_norm_branch_sum({x({4, 3}), x({4, 3})}, {&a, &b}), Error);  // training modes differ
  EXPECT_EQ(a.num_batches_tracked.item(), 0.0) << "a rejected call counts no batch";
}

}  // namespace
}  // namespace unirep
