// Batch norm and layer norm, CPU kernels (the math is in norm.h).
//
// Per-channel sums (batch norm statistics and gradients, layer norm dweight/dbias) never reduce one
// channel at a time over a strided tensor: channel-last data ([rows, C], inner = 1) is walked row by
// row, each block of kRowBlock rows accumulating C partial sums contiguously (vectorisable); inner > 1
// data is walked as contiguous inner segments, one partial per (outer, channel). The partials are
// then combined in a fixed order, so results do not depend on the thread count.
// Layer norm with inner > 1 normalises tiles of kTile positions at once, walking the C channels
// with the contiguous inner positions innermost.
#include "core/ops/norm.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/parallel.h"

namespace unirep {

namespace {

constexpr int64_t kRowBlock = 256;
constexpr int64_t kTile = 64;

template <class T> const T* opt_data(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <class T> T* opt_mut(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

// s1[c], s2[c] = sums over every element e of channel c (position p = o * inner + i) of what
// f(e, c, p, a1, a2) adds to a1 and a2.
template <class acc, class F>
void channel_sums_cpu(NormShape s, const F& f, std::vector<acc>& s1, std::vector<acc>& s2) {
  const int64_t C = s.channels;
  s1.assign(size_t(C), acc(0));
  s2.assign(size_t(C), acc(0));
  if (s.numel() == 0) return;
  std::vector<acc> part;
  int64_t nparts = 0;
  if (s.inner == 1) {
    const int64_t rows = s.outer;
    nparts = (rows + kRowBlock - 1) / kRowBlock;
    part.assign(size_t(nparts * 2 * C), acc(0));
    parallel_for(0, nparts, std::max<int64_t>(1, kGrain / (kRowBlock * C)), [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        acc* p1 = part.data() + blk * 2 * C;
        acc* p2 = p1 + C;
        for (int64_t r = blk * kRowBlock, rend = std::min(rows, r + kRowBlock); r < rend; ++r)
          for (int64_t c = 0; c < C; ++c) f(r * C + c, c, r, p1[c], p2[c]);
      }
    });
  } else {
    const int64_t inner = s.inner;
    nparts = s.outer;
    part.assign(size_t(nparts * 2 * C), acc(0));
    parallel_for(0, s.outer * C, std::max<int64_t>(1, kGrain / inner), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t o = k / C, c = k - o * C;
        acc a1 = 0, a2 = 0;
        const int64_t base = k * inner, pbase = o * inner;
        for (int64_t i = 0; i < inner; ++i) f(base + i, c, pbase + i, a1, a2);
        part[size_t(o * 2 * C + c)] = a1;
        part[size_t(o * 2 * C + C + c)] = a2;
      }
    });
  }
  for (int64_t k = 0; k < nparts; ++k) {
    const acc* p1 = part.data() + k * 2 * C;
    for (int64_t c = 0; c < C; ++c) {
      s1[size_t(c)] += p1[c];
      s2[size_t(c)] += p1[C + c];
    }
  }
}

// Calls body(e, c) for every element e (channel c), in parallel, contiguously.
template <class F> void for_each_channel_elem(NormShape s, const F& body) {
  const int64_t C = s.channels, inner = s.inner;
  if (inner == 1) {
    parallel_for(0, s.outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        for (int64_t c = 0; c < C; ++c) body(r * C + c, c);
    });
  } else {
    parallel_for(0, s.outer * C, std::max<int64_t>(1, kGrain / inner), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int64_t c = k % C;
        for (int64_t i = k * inner, end = i + inner; i < end; ++i) body(i, c);
      }
    });
  }
}

// ---------------------------------------------------------------- batch norm

template <class T, class R>
void update_running(R* rm, R* rv, const std::vector<acc_t<T>>& mean, const std::vector<acc_t<T>>& var, int64_t n,
                    double momentum) {
  using acc = acc_t<T>;
  const acc m = acc(momentum), keep = acc(1.0 - momentum), unbias = acc(double(n) / double(n - 1));
  for (size_t c = 0; c < mean.size(); ++c) {
    if (rm) rm[c] = convert<R>(keep * static_cast<acc>(static_cast<acc_t<R>>(rm[c])) + m * mean[c]);
    if (rv) rv[c] = convert<R>(keep * static_cast<acc>(static_cast<acc_t<R>>(rv[c])) + m * var[c] * unbias);
  }
}

// The two passes of the statistics: the first-pass mean m0[c], then s1 = sum(x - m0) and
// s2 = sum((x - m0)^2), from which mean = m0 + s1 / n and n var = s2 - s1^2 / n.
template <class T>
void centred_sums_cpu(const T* x, NormShape s, std::vector<acc_t<T>>& m0, std::vector<acc_t<T>>& s1,
                      std::vector<acc_t<T>>& s2) {
  using acc = acc_t<T>;
  const acc n = acc(s.outer * s.inner);
  channel_sums_cpu<acc>(s, [&](int64_t e, int64_t, int64_t, acc& a1, acc&) { a1 += static_cast<acc>(x[e]); }, s1,
                        s2);
  m0.resize(size_t(s.channels));
  for (int64_t c = 0; c < s.channels; ++c) m0[size_t(c)] = s1[size_t(c)] / n;
  channel_sums_cpu<acc>(
      s,
      [&](int64_t e, int64_t c, int64_t, acc& a1, acc& a2) {
        acc d = static_cast<acc>(x[e]) - m0[size_t(c)];
        a1 += d;
        a2 += d * d;
      },
      s1, s2);
}

template <class T>
void bn_stats_cpu(const Tensor& mean_t, const Tensor& invstd_t, const Tensor& x_t, NormShape s,
                  const Tensor& running_mean, const Tensor& running_var, double momentum, double eps) {
  using acc = acc_t<T>;
  const int64_t C = s.channels;
  const acc n = acc(s.outer * s.inner);
  std::vector<acc> m0, s1, s2;
  centred_sums_cpu(x_t.data<T>(), s, m0, s1, s2);
  std::vector<acc> mean(static_cast<size_t>(C)), var(static_cast<size_t>(C));
  acc* mean_out = mean_t.data<acc>();
  acc* invstd_out = invstd_t.data<acc>();
  for (int64_t c = 0; c < C; ++c) {
    acc d = s1[size_t(c)] / n;
    mean[size_t(c)] = m0[size_t(c)] + d;
    var[size_t(c)] = std::max(s2[size_t(c)] / n - d * d, acc(0));
    mean_out[c] = mean[size_t(c)];
    invstd_out[c] = acc(1) / std::sqrt(var[size_t(c)] + acc(eps));
  }
  if (!running_mean.defined() && !running_var.defined()) return;
  DType rdt = running_mean.defined() ? running_mean.dtype() : running_var.dtype();
  UNIREP_DISPATCH_FLOATING(rdt, "batch_norm", [&] {
    using R = scalar_t;
    update_running<T, R>(opt_mut<R>(running_mean), opt_mut<R>(running_var), mean, var, s.outer * s.inner, momentum);
  });
}

template <class T, class R>
void bn_eval_stats_cpu(const Tensor& mean_t, const Tensor& invstd_t, const Tensor& rm_t, const Tensor& rv_t,
                       double eps) {
  using acc = acc_t<T>;
  const R* rm = rm_t.data<R>();
  const R* rv = rv_t.data<R>();
  acc* mean = mean_t.data<acc>();
  acc* invstd = invstd_t.data<acc>();
  for (int64_t c = 0; c < rm_t.numel(); ++c) {
    mean[c] = static_cast<acc>(static_cast<acc_t<R>>(rm[c]));
    invstd[c] = acc(1) / std::sqrt(static_cast<acc>(static_cast<acc_t<R>>(rv[c])) + acc(eps));
  }
}

template <class T, class P>
void bn_apply_cpu(const Tensor& y_t, const Tensor& x_t, const Tensor& mean_t, const Tensor& invstd_t,
                  const Tensor& w_t, const Tensor& b_t, NormShape s) {
  using acc = acc_t<T>;
  const int64_t C = s.channels;
  const acc* mean = mean_t.data<acc>();
  const acc* invstd = invstd_t.data<acc>();
  const P* w = opt_data<P>(w_t);
  const P* b = opt_data<P>(b_t);
  std::vector<acc> scale(static_cast<size_t>(C)), shift(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    scale[size_t(c)] = invstd[c] * (w ? static_cast<acc>(w[c]) : acc(1));
    shift[size_t(c)] = b ? static_cast<acc>(b[c]) : acc(0);
  }
  const T* x = x_t.data<T>();
  T* y = y_t.data<T>();
  const acc* sc = scale.data();
  const acc* sh = shift.data();
  for_each_channel_elem(s, [&](int64_t e, int64_t c) {
    y[e] = static_cast<T>((static_cast<acc>(x[e]) - mean[c]) * sc[c] + sh[c]);
  });
}

// s1 = sum(dy), s2 = sum(dy (x - mean)) per channel; dweight = invstd s2 and dbias = s1 when defined.
template <class T, class P>
void bn_grad_sums_cpu(std::vector<acc_t<T>>& s1, std::vector<acc_t<T>>& s2, const Tensor& dw_t, const Tensor& db_t,
                      const Tensor& dy_t, const Tensor& x_t, const Tensor& mean_t, const Tensor& invstd_t,
                      NormShape s) {
  using acc = acc_t<T>;
  const T* x = x_t.data<T>();
  const T* dy = dy_t.data<T>();
  const acc* mean = mean_t.data<acc>();
  const acc* invstd = invstd_t.data<acc>();
  channel_sums_cpu<acc>(
      s,
      [&](int64_t e, int64_t c, int64_t, acc& a1, acc& a2) {
        acc g = static_cast<acc>(dy[e]);
        a1 += g;
        a2 += g * (static_cast<acc>(x[e]) - mean[c]);
      },
      s1, s2);
  if (P* dw = opt_mut<P>(dw_t))
    for (int64_t c = 0; c < s.channels; ++c) dw[c] = static_cast<P>(s2[size_t(c)] * invstd[c]);
  if (P* db = opt_mut<P>(db_t))
    for (int64_t c = 0; c < s.channels; ++c) db[c] = static_cast<P>(s1[size_t(c)]);
}

// dx = k (dy - a - (x - mean) q): k = w invstd; a = s1 / n; q = invstd^2 s2 / n. Without s1/s2
// (eval) a = q = 0.
template <class T, class P>
void bn_dx_cpu(const Tensor& dx_t, const Tensor& dy_t, const Tensor& x_t, const Tensor& mean_t, const Tensor& invstd_t,
               const Tensor& w_t, const acc_t<T>* s1, const acc_t<T>* s2, acc_t<T> n, NormShape s) {
  using acc = acc_t<T>;
  const int64_t C = s.channels;
  const T* x = x_t.data<T>();
  const T* dy = dy_t.data<T>();
  const P* w = opt_data<P>(w_t);
  const acc* mean = mean_t.data<acc>();
  const acc* invstd = invstd_t.data<acc>();
  std::vector<acc> k(static_cast<size_t>(C)), a(size_t(C), acc(0)), q(size_t(C), acc(0));
  for (int64_t c = 0; c < C; ++c) {
    k[size_t(c)] = invstd[c] * (w ? static_cast<acc>(w[c]) : acc(1));
    if (s1) {
      a[size_t(c)] = s1[c] / n;
      q[size_t(c)] = invstd[c] * invstd[c] * s2[c] / n;
    }
  }
  T* dx = dx_t.data<T>();
  const acc *kp = k.data(), *ap = a.data(), *qp = q.data();
  for_each_channel_elem(s, [&](int64_t e, int64_t c) {
    dx[e] = static_cast<T>(kp[c] * (static_cast<acc>(dy[e]) - ap[c] - (static_cast<acc>(x[e]) - mean[c]) * qp[c]));
  });
}

template <class T, class P>
void bn_backward_cpu(const Tensor& dx_t, const Tensor& dw_t, const Tensor& db_t, const Tensor& dy_t,
                     const Tensor& x_t, const Tensor& mean_t, const Tensor& invstd_t, const Tensor& w_t, NormShape s,
                     bool training) {
  using acc = acc_t<T>;
  std::vector<acc> s1, s2;
  if (dw_t.defined() || db_t.defined() || (dx_t.defined() && training))
    bn_grad_sums_cpu<T, P>(s1, s2, dw_t, db_t, dy_t, x_t, mean_t, invstd_t, s);
  if (!dx_t.defined()) return;
  bn_dx_cpu<T, P>(dx_t, dy_t, x_t, mean_t, invstd_t, w_t, training ? s1.data() : nullptr,
                  training ? s2.data() : nullptr, acc(s.outer * s.inner), s);
}

// ---------------------------------------------------------------- batch norm split between processes

template <class T> void bn_partial_sums_cpu(const Tensor& sums_t, const Tensor& x_t, NormShape s) {
  using acc = acc_t<T>;
  const int64_t C = s.channels;
  std::vector<acc> m0, s1, s2;
  centred_sums_cpu(x_t.data<T>(), s, m0, s1, s2);
  double* sums = sums_t.data<double>();
  const double n = double(s.outer * s.inner);
  for (int64_t c = 0; c < C; ++c) {
    const double d = double(s1[size_t(c)]) / n, mean = double(m0[size_t(c)]) + d;
    const double m2 = std::max(double(s2[size_t(c)]) - double(s1[size_t(c)]) * d, 0.0);
    sums[c] = n * mean;
    sums[C + c] = m2 + n * mean * mean;
  }
  sums[2 * C] = n;
}

template <class acc, class R>
void bn_stats_from_sums_cpu(const Tensor& mean_t, const Tensor& invstd_t, const Tensor& sums_t, R* rm, R* rv,
                            double momentum, double eps) {
  const int64_t C = mean_t.numel();
  const double* sums = sums_t.data<double>();
  const double n = sums[2 * C];
  UNIREP_CHECK(n > 1, "batch_norm: training needs more than one value per channel over all processes, got ", n);
  acc* mean_out = mean_t.data<acc>();
  acc* invstd_out = invstd_t.data<acc>();
  for (int64_t c = 0; c < C; ++c) {
    const double mean = sums[c] / n, var = std::max(sums[C + c] / n - mean * mean, 0.0);
    mean_out[c] = acc(mean);
    invstd_out[c] = acc(1.0 / std::sqrt(var + eps));
    if (rm) rm[c] = convert<R>((1.0 - momentum) * convert<double>(rm[c]) + momentum * mean);
    if (rv) rv[c] = convert<R>((1.0 - momentum) * convert<double>(rv[c]) + momentum * var * n / (n - 1));
  }
}

// ---------------------------------------------------------------- layer norm

template <class T, class P>
void ln_forward_cpu(const Tensor& y_t, const Tensor& mean_t, const Tensor& invstd_t, const Tensor& x_t,
                    const Tensor& w_t, const Tensor& b_t, NormShape s, double eps) {
  using acc = acc_t<T>;
  const int64_t C = s.channels, inner = s.inner;
  const T* x = x_t.data<T>();
  T* y = y_t.data<T>();
  const P* w = opt_data<P>(w_t);
  const P* b = opt_data<P>(b_t);
  acc* mean_out = opt_mut<acc>(mean_t);
  acc* invstd_out = opt_mut<acc>(invstd_t);
  const acc inv_c = acc(1) / acc(C);
  if (inner == 1) {
    parallel_for(0, s.outer, std::max<int64_t>(1, kGrain / C), [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        const T* xr = x + r * C;
        T* yr = y + r * C;
        acc sum = 0;
        for (int64_t c = 0; c < C; ++c) sum += static_cast<acc>(xr[c]);
        const acc m = sum * inv_c;
        acc sq = 0;
        for (int64_t c = 0; c < C; ++c) {
          acc d = static_cast<acc>(xr[c]) - m;
          sq += d * d;
        }
        const acc rstd = acc(1) / std::sqrt(sq * inv_c + acc(eps));
        for (int64_t c = 0; c < C; ++c) {
          acc v = (static_cast<acc>(xr[c]) - m) * rstd;
          if (w) v *= static_cast<acc>(w[c]);
          if (b) v += static_cast<acc>(b[c]);
          yr[c] = static_cast<T>(v);
        }
        if (mean_out) mean_out[r] = m;
        if (invstd_out) invstd_out[r] = rstd;
      }
    });
    return;
  }
  const int64_t ntiles = (inner + kTile - 1) / kTile;
  parallel_for(0, s.outer * ntiles, std::max<int64_t>(1, kGrain / (C * kTile)), [&](int64_t tb, int64_t te) {
    acc m[kTile], rstd[kTile];
    for (int64_t t = tb; t < te; ++t) {
      const int64_t o = t / ntiles, i0 = (t - o * ntiles) * kTile, len = std::min(kTile, inner - i0);
      const T* xo = x + o * C * inner + i0;
      T* yo = y + o * C * inner + i0;
      for (int64_t i = 0; i < len; ++i) m[i] = rstd[i] = 0;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < len; ++i) m[i] += static_cast<acc>(xo[c * inner + i]);
      for (int64_t i = 0; i < len; ++i) m[i] *= inv_c;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < len; ++i) {
          acc d = static_cast<acc>(xo[c * inner + i]) - m[i];
          rstd[i] += d * d;
        }
      for (int64_t i = 0; i < len; ++i) rstd[i] = acc(1) / std::sqrt(rstd[i] * inv_c + acc(eps));
      for (int64_t c = 0; c < C; ++c) {
        const acc wc = w ? static_cast<acc>(w[c]) : acc(1), bc = b ? static_cast<acc>(b[c]) : acc(0);
        for (int64_t i = 0; i < len; ++i)
          yo[c * inner + i] = static_cast<T>((static_cast<acc>(xo[c * inner + i]) - m[i]) * rstd[i] * wc + bc);
      }
      const int64_t p0 = o * inner + i0;
      for (int64_t i = 0; i < len; ++i) {
        if (mean_out) mean_out[p0 + i] = m[i];
        if (invstd_out) invstd_out[p0 + i] = rstd[i];
      }
    }
  });
}

template <class T, class P>
void ln_backward_cpu(const Tensor& dx_t, const Tensor& dw_t, const Tensor& db_t, const Tensor& dy_t,
                     const Tensor& x_t, const Tensor& mean_t, const Tensor& invstd_t, const Tensor& w_t,
                     NormShape s) {
  using acc = acc_t<T>;
  const int64_t C = s.channels, inner = s.inner;
  const T* x = x_t.data<T>();
  const T* dy = dy_t.data<T>();
  const P* w = opt_data<P>(w_t);
  const acc* mean = mean_t.data<acc>();
  const acc* invstd = invstd_t.data<acc>();
  const acc inv_c = acc(1) / acc(C);

  if (dw_t.defined() || db_t.defined()) {
    std::vector<acc> s1, s2;
    channel_sums_cpu<acc>(
        s,
        [&](int64_t e, int64_t, int64_t p, acc& a1, acc& a2) {
          acc g = static_cast<acc>(dy[e]);
          a1 += g;
          a2 += g * (static_cast<acc>(x[e]) - mean[p]) * invstd[p];
        },
        s1, s2);
    if (P* dw = opt_mut<P>(dw_t))
      for (int64_t c = 0; c < C; ++c) dw[c] = static_cast<P>(s2[size_t(c)]);
    if (P* db = opt_mut<P>(db_t))
      for (int64_t c = 0; c < C; ++c) db[c] = static_cast<P>(s1[size_t(c)]);
  }
  if (!dx_t.defined()) return;
  T* dx = dx_t.data<T>();
  if (inner == 1) {
    parallel_for(0, s.outer, std::max<int64_t>(1, kGrain / C), [&](int64_t rb, int64_t re) {
      for (int64_t r = rb; r < re; ++r) {
        const T* xr = x + r * C;
        const T* gr = dy + r * C;
        T* dxr = dx + r * C;
        const acc m = mean[r], rstd = invstd[r];
        acc sg = 0, sgx = 0;
        for (int64_t c = 0; c < C; ++c) {
          acc g = static_cast<acc>(gr[c]) * (w ? static_cast<acc>(w[c]) : acc(1));
          sg += g;
          sgx += g * (static_cast<acc>(xr[c]) - m) * rstd;
        }
        sg *= inv_c;
        sgx *= inv_c;
        for (int64_t c = 0; c < C; ++c) {
          acc g = static_cast<acc>(gr[c]) * (w ? static_cast<acc>(w[c]) : acc(1));
          acc xh = (static_cast<acc>(xr[c]) - m) * rstd;
          dxr[c] = static_cast<T>(rstd * (g - sg - xh * sgx));
        }
      }
    });
    return;
  }
  const int64_t ntiles = (inner + kTile - 1) / kTile;
  parallel_for(0, s.outer * ntiles, std::max<int64_t>(1, kGrain / (C * kTile)), [&](int64_t tb, int64_t te) {
    acc sg[kTile], sgx[kTile];
    for (int64_t t = tb; t < te; ++t) {
      const int64_t o = t / ntiles, i0 = (t - o * ntiles) * kTile, len = std::min(kTile, inner - i0);
      const int64_t off = o * C * inner + i0, p0 = o * inner + i0;
      const T* xo = x + off;
      const T* go = dy + off;
      T* dxo = dx + off;
      const acc* m = mean + p0;
      const acc* rstd = invstd + p0;
      for (int64_t i = 0; i < len; ++i) sg[i] = sgx[i] = 0;
      for (int64_t c = 0; c < C; ++c) {
        const acc wc = w ? static_cast<acc>(w[c]) : acc(1);
        for (int64_t i = 0; i < len; ++i) {
          acc g = static_cast<acc>(go[c * inner + i]) * wc;
          sg[i] += g;
          sgx[i] += g * (static_cast<acc>(xo[c * inner + i]) - m[i]) * rstd[i];
        }
      }
      for (int64_t i = 0; i < len; ++i) {
        sg[i] *= inv_c;
        sgx[i] *= inv_c;
      }
      for (int64_t c = 0; c < C; ++c) {
        const acc wc = w ? static_cast<acc>(w[c]) : acc(1);
        for (int64_t i = 0; i < len; ++i) {
          acc g = static_cast<acc>(go[c * inner + i]) * wc;
          acc xh = (static_cast<acc>(xo[c * inner + i]) - m[i]) * rstd[i];
          dxo[c * inner + i] = static_cast<T>(rstd[i] * (g - sg[i] - xh * sgx[i]));
        }
      }
    }
  });
}

void check_kernel_inputs(const char* op, const Tensor& x, NormShape s) {
  UNIREP_CHECK(x.is_contiguous(), op, ": kernel needs a contiguous input, got ", x.str());
  UNIREP_CHECK(x.numel() == s.numel(), op, ": input ", x.str(), " does not match [outer, C, inner] = [", s.outer,
               ", ", s.channels, ", ", s.inner, "]");
}

// A small per-channel tensor the split batch norm passes between its halves.
void check_sums(const char* op, const char* what, const Tensor& t, DType dtype, int64_t numel, const Tensor& x) {
  UNIREP_CHECK(t.defined() && t.is_contiguous() && t.dtype() == dtype && t.numel() == numel && t.device() == x.device(),
               op, ": ", what, " must be a contiguous ", dtype_name(dtype), " tensor of ", numel, " values on ",
               x.str(), "'s device, got ", t.defined() ? t.str() : std::string("undefined"));
}

}  // namespace

DType norm_param_dtype(const char* op, DType x, std::initializer_list<const Tensor*> params) {
  const Tensor* first = nullptr;
  for (const Tensor* p : params) {
    if (!p->defined()) continue;
    if (!first) first = p;
    UNIREP_CHECK(p->dtype() == first->dtype(), op,
                 ": the affine parameters and their gradients must share one dtype, got ", dtype_name(first->dtype()),
                 " and ", dtype_name(p->dtype()));
  }
  if (!first) return x;
  const DType d = first->dtype();
  const bool low = x == DType::BFloat16 || x == DType::Float16;
  UNIREP_CHECK(d == x || (low && d == DType::Float32), op, ": parameters of dtype ", dtype_name(d),
               " next to a ", dtype_name(x), " input; expected ", dtype_name(x), low ? " or float32" : "");
  return d;
}

void batch_norm_stats(const Tensor& mean, const Tensor& invstd, const Tensor& x, NormShape s,
                      const Tensor& running_mean, const Tensor& running_var, double momentum, double eps) {
  check_kernel_inputs("batch_norm", x, s);
  UNIREP_CHECK(s.outer * s.inner > 1, "batch_norm: training needs more than one value per channel, got [outer, C, "
               "inner] = [", s.outer, ", ", s.channels, ", ", s.inner, "]");
  if (x.is_cuda()) return cuda::batch_norm_stats(mean, invstd, x, s, running_mean, running_var, momentum, eps);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    bn_stats_cpu<scalar_t>(mean, invstd, x, s, running_mean, running_var, momentum, eps);
  });
}

void batch_norm_eval_stats(const Tensor& mean, const Tensor& invstd, const Tensor& running_mean,
                           const Tensor& running_var, double eps) {
  UNIREP_CHECK(running_mean.dtype() == running_var.dtype(), "batch_norm: running_mean is ",
               dtype_name(running_mean.dtype()), " but running_var is ", dtype_name(running_var.dtype()));
  if (mean.is_cuda()) return cuda::batch_norm_eval_stats(mean, invstd, running_mean, running_var, eps);
  // mean/invstd have the statistics dtype: float64 stands for float64 inputs, float32 for the rest.
  auto run = [&](auto tag) {
    using T = decltype(tag);
    UNIREP_DISPATCH_FLOATING(running_mean.dtype(), "batch_norm", [&] {
      bn_eval_stats_cpu<T, scalar_t>(mean, invstd, running_mean, running_var, eps);
    });
  };
  if (mean.dtype() == DType::Float64) run(double());
  else run(float());
}

void batch_norm_apply(const Tensor& y, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias, NormShape s) {
  check_kernel_inputs("batch_norm", x, s);
  const DType pdt = norm_param_dtype("batch_norm", x.dtype(), {&weight, &bias});
  if (x.is_cuda()) return cuda::batch_norm_apply(y, x, mean, invstd, weight, bias, s);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    with_norm_param<T>(pdt, [&](auto p) {
      bn_apply_cpu<T, typename decltype(p)::type>(y, x, mean, invstd, weight, bias, s);
    });
  });
}

void batch_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s, bool training) {
  check_kernel_inputs("batch_norm_backward", x, s);
  check_kernel_inputs("batch_norm_backward", dy, s);
  const DType pdt = norm_param_dtype("batch_norm_backward", x.dtype(), {&weight, &dweight, &dbias});
  if (x.is_cuda()) return cuda::batch_norm_backward(dx, dweight, dbias, dy, x, mean, invstd, weight, s, training);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    with_norm_param<T>(pdt, [&](auto p) {
      bn_backward_cpu<T, typename decltype(p)::type>(dx, dweight, dbias, dy, x, mean, invstd, weight, s, training);
    });
  });
}

void batch_norm_partial_sums(const Tensor& sums, const Tensor& x, NormShape s) {
  check_kernel_inputs("batch_norm", x, s);
  check_sums("batch_norm", "sums", sums, DType::Float64, 2 * s.channels + 1, x);
  if (s.outer * s.inner == 0) {
    Tensor(sums).zero_();
    return;
  }
  if (x.is_cuda()) return cuda::batch_norm_partial_sums(sums, x, s);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] { bn_partial_sums_cpu<scalar_t>(sums, x, s); });
}

void batch_norm_stats_from_sums(const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                const Tensor& running_mean, const Tensor& running_var, double momentum, double eps) {
  check_sums("batch_norm", "sums", sums, DType::Float64, 2 * mean.numel() + 1, mean);
  UNIREP_CHECK(!running_mean.defined() || !running_var.defined() || running_mean.dtype() == running_var.dtype(),
               "batch_norm: running_mean is ", dtype_name(running_mean.dtype()), " but running_var is ",
               dtype_name(running_var.dtype()));
  if (mean.is_cuda())
    return cuda::batch_norm_stats_from_sums(mean, invstd, sums, running_mean, running_var, momentum, eps);
  auto run = [&](auto tag) {
    using acc = decltype(tag);
    if (!running_mean.defined() && !running_var.defined())
      return bn_stats_from_sums_cpu<acc, float>(mean, invstd, sums, nullptr, nullptr, momentum, eps);
    const Tensor& any = running_mean.defined() ? running_mean : running_var;
    UNIREP_DISPATCH_FLOATING(any.dtype(), "batch_norm", [&] {
      using R = scalar_t;
      bn_stats_from_sums_cpu<acc, R>(mean, invstd, sums, opt_mut<R>(running_mean), opt_mut<R>(running_var), momentum,
                                     eps);
    });
  };
  if (mean.dtype() == DType::Float64) run(double());
  else run(float());
}

void batch_norm_backward_reduce(const Tensor& grad_sums, const Tensor& dweight, const Tensor& dbias,
                                const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                NormShape s) {
  check_kernel_inputs("batch_norm_backward", x, s);
  check_kernel_inputs("batch_norm_backward", dy, s);
  if (grad_sums.defined())
    check_sums("batch_norm_backward", "grad_sums", grad_sums, norm_stat_dtype(x.dtype()), 2 * s.channels, x);
  const DType pdt = norm_param_dtype("batch_norm_backward", x.dtype(), {&dweight, &dbias});
  if (x.is_cuda()) return cuda::batch_norm_backward_reduce(grad_sums, dweight, dbias, dy, x, mean, invstd, s);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      std::vector<acc> s1, s2;
      bn_grad_sums_cpu<T, typename decltype(p)::type>(s1, s2, dweight, dbias, dy, x, mean, invstd, s);
      if (!grad_sums.defined()) return;
      acc* out = grad_sums.data<acc>();
      std::copy(s1.begin(), s1.end(), out);
      std::copy(s2.begin(), s2.end(), out + s.channels);
    });
  });
}

void batch_norm_backward_elemt(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& mean,
                               const Tensor& invstd, const Tensor& weight, const Tensor& grad_sums,
                               const Tensor& count, NormShape s) {
  check_kernel_inputs("batch_norm_backward", x, s);
  check_kernel_inputs("batch_norm_backward", dy, s);
  check_sums("batch_norm_backward", "grad_sums", grad_sums, norm_stat_dtype(x.dtype()), 2 * s.channels, x);
  check_sums("batch_norm_backward", "count", count, DType::Float64, 1, x);
  const DType pdt = norm_param_dtype("batch_norm_backward", x.dtype(), {&weight});
  if (x.is_cuda()) return cuda::batch_norm_backward_elemt(dx, dy, x, mean, invstd, weight, grad_sums, count, s);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      const acc* gs = grad_sums.data<acc>();
      bn_dx_cpu<T, typename decltype(p)::type>(dx, dy, x, mean, invstd, weight, gs, gs + s.channels,
                                               acc(count.data<double>()[0]), s);
    });
  });
}

void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                        const Tensor& weight, const Tensor& bias, NormShape s, double eps) {
  check_kernel_inputs("layer_norm", x, s);
  const DType pdt = norm_param_dtype("layer_norm", x.dtype(), {&weight, &bias});
  if (x.is_cuda()) return cuda::layer_norm_forward(y, mean, invstd, x, weight, bias, s, eps);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "layer_norm", [&] {
    using T = scalar_t;
    with_norm_param<T>(pdt, [&](auto p) {
      ln_forward_cpu<T, typename decltype(p)::type>(y, mean, invstd, x, weight, bias, s, eps);
    });
  });
}

void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s) {
  check_kernel_inputs("layer_norm_backward", x, s);
  check_kernel_inputs("layer_norm_backward", dy, s);
  const DType pdt = norm_param_dtype("layer_norm_backward", x.dtype(), {&weight, &dweight, &dbias});
  if (x.is_cuda()) return cuda::layer_norm_backward(dx, dweight, dbias, dy, x, mean, invstd, weight, s);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "layer_norm_backward", [&] {
    using T = scalar_t;
    with_norm_param<T>(pdt, [&](auto p) {
      ln_backward_cpu<T, typename decltype(p)::type>(dx, dweight, dbias, dy, x, mean, invstd, weight, s);
    });
  });
}

}  // namespace unirep
