// Activation checkpointing: gradients equal to the plain graph's (inputs and captured parameters),
// the RNG rule, nesting inside bigger graphs (gradcheck), no graph without grad, grad-ready hooks,
// what the node keeps alive, batch norm's second running-stat update, errors, and CUDA vs CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "autograd/checkpoint.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "core/allocator.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

using Fn = CheckpointFn;

// A leaf of `shape` (normal * scale, plus shift), converted to dtype/device before requires_grad is set.
Tensor leaf(Generator& gen, const Shape& shape, DType dtype = DType::Float64, Device device = Device::cpu(),
            double scale = 1.0, double shift = 0.0, bool grad = true) {
  Tensor t = Tensor::randn(shape, gen, DType::Float64);
  t.mul_(scale);
  if (shift != 0.0) t.add_(Tensor::full(shape, shift, DType::Float64));
  t = t.to(dtype).to(device);
  return grad ? t.requires_grad_() : t;
}

// Clears the leaves' grads, runs backward on loss(), returns the leaves' grads (undefined where none).
std::vector<Tensor> grads_of(const std::function<Tensor()>& loss, const std::vector<Tensor>& leaves) {
  for (const Tensor& t : leaves) t.set_grad(Tensor());
  loss().backward();
  std::vector<Tensor> g;
  for (const Tensor& t : leaves) g.push_back(t.grad());
  return g;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> va = a.to(DType::Float64).cpu().to_vector<double>();
  std::vector<double> vb = b.to(DType::Float64).cpu().to_vector<double>();
  EXPECT_EQ(va.size(), vb.size());
  double m = 0;
  for (size_t i = 0; i < va.size() && i < vb.size(); ++i) m = std::max(m, std::fabs(va[i] - vb[i]));
  return m;
}

void expect_same_grads(const std::vector<Tensor>& ref, const std::vector<Tensor>& got, double tol,
                       const char* what) {
  ASSERT_EQ(ref.size(), got.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ASSERT_TRUE(ref[i].defined()) << what << ": reference gradient " << i << " undefined";
    ASSERT_TRUE(got[i].defined()) << what << ": checkpointed gradient " << i << " undefined";
    EXPECT_EQ(ref[i].shape(), got[i].shape()) << what << " " << i;
    EXPECT_LE(max_abs_diff(ref[i], got[i]), tol) << what << ": gradient " << i;
  }
}

// linear + gelu + layer_norm, then a product with a captured scale parameter.
struct MlpBlock {
  Tensor w, b, ln_w, ln_b, gamma;
  MlpBlock(Generator& gen, int64_t in, int64_t out, DType dtype = DType::Float64, Device dev = Device::cpu())
      : w(leaf(gen, {out, in}, dtype, dev, 0.5)),
        b(leaf(gen, {out}, dtype, dev, 0.1)),
        ln_w(leaf(gen, {out}, dtype, dev, 0.2, 1.0)),
        ln_b(leaf(gen, {out}, dtype, dev, 0.1)),
        gamma(leaf(gen, {out}, dtype, dev)) {}
  Tensor forward(const Tensor& x) const { return mul(layer_norm(gelu(linear(x, w, b)), ln_w, ln_b), gamma); }
  std::vector<Tensor> params() const { return {w, b, ln_w, ln_b, gamma}; }
};

// Depthwise conv (no bias: batch norm would cancel it, its gradient is only rounding noise) +
// training-mode batch norm (running stats given) + gelu, NHWC.
struct ConvBnBlock {
  Tensor dw, bn_w, bn_b, running_mean, running_var;
  ConvBnBlock(Generator& gen, int64_t c, DType dtype = DType::Float64, Device dev = Device::cpu())
      : dw(leaf(gen, {c, 1, 3, 3}, dtype, dev, 0.4)),
        bn_w(leaf(gen, {c}, dtype, dev, 0.2, 1.0)),
        bn_b(leaf(gen, {c}, dtype, dev, 0.1)),
        running_mean(Tensor::zeros({c}, dtype, dev)),
        running_var(Tensor::ones({c}, dtype, dev)) {}
  Tensor forward(const Tensor& x, bool skip_update_in_recompute = false) const {
    Conv2dParams p{1, 1, 1, 1, 1, 1, x.size(3)};
    Tensor h = conv2d(x, dw, Tensor(), p);
    bool skip = skip_update_in_recompute && in_checkpoint_recompute();
    h = batch_norm(h, bn_w, bn_b, skip ? Tensor() : running_mean, skip ? Tensor() : running_var, true);
    return add(gelu(h), x);
  }
  std::vector<Tensor> params() const { return {dw, bn_w, bn_b}; }
};

std::vector<Tensor> join(std::vector<Tensor> a, const std::vector<Tensor>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// ---- (1) identical gradients with and without checkpointing

TEST(Checkpoint, MlpBlockGradientsMatchThePlainGraph) {
  Generator gen(1);
  MlpBlock block(gen, 5, 6);
  Tensor x = leaf(gen, {2, 3, 5});
  Tensor u = leaf(gen, {2, 3, 6}, DType::Float64, Device::cpu(), 1.0, 0.0, false);
  std::vector<Tensor> leaves = join({x}, block.params());
  Fn fn = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{block.forward(in[0])}; };

  std::vector<Tensor> ref = grads_of([&] { return sum(mul(fn({x})[0], u)); }, leaves);
  std::vector<Tensor> got = grads_of(
      [&] {
        Tensor out = checkpoint(fn, {x})[0];
        EXPECT_EQ(out.grad_fn()->name(), "checkpoint");
        return sum(mul(out, u));
      },
      leaves);
  expect_same_grads(ref, got, 0.0, "mlp block");
}

TEST(Checkpoint, ConvBatchNormBlockGradientsMatchThePlainGraph) {
  Generator gen(2);
  ConvBnBlock block(gen, 3);
  Tensor x = leaf(gen, {2, 5, 4, 3});
  Tensor u = leaf(gen, {2, 5, 4, 3}, DType::Float64, Device::cpu(), 1.0, 0.0, false);
  std::vector<Tensor> leaves = join({x}, block.params());
  Fn fn = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{block.forward(in[0])}; };

  std::vector<Tensor> ref = grads_of([&] { return sum(mul(fn({x})[0], u)); }, leaves);
  std::vector<Tensor> got = grads_of([&] { return sum(mul(checkpoint(fn, {x})[0], u)); }, leaves);
  expect_same_grads(ref, got, 0.0, "conv + batch norm block");
}

TEST(Checkpoint, SeveralInputsAndOutputsSomeUnusedSomeWithoutGrad) {
  Generator gen(3);
  MlpBlock block(gen, 4, 4);
  Tensor x = leaf(gen, {3, 4}), y = leaf(gen, {3, 4});
  Tensor c = leaf(gen, {3, 4}, DType::Float64, Device::cpu(), 1.0, 0.0, false);  // a constant input
  std::vector<Tensor> leaves = join({x, y}, block.params());
  Fn fn = [&](const std::vector<Tensor>& in) {
    Tensor h = block.forward(add(in[0], mul(in[1], in[2])));
    // Returns an input as is, the same tensor twice, and an output that needs no grad.
    return std::vector<Tensor>{h, in[0], sigmoid(h), h, in[2], Tensor::ones({2})};
  };
  auto loss = [&](bool ckpt) {
    std::vector<Tensor> o = ckpt ? checkpoint(fn, {x, y, c, Tensor()}) : fn({x, y, c, Tensor()});
    if (ckpt) {
      EXPECT_FALSE(o[0].same(o[3])) << "outputs are distinct handles";
      EXPECT_FALSE(o[1].same(x));
    }
    // o[2] (sigmoid) and o[4], o[5] are unused: their gradients arrive as zeros.
    return sum(add(add(mul(o[0], o[0]), mul(o[1], o[3])), o[4]));
  };
  std::vector<Tensor> ref = grads_of([&] { return loss(false); }, leaves);
  std::vector<Tensor> got = grads_of([&] { return loss(true); }, leaves);
  expect_same_grads(ref, got, 1e-12, "several inputs and outputs");
}

TEST(Checkpoint, RetainGraphRecomputesAgain) {
  Generator gen(4);
  MlpBlock block(gen, 3, 3);
  Tensor x = leaf(gen, {2, 3});
  std::vector<Tensor> leaves = join({x}, block.params());
  Fn fn = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{block.forward(in[0])}; };
  std::vector<Tensor> once = grads_of([&] { return sum(checkpoint(fn, {x})[0]); }, leaves);
  std::vector<Tensor> once_copy;
  for (const Tensor& g : once) once_copy.push_back(g.clone());
  for (const Tensor& t : leaves) t.set_grad(Tensor());
  Tensor loss = sum(checkpoint(fn, {x})[0]);
  loss.backward(Tensor(), /*retain_graph=*/true);
  loss.backward();
  for (size_t i = 0; i < leaves.size(); ++i)
    EXPECT_LE(max_abs_diff(leaves[i].grad(), mul_scalar(once_copy[i], 2.0)), 1e-12) << i;
  EXPECT_THROW(loss.backward(), Error);  // the second backward freed the node
}

// ---- (2) randomness inside the checkpointed function

TEST(Checkpoint, DropoutAndDropPathRecomputeTheSameMasks) {
  Tensor w, x, u;
  {
    Generator init(5);
    w = leaf(init, {8, 8}, DType::Float64, Device::cpu(), 0.5);
    x = leaf(init, {6, 8});
    u = leaf(init, {6, 8}, DType::Float64, Device::cpu(), 1.0, 0.0, false);
  }
  auto run = [&](bool ckpt, Generator& gen) {
    Fn fn = [&](const std::vector<Tensor>& in) {
      Tensor h = dropout(gelu(linear(in[0], w)), 0.3, true, gen);
      return std::vector<Tensor>{add(drop_path(h, 0.5, true, gen), in[0])};
    };
    return grads_of(
        [&] {
          Tensor out = ckpt ? checkpoint(fn, {x}, {&gen})[0] : fn({x})[0];
          out = dropout(out, 0.2, true, gen);  // a later layer draws after the segment, before backward
          return sum(mul(out, u));
        },
        {x, w});
  };
  Generator plain_gen(77), ckpt_gen(77);
  std::vector<Tensor> ref = run(false, plain_gen);
  std::vector<Tensor> got = run(true, ckpt_gen);
  expect_same_grads(ref, got, 0.0, "dropout + drop_path");
  EXPECT_EQ(ckpt_gen.offset(), plain_gen.offset());
  EXPECT_EQ(ckpt_gen.offset(), uint64_t(6 * 8 + 6 + 6 * 8));
  // Later draws are those without checkpointing.
  EXPECT_EQ(Tensor::rand({5}, ckpt_gen, 0, 1, DType::Float64).to_vector<double>(),
            Tensor::rand({5}, plain_gen, 0, 1, DType::Float64).to_vector<double>());
}

TEST(Checkpoint, TheDefaultGeneratorIsPreservedWithoutBeingListed) {
  Generator& dg = default_generator();
  const uint64_t seed0 = dg.seed(), offset0 = dg.offset();
  Generator init(6);
  Tensor x = leaf(init, {4, 5});
  Tensor u = leaf(init, {4, 5}, DType::Float64, Device::cpu(), 1.0, 0.0, false);
  Fn fn = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{mul(dropout(in[0], 0.5, true), in[0])}; };
  dg.set_state(123, 0);
  std::vector<Tensor> ref = grads_of([&] { return sum(mul(fn({x})[0], u)); }, {x});
  const uint64_t plain_offset = dg.offset();
  dg.set_state(123, 0);
  std::vector<Tensor> got = grads_of([&] { return sum(mul(checkpoint(fn, {x})[0], u)); }, {x});
  EXPECT_EQ(dg.offset(), plain_offset);
  expect_same_grads(ref, got, 0.0, "dropout on the default generator");
  dg.set_state(seed0, offset0);
}

TEST(Checkpoint, ARecomputeThatDrawsDifferentlyIsAnErrorAndLeavesTheGeneratorAlone) {
  Generator init(7);
  Tensor x = leaf(init, {3, 4});
  Generator gen(9);
  Fn fn = [&](const std::vector<Tensor>& in) {
    if (in_checkpoint_recompute()) gen.advance(1);  // a data-dependent draw count
    return std::vector<Tensor>{dropout(in[0], 0.25, true, gen)};
  };
  Tensor loss = sum(checkpoint(fn, {x}, {&gen})[0]);
  gen.advance(5);
  const uint64_t before_backward = gen.offset();
  try {
    loss.backward();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must draw the same random numbers"), std::string::npos) << e.what();
  }
  EXPECT_EQ(gen.offset(), before_backward);
  EXPECT_FALSE(in_checkpoint_recompute());
}

// ---- (3) inside bigger graphs: gradcheck

TEST(Checkpoint, GradcheckThroughSegmentsInSequenceAndAnOutputUsedTwice) {
  Generator gen(10);
  // inputs: x, a weight captured by the first segment, a bias given as an input of the second.
  std::vector<Tensor> inputs = {leaf(gen, {2, 3}), leaf(gen, {3, 3}, DType::Float64, Device::cpu(), 0.5),
                                leaf(gen, {3}, DType::Float64, Device::cpu(), 0.2)};
  auto f = [](const std::vector<Tensor>& in) {
    Tensor w = in[1];
    Tensor s1 = checkpoint([w](const std::vector<Tensor>& v) { return std::vector<Tensor>{gelu(linear(v[0], w))}; },
                           {in[0]})[0];
    Tensor y = add(mul(s1, s1), s1);  // used twice
    std::vector<Tensor> s2 = checkpoint(
        [](const std::vector<Tensor>& v) {
          Tensor h = add(v[0], v[1]);
          return std::vector<Tensor>{layer_norm(h, Tensor(), Tensor()), sigmoid(h)};
        },
        {y, in[2]});
    return add(mul(s2[0], s2[1]), s1);
  };
  GradcheckResult r = gradcheck(f, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Checkpoint, GradcheckThroughANestedCheckpoint) {
  Generator gen(11);
  std::vector<Tensor> inputs = {leaf(gen, {2, 4}), leaf(gen, {4, 4}, DType::Float64, Device::cpu(), 0.5)};
  auto f = [](const std::vector<Tensor>& in) {
    Tensor w = in[1];
    Fn inner = [w](const std::vector<Tensor>& v) { return std::vector<Tensor>{silu(linear(v[0], w))}; };
    Fn outer = [w, inner](const std::vector<Tensor>& v) {
      Tensor h = checkpoint(inner, {v[0]})[0];
      return std::vector<Tensor>{mul(checkpoint(inner, {h})[0], v[0])};
    };
    return sum(checkpoint(outer, {in[0]})[0], {1});
  };
  GradcheckResult r = gradcheck(f, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

// ---- (4) no graph without grad

TEST(Checkpoint, NoGraphWhenGradModeIsOff) {
  Generator gen(12);
  MlpBlock block(gen, 3, 3);
  Tensor x = leaf(gen, {2, 3});
  int calls = 0;
  Fn fn = [&](const std::vector<Tensor>& in) {
    ++calls;
    return std::vector<Tensor>{block.forward(in[0])};
  };
  NoGradGuard no_grad;
  Tensor out = checkpoint(fn, {x})[0];
  EXPECT_FALSE(out.requires_grad());
  EXPECT_FALSE(out.grad_fn());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(max_abs_diff(out, block.forward(x)), 0.0);
}

TEST(Checkpoint, InputsWithoutGradRunThePlainGraph) {
  // Nothing to recompute from: the captured weights still train (fn runs with grad mode on).
  Generator gen(13);
  MlpBlock block(gen, 3, 3);
  Tensor x = leaf(gen, {2, 3}, DType::Float64, Device::cpu(), 1.0, 0.0, false);
  Tensor out = checkpoint([&](const std::vector<Tensor>& in) { return std::vector<Tensor>{block.forward(in[0])}; },
                          {x})[0];
  ASSERT_TRUE(out.grad_fn());
  EXPECT_NE(out.grad_fn()->name(), "checkpoint");
  sum(out).backward();
  for (const Tensor& p : block.params()) EXPECT_TRUE(p.grad().defined());
}

// ---- (5) grad-ready hooks of captured parameters

TEST(Checkpoint, GradReadyHooksOfCapturedParametersFireOnce) {
  Generator gen(14);
  Tensor w = leaf(gen, {3, 3}), x = leaf(gen, {2, 3});
  int fired = 0;
  Tensor grad_at_hook;
  w.register_grad_ready_hook([&](const Tensor& t) {
    ++fired;
    grad_at_hook = t.grad().clone();
  });
  Fn fn = [&](const std::vector<Tensor>& in) {
    Tensor h = gelu(linear(in[0], w));
    return std::vector<Tensor>{linear(h, w)};  // w used twice inside
  };
  std::vector<Tensor> ref = grads_of([&] { return sum(fn({x})[0]); }, {w});
  ASSERT_EQ(fired, 1);
  fired = 0;
  std::vector<Tensor> got = grads_of([&] { return sum(checkpoint(fn, {x})[0]); }, {w});
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(max_abs_diff(grad_at_hook, ref[0]), 0.0) << "the hook sees the final gradient";
  EXPECT_EQ(max_abs_diff(got[0], ref[0]), 0.0);
}

// ---- (6) memory: the node keeps only the inputs

TEST(Checkpoint, OnlyTheInputsAreKeptBetweenForwardAndBackward) {
  Generator gen(15);
  Tensor w = leaf(gen, {6, 6}), x0 = leaf(gen, {4, 6});
  std::weak_ptr<Storage> forward_intermediate, recompute_intermediate;
  bool recomputed = false;
  Fn fn = [&](const std::vector<Tensor>& in) {
    Tensor a = linear(in[0], w);  // gelu saves this for its backward in a plain graph
    recomputed = recomputed || in_checkpoint_recompute();
    (in_checkpoint_recompute() ? recompute_intermediate : forward_intermediate) = a.storage();
    return std::vector<Tensor>{gelu(a)};
  };
  auto input = [&] { return mul_scalar(x0, 2.0); };  // a non-leaf only the graph holds

  {  // Plain graph: the intermediate stays alive until backward.
    Tensor loss = sum(fn({input()})[0]);
    EXPECT_FALSE(forward_intermediate.expired()) << "the plain graph keeps the activation";
    loss.backward();
    EXPECT_TRUE(forward_intermediate.expired());
  }

  std::weak_ptr<Storage> ckpt_input;
  Tensor loss;
  {
    Tensor x = input();
    ckpt_input = x.storage();
    loss = sum(checkpoint(fn, {x})[0]);
  }
  EXPECT_TRUE(forward_intermediate.expired()) << "checkpoint must not keep fn's intermediates";
  EXPECT_FALSE(ckpt_input.expired()) << "the checkpoint node keeps its input";
  EXPECT_FALSE(recomputed);
  loss.backward();
  EXPECT_TRUE(recomputed);
  EXPECT_TRUE(recompute_intermediate.expired()) << "the recomputed graph is freed after backward";
  EXPECT_TRUE(ckpt_input.expired()) << "the saved input is released after backward";
  EXPECT_TRUE(w.grad().defined());
}

// ---- batch norm: the recompute updates the running statistics a second time

TEST(Checkpoint, BatchNormRunningStatsAreUpdatedAgainByTheRecompute) {
  Generator gen(16);
  ConvBnBlock block(gen, 3);
  Tensor x = leaf(gen, {2, 4, 4, 3});
  auto stats = [&] { return std::vector<Tensor>{block.running_mean.clone(), block.running_var.clone()}; };
  auto reset = [&] {
    block.running_mean.fill_(0.0);
    block.running_var.fill_(1.0);
  };
  // Expected: one and two plain updates.
  std::vector<Tensor> once, twice;
  {
    NoGradGuard no_grad;
    reset();
    block.forward(x);
    once = stats();
    block.forward(x);
    twice = stats();
  }
  reset();
  Fn fn = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{block.forward(in[0])}; };
  Tensor loss = sum(checkpoint(fn, {x})[0]);
  EXPECT_EQ(max_abs_diff(block.running_mean, once[0]), 0.0);
  EXPECT_EQ(max_abs_diff(block.running_var, once[1]), 0.0);
  loss.backward();
  EXPECT_LE(max_abs_diff(block.running_mean, twice[0]), 1e-15) << "momentum applied a second time";
  EXPECT_LE(max_abs_diff(block.running_var, twice[1]), 1e-15);

  // The documented way out: no running stats while in_checkpoint_recompute().
  reset();
  Fn fn_once = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{block.forward(in[0], true)}; };
  sum(checkpoint(fn_once, {x})[0]).backward();
  EXPECT_EQ(max_abs_diff(block.running_mean, once[0]), 0.0);
  EXPECT_EQ(max_abs_diff(block.running_var, once[1]), 0.0);
}

// ---- errors

TEST(Checkpoint, CapturedNonLeafThatRequiresGradIsAnError) {
  Generator gen(17);
  Tensor w = leaf(gen, {3, 3}), x = leaf(gen, {2, 3});
  Tensor w2 = mul_scalar(w, 2.0);  // has history: must be an input, not captured
  Fn fn = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear(in[0], w2)}; };
  Tensor loss = sum(checkpoint(fn, {x})[0]);
  try {
    loss.backward();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("checkpoint"), std::string::npos) << m;
    EXPECT_NE(m.find("not one of the checkpoint's inputs"), std::string::npos) << m;
  }
  // Passing it as an input works.
  x.set_grad(Tensor());
  w.set_grad(Tensor());
  Fn fn2 = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear(in[0], in[1])}; };
  sum(checkpoint(fn2, {x, mul_scalar(w, 2.0)})[0]).backward();
  EXPECT_TRUE(w.grad().defined());
  EXPECT_TRUE(x.grad().defined());
}

TEST(Checkpoint, BadFunctionsAreReported) {
  Generator gen(18);
  Tensor x = leaf(gen, {2, 3});
  EXPECT_THROW(checkpoint(Fn(), {x}), Error);
  try {
    checkpoint([](const std::vector<Tensor>&) { return std::vector<Tensor>{Tensor::zeros({2}, DType::Int64)}; }, {x});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint: output 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("int64[2]"), std::string::npos) << e.what();
  }
  EXPECT_THROW(checkpoint([](const std::vector<Tensor>&) { return std::vector<Tensor>{Tensor()}; }, {x}), Error);
}

// ---- (7) CUDA against the CPU

TEST(Checkpoint, CudaMatchesCpuFloat32) {
  UNIREP_SKIP_WITHOUT_CUDA();
  const DType f32 = DType::Float32;
  auto run = [&](Device dev, bool ckpt) {
    Generator gen(19);
    MlpBlock mlp(gen, 6, 6, f32, dev);
    ConvBnBlock conv(gen, 6, f32, dev);
    Tensor x = leaf(gen, {2, 5, 4, 6}, f32, dev);
    Tensor u = leaf(gen, {2, 5, 4, 6}, f32, dev, 1.0, 0.0, false);
    Generator drop(21);
    Fn fn = [&](const std::vector<Tensor>& in) {
      Tensor h = conv.forward(in[0]);
      h = dropout(mlp.forward(h), 0.2, true, drop);
      return std::vector<Tensor>{add(drop_path(h, 0.5, true, drop), in[0])};
    };
    std::vector<Tensor> leaves = join(join({x}, mlp.params()), conv.params());
    std::vector<Tensor> g = grads_of(
        [&] {
          Tensor out = ckpt ? checkpoint(fn, {x}, {&drop})[0] : fn({x})[0];
          return sum(mul(out, u));
        },
        leaves);
    g.push_back(conv.running_mean.clone());
    g.push_back(conv.running_var.clone());
    EXPECT_EQ(drop.offset(), uint64_t(2 * 5 * 4 * 6 + 2));
    for (Tensor& t : g) t = t.cpu();
    return g;
  };
  std::vector<Tensor> cpu = run(Device::cpu(), true);
  std::vector<Tensor> gpu = run(Device::cuda(0), true);
  std::vector<Tensor> gpu_plain = run(Device::cuda(0), false);
  ASSERT_EQ(cpu.size(), gpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    EXPECT_LE(testing::relative_error(gpu[i], cpu[i]), 1e-5) << "gradient/stat " << i;
    if (i + 2 < cpu.size()) {  // the running stats differ by design (updated twice with checkpointing)
      EXPECT_LE(testing::relative_error(gpu[i], gpu_plain[i]), 1e-6) << "gradient " << i;
    }
  }
}

// A stack of blocks on the GPU: the peak of live tensor memory over forward + backward, plain vs
// checkpointed (every block). Plain keeps about a dozen activations per block; checkpointed keeps
// one per block plus one block's worth while that block runs backward.
TEST(Checkpoint, CudaPeakMemoryIsBoundedByOneBlock) {
  UNIREP_SKIP_WITHOUT_CUDA();
  const Device dev = Device::cuda(0);
  const DType f32 = DType::Float32;
  const int64_t c = 64, depth = 8;
  struct Stage {
    ConvBnBlock conv;
    MlpBlock up;
    Tensor down;
    Stage(Generator& gen, int64_t c, Device dev)
        : conv(gen, c, DType::Float32, dev), up(gen, c, 4 * c, DType::Float32, dev),
          down(leaf(gen, {c, 4 * c}, DType::Float32, dev, 0.05)) {}
    Tensor forward(const Tensor& x) const { return add(x, linear(gelu(up.forward(conv.forward(x))), down)); }
  };
  Generator gen(23);
  std::vector<Stage> stages;
  for (int64_t i = 0; i < depth; ++i) stages.emplace_back(gen, c, dev);
  Tensor x = leaf(gen, {8, 32, 32, c}, f32, dev);
  std::vector<Tensor> leaves = {x};
  for (const Stage& s : stages) leaves = join(join(join(leaves, s.conv.params()), s.up.params()), {s.down});

  auto run = [&](bool ckpt, int64_t& peak) {
    cuda_reset_peak_stats();
    const int64_t base = cuda_allocator_stats().allocated_bytes;
    std::vector<Tensor> g = grads_of(
        [&] {
          Tensor h = x;
          for (const Stage& s : stages) {
            Fn fn = [&s](const std::vector<Tensor>& in) { return std::vector<Tensor>{s.forward(in[0])}; };
            h = ckpt ? checkpoint(fn, {h})[0] : fn({h})[0];
          }
          return mean(h);
        },
        leaves);
    peak = cuda_allocator_stats().peak_allocated_bytes - base;
    std::vector<Tensor> copies;
    for (const Tensor& t : g) copies.push_back(t.clone());
    for (const Tensor& t : leaves) t.set_grad(Tensor());
    return copies;
  };
  int64_t plain_peak = 0, ckpt_peak = 0;
  std::vector<Tensor> plain = run(false, plain_peak);
  plain.clear();  // compare only after measuring both, so the plain grads do not count in ckpt's peak
  std::vector<Tensor> ckpt = run(true, ckpt_peak);
  std::vector<Tensor> plain_again = run(false, plain_peak);
  const int64_t act = 8 * 32 * 32 * c * 4;
  std::printf("[ checkpoint ] %lld blocks, activation %.1f MiB: peak live memory over forward+backward %.1f MiB "
              "plain, %.1f MiB checkpointed\n",
              (long long)depth, act / 1048576.0, plain_peak / 1048576.0, ckpt_peak / 1048576.0);
  EXPECT_LT(ckpt_peak * 3, plain_peak);
  for (size_t i = 0; i < ckpt.size(); ++i)
    EXPECT_LE(testing::relative_error(ckpt[i], plain_again[i]), 1e-5) << "gradient " << i;
}

}  // namespace
}  // namespace unirep
