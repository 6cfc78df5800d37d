// Elementwise kernels. Each op is a functor over the accumulation type (float, or double for
// float64 tensors) written once and instantiated for both the CPU loop (loops_cpu.h) and the CUDA
// loop (cuda/loops.cuh); the X-macro lists below generate both sets of instantiations.
//
// Callers pass operands already expanded to out's shape (strides may be 0 for broadcast dims).
#pragma once
#include "core/ops/math.h"
#include "core/tensor.h"

namespace unirep::ew {

// Exact GELU and its derivative: d/dx [x Phi(x)] = Phi(x) + x phi(x).
template <class T> UNIREP_HD T gelu(T x) { return T(0.5) * x * (T(1) + math::erf(x * T(0.70710678118654752440))); }
template <class T> UNIREP_HD T gelu_grad(T x) {
  T cdf = T(0.5) * (T(1) + math::erf(x * T(0.70710678118654752440)));
  T pdf = T(0.39894228040143267794) * math::gauss(x);
  return cdf + x * pdf;
}

struct Neg { template <class T> UNIREP_HD T operator()(T a) const { return -a; } };
struct Sqrt { template <class T> UNIREP_HD T operator()(T a) const { return math::sqrt(a); } };
struct Exp { template <class T> UNIREP_HD T operator()(T a) const { return math::exp(a); } };
struct Log { template <class T> UNIREP_HD T operator()(T a) const { return math::log(a); } };
struct Relu { template <class T> UNIREP_HD T operator()(T a) const { return a > T(0) ? a : T(0); } };
struct Gelu { template <class T> UNIREP_HD T operator()(T a) const { return gelu(a); } };
struct Sigmoid { template <class T> UNIREP_HD T operator()(T a) const { return math::sigmoid(a); } };
struct Silu { template <class T> UNIREP_HD T operator()(T a) const { return a * math::sigmoid(a); } };

struct AddScalar { double s; template <class T> UNIREP_HD T operator()(T a) const { return a + T(s); } };
struct MulScalar { double s; template <class T> UNIREP_HD T operator()(T a) const { return a * T(s); } };
struct PowScalar { double p; template <class T> UNIREP_HD T operator()(T a) const { return math::pow(a, T(p)); } };

struct Add { template <class T> UNIREP_HD T operator()(T a, T b) const { return a + b; } };
struct Sub { template <class T> UNIREP_HD T operator()(T a, T b) const { return a - b; } };
struct Mul { template <class T> UNIREP_HD T operator()(T a, T b) const { return a * b; } };
struct Div { template <class T> UNIREP_HD T operator()(T a, T b) const { return a / b; } };
// Backward functors take (upstream gradient, saved input or output).
struct ReluBackward { template <class T> UNIREP_HD T operator()(T g, T x) const { return x > T(0) ? g : T(0); } };
struct GeluBackward { template <class T> UNIREP_HD T operator()(T g, T x) const { return g * gelu_grad(x); } };
struct SigmoidBackward {  // from the output y: y (1 - y)
  template <class T> UNIREP_HD T operator()(T g, T y) const { return g * y * (T(1) - y); }
};
struct SiluBackward {
  template <class T> UNIREP_HD T operator()(T g, T x) const {
    T s = math::sigmoid(x);
    return g * s * (T(1) + x * (T(1) - s));
  }
};
// 1 where a equals b (the maxima of a reduction), else 0.
struct EqualMask { template <class T> UNIREP_HD T operator()(T a, T b) const { return a == b ? T(1) : T(0); } };
// a / b, but 0 where b is 0 (gradient of a norm that is 0).
struct DivOrZero { template <class T> UNIREP_HD T operator()(T a, T b) const { return b == T(0) ? T(0) : a / b; } };
struct PowBackward {
  double p;
  template <class T> UNIREP_HD T operator()(T g, T x) const { return g * T(p) * math::pow(x, T(p - 1)); }
};

}  // namespace unirep::ew

#define UNIREP_EW_UNARY_OPS(X) \
  X(Neg) X(Sqrt) X(Exp) X(Log) X(Relu) X(Gelu) X(Sigmoid) X(Silu) X(AddScalar) X(MulScalar) X(PowScalar)
#define UNIREP_EW_BINARY_OPS(X) \
  X(Add) X(Sub) X(Mul) X(Div) X(ReluBackward) X(GeluBackward) X(SigmoidBackward) X(SiluBackward) X(PowBackward) X(EqualMask) X(DivOrZero)

namespace unirep {

// out = f(a) / f(a, b), floating dtypes, any device.
template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a);
template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a, const Tensor& b);

namespace cuda {
template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a);
template <class F> void elementwise(const Tensor& out, const F& f, const Tensor& a, const Tensor& b);
}  // namespace cuda

}  // namespace unirep
