// CPU pooling and resizing kernels (the math is in core/ops/pool.h). NHWC: each thread takes a range of
// pixels (n, h, w) and runs the inner loop over the contiguous channels, accumulating a whole channel
// row in an acc_t buffer, so every load is a unit-stride sweep. Backward passes gather from the input
// side (each input pixel sums the output gradients that reference it): no races, no atomics, and the
// sum order is fixed, so results are deterministic.
#include "core/ops/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"

namespace unirep {

namespace {

using namespace pool_detail;

// Items per parallel chunk when each item costs about `work` element operations.
int64_t grain_for(int64_t work) { return std::max<int64_t>(1, kGrain / std::max<int64_t>(work, 1)); }

void check_operands(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    UNIREP_CHECK(t->numel() == 0 || t->is_contiguous(), op, ": kernel operands must be contiguous, got ", t->str());
}

struct Dims {
  int64_t N, H, W, C;
  explicit Dims(const Tensor& t) : N(t.size(0)), H(t.size(1)), W(t.size(2)), C(t.size(3)) {}
};

// ---- global average pool

template <class T> void global_avg_pool_forward_cpu(T* out, const T* x, const Dims& d) {
  using acc = acc_t<T>;
  const int64_t HW = d.H * d.W;
  constexpr int64_t kBlock = 256;  // channels per task: the accumulator row stays in L1
  const int64_t cblocks = (d.C + kBlock - 1) / kBlock;
  parallel_for(0, d.N * cblocks, grain_for(HW * std::min(d.C, kBlock)), [&](int64_t b, int64_t e) {
    acc sum[kBlock];
    for (int64_t t = b; t < e; ++t) {
      int64_t n = t / cblocks, c0 = (t % cblocks) * kBlock, cn = std::min(kBlock, d.C - c0);
      for (int64_t c = 0; c < cn; ++c) sum[c] = acc(0);
      const T* xp = x + n * HW * d.C + c0;
      for (int64_t p = 0; p < HW; ++p, xp += d.C)
        for (int64_t c = 0; c < cn; ++c) sum[c] += static_cast<acc>(xp[c]);
      for (int64_t c = 0; c < cn; ++c) out[n * d.C + c0 + c] = static_cast<T>(sum[c] / acc(HW));
    }
  });
}

template <class T> void global_avg_pool_backward_cpu(T* dx, const T* dy, const Dims& d) {
  using acc = acc_t<T>;
  const int64_t HW = d.H * d.W;
  parallel_for(0, d.N * HW, grain_for(d.C), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      const T* g = dy + (p / HW) * d.C;
      T* o = dx + p * d.C;
      for (int64_t c = 0; c < d.C; ++c) o[c] = static_cast<T>(static_cast<acc>(g[c]) / acc(HW));
    }
  });
}

// ---- max pool

template <class T>
void max_pool2d_forward_cpu(T* out, int64_t* ind, const T* x, const Dims& in, int64_t OH, int64_t OW,
                            const PoolWindow& k) {
  using acc = acc_t<T>;
  const int64_t C = in.C;
  parallel_for(0, in.N * OH * OW, grain_for(k.kernel_h * k.kernel_w * C), [&](int64_t b, int64_t e) {
    std::vector<acc> best(static_cast<size_t>(C));
    std::vector<int64_t> arg(static_cast<size_t>(C));
    for (int64_t p = b; p < e; ++p) {
      int64_t n = p / (OH * OW), oh = (p / OW) % OH, ow = p % OW;
      int64_t h0 = oh * k.stride_h - k.pad_h, w0 = ow * k.stride_w - k.pad_w;
      int64_t hs = h0, ws = w0;  // first valid row / column of the window
      while (hs < 0) hs += k.dilation_h;
      while (ws < 0) ws += k.dilation_w;
      std::fill(best.begin(), best.end(), -std::numeric_limits<acc>::infinity());
      // -1 for a window lying wholly in the padding (possible with a large dilation): its output is -inf
      // and it passes no gradient.
      std::fill(arg.begin(), arg.end(), hs < in.H && ws < in.W ? hs * in.W + ws : int64_t(-1));
      for (int64_t i = 0; i < k.kernel_h; ++i) {
        int64_t h = h0 + i * k.dilation_h;
        if (h < 0 || h >= in.H) continue;
        for (int64_t j = 0; j < k.kernel_w; ++j) {
          int64_t w = w0 + j * k.dilation_w;
          if (w < 0 || w >= in.W) continue;
          const T* xp = x + ((n * in.H + h) * in.W + w) * C;
          const int64_t idx = h * in.W + w;
          for (int64_t c = 0; c < C; ++c) {
            acc v = static_cast<acc>(xp[c]);
            if (v > best[size_t(c)] || std::isnan(v)) {
              best[size_t(c)] = v;
              arg[size_t(c)] = idx;
            }
          }
        }
      }
      T* op = out + p * C;
      int64_t* ip = ind + p * C;
      for (int64_t c = 0; c < C; ++c) {
        op[c] = static_cast<T>(best[size_t(c)]);
        ip[c] = arg[size_t(c)];
      }
    }
  });
}

template <class T>
void max_pool2d_backward_cpu(T* dx, const T* dy, const int64_t* ind, const Dims& in, int64_t OH, int64_t OW,
                             const PoolWindow& k) {
  using acc = acc_t<T>;
  const int64_t C = in.C;
  int64_t span = (k.kernel_h * k.dilation_h / k.stride_h + 1) * (k.kernel_w * k.dilation_w / k.stride_w + 1);
  parallel_for(0, in.N * in.H * in.W, grain_for(span * C), [&](int64_t b, int64_t e) {
    std::vector<acc> sum(static_cast<size_t>(C));
    for (int64_t p = b; p < e; ++p) {
      int64_t n = p / (in.H * in.W), h = (p / in.W) % in.H, w = p % in.W;
      const int64_t target = h * in.W + w;
      int64_t oh0, oh1, ow0, ow1;
      window_range(h, k.kernel_h, k.stride_h, k.pad_h, k.dilation_h, OH, oh0, oh1);
      window_range(w, k.kernel_w, k.stride_w, k.pad_w, k.dilation_w, OW, ow0, ow1);
      std::fill(sum.begin(), sum.end(), acc(0));
      for (int64_t oh = oh0; oh <= oh1; ++oh) {
        for (int64_t ow = ow0; ow <= ow1; ++ow) {
          const int64_t o = ((n * OH + oh) * OW + ow) * C;
          const int64_t* ip = ind + o;
          const T* gp = dy + o;
          for (int64_t c = 0; c < C; ++c)
            if (ip[c] == target) sum[size_t(c)] += static_cast<acc>(gp[c]);
        }
      }
      T* dp = dx + p * C;
      for (int64_t c = 0; c < C; ++c) dp[c] = static_cast<T>(sum[size_t(c)]);
    }
  });
}

// ---- adaptive average pool

template <class T> void adaptive_avg_pool2d_forward_cpu(T* out, const T* x, const Dims& in, int64_t OH, int64_t OW) {
  using acc = acc_t<T>;
  const int64_t C = in.C;
  int64_t bin = ((in.H + OH - 1) / OH + 1) * ((in.W + OW - 1) / OW + 1);
  parallel_for(0, in.N * OH * OW, grain_for(bin * C), [&](int64_t b, int64_t e) {
    std::vector<acc> sum(static_cast<size_t>(C));
    for (int64_t p = b; p < e; ++p) {
      int64_t n = p / (OH * OW), oh = (p / OW) % OH, ow = p % OW;
      int64_t hs = bin_start(oh, in.H, OH), he = bin_end(oh, in.H, OH);
      int64_t ws = bin_start(ow, in.W, OW), we = bin_end(ow, in.W, OW);
      std::fill(sum.begin(), sum.end(), acc(0));
      for (int64_t h = hs; h < he; ++h) {
        const T* xp = x + ((n * in.H + h) * in.W + ws) * C;
        for (int64_t w = ws; w < we; ++w, xp += C)
          for (int64_t c = 0; c < C; ++c) sum[size_t(c)] += static_cast<acc>(xp[c]);
      }
      const acc area = acc((he - hs) * (we - ws));
      T* op = out + p * C;
      for (int64_t c = 0; c < C; ++c) op[c] = static_cast<T>(sum[size_t(c)] / area);
    }
  });
}

template <class T>
void adaptive_avg_pool2d_backward_cpu(T* dx, const T* dy, const Dims& in, int64_t OH, int64_t OW) {
  using acc = acc_t<T>;
  const int64_t C = in.C;
  int64_t span = (OH / in.H + 2) * (OW / in.W + 2);
  parallel_for(0, in.N * in.H * in.W, grain_for(span * C), [&](int64_t b, int64_t e) {
    std::vector<acc> sum(static_cast<size_t>(C));
    for (int64_t p = b; p < e; ++p) {
      int64_t n = p / (in.H * in.W), h = (p / in.W) % in.H, w = p % in.W;
      std::fill(sum.begin(), sum.end(), acc(0));
      for (int64_t oh = first_bin(h, in.H, OH), oh1 = last_bin(h, in.H, OH); oh <= oh1; ++oh) {
        int64_t hs = bin_start(oh, in.H, OH), he = bin_end(oh, in.H, OH);
        if (h < hs || h >= he) continue;
        for (int64_t ow = first_bin(w, in.W, OW), ow1 = last_bin(w, in.W, OW); ow <= ow1; ++ow) {
          int64_t ws = bin_start(ow, in.W, OW), we = bin_end(ow, in.W, OW);
          if (w < ws || w >= we) continue;
          const acc area = acc((he - hs) * (we - ws));
          const T* gp = dy + ((n * OH + oh) * OW + ow) * C;
          for (int64_t c = 0; c < C; ++c) sum[size_t(c)] += static_cast<acc>(gp[c]) / area;
        }
      }
      T* dp = dx + p * C;
      for (int64_t c = 0; c < C; ++c) dp[c] = static_cast<T>(sum[size_t(c)]);
    }
  });
}

// ---- bilinear

template <class acc> std::vector<LinearTap<acc>> taps_for(int64_t in, int64_t out, bool align_corners) {
  acc scale = linear_scale<acc>(in, out, align_corners);
  std::vector<LinearTap<acc>> taps(static_cast<size_t>(out));
  for (int64_t i = 0; i < out; ++i) taps[size_t(i)] = linear_tap<acc>(i, in, scale, align_corners);
  return taps;
}

template <class T>
void bilinear_forward_cpu(T* out, const T* x, const Dims& in, int64_t OH, int64_t OW, bool align_corners) {
  using acc = acc_t<T>;
  const int64_t C = in.C;
  const auto th = taps_for<acc>(in.H, OH, align_corners), tw = taps_for<acc>(in.W, OW, align_corners);
  parallel_for(0, in.N * OH * OW, grain_for(4 * C), [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      int64_t n = p / (OH * OW), oh = (p / OW) % OH, ow = p % OW;
      const LinearTap<acc>& a = th[size_t(oh)];
      const LinearTap<acc>& t = tw[size_t(ow)];
      const T* r0 = x + (n * in.H + a.i0) * in.W * C;
      const T* r1 = x + (n * in.H + a.i1) * in.W * C;
      const T *x00 = r0 + t.i0 * C, *x01 = r0 + t.i1 * C, *x10 = r1 + t.i0 * C, *x11 = r1 + t.i1 * C;
      T* op = out + p * C;
      for (int64_t c = 0; c < C; ++c) {
        acc top = t.l0 * static_cast<acc>(x00[c]) + t.l1 * static_cast<acc>(x01[c]);
        acc bot = t.l0 * static_cast<acc>(x10[c]) + t.l1 * static_cast<acc>(x11[c]);
        op[c] = static_cast<T>(a.l0 * top + a.l1 * bot);
      }
    }
  });
}

template <class T>
void bilinear_backward_cpu(T* dx, const T* dy, const Dims& in, int64_t OH, int64_t OW, bool align_corners) {
  using acc = acc_t<T>;
  const int64_t C = in.C;
  const auto th = taps_for<acc>(in.H, OH, align_corners), tw = taps_for<acc>(in.W, OW, align_corners);
  // Per input row / column, the range of outputs that read it.
  auto ranges = [&](int64_t n_in, int64_t n_out) {
    acc scale = linear_scale<acc>(n_in, n_out, align_corners);
    std::vector<int64_t> r(static_cast<size_t>(2 * n_in));
    for (int64_t i = 0; i < n_in; ++i)
      linear_range<acc>(i, n_in, n_out, scale, align_corners, r[size_t(2 * i)], r[size_t(2 * i + 1)]);
    return r;
  };
  const std::vector<int64_t> rh = ranges(in.H, OH), rw = ranges(in.W, OW);
  int64_t span = (OH / in.H + 2) * (OW / in.W + 2);
  parallel_for(0, in.N * in.H * in.W, grain_for(span * C), [&](int64_t b, int64_t e) {
    std::vector<acc> sum(static_cast<size_t>(C));
    for (int64_t p = b; p < e; ++p) {
      int64_t n = p / (in.H * in.W), h = (p / in.W) % in.H, w = p % in.W;
      std::fill(sum.begin(), sum.end(), acc(0));
      for (int64_t oh = rh[size_t(2 * h)]; oh < rh[size_t(2 * h + 1)]; ++oh) {
        const acc wh = linear_weight(th[size_t(oh)], h);
        for (int64_t ow = rw[size_t(2 * w)]; ow < rw[size_t(2 * w + 1)]; ++ow) {
          const acc wgt = wh * linear_weight(tw[size_t(ow)], w);
          const T* gp = dy + ((n * OH + oh) * OW + ow) * C;
          for (int64_t c = 0; c < C; ++c) sum[size_t(c)] += wgt * static_cast<acc>(gp[c]);
        }
      }
      T* dp = dx + p * C;
      for (int64_t c = 0; c < C; ++c) dp[c] = static_cast<T>(sum[size_t(c)]);
    }
  });
}

}  // namespace

int64_t pool_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation, bool ceil_mode) {
  int64_t num = in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t q = num / stride;
  if (num % stride != 0 && num < 0) --q;  // round toward -inf, as PyTorch's div_rtn
  int64_t out = q + 1;
  // With ceil_mode the last window must start inside the input or the left padding.
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

void global_avg_pool_forward(const Tensor& out, const Tensor& x) {
  check_operands("global_avg_pool", {&out, &x});
  if (x.is_cuda()) return cuda::global_avg_pool_forward(out, x);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "global_avg_pool", [&] {
    global_avg_pool_forward_cpu(out.data<scalar_t>(), x.data<scalar_t>(), Dims(x));
  });
}

void global_avg_pool_backward(const Tensor& dx, const Tensor& dy) {
  check_operands("global_avg_pool_backward", {&dx, &dy});
  if (dx.is_cuda()) return cuda::global_avg_pool_backward(dx, dy);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "global_avg_pool_backward", [&] {
    global_avg_pool_backward_cpu(dx.data<scalar_t>(), dy.data<scalar_t>(), Dims(dx));
  });
}

void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const PoolWindow& win) {
  check_operands("max_pool2d", {&out, &indices, &x});
  if (x.is_cuda()) return cuda::max_pool2d_forward(out, indices, x, win);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
    max_pool2d_forward_cpu(out.data<scalar_t>(), indices.data<int64_t>(), x.data<scalar_t>(), Dims(x), out.size(1),
                           out.size(2), win);
  });
}

void max_pool2d_backward(const Tensor& dx, const Tensor& dy, const Tensor& indices, const PoolWindow& win) {
  check_operands("max_pool2d_backward", {&dx, &dy, &indices});
  if (dx.is_cuda()) return cuda::max_pool2d_backward(dx, dy, indices, win);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "max_pool2d_backward", [&] {
    max_pool2d_backward_cpu(dx.data<scalar_t>(), dy.data<scalar_t>(), indices.data<int64_t>(), Dims(dx), dy.size(1),
                            dy.size(2), win);
  });
}

void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x) {
  check_operands("adaptive_avg_pool2d", {&out, &x});
  if (x.is_cuda()) return cuda::adaptive_avg_pool2d_forward(out, x);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "adaptive_avg_pool2d", [&] {
    adaptive_avg_pool2d_forward_cpu(out.data<scalar_t>(), x.data<scalar_t>(), Dims(x), out.size(1), out.size(2));
  });
}

void adaptive_avg_pool2d_backward(const Tensor& dx, const Tensor& dy) {
  check_operands("adaptive_avg_pool2d_backward", {&dx, &dy});
  if (dx.is_cuda()) return cuda::adaptive_avg_pool2d_backward(dx, dy);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "adaptive_avg_pool2d_backward", [&] {
    adaptive_avg_pool2d_backward_cpu(dx.data<scalar_t>(), dy.data<scalar_t>(), Dims(dx), dy.size(1), dy.size(2));
  });
}

void bilinear_forward(const Tensor& out, const Tensor& x, bool align_corners) {
  check_operands("interpolate_bilinear", {&out, &x});
  if (x.is_cuda()) return cuda::bilinear_forward(out, x, align_corners);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "interpolate_bilinear", [&] {
    bilinear_forward_cpu(out.data<scalar_t>(), x.data<scalar_t>(), Dims(x), out.size(1), out.size(2), align_corners);
  });
}

void bilinear_backward(const Tensor& dx, const Tensor& dy, bool align_corners) {
  check_operands("interpolate_bilinear_backward", {&dx, &dy});
  if (dx.is_cuda()) return cuda::bilinear_backward(dx, dy, align_corners);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "interpolate_bilinear_backward", [&] {
    bilinear_backward_cpu(dx.data<scalar_t>(), dy.data<scalar_t>(), Dims(dx), dy.size(1), dy.size(2),
                          align_corners);
  });
}

}  // namespace unirep
