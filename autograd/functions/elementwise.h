// Differentiable elementwise ops. Binary ops broadcast (NumPy rules) and need equal dtypes and
// devices (under autocast, mixed float32/bf16/f16 operands are first cast to the autocast dtype:
// autograd/autocast.h); the gradient of a broadcast input is summed back to its shape (sum_to).
#pragma once
#include "core/tensor.h"

namespace unirep {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add_scalar(const Tensor& a, double s);
Tensor mul_scalar(const Tensor& a, double s);
Tensor neg(const Tensor& a);
Tensor pow_scalar(const Tensor& a, double exponent);
Tensor sqrt(const Tensor& a);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);

Tensor relu(const Tensor& x);
// Exact GELU: x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2))).
Tensor gelu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
// x * sigmoid(x).
Tensor silu(const Tensor& x);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
inline Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
inline Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
inline Tensor operator*(double s, const Tensor& a) { return mul_scalar(a, s); }
inline Tensor operator/(const Tensor& a, double s) { return mul_scalar(a, 1.0 / s); }

}  // namespace unirep
