// CPU convolution: direct depthwise kernels and im2col + GEMM (core/ops/gemm_cpu.h) for everything else
// (see core/ops/conv2d.h for the math and the layouts).
#include "core/ops/conv2d.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/ops/gemm_cpu.h"
#include "core/parallel.h"

namespace unirep {

namespace {

// Splits [0, n) into at most num_threads() chunks of at least `min_len` items and runs
// f(chunk, begin, end) on them in parallel. Chunk boundaries depend only on n and the thread count,
// so reductions over per-chunk partials are reproducible run to run.
template <class F> int64_t parallel_chunks(int64_t n, int64_t min_len, const F& f) {
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), n / std::max<int64_t>(min_len, 1)));
  int64_t len = (n + chunks - 1) / std::max<int64_t>(chunks, 1);
  parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t ci = cb; ci < ce; ++ci) {
      int64_t b = ci * len, e = std::min(n, b + len);
      if (b < e) f(ci, b, e);
    }
  });
  return chunks;
}

// Rows of work per parallel_for task: about kGrain multiply-adds.
int64_t grain_for(int64_t work_per_item) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(work_per_item, 1)); }

// The weight [C, 1, R, S] of a depthwise conv as acc_t values in [R, S, C] (channels contiguous).
template <class T> std::vector<acc_t<T>> depthwise_weight_rsc(const T* w, const ConvGeometry& g) {
  const int64_t C = g.C, RS = g.R * g.S;
  std::vector<acc_t<T>> out(size_t(RS * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < RS; ++t) out[size_t(t * C + c)] = static_cast<acc_t<T>>(w[c * RS + t]);
  return out;
}

// ---------------------------------------------------------------- depthwise
// At the small maps of the late stages most taps of a large kernel fall in the padding (a 13 x 13
// kernel on a 4 x 4 map reads at most 16 of its 169 taps per output): the loops visit only the
// taps whose input lies inside, in the same order as a full sweep, so sums are unchanged.

struct TapRange {
  int64_t lo, hi;  // taps [lo, hi)
};

// The taps t of a kernel of k taps at dilation d that read base + t d inside [0, n).
TapRange taps_inside(int64_t base, int64_t d, int64_t k, int64_t n) {
  const int64_t lo = base >= 0 ? 0 : (-base + d - 1) / d;
  const int64_t hi = base >= n ? 0 : std::min(k, (n - 1 - base) / d + 1);
  return {lo, std::max(lo, hi)};
}

// The taps t of a gather whose output position (base - t d) / stride lies in [0, n), given that
// base - t d is a multiple of the stride (checked by the caller): base - t d in [0, (n - 1) stride].
TapRange taps_gathering(int64_t base, int64_t d, int64_t k, int64_t stride, int64_t n) {
  const int64_t top = (n - 1) * stride;
  const int64_t lo = base <= top ? 0 : (base - top + d - 1) / d;
  const int64_t hi = base < 0 ? 0 : std::min(k, base / d + 1);
  return {lo, std::max(lo, hi)};
}

template <class T>
void depthwise_forward_cpu(T* y, const T* x, const T* w, const T* bias, const ConvGeometry& g) {
  using acc = acc_t<T>;
  const int64_t C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, S = g.S;
  std::vector<acc> wt = depthwise_weight_rsc(w, g);
  std::vector<acc> b(size_t(C), acc(0));
  if (bias)
    for (int64_t c = 0; c < C; ++c) b[size_t(c)] = static_cast<acc>(bias[c]);
  parallel_for(0, g.N * Ho, grain_for(Wo * C * g.R * S), [&](int64_t begin, int64_t end) {
    std::vector<acc> buf(size_t(Wo * C));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / Ho, ho = row % Ho;
      for (int64_t wo = 0; wo < Wo; ++wo) std::copy(b.begin(), b.end(), buf.begin() + wo * C);
      const TapRange rr = taps_inside(ho * g.sh - g.ph, g.dh, g.R, H);
      for (int64_t r = rr.lo; r < rr.hi; ++r) {
        const int64_t h = ho * g.sh - g.ph + r * g.dh;
        const T* xrow = x + (n * H + h) * W * C;
        for (int64_t wo = 0; wo < Wo; ++wo) {
          acc* out = buf.data() + wo * C;
          const int64_t w0 = wo * g.sw - g.pw;
          const TapRange sr = taps_inside(w0, g.dw, S, W);
          for (int64_t s = sr.lo; s < sr.hi; ++s) {
            const T* xp = xrow + (w0 + s * g.dw) * C;
            const acc* wp = wt.data() + (r * S + s) * C;
            for (int64_t c = 0; c < C; ++c) out[c] += static_cast<acc>(xp[c]) * wp[c];
          }
        }
      }
      T* yrow = y + row * Wo * C;
      for (int64_t i = 0; i < Wo * C; ++i) yrow[i] = static_cast<T>(buf[size_t(i)]);
    }
  });
}

// dx[n, h, w, c] = sum over the taps (r, s) whose output position (ho, wo) reads (h, w):
// ho sh = h + ph - r dh must be a multiple of sh inside [0, Ho) (likewise for w).
template <class T> void depthwise_backward_input_cpu(T* dx, const T* dy, const T* w, const ConvGeometry& g) {
  using acc = acc_t<T>;
  const int64_t C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, S = g.S;
  std::vector<acc> wt = depthwise_weight_rsc(w, g);
  parallel_for(0, g.N * H, grain_for(W * C * g.R * S), [&](int64_t begin, int64_t end) {
    std::vector<acc> buf(size_t(W * C));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, h = row % H;
      std::fill(buf.begin(), buf.end(), acc(0));
      const TapRange rr = taps_gathering(h + g.ph, g.dh, g.R, g.sh, Ho);
      for (int64_t r = rr.lo; r < rr.hi; ++r) {
        const int64_t t = h + g.ph - r * g.dh;
        if (t % g.sh) continue;
        const T* dyrow = dy + (n * Ho + t / g.sh) * Wo * C;
        for (int64_t wi = 0; wi < W; ++wi) {
          acc* out = buf.data() + wi * C;
          const TapRange sr = taps_gathering(wi + g.pw, g.dw, S, g.sw, Wo);
          for (int64_t s = sr.lo; s < sr.hi; ++s) {
            const int64_t u = wi + g.pw - s * g.dw;
            if (u % g.sw) continue;
            const T* gp = dyrow + (u / g.sw) * C;
            const acc* wp = wt.data() + (r * S + s) * C;
            for (int64_t c = 0; c < C; ++c) out[c] += static_cast<acc>(gp[c]) * wp[c];
          }
        }
      }
      T* dxrow = dx + row * W * C;
      for (int64_t i = 0; i < W * C; ++i) dxrow[i] = static_cast<T>(buf[size_t(i)]);
    }
  });
}

// dw[c, 0, r, s] = sum_{n, ho, wo} dy[n, ho, wo, c] x[n, ho sh - ph + r dh, wo sw - pw + s dw, c]:
// per-chunk partials over (n, ho) rows in [R, S, C], added up in chunk order.
template <class T> void depthwise_backward_weight_cpu(T* dw, const T* dy, const T* x, const ConvGeometry& g) {
  using acc = acc_t<T>;
  const int64_t C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, S = g.S, RS = g.R * g.S;
  const int64_t rows = g.N * Ho;
  const int64_t max_chunks = std::max<int64_t>(1, num_threads());
  std::vector<acc> partial(size_t(max_chunks * RS * C), acc(0));
  const int64_t min_rows = std::max<int64_t>(1, 4 * kGrain / std::max<int64_t>(Wo * C * RS, 1));
  int64_t chunks = parallel_chunks(rows, min_rows, [&](int64_t chunk, int64_t begin, int64_t end) {
    acc* part = partial.data() + chunk * RS * C;
    std::vector<acc> grow(size_t(Wo * C));
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / Ho, ho = row % Ho;
      const T* dyrow = dy + row * Wo * C;
      for (int64_t i = 0; i < Wo * C; ++i) grow[size_t(i)] = static_cast<acc>(dyrow[i]);
      const TapRange rr = taps_inside(ho * g.sh - g.ph, g.dh, g.R, H);
      for (int64_t r = rr.lo; r < rr.hi; ++r) {
        const int64_t h = ho * g.sh - g.ph + r * g.dh;
        const T* xrow = x + (n * H + h) * W * C;
        for (int64_t wo = 0; wo < Wo; ++wo) {
          const acc* gp = grow.data() + wo * C;
          const int64_t w0 = wo * g.sw - g.pw;
          const TapRange sr = taps_inside(w0, g.dw, S, W);
          for (int64_t s = sr.lo; s < sr.hi; ++s) {
            const T* xp = xrow + (w0 + s * g.dw) * C;
            acc* out = part + (r * S + s) * C;
            for (int64_t c = 0; c < C; ++c) out[c] += gp[c] * static_cast<acc>(xp[c]);
          }
        }
      }
    }
  });
  for (int64_t ch = 1; ch < chunks; ++ch)
    for (int64_t i = 0; i < RS * C; ++i) partial[size_t(i)] += partial[size_t(ch * RS * C + i)];
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < RS; ++t) dw[c * RS + t] = static_cast<T>(partial[size_t(t * C + c)]);
}

// db[k] = sum over rows of dy [rows, K].
template <class T> void bias_grad_cpu(T* db, const T* dy, int64_t rows, int64_t K) {
  using acc = acc_t<T>;
  const int64_t max_chunks = std::max<int64_t>(1, num_threads());
  std::vector<acc> partial(size_t(max_chunks * K), acc(0));
  int64_t chunks = parallel_chunks(rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(K, 1)),
                                   [&](int64_t chunk, int64_t begin, int64_t end) {
                                     acc* part = partial.data() + chunk * K;
                                     for (int64_t row = begin; row < end; ++row) {
                                       const T* g = dy + row * K;
                                       for (int64_t k = 0; k < K; ++k) part[k] += static_cast<acc>(g[k]);
                                     }
                                   });
  for (int64_t k = 0; k < K; ++k) {
    acc a = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) a += partial[size_t(ch * K + k)];
    db[k] = static_cast<T>(a);
  }
}

// ---------------------------------------------------------------- dense / grouped: im2col + GEMM

// Shapes of the column matrix: rows (n, ho, wo), columns (g, r, s, c') with c' < Cg.
struct Im2col {
  int64_t Cg, Kg, RSCg, cols;
  int64_t imgs_per_chunk;
  explicit Im2col(const ConvGeometry& g) {
    Cg = g.C / g.groups;
    Kg = g.K / g.groups;
    RSCg = g.R * g.S * Cg;
    cols = g.groups * RSCg;
    constexpr int64_t kBudget = int64_t(1) << 22;  // column-buffer elements per chunk (16 MiB of float)
    imgs_per_chunk = std::clamp<int64_t>(kBudget / std::max<int64_t>(g.Ho * g.Wo * cols, 1), 1, std::max<int64_t>(g.N, 1));
    UNIREP_CHECK(imgs_per_chunk * g.Ho * g.Wo * cols < INT_MAX && g.C < INT_MAX,
                 "conv2d: one image's column matrix (", g.Ho * g.Wo, " x ", cols,
                 ") is too large for 32-bit BLAS indices");
  }
};

// col[(n, ho, wo), (g, r, s, c')] for images [n0, n0 + nimg).
template <class T> void im2col(T* col, const T* x, int64_t n0, int64_t nimg, const ConvGeometry& g, const Im2col& m) {
  const int64_t H = g.H, W = g.W, C = g.C, Ho = g.Ho, Wo = g.Wo, Cg = m.Cg;
  parallel_for(0, nimg * Ho, grain_for(Wo * m.cols), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = n0 + row / Ho, ho = row % Ho;
      for (int64_t wo = 0; wo < Wo; ++wo) {
        T* dst = col + (row * Wo + wo) * m.cols;
        for (int64_t r = 0; r < g.R; ++r) {
          const int64_t h = ho * g.sh - g.ph + r * g.dh;
          for (int64_t s = 0; s < g.S; ++s) {
            const int64_t wi = wo * g.sw - g.pw + s * g.dw;
            const bool inside = h >= 0 && h < H && wi >= 0 && wi < W;
            const T* src = inside ? x + ((n * H + h) * W + wi) * C : nullptr;
            for (int64_t grp = 0; grp < g.groups; ++grp) {
              T* d = dst + grp * m.RSCg + (r * g.S + s) * Cg;
              if (inside)
                std::memcpy(d, src + grp * Cg, size_t(Cg) * sizeof(T));
              else
                std::fill(d, d + Cg, T(0));
            }
          }
        }
      }
    }
  });
}

// dx for images [n0, n0 + nimg) from dcol (the chunk's rows): a gather over the taps reading each pixel.
template <class T>
void col2im(T* dx, const T* dcol, int64_t n0, int64_t nimg, const ConvGeometry& g, const Im2col& m) {
  const int64_t H = g.H, W = g.W, C = g.C, Ho = g.Ho, Wo = g.Wo, Cg = m.Cg;
  parallel_for(0, nimg * H, grain_for(W * m.cols), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H, h = row % H;
      T* dxrow = dx + ((n0 + n) * H + h) * W * C;
      std::fill(dxrow, dxrow + W * C, T(0));
      for (int64_t r = 0; r < g.R; ++r) {
        const int64_t t = h + g.ph - r * g.dh;
        if (t < 0) break;
        if (t % g.sh) continue;
        const int64_t ho = t / g.sh;
        if (ho >= Ho) continue;
        for (int64_t wi = 0; wi < W; ++wi) {
          T* out = dxrow + wi * C;
          for (int64_t s = 0; s < g.S; ++s) {
            const int64_t u = wi + g.pw - s * g.dw;
            if (u < 0) break;
            if (u % g.sw) continue;
            const int64_t wo = u / g.sw;
            if (wo >= Wo) continue;
            const T* src = dcol + ((n * Ho + ho) * Wo + wo) * m.cols + (r * g.S + s) * Cg;
            for (int64_t grp = 0; grp < g.groups; ++grp) {
              const T* sp = src + grp * m.RSCg;
              T* op = out + grp * Cg;
              for (int64_t c = 0; c < Cg; ++c) op[c] += sp[c];
            }
          }
        }
      }
    }
  });
}

// The weight [K, Cg, R, S] as the GEMM operand [K, R, S, Cg] (one row of RSCg per output channel).
template <class T> std::vector<T> weight_krsc(const T* w, const ConvGeometry& g, const Im2col& m) {
  const int64_t RS = g.R * g.S;
  std::vector<T> out(size_t(g.K * m.RSCg));
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < m.Cg; ++c)
      for (int64_t t = 0; t < RS; ++t) out[size_t((k * RS + t) * m.Cg + c)] = w[(k * m.Cg + c) * RS + t];
  return out;
}

// Uninitialised scratch of n elements from the tensor allocator, whose cache spares the page faults
// (and the zeroing of a std::vector) of a fresh column buffer per call.
template <class T> Tensor scratch(int64_t n) { return Tensor::empty({n}, DTypeOf<T>::value); }

template <class T>
void dense_forward_cpu(T* y, const T* x, const T* w, const T* bias, const ConvGeometry& g) {
  const Im2col m(g);
  const std::vector<T> wm = weight_krsc(w, g, m);
  const bool direct = g.pointwise();
  const Tensor col_buf = scratch<T>(direct ? 0 : m.imgs_per_chunk * g.Ho * g.Wo * m.cols);
  T* col = col_buf.data<T>();
  for (int64_t n0 = 0; n0 < g.N; n0 += m.imgs_per_chunk) {
    const int64_t nimg = std::min(m.imgs_per_chunk, g.N - n0);
    const int64_t rows = nimg * g.Ho * g.Wo;
    const T* a = direct ? x + n0 * g.H * g.W * g.C : col;
    if (!direct) im2col(col, x, n0, nimg, g, m);
    T* yc = y + n0 * g.Ho * g.Wo * g.K;
    for (int64_t grp = 0; grp < g.groups; ++grp)
      cpu_gemm(false, true, rows, m.Kg, m.RSCg, T(1), a + grp * m.RSCg, m.cols, wm.data() + grp * m.Kg * m.RSCg,
               m.RSCg, T(0), yc + grp * m.Kg, g.K);
    if (bias) {
      parallel_for(0, rows, grain_for(g.K), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t k = 0; k < g.K; ++k) yc[i * g.K + k] += bias[k];
      });
    }
  }
}

template <class T> void dense_backward_input_cpu(T* dx, const T* dy, const T* w, const ConvGeometry& g) {
  const Im2col m(g);
  const std::vector<T> wm = weight_krsc(w, g, m);
  const bool direct = g.pointwise();
  const Tensor dcol_buf = scratch<T>(direct ? 0 : m.imgs_per_chunk * g.Ho * g.Wo * m.cols);
  T* dcol = dcol_buf.data<T>();
  for (int64_t n0 = 0; n0 < g.N; n0 += m.imgs_per_chunk) {
    const int64_t nimg = std::min(m.imgs_per_chunk, g.N - n0);
    const int64_t rows = nimg * g.Ho * g.Wo;
    const T* gc = dy + n0 * g.Ho * g.Wo * g.K;
    T* out = direct ? dx + n0 * g.H * g.W * g.C : dcol;
    for (int64_t grp = 0; grp < g.groups; ++grp)
      cpu_gemm(false, false, rows, m.RSCg, m.Kg, T(1), gc + grp * m.Kg, g.K, wm.data() + grp * m.Kg * m.RSCg,
               m.RSCg, T(0), out + grp * m.RSCg, m.cols);
    if (!direct) col2im(dx, dcol, n0, nimg, g, m);
  }
}

template <class T> void dense_backward_weight_cpu(T* dw, const T* dy, const T* x, const ConvGeometry& g) {
  const Im2col m(g);
  std::vector<T> dwm(size_t(g.K * m.RSCg), T(0));  // [K, R, S, Cg]
  const bool direct = g.pointwise();
  const Tensor col_buf = scratch<T>(direct ? 0 : m.imgs_per_chunk * g.Ho * g.Wo * m.cols);
  T* col = col_buf.data<T>();
  for (int64_t n0 = 0; n0 < g.N; n0 += m.imgs_per_chunk) {
    const int64_t nimg = std::min(m.imgs_per_chunk, g.N - n0);
    const int64_t rows = nimg * g.Ho * g.Wo;
    const T* b = direct ? x + n0 * g.H * g.W * g.C : col;
    if (!direct) im2col(col, x, n0, nimg, g, m);
    const T* gc = dy + n0 * g.Ho * g.Wo * g.K;
    for (int64_t grp = 0; grp < g.groups; ++grp)
      cpu_gemm(true, false, m.Kg, m.RSCg, rows, T(1), gc + grp * m.Kg, g.K, b + grp * m.RSCg, m.cols,
               T(n0 == 0 ? 0 : 1), dwm.data() + grp * m.Kg * m.RSCg, m.RSCg);
  }
  const int64_t RS = g.R * g.S;
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < m.Cg; ++c)
      for (int64_t t = 0; t < RS; ++t) dw[(k * m.Cg + c) * RS + t] = dwm[size_t((k * RS + t) * m.Cg + c)];
}

template <class T> const T* ptr_or_null(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

bool is_blas_dtype(DType d) { return d == DType::Float32 || d == DType::Float64; }
Tensor as_float(const Tensor& t) { return t.defined() ? t.to(DType::Float32) : Tensor(); }

void check_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    UNIREP_CHECK(!t->defined() || t->is_contiguous(), op, ": kernels need contiguous operands, got strides ",
                 shape_str(t->strides()), " for shape ", shape_str(t->shape()));
}

}  // namespace

void conv2d_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvGeometry& g) {
  check_contiguous("conv2d", {&y, &x, &w, &bias});
  if (y.numel() == 0) return;
  if (y.is_cuda()) return cuda::conv2d_forward(y, x, w, bias, g);
  if (g.depthwise()) {
    UNIREP_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
      depthwise_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), w.data<scalar_t>(), ptr_or_null<scalar_t>(bias), g);
    });
  } else if (is_blas_dtype(x.dtype())) {
    UNIREP_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
      if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>)
        dense_forward_cpu(y.data<scalar_t>(), x.data<scalar_t>(), w.data<scalar_t>(), ptr_or_null<scalar_t>(bias), g);
    });
  } else {
    Tensor y32 = Tensor::empty(y.shape(), DType::Float32);
    conv2d_forward(y32, as_float(x), as_float(w), as_float(bias), g);
    Tensor(y).copy_(y32);
  }
}

void conv2d_backward_input(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g) {
  check_contiguous("conv2d backward", {&dx, &dy, &w});
  if (dx.numel() == 0) return;
  if (dy.numel() == 0) {
    Tensor(dx).zero_();
    return;
  }
  if (dx.is_cuda()) return cuda::conv2d_backward_input(dx, dy, w, g);
  if (g.depthwise()) {
    UNIREP_DISPATCH_FLOATING(dy.dtype(), "conv2d backward", [&] {
      depthwise_backward_input_cpu(dx.data<scalar_t>(), dy.data<scalar_t>(), w.data<scalar_t>(), g);
    });
  } else if (is_blas_dtype(dy.dtype())) {
    UNIREP_DISPATCH_FLOATING(dy.dtype(), "conv2d backward", [&] {
      if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>)
        dense_backward_input_cpu(dx.data<scalar_t>(), dy.data<scalar_t>(), w.data<scalar_t>(), g);
    });
  } else {
    Tensor dx32 = Tensor::empty(dx.shape(), DType::Float32);
    conv2d_backward_input(dx32, as_float(dy), as_float(w), g);
    Tensor(dx).copy_(dx32);
  }
}

void conv2d_backward_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g) {
  check_contiguous("conv2d backward", {&dw, &dy, &x});
  if (dw.numel() == 0) return;
  if (dy.numel() == 0) {
    Tensor(dw).zero_();
    return;
  }
  if (dw.is_cuda()) return cuda::conv2d_backward_weight(dw, dy, x, g);
  if (g.depthwise()) {
    UNIREP_DISPATCH_FLOATING(dy.dtype(), "conv2d backward", [&] {
      depthwise_backward_weight_cpu(dw.data<scalar_t>(), dy.data<scalar_t>(), x.data<scalar_t>(), g);
    });
  } else if (is_blas_dtype(dy.dtype())) {
    UNIREP_DISPATCH_FLOATING(dy.dtype(), "conv2d backward", [&] {
      if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>)
        dense_backward_weight_cpu(dw.data<scalar_t>(), dy.data<scalar_t>(), x.data<scalar_t>(), g);
    });
  } else {
    Tensor dw32 = Tensor::empty(dw.shape(), DType::Float32);
    conv2d_backward_weight(dw32, as_float(dy), as_float(x), g);
    Tensor(dw).copy_(dw32);
  }
}

void conv2d_backward_bias(const Tensor& db, const Tensor& dy) {
  check_contiguous("conv2d backward", {&db, &dy});
  if (db.numel() == 0) return;
  if (db.is_cuda()) return cuda::conv2d_backward_bias(db, dy);
  const int64_t K = db.numel(), rows = dy.numel() / K;
  UNIREP_DISPATCH_FLOATING(dy.dtype(), "conv2d backward", [&] {
    bias_grad_cpu(db.data<scalar_t>(), dy.data<scalar_t>(), rows, K);
  });
}

}  // namespace unirep
