// CUDA pooling and resizing kernels (the math is in core/ops/pool.h). NHWC: consecutive threads take
// consecutive channels of one pixel, so every load and store of a warp is coalesced; each thread computes
// one element with the host+device functions of core/ops/pool_elements.h (the tests run those same
// functions on the host against the CPU kernels). Backward kernels gather from the input side, one
// thread per input element, summing in acc_t the output gradients that reference it: no atomics,
// deterministic, and bf16/f16 gradients are accumulated in float and rounded once. Flat indices are
// int32 when the tensor allows it (64-bit division is several times slower on the GPU).
#include <cfloat>
#include <cstdint>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/pool_elements.h"

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

// ---- max pool, adaptive average pool, bilinear: a thread per element (core/ops/pool_elements.h)

// Splits a flat NHWC index into (n, row, col, c) of a [*, rows, cols, C] tensor.
template <class I> struct Nhwc {
  I n, h, w, c;
  __device__ __forceinline__ Nhwc(I i, I rows, I cols, I C) {
    I p = i / C;
    c = i - p * C;
    I q = p / cols;
    w = p - q * cols;
    n = q / rows;
    h = q - n * rows;
  }
};

template <class T, class I>
__global__ void max_pool_forward_kernel(T* out, int64_t* ind, const T* x, I total, Geom g, PoolWindow k) {
  UNIREP_GRID_STRIDE(I, total) {
    const Nhwc<I> e(i, I(g.OH), I(g.OW), I(g.C));
    int64_t arg;
    out[i] = static_cast<T>(max_pool_at(x, g, k, e.n, e.h, e.w, e.c, arg));
    ind[i] = arg;
  }
}

template <class T, class I>
__global__ void max_pool_backward_kernel(T* dx, const T* dy, const int64_t* ind, I total, Geom g, PoolWindow k) {
  UNIREP_GRID_STRIDE(I, total) {
    const Nhwc<I> e(i, I(g.H), I(g.W), I(g.C));
    dx[i] = static_cast<T>(max_pool_grad_at(dy, ind, g, k, e.n, e.h, e.w, e.c));
  }
}

template <class T, class I> __global__ void adaptive_forward_kernel(T* out, const T* x, I total, Geom g) {
  UNIREP_GRID_STRIDE(I, total) {
    const Nhwc<I> e(i, I(g.OH), I(g.OW), I(g.C));
    out[i] = static_cast<T>(adaptive_at(x, g, e.n, e.h, e.w, e.c));
  }
}

template <class T, class I> __global__ void adaptive_backward_kernel(T* dx, const T* dy, I total, Geom g) {
  UNIREP_GRID_STRIDE(I, total) {
    const Nhwc<I> e(i, I(g.H), I(g.W), I(g.C));
    dx[i] = static_cast<T>(adaptive_grad_at(dy, g, e.n, e.h, e.w, e.c));
  }
}

template <class T, class I>
__global__ void bilinear_forward_kernel(T* out, const T* x, I total, Geom g, acc_t<T> scale_h, acc_t<T> scale_w,
                                        bool align_corners) {
  UNIREP_GRID_STRIDE(I, total) {
    const Nhwc<I> e(i, I(g.OH), I(g.OW), I(g.C));
    out[i] = static_cast<T>(bilinear_at(x, g, scale_h, scale_w, align_corners, e.n, e.h, e.w, e.c));
  }
}

template <class T, class I>
__global__ void bilinear_backward_kernel(T* dx, const T* dy, I total, Geom g, acc_t<T> scale_h, acc_t<T> scale_w,
                                         bool align_corners) {
  UNIREP_GRID_STRIDE(I, total) {
    const Nhwc<I> e(i, I(g.H), I(g.W), I(g.C));
    dx[i] = static_cast<T>(bilinear_grad_at(dy, g, scale_h, scale_w, align_corners, e.n, e.h, e.w, e.c));
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
  Geom g = geom_of(x, out);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "max_pool2d", [&] {
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      max_pool_forward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          out.data<scalar_t>(), indices.data<int64_t>(), x.data<scalar_t>(), I(total), g, win);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void max_pool2d_backward(const Tensor& dx, const Tensor& dy, const Tensor& indices, const PoolWindow& win) {
  const int64_t total = dx.numel();
  if (total == 0) return;
  Geom g = geom_of(dx, dy);
  UNIREP_DISPATCH_FLOATING(dx.dtype(), "max_pool2d_backward", [&] {
    with_index_type(total, [&](auto tag) {
      using I = decltype(tag);
      max_pool_backward_kernel<scalar_t, I><<<grid_for(total), kThreads, 0, stream()>>>(
          dx.data<scalar_t>(), dy.data<scalar_t>(), indices.data<int64_t>(), I(total), g, win);
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
