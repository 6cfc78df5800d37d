// The differentiable cast (values, gradients, gradcheck, CUDA vs CPU) and the autocast policy of
// autograd/autocast.h op by op: what each op runs in, where gradients arrive and in which dtype,
// that backward and checkpoint recomputes follow the forward's casts, and that outside a region
// nothing changes.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "autograd/checkpoint.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using testing::relative_error;

Tensor vec(std::vector<double> v, DType dtype = DType::Float64) {
  return Tensor::from_vector(v, {int64_t(v.size())}).to(dtype);
}

Tensor leaf(Generator& gen, const Shape& shape, DType dtype = DType::Float32, double scale = 1.0) {
  Tensor t = Tensor::randn(shape, gen, DType::Float64);
  t.mul_(scale);
  return t.to(dtype).requires_grad_();
}

// ---------------------------------------------------------------- cast

TEST(Cast, RoundsToNearestEvenIntoBFloat16AndFloat16) {
  const double u7 = std::ldexp(1.0, -7), u8 = std::ldexp(1.0, -8);
  // bf16 keeps 7 fraction bits: 1 + 2^-8 is a tie (to 1), 1 + 3 * 2^-8 a tie to the even 1 + 2^-6,
  // anything above the tie rounds up.
  Tensor b = cast(vec({1 + u8, 1 + 3 * u8, 1 + u8 + std::ldexp(1.0, -20), -2.5, 3e38}), DType::BFloat16);
  EXPECT_EQ(b.dtype(), DType::BFloat16);
  EXPECT_EQ(b.to_vector<double>(), (std::vector<double>{1, 1 + 2 * u7, 1 + u7, -2.5, 3.00405527047391e+38}));
  // f16 keeps 10 fraction bits; 7e4 overflows to inf; 1e-6 is subnormal: 17 units of 2^-24.
  const double h11 = std::ldexp(1.0, -11);
  Tensor h = cast(vec({1 + h11, 1 + 3 * h11, 7e4, 1e-6}), DType::Float16);
  std::vector<double> hv = h.to_vector<double>();
  EXPECT_EQ(hv[0], 1.0);
  EXPECT_EQ(hv[1], 1 + std::ldexp(1.0, -9));
  EXPECT_TRUE(std::isinf(hv[2]));
  EXPECT_EQ(hv[3], 17 * std::ldexp(1.0, -24));
}

TEST(Cast, SameDtypeIsTheSameTensor) {
  Tensor x = vec({1, 2}, DType::Float32).requires_grad_();
  Tensor y = cast(x, DType::Float32);
  EXPECT_TRUE(y.same(x));
  EXPECT_FALSE(y.grad_fn());
  // A strided input is converted element by element, not by storage order.
  Tensor m = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).transpose(0, 1);
  EXPECT_EQ(cast(m, DType::BFloat16).to_vector<double>(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  EXPECT_THROW(cast(Tensor(), DType::Float32), Error);
}

TEST(Cast, GradientComesBackInTheSourceDtype) {
  // y = bf16(x); d sum(y^2) / dx = 2 y, computed in bf16 (exact: doubling) and cast back to float32.
  Tensor x = vec({1.3, -0.7, 2.01}, DType::Float32).requires_grad_();
  Tensor y = cast(x, DType::BFloat16);
  ASSERT_TRUE(y.grad_fn());
  EXPECT_EQ(y.grad_fn()->name(), "cast");
  sum(mul(y, y)).backward();
  ASSERT_EQ(x.grad().dtype(), DType::Float32);
  std::vector<double> yv = y.to_vector<double>(), gv = x.grad().to_vector<double>();
  for (size_t i = 0; i < yv.size(); ++i) EXPECT_EQ(gv[i], 2 * yv[i]);
  // Integer targets carry no gradient.
  Tensor i = cast(x, DType::Int64);
  EXPECT_FALSE(i.requires_grad());
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 2}));
}

TEST(Cast, GradcheckThroughFloat32RoundTrips) {
  // The function is bilinear, so central differences are exact up to the float32 rounding of the
  // values, which eps = 1e-2 makes negligible (about 6e-8 / 2e-2 = 3e-6 per entry).
  GradcheckOptions opt;
  opt.eps = 1e-2;
  Generator gen(5);
  std::vector<Tensor> in{testing::randn64(gen, {3, 4}), testing::randn64(gen, {4})};
  auto fn = [](const std::vector<Tensor>& v) {
    return cast(mul(cast(v[0], DType::Float32), cast(v[1], DType::Float32)), DType::Float64);
  };
  GradcheckResult r = gradcheck(fn, in, opt);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Cast, CudaMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator gen(6);
  Tensor x64 = Tensor::randn({257, 3}, gen, DType::Float64);
  Tensor up64 = Tensor::randn({257, 3}, gen, DType::Float64);
  for (DType from : {DType::Float32, DType::BFloat16, DType::Float16})
    for (DType to : {DType::Float32, DType::BFloat16, DType::Float16, DType::Float64}) {
      if (from == to) continue;
      auto run = [&](Device d) {
        Tensor x = x64.to(from).to(d).requires_grad_();
        Tensor y = cast(x, to);
        y.backward(up64.to(to).to(d));
        return std::make_pair(y.cpu(), x.grad().cpu());
      };
      auto [cy, cg] = run(Device::cpu());
      auto [gy, gg] = run(Device::cuda());
      EXPECT_EQ(gy.dtype(), to);
      EXPECT_EQ(gg.dtype(), from);
      EXPECT_EQ(gy.to_vector<double>(), cy.to_vector<double>()) << dtype_name(from) << " -> " << dtype_name(to);
      EXPECT_EQ(gg.to_vector<double>(), cg.to_vector<double>()) << dtype_name(from) << " -> " << dtype_name(to);
    }
}

// ---------------------------------------------------------------- autocast state

TEST(Autocast, GuardsNestAndRestore) {
  EXPECT_FALSE(autocast_enabled());
  {
    AutocastGuard outer(DType::Float16);
    EXPECT_TRUE(autocast_enabled());
    EXPECT_EQ(autocast_dtype(), DType::Float16);
    {
      AutocastGuard off(DType::BFloat16, false);
      EXPECT_FALSE(autocast_enabled());
    }
    {
      AutocastGuard inner(DType::BFloat16);
      EXPECT_EQ(autocast_dtype(), DType::BFloat16);
    }
    EXPECT_TRUE(autocast_enabled());
    EXPECT_EQ(autocast_dtype(), DType::Float16);
  }
  EXPECT_FALSE(autocast_enabled());
  EXPECT_THROW({ AutocastGuard bad(DType::Float64); }, Error);
  EXPECT_NO_THROW({ AutocastGuard off(DType::Float64, false); });
  EXPECT_FALSE(autocast_enabled());
}

// ---------------------------------------------------------------- the policy, op by op

// conv2d / linear / matmul: inputs and float32 parameters cast down; the result equals the op run
// on the pre-cast operands without autocast (the same kernels), and the float32 leaves get float32
// gradients equal to the low-precision ones converted.
TEST(Autocast, MatrixOpsRunInTheAutocastDtypeWithFloat32Gradients) {
  for (DType low : {DType::BFloat16, DType::Float16}) {
    Generator gen(11);
    Tensor x = leaf(gen, {2, 5, 5, 4}), w = leaf(gen, {6, 4, 3, 3}, DType::Float32, 0.3), b = leaf(gen, {6});
    Tensor lw = leaf(gen, {3, 6}, DType::Float32, 0.3), lb = leaf(gen, {3}), m = leaf(gen, {3, 2});
    Conv2dParams p{1, 1, 1, 1};
    auto net = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb, const Tensor& lww, const Tensor& lbb,
                   const Tensor& mm) { return matmul(linear(conv2d(xx, ww, bb, p), lww, lbb), mm); };
    Tensor y;
    {
      AutocastGuard amp(low);
      y = net(x, w, b, lw, lb, m);
    }
    EXPECT_EQ(y.dtype(), low);
    Tensor up = Tensor::randn(y.shape(), gen).to(low);
    y.backward(up);
    // The same computation by hand: explicit low-precision leaves, no autocast.
    std::vector<Tensor> leaves{x, w, b, lw, lb, m}, low_leaves;
    for (const Tensor& t : leaves) low_leaves.push_back(t.detach().to(low).requires_grad_());
    Tensor ref = net(low_leaves[0], low_leaves[1], low_leaves[2], low_leaves[3], low_leaves[4], low_leaves[5]);
    ref.backward(up);
    EXPECT_EQ(y.to_vector<double>(), ref.to_vector<double>()) << dtype_name(low);
    for (size_t i = 0; i < leaves.size(); ++i) {
      ASSERT_EQ(leaves[i].grad().dtype(), DType::Float32) << i;
      EXPECT_EQ(leaves[i].grad().to_vector<double>(), low_leaves[i].grad().to_vector<double>())
          << dtype_name(low) << " leaf " << i;
    }
  }
}

TEST(Autocast, MixedBinaryOpsCastTheFloat32OperandDown) {
  Generator gen(12);
  Tensor a = leaf(gen, {2, 3}, DType::BFloat16), g = leaf(gen, {3});
  EXPECT_THROW(mul(a, g), Error);  // outside autocast mixed dtypes stay an error
  Tensor y;
  {
    AutocastGuard amp(DType::BFloat16);
    y = add(sub(mul(a, g), g), div(g, add_scalar(mul(a, a), 2.0)));
  }
  EXPECT_EQ(y.dtype(), DType::BFloat16);
  sum(y).backward();
  EXPECT_EQ(a.grad().dtype(), DType::BFloat16);
  EXPECT_EQ(g.grad().dtype(), DType::Float32);
  // Reference: g cast explicitly at each use (as autocast does), no autocast.
  Tensor a2 = a.detach().requires_grad_(), g2 = g.detach().requires_grad_();
  auto gb = [&] { return cast(g2, DType::BFloat16); };
  Tensor ref = add(sub(mul(a2, gb()), gb()), div(gb(), add_scalar(mul(a2, a2), 2.0)));
  sum(ref).backward();
  EXPECT_EQ(y.to_vector<double>(), ref.to_vector<double>());
  EXPECT_EQ(a.grad().to_vector<double>(), a2.grad().to_vector<double>());
  EXPECT_EQ(g.grad().to_vector<double>(), g2.grad().to_vector<double>());
  // Equal dtypes are left alone, float32 included; float64 is never cast.
  AutocastGuard amp(DType::BFloat16);
  EXPECT_EQ(mul(g, g).dtype(), DType::Float32);
  EXPECT_THROW(mul(a, Tensor::ones({3}, DType::Float64)), Error);
}

TEST(Autocast, LossesAndSoftmaxComputeInFloat32) {
  Generator gen(13);
  const Tensor logits16 = Tensor::randn({4, 5}, gen).mul_(3.0).to(DType::BFloat16);
  const Tensor target = Tensor::from_vector(std::vector<int64_t>{0, 4, 2, 2}, {4});
  const Tensor soft = Tensor::rand({4, 5}, gen), probe = Tensor::rand({4, 5}, gen);
  const std::vector<std::function<Tensor(const Tensor&)>> ops{
      [&](const Tensor& l) { return cross_entropy(l, target, -100, 0.1); },
      [&](const Tensor& l) { return cross_entropy_soft(l, soft); },
      [&](const Tensor& l) { return sum(mul(softmax(l, 1), probe)); },
      [](const Tensor& l) { return sum(log_softmax(l, 1)); }};
  for (size_t i = 0; i < ops.size(); ++i) {
    // Each op against the float32 computation on the same (bf16) values.
    Tensor l16 = logits16.detach().requires_grad_(), l32 = logits16.to(DType::Float32).requires_grad_();
    Tensor y;
    {
      AutocastGuard amp(DType::BFloat16);
      y = ops[i](l16);
    }
    Tensor ref = ops[i](l32);
    EXPECT_EQ(y.dtype(), DType::Float32) << i;
    EXPECT_EQ(y.item(), ref.item()) << i;
    y.backward();
    ref.backward();
    EXPECT_EQ(l16.grad().dtype(), DType::BFloat16) << i;
    EXPECT_EQ(l16.grad().to_vector<double>(), l32.grad().to(DType::BFloat16).to_vector<double>()) << i;
  }
}

TEST(Autocast, NormsKeepTheInputDtypeAndFloat32Parameters) {
  Generator gen(14);
  Tensor x = leaf(gen, {2, 3, 3, 8}, DType::Float32);
  Tensor lw = leaf(gen, {8}), lb = leaf(gen, {8}), bw = leaf(gen, {8}), bb = leaf(gen, {8});
  Tensor rm = Tensor::zeros({8}), rv = Tensor::ones({8});
  Tensor cw = leaf(gen, {8, 1, 3, 3}, DType::Float32, 0.3);
  Tensor y, h;
  {
    AutocastGuard amp(DType::BFloat16);
    h = conv2d(x, cw, Tensor(), Conv2dParams{1, 1, 1, 1, 1, 1, 8});
    y = layer_norm(batch_norm(h, bw, bb, rm, rv, true), lw, lb);
  }
  EXPECT_EQ(h.dtype(), DType::BFloat16);
  EXPECT_EQ(y.dtype(), DType::BFloat16);
  EXPECT_EQ(rm.dtype(), DType::Float32);
  EXPECT_GT(relative_error(rm, Tensor::zeros({8})), 0.0);  // updated
  sum(mul(y, y)).backward();
  for (const Tensor& p : {lw, lb, bw, bb, cw, x}) EXPECT_EQ(p.grad().dtype(), DType::Float32);
}

TEST(Autocast, Float16MeansAndNormsDoNotOverflowBeforeTheirResult) {
  // GRN under float16 autocast: a mean over 1024 channel norms of ~100 sums to 102400 and an L2
  // norm over 64 values of 100 sums squares to 640000, both past float16's 65504.
  Tensor many = Tensor::full({2, 1024}, 100.0, DType::Float16).requires_grad_();
  Tensor m = mean(many, {1});
  EXPECT_EQ(m.dtype(), DType::Float16);
  EXPECT_EQ(m.to_vector<double>(), (std::vector<double>{100, 100}));
  sum(m).backward();
  EXPECT_EQ(many.grad().to_vector<double>()[0], 1.0 / 1024);
  EXPECT_EQ(norm(Tensor::full({64}, 100.0, DType::Float16)).item(), 800.0);
  EXPECT_EQ(sum(Tensor::full({600}, 100.0, DType::Float16)).item(), 60000.0);
  EXPECT_TRUE(std::isinf(sum(Tensor::full({700}, 100.0, DType::Float16)).item()));  // the sum itself overflows
}

TEST(Autocast, BackwardInsideARegionRunsTheForwardsDtypes) {
  // Calling backward inside the region must not re-cast anything: same gradients as outside.
  auto grads = [](bool backward_inside) {
    Generator gen(15);
    Tensor x = leaf(gen, {6, 8}), w = leaf(gen, {8, 8}, DType::Float32, 0.4), s = leaf(gen, {8});
    AutocastGuard amp(DType::BFloat16);
    Tensor loss = cross_entropy(mul(linear(x, w), s), Tensor::from_vector(std::vector<int64_t>{1, 2, 3, 4, 5, 6}, {6}));
    if (backward_inside) {
      loss.backward();
    } else {
      AutocastGuard off(DType::BFloat16, false);
      loss.backward();
    }
    return std::vector<std::vector<double>>{x.grad().to_vector<double>(), w.grad().to_vector<double>(),
                                            s.grad().to_vector<double>()};
  };
  EXPECT_EQ(grads(true), grads(false));
}

TEST(Autocast, CheckpointRecomputesWithTheForwardsCasts) {
  // A checkpointed block run under autocast, backward outside it: the recompute must cast as the
  // forward did (else it would recompute in float32 and its outputs would not match).
  auto grads = [](bool with_cp) {
    Generator gen(16);
    Tensor x = leaf(gen, {4, 8}), w = leaf(gen, {8, 8}, DType::Float32, 0.4), lw = leaf(gen, {8}),
           lb = leaf(gen, {8}), g = leaf(gen, {8});
    auto block = [&](const Tensor& in) { return mul(layer_norm(gelu(linear(in, w)), lw, lb), g); };
    Tensor y;
    {
      AutocastGuard amp(DType::BFloat16);
      y = with_cp ? checkpoint([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{block(in[0])}; }, {x})[0]
                  : block(x);
    }
    EXPECT_EQ(y.dtype(), DType::BFloat16);
    sum(mul(y, y)).backward();
    std::vector<std::vector<double>> out;
    for (const Tensor& t : {x, w, lw, lb, g}) {
      EXPECT_EQ(t.grad().dtype(), DType::Float32);
      out.push_back(t.grad().to_vector<double>());
    }
    return out;
  };
  EXPECT_EQ(grads(true), grads(false));
}

}  // namespace
}  // namespace unirep
