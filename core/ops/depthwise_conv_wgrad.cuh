// Depthwise weight gradient, version 4, and the production choice between it and v3
// (core/ops/depthwise_conv_kernels.cuh has v3, the staging helper and the shared geometry types).
//
//   dw[c, r, s] = sum_{n, ho, wo} dy[n, ho, wo, c] x[n, ho - ph + r dh, wo - pw + s dw, c]
//
// Why v3 sits at 5x (13x13) to 35x (small dilated) its floor, and what v4 changes:
//   * Shared-memory bandwidth, not FMA issue, bounds v3's inner loop. An SM reads 128 B of shared memory
//     per clock, i.e. one warp-wide 32-bit load, but issues four warp FMAs. v3 gives each warp one kernel
//     row and per (output row, OW columns) loads OW dy + OW + S - 1 x values for OW S FMAs: 13x13, OW 16:
//     44 loads per 208 FMA = 44 clocks of loads for 52 of FMA; 3x3: 34 loads per 48 FMA (3x the FMA
//     time). v4 blocks in registers along both the kernel rows and the output rows: a warp owns KR
//     kernel rows and an item is OR output rows i0 + k dh (strided by the dilation, like the columns) x
//     OW columns. x row q = i0 + (k + kr) dh serves every pair (k, kr) with k + kr fixed, so an item
//     loads OR OW dy values once and OR + KR - 1 x windows of OW + S - 1 for OR KR OW S FMAs:
//       13x13 (KR 4, OR 2, OW 8): 16 + 5 * 20 = 116 loads per 832 FMA (1 : 7.2, was 1 : 4.7);
//       3x3 (KR 3, OR 4, OW 8):   32 + 6 * 10 =  92 loads per 288 FMA (1 : 3.1, was 1 : 1.4);
//       7x7 (KR 4, OR 4, OW 8):   32 + 7 * 14 = 130 loads per 896 FMA (1 : 6.9).
//     An item may take fewer rows than OR (item_rows, a tile choice): at dilation 5 an item of 4 rows
//     spans 20 image rows, and a halo tile of such items would not fit 100 KB at 28x28.
//     Registers: OR OW dy + KR S sums + OW + S - 1 window <= 94 floats (S = 11) for every width, under
//     the 128 of __launch_bounds__(256, 2), so two 8-warp blocks fit an SM whatever the width.
//   * Whole-image tiles. For small images v3's tile is mostly halo: 7x7 with 3x3 d5 stages 17 x 50
//     pixels of x (padding zeros included) for 49 real ones and computes 40 columns for 7. A whole-image
//     tile stages x [H, W] and dy [Ho, Wo] exactly (7x7: 12.5 KB for both, 14x14: 50 KB) and replaces the
//     zero halo by bounds checks on read: x rows outside the image are skipped (uniform across the warp,
//     whose lanes are channels), window columns outside it read as 0 (a compare and select per load).
//     Bigger images keep the halo tiles, staged with zeros so their loads need no checks. The tile cost
//     model (loads + FMA / 4 + checks / 4 + 2 per staged pixel, per SM clock) picks the mode and OW
//     (4 or 8: 4 halves the columns computed past a small image's edge under dilation).
//   * Occupancy instead of double buffering. v3's blocks have up to 16 warps and up to 200 KB of shared
//     memory, so one block per SM alternates staging and computing with the SM idle at each barrier.
//     v4's blocks are 8 warps with tiles capped at 100 KB (mostly far less), and at least two of them
//     share an SM (launch bounds), so one block's staging loads overlap another's FMAs with no
//     cp.async pipeline or register prefetch (which would cost registers the sums need).
//   * Splits fill exactly one wave. v3 asks for 4 blocks per SM whatever the occupancy: at 13x13
//     [128, 28, 28, 160] that is 530 blocks for ~396 resident slots, so the last 1/3 wave runs alone and
//     the kernel takes two block times instead of 1.34. v4 asks the occupancy calculator how many blocks
//     fit an SM, launches that many over all SMs and balances the tiles per split (ceil(tiles / blocks)
//     each), which also keeps the partial buffer small: splits x R S C floats (53 x 27,040 at 13x13).
// The partials are summed in split order by sum_weight_partials_kernel (shared with v3): deterministic,
// no atomics; within a block, the warps of a kernel row add their sums in a fixed order in shared memory.
#pragma once
#include "core/ops/depthwise_conv_kernels.cuh"

namespace unirep::cuda::dwconv {

constexpr int kWeightWarpsV4 = 8;  // warps per v4 block

// Register blocking of v4 by kernel width: kernel rows per warp (KR) and output rows per item (OR).
constexpr int v4_kernel_rows(int S) { return S <= 3 ? 3 : S <= 5 ? 5 : S <= 13 ? 4 : S <= 19 ? 2 : 1; }
constexpr int v4_out_rows(int S) { return S <= 11 ? 4 : 2; }

// v4 tile: output tile t (t.th a multiple of item_rows dh), whole-image or halo staging, the warp layout.
struct WeightTileV4 {
  Tile t;
  int item_rows;                // output rows per item, <= OR (fewer keep dilated halo tiles small)
  bool image;                   // x [H, W] and dy [Ho, Wo] staged exactly, bounds checked on read
  uint32_t w_magic, wo_magic;   // ceil(2^32 / W), ceil(2^32 / Wo) for the whole-image staging
  int row_blocks;               // kernel-row blocks of at most KR rows (balanced: R / row_blocks each)
  int rb_per_group, parts;      // row blocks per block (blockIdx.z picks the group), warps per row block
  __host__ __device__ int row_groups(int dh) const { return t.th / (item_rows * dh) * dh; }
};

// Sums over the tiles of this block's split of the KR kernel rows r_begin.. (nrows of them).
template <class T, int S, int OW, bool kImage>
__device__ __forceinline__ void accumulate_tiles_v4(float (&acc)[v4_kernel_rows(S)][S], float* __restrict__ xs,
                                                    float* __restrict__ ys, const T* __restrict__ dy,
                                                    const T* __restrict__ x, const Shape& g, const WeightTileV4& p,
                                                    int r_begin, int nrows, int part, bool active) {
  constexpr int KR = v4_kernel_rows(S), OR = v4_out_rows(S), WIN = OW + S - 1;
  const Tile& t = p.t;
  const int lane = threadIdx.x & 31, c0 = blockIdx.y * kLanes;
  const int tw = t.tw(g.dw), col_groups = t.col_groups(g.dw);
  const int items = p.row_groups(g.dh) * col_groups;
  const int tiles = g.N * t.tiles_h * t.tiles_w;
  const int x_pitch = kImage ? g.W : t.in_cols, y_pitch = kImage ? g.Wo : tw;  // staged pixels per row
  const int col_step = g.dw * kLanes;
  for (int tile_id = blockIdx.x; tile_id < tiles; tile_id += gridDim.x) {
    const auto [n, tile_h, tile_w] = tile_pos(tile_id, t.tiles_h, t.tiles_w);
    const int ho0 = tile_h * t.th, wo0 = tile_w * tw;
    __syncthreads();  // the previous tile is consumed
    if (kImage) {
      stage_tile(xs, x, n, 0, 0, g.H, g.W, p.w_magic, g.H, g.W, g.C, c0, t.vec);
      stage_tile(ys, dy, n, 0, 0, g.Ho, g.Wo, p.wo_magic, g.Ho, g.Wo, g.C, c0, t.vec);
    } else {
      stage_tile(xs, x, n, ho0 - g.ph, wo0 - g.pw, t.in_rows, t.in_cols, t.in_cols_magic, g.H, g.W, g.C, c0, t.vec);
      stage_tile(ys, dy, n, ho0, wo0, t.th, tw, t.tw_magic, g.Ho, g.Wo, g.C, c0, t.vec);
    }
    __syncthreads();
    if (!active) continue;
    // Image coordinates of the first staged x and dy pixels.
    const int xh0 = kImage ? 0 : ho0 - g.ph, xw0 = kImage ? 0 : wo0 - g.pw;
    const int yh0 = kImage ? 0 : ho0, yw0 = kImage ? 0 : wo0;
    for (int k = part; k < items; k += p.parts) {
      const int rg = k / col_groups, cg = k - rg * col_groups;
      const int ho_first = ho0 + (rg / g.dh) * p.item_rows * g.dh + rg % g.dh;
      const int wo_first = wo0 + (cg / g.dw) * OW * g.dw + cg % g.dw;
      if (ho_first >= g.Ho || wo_first >= g.Wo) continue;
      const int out_rows = min(p.item_rows, (g.Ho - ho_first + g.dh - 1) / g.dh);  // rows inside the image
      float d[OR][OW];
#pragma unroll
      for (int o = 0; o < OR; ++o) {
        const float* yrow = ys + ((ho_first + o * g.dh - yh0) * y_pitch + wo_first - yw0) * kLanes + lane;
#pragma unroll
        for (int j = 0; j < OW; ++j)
          d[o][j] = (o < out_rows && (!kImage || wo_first + j * g.dw < g.Wo)) ? yrow[j * col_step] : 0.f;
      }
      const int x_rows = out_rows + nrows - 1;                 // x rows q = o + kr in use
      const int h_first = ho_first - g.ph + r_begin * g.dh;    // image row of q = 0
      const int w_first = wo_first - g.pw;                     // image column of window element 0
#pragma unroll
      for (int q = 0; q < OR + KR - 1; ++q) {
        const int h = h_first + q * g.dh;
        if (q >= x_rows || h < 0 || h >= g.H) continue;       // past the rows in use, or all zeros
        const float* xrow = xs + ((h - xh0) * x_pitch + w_first - xw0) * kLanes + lane;
        float win[WIN];
#pragma unroll
        for (int m = 0; m < WIN; ++m) {
          if (kImage) {
            const int w = w_first + m * g.dw;
            win[m] = unsigned(w) < unsigned(g.W) ? xrow[m * col_step] : 0.f;
          } else {
            win[m] = xrow[m * col_step];
          }
        }
#pragma unroll
        for (int o = 0; o < OR; ++o) {
          const int kr = q - o;  // a constant once unrolled
          if (kr < 0 || kr >= KR || o >= out_rows || kr >= nrows) continue;
#pragma unroll
          for (int s = 0; s < S; ++s)
#pragma unroll
            for (int j = 0; j < OW; ++j) acc[kr][s] = fmaf(d[o][j], win[j + s], acc[kr][s]);
        }
      }
    }
  }
}

// partial[(split, r S + s, c)] over the tiles split, split + splits, ... Warp w takes row block
// blockIdx.z rb_per_group + w % rb_per_group and every parts-th item of each tile (part w / rb_per_group).
template <class T, int S, int OW>
__global__ void __launch_bounds__(kWeightWarpsV4 * 32, 2)
    weight_partial_kernel_v4(float* __restrict__ partial, const T* __restrict__ dy, const T* __restrict__ x, Shape g,
                             WeightTileV4 p) {
  constexpr int KR = v4_kernel_rows(S);
  extern __shared__ float4 weight_v4_smem[];
  float* smem = reinterpret_cast<float*>(weight_v4_smem);
  float* xs = smem;
  float* ys = smem + (p.image ? g.H * g.W : p.t.in_rows * p.t.in_cols) * kLanes;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int rb_local = warp % p.rb_per_group, part = warp / p.rb_per_group;
  const int rb = blockIdx.z * p.rb_per_group + rb_local;
  const bool active = part < p.parts && rb < p.row_blocks;
  const int r_begin = rb * g.R / p.row_blocks, nrows = (rb + 1) * g.R / p.row_blocks - r_begin;
  float acc[KR][S];
#pragma unroll
  for (int kr = 0; kr < KR; ++kr)
#pragma unroll
    for (int s = 0; s < S; ++s) acc[kr][s] = 0.f;
  if (p.image) accumulate_tiles_v4<T, S, OW, true>(acc, xs, ys, dy, x, g, p, r_begin, nrows, part, active);
  else accumulate_tiles_v4<T, S, OW, false>(acc, xs, ys, dy, x, g, p, r_begin, nrows, part, active);
  // Parts 1.. of each row block hand their sums to part 0 through shared memory, added in part order.
  __syncthreads();
  float* red = smem;  // [parts - 1][rb_per_group][KR][S][32]
  if (active && part > 0) {
#pragma unroll
    for (int kr = 0; kr < KR; ++kr)
#pragma unroll
      for (int s = 0; s < S; ++s)
        red[((((part - 1) * p.rb_per_group + rb_local) * KR + kr) * S + s) * kLanes + lane] = acc[kr][s];
  }
  __syncthreads();
  const int c = blockIdx.y * kLanes + lane;
  if (!active || part > 0 || c >= g.C) return;
  for (int q = 1; q < p.parts; ++q)
#pragma unroll
    for (int kr = 0; kr < KR; ++kr)
#pragma unroll
      for (int s = 0; s < S; ++s)
        acc[kr][s] += red[((((q - 1) * p.rb_per_group + rb_local) * KR + kr) * S + s) * kLanes + lane];
  float* out = partial + (int64_t(blockIdx.x) * g.R + r_begin) * S * g.C + c;
#pragma unroll
  for (int kr = 0; kr < KR; ++kr)
    if (kr < nrows)
#pragma unroll
      for (int s = 0; s < S; ++s) out[int64_t(kr * S + s) * g.C] = acc[kr][s];
}

// ---------------------------------------------------------------- host side

inline size_t tile_smem_v4(const Shape& g, const WeightTileV4& p) {
  const size_t staged = p.image ? size_t(g.H) * g.W + size_t(g.Ho) * g.Wo
                                : size_t(p.t.in_rows) * p.t.in_cols + size_t(p.t.th) * p.t.tw(g.dw);
  const size_t red = size_t(p.parts - 1) * p.rb_per_group * v4_kernel_rows(g.S) * g.S;
  return (staged > red ? staged : red) * kLanes * sizeof(float);
}

// Blocks along blockIdx.z: groups of rb_per_group kernel-row blocks.
inline int row_block_groups(const WeightTileV4& p) { return (p.row_blocks + p.rb_per_group - 1) / p.rb_per_group; }

// Halo tile of super_rows x item_rows dh rows and super_cols x OW dw columns, or (image) one tile covering
// the image.
inline WeightTileV4 make_tile_v4(const Shape& g, int super_rows, int super_cols, int ow, int item_rows, bool image) {
  const int orr = item_rows, kr = v4_kernel_rows(g.S);
  if (image) {
    super_rows = (g.Ho + orr * g.dh - 1) / (orr * g.dh);
    super_cols = (g.Wo + ow * g.dw - 1) / (ow * g.dw);
  }
  WeightTileV4 p{};
  p.t = make_tile(g, super_rows * orr * g.dh, super_cols, ow);
  p.item_rows = item_rows;
  p.image = image;
  p.w_magic = g.W >= 2 ? div_magic(g.W) : 0;
  p.wo_magic = g.Wo >= 2 ? div_magic(g.Wo) : 0;
  p.row_blocks = (g.R + kr - 1) / kr;
  const int groups = (p.row_blocks + kWeightWarpsV4 - 1) / kWeightWarpsV4;
  p.rb_per_group = (p.row_blocks + groups - 1) / groups;
  p.parts = kWeightWarpsV4 / p.rb_per_group;
  return p;
}

// The cheapest v4 tile under the shared-memory cap (smem_bytes = 0 when none fits). Cost in SM clocks per
// 32 channels: 2 per staged pixel (16-byte shared stores and the load / convert instructions), per item
// and row block its shared loads (one warp load per clock), FMAs and bounds checks (four warp
// instructions per clock), items counted when their first output is inside the image.
inline WeightTileV4 choose_tile_v4(const Shape& g, size_t* smem_bytes, size_t smem_limit = kSmemMax) {
  WeightTileV4 best{};
  *smem_bytes = 0;
  const size_t limit = smem_limit < kSmemMax ? smem_limit : kSmemMax;
  const int kr = v4_kernel_rows(g.S);
  for (size_t cap : {limit < kSmemPreferred ? limit : kSmemPreferred, limit}) {
    double best_cost = 0;
    auto consider = [&](const WeightTileV4& p) {
      const size_t bytes = tile_smem_v4(g, p);
      if (bytes > cap) return;
      const Tile& t = p.t;
      const int orr = p.item_rows;
      const double staged = p.image ? double(g.H) * g.W + double(g.Ho) * g.Wo
                                    : double(t.in_rows) * t.in_cols + double(t.th) * t.tw(g.dw);
      const int row_limit = p.image ? g.Ho : t.th, col_limit = p.image ? g.Wo : t.tw(g.dw);
      int rows_in = 0, cols_in = 0;
      for (int rg = 0; rg < p.row_groups(g.dh); ++rg) rows_in += (rg / g.dh) * orr * g.dh + rg % g.dh < row_limit;
      for (int cg = 0; cg < t.col_groups(g.dw); ++cg) cols_in += (cg / g.dw) * t.ow * g.dw + cg % g.dw < col_limit;
      const int win = t.ow + g.S - 1;
      const double loads = double(orr) * t.ow + double(orr + kr - 1) * win;
      const double fma = double(orr) * kr * t.ow * g.S;
      const double checks = p.image ? 2.0 * loads : 0.0;
      const double per_item = loads + (fma + checks) / 4.0 + 10.0;
      const double tiles = double(g.N) * t.tiles_h * t.tiles_w;
      const double cost = tiles * (2.0 * staged + 100.0 + double(rows_in) * cols_in * p.row_blocks * per_item);
      if (*smem_bytes == 0 || cost < best_cost) {
        best = p;
        best_cost = cost;
        *smem_bytes = bytes;
      }
    };
    for (int ow : {4, 8})
      for (int item_rows = v4_out_rows(g.S); item_rows >= 1; item_rows /= 2) {
        if (g.W >= 2 && g.Wo >= 2) consider(make_tile_v4(g, 0, 0, ow, item_rows, true));
        for (int super_rows = 1; super_rows <= 4; ++super_rows)
          for (int super_cols : {1, 2, 4}) consider(make_tile_v4(g, super_rows, super_cols, ow, item_rows, false));
      }
    if (*smem_bytes) return best;
  }
  return best;
}

// f(integral_constant S, integral_constant OW) for the odd widths 3..31 and OW 4 or 8.
template <int S, class F> void dispatch_ow_v4(int ow, const F& f) {
  if (ow == 8) f(std::integral_constant<int, S>{}, std::integral_constant<int, 8>{});
  else f(std::integral_constant<int, S>{}, std::integral_constant<int, 4>{});
}
template <class F> void dispatch_width_v4(int S, int ow, const F& f) {
  switch (S) {
#define UNIREP_DW_WIDTH_V4(k) \
  case k: dispatch_ow_v4<k>(ow, f); break;
    UNIREP_DW_WIDTH_V4(3) UNIREP_DW_WIDTH_V4(5) UNIREP_DW_WIDTH_V4(7) UNIREP_DW_WIDTH_V4(9) UNIREP_DW_WIDTH_V4(11)
    UNIREP_DW_WIDTH_V4(13) UNIREP_DW_WIDTH_V4(15) UNIREP_DW_WIDTH_V4(17) UNIREP_DW_WIDTH_V4(19)
    UNIREP_DW_WIDTH_V4(21) UNIREP_DW_WIDTH_V4(23) UNIREP_DW_WIDTH_V4(25) UNIREP_DW_WIDTH_V4(27)
    UNIREP_DW_WIDTH_V4(29) UNIREP_DW_WIDTH_V4(31)
#undef UNIREP_DW_WIDTH_V4
    default: break;
  }
}

// Launch plan of the v4 weight gradient.
struct WeightPlanV4 {
  WeightTileV4 tile{};
  size_t smem = 0;
  int blocks_per_sm = 0;  // resident v4 blocks per SM (occupancy calculator; an estimate without a device)
  int splits = 0;
  size_t workspace = 0;  // floats
};

template <class T> WeightPlanV4 weight_plan_v4(const Shape& g, int sm_count, size_t smem_limit = kSmemMax) {
  WeightPlanV4 p;
  p.tile = choose_tile_v4(g, &p.smem, smem_limit);
  if (!p.smem) return p;
  const int threads = p.tile.rb_per_group * p.tile.parts * 32;
  // Without a device (or on a failed query): two blocks (the launch bounds), fewer if shared memory says so.
  const int by_smem = int((228 * 1024) / (p.smem + 1024));
  int per_sm = by_smem < 2 ? (by_smem < 1 ? 1 : by_smem) : 2;
  dispatch_width_v4(g.S, p.tile.t.ow, [&](auto width, auto ow) {
    constexpr int S = decltype(width)::value, OW = decltype(ow)::value;
    per_sm = blocks_per_sm(weight_partial_kernel_v4<T, S, OW>, threads, p.smem, per_sm);
  });
  p.blocks_per_sm = per_sm;
  const int64_t tiles = int64_t(g.N) * p.tile.t.tiles_h * p.tile.t.tiles_w;
  const int64_t columns = int64_t((g.C + kLanes - 1) / kLanes) * row_block_groups(p.tile);
  p.splits = balanced_splits(tiles, (int64_t(sm_count > 0 ? sm_count : 1) * per_sm + columns - 1) / columns);
  p.workspace = size_t(p.splits) * g.R * g.S * g.C;
  return p;
}

// The first pass of v4: partial [splits, R S, C] into workspace (plan.workspace floats).
template <class T>
cudaError_t weight_partials_v4(float* workspace, const T* dy, const T* x, const Shape& g, const WeightPlanV4& plan,
                               cudaStream_t stream) {
  if (!plan.smem) return cudaErrorInvalidValue;
  WeightTileV4 p = plan.tile;
  p.t.vec = quad_aligned(g.C, x, dy);
  const dim3 grid(unsigned(plan.splits), unsigned((g.C + kLanes - 1) / kLanes), unsigned(row_block_groups(p)));
  const unsigned threads = unsigned(p.rb_per_group * p.parts * 32);
  cudaError_t err = cudaSuccess;
  dispatch_width_v4(g.S, p.t.ow, [&](auto width, auto ow) {
    constexpr int S = decltype(width)::value, OW = decltype(ow)::value;
    err = launch_with_smem(weight_partial_kernel_v4<T, S, OW>, grid, threads, plan.smem, stream, workspace, dy, x, g,
                           p);
  });
  return err;
}

// ---------------------------------------------------------------- production choice

// Which version conv2d's weight gradient runs, from the plan v4 would use. Measured on an H200 at every
// UniRepLKNet-T shape (core/cuda/PERF.md, "Depthwise weight gradient v4"): v4 wins with whole-image tiles
// (1.1-3.3x) and with halo tiles of 8 or more rows (1.1-1.6x), and loses with the 4-row halo tiles its
// cost model picks at 28x28 for 13x13, 5x5 and 3x3 d4 (0.57-0.65x), where v3 runs instead.
inline bool use_v4(const WeightPlanV4& p) { return p.smem > 0 && (p.tile.image || p.tile.t.th >= 8); }

// The production weight-gradient plan: v4 where use_v4 says so, else v3.
struct WeightPlan {
  bool v4 = false;
  WeightPlanV4 plan_v4;
  WeightPlanV3 plan_v3;
  size_t workspace = 0;  // floats
  int splits() const { return v4 ? plan_v4.splits : plan_v3.splits; }
};

template <class T> WeightPlan weight_plan(const Shape& g, int sm_count, size_t smem_limit = kSmemMax) {
  WeightPlan p;
  p.plan_v4 = weight_plan_v4<T>(g, sm_count, smem_limit);
  p.v4 = use_v4(p.plan_v4);
  if (!p.v4) p.plan_v3 = weight_plan_v3(g, sm_count, smem_limit);
  p.workspace = p.v4 ? p.plan_v4.workspace : p.plan_v3.workspace;
  return p;
}

// dw [C, R, S] = sum over positions of dy x; workspace: plan.workspace floats.
template <class T>
cudaError_t weight_grad(T* dw, const T* dy, const T* x, const Shape& g, const WeightPlan& plan, float* workspace,
                        cudaStream_t stream) {
  const cudaError_t err = plan.v4 ? weight_partials_v4<T>(workspace, dy, x, g, plan.plan_v4, stream)
                                  : weight_partials_v3<T>(workspace, dy, x, g, plan.plan_v3, stream);
  if (err != cudaSuccess) return err;
  return sum_weight_partials<T>(dw, workspace, plan.splits(), g, stream);
}

}  // namespace unirep::cuda::dwconv
