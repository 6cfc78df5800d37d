// Differentiable elementwise ops over the kernels of core/ops/elementwise.h.
#include "autograd/functions/elementwise.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/ops/elementwise.h"

namespace unirep {

namespace {

// A non-recording broadcast view of t (kernels read it; autograd sees only the op).
Tensor broadcast_view(const Tensor& t, const Shape& shape) { return t.detach().expand(shape); }

void check_float(const char* op, const Tensor& t) {
  UNIREP_CHECK(t.defined(), op, ": undefined input");
  UNIREP_CHECK(is_floating(t.dtype()), op, ": expected a floating tensor, got ", dtype_name(t.dtype()));
}

template <class F> Tensor unary_forward(const char* op, const Tensor& x, const F& f) {
  check_float(op, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  elementwise(out, f, x.detach());
  return out;
}

template <class F> Tensor binary_forward(const char* op, const Tensor& a, const Tensor& b, const F& f) {
  check_float(op, a);
  check_float(op, b);
  check_same_dtype(op, a, b);
  check_same_device(op, a, b);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  elementwise(out, f, broadcast_view(a, shape), broadcast_view(b, shape));
  return out;
}

// Gradient of a unary op whose derivative needs the saved tensor s: g -> F(g, s).
template <class F> Tensor unary_backward(const Tensor& g, const Tensor& s, const F& f) {
  Tensor out = Tensor::empty(g.shape(), g.dtype(), g.device());
  elementwise(out, f, g, s);
  return out;
}

template <class F, class Back> Tensor unary_op(const char* op, const Tensor& x, const F& f, Back back) {
  Tensor out = unary_forward(op, x, f);
  if (needs_grad({x})) record(op, {x}, {out}, back);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Add, {a, b}, [](const std::vector<Tensor>& in) { return add(in[0], in[1]); });
  Tensor out = binary_forward("add", a, b, ew::Add{});
  if (needs_grad({a, b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("add", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], sa), sum_to(g[0], sb)};
    });
  }
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Sub, {a, b}, [](const std::vector<Tensor>& in) { return sub(in[0], in[1]); });
  Tensor out = binary_forward("sub", a, b, ew::Sub{});
  if (needs_grad({a, b})) {
    Shape sa = a.shape(), sb = b.shape();
    record("sub", {a, b}, {out}, [sa, sb](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{sum_to(g[0], sa), sum_to(neg(g[0]), sb)};
    });
  }
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Mul, {a, b}, [](const std::vector<Tensor>& in) { return mul(in[0], in[1]); });
  Tensor out = binary_forward("mul", a, b, ew::Mul{});
  if (needs_grad({a, b})) {
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    record("mul", {a, b}, {out}, [need_a, need_b, sa = save(a), sb = save(b)](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{need_a ? sum_to(mul(g[0], sb), sa.shape()) : Tensor(),
                                 need_b ? sum_to(mul(g[0], sa), sb.shape()) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Div, {a, b}, [](const std::vector<Tensor>& in) { return div(in[0], in[1]); });
  Tensor out = binary_forward("div", a, b, ew::Div{});
  if (needs_grad({a, b})) {
    bool need_b = b.requires_grad();
    record("div", {a, b}, {out}, [need_b, sa = save(a), sb = save(b)](const std::vector<Tensor>& g) {
      Tensor ga = div(g[0], sb);
      Tensor gb = need_b ? sum_to(neg(mul(ga, div(sa, sb))), sb.shape()) : Tensor();
      return std::vector<Tensor>{sum_to(ga, sa.shape()), gb};
    });
  }
  return out;
}

Tensor add_scalar(const Tensor& a, double s) {
  return unary_op("add_scalar", a, ew::AddScalar{s}, [](const std::vector<Tensor>& g) { return g; });
}

Tensor mul_scalar(const Tensor& a, double s) {
  return unary_op("mul_scalar", a, ew::MulScalar{s},
                  [s](const std::vector<Tensor>& g) { return std::vector<Tensor>{mul_scalar(g[0], s)}; });
}

Tensor neg(const Tensor& a) {
  return unary_op("neg", a, ew::Neg{}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{neg(g[0])}; });
}

Tensor pow_scalar(const Tensor& a, double p) {
  return unary_op("pow_scalar", a, ew::PowScalar{p}, [p, sa = save(a)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{unary_backward(g[0], sa, ew::PowBackward{p})};
  });
}

Tensor sqrt(const Tensor& a) {
  Tensor out = unary_forward("sqrt", a, ew::Sqrt{});
  if (needs_grad({a}))
    record("sqrt", {a}, {out}, [so = save(out)](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{div(mul_scalar(g[0], 0.5), so)};
    });
  return out;
}

Tensor exp(const Tensor& a) {
  Tensor out = unary_forward("exp", a, ew::Exp{});
  if (needs_grad({a}))
    record("exp", {a}, {out}, [so = save(out)](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{mul(g[0], so)};
    });
  return out;
}

Tensor log(const Tensor& a) {
  return unary_op("log", a, ew::Log{},
                  [sa = save(a)](const std::vector<Tensor>& g) { return std::vector<Tensor>{div(g[0], sa)}; });
}

Tensor relu(const Tensor& x) {
  return unary_op("relu", x, ew::Relu{}, [sx = save(x)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{unary_backward(g[0], sx, ew::ReluBackward{})};
  });
}

Tensor gelu(const Tensor& x) {
  return unary_op("gelu", x, ew::Gelu{}, [sx = save(x)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{unary_backward(g[0], sx, ew::GeluBackward{})};
  });
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = unary_forward("sigmoid", x, ew::Sigmoid{});
  if (needs_grad({x}))
    record("sigmoid", {x}, {out}, [so = save(out)](const std::vector<Tensor>& g) {
      return std::vector<Tensor>{unary_backward(g[0], so, ew::SigmoidBackward{})};
    });
  return out;
}

Tensor silu(const Tensor& x) {
  return unary_op("silu", x, ew::Silu{}, [sx = save(x)](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{unary_backward(g[0], sx, ew::SiluBackward{})};
  });
}

}  // namespace unirep
