// Batch norm and layer norm, CUDA kernels (the math is in norm.h).
//
// Per-channel sums (batch norm statistics and gradients, layer norm dweight/dbias) are two-stage
// and deterministic (no atomics): the positions of each channel are split into `nsplit` ranges,
// each block writes one partial per (range, channel), and a small kernel adds the partials per
// channel and finishes the per-channel math (mean, invstd, running stats, dweight/dbias).
//   channel-last ([rows, C]): a block of 32 x 16 threads covers 32 consecutive channels (a warp
//     reads one contiguous row piece) and loops over its row range, then reduces over threadIdx.y;
//   inner > 1 ([outer, C, inner]): a block per (channel, range) walks the range's positions, the
//     contiguous inner positions on consecutive threads.
// Layer norm: with inner == 1 a warp normalises one row (the row is kept in registers when
// C <= 1024); with inner > 1 a thread normalises one (outer, inner) position, consecutive threads
// on consecutive inner positions so every channel step is a coalesced load.
// Elementwise passes use 32-bit index math whenever the tensor has fewer than 2^31 elements.
// Kernels take the parameters' element type P apart from the input's T (float32 parameters next
// to a bf16/f16 input, norm.h).
#include <algorithm>
#include <type_traits>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/math.h"
#include "core/ops/norm.h"

namespace unirep::cuda {

namespace {

constexpr int kTileC = 32;          // channels per block, channel-last sums
constexpr int kRowsY = 16;          // blockDim.y, channel-last sums
constexpr int64_t kTargetBlocks = 1024;  // enough blocks to fill an H100 a few times over

template <class T> const T* opt_data(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <class T> T* opt_mut(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
unsigned grid_stride_blocks(int64_t n) { return std::min<unsigned>(blocks_for(n), 132u * 16u); }

template <class acc> __device__ __forceinline__ acc warp_sum(acc v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in thread 0.
template <class acc> __device__ __forceinline__ acc block_sum(acc v, acc* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int nwarps = blockDim.x >> 5;
  v = threadIdx.x < nwarps ? shared[threadIdx.x] : acc(0);
  if (warp == 0) v = warp_sum(v);
  __syncthreads();
  return v;
}

// ---------------------------------------------------------------- per-channel sums

// partial layout: [nsplit][2][C]. f(e, c, p, a1, a2) adds element e's contributions (channel c,
// position p = o * inner + i) to a1 and a2.
template <class acc, class F>
__global__ void channel_sums_rows_kernel(F f, int64_t rows, int64_t C, int64_t rows_per_split, acc* partial) {
  __shared__ acc sh1[kRowsY][kTileC];
  __shared__ acc sh2[kRowsY][kTileC];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t c = int64_t(blockIdx.x) * kTileC + tx;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  acc a1 = 0, a2 = 0;
  if (c < C)
    for (int64_t r = r0 + ty; r < r1; r += kRowsY) f(r * C + c, c, r, a1, a2);
  sh1[ty][tx] = a1;
  sh2[ty][tx] = a2;
  __syncthreads();
#pragma unroll
  for (int s = kRowsY / 2; s > 0; s >>= 1) {
    if (ty < s) {
      sh1[ty][tx] += sh1[ty + s][tx];
      sh2[ty][tx] += sh2[ty + s][tx];
    }
    __syncthreads();
  }
  if (ty == 0 && c < C) {
    partial[(int64_t(blockIdx.y) * 2) * C + c] = sh1[0][tx];
    partial[(int64_t(blockIdx.y) * 2 + 1) * C + c] = sh2[0][tx];
  }
}

template <class acc, class F>
__global__ void channel_sums_inner_kernel(F f, int64_t C, int64_t inner, int64_t npos, int64_t pos_per_split,
                                          acc* partial) {
  __shared__ acc shared[32];
  const int64_t c = blockIdx.x;
  const int64_t j0 = int64_t(blockIdx.y) * pos_per_split;
  const int64_t j1 = j0 + pos_per_split < npos ? j0 + pos_per_split : npos;
  acc a1 = 0, a2 = 0;
  for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    f((o * C + c) * inner + i, c, j, a1, a2);
  }
  a1 = block_sum(a1, shared);
  a2 = block_sum(a2, shared);
  if (threadIdx.x == 0) {
    partial[(int64_t(blockIdx.y) * 2) * C + c] = a1;
    partial[(int64_t(blockIdx.y) * 2 + 1) * C + c] = a2;
  }
}

// fin(c, s1, s2) with the channel's totals.
template <class acc, class Fin>
__global__ void channel_sums_finish_kernel(const acc* partial, int64_t nsplit, int64_t C, Fin fin) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    acc s1 = 0, s2 = 0;
    for (int64_t k = 0; k < nsplit; ++k) {
      s1 += partial[(2 * k) * C + c];
      s2 += partial[(2 * k + 1) * C + c];
    }
    fin(c, s1, s2);
  }
}

template <class acc, class F, class Fin>
void channel_sums(NormShape s, DType acc_dtype, Device device, F f, Fin fin) {
  const int64_t C = s.channels;
  if (C == 0) return;
  int64_t nsplit = 1;
  Tensor part;
  if (s.inner == 1) {
    const int64_t rows = s.outer, cblocks = ceil_div(C, kTileC);
    nsplit = std::max<int64_t>(1, std::min<int64_t>({kTargetBlocks / cblocks, ceil_div(rows, kRowsY * 8), 65535}));
    const int64_t rows_per_split = std::max<int64_t>(1, ceil_div(rows, nsplit));
    part = Tensor::empty({nsplit * 2 * C}, acc_dtype, device);
    UNIREP_CHECK(cblocks < (int64_t(1) << 31), "norm: too many channels (", C, ")");
    const dim3 grid(static_cast<unsigned>(cblocks), static_cast<unsigned>(nsplit)), block(kTileC, kRowsY);
    channel_sums_rows_kernel<acc><<<grid, block, 0, stream()>>>(f, rows, C, rows_per_split, part.data<acc>());
    CUDA_CHECK_LAUNCH();
  } else {
    const int64_t npos = s.outer * s.inner;
    nsplit = std::max<int64_t>(1, std::min<int64_t>({kTargetBlocks / C, ceil_div(npos, kThreads * 4), 65535}));
    const int64_t pos_per_split = std::max<int64_t>(1, ceil_div(npos, nsplit));
    part = Tensor::empty({nsplit * 2 * C}, acc_dtype, device);
    UNIREP_CHECK(C < (int64_t(1) << 31), "norm: too many channels (", C, ")");
    const dim3 grid(static_cast<unsigned>(C), static_cast<unsigned>(nsplit));
    channel_sums_inner_kernel<acc><<<grid, kThreads, 0, stream()>>>(f, C, s.inner, npos, pos_per_split,
                                                                     part.data<acc>());
    CUDA_CHECK_LAUNCH();
  }
  channel_sums_finish_kernel<acc><<<blocks_for(C), kThreads, 0, stream()>>>(part.data<acc>(), nsplit, C, fin);
  CUDA_CHECK_LAUNCH();
}

// ---- what the sums add up

template <class T, class acc> struct SumX {  // a1 += x
  const T* x;
  __device__ void operator()(int64_t e, int64_t, int64_t, acc& a1, acc&) const { a1 += static_cast<acc>(x[e]); }
};
template <class T, class acc> struct SumCentred {  // d = x - centre[c]: a1 += d, a2 += d^2
  const T* x;
  const acc* centre;
  __device__ void operator()(int64_t e, int64_t c, int64_t, acc& a1, acc& a2) const {
    acc d = static_cast<acc>(x[e]) - centre[c];
    a1 += d;
    a2 += d * d;
  }
};
template <class T, class acc> struct SumGradBN {  // a1 += dy, a2 += dy (x - mean[c])
  const T* dy;
  const T* x;
  const acc* mean;
  __device__ void operator()(int64_t e, int64_t c, int64_t, acc& a1, acc& a2) const {
    acc g = static_cast<acc>(dy[e]);
    a1 += g;
    a2 += g * (static_cast<acc>(x[e]) - mean[c]);
  }
};
template <class T, class acc> struct SumGradLN {  // a1 += dy, a2 += dy xhat (per-position stats)
  const T* dy;
  const T* x;
  const acc* mean;
  const acc* invstd;
  __device__ void operator()(int64_t e, int64_t, int64_t p, acc& a1, acc& a2) const {
    acc g = static_cast<acc>(dy[e]);
    a1 += g;
    a2 += g * (static_cast<acc>(x[e]) - mean[p]) * invstd[p];
  }
};

// ---- what is done with the totals

template <class acc> struct FinMean {
  acc* mean;
  acc inv_n;
  __device__ void operator()(int64_t c, acc s1, acc) const { mean[c] = s1 * inv_n; }
};
// Sums were centred on mean[c] (the first-pass mean): correct it, then invstd and running stats.
template <class acc, class R> struct FinVar {
  acc* mean;
  acc* invstd;
  R* running_mean;
  R* running_var;
  acc inv_n, eps, momentum, unbias;
  __device__ void operator()(int64_t c, acc s1, acc s2) const {
    const acc d = s1 * inv_n;
    const acc m = mean[c] + d;
    acc var = s2 * inv_n - d * d;
    var = var < acc(0) ? acc(0) : var;
    mean[c] = m;
    invstd[c] = acc(1) / math::sqrt(var + eps);
    const acc keep = acc(1) - momentum;
    if (running_mean) running_mean[c] = convert<R>(keep * convert<acc>(running_mean[c]) + momentum * m);
    if (running_var) running_var[c] = convert<R>(keep * convert<acc>(running_var[c]) + momentum * var * unbias);
  }
};
// The part's sums for a batch split between processes (norm.h), from its centred sums, in float64.
template <class acc> struct FinPartialSums {
  const acc* first_mean;
  double* sums;
  int64_t C;
  double n;
  __device__ void operator()(int64_t c, acc s1, acc s2) const {
    const double d = double(s1) / n, mean = double(first_mean[c]) + d;
    double m2 = double(s2) - double(s1) * d;
    m2 = m2 < 0.0 ? 0.0 : m2;
    sums[c] = n * mean;
    sums[C + c] = m2 + n * mean * mean;
    if (c == 0) sums[2 * C] = n;
  }
};
// P: the parameters' element type (the input's, or float next to a bf16/f16 input).
template <class P, class acc> struct FinGradBN {
  acc* s1_out;  // kept for dx (may be null)
  acc* s2_out;
  P* dweight;
  P* dbias;
  const acc* invstd;
  __device__ void operator()(int64_t c, acc s1, acc s2) const {
    if (s1_out) s1_out[c] = s1;
    if (s2_out) s2_out[c] = s2;
    if (dweight) dweight[c] = static_cast<P>(s2 * invstd[c]);
    if (dbias) dbias[c] = static_cast<P>(s1);
  }
};
template <class P, class acc> struct FinGradLN {
  P* dweight;
  P* dbias;
  __device__ void operator()(int64_t c, acc s1, acc s2) const {
    if (dweight) dweight[c] = static_cast<P>(s2);
    if (dbias) dbias[c] = static_cast<P>(s1);
  }
};

// ---------------------------------------------------------------- batch norm elementwise passes

template <class acc, class R>
__global__ void bn_eval_stats_kernel(acc* mean, acc* invstd, const R* rm, const R* rv, int64_t C, acc eps) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    mean[c] = convert<acc>(rm[c]);
    invstd[c] = acc(1) / math::sqrt(convert<acc>(rv[c]) + eps);
  }
}

// mean/invstd and the running stats from the sums of every part (norm.h); N = sums[2C].
template <class acc, class R>
__global__ void bn_stats_from_sums_kernel(acc* mean, acc* invstd, R* rm, R* rv, const double* sums, int64_t C,
                                          double momentum, double eps) {
  const double n = sums[2 * C];
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    const double m = sums[c] / n;
    double var = sums[C + c] / n - m * m;
    var = var < 0.0 ? 0.0 : var;
    mean[c] = acc(m);
    invstd[c] = acc(1.0 / math::sqrt(var + eps));
    if (rm) rm[c] = convert<R>((1.0 - momentum) * convert<double>(rm[c]) + momentum * m);
    if (rv) rv[c] = convert<R>((1.0 - momentum) * convert<double>(rv[c]) + momentum * var * n / (n - 1.0));
  }
}

template <class T, class P, class acc, class I>
__global__ void bn_apply_kernel(T* y, const T* x, const acc* mean, const acc* invstd, const P* w, const P* b, I n,
                                I C, I inner) {
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const I c = (inner == 1 ? i : i / inner) % C;
    acc v = (static_cast<acc>(x[i]) - mean[c]) * invstd[c];
    if (w) v *= static_cast<acc>(w[c]);
    if (b) v += static_cast<acc>(b[c]);
    y[i] = static_cast<T>(v);
  }
}

// dx = w invstd (dy - s1 / n - (x - mean) invstd^2 s2 / n); without s1/s2 (eval) dx = w invstd dy.
// count (a device float64, the total of a batch split between processes) replaces inv_n when given.
template <class T, class P, class acc, class I>
__global__ void bn_backward_dx_kernel(T* dx, const T* dy, const T* x, const acc* mean, const acc* invstd, const P* w,
                                      const acc* s1, const acc* s2, acc inv_n, const double* count, I n, I C,
                                      I inner) {
  if (count) inv_n = acc(1.0 / *count);
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < n; i += I(gridDim.x) * blockDim.x) {
    const I c = (inner == 1 ? i : i / inner) % C;
    const acc is = invstd[c];
    const acc k = w ? is * static_cast<acc>(w[c]) : is;
    acc g = static_cast<acc>(dy[i]);
    if (s1) g -= s1[c] * inv_n + (static_cast<acc>(x[i]) - mean[c]) * is * is * s2[c] * inv_n;
    dx[i] = static_cast<T>(k * g);
  }
}

bool fits_int32(int64_t n) { return n < (int64_t(1) << 31); }

// ---------------------------------------------------------------- layer norm kernels

// Warp per row of C contiguous values. kV > 0: C <= 32 kV and the row stays in registers.
template <class T, class P, class acc, int kV>
__global__ void ln_forward_rows_kernel(T* y, acc* mean_out, acc* invstd_out, const T* x, const P* w, const P* b,
                                       int64_t rows, int C, acc eps) {
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // warp-uniform
  const T* xr = x + r * C;
  T* yr = y + r * C;
  const acc inv_c = acc(1) / acc(C);
  acc m, rstd;
  if constexpr (kV > 0) {
    acc v[kV];
    acc sum = 0;
#pragma unroll
    for (int k = 0; k < kV; ++k) {
      const int c = lane + 32 * k;
      v[k] = c < C ? static_cast<acc>(xr[c]) : acc(0);
      sum += v[k];
    }
    m = warp_sum(sum) * inv_c;
    acc sq = 0;
#pragma unroll
    for (int k = 0; k < kV; ++k) {
      const int c = lane + 32 * k;
      const acc d = v[k] - m;
      if (c < C) sq += d * d;
    }
    rstd = acc(1) / math::sqrt(warp_sum(sq) * inv_c + eps);
#pragma unroll
    for (int k = 0; k < kV; ++k) {
      const int c = lane + 32 * k;
      if (c < C) {
        acc o = (v[k] - m) * rstd;
        if (w) o *= static_cast<acc>(w[c]);
        if (b) o += static_cast<acc>(b[c]);
        yr[c] = static_cast<T>(o);
      }
    }
  } else {
    acc sum = 0;
    for (int c = lane; c < C; c += 32) sum += static_cast<acc>(xr[c]);
    m = warp_sum(sum) * inv_c;
    acc sq = 0;
    for (int c = lane; c < C; c += 32) {
      const acc d = static_cast<acc>(xr[c]) - m;
      sq += d * d;
    }
    rstd = acc(1) / math::sqrt(warp_sum(sq) * inv_c + eps);
    for (int c = lane; c < C; c += 32) {
      acc o = (static_cast<acc>(xr[c]) - m) * rstd;
      if (w) o *= static_cast<acc>(w[c]);
      if (b) o += static_cast<acc>(b[c]);
      yr[c] = static_cast<T>(o);
    }
  }
  if (lane == 0) {
    if (mean_out) mean_out[r] = m;
    if (invstd_out) invstd_out[r] = rstd;
  }
}

template <class T, class P, class acc, int kV>
__global__ void ln_backward_rows_kernel(T* dx, const T* dy, const T* x, const acc* mean, const acc* invstd,
                                        const P* w, int64_t rows, int C) {
  const int64_t r = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (r >= rows) return;  // warp-uniform
  const T* xr = x + r * C;
  const T* gr = dy + r * C;
  T* dxr = dx + r * C;
  const acc inv_c = acc(1) / acc(C);
  const acc m = mean[r], rstd = invstd[r];
  acc sg = 0, sgx = 0;
  if constexpr (kV > 0) {
    acc g[kV], xh[kV];
#pragma unroll
    for (int k = 0; k < kV; ++k) {
      const int c = lane + 32 * k;
      if (c < C) {
        g[k] = static_cast<acc>(gr[c]);
        if (w) g[k] *= static_cast<acc>(w[c]);
        xh[k] = (static_cast<acc>(xr[c]) - m) * rstd;
      } else {
        g[k] = xh[k] = 0;
      }
      sg += g[k];
      sgx += g[k] * xh[k];
    }
    sg = warp_sum(sg) * inv_c;
    sgx = warp_sum(sgx) * inv_c;
#pragma unroll
    for (int k = 0; k < kV; ++k) {
      const int c = lane + 32 * k;
      if (c < C) dxr[c] = static_cast<T>(rstd * (g[k] - sg - xh[k] * sgx));
    }
  } else {
    for (int c = lane; c < C; c += 32) {
      acc g = static_cast<acc>(gr[c]);
      if (w) g *= static_cast<acc>(w[c]);
      sg += g;
      sgx += g * (static_cast<acc>(xr[c]) - m) * rstd;
    }
    sg = warp_sum(sg) * inv_c;
    sgx = warp_sum(sgx) * inv_c;
    for (int c = lane; c < C; c += 32) {
      acc g = static_cast<acc>(gr[c]);
      if (w) g *= static_cast<acc>(w[c]);
      const acc xh = (static_cast<acc>(xr[c]) - m) * rstd;
      dxr[c] = static_cast<T>(rstd * (g - sg - xh * sgx));
    }
  }
}

// Thread per position (o, i); channel c of it at (o C + c) inner + i.
template <class T, class P, class acc>
__global__ void ln_forward_inner_kernel(T* y, acc* mean_out, acc* invstd_out, const T* x, const P* w, const P* b,
                                        int64_t npos, int64_t C, int64_t inner, acc eps) {
  const acc inv_c = acc(1) / acc(C);
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < npos; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = p / inner, i = p - o * inner;
    const T* xp = x + o * C * inner + i;
    T* yp = y + o * C * inner + i;
    acc sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += static_cast<acc>(xp[c * inner]);
    const acc m = sum * inv_c;
    acc sq = 0;
    for (int64_t c = 0; c < C; ++c) {
      const acc d = static_cast<acc>(xp[c * inner]) - m;
      sq += d * d;
    }
    const acc rstd = acc(1) / math::sqrt(sq * inv_c + eps);
    for (int64_t c = 0; c < C; ++c) {
      acc v = (static_cast<acc>(xp[c * inner]) - m) * rstd;
      if (w) v *= static_cast<acc>(w[c]);
      if (b) v += static_cast<acc>(b[c]);
      yp[c * inner] = static_cast<T>(v);
    }
    if (mean_out) mean_out[p] = m;
    if (invstd_out) invstd_out[p] = rstd;
  }
}

template <class T, class P, class acc>
__global__ void ln_backward_inner_kernel(T* dx, const T* dy, const T* x, const acc* mean, const acc* invstd,
                                         const P* w, int64_t npos, int64_t C, int64_t inner) {
  const acc inv_c = acc(1) / acc(C);
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < npos; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = p / inner, i = p - o * inner;
    const int64_t off = o * C * inner + i;
    const acc m = mean[p], rstd = invstd[p];
    acc sg = 0, sgx = 0;
    for (int64_t c = 0; c < C; ++c) {
      acc g = static_cast<acc>(dy[off + c * inner]);
      if (w) g *= static_cast<acc>(w[c]);
      sg += g;
      sgx += g * (static_cast<acc>(x[off + c * inner]) - m) * rstd;
    }
    sg *= inv_c;
    sgx *= inv_c;
    for (int64_t c = 0; c < C; ++c) {
      acc g = static_cast<acc>(dy[off + c * inner]);
      if (w) g *= static_cast<acc>(w[c]);
      const acc xh = (static_cast<acc>(x[off + c * inner]) - m) * rstd;
      dx[off + c * inner] = static_cast<T>(rstd * (g - sg - xh * sgx));
    }
  }
}

// Calls launch(std::integral_constant<int, kV>) with the smallest register row that holds C.
template <class L> void with_row_vector(int64_t C, const L& launch) {
  if (C <= 32) return launch(std::integral_constant<int, 1>());
  if (C <= 64) return launch(std::integral_constant<int, 2>());
  if (C <= 128) return launch(std::integral_constant<int, 4>());
  if (C <= 256) return launch(std::integral_constant<int, 8>());
  if (C <= 512) return launch(std::integral_constant<int, 16>());
  if (C <= 1024) return launch(std::integral_constant<int, 32>());
  return launch(std::integral_constant<int, 0>());
}

constexpr int kRowsPerBlock = kThreads / 32;

}  // namespace

// ---------------------------------------------------------------- entry points

void batch_norm_stats(const Tensor& mean, const Tensor& invstd, const Tensor& x, NormShape s,
                      const Tensor& running_mean, const Tensor& running_var, double momentum, double eps) {
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    const int64_t n = s.outer * s.inner;
    const T* xp = x.data<T>();
    acc* mp = mean.data<acc>();
    acc* ip = invstd.data<acc>();
    const acc inv_n = acc(1) / acc(n);
    channel_sums<acc>(s, mean.dtype(), x.device(), SumX<T, acc>{xp}, FinMean<acc>{mp, inv_n});
    auto second_pass = [&](auto* rm, auto* rv) {
      using R = std::remove_pointer_t<decltype(rm)>;
      FinVar<acc, R> fin{mp, ip, rm, rv, inv_n, acc(eps), acc(momentum), acc(double(n) / double(n - 1))};
      channel_sums<acc>(s, mean.dtype(), x.device(), SumCentred<T, acc>{xp, mp}, fin);
    };
    if (!running_mean.defined() && !running_var.defined()) {
      second_pass(static_cast<float*>(nullptr), static_cast<float*>(nullptr));
      return;
    }
    const Tensor& any = running_mean.defined() ? running_mean : running_var;
    UNIREP_CHECK(!running_mean.defined() || !running_var.defined() || running_mean.dtype() == running_var.dtype(),
                 "batch_norm: running_mean is ", dtype_name(running_mean.dtype()), " but running_var is ",
                 dtype_name(running_var.dtype()));
    UNIREP_DISPATCH_FLOATING(any.dtype(), "batch_norm", [&] {
      using R = scalar_t;
      second_pass(opt_mut<R>(running_mean), opt_mut<R>(running_var));
    });
  });
}

void batch_norm_eval_stats(const Tensor& mean, const Tensor& invstd, const Tensor& running_mean,
                           const Tensor& running_var, double eps) {
  const int64_t C = mean.numel();
  if (C == 0) return;
  auto run = [&](auto tag) {
    using acc = decltype(tag);
    UNIREP_DISPATCH_FLOATING(running_mean.dtype(), "batch_norm", [&] {
      using R = scalar_t;
      bn_eval_stats_kernel<acc, R><<<blocks_for(C), kThreads, 0, stream()>>>(
          mean.data<acc>(), invstd.data<acc>(), running_mean.data<R>(), running_var.data<R>(), C, acc(eps));
      CUDA_CHECK_LAUNCH();
    });
  };
  if (mean.dtype() == DType::Float64) run(double());
  else run(float());
}

void batch_norm_apply(const Tensor& y, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                      const Tensor& weight, const Tensor& bias, NormShape s) {
  const int64_t n = s.numel();
  if (n == 0) return;
  const DType pdt = norm_param_dtype("batch_norm", x.dtype(), {&weight, &bias});
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      using P = typename decltype(p)::type;
      auto launch = [&](auto idx) {
        using I = decltype(idx);
        bn_apply_kernel<T, P, acc, I><<<grid_stride_blocks(n), kThreads, 0, stream()>>>(
            y.data<T>(), x.data<T>(), mean.data<acc>(), invstd.data<acc>(), opt_data<P>(weight), opt_data<P>(bias),
            I(n), I(s.channels), I(s.inner));
        CUDA_CHECK_LAUNCH();
      };
      if (fits_int32(n)) launch(uint32_t());
      else launch(int64_t());
    });
  });
}

void batch_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s, bool training) {
  const int64_t n = s.numel(), C = s.channels;
  if (C == 0) return;
  const DType pdt = norm_param_dtype("batch_norm_backward", x.dtype(), {&weight, &dweight, &dbias});
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      using P = typename decltype(p)::type;
      const acc* mp = mean.data<acc>();
      const acc* ip = invstd.data<acc>();
      Tensor sums;
      const bool dx_needs_sums = dx.defined() && training;
      if (dweight.defined() || dbias.defined() || dx_needs_sums) {
        if (dx_needs_sums) sums = Tensor::empty({2 * C}, mean.dtype(), x.device());
        acc* s1 = dx_needs_sums ? sums.data<acc>() : nullptr;
        acc* s2 = dx_needs_sums ? s1 + C : nullptr;
        channel_sums<acc>(s, mean.dtype(), x.device(), SumGradBN<T, acc>{dy.data<T>(), x.data<T>(), mp},
                          FinGradBN<P, acc>{s1, s2, opt_mut<P>(dweight), opt_mut<P>(dbias), ip});
      }
      if (!dx.defined() || n == 0) return;
      const acc* s1 = dx_needs_sums ? sums.data<acc>() : nullptr;
      const acc* s2 = dx_needs_sums ? s1 + C : nullptr;
      const acc inv_n = acc(1) / acc(s.outer * s.inner);
      auto launch = [&](auto idx) {
        using I = decltype(idx);
        bn_backward_dx_kernel<T, P, acc, I><<<grid_stride_blocks(n), kThreads, 0, stream()>>>(
            dx.data<T>(), dy.data<T>(), x.data<T>(), mp, ip, opt_data<P>(weight), s1, s2, inv_n, nullptr, I(n),
            I(C), I(s.inner));
        CUDA_CHECK_LAUNCH();
      };
      if (fits_int32(n)) launch(uint32_t());
      else launch(int64_t());
    });
  });
}

void batch_norm_partial_sums(const Tensor& sums, const Tensor& x, NormShape s) {
  const int64_t C = s.channels;
  if (C == 0) return;
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    const DType stat = norm_stat_dtype(x.dtype());
    const int64_t n = s.outer * s.inner;
    Tensor first_mean = Tensor::empty({C}, stat, x.device());
    acc* mp = first_mean.data<acc>();
    channel_sums<acc>(s, stat, x.device(), SumX<T, acc>{x.data<T>()}, FinMean<acc>{mp, acc(1) / acc(n)});
    channel_sums<acc>(s, stat, x.device(), SumCentred<T, acc>{x.data<T>(), mp},
                      FinPartialSums<acc>{mp, sums.data<double>(), C, double(n)});
  });
}

void batch_norm_stats_from_sums(const Tensor& mean, const Tensor& invstd, const Tensor& sums,
                                const Tensor& running_mean, const Tensor& running_var, double momentum, double eps) {
  const int64_t C = mean.numel();
  if (C == 0) return;
  auto run = [&](auto tag) {
    using acc = decltype(tag);
    auto launch = [&](auto* rm, auto* rv) {
      using R = std::remove_pointer_t<decltype(rm)>;
      bn_stats_from_sums_kernel<acc, R><<<blocks_for(C), kThreads, 0, stream()>>>(
          mean.data<acc>(), invstd.data<acc>(), rm, rv, sums.data<double>(), C, momentum, eps);
      CUDA_CHECK_LAUNCH();
    };
    if (!running_mean.defined() && !running_var.defined()) {
      launch(static_cast<float*>(nullptr), static_cast<float*>(nullptr));
      return;
    }
    const Tensor& any = running_mean.defined() ? running_mean : running_var;
    UNIREP_DISPATCH_FLOATING(any.dtype(), "batch_norm", [&] {
      using R = scalar_t;
      launch(opt_mut<R>(running_mean), opt_mut<R>(running_var));
    });
  };
  if (mean.dtype() == DType::Float64) run(double());
  else run(float());
}

void batch_norm_backward_reduce(const Tensor& grad_sums, const Tensor& dweight, const Tensor& dbias,
                                const Tensor& dy, const Tensor& x, const Tensor& mean, const Tensor& invstd,
                                NormShape s) {
  const int64_t C = s.channels;
  if (C == 0 || (!grad_sums.defined() && !dweight.defined() && !dbias.defined())) return;
  const DType pdt = norm_param_dtype("batch_norm_backward", x.dtype(), {&dweight, &dbias});
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      using P = typename decltype(p)::type;
      acc* s1 = opt_mut<acc>(grad_sums);
      acc* s2 = s1 ? s1 + C : nullptr;
      channel_sums<acc>(s, mean.dtype(), x.device(), SumGradBN<T, acc>{dy.data<T>(), x.data<T>(), mean.data<acc>()},
                        FinGradBN<P, acc>{s1, s2, opt_mut<P>(dweight), opt_mut<P>(dbias), invstd.data<acc>()});
    });
  });
}

void batch_norm_backward_elemt(const Tensor& dx, const Tensor& dy, const Tensor& x, const Tensor& mean,
                               const Tensor& invstd, const Tensor& weight, const Tensor& grad_sums,
                               const Tensor& count, NormShape s) {
  const int64_t n = s.numel(), C = s.channels;
  if (n == 0) return;
  const DType pdt = norm_param_dtype("batch_norm_backward", x.dtype(), {&weight});
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      using P = typename decltype(p)::type;
      const acc* s1 = grad_sums.data<acc>();
      auto launch = [&](auto idx) {
        using I = decltype(idx);
        bn_backward_dx_kernel<T, P, acc, I><<<grid_stride_blocks(n), kThreads, 0, stream()>>>(
            dx.data<T>(), dy.data<T>(), x.data<T>(), mean.data<acc>(), invstd.data<acc>(), opt_data<P>(weight), s1,
            s1 + C, acc(0), count.data<double>(), I(n), I(C), I(s.inner));
        CUDA_CHECK_LAUNCH();
      };
      if (fits_int32(n)) launch(uint32_t());
      else launch(int64_t());
    });
  });
}

void layer_norm_forward(const Tensor& y, const Tensor& mean, const Tensor& invstd, const Tensor& x,
                        const Tensor& weight, const Tensor& bias, NormShape s, double eps) {
  const int64_t npos = s.outer * s.inner, C = s.channels;
  if (npos == 0 || C == 0) return;
  const DType pdt = norm_param_dtype("layer_norm", x.dtype(), {&weight, &bias});
  UNIREP_DISPATCH_FLOATING(x.dtype(), "layer_norm", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      using P = typename decltype(p)::type;
      acc* mp = opt_mut<acc>(mean);
      acc* ip = opt_mut<acc>(invstd);
      if (s.inner == 1) {
        UNIREP_CHECK(C < (int64_t(1) << 31), "layer_norm: too many channels (", C, ")");
        with_row_vector(C, [&](auto kv) {
          constexpr int kV = decltype(kv)::value;
          ln_forward_rows_kernel<T, P, acc, kV><<<blocks_for(npos, kRowsPerBlock), kThreads, 0, stream()>>>(
              y.data<T>(), mp, ip, x.data<T>(), opt_data<P>(weight), opt_data<P>(bias), npos, int(C), acc(eps));
          CUDA_CHECK_LAUNCH();
        });
        return;
      }
      ln_forward_inner_kernel<T, P, acc><<<grid_stride_blocks(npos), kThreads, 0, stream()>>>(
          y.data<T>(), mp, ip, x.data<T>(), opt_data<P>(weight), opt_data<P>(bias), npos, C, s.inner, acc(eps));
      CUDA_CHECK_LAUNCH();
    });
  });
}

void layer_norm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dbias, const Tensor& dy,
                         const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                         NormShape s) {
  const int64_t npos = s.outer * s.inner, C = s.channels;
  if (C == 0) return;
  const DType pdt = norm_param_dtype("layer_norm_backward", x.dtype(), {&weight, &dweight, &dbias});
  UNIREP_DISPATCH_FLOATING(x.dtype(), "layer_norm_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(pdt, [&](auto p) {
      using P = typename decltype(p)::type;
      const acc* mp = mean.data<acc>();
      const acc* ip = invstd.data<acc>();
      if (dweight.defined() || dbias.defined())
        channel_sums<acc>(s, mean.dtype(), x.device(), SumGradLN<T, acc>{dy.data<T>(), x.data<T>(), mp, ip},
                          FinGradLN<P, acc>{opt_mut<P>(dweight), opt_mut<P>(dbias)});
      if (!dx.defined() || npos == 0) return;
      if (s.inner == 1) {
        UNIREP_CHECK(C < (int64_t(1) << 31), "layer_norm_backward: too many channels (", C, ")");
        with_row_vector(C, [&](auto kv) {
          constexpr int kV = decltype(kv)::value;
          ln_backward_rows_kernel<T, P, acc, kV><<<blocks_for(npos, kRowsPerBlock), kThreads, 0, stream()>>>(
              dx.data<T>(), dy.data<T>(), x.data<T>(), mp, ip, opt_data<P>(weight), npos, int(C));
          CUDA_CHECK_LAUNCH();
        });
        return;
      }
      ln_backward_inner_kernel<T, P, acc><<<grid_stride_blocks(npos), kThreads, 0, stream()>>>(
          dx.data<T>(), dy.data<T>(), x.data<T>(), mp, ip, opt_data<P>(weight), npos, C, s.inner);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace unirep::cuda
