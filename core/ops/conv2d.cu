// CUDA convolution (see core/ops/conv2d.h for the math and the layouts).
//   depthwise, stride 1, odd kernel widths 3..31, float32/bf16/f16: the tiled kernels of
//     core/ops/depthwise_conv.h (shared-memory tiles, register sliding windows).
//   other depthwise (stride 2, even widths, float64): direct kernels, one thread per output (forward) or input (input gradient) element with
//     the channel fastest, so a warp reads 32 consecutive channels of x, dy and the [R, S, C] weight.
//     The weight gradient runs a block per (channel tile of 32, tap (r, s), split of the N Ho Wo
//     positions): 8 rows of threads stride over the split's positions, a shared-memory sum combines
//     them, and a second kernel adds the per-split partials in a fixed order (no atomics).
//   dense / grouped: cuDNN (legacy convolution API) with NHWC tensors and an NHWC filter, the algorithm
//     chosen once per shape with the v7 heuristics and cached; float32/float64 run FMA math only (no
//     TF32), bf16/f16 tensor-op math with float accumulation.
//   bias: added by a small kernel after cuDNN (fused into the depthwise forward); its gradient is a
//     column sum over the N Ho Wo rows of dy, split into per-block partials like the depthwise dW.
#include <algorithm>
#include <array>
#include <climits>
#include <map>
#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/cuda/cudnn.h"
#include "core/ops/conv2d.h"
#include "core/ops/depthwise_conv.h"
#include "core/ops/elementwise.h"

namespace unirep::cuda {

namespace {

// ---------------------------------------------------------------- depthwise kernels

template <class T>
__global__ void depthwise_forward_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ w,
                                         const T* __restrict__ bias, ConvGeometry g, int64_t total) {
  using acc = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % g.C;
    int64_t t = i / g.C;
    const int64_t wo = t % g.Wo;
    t /= g.Wo;
    const int64_t ho = t % g.Ho, n = t / g.Ho;
    acc a = bias ? static_cast<acc>(bias[c]) : acc(0);
    const int64_t h0 = ho * g.sh - g.ph, w0 = wo * g.sw - g.pw;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = h0 + r * g.dh;
      if (h < 0 || h >= g.H) continue;
      const T* xrow = x + (n * g.H + h) * g.W * g.C + c;
      const T* wrow = w + r * g.S * g.C + c;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t wi = w0 + s * g.dw;
        if (wi < 0 || wi >= g.W) continue;
        a += static_cast<acc>(xrow[wi * g.C]) * static_cast<acc>(wrow[s * g.C]);
      }
    }
    y[i] = static_cast<T>(a);
  }
}

// dx[n, h, w, c]: a gather over the taps whose output position reads (h, w).
template <class T>
__global__ void depthwise_backward_input_kernel(T* __restrict__ dx, const T* __restrict__ dy,
                                                const T* __restrict__ w, ConvGeometry g, int64_t total) {
  using acc = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = i % g.C;
    int64_t t = i / g.C;
    const int64_t wi = t % g.W;
    t /= g.W;
    const int64_t h = t % g.H, n = t / g.H;
    acc a = 0;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t th = h + g.ph - r * g.dh;
      if (th < 0) break;  // only decreases with r
      if (th % g.sh) continue;
      const int64_t ho = th / g.sh;
      if (ho >= g.Ho) continue;
      const T* grow = dy + (n * g.Ho + ho) * g.Wo * g.C + c;
      const T* wrow = w + r * g.S * g.C + c;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t tw = wi + g.pw - s * g.dw;
        if (tw < 0) break;
        if (tw % g.sw) continue;
        const int64_t wo = tw / g.sw;
        if (wo >= g.Wo) continue;
        a += static_cast<acc>(grow[wo * g.C]) * static_cast<acc>(wrow[s * g.C]);
      }
    }
    dx[i] = static_cast<T>(a);
  }
}

constexpr int kTileC = 32;  // channels per block (threadIdx.x)
constexpr int kRowsY = 8;   // position lanes per block (threadIdx.y)

// partial[(split, tap, c)] = sum over the split's positions p = (n, ho, wo) of dy[p, c] x[n, h, w, c],
// with blockIdx = (channel tile, tap r S + s, split). x == nullptr: the bias gradient (taps = 1).
template <class T>
__global__ void channel_reduce_partial_kernel(acc_t<T>* __restrict__ partial, const T* __restrict__ dy,
                                              const T* __restrict__ x, ConvGeometry g, int64_t positions) {
  using acc = acc_t<T>;
  __shared__ acc shared[kRowsY][kTileC];
  const int64_t c = int64_t(blockIdx.x) * kTileC + threadIdx.x;
  const int64_t tap = blockIdx.y, taps = gridDim.y;
  const int64_t C = x ? g.C : g.K;
  acc a = 0;
  if (c < C) {
    const int64_t step = int64_t(gridDim.z) * kRowsY;
    if (x) {
      const int64_t r = tap / g.S, s = tap % g.S;
      const int64_t hoff = r * g.dh - g.ph, woff = s * g.dw - g.pw;
      for (int64_t p = int64_t(blockIdx.z) * kRowsY + threadIdx.y; p < positions; p += step) {
        const int64_t wo = p % g.Wo, t = p / g.Wo;
        const int64_t ho = t % g.Ho, n = t / g.Ho;
        const int64_t h = ho * g.sh + hoff, wi = wo * g.sw + woff;
        if (h < 0 || h >= g.H || wi < 0 || wi >= g.W) continue;
        a += static_cast<acc>(dy[p * C + c]) * static_cast<acc>(x[((n * g.H + h) * g.W + wi) * C + c]);
      }
    } else {
      for (int64_t p = int64_t(blockIdx.z) * kRowsY + threadIdx.y; p < positions; p += step)
        a += static_cast<acc>(dy[p * C + c]);
    }
  }
  shared[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    for (int k = 1; k < kRowsY; ++k) a += shared[k][threadIdx.x];
    partial[(int64_t(blockIdx.z) * taps + tap) * C + c] = a;
  }
}

// out[c * taps + tap] = sum over splits of partial[(split, tap, c)] (the [C, 1, R, S] layout of dW; [C] for db).
template <class T>
__global__ void sum_partials_kernel(T* __restrict__ out, const acc_t<T>* __restrict__ partial, int64_t splits,
                                    int64_t taps, int64_t C) {
  using acc = acc_t<T>;
  const int64_t total = taps * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t tap = i / C, c = i % C;
    acc a = 0;
    for (int64_t z = 0; z < splits; ++z) a += partial[z * total + i];
    out[c * taps + tap] = static_cast<T>(a);
  }
}

unsigned grid_for(int64_t n) { return std::min<unsigned>(blocks_for(n), 65535u * 32u); }

// Reduction over `positions` rows for every (tap, channel), written as [C, taps] into out.
void channel_reduce(const Tensor& out, const Tensor& dy, const Tensor& x, const ConvGeometry& g, int64_t taps,
                    int64_t C, int64_t positions) {
  const int64_t tiles = (C + kTileC - 1) / kTileC;
  // Enough splits that each thread row sums ~64 positions, at most 256 (gridDim.z <= 65535).
  const int64_t splits = std::clamp<int64_t>((positions + kRowsY * 64 - 1) / (kRowsY * 64), 1, 256);
  UNIREP_CHECK(tiles < INT_MAX && taps <= 65535, "conv2d: reduction grid too large (", tiles, " x ", taps, ")");
  const DType acc_dtype = out.dtype() == DType::Float64 ? DType::Float64 : DType::Float32;
  Tensor partial = Tensor::empty({splits * taps * C}, acc_dtype, out.device());
  const dim3 grid{unsigned(tiles), unsigned(taps), unsigned(splits)}, block{unsigned(kTileC), unsigned(kRowsY), 1u};
  UNIREP_DISPATCH_FLOATING(out.dtype(), "conv2d backward", [&] {
    channel_reduce_partial_kernel<scalar_t><<<grid, block, 0, stream()>>>(
        partial.data<acc_t<scalar_t>>(), dy.data<scalar_t>(), x.defined() ? x.data<scalar_t>() : nullptr, g,
        positions);
    CUDA_CHECK_LAUNCH();
    sum_partials_kernel<scalar_t><<<grid_for(taps * C), kThreads, 0, stream()>>>(
        out.data<scalar_t>(), partial.data<acc_t<scalar_t>>(), splits, taps, C);
    CUDA_CHECK_LAUNCH();
  });
}

// The depthwise weight [C, 1, R, S] transposed to [R, S, C].
Tensor weight_rsc(const Tensor& w, const ConvGeometry& g) { return w.view({g.C, g.R * g.S}).transpose(0, 1).contiguous(); }

// ---------------------------------------------------------------- cuDNN

cudnnDataType_t cudnn_dtype(DType d) {
  switch (d) {
    case DType::Float32: return CUDNN_DATA_FLOAT;
    case DType::Float64: return CUDNN_DATA_DOUBLE;
    case DType::BFloat16: return CUDNN_DATA_BFLOAT16;
    case DType::Float16: return CUDNN_DATA_HALF;
    default: throw Error(std::string("conv2d: cuDNN path needs a floating dtype, got ") + dtype_name(d));
  }
}

bool is_half(DType d) { return d == DType::BFloat16 || d == DType::Float16; }

int to_int(int64_t v, const char* what) {
  UNIREP_CHECK(v >= 0 && v < INT_MAX, "conv2d: ", what, " = ", v, " does not fit cuDNN's int arguments");
  return int(v);
}

// Descriptors of one convolution: x [N, H, W, C], y [N, Ho, Wo, K] and the filter [K, R, S, C/groups].
struct CudnnConv {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  DType dtype;

  CudnnConv(const ConvGeometry& g, DType dt) : dtype(dt) {
    const cudnnDataType_t t = cudnn_dtype(dt);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&w));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, t, to_int(g.N, "N"), to_int(g.C, "C_in"),
                                           to_int(g.H, "H"), to_int(g.W, "W")));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, t, to_int(g.N, "N"), to_int(g.K, "C_out"),
                                           to_int(g.Ho, "H_out"), to_int(g.Wo, "W_out")));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, t, CUDNN_TENSOR_NHWC, to_int(g.K, "C_out"),
                                           to_int(g.C / g.groups, "C_in / groups"), to_int(g.R, "kH"),
                                           to_int(g.S, "kW")));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        conv, to_int(g.ph, "pad_h"), to_int(g.pw, "pad_w"), to_int(g.sh, "stride_h"), to_int(g.sw, "stride_w"),
        to_int(g.dh, "dilation_h"), to_int(g.dw, "dilation_w"), CUDNN_CROSS_CORRELATION,
        dt == DType::Float64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, to_int(g.groups, "groups")));
    // CUDNN_DEFAULT_MATH would let cuDNN run float32 on TF32 tensor cores (sm80+); FMA math forbids it.
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv, is_half(dt) ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));
  }
  ~CudnnConv() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
  CudnnConv(const CudnnConv&) = delete;
  CudnnConv& operator=(const CudnnConv&) = delete;

  // The math type the chosen algorithm runs with (half types may pick a non-tensor-op algorithm).
  void set_math(cudnnMathType_t m) {
    if (is_half(dtype)) CUDNN_CHECK(cudnnSetConvolutionMathType(conv, m));
  }
};

enum class Pass : int64_t { Forward, BackwardData, BackwardFilter };

struct AlgoChoice {
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

using AlgoKey = std::array<int64_t, 19>;
std::mutex g_algo_mutex;
// Usable algorithms per shape, best first; the first one that ran is moved to the front.
std::map<AlgoKey, std::vector<AlgoChoice>> g_algo_cache;

AlgoKey algo_key(const ConvGeometry& g, DType dt, Pass pass) {
  return {g.N, g.H, g.W, g.C, g.K, g.R, g.S, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups,
          int64_t(dt), int64_t(pass), int64_t(current_device()), g.Ho, g.Wo};
}

// The heuristic results, in cuDNN's order, that can run, are no TF32 (tensor-op) choice for
// float32/float64, and whose workspace size cuDNN reports.
template <class Perf, class WsFn>
std::vector<AlgoChoice> usable(const std::vector<Perf>& perf, int count, DType dt, const WsFn& workspace_of) {
  std::vector<AlgoChoice> out;
  for (int i = 0; i < count; ++i) {
    const Perf& p = perf[size_t(i)];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    if (!is_half(dt) && (p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
      continue;
    size_t ws = 0;
    if (workspace_of(p.algo, &ws) != CUDNN_STATUS_SUCCESS) continue;
    out.push_back(AlgoChoice{int(p.algo), ws, p.mathType});
  }
  return out;
}

std::vector<AlgoChoice> candidates(cudnnHandle_t h, CudnnConv& d, const ConvGeometry& g, Pass pass) {
  const AlgoKey key = algo_key(g, d.dtype, pass);
  {
    std::lock_guard<std::mutex> lock(g_algo_mutex);
    auto it = g_algo_cache.find(key);
    if (it != g_algo_cache.end()) return it->second;
  }
  std::vector<AlgoChoice> c;
  int max_count = 0, count = 0;
  if (pass == Pass::Forward) {
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, max_count, &count, perf.data()));
    c = usable(perf, count, d.dtype, [&](cudnnConvolutionFwdAlgo_t a, size_t* ws) {
      return cudnnGetConvolutionForwardWorkspaceSize(h, d.x, d.w, d.conv, d.y, a, ws);
    });
  } else if (pass == Pass::BackwardData) {
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x, max_count, &count, perf.data()));
    c = usable(perf, count, d.dtype, [&](cudnnConvolutionBwdDataAlgo_t a, size_t* ws) {
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h, d.w, d.y, d.conv, d.x, a, ws);
    });
  } else {
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
    CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w, max_count, &count, perf.data()));
    c = usable(perf, count, d.dtype, [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* ws) {
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d.x, d.y, d.conv, d.w, a, ws);
    });
  }
  std::lock_guard<std::mutex> lock(g_algo_mutex);
  g_algo_cache[key] = c;
  return c;
}

const char* pass_name(Pass p) {
  return p == Pass::Forward ? "forward" : p == Pass::BackwardData ? "backward-data" : "backward-filter";
}

std::string geometry_str(const ConvGeometry& g, DType dt) {
  return detail::concat("x [", g.N, ", ", g.H, ", ", g.W, ", ", g.C, "], weight [", g.K, ", ", g.C / g.groups, ", ",
                        g.R, ", ", g.S, "], stride [", g.sh, ", ", g.sw, "], padding [", g.ph, ", ", g.pw,
                        "], dilation [", g.dh, ", ", g.dw, "], groups ", g.groups, ", ", dtype_name(dt));
}

// Runs `exec(choice, workspace)` with the cached candidates in order until one is supported at run
// time (the heuristics can be optimistic); remembers the one that ran.
template <class Exec> void run_cudnn(const ConvGeometry& g, DType dt, Pass pass, Device device, const Exec& exec) {
  cudnnHandle_t h = cudnn_handle();
  CudnnConv d(g, dt);
  const std::vector<AlgoChoice> cands = candidates(h, d, g, pass);
  for (size_t i = 0; i < cands.size(); ++i) {
    const AlgoChoice& c = cands[i];
    d.set_math(c.math);
    Tensor ws = Tensor::empty({int64_t(std::max<size_t>(c.workspace, 1))}, DType::UInt8, device);
    const cudnnStatus_t st = exec(h, d, c, ws.data_ptr());
    if (st == CUDNN_STATUS_SUCCESS) {
      UNIREP_PROFILE_MARK();
      if (i > 0) {
        std::lock_guard<std::mutex> lock(g_algo_mutex);
        std::vector<AlgoChoice>& cached = g_algo_cache[algo_key(g, dt, pass)];
        cached.assign(cands.begin() + int64_t(i), cands.end());
      }
      return;
    }
    if (st != CUDNN_STATUS_NOT_SUPPORTED) CUDNN_CHECK(st);
  }
  throw Error(detail::concat("conv2d: cuDNN offers no ", pass_name(pass), " algorithm for ", geometry_str(g, dt)));
}

// alpha = 1, beta = 0 in the scaling type cuDNN expects (double for double data, float otherwise).
struct Scale {
  float f1 = 1.f, f0 = 0.f;
  double d1 = 1.0, d0 = 0.0;
  bool dbl;
  explicit Scale(DType dt) : dbl(dt == DType::Float64) {}
  const void* one() const { return dbl ? static_cast<const void*>(&d1) : static_cast<const void*>(&f1); }
  const void* zero() const { return dbl ? static_cast<const void*>(&d0) : static_cast<const void*>(&f0); }
};

// The weight [K, C/groups, R, S] in cuDNN's NHWC filter layout [K, R, S, C/groups].
Tensor weight_krsc(const Tensor& w) { return w.permute({0, 2, 3, 1}).contiguous(); }

void cudnn_forward(const Tensor& y, const Tensor& x, const Tensor& w, const ConvGeometry& g) {
  const Tensor wk = weight_krsc(w);
  const Scale sc(x.dtype());
  run_cudnn(g, x.dtype(), Pass::Forward, x.device(),
            [&](cudnnHandle_t h, const CudnnConv& d, const AlgoChoice& c, void* ws) {
              return cudnnConvolutionForward(h, sc.one(), d.x, x.data_ptr(), d.w, wk.data_ptr(), d.conv,
                                             cudnnConvolutionFwdAlgo_t(c.algo), ws, c.workspace, sc.zero(), d.y,
                                             y.data_ptr());
            });
}

void cudnn_backward_data(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g) {
  const Tensor wk = weight_krsc(w);
  const Scale sc(dy.dtype());
  run_cudnn(g, dy.dtype(), Pass::BackwardData, dy.device(),
            [&](cudnnHandle_t h, const CudnnConv& d, const AlgoChoice& c, void* ws) {
              return cudnnConvolutionBackwardData(h, sc.one(), d.w, wk.data_ptr(), d.y, dy.data_ptr(), d.conv,
                                                  cudnnConvolutionBwdDataAlgo_t(c.algo), ws, c.workspace, sc.zero(),
                                                  d.x, dx.data_ptr());
            });
}

void cudnn_backward_filter(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g) {
  const Tensor dwk = Tensor::empty({g.K, g.R, g.S, g.C / g.groups}, dw.dtype(), dw.device());
  const Scale sc(dy.dtype());
  run_cudnn(g, dy.dtype(), Pass::BackwardFilter, dy.device(),
            [&](cudnnHandle_t h, const CudnnConv& d, const AlgoChoice& c, void* ws) {
              return cudnnConvolutionBackwardFilter(h, sc.one(), d.x, x.data_ptr(), d.y, dy.data_ptr(), d.conv,
                                                    cudnnConvolutionBwdFilterAlgo_t(c.algo), ws, c.workspace,
                                                    sc.zero(), d.w, dwk.data_ptr());
            });
  Tensor(dw).copy_(dwk.permute({0, 3, 1, 2}));
}

// y += bias over the last dim, in place, through the vectorised NHWC-broadcast loop.
void add_bias(const Tensor& y, const Tensor& bias) {
  cuda::elementwise(y, ew::Add{}, y, bias.detach().expand(y.shape()));
}

}  // namespace

void conv2d_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, const ConvGeometry& g) {
  if (depthwise_tiled_supported(g, x.dtype())) {
    depthwise_tiled_forward(y, x, w, bias, g);
    return;
  }
  if (g.depthwise()) {
    Tensor wt = weight_rsc(w, g);
    const int64_t total = y.numel();
    UNIREP_DISPATCH_FLOATING(x.dtype(), "conv2d", [&] {
      depthwise_forward_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream()>>>(
          y.data<scalar_t>(), x.data<scalar_t>(), wt.data<scalar_t>(),
          bias.defined() ? bias.data<scalar_t>() : nullptr, g, total);
      CUDA_CHECK_LAUNCH();
    });
    return;
  }
  cudnn_forward(y, x, w, g);
  if (bias.defined()) add_bias(y, bias);
}

void conv2d_backward_input(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g) {
  if (depthwise_tiled_supported(g, dy.dtype())) {
    depthwise_tiled_backward_input(dx, dy, w, g);
    return;
  }
  if (g.depthwise()) {
    Tensor wt = weight_rsc(w, g);
    const int64_t total = dx.numel();
    UNIREP_DISPATCH_FLOATING(dy.dtype(), "conv2d backward", [&] {
      depthwise_backward_input_kernel<scalar_t><<<grid_for(total), kThreads, 0, stream()>>>(
          dx.data<scalar_t>(), dy.data<scalar_t>(), wt.data<scalar_t>(), g, total);
      CUDA_CHECK_LAUNCH();
    });
    return;
  }
  cudnn_backward_data(dx, dy, w, g);
}

void conv2d_backward_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g) {
  if (depthwise_tiled_supported(g, dy.dtype())) {
    depthwise_tiled_backward_weight(dw, dy, x, g);
    return;
  }
  if (g.depthwise()) {
    channel_reduce(dw, dy, x, g, g.R * g.S, g.C, g.N * g.Ho * g.Wo);
    return;
  }
  cudnn_backward_filter(dw, dy, x, g);
}

void conv2d_backward_bias(const Tensor& db, const Tensor& dy) {
  const int64_t K = db.numel();
  ConvGeometry g;
  g.K = K;
  channel_reduce(db, dy, Tensor(), g, 1, K, dy.numel() / K);
}

}  // namespace unirep::cuda
