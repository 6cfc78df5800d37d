// Batch norm and layer norm, CUDA kernels (the math is in norm.h).
//
// Per-channel reductions (batch norm statistics and gradients, layer norm dweight/dbias) are
// two-stage and deterministic (no atomics): the positions of each channel are split into `nsplit`
// ranges, each block writes one partial per (range, channel), and a finish kernel (a team of 32 to
// 256 threads per channel, sized so each thread loads at most 4 partials; the partials laid out
// [part][C][nsplit] so a team's loads are contiguous) combines the partials in a fixed order and
// does the per-channel math (mean, invstd, running stats, dweight/dbias). The finish is latency, one
// short launch; batch_norm_stats finishes straight into mean/invstd and the running stats.
//   channel-last ([rows, C], inner = 1): a thread owns V consecutive channels (V = 16 / sizeof(T):
//     one 16-byte load per row; V = 1 when C % V != 0 or a pointer is not 16-byte aligned) and walks
//     every rs-th row of its block's range. A block is tcv channel vectors x rs rows (tcv = C / V up to
//     256, rs = 256 / tcv), so consecutive threads read one contiguous piece of rs whole rows; the
//     rs per-thread results are combined by a fixed tree in shared memory;
//   inner > 1 ([outer, C, inner]): a block per (channel, range) walks the range's positions, the
//     contiguous inner positions on consecutive threads.
// Batch norm statistics are one read of x: each thread keeps a Welford running mean and M2 of its
// values per channel (robust to a large mean, unlike sums of x and x^2), blocks merge (count, mean,
// M2) triples with Chan's formula and the finish kernel merges the blocks' triples in float64 around
// the first partial's mean (Chan's formula in its two-pass form: sums only, so a team shares the work).
// The batch norm elementwise passes over channel-last tensors use the same block shape: a thread
// loads its V channels' mean/scale/bias once, then moves 16-byte vectors down the rows, four rows of
// loads in flight. inner > 1 (and tensors of 2^31 elements or more) take a scalar grid-stride loop.
// Layer norm: with inner == 1 a warp normalises one row (the row is kept in registers when
// C <= 1024); with inner > 1 a thread normalises one (outer, inner) position, consecutive threads
// on consecutive inner positions so every channel step is a coalesced load.
// Elementwise passes use 32-bit index math whenever the tensor has fewer than 2^31 elements.
// Kernels take the parameters' element type P apart from the input's T (float32 parameters next
// to a bf16/f16 input, norm.h).
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/vec.cuh"
#include "core/ops/math.h"
#include "core/ops/norm.h"

namespace unirep::cuda {

namespace {

constexpr int64_t kTargetBlocks = 1024;  // enough blocks to fill an H100 a few times over
constexpr int kUnroll = 4;               // rows of vector loads in flight per thread, elementwise passes

template <class T> const T* opt_data(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <class T> T* opt_mut(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
unsigned grid_stride_blocks(int64_t n) { return std::min<unsigned>(blocks_for(n), 132u * 16u); }
bool fits_int32(int64_t n) { return n < (int64_t(1) << 31); }

template <class acc> __device__ __forceinline__ acc warp_sum(acc v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---------------------------------------------------------------- vectors

template <class T, int V> __device__ __forceinline__ VecOf<T, V> load_raw(const T* p) {
  VecOf<T, V> pk;
  if constexpr (sizeof(pk) == 16) {
    const uint4 bits = *reinterpret_cast<const uint4*>(p);  // one 128-bit load whatever T is
    memcpy(&pk, &bits, 16);
  } else {
    pk = *reinterpret_cast<const VecOf<T, V>*>(p);
  }
  return pk;
}

template <class acc, class T, int V> __device__ __forceinline__ void unpack(const VecOf<T, V>& pk, acc (&out)[V]) {
#pragma unroll
  for (int i = 0; i < V; ++i) out[i] = static_cast<acc>(pk.v[i]);
}

template <class acc, class T, int V> __device__ __forceinline__ void load_pack(const T* p, acc (&out)[V]) {
  unpack(load_raw<T, V>(p), out);
}

template <class T, class acc, int V> __device__ __forceinline__ void store_pack(T* p, const acc (&in)[V]) {
  VecOf<T, V> pk;
#pragma unroll
  for (int i = 0; i < V; ++i) pk.v[i] = static_cast<T>(in[i]);
  if constexpr (sizeof(pk) == 16) {
    uint4 bits;
    memcpy(&bits, &pk, 16);
    *reinterpret_cast<uint4*>(p) = bits;
  } else {
    *reinterpret_cast<VecOf<T, V>*>(p) = pk;
  }
}

__device__ __forceinline__ float reciprocal(float v) { return __frcp_rn(v); }
__device__ __forceinline__ double reciprocal(double v) { return 1.0 / v; }

// Block shape over channel-last [rows, C] with V channels per thread (see the header comment):
// thread t covers channel vector t % tcv of its block's tile and rows t / tcv, t / tcv + rs, ...
struct RowsShape {
  int tcv = 1, rs = 1, threads = 32;
  int64_t ctiles = 1;
};
RowsShape rows_shape(int64_t C, int V) {
  RowsShape g;
  const int64_t cv = C / V;
  g.tcv = int(std::min<int64_t>(cv, kThreads));
  g.rs = kThreads / g.tcv;
  g.threads = int(ceil_div(int64_t(g.tcv) * g.rs, 32) * 32);
  g.ctiles = ceil_div(cv, g.tcv);
  return g;
}

// ---------------------------------------------------------------- per-channel reductions

// Each functor F reduces elements to two accumulators per channel, a1 and a2, for V channels at once:
//   channel<V>(c, k)                     loads per-channel constants of channels c.. (once per thread);
//   add<V>(e, p, k, inv_count, a1, a2)   adds elements e.. (channels c.., position p = o * inner + i);
//                                        inv_count = 1 / (values this thread has added, this one included);
//   kWelford                             a1/a2 are a running mean and M2 (merged by Chan's formula)
//                                        rather than plain sums;
//   data()                               every pointer the vector loads read (for the alignment check).

// Chan's merge of (n, mean, M2) triples; plain sums add (n unused).
template <bool kWelford, class acc>
__device__ __forceinline__ void combine(acc& n, acc& a1, acc& a2, acc nb, acc b1, acc b2) {
  if constexpr (kWelford) {
    const acc total = n + nb;
    if (nb == acc(0)) return;
    const acc d = b1 - a1, f = nb / total;
    a1 += d * f;
    a2 += b2 + d * d * n * f;
    n = total;
  } else {
    a1 += b1;
    a2 += b2;
  }
}

// partial layout: [2][C][nsplit].
template <class acc, int V, class F>
__global__ void __launch_bounds__(kThreads)
    channel_sums_rows_kernel(F f, int64_t rows, int64_t C, int tcv, int rs, int64_t rows_per_split, int64_t nsplit,
                             acc* partial) {
  __shared__ acc sh1[V * kThreads];  // [channel of the vector][thread]: conflict-free tree steps
  __shared__ acc sh2[V * kThreads];
  __shared__ acc shn[kThreads];
  const int t = threadIdx.x, col = t % tcv, ry = t / tcv;
  const int64_t c = (int64_t(blockIdx.x) * tcv + col) * V;
  const int64_t split = blockIdx.y, r0 = split * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  const bool has_channels = c < C;
  acc k[V], a1[V], a2[V], count = 0;
#pragma unroll
  for (int i = 0; i < V; ++i) k[i] = a1[i] = a2[i] = acc(0);
  if (has_channels && ry < rs) {
    f.template channel<V>(c, k);
    const int64_t step = int64_t(rs) * C;
    int64_t e = (r0 + ry) * C + c;
#pragma unroll 4
    for (int64_t r = r0 + ry; r < r1; r += rs, e += step) {
      count += acc(1);
      f.template add<V>(e, r, k, reciprocal(count), a1, a2);
    }
  }
#pragma unroll
  for (int i = 0; i < V; ++i) {
    sh1[i * kThreads + t] = a1[i];
    sh2[i * kThreads + t] = a2[i];
  }
  shn[t] = count;
  __syncthreads();
  int half = 1;
  while (half < rs) half <<= 1;
  for (int s = half >> 1; s > 0; s >>= 1) {
    if (has_channels && ry < s && ry + s < rs) {
      const int u = t + s * tcv;
      acc n = 0;
#pragma unroll
      for (int i = 0; i < V; ++i) {
        n = shn[t];
        combine<F::kWelford>(n, sh1[i * kThreads + t], sh2[i * kThreads + t], shn[u], sh1[i * kThreads + u],
                             sh2[i * kThreads + u]);
      }
      shn[t] = n;
    }
    __syncthreads();
  }
  if (has_channels && ry == 0) {
#pragma unroll
    for (int i = 0; i < V; ++i) {
      partial[(c + i) * nsplit + split] = sh1[i * kThreads + t];
      partial[(C + c + i) * nsplit + split] = sh2[i * kThreads + t];
    }
  }
}

// Fixed-order tree over the block (blockDim.x a multiple of 32, at most 1024): the result in thread 0.
template <bool kWelford, class acc> __device__ void block_combine(acc& n, acc& a1, acc& a2, acc* shared) {
  auto warp_tree = [&] {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const acc nb = __shfl_down_sync(0xffffffffu, n, o), b1 = __shfl_down_sync(0xffffffffu, a1, o),
                b2 = __shfl_down_sync(0xffffffffu, a2, o);
      combine<kWelford>(n, a1, a2, nb, b1, b2);
    }
  };
  warp_tree();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) {
    shared[3 * warp] = n;
    shared[3 * warp + 1] = a1;
    shared[3 * warp + 2] = a2;
  }
  __syncthreads();
  if (warp == 0) {
    const bool has = lane < nwarps;
    n = has ? shared[3 * lane] : acc(0);
    a1 = has ? shared[3 * lane + 1] : acc(0);
    a2 = has ? shared[3 * lane + 2] : acc(0);
    warp_tree();
  }
}

template <class acc, class F>
__global__ void channel_sums_inner_kernel(F f, int64_t C, int64_t inner, int64_t npos, int64_t pos_per_split,
                                          int64_t nsplit, acc* partial) {
  __shared__ acc shared[3 * 32];
  const int64_t c = blockIdx.x;
  const int64_t split = blockIdx.y, j0 = split * pos_per_split;
  const int64_t j1 = j0 + pos_per_split < npos ? j0 + pos_per_split : npos;
  acc k[1] = {acc(0)}, a1[1] = {acc(0)}, a2[1] = {acc(0)}, count = 0;
  f.template channel<1>(c, k);
  for (int64_t j = j0 + threadIdx.x; j < j1; j += blockDim.x) {
    const int64_t o = j / inner, i = j - o * inner;
    count += acc(1);
    f.template add<1>((o * C + c) * inner + i, j, k, reciprocal(count), a1, a2);
  }
  block_combine<F::kWelford>(count, a1[0], a2[0], shared);
  if (threadIdx.x == 0) {
    partial[c * nsplit + split] = a1[0];
    partial[(C + c) * nsplit + split] = a2[0];
  }
}

// The finish kernels give each channel a team of P threads (P a power of two from 32 to kThreads,
// kThreads / P channels per block), so a channel's nsplit partials are spread over P threads rather
// than walked by one warp: the finish is one launch of C P / kThreads blocks with a few loads per thread.
// Teams reduce by a fixed tree: a xor butterfly inside each warp (every lane ends with the same bits,
// a + b == b + a), then the team's warp sums in warp order. shared holds a value per warp.
template <int P, class acc> __device__ __forceinline__ acc team_sum(acc v, acc* shared) {
  v = warp_sum(v);
  if constexpr (P == 32) {
    return v;
  } else {
    constexpr int W = P / 32;
    const int warp = threadIdx.x >> 5, first = warp & ~(W - 1);
    if ((threadIdx.x & 31) == 0) shared[warp] = v;
    __syncthreads();
    acc total = shared[first];
#pragma unroll
    for (int w = 1; w < W; ++w) total += shared[first + w];
    __syncthreads();  // shared is reused by the next call
    return total;
  }
}

// The smallest team with at most 4 partials a thread: finish(std::integral_constant<int, P>).
template <class L> void with_team(int64_t nsplit, const L& finish) {
  if (nsplit <= 4 * 32) return finish(std::integral_constant<int, 32>());
  if (nsplit <= 4 * 64) return finish(std::integral_constant<int, 64>());
  if (nsplit <= 4 * 128) return finish(std::integral_constant<int, 128>());
  finish(std::integral_constant<int, kThreads>());
}

// fin(c, s1, s2) with the channel's totals.
template <int P, class acc, class Fin>
__global__ void __launch_bounds__(kThreads)
    channel_sums_finish_kernel(const acc* partial, int64_t nsplit, int64_t C, Fin fin) {
  __shared__ acc shared[2][kThreads / 32];
  const int64_t c = int64_t(blockIdx.x) * (kThreads / P) + threadIdx.x / P;
  const int lane = threadIdx.x % P;
  const bool has = c < C;  // teams past C still take part in the block's barriers
  acc s1 = 0, s2 = 0;
  if (has) {
    const acc* p1 = partial + c * nsplit;
    const acc* p2 = partial + (C + c) * nsplit;
    for (int64_t k = lane; k < nsplit; k += P) {
      s1 += p1[k];
      s2 += p2[k];
    }
  }
  s1 = team_sum<P>(s1, shared[0]);
  s2 = team_sum<P>(s2, shared[1]);
  if (has && lane == 0) fin(c, s1, s2);
}

// Merges the partial (mean, M2) of every range in float64 (range k holds n_k = min(per_split,
// total - k per_split) values) by the two-pass form of Chan's formula, which needs no division per
// partial and so reduces as plain sums over the team:
//   d_k = mean_k - ref (ref = the first range's mean, so a large mean costs no precision),
//   mean = ref + D,  D = sum(n_k d_k) / n,   M2 = sum(M2_k + n_k (d_k - D)^2),
// the second sum of non-negative terms, as accurate as a centred two-pass variance. fin(c, n, mean, M2).
template <int P, class acc, class Fin>
__global__ void __launch_bounds__(kThreads)
    channel_moments_finish_kernel(const acc* partial, int64_t nsplit, int64_t per_split, int64_t total, int64_t C,
                                  Fin fin) {
  __shared__ double shared[kThreads / 32];
  const int64_t c = int64_t(blockIdx.x) * (kThreads / P) + threadIdx.x / P;
  const int lane = threadIdx.x % P;
  const bool has = c < C;  // teams past C still take part in the block's barriers
  const acc* pm = partial + (has ? c : 0) * nsplit;
  const acc* p2 = partial + (C + (has ? c : 0)) * nsplit;
  const double ref = double(pm[0]);
  auto count = [&](int64_t k) {
    const int64_t left = total - k * per_split;
    return double(left < per_split ? left : per_split);
  };
  double s = 0;
  if (has)
    for (int64_t k = lane; k < nsplit; k += P) s += count(k) * (double(pm[k]) - ref);
  const double shift = team_sum<P>(s, shared) / double(total);
  double q = 0;
  if (has)
    for (int64_t k = lane; k < nsplit; k += P) {
      const double d = double(pm[k]) - ref - shift;
      q += double(p2[k]) + count(k) * d * d;
    }
  q = team_sum<P>(q, shared);
  if (has && lane == 0) fin(c, double(total), ref + shift, q);
}

// Reduces f over every channel and calls fin with the totals (F::kWelford: fin(c, n, mean, M2),
// otherwise fin(c, s1, s2)). Nothing is reduced over an empty tensor (n = 0 and zero sums).
template <class T, class acc, class F, class Fin>
void channel_sums(NormShape s, DType acc_dtype, Device device, F f, Fin fin) {
  const int64_t C = s.channels;
  if (C == 0) return;
  const int64_t npos = s.outer * s.inner;
  UNIREP_CHECK(npos > 0 || !F::kWelford, "batch_norm: statistics of an empty input");
  int64_t nsplit = 0, per_split = 1;
  Tensor part;
  if (npos > 0 && s.inner == 1) {
    const int64_t rows = s.outer;
    auto launch = [&](auto vec) {
      constexpr int V = decltype(vec)::value;
      const RowsShape g = rows_shape(C, V);
      // At least 8 rows per thread, so the block's final tree is a small part of its work.
      nsplit = std::max<int64_t>(
          1, std::min<int64_t>({kTargetBlocks / g.ctiles, ceil_div(rows, int64_t(g.rs) * 8), 65535}));
      per_split = ceil_div(rows, nsplit);
      nsplit = ceil_div(rows, per_split);  // no empty range
      part = Tensor::empty({2 * C * nsplit}, acc_dtype, device);
      const dim3 grid(static_cast<unsigned>(g.ctiles), static_cast<unsigned>(nsplit));
      channel_sums_rows_kernel<acc, V><<<grid, g.threads, 0, stream()>>>(f, rows, C, g.tcv, g.rs, per_split, nsplit,
                                                                         part.data<acc>());
      CUDA_CHECK_LAUNCH();
    };
    with_vector_width<T>(C, f.data(), launch);
  } else if (npos > 0) {
    nsplit = std::max<int64_t>(1, std::min<int64_t>({kTargetBlocks / C, ceil_div(npos, kThreads * 4), 65535}));
    per_split = ceil_div(npos, nsplit);
    nsplit = ceil_div(npos, per_split);
    part = Tensor::empty({2 * C * nsplit}, acc_dtype, device);
    UNIREP_CHECK(C < (int64_t(1) << 31), "norm: too many channels (", C, ")");
    const dim3 grid(static_cast<unsigned>(C), static_cast<unsigned>(nsplit));
    channel_sums_inner_kernel<acc><<<grid, kThreads, 0, stream()>>>(f, C, s.inner, npos, per_split, nsplit,
                                                                     part.data<acc>());
    CUDA_CHECK_LAUNCH();
  }
  with_team(nsplit, [&](auto team) {
    constexpr int P = decltype(team)::value;
    const unsigned blocks = static_cast<unsigned>(ceil_div(C, kThreads / P));
    if constexpr (F::kWelford) {
      channel_moments_finish_kernel<P, acc><<<blocks, kThreads, 0, stream()>>>(part.data<acc>(), nsplit, per_split,
                                                                                npos, C, fin);
    } else {
      channel_sums_finish_kernel<P, acc><<<blocks, kThreads, 0, stream()>>>(
          nsplit > 0 ? part.data<acc>() : nullptr, nsplit, C, fin);
    }
    CUDA_CHECK_LAUNCH();
  });
}

// ---- what the reductions add up

template <class T, class acc> struct WelfordX {  // running mean and M2 of x
  static constexpr bool kWelford = true;
  const T* x;
  std::array<const void*, 1> data() const { return {x}; }
  template <int V> __device__ void channel(int64_t, acc (&)[V]) const {}
  template <int V>
  __device__ void add(int64_t e, int64_t, const acc (&)[V], acc inv_count, acc (&mean)[V], acc (&m2)[V]) const {
    acc v[V];
    load_pack<acc, T, V>(x + e, v);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const acc d = v[i] - mean[i];
      mean[i] += d * inv_count;
      m2[i] += d * (v[i] - mean[i]);
    }
  }
};
template <class T, class acc> struct SumGradBN {  // a1 += dy, a2 += dy (x - mean[c])
  static constexpr bool kWelford = false;
  const T* dy;
  const T* x;
  const acc* mean;
  std::array<const void*, 2> data() const { return {dy, x}; }
  template <int V> __device__ void channel(int64_t c, acc (&m)[V]) const {
#pragma unroll
    for (int i = 0; i < V; ++i) m[i] = mean[c + i];
  }
  template <int V>
  __device__ void add(int64_t e, int64_t, const acc (&m)[V], acc, acc (&a1)[V], acc (&a2)[V]) const {
    acc g[V], v[V];
    load_pack<acc, T, V>(dy + e, g);
    load_pack<acc, T, V>(x + e, v);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      a1[i] += g[i];
      a2[i] += g[i] * (v[i] - m[i]);
    }
  }
};
template <class T, class acc> struct SumGradLN {  // a1 += dy, a2 += dy xhat (per-position stats)
  static constexpr bool kWelford = false;
  const T* dy;
  const T* x;
  const acc* mean;
  const acc* invstd;
  std::array<const void*, 2> data() const { return {dy, x}; }
  template <int V> __device__ void channel(int64_t, acc (&)[V]) const {}
  template <int V>
  __device__ void add(int64_t e, int64_t p, const acc (&)[V], acc, acc (&a1)[V], acc (&a2)[V]) const {
    acc g[V], v[V];
    load_pack<acc, T, V>(dy + e, g);
    load_pack<acc, T, V>(x + e, v);
    const acc m = mean[p], rstd = invstd[p];
#pragma unroll
    for (int i = 0; i < V; ++i) {
      a1[i] += g[i];
      a2[i] += g[i] * (v[i] - m) * rstd;
    }
  }
};

// ---- what is done with the totals

// Batch statistics from the channel's (n, mean, M2): mean, invstd and the running stats.
template <class acc, class R> struct FinStats {
  acc* mean;
  acc* invstd;
  R* running_mean;
  R* running_var;
  double eps, momentum;
  __device__ void operator()(int64_t c, double n, double m, double m2) const {
    const double var = m2 / n;
    mean[c] = acc(m);
    invstd[c] = acc(1.0 / math::sqrt(var + eps));
    const double keep = 1.0 - momentum;
    if (running_mean) running_mean[c] = convert<R>(keep * convert<double>(running_mean[c]) + momentum * m);
    if (running_var) running_var[c] = convert<R>(keep * convert<double>(running_var[c]) + momentum * m2 / (n - 1.0));
  }
};
// The part's sums for a batch split between processes (norm.h), from its (n, mean, M2) in float64.
struct FinPartialSums {
  double* sums;
  int64_t C;
  __device__ void operator()(int64_t c, double n, double m, double m2) const {
    sums[c] = n * m;
    sums[C + c] = m2 + n * m * m;
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

// Channel-last passes: a thread keeps its V channels' constants in registers and walks rows
// blockIdx.y * rs + t / tcv, stepping gridDim.y * rs rows, kUnroll rows of loads at a time.
// Calls op(e, j) for the element index e of every row it visits (j in [0, kUnroll)), loads first:
// load(e, j) for kUnroll rows, then op(e, j) for them.
template <class Load, class Op>
__device__ __forceinline__ void walk_rows(uint32_t rows, uint32_t C, uint32_t c, int rs, int ry, const Load& load,
                                          const Op& op) {
  const uint32_t step = gridDim.y * uint32_t(rs);
  uint32_t r = blockIdx.y * uint32_t(rs) + uint32_t(ry);
  for (; r + (kUnroll - 1) * step < rows; r += kUnroll * step) {
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) load((r + j * step) * C + c, j);
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) op((r + j * step) * C + c, j);
  }
  for (; r < rows; r += step) {
    load(r * C + c, 0);
    op(r * C + c, 0);
  }
}

// y = (x - mean) * (invstd w) + b over [rows, C], V channels per thread.
template <class T, class P, class acc, int V>
__global__ void __launch_bounds__(kThreads)
    bn_apply_rows_kernel(T* y, const T* x, const acc* mean, const acc* invstd, const P* w, const P* b, uint32_t rows,
                         uint32_t C, int tcv, int rs) {
  const int t = threadIdx.x, col = t % tcv, ry = t / tcv;
  const uint32_t c = (blockIdx.x * uint32_t(tcv) + uint32_t(col)) * V;
  if (ry >= rs || c >= C) return;
  acc m[V], scale[V], shift[V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    m[i] = mean[c + i];
    scale[i] = w ? invstd[c + i] * static_cast<acc>(w[c + i]) : invstd[c + i];
    shift[i] = b ? static_cast<acc>(b[c + i]) : acc(0);
  }
  VecOf<T, V> xs[kUnroll];  // raw, converted after the loads are issued
  walk_rows(
      rows, C, c, rs, ry, [&](uint32_t e, int j) { xs[j] = load_raw<T, V>(x + e); },
      [&](uint32_t e, int j) {
        acc v[V];
        unpack(xs[j], v);
#pragma unroll
        for (int i = 0; i < V; ++i) v[i] = (v[i] - m[i]) * scale[i] + shift[i];
        store_pack<T, acc, V>(y + e, v);
      });
}

// dx over [rows, C], V channels per thread: kTraining: dx = w invstd (dy - s1 / n - (x - mean) invstd^2 s2 / n)
// (count, when given, the device float64 total N replacing 1 / inv_n); eval: dx = w invstd dy.
template <class T, class P, class acc, int V, bool kTraining>
__global__ void __launch_bounds__(kThreads)
    bn_backward_dx_rows_kernel(T* dx, const T* dy, const T* x, const acc* mean, const acc* invstd, const P* w,
                               const acc* s1, const acc* s2, acc inv_n, const double* count, uint32_t rows,
                               uint32_t C, int tcv, int rs) {
  const int t = threadIdx.x, col = t % tcv, ry = t / tcv;
  const uint32_t c = (blockIdx.x * uint32_t(tcv) + uint32_t(col)) * V;
  if (ry >= rs || c >= C) return;
  acc k[V], m[V], k1[V], k2[V];
#pragma unroll
  for (int i = 0; i < V; ++i) {
    const acc is = invstd[c + i];
    k[i] = w ? is * static_cast<acc>(w[c + i]) : is;
  }
  if constexpr (kTraining) {
    const acc scale_n = count ? acc(1.0 / *count) : inv_n;
#pragma unroll
    for (int i = 0; i < V; ++i) {
      const acc is = invstd[c + i];
      m[i] = mean[c + i];
      k1[i] = s1[c + i] * scale_n;
      k2[i] = is * is * s2[c + i] * scale_n;
    }
  }
  VecOf<T, V> dys[kUnroll], xs[kUnroll];  // raw, converted after the loads are issued
  walk_rows(
      rows, C, c, rs, ry,
      [&](uint32_t e, int j) {
        dys[j] = load_raw<T, V>(dy + e);
        if constexpr (kTraining) xs[j] = load_raw<T, V>(x + e);
      },
      [&](uint32_t e, int j) {
        acc g[V], v[V];
        unpack(dys[j], g);
        if constexpr (kTraining) unpack(xs[j], v);
#pragma unroll
        for (int i = 0; i < V; ++i) {
          if constexpr (kTraining) g[i] -= k1[i] + (v[i] - m[i]) * k2[i];
          g[i] *= k[i];
        }
        store_pack<T, acc, V>(dx + e, g);
      });
}

// Launches a channel-last pass when x is [rows, C] (inner == 1) with fewer than 2^31 elements:
// launch(std::integral_constant<int, V>, grid, RowsShape) with V = kVec<T> when C is a multiple of it and
// every pointer is 16-byte aligned, else V = 1. Returns false (nothing launched) otherwise.
template <class T, class L>
bool launch_rows(NormShape s, std::initializer_list<const void*> ptrs, const L& launch) {
  if (s.inner != 1 || !fits_int32(s.numel())) return false;
  auto go = [&](auto vec) {
    constexpr int V = decltype(vec)::value;
    const RowsShape g = rows_shape(s.channels, V);
    const int64_t row_blocks = std::max<int64_t>(
        1, std::min<int64_t>({ceil_div(s.outer, int64_t(g.rs)), kTargetBlocks / g.ctiles, 65535}));
    launch(vec, dim3(static_cast<unsigned>(g.ctiles), static_cast<unsigned>(row_blocks)), g);
  };
  with_vector_width<T>(s.channels, ptrs, go);
  return true;
}

// The channel-last dx pass (training when s1 is given); false when x is not channel-last.
template <class T, class P, class acc>
bool launch_dx_rows(NormShape s, const Tensor& dx, const Tensor& dy, const Tensor& x, const acc* mean,
                    const acc* invstd, const P* w, const acc* s1, const acc* s2, acc inv_n, const double* count) {
  const T* xp = s1 ? x.data<T>() : nullptr;
  return launch_rows<T>(s, {dx.data<T>(), dy.data<T>(), xp}, [&](auto vec, dim3 grid, RowsShape g) {
    constexpr int V = decltype(vec)::value;
    const uint32_t rows = uint32_t(s.outer), C = uint32_t(s.channels);
    if (s1)
      bn_backward_dx_rows_kernel<T, P, acc, V, true><<<grid, g.threads, 0, stream()>>>(
          dx.data<T>(), dy.data<T>(), xp, mean, invstd, w, s1, s2, inv_n, count, rows, C, g.tcv, g.rs);
    else
      bn_backward_dx_rows_kernel<T, P, acc, V, false><<<grid, g.threads, 0, stream()>>>(
          dx.data<T>(), dy.data<T>(), xp, mean, invstd, w, s1, s2, inv_n, count, rows, C, g.tcv, g.rs);
    CUDA_CHECK_LAUNCH();
  });
}

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
    auto run = [&](auto* rm, auto* rv) {
      using R = std::remove_pointer_t<decltype(rm)>;
      channel_sums<T, acc>(s, mean.dtype(), x.device(), WelfordX<T, acc>{x.data<T>()},
                           FinStats<acc, R>{mean.data<acc>(), invstd.data<acc>(), rm, rv, eps, momentum});
    };
    if (!running_mean.defined() && !running_var.defined()) {
      run(static_cast<float*>(nullptr), static_cast<float*>(nullptr));
      return;
    }
    const Tensor& any = running_mean.defined() ? running_mean : running_var;
    UNIREP_CHECK(!running_mean.defined() || !running_var.defined() || running_mean.dtype() == running_var.dtype(),
                 "batch_norm: running_mean is ", dtype_name(running_mean.dtype()), " but running_var is ",
                 dtype_name(running_var.dtype()));
    UNIREP_DISPATCH_FLOATING(any.dtype(), "batch_norm", [&] {
      using R = scalar_t;
      run(opt_mut<R>(running_mean), opt_mut<R>(running_var));
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
      const bool rows = launch_rows<T>(s, {y.data<T>(), x.data<T>()}, [&](auto vec, dim3 grid, RowsShape g) {
        bn_apply_rows_kernel<T, P, acc, decltype(vec)::value><<<grid, g.threads, 0, stream()>>>(
            y.data<T>(), x.data<T>(), mean.data<acc>(), invstd.data<acc>(), opt_data<P>(weight), opt_data<P>(bias),
            uint32_t(s.outer), uint32_t(s.channels), g.tcv, g.rs);
        CUDA_CHECK_LAUNCH();
      });
      if (rows) return;
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
        channel_sums<T, acc>(s, mean.dtype(), x.device(), SumGradBN<T, acc>{dy.data<T>(), x.data<T>(), mp},
                             FinGradBN<P, acc>{s1, s2, opt_mut<P>(dweight), opt_mut<P>(dbias), ip});
      }
      if (!dx.defined() || n == 0) return;
      const acc* s1 = dx_needs_sums ? sums.data<acc>() : nullptr;
      const acc* s2 = dx_needs_sums ? s1 + C : nullptr;
      const acc inv_n = acc(1) / acc(s.outer * s.inner);
      if (launch_dx_rows<T, P, acc>(s, dx, dy, x, mp, ip, opt_data<P>(weight), s1, s2, inv_n, nullptr)) return;
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
  if (s.channels == 0) return;
  UNIREP_DISPATCH_FLOATING(x.dtype(), "batch_norm", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    channel_sums<T, acc>(s, norm_stat_dtype(x.dtype()), x.device(), WelfordX<T, acc>{x.data<T>()},
                         FinPartialSums{sums.data<double>(), s.channels});
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
      channel_sums<T, acc>(s, mean.dtype(), x.device(),
                           SumGradBN<T, acc>{dy.data<T>(), x.data<T>(), mean.data<acc>()},
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
      if (launch_dx_rows<T, P, acc>(s, dx, dy, x, mean.data<acc>(), invstd.data<acc>(), opt_data<P>(weight), s1,
                                    s1 + C, acc(0), count.data<double>()))
        return;
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
        channel_sums<T, acc>(s, mean.dtype(), x.device(), SumGradLN<T, acc>{dy.data<T>(), x.data<T>(), mp, ip},
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
