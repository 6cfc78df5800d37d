// Tensor-level entry points of the tiled depthwise kernels (core/ops/depthwise_conv_kernels.cuh, the weight
// gradient in core/ops/depthwise_conv_wgrad.cuh; bf16 / f16 large kernels on tensor cores,
// core/ops/depthwise_conv_tc.cuh, where it covers the geometry): geometry
// checks, dtype dispatch, workspaces from the tensor allocator, launches on the op stream.
#include <array>
#include <climits>
#include <initializer_list>
#include <map>
#include <mutex>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/ops/depthwise_conv.h"
#include "core/ops/depthwise_conv_kernels.cuh"
#include "core/ops/depthwise_conv_tc.cuh"
#include "core/ops/depthwise_conv_wgrad.cuh"

namespace unirep::cuda {

namespace {

bool fits_int(int64_t v) { return v >= INT_MIN && v <= INT_MAX; }

bool to_shape(const ConvGeometry& g, dwconv::Shape* s) {
  for (int64_t v : {g.N, g.H, g.W, g.C, g.R, g.S, g.Ho, g.Wo, g.ph, g.pw, g.dh, g.dw})
    if (!fits_int(v)) return false;
  if (!fits_int(g.N * g.H * g.W) || !fits_int(g.R * g.S * g.C)) return false;
  *s = dwconv::Shape{int(g.N), int(g.H), int(g.W), int(g.C), int(g.R), int(g.S),
                     int(g.Ho), int(g.Wo), int(g.ph), int(g.pw), int(g.dh), int(g.dw)};
  return true;
}

dwconv::Shape shape_of(const ConvGeometry& g) {
  dwconv::Shape s{};
  UNIREP_CHECK(to_shape(g, &s), "depthwise conv: geometry does not fit the tiled kernels' int indexing");
  return s;
}

template <class F> void dispatch_storage(DType dt, const F& f) {
  switch (dt) {
    case DType::Float32: f(float{}); break;
    case DType::BFloat16: f(bf16{}); break;
    case DType::Float16: f(f16{}); break;
    default: throw Error(std::string("depthwise conv: tiled kernels take float32/bfloat16/float16, got ") + dtype_name(dt));
  }
}

// bf16 / f16 only (the tensor-core kernels' storage types; use_tensor_cores checked the dtype).
template <class F> void dispatch_tensor_core(DType dt, const F& f) {
  if (dt == DType::BFloat16) f(bf16{});
  else f(f16{});
}

int sm_count() {
  int n = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, current_device()));
  return n;
}

// Weight-gradient plans per (device, geometry), one cache per call site (kernel family and storage type):
// building one asks the occupancy calculator, and a training step asks for the same few dozen every step.
template <class Build> auto cached_plan(const dwconv::Shape& s, const Build& build) {
  using Plan = decltype(build());
  static std::mutex mutex;
  static std::map<std::array<int, 13>, Plan> plans;
  const std::array<int, 13> key{current_device(), s.N, s.H, s.W, s.C, s.R, s.S, s.Ho, s.Wo, s.ph, s.pw, s.dh, s.dw};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, build()).first;
  return it->second;
}

// The tensor-core kernels take bf16 / f16, R = S odd 7..15, C % 8 == 0 and 16-byte aligned activations,
// and run where they are the faster ones (images of 14 x 14 and up).
bool use_tensor_cores(const dwconv::Shape& s, DType dtype, std::initializer_list<const Tensor*> activations) {
  if (!depthwise_tc::supported(s, dtype) || !depthwise_tc::profitable(s)) return false;
  for (const Tensor* t : activations)
    if (!depthwise_tc::aligned(t->data_ptr())) return false;
  return true;
}

Tensor float_workspace(size_t floats, Device device) {
  return Tensor::empty({int64_t(floats > 0 ? floats : 1)}, DType::Float32, device);
}

}  // namespace

size_t depthwise_smem_limit() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) {
    cudaGetLastError();
    return dwconv::kSmemMax;
  }
  return size_t(bytes);
}

bool depthwise_tiled_supported(const ConvGeometry& g, DType dtype) {
  if (!g.depthwise() || g.sh != 1 || g.sw != 1) return false;
  if (dtype != DType::Float32 && dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  dwconv::Shape s{};
  const size_t limit = depthwise_smem_limit();
  if (!to_shape(g, &s) || !dwconv::supported(s, limit)) return false;
  // The input gradient runs the forward on the mirrored geometry; it must fit too.
  return dwconv::supported(dwconv::input_grad_shape(s), limit);
}

void depthwise_tiled_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias,
                             const ConvGeometry& g) {
  const dwconv::Shape s = shape_of(g);
  if (use_tensor_cores(s, x.dtype(), {&y, &x})) {
    dispatch_tensor_core(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      CUDA_CHECK(depthwise_tc::forward<T>(y.data<T>(), x.data<T>(), w.data<T>(),
                                          bias.defined() ? bias.data<T>() : nullptr, s, false, sm_count(), stream()));
    });
    UNIREP_PROFILE_MARK();
    return;
  }
  Tensor ws = float_workspace(dwconv::forward_workspace(s), x.device());
  dispatch_storage(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    CUDA_CHECK(dwconv::forward<T>(y.data<T>(), x.data<T>(), w.data<T>(), bias.defined() ? bias.data<T>() : nullptr,
                                  s, false, ws.data<float>(), stream(), depthwise_smem_limit()));
  });
  UNIREP_PROFILE_MARK();  // the launchers report errors as codes (the playground shares them)
}

void depthwise_tiled_backward_input(const Tensor& dx, const Tensor& dy, const Tensor& w, const ConvGeometry& g) {
  const dwconv::Shape s = shape_of(g);
  if (use_tensor_cores(s, dy.dtype(), {&dx, &dy})) {
    dispatch_tensor_core(dy.dtype(), [&](auto tag) {
      using T = decltype(tag);
      CUDA_CHECK(depthwise_tc::input_grad<T>(dx.data<T>(), dy.data<T>(), w.data<T>(), s, sm_count(), stream()));
    });
    UNIREP_PROFILE_MARK();
    return;
  }
  Tensor ws = float_workspace(dwconv::forward_workspace(s), dy.device());
  dispatch_storage(dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    CUDA_CHECK(dwconv::input_grad<T>(dx.data<T>(), dy.data<T>(), w.data<T>(), s, ws.data<float>(), stream(),
                                     depthwise_smem_limit()));
  });
  UNIREP_PROFILE_MARK();
}

void depthwise_tiled_backward_weight(const Tensor& dw, const Tensor& dy, const Tensor& x, const ConvGeometry& g) {
  const dwconv::Shape s = shape_of(g);
  if (use_tensor_cores(s, dy.dtype(), {&dy, &x})) {
    dispatch_tensor_core(dy.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const depthwise_tc::WeightPlan plan =
          cached_plan(s, [&] { return depthwise_tc::weight_plan<T>(s, sm_count()); });
      Tensor ws = float_workspace(plan.workspace, dy.device());
      CUDA_CHECK(depthwise_tc::weight_grad<T>(dw.data<T>(), dy.data<T>(), x.data<T>(), s, plan, ws.data<float>(),
                                              stream()));
    });
    UNIREP_PROFILE_MARK();
    return;
  }
  dispatch_storage(dy.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const dwconv::WeightPlan plan =
        cached_plan(s, [&] { return dwconv::weight_plan<T>(s, sm_count(), depthwise_smem_limit()); });
    Tensor ws = float_workspace(plan.workspace, dy.device());
    CUDA_CHECK(dwconv::weight_grad<T>(dw.data<T>(), dy.data<T>(), x.data<T>(), s, plan, ws.data<float>(), stream()));
  });
  UNIREP_PROFILE_MARK();
}

}  // namespace unirep::cuda
