// Fused GELU + GRN, CUDA kernels (the math is in gelu_grn.h).
//
// One launch geometry serves the four passes over h: a thread owns one channel vector of one sample
// (VEC consecutive channels, 16 bytes, when F % VEC == 0 and every pointer is 16-byte aligned; else
// VEC = 1, the scalar fallback) and walks a range of positions. A block is rpi x nv threads: nv
// vectors of one channel tile side by side (consecutive threads read consecutive pieces of a row)
// times rpi rows, so each step of a block reads rpi * nv vectors of contiguous memory whatever F is
// (F = 320 in bf16: 40 vectors x 6 rows = 240 threads). grid = (position splits, channel tiles, N).
// Rows are walked a few at a time (kUnrollFor), their loads issued before any math.
//
// Sum passes: each thread accumulates VEC values in acc_t, the block adds them over its rpi rows in
// shared memory (fixed order) and writes one partial per (n, split, channel); one block per sample
// then adds the splits in order, forms G and the sample's mean of G (a fixed-shape tree), and writes
// the per-(n, f) coefficients. dgamma/dbeta add the per-sample contributions over n in order in a
// last small kernel. No atomics: results do not depend on scheduling.
// Elementwise passes keep their channel vector's coefficients in registers for the whole range.
#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/vec.cuh"
#include "core/ops/elementwise.h"
#include "core/ops/gelu_grn.h"
#include "core/ops/math.h"
#include "core/ops/norm.h"

namespace unirep::cuda {

namespace {

constexpr int kMaxThreads = 256;          // per block of the passes over h
// Blocks per SM the passes over h are compiled for: at most 85 registers a thread (the bf16 kernels
// need about 80 without spilling), 720 threads of 240-thread blocks resident per SM.
constexpr int kMinBlocks = 3;
// Rows a thread loads before using any: 64 bytes in flight per thread with 16-byte vectors (4 rows
// of h, or 2 rows of h and dy; more would cost registers, hence occupancy), 4 rows when scalar.
constexpr int kMaxUnroll = 4;
template <class T, int VEC, int kInputs>
constexpr int kUnrollFor = std::min(kMaxUnroll, std::max(1, 64 / int(sizeof(T) * VEC * kInputs)));
constexpr int64_t kTargetBlocks = 1024;   // about 2.6 waves of 3 blocks on each of an H100's 132 SMs


struct Geometry {
  int64_t nvec = 1;     // channel vectors per row: F / VEC
  int nv = 1;           // vectors per channel tile, side by side
  int rpi = 1;          // rows a block walks at once
  int threads = 1;      // nv * rpi
  int64_t ntiles = 1;   // channel tiles per row
  int64_t nsplit = 1;   // position ranges per sample
  int64_t rows_per_split = 1;
};

Geometry geometry(GeluGrnShape s, int vec) {
  Geometry g;
  g.nvec = s.channels / vec;
  g.ntiles = (g.nvec + kMaxThreads - 1) / kMaxThreads;
  g.nv = int((g.nvec + g.ntiles - 1) / g.ntiles);
  g.rpi = std::max(1, kMaxThreads / g.nv);
  g.threads = g.nv * g.rpi;
  // At least two unrolled steps per split, else the split's reduction costs more than its loads.
  const int64_t min_rows = int64_t(g.rpi) * kMaxUnroll * 2;
  const int64_t max_split = std::max<int64_t>(1, (s.positions + min_rows - 1) / min_rows);
  const int64_t want = std::max<int64_t>(1, kTargetBlocks / std::max<int64_t>(1, s.batch * g.ntiles));
  g.nsplit = std::min<int64_t>({want, max_split, 65535});
  g.rows_per_split = std::max<int64_t>(1, (s.positions + g.nsplit - 1) / g.nsplit);
  g.nsplit = std::max<int64_t>(1, (s.positions + g.rows_per_split - 1) / g.rows_per_split);  // none empty
  UNIREP_CHECK(g.ntiles <= 65535 && s.batch <= 65535, "gelu_grn: ", s.batch, " samples of ", s.channels,
               " channels exceed the CUDA grid (at most 65535 samples and 65535 channel tiles)");
  return g;
}

// Where a thread of the passes over h works: sample n, channel vector cv, rows ro, ro + rpi, ...
// of [r0, r1).
struct Lane {
  int64_t n, cv, r0, r1;
  int ro;
  bool active;
};

__device__ __forceinline__ Lane lane_of(const Geometry& g, int64_t positions) {
  Lane l;
  const int lv = int(threadIdx.x) % g.nv;
  l.ro = int(threadIdx.x) / g.nv;
  l.cv = int64_t(blockIdx.y) * g.nv + lv;
  l.n = blockIdx.z;
  l.r0 = int64_t(blockIdx.x) * g.rows_per_split;
  l.r1 = l.r0 + g.rows_per_split < positions ? l.r0 + g.rows_per_split : positions;
  l.active = l.cv < g.nvec;
  return l;
}

template <class acc> __device__ __forceinline__ acc warp_sum(acc v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32), returned to every thread; shared holds 33 values.
template <class acc> __device__ __forceinline__ acc block_sum_all(acc v, acc* shared) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    acc total = 0;
    for (int w = 0; w < nwarps; ++w) total += shared[w];
    shared[32] = total;
  }
  __syncthreads();
  return shared[32];
}

// partial: [N][nsplit][2][F]. Forward (kBackward false): slot 0 = sum z^2. Backward: slot 0 =
// sum dy z, slot 1 = sum dy.
template <class T, int VEC, bool kBackward>
__global__ void __launch_bounds__(kMaxThreads, kMinBlocks)
    sums_kernel(const T* __restrict__ h, const T* __restrict__ dy, GeluGrnShape s, Geometry g,
                acc_t<T>* __restrict__ partial) {
  using acc = acc_t<T>;
  constexpr int kUnroll = kUnrollFor<T, VEC, kBackward ? 2 : 1>;
  extern __shared__ __align__(16) unsigned char smem[];
  acc* sh1 = reinterpret_cast<acc*>(smem);
  acc* sh2 = sh1 + g.threads * VEC;
  const Lane l = lane_of(g, s.positions);
  const int64_t F = s.channels;
  acc a1[VEC], a2[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) a1[j] = a2[j] = acc(0);
  if (l.active) {
    const int64_t step = int64_t(g.rpi) * F;
    for (int64_t r = l.r0 + l.ro; r < l.r1; r += int64_t(g.rpi) * kUnroll) {
      const int64_t e = (l.n * s.positions + r) * F + l.cv * VEC;
      VecOf<T, VEC> x[kUnroll], d[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (r + int64_t(u) * g.rpi < l.r1) {
          x[u] = load_vec<T, VEC>(h + e + u * step);
          if constexpr (kBackward) d[u] = load_vec<T, VEC>(dy + e + u * step);
        }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (r + int64_t(u) * g.rpi < l.r1) {
#pragma unroll
          for (int j = 0; j < VEC; ++j) {
            const acc z = ew::gelu(static_cast<acc>(x[u].v[j]));
            if constexpr (kBackward) {
              const acc gy = static_cast<acc>(d[u].v[j]);
              a1[j] += gy * z;
              a2[j] += gy;
            } else {
              a1[j] += z * z;
            }
          }
        }
    }
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    sh1[threadIdx.x * VEC + j] = a1[j];
    if constexpr (kBackward) sh2[threadIdx.x * VEC + j] = a2[j];
  }
  __syncthreads();
  // Thread ro * nv + lv left channel lv * VEC + j of the tile at (ro * nv + lv) * VEC + j.
  const int width = g.nv * VEC;
  acc* out = partial + ((l.n * g.nsplit + blockIdx.x) * 2) * F;
  for (int c = threadIdx.x; c < width; c += g.threads) {
    acc s1 = 0, s2 = 0;
    for (int ro = 0; ro < g.rpi; ++ro) {
      s1 += sh1[ro * width + c];
      if constexpr (kBackward) s2 += sh2[ro * width + c];
    }
    const int64_t f = int64_t(blockIdx.y) * width + c;
    if (f < F) {
      out[f] = s1;
      if constexpr (kBackward) out[F + f] = s2;
    }
  }
}

// One block per sample: G = sqrt(sum of the splits), d = mean_f G + eps, scale = gamma G / d + 1.
template <class acc, class P>
__global__ void forward_finish_kernel(const acc* __restrict__ partial, int64_t nsplit, int64_t F,
                                      const P* __restrict__ gamma, acc* __restrict__ G, acc* __restrict__ scale) {
  __shared__ acc shared[33];
  const int64_t n = blockIdx.x;
  acc local = 0;
  for (int64_t f = threadIdx.x; f < F; f += blockDim.x) {
    acc sq = 0;
    for (int64_t k = 0; k < nsplit; ++k) sq += partial[((n * nsplit + k) * 2) * F + f];
    const acc norm = math::sqrt(sq);
    G[n * F + f] = norm;
    local += norm;
  }
  const acc d = block_sum_all(local, shared) / acc(F) + acc(kGrnEps);
  for (int64_t f = threadIdx.x; f < F; f += blockDim.x)
    scale[n * F + f] = convert<acc>(gamma[f]) * (G[n * F + f] / d) + acc(1);
}

template <class T, int VEC, class P>
__global__ void __launch_bounds__(kMaxThreads, kMinBlocks)
    forward_apply_kernel(T* __restrict__ out, const T* __restrict__ h, const acc_t<T>* __restrict__ scale,
                         const P* __restrict__ beta, GeluGrnShape s, Geometry g) {
  using acc = acc_t<T>;
  constexpr int kUnroll = kUnrollFor<T, VEC, 1>;
  const Lane l = lane_of(g, s.positions);
  if (!l.active) return;
  const int64_t F = s.channels;
  acc sc[VEC], shift[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    const int64_t f = l.cv * VEC + j;
    sc[j] = scale[l.n * F + f];
    shift[j] = beta ? convert<acc>(beta[f]) : acc(0);
  }
  const int64_t step = int64_t(g.rpi) * F;
  for (int64_t r = l.r0 + l.ro; r < l.r1; r += int64_t(g.rpi) * kUnroll) {
    const int64_t e = (l.n * s.positions + r) * F + l.cv * VEC;
    VecOf<T, VEC> x[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (r + int64_t(u) * g.rpi < l.r1) x[u] = load_vec<T, VEC>(h + e + u * step);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (r + int64_t(u) * g.rpi < l.r1) {
        VecOf<T, VEC> o;
#pragma unroll
        for (int j = 0; j < VEC; ++j)
          o.v[j] = static_cast<T>(ew::gelu(static_cast<acc>(x[u].v[j])) * sc[j] + shift[j]);
        store_vec<T, VEC>(out + e + u * step, o);
      }
  }
}

// One block per sample: from the sums A (slot 0) and B (slot 1) and the saved G, the sample's
// contributions A Nx and B to dgamma and dbeta, and the coefficients scale and k of dz = dy scale + z k.
template <class acc, class P>
__global__ void backward_finish_kernel(const acc* __restrict__ partial, int64_t nsplit, int64_t F,
                                       const acc* __restrict__ G, const P* __restrict__ gamma,
                                       acc* __restrict__ gamma_part, acc* __restrict__ beta_part,
                                       acc* __restrict__ scale, acc* __restrict__ coef) {
  __shared__ acc shared[33];
  const int64_t n = blockIdx.x;
  const acc* Gn = G + n * F;
  acc local = 0;
  for (int64_t f = threadIdx.x; f < F; f += blockDim.x) local += Gn[f];
  const acc d = block_sum_all(local, shared) / acc(F) + acc(kGrnEps);
  acc coupling = 0;
  for (int64_t f = threadIdx.x; f < F; f += blockDim.x) {
    acc A = 0, B = 0;
    for (int64_t k = 0; k < nsplit; ++k) {
      A += partial[((n * nsplit + k) * 2) * F + f];
      B += partial[((n * nsplit + k) * 2 + 1) * F + f];
    }
    const acc nx = Gn[f] / d, w = convert<acc>(gamma[f]), dnx = A * w;
    gamma_part[n * F + f] = A * nx;
    beta_part[n * F + f] = B;
    scale[n * F + f] = w * nx + acc(1);
    coef[n * F + f] = dnx;  // replaced by k below, by this same thread
    coupling += dnx * nx;
  }
  const acc c = block_sum_all(coupling, shared) / acc(F);
  for (int64_t f = threadIdx.x; f < F; f += blockDim.x) {
    const acc dG = (coef[n * F + f] - c) / d;
    coef[n * F + f] = Gn[f] == acc(0) ? acc(0) : dG / Gn[f];
  }
}

template <class acc, class P>
__global__ void param_grads_kernel(const acc* __restrict__ gamma_part, const acc* __restrict__ beta_part,
                                   int64_t N, int64_t F, P* __restrict__ dgamma, P* __restrict__ dbeta) {
  for (int64_t f = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; f < F; f += int64_t(gridDim.x) * blockDim.x) {
    acc a = 0, b = 0;
    for (int64_t n = 0; n < N; ++n) {
      a += gamma_part[n * F + f];
      b += beta_part[n * F + f];
    }
    if (dgamma) dgamma[f] = static_cast<P>(a);
    if (dbeta) dbeta[f] = static_cast<P>(b);
  }
}

template <class T, int VEC>
__global__ void __launch_bounds__(kMaxThreads, kMinBlocks)
    backward_apply_kernel(T* __restrict__ dh, const T* __restrict__ dy, const T* __restrict__ h,
                          const acc_t<T>* __restrict__ scale, const acc_t<T>* __restrict__ coef, GeluGrnShape s,
                          Geometry g) {
  using acc = acc_t<T>;
  constexpr int kUnroll = kUnrollFor<T, VEC, 2>;
  const Lane l = lane_of(g, s.positions);
  if (!l.active) return;
  const int64_t F = s.channels;
  acc sc[VEC], k[VEC];
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    const int64_t i = l.n * F + l.cv * VEC + j;
    sc[j] = scale[i];
    k[j] = coef[i];
  }
  const int64_t step = int64_t(g.rpi) * F;
  for (int64_t r = l.r0 + l.ro; r < l.r1; r += int64_t(g.rpi) * kUnroll) {
    const int64_t e = (l.n * s.positions + r) * F + l.cv * VEC;
    VecOf<T, VEC> x[kUnroll], d[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (r + int64_t(u) * g.rpi < l.r1) {
        x[u] = load_vec<T, VEC>(h + e + u * step);
        d[u] = load_vec<T, VEC>(dy + e + u * step);
      }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (r + int64_t(u) * g.rpi < l.r1) {
        VecOf<T, VEC> o;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const acc xv = static_cast<acc>(x[u].v[j]);
          const acc dz = static_cast<acc>(d[u].v[j]) * sc[j] + ew::gelu(xv) * k[j];
          o.v[j] = static_cast<T>(dz * ew::gelu_grad(xv));
        }
        store_vec<T, VEC>(dh + e + u * step, o);
      }
  }
}

template <class T, class P, int VEC>
void apply_impl(const Tensor& out, const Tensor& h, const Tensor& scale, const Tensor& beta, GeluGrnShape s) {
  using acc = acc_t<T>;
  const Geometry g = geometry(s, VEC);
  const dim3 grid(unsigned(g.nsplit), unsigned(g.ntiles), unsigned(s.batch));
  forward_apply_kernel<T, VEC, P><<<grid, g.threads, 0, stream()>>>(
      out.data<T>(), h.data<T>(), scale.data<acc>(), beta.defined() ? beta.data<P>() : nullptr, s, g);
  CUDA_CHECK_LAUNCH();
}

template <class T, class P, int VEC>
void forward_impl(const Tensor& out, const Tensor& norm, const Tensor& h, const Tensor& gamma, const Tensor& beta,
                  GeluGrnShape s, const Tensor& scale_out) {
  using acc = acc_t<T>;
  const Geometry g = geometry(s, VEC);
  Tensor partial = Tensor::empty({s.batch * g.nsplit * 2 * s.channels}, norm.dtype(), h.device());
  Tensor scale = scale_out.defined() ? scale_out : Tensor::empty({s.batch * s.channels}, norm.dtype(), h.device());
  const dim3 grid(unsigned(g.nsplit), unsigned(g.ntiles), unsigned(s.batch));
  sums_kernel<T, VEC, false><<<grid, g.threads, size_t(g.threads) * VEC * sizeof(acc), stream()>>>(
      h.data<T>(), nullptr, s, g, partial.data<acc>());
  CUDA_CHECK_LAUNCH();
  forward_finish_kernel<acc, P><<<unsigned(s.batch), kThreads, 0, stream()>>>(
      partial.data<acc>(), g.nsplit, s.channels, gamma.data<P>(), norm.data<acc>(), scale.data<acc>());
  CUDA_CHECK_LAUNCH();
  forward_apply_kernel<T, VEC, P><<<grid, g.threads, 0, stream()>>>(
      out.data<T>(), h.data<T>(), scale.data<acc>(), beta.defined() ? beta.data<P>() : nullptr, s, g);
  CUDA_CHECK_LAUNCH();
}

template <class T, class P, int VEC>
void backward_impl(const Tensor& dh, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy, const Tensor& h,
                   const Tensor& norm, const Tensor& gamma, GeluGrnShape s) {
  using acc = acc_t<T>;
  const Geometry g = geometry(s, VEC);
  const int64_t NF = s.batch * s.channels;
  Tensor partial = Tensor::empty({s.batch * g.nsplit * 2 * s.channels}, norm.dtype(), h.device());
  Tensor coeffs = Tensor::empty({4 * NF}, norm.dtype(), h.device());  // gamma part, beta part, scale, k
  acc* gamma_part = coeffs.data<acc>();
  acc* beta_part = gamma_part + NF;
  acc* scale = beta_part + NF;
  acc* coef = scale + NF;
  const dim3 grid(unsigned(g.nsplit), unsigned(g.ntiles), unsigned(s.batch));
  sums_kernel<T, VEC, true><<<grid, g.threads, size_t(g.threads) * VEC * 2 * sizeof(acc), stream()>>>(
      h.data<T>(), dy.data<T>(), s, g, partial.data<acc>());
  CUDA_CHECK_LAUNCH();
  backward_finish_kernel<acc, P><<<unsigned(s.batch), kThreads, 0, stream()>>>(
      partial.data<acc>(), g.nsplit, s.channels, norm.data<acc>(), gamma.data<P>(), gamma_part, beta_part, scale,
      coef);
  CUDA_CHECK_LAUNCH();
  if (dgamma.defined() || dbeta.defined()) {
    param_grads_kernel<acc, P><<<blocks_for(s.channels), kThreads, 0, stream()>>>(
        gamma_part, beta_part, s.batch, s.channels, dgamma.defined() ? dgamma.data<P>() : nullptr,
        dbeta.defined() ? dbeta.data<P>() : nullptr);
    CUDA_CHECK_LAUNCH();
  }
  if (dh.defined()) {
    backward_apply_kernel<T, VEC><<<grid, g.threads, 0, stream()>>>(dh.data<T>(), dy.data<T>(), h.data<T>(), scale,
                                                                     coef, s, g);
    CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

void gelu_grn_forward(const Tensor& out, const Tensor& norm, const Tensor& h, const Tensor& gamma,
                      const Tensor& beta, GeluGrnShape s, const Tensor& scale) {
  if (s.batch == 0) return;
  UNIREP_DISPATCH_FLOATING(h.dtype(), "gelu_grn", [&] {
    using T = scalar_t;
    with_norm_param<T>(gamma.dtype(), [&](auto p) {
      using P = typename decltype(p)::type;
      with_vector_width<T>(s.channels, {&out, &h}, [&](auto vec) {
        forward_impl<T, P, decltype(vec)::value>(out, norm, h, gamma, beta, s, scale);
      });
    });
  });
}

void gelu_grn_apply(const Tensor& out, const Tensor& h, const Tensor& scale, const Tensor& beta, GeluGrnShape s) {
  if (s.batch == 0) return;
  UNIREP_DISPATCH_FLOATING(h.dtype(), "gelu_grn_apply", [&] {
    using T = scalar_t;
    with_norm_param<T>(beta.defined() ? beta.dtype() : h.dtype(), [&](auto p) {
      using P = typename decltype(p)::type;
      with_vector_width<T>(s.channels, {&out, &h}, [&](auto vec) {
        apply_impl<T, P, decltype(vec)::value>(out, h, scale, beta, s);
      });
    });
  });
}

void gelu_grn_backward(const Tensor& dh, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                       const Tensor& h, const Tensor& norm, const Tensor& gamma, GeluGrnShape s) {
  if (s.batch == 0) {
    if (dgamma.defined()) Tensor(dgamma).fill_(0.0);
    if (dbeta.defined()) Tensor(dbeta).fill_(0.0);
    return;
  }
  UNIREP_DISPATCH_FLOATING(h.dtype(), "gelu_grn", [&] {
    using T = scalar_t;
    with_norm_param<T>(gamma.dtype(), [&](auto p) {
      using P = typename decltype(p)::type;
      with_vector_width<T>(s.channels, {&dh, &dy, &h}, [&](auto vec) {
        backward_impl<T, P, decltype(vec)::value>(dh, dgamma, dbeta, dy, h, norm, gamma, s);
      });
    });
  });
}

}  // namespace unirep::cuda
