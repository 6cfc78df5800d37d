// CUDA pooling and resizing kernels (the math is in core/ops/pool.h). NHWC: consecutive threads take
// consecutive channels of one pixel, so every load and store of a warp is coalesced; the window/bin/tap
// geometry of that pixel is recomputed per thread (cheap integer and float math next to the memory
// traffic). Backward kernels gather from the input side, one thread per input element, summing in
// acc_t the output gradients that reference it: no atomics, deterministic, and bf16/f16 gradients
// are accumulated in float and rounded once. Flat indices are int32 when the tensor allows it (64-bit
// division is several times slower on the GPU).
#include <cfloat>
#include <cstdint>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/pool.h"

namespace unirep::cuda {

namespace {

using namespace pool_detail;

unsigned grid_for(int64_t n) {
  unsigned b = blocks_for(n);
  return b > (1u << 20) ? (1u << 20) : b;  // grid-stride loops cover the rest
}

// Calls f(index_t{}) with the narrowest index type that can address n elements; int32 leaves headroom
// for the grid stride (at most 2^28) so `i += stride` cannot overflow.
template <class F> void with_index_type(int64_t n, const F& f) {
  if (n < (int64_t(1) << 30))
    f(int32_t(0));
  else
    f(int64_t(0));
}

#define UNIREP_GRID_STRIDE(I, N)                                                       \
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < (N); \
       i += I(gridDim.x) * I(blockDim.x))

// ---- global average pool

constexpr int kGapLanes = 32;  // channels per block (threadIdx.x)
constexpr int kGapRows = 8;    // pixel partials per channel (threadIdx.y)

// One block per (sample, 32-channel slab): each thread sums every 8th pixel of its channel, then the 8
// partials are combined in shared memory.
template <class T> __global__ void gap_forward_kernel(T* out, const T* x, int64_t HW, int64_t C, int64_t cblocks) {
  using acc = acc_t<T>;
  __shared__ acc part[kGapRows][kGapLanes + 1];
  const int64_t n = blockIdx.x / cblocks;
  const int64_t c = (blockIdx.x % cblocks) * kGapLanes + threadIdx.x;
  acc s = acc(0);
  if (c < C) {
    const T* xp = x + n * HW * C + c;
    for (int64_t p = threadIdx.y; p < HW; p += kGapRows) s += static_cast<acc>(xp[p * C]);
  }
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    acc t = acc(0);
    for (int r = 0; r < kGapRows; ++r) t += part[r][threadIdx.x];
    out[n * C + c] = static_cast<T>(t / acc(HW));
  }
}

template <class T, class I> __global__ void gap_backward_kernel(T* dx, const T* dy, I total, I HWC, I C, I HW) {
  using acc = acc_t<T>;
  UNIREP_GRID_STRIDE(I, total) {
    const I n = i / HWC, c = i % C;
    dx[i] = static_cast<T>(static_cast<acc>(dy[n * C + c]) / acc(HW));
  }
}

// ---- max pool

struct PoolGeom {
  int64_t H, W, C, OH, OW;
  PoolWindow k;
};

template <class T, class I>
__global__ void max_pool_forward_kernel(T* out, int64_t* ind, const T* x, I total, PoolGeom g) {
  using acc = acc_t<T>;
  const I C = I(g.C), OW = I(g.OW), OH = I(g.OH);
  UNIREP_GRID_STRIDE(I, total) {
    I p = i / C;
    const I c = i - p * C;
    const I ow = p % OW;
    p /= OW;
    const I oh = p % OH;
    const I n = p / OH;
    const int64_t h0 = int64_t(oh) * g.k.stride_h - g.k.pad_h, w0 = int64_t(ow) * g.k.stride_w - g.k.pad_w;
    int64_t hs = h0, ws = w0;
    while (hs < 0) hs += g.k.dilation_h;
    while (ws < 0) ws += g.k.dilation_w;
    acc best = acc(-INFINITY);
    int64_t arg = hs < g.H && ws < g.W ? hs * g.W + ws : int64_t(-1);
    const T* xn = x + int64_t(n) * g.H * g.W * g.C + c;
    for (int64_t a = 0; a < g.k.kernel_h; ++a) {
      const int64_t h = h0 + a * g.k.dilation_h;
      if (h < 0 || h >= g.H) continue;
      for (int64_t b = 0; b < g.k.kernel_w; ++b) {
        const int64_t w = w0 + b * g.k.dilation_w;
        if (w < 0 || w >= g.W) continue;
        const acc v = static_cast<acc>(xn[(h * g.W + w) * g.C]);
        if (v > best || v != v) {
          best = v;
          arg = h * g.W + w;
        }
      }
    }
    out[i] = static_cast<T>(best);
    ind[i] = arg;
  }
}

template <class T, class I>
__global__ void max_pool_backward_kernel(T* dx, const T* dy, const int64_t* ind, I total, PoolGeom g) {
  using acc = acc_t<T>;
  const I C = I(g.C), W = I(g.W), H = I(g.H);
  UNIREP_GRID_STRIDE(I, total) {
    I p = i / C;
    const I c = i - p * C;
    const I w = p % W;
    p /= W;
    const I h = p % H;
    const I n = p / H;
    const int64_t target = int64_t(h) * g.W + w;
    int64_t oh0, oh1, ow0, ow1;
    window_range(h, g.k.kernel_h, g.k.stride_h, g.k.pad_h, g.k.dilation_h, g.OH, oh0, oh1);
    window_range(w, g.k.kernel_w, g.k.stride_w, g.k.pad_w, g.k.dilation_w, g.OW, ow0, ow1);
    acc s = acc(0);
    const int64_t base = int64_t(n) * g.OH * g.OW * g.C + c;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow) {
        const int64_t o = base + (oh * g.OW + ow) * g.C;
        if (ind[o] == target) s += static_cast<acc>(dy[o]);
      }
    dx[i] = static_cast<T>(s);
  }
}

// ---- adaptive average pool

struct Geom {
  int64_t H, W, C, OH, OW;  // input [N, H, W, C], output [N, OH, OW, C]
};

template <class T, class I> __global__ void adaptive_forward_kernel(T* out, const T* x, I total, Geom g) {
  using acc = acc_t<T>;
  const I C = I(g.C), OW = I(g.OW), OH = I(g.OH);
  UNIREP_GRID_STRIDE(I, total) {
    I p = i / C;
    const I c = i - p * C;
    const I ow = p % OW;
    p /= OW;
    const I oh = p % OH;
    const I n = p / OH;
    const int64_t hs = bin_start(oh, g.H, g.OH), he = bin_end(oh, g.H, g.OH);
    const int64_t ws = bin_start(ow, g.W, g.OW), we = bin_end(ow, g.W, g.OW);
    const T* xn = x + int64_t(n) * g.H * g.W * g.C + c;
    acc s = acc(0);
    for (int64_t h = hs; h < he; ++h)
      for (int64_t w = ws; w < we; ++w) s += static_cast<acc>(xn[(h * g.W + w) * g.C]);
    out[i] = static_cast<T>(s / acc((he - hs) * (we - ws)));
  }
}

template <class T, class I> __global__ void adaptive_backward_kernel(T* dx, const T* dy, I total, Geom g) {
  using acc = acc_t<T>;
  const I C = I(g.C), W = I(g.W), H = I(g.H);
  UNIREP_GRID_STRIDE(I, total) {
    I p = i / C;
    const I c = i - p * C;
    const I w = p % W;
    p /= W;
    const I h = p % H;
    const I n = p / H;
    const T* gn = dy + int64_t(n) * g.OH * g.OW * g.C + c;
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
    dx[i] = static_cast<T>(s);
  }
}

// ---- bilinear

template <class T, class I>
__global__ void bilinear_forward_kernel(T* out, const T* x, I total, Geom g, acc_t<T> scale_h, acc_t<T> scale_w,
                                        bool align_corners) {
  using acc = acc_t<T>;
  const I C = I(g.C), OW = I(g.OW), OH = I(g.OH);
  UNIREP_GRID_STRIDE(I, total) {
    I p = i / C;
    const I c = i - p * C;
    const I ow = p % OW;
    p /= OW;
    const I oh = p % OH;
    const I n = p / OH;
    const LinearTap<acc> a = linear_tap<acc>(oh, g.H, scale_h, align_corners);
    const LinearTap<acc> t = linear_tap<acc>(ow, g.W, scale_w, align_corners);
    const T* xn = x + int64_t(n) * g.H * g.W * g.C + c;
    const T* r0 = xn + a.i0 * g.W * g.C;
    const T* r1 = xn + a.i1 * g.W * g.C;
    const acc top = t.l0 * static_cast<acc>(r0[t.i0 * g.C]) + t.l1 * static_cast<acc>(r0[t.i1 * g.C]);
    const acc bot = t.l0 * static_cast<acc>(r1[t.i0 * g.C]) + t.l1 * static_cast<acc>(r1[t.i1 * g.C]);
    out[i] = static_cast<T>(a.l0 * top + a.l1 * bot);
  }
}

template <class T, class I>
__global__ void bilinear_backward_kernel(T* dx, const T* dy, I total, Geom g, acc_t<T> scale_h, acc_t<T> scale_w,
                                         bool align_corners) {
  using acc = acc_t<T>;
  const I C = I(g.C), W = I(g.W), H = I(g.H);
  UNIREP_GRID_STRIDE(I, total) {
    I p = i / C;
    const I c = i - p * C;
    const I w = p % W;
    p /= W;
    const I h = p % H;
    const I n = p / H;
    int64_t oh0, oh1, ow0, ow1;
    linear_range<acc>(h, g.H, g.OH, scale_h, align_corners, oh0, oh1);
    linear_range<acc>(w, g.W, g.OW, scale_w, align_corners, ow0, ow1);
    const T* gn = dy + int64_t(n) * g.OH * g.OW * g.C + c;
    acc s = acc(0);
    for (int64_t oh = oh0; oh < oh1; ++oh) {
      const acc wh = linear_weight(linear_tap<acc>(oh, g.H, scale_h, align_corners), int64_t(h));
      for (int64_t ow = ow0; ow < ow1; ++ow) {
        const acc wgt = wh * linear_weight(linear_tap<acc>(ow, g.W, scale_w, align_corners), int64_t(w));
        s += wgt * static_cast<acc>(gn[(oh * g.OW + ow) * g.C]);
      }
    }
    dx[i] = static_cast<T>(s);
  }
}

Geom geom_of(const Tensor& in, const Tensor& out) {
  return Geom{in.size(1), in.size(2), in.size(3), out.size(1), out.size(2)};
}

}  // namespace

void global_avg_pool_forward(const Tensor& out, const Tensor& x) {
  const int64_t N = x.size(0), HW = x.size(1) * x.size(2), C = x.size(3);
  if (N * C == 0) return;
  const int64_t cblocks = (C + kGapLanes - 1) / kGapLanes;
  UNIREP_CHECK(N * cblocks < (int64_t(1) << 31), "global_avg_pool: too many blocks for input ", x.str());
  UNIREP_DISPATCH_FLOATING(x.dtype(), "global_avg_pool", [&] {
    gap_forward_kernel<scalar_t><<<unsigned(N * cblocks), dim3(kGapLanes, kGapRows), 0, stream()>>>(
        out.data<scalar_t>(), x.data<scalar_t>(), HW, C, cblocks);
    CUDA_CHECK_LAUNCH();
  });
}

void global_avg_pool_backward(const Tensor& dx, const Tensor& dy) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  const int64_t HW = dx.size(1) * dx.size(2), C = dx.size(3);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "global_avg_pool_backward", [&] {
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      gap_backward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          dx.data<scalar_t>(), dy.data<scalar_t>(), I(total), I(HW * C), I(C), I(HW));
      CUDA_CHECK_LAUNCH();
    });
  });
}

void max_pool2d_forward(const Tensor& out, const Tensor& indices, const Tensor& x, const PoolWindow& win) {
  const int64_t total = out.numel();
  if (total == 0) return;
  PoolGeom g{x.size(1), x.size(2), x.size(3), out.size(1), out.size(2), win};
  UNIREP_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      max_pool_forward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          out.data<scalar_t>(), indices.data<int64_t>(), x.data<scalar_t>(), I(total), g);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void max_pool2d_backward(const Tensor& dx, const Tensor& dy, const Tensor& indices, const PoolWindow& win) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  PoolGeom g{dx.size(1), dx.size(2), dx.size(3), dy.size(1), dy.size(2), win};
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "max_pool2d_backward", [&] {
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      max_pool_backward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          dx.data<scalar_t>(), dy.data<scalar_t>(), indices.data<int64_t>(), I(total), g);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void adaptive_avg_pool2d_forward(const Tensor& out, const Tensor& x) {
  const int64_t total = out.numel();
  if (total == 0) return;
  Geom g = geom_of(x, out);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "adaptive_avg_pool2d", [&] {
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      adaptive_forward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          out.data<scalar_t>(), x.data<scalar_t>(), I(total), g);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void adaptive_avg_pool2d_backward(const Tensor& dx, const Tensor& dy) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  Geom g = geom_of(dx, dy);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "adaptive_avg_pool2d_backward", [&] {
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      adaptive_backward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          dx.data<scalar_t>(), dy.data<scalar_t>(), I(total), g);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void bilinear_forward(const Tensor& out, const Tensor& x, bool align_corners) {
  const int64_t total = out.numel();
  if (total == 0) return;
  Geom g = geom_of(x, out);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "interpolate_bilinear", [&] {
    using acc = acc_t<scalar_t>;
    const acc sh = linear_scale<acc>(g.H, g.OH, align_corners), sw = linear_scale<acc>(g.W, g.OW, align_corners);
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      bilinear_forward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          out.data<scalar_t>(), x.data<scalar_t>(), I(total), g, sh, sw, align_corners);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void bilinear_backward(const Tensor& dx, const Tensor& dy, bool align_corners) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  Geom g = geom_of(dx, dy);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "interpolate_bilinear_backward", [&] {
    using acc = acc_t<scalar_t>;
    const acc sh = linear_scale<acc>(g.H, g.OH, align_corners), sw = linear_scale<acc>(g.W, g.OW, align_corners);
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      bilinear_backward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          dx.data<scalar_t>(), dy.data<scalar_t>(), I(total), g, sh, sw, align_corners);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace unirep::cuda
