// Tensor-core depthwise convolution for large kernels: mma.sync.m16n8k16 on bf16 / f16 with f32
// accumulation (sm_80+), stride 1, dilation 1, R = S odd in 7..15, NHWC contiguous, C % 8 == 0.
// The other geometries and float32 stay on core/ops/depthwise_conv_kernels.cuh.
//
// Forward (the input gradient is the same kernel on dy with the kernel rotated by 180 degrees and the
// padding mirrored, dwconv::input_grad_shape). Per channel, output columns w0..w0+15 of one output row:
//     out[w0 + i] += sum_{kh} sum_{j < 32} A_kh[i, j] x[h + kh - ph, w0 - pw + j],  A_kh[i, j] = W[kh, j - i]
// (zero unless 0 <= j - i < S): a banded Toeplitz 16 x 32 matrix that is the same for every w0. So
// D (16 output columns x 8 output rows) += A_kh (16 x 32, two k16 steps) B (32 input columns x 8 rows,
// the staged input rows h + kh - ph): 2 R mma per 128 outputs. Useful MACs are S / 32 of those issued
// (13 x 13: 41%), far below the tensor-core roof either way. The Toeplitz band makes the A fragments
// nearly constant: a lane needs 3 registers per kernel row (depthwise_conv_tc_layout.h), 39 at R = 13.
// Weight gradient. Per channel and input row h' (x staged, dy staged with zero rows outside the image):
//     dW[kh, kw] += sum_{k < 16} x[h', w0 + k + kw - pw] dy[h' - kh + ph, w0 + k]
// M = kw (16, S <= 15 padded), N = kh (two n8 tiles), K = 16 output columns: A is a Hankel gather from
// the staged x row (3 registers per lane, two 16-bit loads each: the pair is misaligned for odd gid),
// B is one ldmatrix.x4 of the staged dy rows h' + ph - kh. The padded rows / columns (kw or kh >= S)
// are computed and dropped. Four accumulator sets (two rows x two column tiles) keep four independent
// mma chains per warp; each block writes its split's partial [split, R S, C] and
// dwconv::sum_weight_partials adds the splits in order: deterministic, no atomics.
//
// Block and memory plan (both passes): 8 warps, one channel each; a block owns 8 consecutive channels
// (16 bytes of NHWC: every global load and store is a 16-byte vector; channel groups are blockIdx.x, so
// the neighbouring groups that share a 32-byte sector run together) and a spatial tile: 32 x 32 outputs
// (forward), 32 input rows x 32 output columns (weight gradient). Staging transposes to 16-bit planes
// [channel][row][column] with a row pitch of 56 (x) / 40 (dy) halves, 16-byte multiples that are odd
// multiples of 16 bytes, so the 8 row addresses of an ldmatrix phase fall in distinct banks. Zeros fill
// everything outside the image, so the inner loops have no bounds checks. Forward shared memory:
// 8 (32 + R - 1) 56 halves of x + 32 x 32 x 8 halves of output (for 16-byte NHWC stores): 55 KB at R = 13;
// weight gradient: 8 (32 x 56 + 47 x 40) halves = 57 KB; three or more blocks per SM, whose staging and
// mma overlap. Row / column tiles past the image are skipped (warp-uniform), so small images (7x7) do
// one 16 x 8 tile per channel; larger ones (56x56, 224x224) take several tiles.
#pragma once
#include <climits>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "core/dtype.h"
#include "core/ops/depthwise_conv_kernels.cuh"
#include "core/ops/depthwise_conv_tc_layout.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "depthwise_conv_tc.cuh needs mma.sync.m16n8k16 with bf16 (sm_80 or newer)"
#endif

namespace unirep::cuda::depthwise_tc {

using dwconv::Shape;

constexpr int kChannels = 8;        // per block, one per warp
constexpr int kThreads = kChannels * 32;
constexpr int kTileRows = 32;       // forward: output rows per tile; weight gradient: input rows
constexpr int kTileCols = 32;       // output columns per tile (two m16 / k16 column tiles)
constexpr int kXPitch = 56;         // halves per staged x row: kTileCols + 16 used, an odd multiple of 8
constexpr int kDyPitch = 40;        // halves per staged dy row (weight gradient): kTileCols used
constexpr int kDyHalo = 15;         // dy rows above a weight-gradient band: kh up to 15 (padded N = 16)
constexpr int kMinKernel = 7, kMaxKernel = 15;
constexpr int kForwardUnroll = 4;   // loads in flight a thread (H100, 13x13 [128,28,28,160]: 2: 0.178 ms, 4: 0.160)
constexpr int kWeightUnroll = 4;

// ---------------------------------------------------------------- device helpers

template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                          uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same<T, bf16>::value) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* smem_row) {
  const uint32_t addr = uint32_t(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

__device__ __forceinline__ uint32_t pack(uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); }

// dst[ch plane + r pitch + q] = src[n, h0 + r, w0 + q, c0 + ch] for r < rows, q < cols, ch < 8; zero
// outside the image. src + c0 is 16-byte aligned (C % 8 == 0, aligned base). Unroll: 16-byte loads in
// flight per thread.
template <int Unroll, class T>
__device__ __forceinline__ void stage_planes(uint16_t* __restrict__ dst, int plane, int pitch,
                                             const T* __restrict__ src, int n, int h0, int w0, int rows, int cols,
                                             int H, int W, int C, int c0) {
  const int total = rows * cols;
  for (int e0 = threadIdx.x; e0 < total; e0 += Unroll * kThreads) {
    uint4 v[Unroll];
    int at[Unroll];
#pragma unroll
    for (int u = 0; u < Unroll; ++u) {
      const int e = e0 + u * kThreads;
      const int r = e / cols, q = e - r * cols;
      const int h = h0 + r, w = w0 + q;
      v[u] = make_uint4(0u, 0u, 0u, 0u);
      at[u] = e < total ? r * pitch + q : -1;
      if (e < total && h >= 0 && h < H && w >= 0 && w < W)
        v[u] = __ldg(reinterpret_cast<const uint4*>(src + ((int64_t(n) * H + h) * W + w) * C + c0));
    }
#pragma unroll
    for (int u = 0; u < Unroll; ++u) {
      if (at[u] < 0) continue;
      uint16_t* p = dst + at[u];
      const uint32_t words[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        p[(2 * k) * plane] = uint16_t(words[k] & 0xffffu);
        p[(2 * k + 1) * plane] = uint16_t(words[k] >> 16);
      }
    }
  }
}

// Bits of W[kh, d] of one channel (w_c: its R x S kernel), zero outside 0 <= d < S; flip reads the
// kernel rotated by 180 degrees.
template <class T>
__device__ __forceinline__ uint16_t weight_bits(const T* __restrict__ w_c, int kh, int d, int R, int S, bool flip) {
  if (d < 0 || d >= S) return 0;
  return flip ? w_c[(R - 1 - kh) * S + (S - 1 - d)].bits : w_c[kh * S + d].bits;
}

// ---------------------------------------------------------------- forward / input gradient

// One block: channels 8 blockIdx.x.. and tiles blockIdx.y tiles_per_block.. (tile = (n, tile row, tile
// column) of 32 x 32 outputs); the A fragments stay in registers across the block's tiles.
template <class T, int R>
__global__ void __launch_bounds__(kThreads, 2)
    forward_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                   Shape g, bool flip, int tiles_h, int tiles_w, int tiles_per_block) {
  extern __shared__ uint4 forward_tc_smem[];
  constexpr int kPlane = (kTileRows + R - 1) * kXPitch;
  uint16_t* xs = reinterpret_cast<uint16_t*>(forward_tc_smem);
  uint16_t* ys = xs + kChannels * kPlane;  // [kTileRows][kTileCols][8 channels]
  const int lane = threadIdx.x & 31, ch = threadIdx.x >> 5;
  const int c0 = blockIdx.x * kChannels, c = c0 + ch;

  uint32_t pairs[R][3];
  {
    const T* w_c = w + int64_t(c) * R * g.S;
    const int d0 = fwd_tap0(lane);
#pragma unroll
    for (int kh = 0; kh < R; ++kh)
#pragma unroll
      for (int p = 0; p < 3; ++p)
        pairs[kh][p] = pack(weight_bits(w_c, kh, d0 + 8 * p, R, g.S, flip),
                            weight_bits(w_c, kh, d0 + 8 * p + 1, R, g.S, flip));
  }
  const float bias_c = bias ? float(bias[c]) : 0.f;

  const int tiles = g.N * tiles_h * tiles_w;
  const int first = blockIdx.y * tiles_per_block;
  const int last = min(first + tiles_per_block, tiles);
  for (int tile = first; tile < last; ++tile) {
    const int tw = tile % tiles_w, th = (tile / tiles_w) % tiles_h, n = tile / (tiles_w * tiles_h);
    const int oh0 = th * kTileRows, ow0 = tw * kTileCols;
    const int row_tiles = min(kTileRows / 8, (g.Ho - oh0 + 7) / 8);
    const int col_tiles = min(kTileCols / 16, (g.Wo - ow0 + 15) / 16);
    __syncthreads();  // the previous tile's x planes and output are consumed
    stage_planes<kForwardUnroll>(xs, kPlane, kXPitch, x, n, oh0 - g.ph, ow0 - g.pw, 8 * row_tiles + R - 1,
                                 16 * col_tiles + 16, g.H, g.W, g.C, c0);
    __syncthreads();
    for (int ct = 0; ct < col_tiles; ++ct) {
      float acc[kTileRows / 8][4] = {};
      const uint16_t* b_row = xs + ch * kPlane + fwd_b_row(lane) * kXPitch + 16 * ct + fwd_b_col(lane);
      // Staged row i feeds row tile rt at kernel row i - 8 rt: one ldmatrix per row serves every row tile
      // that reads it (37 loads instead of 52 at R = 13), each tile's kernel rows still in order.
#pragma unroll
      for (int i = 0; i < kTileRows - 8 + R; ++i) {
        const int first_tile = i < R ? 0 : (i - R) / 8 + 1;  // the first row tile that reads row i
        if (first_tile >= row_tiles) continue;
        uint32_t b[4];
        ldmatrix_x4(b, b_row + i * kXPitch);
#pragma unroll
        for (int rt = 0; rt < kTileRows / 8; ++rt) {
          const int kh = i - 8 * rt;
          if (kh < 0 || kh >= R || rt >= row_tiles) continue;
          mma_16816<T>(acc[rt], pairs[kh][0], 0u, pairs[kh][1], pairs[kh][0], b[0], b[1]);
          mma_16816<T>(acc[rt], pairs[kh][2], pairs[kh][1], 0u, pairs[kh][2], b[2], b[3]);
        }
      }
      // D: M = output column, N = output row.
#pragma unroll
      for (int rt = 0; rt < kTileRows / 8; ++rt) {
        if (rt >= row_tiles) continue;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int row = 8 * rt + acc_n(lane, r), col = 16 * ct + acc_m(lane, r);
          ys[(row * kTileCols + col) * kChannels + ch] = T(acc[rt][r] + bias_c).bits;
        }
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kTileRows * kTileCols; e += kThreads) {
      const int oh = oh0 + e / kTileCols, ow = ow0 + e % kTileCols;
      if (oh < g.Ho && ow < g.Wo)
        *reinterpret_cast<uint4*>(y + ((int64_t(n) * g.Ho + oh) * g.Wo + ow) * g.C + c0) =
            reinterpret_cast<const uint4*>(ys)[e];
    }
  }
}

// ---------------------------------------------------------------- weight gradient

// One block: channels 8 blockIdx.x.. over the tiles blockIdx.y, blockIdx.y + splits, ... (tile = (n, band of
// 32 input rows, 32 output columns)); writes partial[(blockIdx.y, kh S + kw, c)].
template <class T>
__global__ void __launch_bounds__(kThreads)
    weight_partial_kernel(float* __restrict__ partial, const T* __restrict__ dy, const T* __restrict__ x, Shape g,
                          int bands_h, int bands_w, int splits) {
  extern __shared__ uint4 weight_tc_smem[];
  constexpr int kXPlane = kTileRows * kXPitch, kDyPlane = (kTileRows + kDyHalo) * kDyPitch;
  uint16_t* xs = reinterpret_cast<uint16_t*>(weight_tc_smem);
  uint16_t* dys = xs + kChannels * kXPlane;
  const int lane = threadIdx.x & 31, ch = threadIdx.x >> 5;
  const int c0 = blockIdx.x * kChannels, c = c0 + ch;
  float acc[4][2][4] = {};  // [row parity x column tile][kh tile][register]
  const uint16_t* x_lane = xs + ch * kXPlane + wgrad_col0(lane);
  const uint16_t* dy_lane = dys + ch * kDyPlane + (kDyHalo - wgrad_b_kh(lane)) * kDyPitch + wgrad_b_col(lane);

  const int tiles = g.N * bands_h * bands_w;
  for (int tile = blockIdx.y; tile < tiles; tile += splits) {
    const int bw = tile % bands_w, bh = (tile / bands_w) % bands_h, n = tile / (bands_w * bands_h);
    const int ih0 = bh * kTileRows, ow0 = bw * kTileCols;
    const int rows = min(kTileRows, g.H - ih0);
    const int col_tiles = min(kTileCols / 16, (g.Wo - ow0 + 15) / 16);
    __syncthreads();  // the previous tile is consumed
    stage_planes<kWeightUnroll>(xs, kXPlane, kXPitch, x, n, ih0, ow0 - g.pw, rows, 16 * col_tiles + 16, g.H, g.W,
                                g.C, c0);
    stage_planes<kWeightUnroll>(dys, kDyPlane, kDyPitch, dy, n, ih0 + g.ph - kDyHalo, ow0, rows + kDyHalo,
                                16 * col_tiles, g.Ho, g.Wo, g.C, c0);
    __syncthreads();
    for (int r0 = 0; r0 < rows; r0 += 2)
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int r = r0 + u;
        if (r >= rows) continue;
#pragma unroll
        for (int ct = 0; ct < kTileCols / 16; ++ct) {
          if (ct >= col_tiles) continue;
          const uint16_t* xp = x_lane + r * kXPitch + 16 * ct;
          const uint32_t q0 = pack(xp[0], xp[1]), q1 = pack(xp[8], xp[9]), q2 = pack(xp[16], xp[17]);
          uint32_t b[4];
          ldmatrix_x4(b, dy_lane + r * kDyPitch + 16 * ct);
          mma_16816<T>(acc[2 * u + ct][0], q0, q1, q1, q2, b[0], b[1]);
          mma_16816<T>(acc[2 * u + ct][1], q0, q1, q1, q2, b[2], b[3]);
        }
      }
  }
  const int taps = g.R * g.S;
  float* out = partial + int64_t(blockIdx.y) * taps * g.C + c;
#pragma unroll
  for (int t = 0; t < 2; ++t)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int kw = acc_m(lane, r), kh = 8 * t + acc_n(lane, r);
      const float v = (acc[0][t][r] + acc[1][t][r]) + (acc[2][t][r] + acc[3][t][r]);
      if (kw < g.S && kh < g.R) out[int64_t(kh * g.S + kw) * g.C] = v;
    }
}

// ---------------------------------------------------------------- host side

// Whether the tensor-core kernels cover the geometry and storage type (stride 1 is the caller's business;
// the pointers must also be 16-byte aligned: aligned()).
inline bool supported(const Shape& g, DType dtype) {
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (g.R != g.S || g.S % 2 == 0 || g.S < kMinKernel || g.S > kMaxKernel || g.dh != 1 || g.dw != 1) return false;
  if (g.N < 1 || g.H < 1 || g.W < 1 || g.Ho < 1 || g.Wo < 1 || g.C < kChannels || g.C % kChannels != 0) return false;
  const int64_t tiles_fwd = int64_t(g.N) * ((g.Ho + kTileRows - 1) / kTileRows) * ((g.Wo + kTileCols - 1) / kTileCols);
  const int64_t tiles_dgrad = int64_t(g.N) * ((g.H + kTileRows - 1) / kTileRows) * ((g.W + kTileCols - 1) / kTileCols);
  return tiles_fwd < INT_MAX / 2 && tiles_dgrad < INT_MAX / 2 && g.C / kChannels <= INT_MAX / 2;
}

inline bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether the tensor cores beat the CUDA-core kernels at this size (H100, core/cuda/PERF.md): images
// of 14 x 14 and up; at 7 x 7 a 32 x 32 tile holds 49 outputs of its 128 computed and v3 is 1.8x faster.
constexpr int kMinProfitableSide = 14;
inline bool profitable(const Shape& g) {
  return g.H >= kMinProfitableSide && g.W >= kMinProfitableSide && g.Ho >= kMinProfitableSide &&
         g.Wo >= kMinProfitableSide;
}

inline size_t forward_smem(int R) {
  return (size_t(kChannels) * (kTileRows + R - 1) * kXPitch + size_t(kTileRows) * kTileCols * kChannels) *
         sizeof(uint16_t);
}
inline size_t weight_smem() {
  return size_t(kChannels) * (kTileRows * kXPitch + (kTileRows + kDyHalo) * kDyPitch) * sizeof(uint16_t);
}

// f(integral_constant R) for the odd kernel sizes 7..15.
template <class F> void dispatch_kernel_size(int R, const F& f) {
  switch (R) {
    case 7: f(std::integral_constant<int, 7>{}); break;
    case 9: f(std::integral_constant<int, 9>{}); break;
    case 11: f(std::integral_constant<int, 11>{}); break;
    case 13: f(std::integral_constant<int, 13>{}); break;
    case 15: f(std::integral_constant<int, 15>{}); break;
    default: break;
  }
}

// y = conv(x, w) + bias (bias may be null), w [C, R, S] in T; flip runs the kernel rotated by 180 degrees.
// sm_count sizes the grid (tiles per block). Returns the launch error (cudaErrorInvalidValue outside
// supported(), cudaErrorMisalignedAddress for pointers not 16-byte aligned).
template <class T>
cudaError_t forward(T* y, const T* x, const T* w, const T* bias, const Shape& g, bool flip, int sm_count,
                    cudaStream_t stream) {
  static_assert(std::is_same<T, bf16>::value || std::is_same<T, f16>::value, "tensor-core depthwise: bf16 or f16");
  if (!supported(g, std::is_same<T, bf16>::value ? DType::BFloat16 : DType::Float16)) return cudaErrorInvalidValue;
  if (!aligned(y) || !aligned(x)) return cudaErrorMisalignedAddress;
  const int tiles_h = (g.Ho + kTileRows - 1) / kTileRows, tiles_w = (g.Wo + kTileCols - 1) / kTileCols;
  const int64_t tiles = int64_t(g.N) * tiles_h * tiles_w, groups = g.C / kChannels;
  // A few tiles per block amortise the A fragments; keep at least ~8 blocks per SM to balance the waves.
  const int64_t want = tiles * groups / (int64_t(sm_count > 0 ? sm_count : 1) * 8);
  int64_t per_block = want < 1 ? 1 : want > 4 ? 4 : want;
  if ((tiles + per_block - 1) / per_block > 65535) per_block = (tiles + 65534) / 65535;
  const dim3 grid(unsigned(groups), unsigned((tiles + per_block - 1) / per_block));
  const size_t smem = forward_smem(g.R);
  cudaError_t err = cudaErrorInvalidValue;
  dispatch_kernel_size(g.R, [&](auto size) {
    constexpr int R = decltype(size)::value;
    err = dwconv::launch_with_smem(forward_kernel<T, R>, grid, kThreads, smem, stream, y, x, w, bias, g, flip, tiles_h,
                                   tiles_w, int(per_block));
  });
  return err;
}

// dx from dy (w [C, R, S]): the forward on dy with the kernel flipped and the padding mirrored.
template <class T>
cudaError_t input_grad(T* dx, const T* dy, const T* w, const Shape& g, int sm_count, cudaStream_t stream) {
  return forward<T>(dx, dy, w, nullptr, dwconv::input_grad_shape(g), true, sm_count, stream);
}

// Weight-gradient launch plan: bands of the image and the splits of the tile list (one partial each).
struct WeightPlan {
  int bands_h = 0, bands_w = 0, splits = 0, blocks_per_sm = 0;
  size_t workspace = 0;  // floats: splits R S C
};

// One wave: as many blocks as fit the SMs at once (occupancy calculator; without a device, 3: 57 KB of
// shared memory and ~80 registers x 256 threads), the tiles balanced over the splits.
template <class T> WeightPlan weight_plan(const Shape& g, int sm_count) {
  WeightPlan p;
  p.bands_h = (g.H + kTileRows - 1) / kTileRows;
  p.bands_w = (g.Wo + kTileCols - 1) / kTileCols;
  const int64_t tiles = int64_t(g.N) * p.bands_h * p.bands_w, groups = g.C / kChannels;
  const int per_sm = dwconv::blocks_per_sm(weight_partial_kernel<T>, kThreads, weight_smem(), 3);
  p.splits = dwconv::balanced_splits(tiles, int64_t(sm_count > 0 ? sm_count : 1) * per_sm / (groups > 0 ? groups : 1));
  p.blocks_per_sm = per_sm;
  p.workspace = size_t(p.splits) * g.R * g.S * g.C;
  return p;
}

// dw [C, R, S] = sum over positions of dy x; workspace: plan.workspace floats.
template <class T>
cudaError_t weight_grad(T* dw, const T* dy, const T* x, const Shape& g, const WeightPlan& plan, float* workspace,
                        cudaStream_t stream) {
  static_assert(std::is_same<T, bf16>::value || std::is_same<T, f16>::value, "tensor-core depthwise: bf16 or f16");
  if (!supported(g, std::is_same<T, bf16>::value ? DType::BFloat16 : DType::Float16) || plan.splits < 1)
    return cudaErrorInvalidValue;
  if (!aligned(dy) || !aligned(x)) return cudaErrorMisalignedAddress;
  const dim3 grid(unsigned(g.C / kChannels), unsigned(plan.splits));
  const cudaError_t err = dwconv::launch_with_smem(weight_partial_kernel<T>, grid, kThreads, weight_smem(), stream,
                                                   workspace, dy, x, g, plan.bands_h, plan.bands_w, plan.splits);
  if (err != cudaSuccess) return err;
  return dwconv::sum_weight_partials<T>(dw, workspace, plan.splits, g, stream);
}

}  // namespace unirep::cuda::depthwise_tc
