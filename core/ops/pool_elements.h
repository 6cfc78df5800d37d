// One output (forward) or one input-gradient (backward) element of each pooling/resizing op, as
// host+device functions over contiguous NHWC buffers. The CUDA kernels (core/ops/pool.cu) are a thread
// per element calling these; the tests also run them on the host against the CPU kernels, so the
// device code paths are checked on machines without a GPU. C++17 (included by a .cu file).
#pragma once
#include <cmath>

#include "core/ops/pool.h"

namespace unirep::pool_detail {

struct Geom {
  int64_t H, W, C, OH, OW;  // input [N, H, W, C], output [N, OH, OW, C]
};

// Max over the window of output (n, oh, ow, c); `arg` receives the flat h*W+w of the first maximum
// (-1 for a window lying wholly in the padding, whose output is -inf).
template <class T>
UNIREP_HD acc_t<T> max_pool_at(const T* x, const Geom& g, const PoolWindow& k, int64_t n, int64_t oh, int64_t ow,
                               int64_t c, int64_t& arg) {
  using acc = acc_t<T>;
  const int64_t h0 = oh * k.stride_h - k.pad_h, w0 = ow * k.stride_w - k.pad_w;
  int64_t hs = h0, ws = w0;
  while (hs < 0) hs += k.dilation_h;
  while (ws < 0) ws += k.dilation_w;
  acc best = -acc(INFINITY);
  arg = hs < g.H && ws < g.W ? hs * g.W + ws : int64_t(-1);
  const T* xn = x + n * g.H * g.W * g.C + c;
  for (int64_t a = 0; a < k.kernel_h; ++a) {
    const int64_t h = h0 + a * k.dilation_h;
    if (h < 0 || h >= g.H) continue;
    for (int64_t b = 0; b < k.kernel_w; ++b) {
      const int64_t w = w0 + b * k.dilation_w;
      if (w < 0 || w >= g.W) continue;
      const acc v = static_cast<acc>(xn[(h * g.W + w) * g.C]);
      if (v > best || v != v) {  // NaN wins, as in PyTorch
        best = v;
        arg = h * g.W + w;
      }
    }
  }
  return best;
}

// Gradient of input (n, h, w, c): the sum of dy over the outputs whose argmax is this element.
template <class T>
UNIREP_HD acc_t<T> max_pool_grad_at(const T* dy, const int64_t* ind, const Geom& g, const PoolWindow& k, int64_t n,
                                    int64_t h, int64_t w, int64_t c) {
  using acc = acc_t<T>;
  const int64_t target = h * g.W + w;
  int64_t oh0, oh1, ow0, ow1;
  window_range(h, k.kernel_h, k.stride_h, k.pad_h, k.dilation_h, g.OH, oh0, oh1);
  window_range(w, k.kernel_w, k.stride_w, k.pad_w, k.dilation_w, g.OW, ow0, ow1);
  const int64_t base = n * g.OH * g.OW * g.C + c;
  acc s = acc(0);
  for (int64_t oh = oh0; oh <= oh1; ++oh)
    for (int64_t ow = ow0; ow <= ow1; ++ow) {
      const int64_t o = base + (oh * g.OW + ow) * g.C;
      if (ind[o] == target) s += static_cast<acc>(dy[o]);
    }
  return s;
}

template <class T>
UNIREP_HD acc_t<T> adaptive_at(const T* x, const Geom& g, int64_t n, int64_t oh, int64_t ow, int64_t c) {
  using acc = acc_t<T>;
  const int64_t hs = bin_start(oh, g.H, g.OH), he = bin_end(oh, g.H, g.OH);
  const int64_t ws = bin_start(ow, g.W, g.OW), we = bin_end(ow, g.W, g.OW);
  const T* xn = x + n * g.H * g.W * g.C + c;
  acc s = acc(0);
  for (int64_t h = hs; h < he; ++h)
    for (int64_t w = ws; w < we; ++w) s += static_cast<acc>(xn[(h * g.W + w) * g.C]);
  return s / acc((he - hs) * (we - ws));
}

template <class T>
UNIREP_HD acc_t<T> adaptive_grad_at(const T* dy, const Geom& g, int64_t n, int64_t h, int64_t w, int64_t c) {
  using acc = acc_t<T>;
  const T* gn = dy + n * g.OH * g.OW * g.C + c;
  acc s = acc(0);
  for (int64_t oh = first_bin(h, g.H, g.OH), oh1 = last_bin(h, g.H, g.OH); oh <= oh1; ++oh) {
    const int64_t hs = bin_start(oh, g.H, g.OH), he = bin_end(oh, g.H, g.OH);
    if (h < hs || h >= he) continue;
    for (int64_t ow = first_bin(w, g.W, g.OW), ow1 = last_bin(w, g.W, g.OW); ow <= ow1; ++ow) {
      const int64_t ws = bin_start(ow, g.W, g.OW), we = bin_end(ow, g.W, g.OW);
      if (w < ws || w >= we) continue;
      s += static_cast<acc>(gn[(oh * g.OW + ow) * g.C]) / acc((he - hs) * (we - ws));
    }
  }
  return s;
}

// scale_h / scale_w from linear_scale<acc_t<T>>.
template <class T>
UNIREP_HD acc_t<T> bilinear_at(const T* x, const Geom& g, acc_t<T> scale_h, acc_t<T> scale_w, bool align_corners,
                               int64_t n, int64_t oh, int64_t ow, int64_t c) {
  using acc = acc_t<T>;
  const LinearTap<acc> a = linear_tap<acc>(oh, g.H, scale_h, align_corners);
  const LinearTap<acc> t = linear_tap<acc>(ow, g.W, scale_w, align_corners);
  const T* xn = x + n * g.H * g.W * g.C + c;
  const T* r0 = xn + a.i0 * g.W * g.C;
  const T* r1 = xn + a.i1 * g.W * g.C;
  const acc top = t.l0 * static_cast<acc>(r0[t.i0 * g.C]) + t.l1 * static_cast<acc>(r0[t.i1 * g.C]);
  const acc bot = t.l0 * static_cast<acc>(r1[t.i0 * g.C]) + t.l1 * static_cast<acc>(r1[t.i1 * g.C]);
  return a.l0 * top + a.l1 * bot;
}

template <class T>
UNIREP_HD acc_t<T> bilinear_grad_at(const T* dy, const Geom& g, acc_t<T> scale_h, acc_t<T> scale_w,
                                    bool align_corners, int64_t n, int64_t h, int64_t w, int64_t c) {
  using acc = acc_t<T>;
  int64_t oh0, oh1, ow0, ow1;
  linear_range<acc>(h, g.H, g.OH, scale_h, align_corners, oh0, oh1);
  linear_range<acc>(w, g.W, g.OW, scale_w, align_corners, ow0, ow1);
  const T* gn = dy + n * g.OH * g.OW * g.C + c;
  acc s = acc(0);
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const acc wh = linear_weight(linear_tap<acc>(oh, g.H, scale_h, align_corners), h);
    for (int64_t ow = ow0; ow < ow1; ++ow) {
      const acc wgt = wh * linear_weight(linear_tap<acc>(ow, g.W, scale_w, align_corners), w);
      s += wgt * static_cast<acc>(gn[(oh * g.OW + ow) * g.C]);
    }
  }
  return s;
}

}  // namespace unirep::pool_detail
