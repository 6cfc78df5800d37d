// Fused GELU + GRN, CPU kernels and the checks shared with CUDA (the math is in gelu_grn.h).
//
// The per-(n, f) sums walk blocks of kRowBlock positions of one sample, each block accumulating F
// partials contiguously (vectorisable); the blocks of a sample are then added in order, so results
// do not depend on the thread count. The per-(n, f) coefficients (G, scale, k) are a few thousand
// values, computed serially.
#include "core/ops/gelu_grn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/norm.h"
#include "core/parallel.h"

namespace unirep {

namespace {

constexpr int64_t kRowBlock = 64;

int64_t row_blocks(GeluGrnShape s) { return std::max<int64_t>(1, (s.positions + kRowBlock - 1) / kRowBlock); }

// sums[(n * F + f) * 2 + {0, 1}] = what f(e, a1, a2) adds over the positions of (n, f).
template <class acc, class F>
void position_sums(GeluGrnShape s, const F& f, std::vector<acc>& sums) {
  const int64_t C = s.channels, P = s.positions, nblk = row_blocks(s);
  std::vector<acc> part(size_t(s.batch * nblk * 2 * C), acc(0));
  parallel_for(0, s.batch * nblk, std::max<int64_t>(1, kGrain / (kRowBlock * C)), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t n = k / nblk, blk = k - n * nblk;
      acc* p1 = part.data() + k * 2 * C;
      acc* p2 = p1 + C;
      for (int64_t r = blk * kRowBlock, rend = std::min(P, r + kRowBlock); r < rend; ++r) {
        const int64_t base = (n * P + r) * C;
        for (int64_t c = 0; c < C; ++c) f(base + c, p1[c], p2[c]);
      }
    }
  });
  sums.assign(size_t(s.batch * C * 2), acc(0));
  for (int64_t n = 0; n < s.batch; ++n)
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const acc* p1 = part.data() + (n * nblk + blk) * 2 * C;
      for (int64_t c = 0; c < C; ++c) {
        sums[size_t((n * C + c) * 2)] += p1[c];
        sums[size_t((n * C + c) * 2 + 1)] += p1[C + c];
      }
    }
}

// body(e, n * F + f, f) for every element, rows in parallel.
template <class F> void for_each_element(GeluGrnShape s, const F& body) {
  const int64_t C = s.channels, P = s.positions;
  parallel_for(0, s.batch * P, std::max<int64_t>(1, kGrain / C), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t nc = (row / P) * C;
      for (int64_t c = 0; c < C; ++c) body(row * C + c, nc + c, c);
    }
  });
}

template <class T, class P> void apply_cpu(const Tensor& out_t, const Tensor& h_t, const acc_t<T>* sc, const Tensor& beta_t,
                                           GeluGrnShape s) {
  using acc = acc_t<T>;
  const T* h = h_t.data<T>();
  const P* beta = beta_t.defined() ? beta_t.data<P>() : nullptr;
  T* out = out_t.data<T>();
  for_each_element(s, [&](int64_t e, int64_t nc, int64_t c) {
    const acc shift = beta ? static_cast<acc>(beta[c]) : acc(0);
    out[e] = static_cast<T>(ew::gelu(static_cast<acc>(h[e])) * sc[nc] + shift);
  });
}

template <class T, class P>
void forward_cpu(const Tensor& out_t, const Tensor& norm_t, const Tensor& h_t, const Tensor& gamma_t,
                 const Tensor& beta_t, GeluGrnShape s, const Tensor& scale_t) {
  using acc = acc_t<T>;
  const T* h = h_t.data<T>();
  const P* gamma = gamma_t.data<P>();
  const int64_t C = s.channels;
  std::vector<acc> sums;
  position_sums<acc>(
      s,
      [&](int64_t e, acc& a1, acc&) {
        const acc z = ew::gelu(static_cast<acc>(h[e]));
        a1 += z * z;
      },
      sums);
  acc* G = norm_t.data<acc>();
  std::vector<acc> local(scale_t.defined() ? 0 : size_t(s.batch * C));
  acc* scale = scale_t.defined() ? scale_t.data<acc>() : local.data();
  for (int64_t n = 0; n < s.batch; ++n) {
    acc total = 0;
    for (int64_t c = 0; c < C; ++c) {
      G[n * C + c] = std::sqrt(sums[size_t((n * C + c) * 2)]);
      total += G[n * C + c];
    }
    const acc d = total / acc(C) + acc(kGrnEps);
    for (int64_t c = 0; c < C; ++c) scale[n * C + c] = static_cast<acc>(gamma[c]) * (G[n * C + c] / d) + acc(1);
  }
  apply_cpu<T, P>(out_t, h_t, scale, beta_t, s);
}

template <class T, class P>
void backward_cpu(const Tensor& dh_t, const Tensor& dgamma_t, const Tensor& dbeta_t, const Tensor& dy_t,
                  const Tensor& h_t, const Tensor& norm_t, const Tensor& gamma_t, GeluGrnShape s) {
  using acc = acc_t<T>;
  const T* h = h_t.data<T>();
  const T* dy = dy_t.data<T>();
  const P* gamma = gamma_t.data<P>();
  const acc* G = norm_t.data<acc>();
  const int64_t C = s.channels;
  std::vector<acc> sums;
  position_sums<acc>(
      s,
      [&](int64_t e, acc& a1, acc& a2) {
        const acc g = static_cast<acc>(dy[e]);
        a1 += g * ew::gelu(static_cast<acc>(h[e]));
        a2 += g;
      },
      sums);
  std::vector<acc> dgamma(size_t(C), acc(0)), dbeta(size_t(C), acc(0)), dnx(static_cast<size_t>(C));
  std::vector<acc> scale(size_t(s.batch * C)), coef(size_t(s.batch * C));
  for (int64_t n = 0; n < s.batch; ++n) {
    const acc* Gn = G + n * C;
    acc total = 0;
    for (int64_t c = 0; c < C; ++c) total += Gn[c];
    const acc d = total / acc(C) + acc(kGrnEps);
    acc coupling = 0;
    for (int64_t c = 0; c < C; ++c) {
      const acc A = sums[size_t((n * C + c) * 2)], nx = Gn[c] / d, w = static_cast<acc>(gamma[c]);
      dgamma[size_t(c)] += A * nx;
      dbeta[size_t(c)] += sums[size_t((n * C + c) * 2 + 1)];
      dnx[size_t(c)] = A * w;
      coupling += dnx[size_t(c)] * nx;
      scale[size_t(n * C + c)] = w * nx + acc(1);
    }
    coupling /= acc(C);
    for (int64_t c = 0; c < C; ++c) {
      const acc dG = (dnx[size_t(c)] - coupling) / d;
      coef[size_t(n * C + c)] = Gn[c] == acc(0) ? acc(0) : dG / Gn[c];
    }
  }
  if (dgamma_t.defined())
    for (int64_t c = 0; c < C; ++c) dgamma_t.data<P>()[c] = static_cast<P>(dgamma[size_t(c)]);
  if (dbeta_t.defined())
    for (int64_t c = 0; c < C; ++c) dbeta_t.data<P>()[c] = static_cast<P>(dbeta[size_t(c)]);
  if (!dh_t.defined()) return;
  T* dh = dh_t.data<T>();
  const acc* sc = scale.data();
  const acc* k = coef.data();
  for_each_element(s, [&](int64_t e, int64_t nc, int64_t) {
    const acc x = static_cast<acc>(h[e]);
    const acc dz = static_cast<acc>(dy[e]) * sc[nc] + ew::gelu(x) * k[nc];
    dh[e] = static_cast<T>(dz * ew::gelu_grad(x));
  });
}

void check_tensor(const char* what, const Tensor& t, DType dtype, int64_t numel, const Tensor& h) {
  if (!t.defined()) return;
  UNIREP_CHECK(t.dtype() == dtype && t.numel() == numel && t.is_contiguous() && t.device() == h.device(),
               "gelu_grn: ", what, " must be a contiguous ", dtype_name(dtype), " tensor of ", numel,
               " elements on ", h.str(), "'s device, got ", t.str());
}

void check_common(const Tensor& h, const Tensor& norm, const Tensor& gamma, GeluGrnShape s) {
  UNIREP_CHECK(h.defined() && is_floating(h.dtype()) && h.is_contiguous(),
               "gelu_grn: h must be a contiguous floating tensor, got ", h.defined() ? h.str() : "undefined");
  UNIREP_CHECK(s.batch >= 0 && s.positions >= 0 && s.channels > 0 && h.numel() == s.batch * s.positions * s.channels,
               "gelu_grn: h ", h.str(), " does not match the shape [", s.batch, ", ", s.positions, ", ", s.channels,
               "] (channels must be positive)");
  check_tensor("norm", norm, norm_stat_dtype(h.dtype()), s.batch * s.channels, h);
  UNIREP_CHECK(norm.defined() && gamma.defined(), "gelu_grn: norm and gamma must be defined");
}

}  // namespace

void gelu_grn_forward(const Tensor& out, const Tensor& norm, const Tensor& h, const Tensor& gamma,
                      const Tensor& beta, GeluGrnShape s, const Tensor& scale) {
  check_common(h, norm, gamma, s);
  const DType pdt = norm_param_dtype("gelu_grn", h.dtype(), {&gamma, &beta});
  check_tensor("out", out, h.dtype(), h.numel(), h);
  check_tensor("gamma", gamma, pdt, s.channels, h);
  check_tensor("beta", beta, pdt, s.channels, h);
  check_tensor("scale", scale, norm.dtype(), s.batch * s.channels, h);
  if (h.is_cuda()) return cuda::gelu_grn_forward(out, norm, h, gamma, beta, s, scale);
  UNIREP_DISPATCH_FLOATING(h.dtype(), "gelu_grn", [&] {
    using T = scalar_t;
    with_norm_param<T>(
        pdt, [&](auto p) { forward_cpu<T, typename decltype(p)::type>(out, norm, h, gamma, beta, s, scale); });
  });
}

void gelu_grn_apply(const Tensor& out, const Tensor& h, const Tensor& scale, const Tensor& beta, GeluGrnShape s) {
  UNIREP_CHECK(h.defined() && is_floating(h.dtype()) && h.is_contiguous() && s.channels > 0 &&
                   h.numel() == s.batch * s.positions * s.channels,
               "gelu_grn_apply: h must be a contiguous floating tensor of shape [", s.batch, ", ", s.positions, ", ",
               s.channels, "], got ", h.defined() ? h.str() : "undefined");
  UNIREP_CHECK(scale.defined(), "gelu_grn_apply: scale must be defined");
  check_tensor("scale", scale, norm_stat_dtype(h.dtype()), s.batch * s.channels, h);
  check_tensor("out", out, h.dtype(), h.numel(), h);
  const DType pdt = norm_param_dtype("gelu_grn_apply", h.dtype(), {&beta});
  check_tensor("beta", beta, pdt, s.channels, h);
  if (h.is_cuda()) return cuda::gelu_grn_apply(out, h, scale, beta, s);
  UNIREP_DISPATCH_FLOATING(h.dtype(), "gelu_grn_apply", [&] {
    using T = scalar_t;
    with_norm_param<T>(pdt, [&](auto p) {
      apply_cpu<T, typename decltype(p)::type>(out, h, scale.data<acc_t<T>>(), beta, s);
    });
  });
}

void gelu_grn_backward(const Tensor& dh, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                       const Tensor& h, const Tensor& norm, const Tensor& gamma, GeluGrnShape s) {
  check_common(h, norm, gamma, s);
  const DType pdt = norm_param_dtype("gelu_grn", h.dtype(), {&gamma, &dgamma, &dbeta});
  check_tensor("dy", dy, h.dtype(), h.numel(), h);
  UNIREP_CHECK(dy.defined(), "gelu_grn: dy must be defined");
  check_tensor("dh", dh, h.dtype(), h.numel(), h);
  check_tensor("gamma", gamma, pdt, s.channels, h);
  check_tensor("dgamma", dgamma, pdt, s.channels, h);
  check_tensor("dbeta", dbeta, pdt, s.channels, h);
  if (h.is_cuda()) return cuda::gelu_grn_backward(dh, dgamma, dbeta, dy, h, norm, gamma, s);
  UNIREP_DISPATCH_FLOATING(h.dtype(), "gelu_grn", [&] {
    using T = scalar_t;
    with_norm_param<T>(
        pdt, [&](auto p) { backward_cpu<T, typename decltype(p)::type>(dh, dgamma, dbeta, dy, h, norm, gamma, s); });
  });
}

}  // namespace unirep
