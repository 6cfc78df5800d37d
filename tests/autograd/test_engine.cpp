// The autograd engine: accumulation, shared subgraphs, hooks, no_grad, retain_graph, detach,
// saved-tensor release, and the order in which leaves become final.
#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"

namespace unirep {
namespace {

Tensor vec(std::vector<double> v) { return Tensor::from_vector(v, {int64_t(v.size())}); }

TEST(Autograd, ChainRuleAndAccumulation) {
  Tensor x = vec({1, 2, 3}).requires_grad_();
  Tensor y = mul(x, x);            // x^2
  Tensor z = sum(add(y, mul(x, y)));  // sum(x^2 + x^3): x is used three times
  z.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2 + 3, 4 + 12, 6 + 27}));
  // A second backward through a fresh graph accumulates into .grad.
  sum(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6, 17, 34}));
}

TEST(Autograd, NoGradAndDetach) {
  Tensor x = vec({1, 2}).requires_grad_();
  {
    NoGradGuard no_grad;
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(y.grad_fn());
  }
  Tensor d = mul(x, x).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  Tensor z = sum(mul(d, x));  // d is a constant
  z.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 4}));
}

TEST(Autograd, SavedTensorsReleasedUnlessRetained) {
  Tensor x = vec({1, 2}).requires_grad_();
  Tensor z = sum(mul(x, x));
  z.backward();
  EXPECT_THROW(z.backward(), Error);  // saved tensors were freed
  Tensor w = sum(mul(x, x));
  w.backward(Tensor(), /*retain_graph=*/true);
  EXPECT_NO_THROW(w.backward());
}

TEST(Autograd, SavedTensorsDoNotKeepTheGraphAlive) {
  std::weak_ptr<TensorImpl> weak_y;
  {
    Tensor x = vec({1, 2}).requires_grad_();
    Tensor y = sigmoid(x);  // saves its own output
    weak_y = y.impl_ptr();
  }
  EXPECT_TRUE(weak_y.expired()) << "a node saving its output must not form a reference cycle";
}

TEST(Autograd, GradReadyHooksFireOncePerLeafInReverseOrder) {
  Tensor w1 = vec({0.5, -1}).requires_grad_();
  Tensor w2 = vec({2, 3}).requires_grad_();
  std::vector<std::string> order;
  w1.register_grad_ready_hook([&](const Tensor& t) {
    order.push_back("w1");
    EXPECT_TRUE(t.grad().defined());
  });
  w2.register_grad_ready_hook([&](const Tensor&) { order.push_back("w2"); });
  Tensor h = relu(mul(vec({1, 1}), w1));  // first layer
  Tensor out = sum(mul(add(h, w1), w2));  // second layer; w1 used again
  out.backward();
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], "w2");  // the last layer's parameter is final first
  EXPECT_EQ(order[1], "w1");  // fires once, after both of its uses
}

TEST(Autograd, BackwardErrors) {
  Tensor x = vec({1, 2});
  EXPECT_THROW(sum(x).backward(), Error);  // nothing requires grad
  Tensor y = mul(x, vec({1, 1}).requires_grad_());
  EXPECT_THROW(y.backward(), Error);  // non-scalar root without a gradient
  EXPECT_THROW(y.backward(Tensor::ones({3}, DType::Float64)), Error);  // wrong gradient shape
  EXPECT_THROW(Tensor::zeros({2}, DType::Int64).requires_grad_(), Error);
}

TEST(Autograd, ViewsAreDifferentiable) {
  auto check = [](std::function<Tensor(const Tensor&)> f, Shape shape) {
    Generator gen(1);
    Tensor x = Tensor::randn(shape, gen, DType::Float64).requires_grad_();
    GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) { return f(in[0]); }, {x});
    EXPECT_TRUE(r.ok) << r.message;
  };
  check([](const Tensor& x) { return x.permute({2, 0, 1}); }, {2, 3, 4});
  check([](const Tensor& x) { return x.transpose(0, 1).reshape({-1}); }, {3, 4});
  check([](const Tensor& x) { return x.slice(1, 1, 4, 2); }, {2, 5});
  check([](const Tensor& x) { return x.select(0, 1); }, {3, 2});
  check([](const Tensor& x) { return x.unsqueeze(1).expand({3, 4, 2}); }, {3, 2});
  check([](const Tensor& x) { return x.flatten(1); }, {2, 3, 2});
  check([](const Tensor& x) { return mul(x.slice(0, 0, 2), x.slice(0, 1, 3)); }, {3, 2});
}

TEST(Autograd, DtypeCastsPassGradientsBackInTheSourceDtype) {
  // Finite differences through float32 are too coarse for gradcheck: check the cast's backward directly.
  Tensor x = vec({1, 2, 3}).requires_grad_();
  Tensor y = x.to(DType::Float32);
  sum(mul(y, y)).backward();
  EXPECT_EQ(x.grad().dtype(), DType::Float64);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 4, 6}));
}

TEST(Autograd, GradcheckCatchesAWrongGradient) {
  // A deliberately wrong backward (2x instead of x) must be reported.
  auto wrong_square = [](const std::vector<Tensor>& in) {
    Tensor x = in[0];
    Tensor out;
    {
      NoGradGuard no_grad;
      out = mul(x, x);
    }
    record("wrong_square", {x}, {out}, [sx = save(x)](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul(g[0], sx)};
    });
    return out;
  };
  Tensor x = vec({0.5, -1.5, 2}).requires_grad_();
  GradcheckResult r = gradcheck(wrong_square, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytic"), std::string::npos);
}

}  // namespace
}  // namespace unirep
