// CPU softmax / log-softmax and cross-entropy kernels (the math is in softmax.h).
//
// inner == 1 (softmax over the last dim, the common case): rows in parallel, each row walked
// contiguously (max, sum of exponentials, write). inner > 1: the [C, inner] block of one outer index
// is cut into tiles of up to 64 inner positions; a tile keeps its 64 running maxima and sums in
// registers/L1 while the C rows of the tile stream through contiguously, so no strided walks.
#include "core/ops/softmax.h"

#include <algorithm>
#include <limits>
#include <type_traits>

#include "core/ops/math.h"
#include "core/parallel.h"

namespace unirep {

namespace {

template <class acc> inline acc max_nan(acc a, acc v) { return (v > a || v != v) ? v : a; }

constexpr int64_t kTile = 64;

template <class T> void softmax_rows(T* y, const T* x, int64_t rows, int64_t C, bool log) {
  using acc = acc_t<T>;
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* xr = x + i * C;
      T* yr = y + i * C;
      acc m = -std::numeric_limits<acc>::infinity();
      for (int64_t c = 0; c < C; ++c) m = max_nan(m, static_cast<acc>(xr[c]));
      acc s = 0;
      if (log) {
        for (int64_t c = 0; c < C; ++c) s += math::exp(static_cast<acc>(xr[c]) - m);
        acc ls = math::log(s);  // (x - m) - log S: exact shift first, better than x - (m + log S)
        for (int64_t c = 0; c < C; ++c) yr[c] = static_cast<T>((static_cast<acc>(xr[c]) - m) - ls);
      } else if constexpr (std::is_same_v<T, acc>) {
        // Full-precision storage: keep the exponentials in y and rescale them.
        for (int64_t c = 0; c < C; ++c) {
          acc v = math::exp(xr[c] - m);
          yr[c] = v;
          s += v;
        }
        acc inv = acc(1) / s;
        for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
      } else {
        for (int64_t c = 0; c < C; ++c) s += math::exp(static_cast<acc>(xr[c]) - m);
        acc inv = acc(1) / s;
        for (int64_t c = 0; c < C; ++c) yr[c] = static_cast<T>(math::exp(static_cast<acc>(xr[c]) - m) * inv);
      }
    }
  });
}

// Calls f(base, w) for every tile of the [outer, C, inner] layout: `base` is the offset of the tile's
// first element (c = 0), `w` its width (<= kTile) in inner positions.
template <class F> void for_each_tile(int64_t outer, int64_t C, int64_t inner, const F& f) {
  int64_t tiles_per_outer = (inner + kTile - 1) / kTile;
  int64_t tiles = outer * tiles_per_outer;
  int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(C * std::min(inner, kTile), 1));
  parallel_for(0, tiles, grain, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t o = t / tiles_per_outer, i0 = (t % tiles_per_outer) * kTile;
      f(o * C * inner + i0, std::min(kTile, inner - i0));
    }
  });
}

template <class T> void softmax_tiles(T* y, const T* x, int64_t outer, int64_t C, int64_t inner, bool log) {
  using acc = acc_t<T>;
  for_each_tile(outer, C, inner, [&](int64_t base, int64_t w) {
    acc m[kTile], s[kTile];
    for (int64_t i = 0; i < w; ++i) {
      m[i] = -std::numeric_limits<acc>::infinity();
      s[i] = 0;
    }
    for (int64_t c = 0; c < C; ++c) {
      const T* xr = x + base + c * inner;
      for (int64_t i = 0; i < w; ++i) m[i] = max_nan(m[i], static_cast<acc>(xr[i]));
    }
    for (int64_t c = 0; c < C; ++c) {
      const T* xr = x + base + c * inner;
      for (int64_t i = 0; i < w; ++i) s[i] += math::exp(static_cast<acc>(xr[i]) - m[i]);
    }
    for (int64_t i = 0; i < w; ++i) s[i] = log ? math::log(s[i]) : acc(1) / s[i];
    for (int64_t c = 0; c < C; ++c) {
      const T* xr = x + base + c * inner;
      T* yr = y + base + c * inner;
      if (log) {
        for (int64_t i = 0; i < w; ++i) yr[i] = static_cast<T>((static_cast<acc>(xr[i]) - m[i]) - s[i]);
      } else {
        for (int64_t i = 0; i < w; ++i) yr[i] = static_cast<T>(math::exp(static_cast<acc>(xr[i]) - m[i]) * s[i]);
      }
    }
  });
}

template <class T>
void softmax_backward_rows(T* dx, const T* dy, const T* y, int64_t rows, int64_t C, bool log) {
  using acc = acc_t<T>;
  parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* dyr = dy + i * C;
      const T* yr = y + i * C;
      T* dxr = dx + i * C;
      acc s = 0;
      if (log) {
        for (int64_t c = 0; c < C; ++c) s += static_cast<acc>(dyr[c]);
        for (int64_t c = 0; c < C; ++c)
          dxr[c] = static_cast<T>(static_cast<acc>(dyr[c]) - math::exp(static_cast<acc>(yr[c])) * s);
      } else {
        for (int64_t c = 0; c < C; ++c) s += static_cast<acc>(dyr[c]) * static_cast<acc>(yr[c]);
        for (int64_t c = 0; c < C; ++c)
          dxr[c] = static_cast<T>(static_cast<acc>(yr[c]) * (static_cast<acc>(dyr[c]) - s));
      }
    }
  });
}

template <class T>
void softmax_backward_tiles(T* dx, const T* dy, const T* y, int64_t outer, int64_t C, int64_t inner, bool log) {
  using acc = acc_t<T>;
  for_each_tile(outer, C, inner, [&](int64_t base, int64_t w) {
    acc s[kTile];
    for (int64_t i = 0; i < w; ++i) s[i] = 0;
    for (int64_t c = 0; c < C; ++c) {
      const T* dyr = dy + base + c * inner;
      const T* yr = y + base + c * inner;
      if (log) {
        for (int64_t i = 0; i < w; ++i) s[i] += static_cast<acc>(dyr[i]);
      } else {
        for (int64_t i = 0; i < w; ++i) s[i] += static_cast<acc>(dyr[i]) * static_cast<acc>(yr[i]);
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      const T* dyr = dy + base + c * inner;
      const T* yr = y + base + c * inner;
      T* dxr = dx + base + c * inner;
      if (log) {
        for (int64_t i = 0; i < w; ++i)
          dxr[i] = static_cast<T>(static_cast<acc>(dyr[i]) - math::exp(static_cast<acc>(yr[i])) * s[i]);
      } else {
        for (int64_t i = 0; i < w; ++i)
          dxr[i] = static_cast<T>(static_cast<acc>(yr[i]) * (static_cast<acc>(dyr[i]) - s[i]));
      }
    }
  });
}

// Row maximum and sum of exp(x - max) of one contiguous row.
template <class T, class acc> inline void row_max_sum(const T* xr, int64_t C, acc& m, acc& s) {
  m = -std::numeric_limits<acc>::infinity();
  for (int64_t c = 0; c < C; ++c) m = max_nan(m, static_cast<acc>(xr[c]));
  s = 0;
  for (int64_t c = 0; c < C; ++c) s += math::exp(static_cast<acc>(xr[c]) - m);
}

int64_t row_grain(int64_t C) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)); }

template <class T, class I>
void ce_forward(acc_t<T>* loss, acc_t<T>* lse, acc_t<T>* kept, const T* x, const I* target, int64_t N, int64_t C,
                int64_t ignore_index, double smoothing) {
  using acc = acc_t<T>;
  const acc e = acc(smoothing), keep = acc(1.0 - smoothing), e_over_c = acc(smoothing / double(C));
  parallel_for(0, N, row_grain(C), [&](int64_t b, int64_t end) {
    for (int64_t i = b; i < end; ++i) {
      int64_t t = int64_t(target[i]);
      kept[i] = t == ignore_index ? acc(0) : acc(1);
      if (t == ignore_index) {
        loss[i] = 0;
        lse[i] = 0;
        continue;
      }
      const T* xr = x + i * C;
      acc m, s;
      row_max_sum(xr, C, m, s);
      acc log_s = math::log(s);
      acc l = log_s - keep * (static_cast<acc>(xr[t]) - m);
      if (e != acc(0)) {
        acc shifted = 0;
        for (int64_t c = 0; c < C; ++c) shifted += static_cast<acc>(xr[c]) - m;
        l -= e_over_c * shifted;
      }
      loss[i] = l;
      lse[i] = m + log_s;
    }
  });
}

template <class T, class I>
void ce_backward(T* dx, const T* grad, int64_t grad_stride, const acc_t<T>* divisor, const T* x, const acc_t<T>* lse,
                 const I* target, int64_t N, int64_t C, int64_t ignore_index, double smoothing) {
  using acc = acc_t<T>;
  const acc keep = acc(1.0 - smoothing), e_over_c = acc(smoothing / double(C));
  const acc scale = divisor == nullptr ? acc(1) : *divisor == acc(0) ? acc(0) : acc(1) / *divisor;
  parallel_for(0, N, row_grain(C), [&](int64_t b, int64_t end) {
    for (int64_t i = b; i < end; ++i) {
      int64_t t = int64_t(target[i]);
      T* dxr = dx + i * C;
      if (t == ignore_index) {
        for (int64_t c = 0; c < C; ++c) dxr[c] = static_cast<T>(acc(0));
        continue;
      }
      const T* xr = x + i * C;
      acc g = static_cast<acc>(grad[i * grad_stride]) * scale, l = lse[i];
      for (int64_t c = 0; c < C; ++c) {
        acc q = c == t ? keep + e_over_c : e_over_c;
        dxr[c] = static_cast<T>(g * (math::exp(static_cast<acc>(xr[c]) - l) - q));
      }
    }
  });
}

template <class T>
void soft_ce_forward(acc_t<T>* loss, acc_t<T>* lse, acc_t<T>* qsum, const T* x, const T* q, int64_t N, int64_t C) {
  using acc = acc_t<T>;
  parallel_for(0, N, row_grain(C), [&](int64_t b, int64_t end) {
    for (int64_t i = b; i < end; ++i) {
      const T* xr = x + i * C;
      const T* qr = q + i * C;
      acc m, s;
      row_max_sum(xr, C, m, s);
      acc log_s = math::log(s), l = 0, qs = 0;
      for (int64_t c = 0; c < C; ++c) {
        acc qc = static_cast<acc>(qr[c]);
        l += qc * (log_s - (static_cast<acc>(xr[c]) - m));
        qs += qc;
      }
      loss[i] = l;
      lse[i] = m + log_s;
      qsum[i] = qs;
    }
  });
}

template <class T>
void soft_ce_backward(T* dx, T* dq, const T* grad, int64_t grad_stride, acc_t<T> scale, const T* x, const T* q,
                      const acc_t<T>* lse, const acc_t<T>* qsum, int64_t N, int64_t C) {
  using acc = acc_t<T>;
  parallel_for(0, N, row_grain(C), [&](int64_t b, int64_t end) {
    for (int64_t i = b; i < end; ++i) {
      const T* xr = x + i * C;
      const T* qr = q + i * C;
      acc g = static_cast<acc>(grad[i * grad_stride]) * scale, l = lse[i], qs = qsum[i];
      if (dx) {
        T* dxr = dx + i * C;
        for (int64_t c = 0; c < C; ++c)
          dxr[c] = static_cast<T>(g * (math::exp(static_cast<acc>(xr[c]) - l) * qs - static_cast<acc>(qr[c])));
      }
      if (dq) {
        T* dqr = dq + i * C;
        for (int64_t c = 0; c < C; ++c) dqr[c] = static_cast<T>(g * (l - static_cast<acc>(xr[c])));
      }
    }
  });
}

void check_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    UNIREP_CHECK(!t->defined() || t->is_contiguous(), op, ": kernel operands must be contiguous, got ", t->str());
}

// Stride (0 or 1) with which the kernels read the upstream gradient of N rows.
int64_t grad_stride(const char* op, const Tensor& grad, int64_t N) {
  UNIREP_CHECK(grad.numel() == N || grad.numel() == 1, op, ": upstream gradient of ", grad.numel(),
               " elements for ", N, " rows");
  UNIREP_CHECK(grad.is_contiguous(), op, ": upstream gradient must be contiguous, got ", grad.str());
  return grad.numel() == N && N != 1 ? 1 : 0;
}

}  // namespace

void softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t C, int64_t inner, bool log) {
  check_contiguous("softmax", {&y, &x});
  if (y.numel() == 0) return;
  if (y.is_cuda()) return cuda::softmax_forward(y, x, outer, C, inner, log);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "softmax", [&] {
    if (inner == 1)
      softmax_rows(y.data<scalar_t>(), x.data<scalar_t>(), outer, C, log);
    else
      softmax_tiles(y.data<scalar_t>(), x.data<scalar_t>(), outer, C, inner, log);
  });
}

void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t C,
                      int64_t inner, bool log) {
  check_contiguous("softmax_backward", {&dx, &dy, &y});
  if (dx.numel() == 0) return;
  if (dx.is_cuda()) return cuda::softmax_backward(dx, dy, y, outer, C, inner, log);
  UNIREP_DISPATCH_FLOATING(y.dtype(), "softmax_backward", [&] {
    if (inner == 1)
      softmax_backward_rows(dx.data<scalar_t>(), dy.data<scalar_t>(), y.data<scalar_t>(), outer, C, log);
    else
      softmax_backward_tiles(dx.data<scalar_t>(), dy.data<scalar_t>(), y.data<scalar_t>(), outer, C, inner, log);
  });
}

void check_class_targets(const char* op, const Tensor& target, int64_t classes, int64_t ignore_index) {
  UNIREP_CHECK(!target.is_cuda(), op, ": check_class_targets reads targets on the host, got ", target.str());
  const Tensor host = target.detach().contiguous();
  UNIREP_DISPATCH_INDEX(host.dtype(), op, [&] {
    const index_t* t = host.data<index_t>();
    for (int64_t i = 0; i < host.numel(); ++i) {
      int64_t v = int64_t(t[i]);
      if (v == ignore_index) continue;
      UNIREP_CHECK(v >= 0 && v < classes, op, ": target[", i, "] = ", v, " is out of range [0, ", classes,
                   ") (ignore_index ", ignore_index, ")");
    }
  });
}

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& kept, const Tensor& logits,
                           const Tensor& target, int64_t ignore_index, double label_smoothing) {
  check_contiguous("cross_entropy", {&loss, &lse, &kept, &logits, &target});
  if (logits.is_cuda())
    return cuda::cross_entropy_forward(loss, lse, kept, logits, target, ignore_index, label_smoothing);
  int64_t N = logits.size(0), C = logits.size(1);
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
    using acc = acc_t<scalar_t>;
    UNIREP_DISPATCH_INDEX(target.dtype(), "cross_entropy", [&] {
      ce_forward(loss.data<acc>(), lse.data<acc>(), kept.data<acc>(), logits.data<scalar_t>(), target.data<index_t>(), N, C,
                 ignore_index, label_smoothing);
    });
  });
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& grad, const Tensor& divisor, const Tensor& logits,
                            const Tensor& lse, const Tensor& target, int64_t ignore_index, double label_smoothing) {
  check_contiguous("cross_entropy_backward", {&dlogits, &logits, &lse, &target});
  int64_t N = logits.size(0), C = logits.size(1);
  int64_t gs = grad_stride("cross_entropy_backward", grad, N);
  if (logits.is_cuda())
    return cuda::cross_entropy_backward(dlogits, grad, divisor, logits, lse, target, ignore_index, label_smoothing);
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_backward", [&] {
    using acc = acc_t<scalar_t>;
    UNIREP_DISPATCH_INDEX(target.dtype(), "cross_entropy_backward", [&] {
      ce_backward(dlogits.data<scalar_t>(), grad.data<scalar_t>(), gs, divisor.defined() ? divisor.data<acc>() : nullptr,
                  logits.data<scalar_t>(), lse.data<acc>(), target.data<index_t>(), N, C, ignore_index, label_smoothing);
    });
  });
}

void soft_cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& qsum, const Tensor& logits,
                                const Tensor& q) {
  check_contiguous("cross_entropy_soft", {&loss, &lse, &qsum, &logits, &q});
  if (logits.is_cuda()) return cuda::soft_cross_entropy_forward(loss, lse, qsum, logits, q);
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_soft", [&] {
    using acc = acc_t<scalar_t>;
    soft_ce_forward(loss.data<acc>(), lse.data<acc>(), qsum.data<acc>(), logits.data<scalar_t>(),
                    q.data<scalar_t>(), logits.size(0), logits.size(1));
  });
}

void soft_cross_entropy_backward(const Tensor& dlogits, const Tensor& dq, const Tensor& grad, double scale,
                                 const Tensor& logits, const Tensor& q, const Tensor& lse, const Tensor& qsum) {
  check_contiguous("cross_entropy_soft_backward", {&dlogits, &dq, &logits, &q, &lse, &qsum});
  int64_t N = logits.size(0), C = logits.size(1);
  int64_t gs = grad_stride("cross_entropy_soft_backward", grad, N);
  if (logits.is_cuda()) return cuda::soft_cross_entropy_backward(dlogits, dq, grad, scale, logits, q, lse, qsum);
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_soft_backward", [&] {
    using acc = acc_t<scalar_t>;
    soft_ce_backward(dlogits.defined() ? dlogits.data<scalar_t>() : nullptr,
                     dq.defined() ? dq.data<scalar_t>() : nullptr, grad.data<scalar_t>(), gs, acc(scale),
                     logits.data<scalar_t>(), q.data<scalar_t>(), lse.data<acc>(), qsum.data<acc>(), N, C);
  });
}

}  // namespace unirep
