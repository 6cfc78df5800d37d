// Tiled depthwise convolution kernels for stride 1, NHWC, float / bf16 / f16 storage, float accumulation
// (used by core/ops/depthwise_conv.cu and by the playground core/cuda/playground/depthwise.cu).
//
//   forward   y[n, ho, wo, c] = b[c] + sum_{r < R, s < S} x[n, ho - ph + r dh, wo - pw + s dw, c] w[c, r, s]
//   input grad (stride 1) is the forward on dy with the kernel flipped (r -> R-1-r, s -> S-1-s) and the
//             padding mirrored to (R-1) dh - ph, (S-1) dw - pw (it may come out negative: the tile origin
//             just shifts inward), producing the H x W image.
//   weight grad dw[c, r, s] = sum_{n, ho, wo} dy[n, ho, wo, c] x[n, ho - ph + r dh, wo - pw + s dw, c]
//
// Roofline (H100: ~3.3 TB/s HBM, ~33.5 T fp32 FMA/s, no fp32-accumulating packed FMA for bf16): 13x13 on
// [128, 28, 28, 160] is 2.7 G FMA per pass = 0.08 ms of FMA, against 0.02 ms of DRAM traffic for bf16, so
// the large kernels are FMA bound and the small ones (3x3, 9 taps) memory bound. The plan therefore keeps
// every FMA fed from registers and makes the memory side cheap and simple:
//   * a block owns 32 channels (one per lane: a warp reads 32 consecutive channels, 128 B of float, so
//     shared-memory reads are conflict free, and 32 divides every UniRepLKNet width 80..2048) and an
//     output tile of one image, TH rows x TW columns;
//   * the input tile plus halo, (TH + (R-1) dh) x (TW + (S-1) dw) pixels, is staged once into shared memory
//     as float (converted on load, zero outside the image or past C), so the inner loops have no bounds
//     checks and no conversions. Staging moves 4 channels per thread and instruction (16-byte float / 8-byte
//     bf16 loads, 16-byte shared stores) when C % 4 == 0 and the pointer is aligned, else one channel;
//   * each thread computes OW = 8 or 16 outputs of one row at columns col0 + j dw (strided by the dilation),
//     so output j and tap s read input column col0 + (j + s) dw: per kernel row it loads a window of
//     OW + S - 1 floats into registers once and does OW S FMAs with it (S = 13, OW = 16: 28 shared loads +
//     13 weight loads per 208 FMA; the SM issues one warp instruction per scheduler and clock, so this
//     ratio bounds the FMA efficiency at ~83%). S and OW are template parameters (S odd 3..31) so the window
//     lives in registers; R and the dilation are runtime values;
//   * the weights are pre-converted (and for the input gradient flipped) into a float [R, S, C] buffer read
//     through the read-only cache: 32 lanes read 128 consecutive bytes;
//   * the weight gradient stages the x tile + halo and the dy tile; each warp owns one kernel row r (a
//     block covers up to 16 rows; more rows take more blocks) and keeps the S sums of its row in registers
//     over every tile of its split of the N x tiles positions (same window trick: OW dy values and
//     OW + S - 1 x values per OW S FMAs). Small R gives several warps per row that take alternate
//     (output row, column group) items of each tile and are added in shared memory in a fixed order;
//     per-split partials [split, R S, C] are then summed in split order by a second kernel: deterministic,
//     no atomics.
//     This is weight-gradient v3; conv2d runs v4 (core/ops/depthwise_conv_wgrad.cuh: kernel rows x
//     output rows in registers, whole-image tiles, one-wave splits) except where its plan is a halo
//     tile of fewer than 8 rows (use_v4: v3 measured faster there).
// Tile shapes are chosen per call by a small cost model (staged pixels vs computed outputs incl. the
// columns wasted past the image border), under a shared-memory cap.
#pragma once
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "core/dtype.h"

namespace unirep::cuda::dwconv {

constexpr int kLanes = 32;           // channels per block
constexpr int kMaxWarps = 8;         // warps per forward block
constexpr int kMaxWeightWarps = 16;  // warps per weight-gradient block (one per kernel row up to R = 16)
constexpr int kMinWidth = 3, kMaxWidth = 31;
constexpr int kStageUnroll = 4;      // staging loads in flight per thread

// Stride-1 depthwise geometry: in [N, H, W, C], kernel R x S, out [N, Ho, Wo, C].
struct Shape {
  int N, H, W, C, R, S, Ho, Wo, ph, pw, dh, dw;
};

// Output tile of one image: th rows x sb super-columns of dw ow columns each (a super-column holds dw
// interleaved thread column groups, one per residue of the column modulo dw). vec: 4-channel staging.
struct Tile {
  int th, sb, ow, in_rows, in_cols, tiles_h, tiles_w;
  uint32_t in_cols_magic, tw_magic;  // ceil(2^32 / in_cols), ceil(2^32 / tw): division by a multiply-high
  bool vec;
  __host__ __device__ int tw(int dw) const { return sb * dw * ow; }
  __host__ __device__ int col_groups(int dw) const { return sb * dw; }
};

// A tile id (blockIdx.x, or one of a split's tiles) as (image, tile row, tile column), columns fastest.
struct TilePos {
  int n, tile_h, tile_w;
};
__device__ __forceinline__ TilePos tile_pos(int id, int tiles_h, int tiles_w) {
  const int tile_w = id % tiles_w;
  id /= tiles_w;
  return {id / tiles_h, id % tiles_h, tile_w};
}

template <class T> __device__ __forceinline__ float to_float(T v) { return static_cast<float>(v); }

// Four consecutive elements as floats (p aligned to 4 elements).
template <class T> __device__ __forceinline__ float4 load4(const T* p) {
  if constexpr (sizeof(T) == 4) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    T a, b, c, d;
    a.bits = uint16_t(u.x & 0xffffu);
    b.bits = uint16_t(u.x >> 16);
    c.bits = uint16_t(u.y & 0xffffu);
    d.bits = uint16_t(u.y >> 16);
    return make_float4(float(a), float(b), float(c), float(d));
  }
}

// dst[(row cols + col) 32 + lane] = src[n, h0 + row, w0 + col, c0 + lane] as float, zero outside the image
// or past C. vec: C % 4 == 0 and src aligned to 4 elements, so a quad of channels is all in or all out.
// cols_magic = ceil(2^32 / cols): pix / cols == umulhi(pix, cols_magic) while pix cols < 2^32 (tiles are a
// few thousand pixels).
template <class T>
__device__ void stage_tile(float* __restrict__ dst, const T* __restrict__ src, int n, int h0, int w0, int rows,
                           int cols, uint32_t cols_magic, int H, int W, int C, int c0, bool vec) {
  if (vec) {
    // kStageUnroll loads in flight per thread before their stores: the small kernels are bound by this
    // copy, and a few warps per SM with one load each would leave HBM idle.
    const int total = rows * cols * (kLanes / 4), step = int(blockDim.x);
    for (int e0 = threadIdx.x; e0 < total; e0 += kStageUnroll * step) {
      float4 v[kStageUnroll];
#pragma unroll
      for (int u = 0; u < kStageUnroll; ++u) {
        const int e = e0 + u * step;
        const int pix = e >> 3, c = c0 + 4 * (e & 7);
        const int r = int(__umulhi(uint32_t(pix), cols_magic)), q = pix - r * cols;
        const int h = h0 + r, w = w0 + q;
        v[u] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (e < total && h >= 0 && h < H && w >= 0 && w < W && c < C)
          v[u] = load4(src + ((int64_t(n) * H + h) * W + w) * C + c);
      }
#pragma unroll
      for (int u = 0; u < kStageUnroll; ++u)
        if (e0 + u * step < total) reinterpret_cast<float4*>(dst)[e0 + u * step] = v[u];
    }
    return;
  }
  const int total = rows * cols * kLanes;
  const int c = c0 + int(threadIdx.x & 31);
  for (int e = threadIdx.x; e < total; e += blockDim.x) {
    const int pix = e >> 5;
    const int r = int(__umulhi(uint32_t(pix), cols_magic)), q = pix - r * cols;
    const int h = h0 + r, w = w0 + q;
    float v = 0.f;
    if (h >= 0 && h < H && w >= 0 && w < W && c < C) v = to_float(src[((int64_t(n) * H + h) * W + w) * C + c]);
    dst[e] = v;
  }
}

// wt[tap C + c] = w[c, tap] (flip: w[c, R S - 1 - tap]) as float.
template <class T>
__global__ void prepare_weight_kernel(float* __restrict__ wt, const T* __restrict__ w, int C, int taps, bool flip) {
  const int64_t total = int64_t(taps) * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int tap = int(i / C), c = int(i % C);
    wt[i] = to_float(w[int64_t(c) * taps + (flip ? taps - 1 - tap : tap)]);
  }
}

// One block: 32 channels (blockIdx.y) x one output tile (blockIdx.x = (n, tile row, tile column)).
template <class T, int S, int OW>
__global__ void __launch_bounds__(kMaxWarps * 32)
    forward_kernel(T* __restrict__ y, const T* __restrict__ x, const float* __restrict__ wt, const T* __restrict__ bias,
                   Shape g, Tile t) {
  extern __shared__ float4 forward_smem[];  // float4: 16-byte aligned for the vector staging stores
  float* tile = reinterpret_cast<float*>(forward_smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int c0 = blockIdx.y * kLanes, c = c0 + lane;
  const auto [n, tile_h, tile_w] = tile_pos(blockIdx.x, t.tiles_h, t.tiles_w);
  const int ho0 = tile_h * t.th, wo0 = tile_w * t.tw(g.dw);
  stage_tile(tile, x, n, ho0 - g.ph, wo0 - g.pw, t.in_rows, t.in_cols, t.in_cols_magic, g.H, g.W, g.C, c0, t.vec);
  __syncthreads();
  if (c >= g.C) return;
  const float bias_c = bias ? to_float(bias[c]) : 0.f;
  const int groups = t.col_groups(g.dw), slots = t.th * groups;
  for (int slot = warp; slot < slots; slot += warps) {
    const int i = slot / groups, gi = slot - i * groups;
    const int col0 = (gi / g.dw) * g.dw * OW + gi % g.dw;
    const int ho = ho0 + i;
    if (ho >= g.Ho || wo0 + col0 >= g.Wo) continue;
    float acc[OW];
#pragma unroll
    for (int j = 0; j < OW; ++j) acc[j] = bias_c;
    const float* in = tile + (i * t.in_cols + col0) * kLanes + lane;
    const int in_row_step = g.dh * t.in_cols * kLanes, col_step = g.dw * kLanes;
    const float* wrow = wt + c;
#pragma unroll 1
    for (int r = 0; r < g.R; ++r, in += in_row_step, wrow += S * g.C) {
      float win[OW + S - 1];
#pragma unroll
      for (int m = 0; m < OW + S - 1; ++m) win[m] = in[m * col_step];
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const float ws = __ldg(wrow + s * g.C);
#pragma unroll
        for (int j = 0; j < OW; ++j) acc[j] = fmaf(win[j + s], ws, acc[j]);
      }
    }
    T* out = y + ((int64_t(n) * g.Ho + ho) * g.Wo + wo0 + col0) * g.C + c;
#pragma unroll
    for (int j = 0; j < OW; ++j)
      if (wo0 + col0 + j * g.dw < g.Wo) out[int64_t(j) * g.dw * g.C] = T(acc[j]);
  }
}

// partial[(split, r S + s, c)] over the tiles split, split + splits, ... for the kernel rows of
// blockIdx.z (rows_per_group of them, warp w: row w % rows_per_group, part w / rows_per_group).
template <class T, int S, int OW>
__global__ void __launch_bounds__(kMaxWeightWarps * 32)
    weight_partial_kernel(float* __restrict__ partial, const T* __restrict__ dy, const T* __restrict__ x, Shape g,
                          Tile t, int rows_per_group, int parts) {
  extern __shared__ float4 weight_smem[];
  float* smem = reinterpret_cast<float*>(weight_smem);
  float* xs = smem;
  float* ys = smem + t.in_rows * t.in_cols * kLanes;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int c0 = blockIdx.y * kLanes, c = c0 + lane;
  const int r_local = warp % rows_per_group, part = warp / rows_per_group;
  const int r = blockIdx.z * rows_per_group + r_local;
  const bool active = part < parts && r < g.R;
  const int tw = t.tw(g.dw), groups = t.col_groups(g.dw), items = t.th * groups;
  const int tiles = g.N * t.tiles_h * t.tiles_w;
  float acc[S];
#pragma unroll
  for (int s = 0; s < S; ++s) acc[s] = 0.f;
  for (int tile_id = blockIdx.x; tile_id < tiles; tile_id += gridDim.x) {
    const auto [n, tile_h, tile_w] = tile_pos(tile_id, t.tiles_h, t.tiles_w);
    const int ho0 = tile_h * t.th, wo0 = tile_w * tw;
    __syncthreads();  // the previous tile is consumed
    stage_tile(xs, x, n, ho0 - g.ph, wo0 - g.pw, t.in_rows, t.in_cols, t.in_cols_magic, g.H, g.W, g.C, c0, t.vec);
    stage_tile(ys, dy, n, ho0, wo0, t.th, tw, t.tw_magic, g.Ho, g.Wo, g.C, c0, t.vec);
    __syncthreads();
    if (!active) continue;
    for (int k = part; k < items; k += parts) {
      const int i = k / groups, gi = k - i * groups;
      const int col0 = (gi / g.dw) * g.dw * OW + gi % g.dw;
      if (ho0 + i >= g.Ho || wo0 + col0 >= g.Wo) continue;
      const int col_step = g.dw * kLanes;
      const float* dyp = ys + (i * tw + col0) * kLanes + lane;
      const float* xp = xs + ((i + r * g.dh) * t.in_cols + col0) * kLanes + lane;
      float d[OW], win[OW + S - 1];
#pragma unroll
      for (int j = 0; j < OW; ++j) d[j] = dyp[j * col_step];
#pragma unroll
      for (int m = 0; m < OW + S - 1; ++m) win[m] = xp[m * col_step];
#pragma unroll
      for (int s = 0; s < S; ++s)
#pragma unroll
        for (int j = 0; j < OW; ++j) acc[s] = fmaf(d[j], win[j + s], acc[s]);
    }
  }
  // Parts 1.. of each row hand their sums to part 0 through shared memory, added in part order.
  __syncthreads();
  float* red = smem;  // [parts - 1][rows_per_group][S][32]
  if (active && part > 0) {
#pragma unroll
    for (int s = 0; s < S; ++s) red[(((part - 1) * rows_per_group + r_local) * S + s) * kLanes + lane] = acc[s];
  }
  __syncthreads();
  if (!active || part > 0 || c >= g.C) return;
  for (int p = 1; p < parts; ++p)
#pragma unroll
    for (int s = 0; s < S; ++s) acc[s] += red[(((p - 1) * rows_per_group + r_local) * S + s) * kLanes + lane];
  float* out = partial + (int64_t(blockIdx.x) * g.R * S + int64_t(r) * S) * g.C + c;
#pragma unroll
  for (int s = 0; s < S; ++s) out[int64_t(s) * g.C] = acc[s];
}

// dw[c, tap] = sum over splits (in order) of partial[(split, tap, c)].
template <class T>
__global__ void sum_weight_partials_kernel(T* __restrict__ dw, const float* __restrict__ partial, int splits, int taps,
                                           int C) {
  const int64_t total = int64_t(taps) * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int tap = int(i / C), c = int(i % C);
    float a = 0.f;
    for (int z = 0; z < splits; ++z) a += partial[z * total + i];
    dw[int64_t(c) * taps + tap] = T(a);
  }
}

// ---------------------------------------------------------------- host side

constexpr size_t kSmemPreferred = 100 * 1024;  // two or more blocks per SM
constexpr size_t kSmemMax = 200 * 1024;        // one block per SM (H100 allows 227 KB); callers pass their
                                               // device's opt-in limit when it is lower

// ceil(2^32 / d) for d >= 2 (tile widths are at least 8).
inline uint32_t div_magic(int d) { return uint32_t(((uint64_t(1) << 32) + uint64_t(d) - 1) / uint64_t(d)); }

inline Tile make_tile(const Shape& g, int th, int sb, int ow) {
  Tile t;
  t.th = th;
  t.sb = sb;
  t.ow = ow;
  t.in_rows = th + (g.R - 1) * g.dh;
  t.in_cols = t.tw(g.dw) + (g.S - 1) * g.dw;
  t.tiles_h = (g.Ho + th - 1) / th;
  t.tiles_w = (g.Wo + t.tw(g.dw) - 1) / t.tw(g.dw);
  t.in_cols_magic = div_magic(t.in_cols);
  t.tw_magic = div_magic(t.tw(g.dw));
  t.vec = false;
  return t;
}

inline int tile_warps(const Shape& g, const Tile& t) {
  const int slots = t.th * t.col_groups(g.dw);
  return slots < kMaxWarps ? slots : kMaxWarps;
}

// Kernel rows per weight-gradient block and warps per row (parts).
struct RowSplit {
  int groups, rows_per_group, parts;
};
inline RowSplit row_split(const Shape& g) {
  RowSplit s;
  s.groups = (g.R + kMaxWeightWarps - 1) / kMaxWeightWarps;
  s.rows_per_group = (g.R + s.groups - 1) / s.groups;
  s.parts = kMaxWeightWarps / s.rows_per_group;
  return s;
}

inline size_t tile_smem(const Shape& g, const Tile& t, bool weight_grad) {
  size_t floats = size_t(t.in_rows) * t.in_cols;
  if (weight_grad) {
    floats += size_t(t.th) * t.tw(g.dw);
    const RowSplit rs = row_split(g);
    const size_t red = size_t(rs.parts - 1) * rs.rows_per_group * g.S;
    if (red > floats) floats = red;
  }
  return floats * kLanes * sizeof(float);
}

// The cheapest tile under the shared-memory cap (smem_bytes = 0 when none fits). Cost in warp
// instructions per 32 channels: staging ~3 per pixel (a quad of channels per thread, ~12 instructions),
// compute per (thread row of OW outputs, kernel row) OW + 2S - 1 loads and OW S FMAs, counting the
// outputs computed past the image border and the rounds of warps over the tile's slots.
inline Tile choose_tile(const Shape& g, bool weight_grad, size_t* smem_bytes, size_t smem_limit = kSmemMax) {
  Tile best{};
  *smem_bytes = 0;
  const RowSplit rs = row_split(g);
  const size_t limit = smem_limit < kSmemMax ? smem_limit : kSmemMax;
  for (size_t cap : {limit < kSmemPreferred ? limit : kSmemPreferred, limit}) {
    double best_cost = 0;
    for (int ow : {8, 16})
      for (int th = 1; th <= 8; ++th)
        for (int sb : {1, 2, 4}) {
          const Tile t = make_tile(g, th, sb, ow);
          const size_t bytes = tile_smem(g, t, weight_grad);
          if (bytes > cap) continue;
          const double tiles = double(g.N) * t.tiles_h * t.tiles_w;
          const int slots = t.th * t.col_groups(g.dw);
          double cost;
          if (weight_grad) {
            const double staged = double(t.in_rows) * t.in_cols + double(t.th) * t.tw(g.dw);
            cost = tiles * (rs.groups * (3.0 * staged + 100.0) + double(slots) * g.R * (2 * ow + g.S - 1 + ow * g.S));
          } else {
            const double staged = double(t.in_rows) * t.in_cols;
            const int warps = tile_warps(g, t);
            const double rounds = double((slots + warps - 1) / warps) * warps;
            cost = tiles * (3.0 * staged + 100.0 + rounds * g.R * (ow + 2 * g.S - 1 + ow * g.S));
          }
          if (*smem_bytes == 0 || cost < best_cost) {
            best = t;
            best_cost = cost;
            *smem_bytes = bytes;
          }
        }
    if (*smem_bytes) return best;
  }
  return best;
}

// Whether these kernels cover the geometry (stride 1 is the caller's business).
inline bool supported(const Shape& g, size_t smem_limit = kSmemMax) {
  if (g.S < kMinWidth || g.S > kMaxWidth || g.S % 2 == 0 || g.R < 1 || g.dh < 1 || g.dw < 1) return false;
  if (g.N < 1 || g.C < 1 || g.Ho < 1 || g.Wo < 1 || g.H < 1 || g.W < 1) return false;
  size_t a = 0, b = 0;
  choose_tile(g, false, &a, smem_limit);
  choose_tile(g, true, &b, smem_limit);
  if (!a || !b) return false;
  const Tile t = make_tile(g, 1, 1, 8);
  const double tiles = double(g.N) * t.tiles_h * t.tiles_w;
  return tiles < double(INT_MAX) && (g.C + kLanes - 1) / kLanes <= 65535;
}

template <int S, class F> void dispatch_ow(int ow, const F& f) {
  if (ow == 16) f(std::integral_constant<int, S>{}, std::integral_constant<int, 16>{});
  else f(std::integral_constant<int, S>{}, std::integral_constant<int, 8>{});
}

// f(integral_constant S, integral_constant OW) for the odd widths 3..31 and OW 8 or 16.
template <class F> void dispatch_width(int S, int ow, const F& f) {
  switch (S) {
#define UNIREP_DW_WIDTH(k) \
  case k: dispatch_ow<k>(ow, f); break;
    UNIREP_DW_WIDTH(3) UNIREP_DW_WIDTH(5) UNIREP_DW_WIDTH(7) UNIREP_DW_WIDTH(9) UNIREP_DW_WIDTH(11)
    UNIREP_DW_WIDTH(13) UNIREP_DW_WIDTH(15) UNIREP_DW_WIDTH(17) UNIREP_DW_WIDTH(19) UNIREP_DW_WIDTH(21)
    UNIREP_DW_WIDTH(23) UNIREP_DW_WIDTH(25) UNIREP_DW_WIDTH(27) UNIREP_DW_WIDTH(29) UNIREP_DW_WIDTH(31)
#undef UNIREP_DW_WIDTH
    default: break;
  }
}

// Launches `kernel` with `smem` bytes of dynamic shared memory (opted in above the default 48 KB);
// returns the launch error.
template <class... Params, class... Args>
cudaError_t launch_with_smem(void (*kernel)(Params...), dim3 grid, unsigned threads, size_t smem, cudaStream_t stream,
                             Args... args) {
  const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (err != cudaSuccess) return err;
  kernel<<<grid, threads, smem, stream>>>(args...);
  return cudaGetLastError();
}

// Blocks of `kernel` one SM holds at once (the occupancy calculator), or `fallback` without a device or
// on a failed query, whose error is cleared so no later launch check reports it.
template <class... Params>
int blocks_per_sm(void (*kernel)(Params...), int threads, size_t smem, int fallback) {
  int blocks = 0;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)) == cudaSuccess &&
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, smem) == cudaSuccess && blocks > 0)
    return blocks;
  cudaGetLastError();
  return fallback;
}

// The number of splits of `tiles` tiles for about `want` blocks along the split dimension (clamped to
// 1..65535), balanced: every split but the last takes the same number of tiles.
inline int balanced_splits(int64_t tiles, int64_t want) {
  want = want < 1 ? 1 : want > 65535 ? 65535 : want;
  const int64_t per_split = (tiles + want - 1) / want;
  return int((tiles + per_split - 1) / per_split);
}

inline unsigned grid_1d(int64_t n) {
  int64_t b = (n + 255) / 256;
  return unsigned(b < 1 ? 1 : (b > 65535 * 32 ? 65535 * 32 : b));
}

// 4-channel staging: C % 4 == 0 and every staged pointer aligned to 4 elements.
template <class T> bool quad_aligned(int C, const T* a, const T* b) {
  const uintptr_t align = 4 * sizeof(T);
  return C % 4 == 0 && reinterpret_cast<uintptr_t>(a) % align == 0 && reinterpret_cast<uintptr_t>(b) % align == 0;
}

// Floats of workspace forward / input_grad need (the converted weight).
inline size_t forward_workspace(const Shape& g) { return size_t(g.R) * g.S * g.C; }

// The input-gradient geometry: a forward over dy [N, Ho, Wo, C] with mirrored padding, out [N, H, W, C].
inline Shape input_grad_shape(const Shape& g) {
  Shape f = g;
  f.H = g.Ho;
  f.W = g.Wo;
  f.Ho = g.H;
  f.Wo = g.W;
  f.ph = (g.R - 1) * g.dh - g.ph;
  f.pw = (g.S - 1) * g.dw - g.pw;
  return f;
}

// y = conv(x, w) + bias (bias may be null); w [C, R, S] in T; flip runs the kernel rotated by 180 degrees.
// workspace: forward_workspace(g) floats. Returns the launch error.
template <class T>
cudaError_t forward(T* y, const T* x, const T* w, const T* bias, const Shape& g, bool flip, float* workspace,
                    cudaStream_t stream, size_t smem_limit = kSmemMax) {
  size_t smem = 0;
  Tile t = choose_tile(g, false, &smem, smem_limit);
  if (!smem) return cudaErrorInvalidValue;
  t.vec = quad_aligned(g.C, x, x);
  const int taps = g.R * g.S;
  prepare_weight_kernel<T><<<grid_1d(int64_t(taps) * g.C), 256, 0, stream>>>(workspace, w, g.C, taps, flip);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const dim3 grid(unsigned(g.N * t.tiles_h * t.tiles_w), unsigned((g.C + kLanes - 1) / kLanes));
  const unsigned threads = unsigned(tile_warps(g, t) * 32);
  dispatch_width(g.S, t.ow, [&](auto width, auto ow) {
    constexpr int S = decltype(width)::value, OW = decltype(ow)::value;
    err = launch_with_smem(forward_kernel<T, S, OW>, grid, threads, smem, stream, y, x, workspace, bias, g, t);
  });
  return err;
}

// dx from dy (w [C, R, S]); workspace: forward_workspace(g) floats.
template <class T>
cudaError_t input_grad(T* dx, const T* dy, const T* w, const Shape& g, float* workspace, cudaStream_t stream,
                       size_t smem_limit = kSmemMax) {
  return forward<T>(dx, dy, w, nullptr, input_grad_shape(g), true, workspace, stream, smem_limit);
}

// Launch plan of the v3 weight gradient: the tile, the splits of the tile list and the partial buffer size.
struct WeightPlanV3 {
  Tile tile;
  size_t smem = 0;
  RowSplit rows;
  int splits = 0;
  size_t workspace = 0;  // floats
};

inline WeightPlanV3 weight_plan_v3(const Shape& g, int sm_count, size_t smem_limit = kSmemMax) {
  WeightPlanV3 p;
  p.tile = choose_tile(g, true, &p.smem, smem_limit);
  p.rows = row_split(g);
  const int64_t tiles = int64_t(g.N) * p.tile.tiles_h * p.tile.tiles_w;
  const int64_t cgroups = (g.C + kLanes - 1) / kLanes;
  const int64_t want = (int64_t(sm_count) * 4 + cgroups * p.rows.groups - 1) / (cgroups * p.rows.groups);
  int64_t splits = want < 1 ? 1 : want;
  if (splits > tiles) splits = tiles;
  if (splits > 65535) splits = 65535;
  p.splits = int(splits);
  p.workspace = size_t(p.splits) * g.R * g.S * g.C;
  return p;
}

// The first pass of the v3 weight gradient: partial [splits, R S, C] into workspace (plan.workspace floats).
template <class T>
cudaError_t weight_partials_v3(float* workspace, const T* dy, const T* x, const Shape& g, const WeightPlanV3& plan,
                               cudaStream_t stream) {
  if (!plan.smem) return cudaErrorInvalidValue;
  Tile t = plan.tile;
  t.vec = quad_aligned(g.C, x, dy);
  const dim3 grid(unsigned(plan.splits), unsigned((g.C + kLanes - 1) / kLanes), unsigned(plan.rows.groups));
  const unsigned threads = unsigned(plan.rows.rows_per_group * plan.rows.parts * 32);
  cudaError_t err = cudaSuccess;
  dispatch_width(g.S, t.ow, [&](auto width, auto ow) {
    constexpr int S = decltype(width)::value, OW = decltype(ow)::value;
    err = launch_with_smem(weight_partial_kernel<T, S, OW>, grid, threads, plan.smem, stream, workspace, dy, x, g, t,
                           plan.rows.rows_per_group, plan.rows.parts);
  });
  return err;
}

// The second pass of either version: dw [C, R, S] = the splits' partials summed in split order.
template <class T>
cudaError_t sum_weight_partials(T* dw, const float* workspace, int splits, const Shape& g, cudaStream_t stream) {
  const int taps = g.R * g.S;
  sum_weight_partials_kernel<T><<<grid_1d(int64_t(taps) * g.C), 256, 0, stream>>>(dw, workspace, splits, taps, g.C);
  return cudaGetLastError();
}

}  // namespace unirep::cuda::dwconv
