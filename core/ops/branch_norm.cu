// CUDA kernels of core/ops/branch_norm.h: one launch each for the forward sum and the backward dx.
//
// Layout: a block of 256 threads owns a tile of `cols` column groups (V channels each: 16 bytes of
// T when C % V == 0 and every pointer is 16-byte aligned, else V = 1) and a range of rows; thread t
// keeps column group t % cols and walks every (256 / cols)-th row of the range. The block first
// folds its channels' per-branch coefficients into shared memory (forward: mean, invstd * w, b;
// backward: mean, k = w invstd, a = sum(dy) / N, q = invstd^2 sum(dy (x - mean)) / N), so the inner
// loop reads only the big tensors: forward B loads and one store per vector, backward one dy load,
// B x loads and B dx stores. Branch pointers travel by value in a small struct (B <= 8). Each
// element sums its branches in branch order in float (double for double): no atomics, the result
// does not depend on the launch shape. The branch loops are unrolled to kMax with an early exit, so
// the pointer arrays are indexed by constants and read straight from the kernel parameters.
#include <algorithm>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/loops.cuh"
#include "core/ops/branch_norm.h"

namespace unirep::cuda {

namespace {

constexpr int kMax = kMaxNormBranches;
constexpr int64_t kTargetBlocks = 1024;
constexpr int64_t kCoefBytes = 32 * 1024;  // shared memory for one block's folded coefficients

template <class T, class P> struct ApplyBranches {
  const T* x[kMax];
  const acc_t<T>* mean[kMax];
  const acc_t<T>* invstd[kMax];
  const P* weight[kMax];
  const P* bias[kMax];
  int count;
};

template <class T, class P> struct DxBranches {
  T* dx[kMax];  // nullptr: not wanted
  const T* x[kMax];
  const acc_t<T>* mean[kMax];
  const acc_t<T>* invstd[kMax];
  const P* weight[kMax];
  const acc_t<T>* grad_sums;  // [B, 2C] or nullptr (eval)
  const double* total;        // N on the device, or nullptr: N = rows
  int count;
};

// Where one block works: channels [c_begin, c_begin + cols * V), rows [row_begin, row_end).
struct Tile {
  uint32_t cols, lanes, rows, rows_per_split, C;
  __device__ uint32_t c_begin(int V) const { return blockIdx.x * cols * uint32_t(V); }
  __device__ uint32_t row_begin() const { return blockIdx.y * rows_per_split; }
  __device__ uint32_t row_end() const { return min(rows, row_begin() + rows_per_split); }
};

template <class T, class P, int V>
__global__ void branch_sum_apply_kernel(T* y, ApplyBranches<T, P> br, Tile tile) {
  using acc = acc_t<T>;
  using Vec = VecOf<T, V>;
  extern __shared__ __align__(16) unsigned char smem[];
  acc* coef = reinterpret_cast<acc*>(smem);  // [branch][mean, scale, shift][tile channel]
  const uint32_t C = tile.C, width = tile.cols * V, c_begin = tile.c_begin(V);
#pragma unroll
  for (int i = 0; i < kMax; ++i) {
    if (i >= br.count) break;
    acc* ci = coef + i * 3 * width;
    for (uint32_t lc = threadIdx.x, c = c_begin + lc; lc < width && c < C; lc += blockDim.x, c += blockDim.x) {
      ci[lc] = br.mean[i][c];
      ci[width + lc] = br.invstd[i][c] * (br.weight[i] ? static_cast<acc>(br.weight[i][c]) : acc(1));
      ci[2 * width + lc] = br.bias[i] ? static_cast<acc>(br.bias[i][c]) : acc(0);
    }
  }
  __syncthreads();
  const uint32_t col = threadIdx.x % tile.cols, lane = threadIdx.x / tile.cols, lc0 = col * V, c0 = c_begin + lc0;
  if (lane >= tile.lanes || c0 >= C) return;
  for (uint32_t r = tile.row_begin() + lane, end = tile.row_end(); r < end; r += tile.lanes) {
    const uint32_t e = r * C + c0;
    acc t[V];
#pragma unroll
    for (int j = 0; j < V; ++j) t[j] = acc(0);
#pragma unroll
    for (int i = 0; i < kMax; ++i) {
      if (i >= br.count) break;
      const Vec xv = *reinterpret_cast<const Vec*>(br.x[i] + e);
      const acc* ci = coef + i * 3 * width + lc0;
#pragma unroll
      for (int j = 0; j < V; ++j)
        t[j] += (static_cast<acc>(xv.v[j]) - ci[j]) * ci[width + j] + ci[2 * width + j];
    }
    Vec o;
#pragma unroll
    for (int j = 0; j < V; ++j) o.v[j] = static_cast<T>(t[j]);
    *reinterpret_cast<Vec*>(y + e) = o;
  }
}

template <class T, class P, int V>
__global__ void branch_sum_dx_kernel(const T* dy, DxBranches<T, P> br, Tile tile) {
  using acc = acc_t<T>;
  using Vec = VecOf<T, V>;
  extern __shared__ __align__(16) unsigned char smem[];
  acc* coef = reinterpret_cast<acc*>(smem);  // [branch][mean, k, a, q][tile channel]
  const uint32_t C = tile.C, width = tile.cols * V, c_begin = tile.c_begin(V);
  const acc n = br.total ? static_cast<acc>(*br.total) : static_cast<acc>(tile.rows);
#pragma unroll
  for (int i = 0; i < kMax; ++i) {
    if (i >= br.count) break;
    acc* ci = coef + i * 4 * width;
    const acc* gs = br.grad_sums ? br.grad_sums + i * 2 * C : nullptr;
    for (uint32_t lc = threadIdx.x, c = c_begin + lc; lc < width && c < C; lc += blockDim.x, c += blockDim.x) {
      const acc inv = br.invstd[i][c];
      ci[lc] = br.mean[i][c];
      ci[width + lc] = inv * (br.weight[i] ? static_cast<acc>(br.weight[i][c]) : acc(1));
      ci[2 * width + lc] = gs ? gs[c] / n : acc(0);
      ci[3 * width + lc] = gs ? inv * inv * gs[C + c] / n : acc(0);
    }
  }
  __syncthreads();
  const uint32_t col = threadIdx.x % tile.cols, lane = threadIdx.x / tile.cols, lc0 = col * V, c0 = c_begin + lc0;
  if (lane >= tile.lanes || c0 >= C) return;
  const bool training = br.grad_sums != nullptr;
  for (uint32_t r = tile.row_begin() + lane, end = tile.row_end(); r < end; r += tile.lanes) {
    const uint32_t e = r * C + c0;
    const Vec gv = *reinterpret_cast<const Vec*>(dy + e);
#pragma unroll
    for (int i = 0; i < kMax; ++i) {
      if (i >= br.count) break;
      if (!br.dx[i]) continue;
      const acc* ci = coef + i * 4 * width + lc0;
      const Vec xv = training ? *reinterpret_cast<const Vec*>(br.x[i] + e) : gv;  // eval: x unused
      Vec o;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const acc centred = training ? static_cast<acc>(xv.v[j]) - ci[j] : acc(0);
        o.v[j] = static_cast<T>(ci[width + j] *
                                (static_cast<acc>(gv.v[j]) - ci[2 * width + j] - centred * ci[3 * width + j]));
      }
      *reinterpret_cast<Vec*>(br.dx[i] + e) = o;
    }
  }
}

// The launch shape for rows x C elements, V channels per thread, `per_channel` bytes of shared
// coefficients per channel: column tiles of equal width as wide as the shared budget allows, then
// enough row splits for about kTargetBlocks blocks.
struct Launch {
  Tile tile;
  dim3 grid;
  size_t smem;
};
Launch launch_shape(int64_t rows, int64_t C, int V, int64_t per_channel) {
  const int64_t groups = (C + V - 1) / V;
  const int64_t max_cols = std::max<int64_t>(1, std::min<int64_t>(kThreads, kCoefBytes / per_channel / V));
  const int64_t ntiles = (groups + max_cols - 1) / max_cols, cols = (groups + ntiles - 1) / ntiles;
  const int64_t lanes = kThreads / cols;
  const int64_t nsplit =
      std::max<int64_t>(1, std::min<int64_t>({kTargetBlocks / ntiles, (rows + lanes - 1) / lanes, 65535}));
  const int64_t rows_per_split = (rows + nsplit - 1) / nsplit;
  return {{uint32_t(cols), uint32_t(lanes), uint32_t(rows), uint32_t(rows_per_split), uint32_t(C)},
          dim3(unsigned(ntiles), unsigned((rows + rows_per_split - 1) / rows_per_split)),
          size_t(per_channel * cols * V)};
}

void check_32bit(const Tensor& t, const char* op) {
  UNIREP_CHECK(t.numel() < (int64_t(1) << 31), op, ": tensors of 2^31 or more elements are not supported, got ",
               shape_str(t.shape()));
}

DType param_dtype(const std::vector<NormBranch>& branches, DType x) {
  for (const NormBranch& b : branches) {
    if (b.weight.defined()) return b.weight.dtype();
    if (b.bias.defined()) return b.bias.dtype();
  }
  return x;
}

template <class T> const T* opt_data(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

}  // namespace

void batch_norm_branch_sum_apply(const Tensor& y, const std::vector<NormBranch>& branches, NormShape s) {
  check_32bit(y, "batch_norm_branch_sum");
  UNIREP_DISPATCH_FLOATING(y.dtype(), "batch_norm_branch_sum", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(param_dtype(branches, y.dtype()), [&](auto tag) {
      using P = typename decltype(tag)::type;
      ApplyBranches<T, P> br{};
      br.count = int(branches.size());
      std::vector<const Tensor*> big{&y};
      for (int i = 0; i < br.count; ++i) {
        const NormBranch& b = branches[size_t(i)];
        br.x[i] = b.x.data<T>();
        br.mean[i] = b.mean.data<acc>();
        br.invstd[i] = b.invstd.data<acc>();
        br.weight[i] = opt_data<P>(b.weight);
        br.bias[i] = opt_data<P>(b.bias);
        big.push_back(&b.x);
      }
      with_vector_width<T>(s.channels, big, [&](auto width) {
        constexpr int V = decltype(width)::value;
        const Launch l = launch_shape(s.outer, s.channels, V, int64_t(3 * sizeof(acc)) * br.count);
        branch_sum_apply_kernel<T, P, V><<<l.grid, kThreads, l.smem, stream()>>>(y.data<T>(), br, l.tile);
        CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void batch_norm_branch_sum_dx(const std::vector<Tensor>& dxs, const Tensor& dy, const std::vector<NormBranch>& branches,
                              const Tensor& grad_sums, const Tensor& count, NormShape s) {
  check_32bit(dy, "batch_norm_branch_sum_backward");
  UNIREP_DISPATCH_FLOATING(dy.dtype(), "batch_norm_branch_sum_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(param_dtype(branches, dy.dtype()), [&](auto tag) {
      using P = typename decltype(tag)::type;
      DxBranches<T, P> br{};
      br.count = int(branches.size());
      br.grad_sums = opt_data<acc>(grad_sums);
      br.total = opt_data<double>(count);
      std::vector<const Tensor*> big{&dy};
      for (int i = 0; i < br.count; ++i) {
        const NormBranch& b = branches[size_t(i)];
        br.dx[i] = dxs[size_t(i)].defined() ? dxs[size_t(i)].data<T>() : nullptr;
        br.x[i] = b.x.data<T>();
        br.mean[i] = b.mean.data<acc>();
        br.invstd[i] = b.invstd.data<acc>();
        br.weight[i] = opt_data<P>(b.weight);
        big.push_back(&b.x);
        big.push_back(&dxs[size_t(i)]);
      }
      with_vector_width<T>(s.channels, big, [&](auto width) {
        constexpr int V = decltype(width)::value;
        const Launch l = launch_shape(s.outer, s.channels, V, int64_t(4 * sizeof(acc)) * br.count);
        branch_sum_dx_kernel<T, P, V><<<l.grid, kThreads, l.smem, stream()>>>(dy.data<T>(), br, l.tile);
        CUDA_CHECK_LAUNCH();
      });
    });
  });
}

}  // namespace unirep::cuda
