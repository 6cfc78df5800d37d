// CUDA kernels of core/ops/scaled_residual.h.
//   forward: the elementwise vector pattern of core/cuda/loops.cuh (V = 16 bytes of T per thread
//     step when C % V == 0 and the pointers are 16-byte aligned, else one element), one Philox draw
//     per V elements for drop path.
//   backward: a block of 32 x 8 threads covers 32 column groups of V channels; each thread walks
//     its column group down every 8th row of the block's row range, writes dbranch and keeps V float
//     sums of keep * dout * branch; the 8 row lanes are added in shared memory in a fixed order, each
//     block writes one partial per channel, and a second kernel adds the partials of each channel in
//     row-range order (deterministic, no atomics).
#include <algorithm>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/loops.cuh"
#include "core/ops/norm.h"
#include "core/ops/random.h"
#include "core/ops/scaled_residual.h"

namespace unirep::cuda {

namespace {

constexpr int kCols = 32, kRows = 8;  // backward block: 32 column groups x 8 row lanes = 256 threads
constexpr int64_t kTargetBlocks = 1024;

template <class acc, class P> struct Factor {
  const P* gamma;
  bool drop;
  uint64_t seed, offset;
  double p;
  acc keep_scale;
  uint32_t per_sample, C;

  __device__ bool kept(uint32_t element) const {
    return !drop || philox_keep(seed, offset + uint64_t(element / per_sample), p);
  }
  __device__ acc at(uint32_t c) const {
    const acc g = gamma ? static_cast<acc>(gamma[c]) : acc(1);
    return drop ? g * keep_scale : g;
  }
};

template <class T, class P, int V>
__global__ void scaled_residual_forward_kernel(T* out, const T* x, const T* branch, Factor<acc_t<T>, P> f,
                                               uint32_t nvec) {
  using acc = acc_t<T>;
  using Vec = VecOf<T, V>;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < nvec; i += gridDim.x * blockDim.x) {
    const uint32_t e = i * uint32_t(V), c = e % f.C;
    const Vec xv = *reinterpret_cast<const Vec*>(x + e);
    Vec o = xv;
    if (f.kept(e)) {
      const Vec bv = *reinterpret_cast<const Vec*>(branch + e);
#pragma unroll
      for (int j = 0; j < V; ++j)
        o.v[j] = static_cast<T>(static_cast<acc>(xv.v[j]) + f.at(c + j) * static_cast<acc>(bv.v[j]));
    }
    *reinterpret_cast<Vec*>(out + e) = o;
  }
}

// dbranch (optional) and per-block partial channel sums (optional) over rows [row_begin, row_end).
template <class T, class P, int V>
__global__ void scaled_residual_backward_kernel(T* dbranch, acc_t<T>* partial, const T* dout, const T* branch,
                                                Factor<acc_t<T>, P> f, uint32_t rows, uint32_t rows_per_split) {
  using acc = acc_t<T>;
  using Vec = VecOf<T, V>;
  __shared__ acc lanes[kRows][kCols * V];
  const uint32_t C = f.C, c0 = (blockIdx.x * kCols + threadIdx.x) * V;
  const uint32_t row_begin = blockIdx.y * rows_per_split, row_end = min(rows, row_begin + rows_per_split);
  acc sum[V];
#pragma unroll
  for (int j = 0; j < V; ++j) sum[j] = acc(0);
  if (c0 < C) {
    for (uint32_t r = row_begin + threadIdx.y; r < row_end; r += kRows) {
      const uint32_t e = r * C + c0;
      const bool keep = f.kept(e);
      const Vec dv = *reinterpret_cast<const Vec*>(dout + e);
      if (dbranch) {
        Vec o;
#pragma unroll
        for (int j = 0; j < V; ++j) o.v[j] = keep ? static_cast<T>(f.at(c0 + j) * static_cast<acc>(dv.v[j])) : T(acc(0));
        *reinterpret_cast<Vec*>(dbranch + e) = o;
      }
      if (partial && keep) {
        const Vec bv = *reinterpret_cast<const Vec*>(branch + e);
#pragma unroll
        for (int j = 0; j < V; ++j) sum[j] += static_cast<acc>(dv.v[j]) * static_cast<acc>(bv.v[j]);
      }
    }
  }
  if (!partial) return;
#pragma unroll
  for (int j = 0; j < V; ++j) lanes[threadIdx.y][threadIdx.x * V + j] = sum[j];
  __syncthreads();
  if (threadIdx.y == 0 && c0 < C) {
#pragma unroll
    for (int j = 0; j < V; ++j) {
      acc t = acc(0);
      for (int y = 0; y < kRows; ++y) t += lanes[y][threadIdx.x * V + j];
      partial[int64_t(blockIdx.y) * C + c0 + j] = t;
    }
  }
}

template <class acc, class P>
__global__ void sum_partials_kernel(P* dgamma, const acc* partial, uint32_t nsplit, uint32_t C, acc scale) {
  for (uint32_t c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += gridDim.x * blockDim.x) {
    acc t = acc(0);
    for (uint32_t k = 0; k < nsplit; ++k) t += partial[int64_t(k) * C + c];
    dgamma[c] = static_cast<P>(t * scale);
  }
}

template <class T, class P>
Factor<acc_t<T>, P> factor_of(const Tensor& gamma, const ResidualScale& s, int64_t C) {
  using acc = acc_t<T>;
  return {gamma.defined() ? gamma.data<P>() : nullptr, s.drop, s.seed, s.offset, s.p, static_cast<acc>(s.keep_scale),
          uint32_t(s.per_sample), uint32_t(C)};
}

void check_32bit(const Tensor& t, const char* op) {
  UNIREP_CHECK(t.numel() < (int64_t(1) << 31), op, ": tensors of 2^31 or more elements are not supported, got ",
               shape_str(t.shape()));
}

}  // namespace

void scaled_residual_forward(const Tensor& out, const Tensor& x, const Tensor& branch, const Tensor& gamma,
                             const ResidualScale& s) {
  check_32bit(x, "scaled_residual");
  const int64_t C = x.size(-1), n = x.numel();
  if (n == 0) return;
  UNIREP_DISPATCH_FLOATING(x.dtype(), "scaled_residual", [&] {
    using T = scalar_t;
    with_norm_param<T>(gamma.defined() ? gamma.dtype() : x.dtype(), [&](auto tag) {
      using P = typename decltype(tag)::type;
      const auto f = factor_of<T, P>(gamma, s, C);
      with_vector_width<T>(C, {&out, &x, &branch}, [&](auto width) {
        constexpr int V = decltype(width)::value;
        const int64_t nvec = n / V;
        scaled_residual_forward_kernel<T, P, V><<<std::min<unsigned>(blocks_for(nvec), 65535u * 16u), kThreads, 0,
                                                  stream()>>>(out.data<T>(), x.data<T>(), branch.data<T>(), f,
                                                              uint32_t(nvec));
        CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void scaled_residual_backward(const Tensor& dbranch, const Tensor& dgamma, const Tensor& dout, const Tensor& branch,
                              const Tensor& gamma, const ResidualScale& s) {
  check_32bit(dout, "scaled_residual_backward");
  const int64_t C = dout.size(-1), rows = dout.numel() / C;
  if (C == 0) return;
  if (rows == 0) {
    if (dgamma.defined()) Tensor(dgamma).fill_(0.0);
    return;
  }
  UNIREP_DISPATCH_FLOATING(dout.dtype(), "scaled_residual_backward", [&] {
    using T = scalar_t;
    using acc = acc_t<T>;
    with_norm_param<T>(gamma.defined() ? gamma.dtype() : dout.dtype(), [&](auto tag) {
      using P = typename decltype(tag)::type;
      const auto f = factor_of<T, P>(gamma, s, C);
      with_vector_width<T>(C, {&dbranch, &dout, &branch}, [&](auto width) {
        constexpr int V = decltype(width)::value;
        const int64_t col_blocks = (C / V + kCols - 1) / kCols;
        const int64_t nsplit =
            std::max<int64_t>(1, std::min<int64_t>({kTargetBlocks / col_blocks, (rows + 63) / 64, 65535}));
        const int64_t rows_per_split = (rows + nsplit - 1) / nsplit;
        Tensor partial = dgamma.defined() ? Tensor::empty({nsplit * C}, DTypeOf<acc>::value, dout.device()) : Tensor();
        scaled_residual_backward_kernel<T, P, V>
            <<<dim3(unsigned(col_blocks), unsigned(nsplit)), dim3(kCols, kRows), 0, stream()>>>(
                dbranch.defined() ? dbranch.data<T>() : nullptr, dgamma.defined() ? partial.data<acc>() : nullptr,
                dout.data<T>(), branch.defined() ? branch.data<T>() : nullptr, f, uint32_t(rows),
                uint32_t(rows_per_split));
        CUDA_CHECK_LAUNCH();
        if (!dgamma.defined()) return;
        const acc scale = s.drop ? static_cast<acc>(s.keep_scale) : acc(1);
        sum_partials_kernel<acc, P><<<blocks_for(C), kThreads, 0, stream()>>>(dgamma.data<P>(), partial.data<acc>(),
                                                                             uint32_t(nsplit), uint32_t(C), scale);
        CUDA_CHECK_LAUNCH();
      });
    });
  });
}

}  // namespace unirep::cuda
