// Fused kernels of the Dilated Reparam Block's depthwise branches (core/ops/dilated_branches.h): every
// branch b (kernel k_b x k_b, dilation d_b, padding p_b = d_b (k_b - 1) / 2, stride 1, no bias) reads the
// same x, so
//   forward     z_b[n, h, w, c] = sum_{r, s < k_b} x[n, h - p_b + r d_b, w - p_b + s d_b, c] w_b[c, r, s]
//               runs as ONE kernel: a block stages one x tile with the largest halo P = max_b p_b (built on
//               stage_tile of core/ops/depthwise_conv_kernels.cuh, whose memory plan applies: 32 channels per
//               block, one per lane, tile as float in shared memory) and each thread computes OW outputs of
//               one row for every branch. Per input row q of the 2P + 1 the tile gives an output row, the
//               thread loads one register window of OW + 2P floats and applies to it every branch that has
//               a kernel row there (p_b - P + q a multiple of d_b): branch b, tap s reads window element
//               j + P - p_b + s d_b, an index known at compile time. The six separate launches staged x six
//               times (each with its own halo); this stages it once and writes the six outputs.
//   input grad  dx = sum_b conv_transpose_b(dz_b) = sum_b (dz_b correlated with w_b rotated by 180
//               degrees, padding p_b: the "same" padding is its own mirror, (k_b - 1) d_b - p_b = p_b)
//               runs as ONE kernel: each block loops over the branches, staging branch b's dz tile with
//               its own halo p_b into the same shared buffer and accumulating into the same registers, and
//               writes dx once (no per-branch dx tensors, none of the engine's five gradient adds).
// The branch set is a compile-time type (K13Branches: the set of every K = 13 block UniRepLKNet trains),
// so the window indices, kernel widths and dilations are constants and the accumulators stay in
// registers; other sets take the per-branch kernels (the caller's fallback). The weights of all branches
// are converted (flipped for the input gradient) into one float [sum_b k_b^2, C] buffer by one launch.
// The input-gradient block has one warp per (output row, column group) of its tile (at most 16), so a
// warp's accumulators live across the branch loop.
#pragma once
#include <utility>

#include "core/ops/depthwise_conv_kernels.cuh"

namespace unirep::cuda::dwconv {

constexpr int kMaxBranches = 8;
constexpr int kMaxGradWarps = 16;

// lk_origin 13x13 then the branches (5, 1) (7, 2) (3, 3) (3, 4) (3, 5) as (kernel, dilation).
struct K13Branches {
  static constexpr int kCount = 6;
  __host__ __device__ static constexpr int kernel(int b) { return b == 0 ? 13 : b == 1 ? 5 : b == 2 ? 7 : 3; }
  __host__ __device__ static constexpr int dilation(int b) { return b < 2 ? 1 : b; }
  __host__ __device__ static constexpr int pad(int b) { return dilation(b) * (kernel(b) - 1) / 2; }
  __host__ __device__ static constexpr int halo() {
    int p = 0;
    for (int b = 0; b < kCount; ++b) p = pad(b) > p ? pad(b) : p;
    return p;
  }
  // First row of branch b in the converted weight buffer; tap_base(kCount) is the total.
  __host__ __device__ static constexpr int tap_base(int b) {
    int t = 0;
    for (int i = 0; i < b; ++i) t += kernel(i) * kernel(i);
    return t;
  }
};

template <class T> struct BranchOut {
  T* p[kMaxBranches];
};
template <class T> struct BranchIn {
  const T* p[kMaxBranches];
};

// f(integral_constant<int, b>) for b = 0 .. Set::kCount - 1, in order, at compile time.
template <class F, int... Bs>
__device__ __forceinline__ void each_branch(const F& f, std::integer_sequence<int, Bs...>) {
  (f(std::integral_constant<int, Bs>{}), ...);
}
template <class Set, class F> __device__ __forceinline__ void for_each_branch(const F& f) {
  each_branch(f, std::make_integer_sequence<int, Set::kCount>{});
}

// wt[(tap_base(b) + tap) C + c] = w_b[c, tap] (flip: w_b[c, k_b^2 - 1 - tap]) as float, all branches.
template <class Set, class T>
__global__ void prepare_branch_weights_kernel(float* __restrict__ wt, BranchIn<T> w, int C, bool flip) {
  const int64_t total = int64_t(Set::tap_base(Set::kCount)) * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int row = int(i / C), c = int(i % C);
    int b = 0;
#pragma unroll
    for (int k = 1; k < Set::kCount; ++k) b += row >= Set::tap_base(k);
    const int taps = Set::tap_base(b + 1) - Set::tap_base(b), tap = row - Set::tap_base(b);
    wt[i] = to_float(w.p[b][int64_t(c) * taps + (flip ? taps - 1 - tap : tap)]);
  }
}

// One block: 32 channels (blockIdx.y) x one output tile (blockIdx.x = (n, tile row, tile column)); the tile
// t is that of the union geometry (kernel 2P + 1, dilation 1, padding P), so t.in_rows / in_cols hold the
// halo P on every side and a thread's OW outputs are consecutive columns.
template <class Set, class T, int OW>
__global__ void __launch_bounds__(kMaxWarps * 32)
    branches_forward_kernel(BranchOut<T> z, const T* __restrict__ x, const float* __restrict__ wt, Shape g, Tile t) {
  constexpr int P = Set::halo(), NB = Set::kCount;
  extern __shared__ float4 branches_forward_smem[];
  float* tile = reinterpret_cast<float*>(branches_forward_smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  const int c0 = blockIdx.y * kLanes, c = c0 + lane;
  const auto [n, tile_h, tile_w] = tile_pos(blockIdx.x, t.tiles_h, t.tiles_w);
  const int ho0 = tile_h * t.th, wo0 = tile_w * t.tw(1);
  stage_tile(tile, x, n, ho0 - P, wo0 - P, t.in_rows, t.in_cols, t.in_cols_magic, g.H, g.W, g.C, c0, t.vec);
  __syncthreads();
  if (c >= g.C) return;
  const int slots = t.th * t.sb;
  for (int slot = warp; slot < slots; slot += warps) {
    const int i = slot / t.sb, col0 = (slot - i * t.sb) * OW;
    const int ho = ho0 + i;
    if (ho >= g.H || wo0 + col0 >= g.W) continue;
    float acc[NB][OW];
#pragma unroll
    for (int b = 0; b < NB; ++b)
#pragma unroll
      for (int j = 0; j < OW; ++j) acc[b][j] = 0.f;
    const float* in = tile + (i * t.in_cols + col0) * kLanes + lane;
#pragma unroll 1
    for (int q = 0; q <= 2 * P; ++q, in += t.in_cols * kLanes) {
      float win[OW + 2 * P];
#pragma unroll
      for (int m = 0; m < OW + 2 * P; ++m) win[m] = in[m * kLanes];
      for_each_branch<Set>([&](auto branch) {
        constexpr int b = decltype(branch)::value, k = Set::kernel(b), d = Set::dilation(b);
        constexpr int off = P - Set::pad(b);
        const int rq = q - off;
        if (rq < 0 || rq % d != 0 || rq >= k * d) return;  // not one of this branch's kernel rows
        const float* wrow = wt + int64_t(Set::tap_base(b) + (rq / d) * k) * g.C + c;
#pragma unroll
        for (int s = 0; s < k; ++s) {
          const float ws = __ldg(wrow + s * g.C);
#pragma unroll
          for (int j = 0; j < OW; ++j) acc[b][j] = fmaf(win[j + off + s * d], ws, acc[b][j]);
        }
      });
    }
    const int64_t at = ((int64_t(n) * g.H + ho) * g.W + wo0 + col0) * g.C + c;
    for_each_branch<Set>([&](auto branch) {
      constexpr int b = decltype(branch)::value;
      T* out = z.p[b] + at;
#pragma unroll
      for (int j = 0; j < OW; ++j)
        if (wo0 + col0 + j < g.W) out[int64_t(j) * g.C] = T(acc[b][j]);
    });
  }
}

// Input-gradient tile: th rows x sb column groups of OW columns, one warp per (row, group); branch b stages
// (th + 2 p_b) x (sb OW + 2 p_b) pixels of dz_b.
struct BranchGradTile {
  int th, sb, ow, tiles_h, tiles_w;
  uint32_t cols_magic[kMaxBranches];  // ceil(2^32 / (sb ow + 2 p_b))
  bool vec;
};

template <class Set, class T, int OW>
__global__ void __launch_bounds__(kMaxGradWarps * 32)
    branches_input_grad_kernel(T* __restrict__ dx, BranchIn<T> dz, const float* __restrict__ wt, Shape g,
                               BranchGradTile t) {
  extern __shared__ float4 branches_grad_smem[];
  float* tile = reinterpret_cast<float*>(branches_grad_smem);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int c0 = blockIdx.y * kLanes, c = c0 + lane;
  const int tw = t.sb * OW;
  const TilePos pos = tile_pos(blockIdx.x, t.tiles_h, t.tiles_w);  // a plain struct: the branch lambda reads it
  const int n = pos.n, ho0 = pos.tile_h * t.th, wo0 = pos.tile_w * tw;
  const int i = warp / t.sb, col0 = (warp - i * t.sb) * OW;
  const bool active = c < g.C && ho0 + i < g.H && wo0 + col0 < g.W;
  float acc[OW];
#pragma unroll
  for (int j = 0; j < OW; ++j) acc[j] = 0.f;
  for_each_branch<Set>([&](auto branch) {
    constexpr int b = decltype(branch)::value, k = Set::kernel(b), d = Set::dilation(b), p = Set::pad(b);
    constexpr int span = OW + (k - 1) * d;
    const int cols = tw + 2 * p;
    __syncthreads();  // the previous branch's tile is consumed
    stage_tile(tile, dz.p[b], n, ho0 - p, wo0 - p, t.th + 2 * p, cols, t.cols_magic[b], g.H, g.W, g.C, c0, t.vec);
    __syncthreads();
    if (!active) return;
    const float* in = tile + (i * cols + col0) * kLanes + lane;
    const float* wrow = wt + int64_t(Set::tap_base(b)) * g.C + c;
#pragma unroll 1
    for (int r = 0; r < k; ++r, in += d * cols * kLanes, wrow += k * g.C) {
      float win[span];
#pragma unroll
      for (int m = 0; m < span; ++m) win[m] = in[m * kLanes];
#pragma unroll
      for (int s = 0; s < k; ++s) {
        const float ws = __ldg(wrow + s * g.C);
#pragma unroll
        for (int j = 0; j < OW; ++j) acc[j] = fmaf(win[j + s * d], ws, acc[j]);
      }
    }
  });
  if (!active) return;
  T* out = dx + ((int64_t(n) * g.H + ho0 + i) * g.W + wo0 + col0) * g.C + c;
#pragma unroll
  for (int j = 0; j < OW; ++j)
    if (wo0 + col0 + j < g.W) out[int64_t(j) * g.C] = T(acc[j]);
}

// ---------------------------------------------------------------- host side

// The union geometry of a branch set on x [N, H, W, C]: kernel 2P + 1, dilation 1, padding P, "same" output.
template <class Set> Shape branch_union_shape(int N, int H, int W, int C) {
  constexpr int P = Set::halo();
  return Shape{N, H, W, C, 2 * P + 1, 2 * P + 1, H, W, P, P, 1, 1};
}

template <class Set> size_t branch_weight_floats(int C) { return size_t(Set::tap_base(Set::kCount)) * C; }

template <class Set> size_t grad_tile_smem(int th, int tw) {
  size_t floats = 0;
  for (int b = 0; b < Set::kCount; ++b) {
    const size_t f = size_t(th + 2 * Set::pad(b)) * (tw + 2 * Set::pad(b));
    floats = f > floats ? f : floats;
  }
  return floats * kLanes * sizeof(float);
}

// The cheapest input-gradient tile under the shared-memory cap (smem_bytes = 0 when none fits). Cost in
// warp instructions per 32 channels as choose_tile counts them: staging ~3 per pixel per branch, per warp and
// kernel row a window of OW + (k - 1) d loads, k weight loads and OW k FMAs.
template <class Set>
BranchGradTile choose_branch_grad_tile(const Shape& g, size_t* smem_bytes, size_t smem_limit = kSmemMax) {
  BranchGradTile best{};
  *smem_bytes = 0;
  const size_t limit = smem_limit < kSmemMax ? smem_limit : kSmemMax;
  for (size_t cap : {limit < kSmemPreferred ? limit : kSmemPreferred, limit}) {
    double best_cost = 0;
    for (int ow : {8, 16})
      for (int th = 1; th <= 8; ++th)
        for (int sb : {1, 2, 4}) {
          if (th * sb > kMaxGradWarps) continue;
          const int tw = sb * ow;
          const size_t bytes = grad_tile_smem<Set>(th, tw);
          if (bytes > cap) continue;
          const int tiles_h = (g.H + th - 1) / th, tiles_w = (g.W + tw - 1) / tw;
          double per_tile = 0;
          for (int b = 0; b < Set::kCount; ++b) {
            const int k = Set::kernel(b), d = Set::dilation(b), p = Set::pad(b);
            per_tile += 3.0 * (th + 2 * p) * (tw + 2 * p) + 100.0 +
                        double(th) * sb * k * (ow + (k - 1) * d + k + ow * k);
          }
          const double cost = double(g.N) * tiles_h * tiles_w * per_tile;
          if (*smem_bytes == 0 || cost < best_cost) {
            best = BranchGradTile{};
            best.th = th;
            best.sb = sb;
            best.ow = ow;
            best.tiles_h = tiles_h;
            best.tiles_w = tiles_w;
            for (int b = 0; b < Set::kCount; ++b) best.cols_magic[b] = div_magic(tw + 2 * Set::pad(b));
            best_cost = cost;
            *smem_bytes = bytes;
          }
        }
    if (*smem_bytes) return best;
  }
  return best;
}

// Whether the fused kernels cover x [N, H, W, C] (g: branch_union_shape) under the shared-memory limit.
template <class Set> bool branches_supported(const Shape& g, size_t smem_limit = kSmemMax) {
  static_assert(Set::kCount <= kMaxBranches, "too many branches");
  if (g.N < 1 || g.H < 1 || g.W < 1 || g.C < 1) return false;
  size_t a = 0, b = 0;
  const Tile t = choose_tile(g, false, &a, smem_limit);
  const BranchGradTile gt = choose_branch_grad_tile<Set>(g, &b, smem_limit);
  if (!a || !b) return false;
  const double tiles = double(g.N) * t.tiles_h * t.tiles_w, grad_tiles = double(g.N) * gt.tiles_h * gt.tiles_w;
  return tiles < double(INT_MAX) && grad_tiles < double(INT_MAX) && (g.C + kLanes - 1) / kLanes <= 65535;
}

template <class F> void dispatch_branch_ow(int ow, const F& f) {
  if (ow == 16) f(std::integral_constant<int, 16>{});
  else f(std::integral_constant<int, 8>{});
}

// z_b = conv_b(x) for every branch; w.p[b]: [C, k_b, k_b] in T; g: branch_union_shape; workspace:
// branch_weight_floats<Set>(C) floats. Returns the launch error.
template <class Set, class T>
cudaError_t branches_forward(const BranchOut<T>& z, const T* x, const BranchIn<T>& w, const Shape& g,
                             float* workspace, cudaStream_t stream, size_t smem_limit = kSmemMax) {
  size_t smem = 0;
  Tile t = choose_tile(g, false, &smem, smem_limit);
  if (!smem) return cudaErrorInvalidValue;
  t.vec = quad_aligned(g.C, x, x);
  prepare_branch_weights_kernel<Set, T><<<grid_1d(int64_t(branch_weight_floats<Set>(g.C))), 256, 0, stream>>>(
      workspace, w, g.C, false);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const dim3 grid(unsigned(g.N * t.tiles_h * t.tiles_w), unsigned((g.C + kLanes - 1) / kLanes));
  const unsigned threads = unsigned(tile_warps(g, t) * 32);
  dispatch_branch_ow(t.ow, [&](auto ow) {
    constexpr int OW = decltype(ow)::value;
    err = launch_with_smem(branches_forward_kernel<Set, T, OW>, grid, threads, smem, stream, z, x, workspace, g, t);
  });
  return err;
}

// dx = sum_b conv_transpose_b(dz_b); w as for branches_forward; workspace: branch_weight_floats<Set>(C).
template <class Set, class T>
cudaError_t branches_input_grad(T* dx, const BranchIn<T>& dz, const BranchIn<T>& w, const Shape& g,
                                float* workspace, cudaStream_t stream, size_t smem_limit = kSmemMax) {
  size_t smem = 0;
  BranchGradTile t = choose_branch_grad_tile<Set>(g, &smem, smem_limit);
  if (!smem) return cudaErrorInvalidValue;
  t.vec = true;
  for (int b = 0; b < Set::kCount; ++b) t.vec = t.vec && quad_aligned(g.C, dz.p[b], dz.p[b]);
  prepare_branch_weights_kernel<Set, T><<<grid_1d(int64_t(branch_weight_floats<Set>(g.C))), 256, 0, stream>>>(
      workspace, w, g.C, true);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  const dim3 grid(unsigned(g.N * t.tiles_h * t.tiles_w), unsigned((g.C + kLanes - 1) / kLanes));
  const unsigned threads = unsigned(t.th * t.sb * 32);
  dispatch_branch_ow(t.ow, [&](auto ow) {
    constexpr int OW = decltype(ow)::value;
    err = launch_with_smem(branches_input_grad_kernel<Set, T, OW>, grid, threads, smem, stream, dx, dz, workspace, g,
                           t);
  });
  return err;
}

}  // namespace unirep::cuda::dwconv
