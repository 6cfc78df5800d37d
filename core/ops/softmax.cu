// CUDA softmax / log-softmax and cross-entropy kernels (the math is in softmax.h).
//
// Rows (inner == 1 and the [N, C] logits of the losses): a warp per row when C <= 1024 (8 rows per
// 256-thread block; the lanes stride over the row, so each warp load is one coalesced 128-byte
// transaction) and a 512-thread block per row for longer rows. Row maxima and sums are reduced with
// warp shuffles, plus one 32-entry shared-memory stage across the warps of a block. A row is read
// two or three times; the re-reads hit L1/L2.
// inner > 1: one thread per (outer, inner) position walks the C values `inner` apart; neighbouring
// threads read neighbouring inner positions, so every load is coalesced.
#include <type_traits>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/math.h"
#include "core/ops/softmax.h"

namespace unirep::cuda {

namespace {

constexpr int64_t kWarpRowMaxC = 1024;
constexpr int kBlockRowThreads = 512;

template <class acc> __device__ __forceinline__ acc max_nan(acc a, acc v) { return (v > a || v != v) ? v : a; }

struct MaxOp {
  template <class acc> __device__ __forceinline__ acc operator()(acc a, acc b) const { return max_nan(a, b); }
};
struct SumOp {
  template <class acc> __device__ __forceinline__ acc operator()(acc a, acc b) const { return a + b; }
};

template <class acc, class Op> __device__ __forceinline__ acc warp_reduce(acc v, Op op) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Reduces v over the threads of a row: the warp (kBlock false) or the whole block (kBlock true).
// Every thread of the row gets the result. `shared` holds 32 values.
template <bool kBlock, class acc, class Op>
__device__ __forceinline__ acc row_reduce(acc v, Op op, acc identity, acc* shared) {
  v = warp_reduce(v, op);
  if constexpr (kBlock) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();  // readers of the previous reduction are done with `shared`
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < int(blockDim.x >> 5) ? shared[lane] : identity;
    v = warp_reduce(v, op);
  }
  return v;
}

template <bool kBlock> __device__ __forceinline__ int64_t row_index() {
  return kBlock ? int64_t(blockIdx.x) : int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5);
}
template <bool kBlock> __device__ __forceinline__ int row_lane() { return kBlock ? int(threadIdx.x) : int(threadIdx.x & 31); }
template <bool kBlock> __device__ __forceinline__ int row_step() { return kBlock ? int(blockDim.x) : 32; }

// Launches f(std::integral_constant<bool, kBlock>, grid, block) with the row layout for C columns.
template <class F> void launch_rows(const char* op, int64_t rows, int64_t C, const F& f) {
  UNIREP_CHECK(rows < (int64_t(1) << 31), op, ": too many rows (", rows, ")");
  if (C <= kWarpRowMaxC) {
    constexpr int rows_per_block = kThreads / 32;
    f(std::false_type{}, dim3(unsigned((rows + rows_per_block - 1) / rows_per_block)), dim3(kThreads));
  } else {
    f(std::true_type{}, dim3(unsigned(rows)), dim3(kBlockRowThreads));
  }
}

// ---------------------------------------------------------------- softmax, inner == 1

template <class T, bool kBlock>
__global__ void softmax_rows_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t rows, int64_t C, bool log) {
  using acc = acc_t<T>;
  __shared__ acc shared[32];
  const int64_t row = row_index<kBlock>();
  if (row >= rows) return;
  const int lane = row_lane<kBlock>(), step = row_step<kBlock>();
  const T* xr = x + row * C;
  T* yr = y + row * C;
  acc m = acc(-INFINITY);
  for (int64_t c = lane; c < C; c += step) m = max_nan(m, static_cast<acc>(xr[c]));
  m = row_reduce<kBlock>(m, MaxOp{}, acc(-INFINITY), shared);
  acc s = 0;
  for (int64_t c = lane; c < C; c += step) s += math::exp(static_cast<acc>(xr[c]) - m);
  s = row_reduce<kBlock>(s, SumOp{}, acc(0), shared);
  if (log) {
    const acc ls = math::log(s);  // (x - m) - log S: exact shift first
    for (int64_t c = lane; c < C; c += step) yr[c] = static_cast<T>((static_cast<acc>(xr[c]) - m) - ls);
  } else {
    const acc inv = acc(1) / s;
    for (int64_t c = lane; c < C; c += step) yr[c] = static_cast<T>(math::exp(static_cast<acc>(xr[c]) - m) * inv);
  }
}

template <class T, bool kBlock>
__global__ void softmax_backward_rows_kernel(T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ y,
                                             int64_t rows, int64_t C, bool log) {
  using acc = acc_t<T>;
  __shared__ acc shared[32];
  const int64_t row = row_index<kBlock>();
  if (row >= rows) return;
  const int lane = row_lane<kBlock>(), step = row_step<kBlock>();
  const T* dyr = dy + row * C;
  const T* yr = y + row * C;
  T* dxr = dx + row * C;
  acc s = 0;
  if (log) {
    for (int64_t c = lane; c < C; c += step) s += static_cast<acc>(dyr[c]);
  } else {
    for (int64_t c = lane; c < C; c += step) s += static_cast<acc>(dyr[c]) * static_cast<acc>(yr[c]);
  }
  s = row_reduce<kBlock>(s, SumOp{}, acc(0), shared);
  if (log) {
    for (int64_t c = lane; c < C; c += step)
      dxr[c] = static_cast<T>(static_cast<acc>(dyr[c]) - math::exp(static_cast<acc>(yr[c])) * s);
  } else {
    for (int64_t c = lane; c < C; c += step)
      dxr[c] = static_cast<T>(static_cast<acc>(yr[c]) * (static_cast<acc>(dyr[c]) - s));
  }
}

// ---------------------------------------------------------------- softmax, inner > 1

template <class T>
__global__ void softmax_inner_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t outer, int64_t C,
                                     int64_t inner, bool log) {
  using acc = acc_t<T>;
  const int64_t n = outer * inner;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = idx / inner, i = idx - o * inner;
    const T* xr = x + o * C * inner + i;
    T* yr = y + o * C * inner + i;
    acc m = acc(-INFINITY);
    for (int64_t c = 0; c < C; ++c) m = max_nan(m, static_cast<acc>(xr[c * inner]));
    acc s = 0;
    for (int64_t c = 0; c < C; ++c) s += math::exp(static_cast<acc>(xr[c * inner]) - m);
    if (log) {
      const acc ls = math::log(s);
      for (int64_t c = 0; c < C; ++c) yr[c * inner] = static_cast<T>((static_cast<acc>(xr[c * inner]) - m) - ls);
    } else {
      const acc inv = acc(1) / s;
      for (int64_t c = 0; c < C; ++c)
        yr[c * inner] = static_cast<T>(math::exp(static_cast<acc>(xr[c * inner]) - m) * inv);
    }
  }
}

template <class T>
__global__ void softmax_backward_inner_kernel(T* __restrict__ dx, const T* __restrict__ dy, const T* __restrict__ y,
                                              int64_t outer, int64_t C, int64_t inner, bool log) {
  using acc = acc_t<T>;
  const int64_t n = outer * inner;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = idx / inner, i = idx - o * inner, base = o * C * inner + i;
    acc s = 0;
    for (int64_t c = 0; c < C; ++c) {
      const int64_t k = base + c * inner;
      s += log ? static_cast<acc>(dy[k]) : static_cast<acc>(dy[k]) * static_cast<acc>(y[k]);
    }
    for (int64_t c = 0; c < C; ++c) {
      const int64_t k = base + c * inner;
      const acc g = static_cast<acc>(dy[k]), yk = static_cast<acc>(y[k]);
      dx[k] = static_cast<T>(log ? g - math::exp(yk) * s : yk * (g - s));
    }
  }
}

// ---------------------------------------------------------------- cross entropy, hard targets

template <class T, class I, bool kBlock>
__global__ void ce_forward_kernel(acc_t<T>* __restrict__ loss, acc_t<T>* __restrict__ lse, acc_t<T>* __restrict__ kept,
                                  const T* __restrict__ x, const I* __restrict__ target, int64_t N, int64_t C,
                                  int64_t ignore_index, acc_t<T> keep, acc_t<T> e_over_c) {
  using acc = acc_t<T>;
  __shared__ acc shared[32];
  const int64_t row = row_index<kBlock>();
  if (row >= N) return;
  const int lane = row_lane<kBlock>(), step = row_step<kBlock>();
  const int64_t t = int64_t(target[row]);
  if (lane == 0) kept[row] = t == ignore_index ? acc(0) : acc(1);
  if (t == ignore_index || t < 0 || t >= C) {  // uniform over the row's threads
    if (lane == 0) {  // an out-of-range target (not checked on the host): NaN, as the loss is undefined
      loss[row] = t == ignore_index ? acc(0) : acc(NAN);
      lse[row] = t == ignore_index ? acc(0) : acc(NAN);
    }
    return;
  }
  const T* xr = x + row * C;
  acc m = acc(-INFINITY);
  for (int64_t c = lane; c < C; c += step) m = max_nan(m, static_cast<acc>(xr[c]));
  m = row_reduce<kBlock>(m, MaxOp{}, acc(-INFINITY), shared);
  acc s = 0, shifted = 0;
  for (int64_t c = lane; c < C; c += step) {
    const acc v = static_cast<acc>(xr[c]) - m;
    s += math::exp(v);
    shifted += v;
  }
  s = row_reduce<kBlock>(s, SumOp{}, acc(0), shared);
  if (e_over_c != acc(0)) shifted = row_reduce<kBlock>(shifted, SumOp{}, acc(0), shared);
  if (lane == 0) {
    const acc log_s = math::log(s);
    acc l = log_s - keep * (static_cast<acc>(xr[t]) - m);
    if (e_over_c != acc(0)) l -= e_over_c * shifted;
    loss[row] = l;
    lse[row] = m + log_s;
  }
}

template <class T, class I, bool kBlock>
__global__ void ce_backward_kernel(T* __restrict__ dx, const T* __restrict__ grad, int64_t grad_stride,
                                   const acc_t<T>* __restrict__ divisor, const T* __restrict__ x,
                                   const acc_t<T>* __restrict__ lse,
                                   const I* __restrict__ target, int64_t N, int64_t C, int64_t ignore_index,
                                   acc_t<T> keep, acc_t<T> e_over_c) {
  using acc = acc_t<T>;
  const int64_t row = row_index<kBlock>();
  if (row >= N) return;
  const int lane = row_lane<kBlock>(), step = row_step<kBlock>();
  const int64_t t = int64_t(target[row]);
  T* dxr = dx + row * C;
  if (t == ignore_index) {
    for (int64_t c = lane; c < C; c += step) dxr[c] = static_cast<T>(acc(0));
    return;
  }
  if (t < 0 || t >= C) {  // out of range: the forward's NaN carries into the gradient
    for (int64_t c = lane; c < C; c += step) dxr[c] = static_cast<T>(acc(NAN));
    return;
  }
  const T* xr = x + row * C;
  const acc scale = divisor == nullptr ? acc(1) : *divisor == acc(0) ? acc(0) : acc(1) / *divisor;
  const acc g = static_cast<acc>(grad[row * grad_stride]) * scale, l = lse[row];
  for (int64_t c = lane; c < C; c += step) {
    const acc q = c == t ? keep + e_over_c : e_over_c;
    dxr[c] = static_cast<T>(g * (math::exp(static_cast<acc>(xr[c]) - l) - q));
  }
}

// ---------------------------------------------------------------- cross entropy, soft targets

template <class T, bool kBlock>
__global__ void soft_ce_forward_kernel(acc_t<T>* __restrict__ loss, acc_t<T>* __restrict__ lse,
                                       acc_t<T>* __restrict__ qsum, const T* __restrict__ x,
                                       const T* __restrict__ q, int64_t N, int64_t C) {
  using acc = acc_t<T>;
  __shared__ acc shared[32];
  const int64_t row = row_index<kBlock>();
  if (row >= N) return;
  const int lane = row_lane<kBlock>(), step = row_step<kBlock>();
  const T* xr = x + row * C;
  const T* qr = q + row * C;
  acc m = acc(-INFINITY);
  for (int64_t c = lane; c < C; c += step) m = max_nan(m, static_cast<acc>(xr[c]));
  m = row_reduce<kBlock>(m, MaxOp{}, acc(-INFINITY), shared);
  // loss = sum_c q_c (log S - (x_c - m)) = qs log S + neg_qx, with neg_qx = sum_c q_c (m - x_c) >= 0.
  acc s = 0, qs = 0, neg_qx = 0;
  for (int64_t c = lane; c < C; c += step) {
    const acc v = static_cast<acc>(xr[c]) - m, qc = static_cast<acc>(qr[c]);
    s += math::exp(v);
    qs += qc;
    neg_qx -= qc * v;
  }
  s = row_reduce<kBlock>(s, SumOp{}, acc(0), shared);
  qs = row_reduce<kBlock>(qs, SumOp{}, acc(0), shared);
  neg_qx = row_reduce<kBlock>(neg_qx, SumOp{}, acc(0), shared);
  if (lane == 0) {
    const acc log_s = math::log(s);
    loss[row] = qs * log_s + neg_qx;
    lse[row] = m + log_s;
    qsum[row] = qs;
  }
}

template <class T, bool kBlock>
__global__ void soft_ce_backward_kernel(T* __restrict__ dx, T* __restrict__ dq, const T* __restrict__ grad,
                                        int64_t grad_stride, acc_t<T> scale, const T* __restrict__ x,
                                        const T* __restrict__ q, const acc_t<T>* __restrict__ lse,
                                        const acc_t<T>* __restrict__ qsum, int64_t N, int64_t C) {
  using acc = acc_t<T>;
  const int64_t row = row_index<kBlock>();
  if (row >= N) return;
  const int lane = row_lane<kBlock>(), step = row_step<kBlock>();
  const T* xr = x + row * C;
  const T* qr = q + row * C;
  const acc g = static_cast<acc>(grad[row * grad_stride]) * scale, l = lse[row], qs = qsum[row];
  for (int64_t c = lane; c < C; c += step) {
    const acc xc = static_cast<acc>(xr[c]);
    if (dx) dx[row * C + c] = static_cast<T>(g * (math::exp(xc - l) * qs - static_cast<acc>(qr[c])));
    if (dq) dq[row * C + c] = static_cast<T>(g * (l - xc));
  }
}

int64_t grad_stride_of(const Tensor& grad, int64_t N) { return grad.numel() == N && N != 1 ? 1 : 0; }

}  // namespace

void softmax_forward(const Tensor& y, const Tensor& x, int64_t outer, int64_t C, int64_t inner, bool log) {
  UNIREP_DISPATCH_FLOATING(x.dtype(), "softmax", [&] {
    scalar_t* yp = y.data<scalar_t>();
    const scalar_t* xp = x.data<scalar_t>();
    if (inner == 1) {
      launch_rows("softmax", outer, C, [&](auto block, dim3 grid, dim3 threads) {
        softmax_rows_kernel<scalar_t, decltype(block)::value><<<grid, threads, 0, stream()>>>(yp, xp, outer, C, log);
        CUDA_CHECK_LAUNCH();
      });
    } else {
      softmax_inner_kernel<scalar_t><<<blocks_for(outer * inner), kThreads, 0, stream()>>>(yp, xp, outer, C, inner, log);
      CUDA_CHECK_LAUNCH();
    }
  });
}

void softmax_backward(const Tensor& dx, const Tensor& dy, const Tensor& y, int64_t outer, int64_t C,
                      int64_t inner, bool log) {
  UNIREP_DISPATCH_FLOATING(y.dtype(), "softmax_backward", [&] {
    scalar_t* dxp = dx.data<scalar_t>();
    const scalar_t* dyp = dy.data<scalar_t>();
    const scalar_t* yp = y.data<scalar_t>();
    if (inner == 1) {
      launch_rows("softmax_backward", outer, C, [&](auto block, dim3 grid, dim3 threads) {
        softmax_backward_rows_kernel<scalar_t, decltype(block)::value>
            <<<grid, threads, 0, stream()>>>(dxp, dyp, yp, outer, C, log);
        CUDA_CHECK_LAUNCH();
      });
    } else {
      softmax_backward_inner_kernel<scalar_t>
          <<<blocks_for(outer * inner), kThreads, 0, stream()>>>(dxp, dyp, yp, outer, C, inner, log);
      CUDA_CHECK_LAUNCH();
    }
  });
}

void cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& kept, const Tensor& logits,
                           const Tensor& target, int64_t ignore_index, double label_smoothing) {
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy", [&] {
    using acc = acc_t<scalar_t>;
    UNIREP_DISPATCH_INDEX(target.dtype(), "cross_entropy", [&] {
      launch_rows("cross_entropy", N, C, [&](auto block, dim3 grid, dim3 threads) {
        ce_forward_kernel<scalar_t, index_t, decltype(block)::value><<<grid, threads, 0, stream()>>>(
            loss.data<acc>(), lse.data<acc>(), kept.data<acc>(), logits.data<scalar_t>(), target.data<index_t>(), N, C,
            ignore_index, acc(1.0 - label_smoothing), acc(label_smoothing / double(C)));
        CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void cross_entropy_backward(const Tensor& dlogits, const Tensor& grad, const Tensor& divisor, const Tensor& logits,
                            const Tensor& lse, const Tensor& target, int64_t ignore_index, double label_smoothing) {
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0 || C == 0) return;
  const int64_t gs = grad_stride_of(grad, N);
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_backward", [&] {
    using acc = acc_t<scalar_t>;
    UNIREP_DISPATCH_INDEX(target.dtype(), "cross_entropy_backward", [&] {
      launch_rows("cross_entropy_backward", N, C, [&](auto block, dim3 grid, dim3 threads) {
        ce_backward_kernel<scalar_t, index_t, decltype(block)::value><<<grid, threads, 0, stream()>>>(
            dlogits.data<scalar_t>(), grad.data<scalar_t>(), gs, divisor.defined() ? divisor.data<acc>() : nullptr,
            logits.data<scalar_t>(), lse.data<acc>(), target.data<index_t>(), N, C, ignore_index,
            acc(1.0 - label_smoothing), acc(label_smoothing / double(C)));
        CUDA_CHECK_LAUNCH();
      });
    });
  });
}

void soft_cross_entropy_forward(const Tensor& loss, const Tensor& lse, const Tensor& qsum, const Tensor& logits,
                                const Tensor& q) {
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0) return;
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_soft", [&] {
    using acc = acc_t<scalar_t>;
    launch_rows("cross_entropy_soft", N, C, [&](auto block, dim3 grid, dim3 threads) {
      soft_ce_forward_kernel<scalar_t, decltype(block)::value><<<grid, threads, 0, stream()>>>(
          loss.data<acc>(), lse.data<acc>(), qsum.data<acc>(), logits.data<scalar_t>(), q.data<scalar_t>(), N, C);
      CUDA_CHECK_LAUNCH();
    });
  });
}

void soft_cross_entropy_backward(const Tensor& dlogits, const Tensor& dq, const Tensor& grad, double scale,
                                 const Tensor& logits, const Tensor& q, const Tensor& lse, const Tensor& qsum) {
  const int64_t N = logits.size(0), C = logits.size(1);
  if (N == 0 || C == 0) return;
  const int64_t gs = grad_stride_of(grad, N);
  UNIREP_DISPATCH_FLOATING(logits.dtype(), "cross_entropy_soft_backward", [&] {
    using acc = acc_t<scalar_t>;
    launch_rows("cross_entropy_soft_backward", N, C, [&](auto block, dim3 grid, dim3 threads) {
      soft_ce_backward_kernel<scalar_t, decltype(block)::value><<<grid, threads, 0, stream()>>>(
          dlogits.defined() ? dlogits.data<scalar_t>() : nullptr, dq.defined() ? dq.data<scalar_t>() : nullptr,
          grad.data<scalar_t>(), gs, acc(scale), logits.data<scalar_t>(), q.data<scalar_t>(), lse.data<acc>(),
          qsum.data<acc>(), N, C);
      CUDA_CHECK_LAUNCH();
    });
  });
}

}  // namespace unirep::cuda
