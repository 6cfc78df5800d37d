// Depthwise convolution playground (llm.c style): a CPU reference, the kernel versions tried, a
// correctness check of each against the reference on small awkward shapes, and timings at the
// UniRepLKNet-T depthwise shapes (bf16 storage, float accumulation), stride 1.
//   v1: the direct kernels conv2d.cu had before: one thread per output (forward) or input (input
//       gradient) element, every tap read from global / L1; the weight gradient a block per
//       (32 channels, tap, split) striding over positions, partials summed in a second pass.
//   v2: the first tiled version (depthwise_v2.cuh): shared-memory input tile + halo as float, 8 outputs
//       per thread along W in a register sliding window, weight gradient with per-warp kernel rows (at
//       most 8 per block) and fixed-order split partials; staging one channel per thread.
//   v3: the kernels of core/ops/depthwise_conv_kernels.cuh (the ones conv2d uses): v2 plus 4-channel
//       vector staging without integer division and with 4 loads in flight per thread, 8 or 16 outputs per
//       thread picked by the tile cost model,
//       up to 16 warps (kernel rows) per weight-gradient block so R = 13 stages each tile once.
//   v4: the v3 forward and input gradient with the weight gradient of core/ops/depthwise_conv_wgrad.cuh
//       (kernel rows x output rows register blocking, whole-image tiles for small images, one-wave
//       splits); conv2d runs it where use_v4 says so. The last table times v3 and v4 weight gradients
//       (partial and sum kernels separately) at the T shapes, with v4's plan and the max error of both
//       against a CPU double reference over sampled channels.
// Build and run:  ninja -C build playground_depthwise && ./build/playground_depthwise
// Exit status 1 when a version disagrees with the reference. Times: median of 20 runs (v1: 5) after a
// warm-up, cudaEvent; floor = bytes moved (x, y, weight once each) / 2.98 TB/s (the device-to-device copy
// bandwidth measured on the H100 in core/cuda/PERF.md). The large kernels are bound by float FMAs instead:
// 13x13 on [128,28,28,160] is 2.7 G FMA per pass, 0.08 ms at the H100's 67 TFLOP/s float peak.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/cuda/playground/common.cuh"
#include "core/cuda/playground/depthwise_v2.cuh"
#include "core/ops/depthwise_conv_kernels.cuh"
#include "core/ops/depthwise_conv_wgrad.cuh"

using unirep::bf16;
namespace dwc = unirep::cuda::dwconv;
using namespace playground;

struct Conv {
  int N, H, W, C, k, d;
  dwc::Shape shape() const {
    const int p = d * (k - 1) / 2;
    return dwc::Shape{N, H, W, C, k, k, H, W, p, p, d, d};
  }
};

// ---------------------------------------------------------------- CPU reference (double sums)

void cpu_forward(std::vector<double>& y, const std::vector<double>& x, const std::vector<double>& w,
                 const std::vector<double>* bias, const dwc::Shape& g) {
  y.assign(size_t(g.N) * g.Ho * g.Wo * g.C, 0.0);
  for (int n = 0; n < g.N; ++n)
    for (int ho = 0; ho < g.Ho; ++ho)
      for (int wo = 0; wo < g.Wo; ++wo)
        for (int c = 0; c < g.C; ++c) {
          double a = bias ? (*bias)[size_t(c)] : 0.0;
          for (int r = 0; r < g.R; ++r)
            for (int s = 0; s < g.S; ++s) {
              const int h = ho - g.ph + r * g.dh, wi = wo - g.pw + s * g.dw;
              if (h < 0 || h >= g.H || wi < 0 || wi >= g.W) continue;
              a += x[((size_t(n) * g.H + h) * g.W + wi) * g.C + c] * w[(size_t(c) * g.R + r) * g.S + s];
            }
          y[((size_t(n) * g.Ho + ho) * g.Wo + wo) * g.C + c] = a;
        }
}

// dx and dw by scattering every (output, tap) product.
void cpu_backward(std::vector<double>& dx, std::vector<double>& dw, const std::vector<double>& dy,
                  const std::vector<double>& x, const std::vector<double>& w, const dwc::Shape& g) {
  dx.assign(size_t(g.N) * g.H * g.W * g.C, 0.0);
  dw.assign(size_t(g.C) * g.R * g.S, 0.0);
  for (int n = 0; n < g.N; ++n)
    for (int ho = 0; ho < g.Ho; ++ho)
      for (int wo = 0; wo < g.Wo; ++wo)
        for (int c = 0; c < g.C; ++c) {
          const double gy = dy[((size_t(n) * g.Ho + ho) * g.Wo + wo) * g.C + c];
          for (int r = 0; r < g.R; ++r)
            for (int s = 0; s < g.S; ++s) {
              const int h = ho - g.ph + r * g.dh, wi = wo - g.pw + s * g.dw;
              if (h < 0 || h >= g.H || wi < 0 || wi >= g.W) continue;
              const size_t xi = ((size_t(n) * g.H + h) * g.W + wi) * g.C + c, wk = (size_t(c) * g.R + r) * g.S + s;
              dx[xi] += gy * w[wk];
              dw[wk] += gy * x[xi];
            }
        }
}

// ---------------------------------------------------------------- v1: direct kernels (weight as [R, S, C])

template <class T>
__global__ void v1_forward(T* y, const T* x, const T* w_rsc, const dwc::Shape g, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % g.C);
    int64_t t = i / g.C;
    const int wo = int(t % g.Wo);
    t /= g.Wo;
    const int ho = int(t % g.Ho), n = int(t / g.Ho);
    float a = 0.f;
    for (int r = 0; r < g.R; ++r) {
      const int h = ho - g.ph + r * g.dh;
      if (h < 0 || h >= g.H) continue;
      for (int s = 0; s < g.S; ++s) {
        const int wi = wo - g.pw + s * g.dw;
        if (wi < 0 || wi >= g.W) continue;
        a += float(x[((int64_t(n) * g.H + h) * g.W + wi) * g.C + c]) * float(w_rsc[(r * g.S + s) * g.C + c]);
      }
    }
    y[i] = T(a);
  }
}

template <class T>
__global__ void v1_input_grad(T* dx, const T* dy, const T* w_rsc, const dwc::Shape g, int64_t total) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % g.C);
    int64_t t = i / g.C;
    const int wi = int(t % g.W);
    t /= g.W;
    const int h = int(t % g.H), n = int(t / g.H);
    float a = 0.f;
    for (int r = 0; r < g.R; ++r) {
      const int ho = h + g.ph - r * g.dh;
      if (ho < 0 || ho >= g.Ho) continue;
      for (int s = 0; s < g.S; ++s) {
        const int wo = wi + g.pw - s * g.dw;
        if (wo < 0 || wo >= g.Wo) continue;
        a += float(dy[((int64_t(n) * g.Ho + ho) * g.Wo + wo) * g.C + c]) * float(w_rsc[(r * g.S + s) * g.C + c]);
      }
    }
    dx[i] = T(a);
  }
}

template <class T>
__global__ void v1_weight_partial(float* partial, const T* dy, const T* x, const dwc::Shape g, int64_t positions) {
  __shared__ float sh[8][32];
  const int c = blockIdx.x * 32 + threadIdx.x, tap = blockIdx.y, taps = gridDim.y;
  const int r = tap / g.S, s = tap % g.S;
  float a = 0.f;
  if (c < g.C)
    for (int64_t p = int64_t(blockIdx.z) * 8 + threadIdx.y; p < positions; p += int64_t(gridDim.z) * 8) {
      const int wo = int(p % g.Wo);
      const int64_t t = p / g.Wo;
      const int ho = int(t % g.Ho), n = int(t / g.Ho);
      const int h = ho - g.ph + r * g.dh, wi = wo - g.pw + s * g.dw;
      if (h < 0 || h >= g.H || wi < 0 || wi >= g.W) continue;
      a += float(dy[p * g.C + c]) * float(x[((int64_t(n) * g.H + h) * g.W + wi) * g.C + c]);
    }
  sh[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && c < g.C) {
    for (int k = 1; k < 8; ++k) a += sh[k][threadIdx.x];
    partial[(int64_t(blockIdx.z) * taps + tap) * g.C + c] = a;
  }
}

// ---------------------------------------------------------------- device buffers and runners

enum Pass { kForward, kInputGrad, kWeightGrad };
const char* pass_name(int p) { return p == kForward ? "fwd" : p == kInputGrad ? "dgrad" : "wgrad"; }

// Everything one version needs for one geometry: inputs, outputs and workspaces.
template <class T> struct Problem {
  dwc::Shape g;
  Buf<T> x, w, w_rsc, bias, y, dy, dx, dw;
  Buf<float> ws, partial;
  dwc::WeightPlanV3 plan;
  dwc::WeightPlanV4 plan4;
  dwconv_v2::Shape g2;
  dwconv_v2::WeightPlan plan2;
  int v1_splits;
  Problem(const dwc::Shape& s, int sms)
      : g(s), x(size_t(s.N) * s.H * s.W * s.C), w(size_t(s.C) * s.R * s.S), w_rsc(w.n), bias(size_t(s.C)),
        y(size_t(s.N) * s.Ho * s.Wo * s.C), dy(y.n), dx(x.n), dw(w.n), ws(dwc::forward_workspace(s)),
        partial(std::max({dwc::weight_plan_v3(s, sms).workspace, dwc::weight_plan_v4<T>(s, sms).workspace,
                          dwconv_v2::weight_plan(v2_shape(s), sms).workspace,
                          size_t(v1_split_count(s)) * s.R * s.S * s.C})),
        plan(dwc::weight_plan_v3(s, sms)), plan4(dwc::weight_plan_v4<T>(s, sms)), g2(v2_shape(s)), plan2(dwconv_v2::weight_plan(g2, sms)),
        v1_splits(v1_split_count(s)) {}
  static dwconv_v2::Shape v2_shape(const dwc::Shape& s) {
    return dwconv_v2::Shape{s.N, s.H, s.W, s.C, s.R, s.S, s.Ho, s.Wo, s.ph, s.pw, s.dh, s.dw};
  }
  static int v1_split_count(const dwc::Shape& s) {
    const int64_t positions = int64_t(s.N) * s.Ho * s.Wo;
    return int(std::clamp<int64_t>((positions + 8 * 64 - 1) / (8 * 64), 1, 256));
  }
};

template <class T> void run(Problem<T>& P, int version, int pass, bool with_bias) {
  const dwc::Shape& g = P.g;
  if (version == 2) {
    if (pass == kForward)
      CHECK(dwconv_v2::forward<T>(P.y.p, P.x.p, P.w.p, with_bias ? P.bias.p : nullptr, P.g2, false, P.ws.p, 0));
    else if (pass == kInputGrad)
      CHECK(dwconv_v2::input_grad<T>(P.dx.p, P.dy.p, P.w.p, P.g2, P.ws.p, 0));
    else
      CHECK(dwconv_v2::weight_grad<T>(P.dw.p, P.dy.p, P.x.p, P.g2, P.plan2, P.partial.p, 0));
    return;
  }
  if (version >= 3) {
    if (pass == kForward)
      CHECK(dwc::forward<T>(P.y.p, P.x.p, P.w.p, with_bias ? P.bias.p : nullptr, g, false, P.ws.p, 0));
    else if (pass == kInputGrad)
      CHECK(dwc::input_grad<T>(P.dx.p, P.dy.p, P.w.p, g, P.ws.p, 0));
    else {
      CHECK(version == 3 ? dwc::weight_partials_v3<T>(P.partial.p, P.dy.p, P.x.p, g, P.plan, 0)
                         : dwc::weight_partials_v4<T>(P.partial.p, P.dy.p, P.x.p, g, P.plan4, 0));
      CHECK(dwc::sum_weight_partials<T>(P.dw.p, P.partial.p, version == 3 ? P.plan.splits : P.plan4.splits, g, 0));
    }
    return;
  }
  const unsigned threads = 256;
  if (pass == kForward) {
    const int64_t total = int64_t(P.y.n);
    v1_forward<T><<<dwc::grid_1d(total), threads>>>(P.y.p, P.x.p, P.w_rsc.p, g, total);
  } else if (pass == kInputGrad) {
    const int64_t total = int64_t(P.dx.n);
    v1_input_grad<T><<<dwc::grid_1d(total), threads>>>(P.dx.p, P.dy.p, P.w_rsc.p, g, total);
  } else {
    const dim3 grid(unsigned((g.C + 31) / 32), unsigned(g.R * g.S), unsigned(P.v1_splits)), block(32, 8);
    v1_weight_partial<T><<<grid, block>>>(P.partial.p, P.dy.p, P.x.p, g, int64_t(g.N) * g.Ho * g.Wo);
    CHECK(cudaGetLastError());
    dwc::sum_weight_partials_kernel<T><<<dwc::grid_1d(int64_t(g.R) * g.S * g.C), threads>>>(
        P.dw.p, P.partial.p, P.v1_splits, g.R * g.S, g.C);
  }
  CHECK(cudaGetLastError());
}

template <class T> void fill_inputs(Problem<T>& P, std::mt19937& rng, std::vector<double>* hx, std::vector<double>* hw,
                                    std::vector<double>* hb, std::vector<double>* hdy) {
  std::normal_distribution<double> nd(0.0, 1.0);
  const dwc::Shape& g = P.g;
  auto gen = [&](size_t n, double scale) {
    std::vector<double> v(n);
    for (double& e : v) e = nd(rng) * scale;
    return v;
  };
  *hx = rounded<T>(gen(P.x.n, 1.0));
  *hw = rounded<T>(gen(P.w.n, 1.0 / g.R));
  *hb = rounded<T>(gen(P.bias.n, 1.0));
  *hdy = rounded<T>(gen(P.dy.n, 1.0));
  upload(P.x, *hx);
  upload(P.w, *hw);
  upload(P.bias, *hb);
  upload(P.dy, *hdy);
  std::vector<double> rsc(hw->size());
  for (int c = 0; c < g.C; ++c)
    for (int t = 0; t < g.R * g.S; ++t) rsc[size_t(t) * g.C + c] = (*hw)[size_t(c) * g.R * g.S + t];
  upload(P.w_rsc, rsc);
}

template <class T> void fill_device(Buf<T>& b, uint32_t seed, float scale) {
  fill_hash<T><<<dwc::grid_1d(int64_t(b.n)), 256>>>(b.p, b.n, seed, scale);
  CHECK(cudaGetLastError());
}

// ---------------------------------------------------------------- correctness

template <class T> bool check_shape(const Conv& cv, int version, double tol, const char* dtype, int sms) {
  const dwc::Shape g = cv.shape();
  if (version == 2 && !dwconv_v2::supported(Problem<T>::v2_shape(g))) return true;  // v3 only
  size_t v4_smem = 0;
  if (version == 4) dwc::choose_tile_v4(g, &v4_smem);
  if (!dwc::supported(g) || (version == 4 && !v4_smem)) {
    std::printf("  FAIL: k%d d%d on %dx%d is outside the tiled kernels' shared-memory budget\n", cv.k, cv.d, cv.H, cv.W);
    return false;
  }
  Problem<T> P(g, sms);
  std::mt19937 rng(1234u + unsigned(cv.k * 7 + cv.d));
  std::vector<double> hx, hw, hb, hdy, y_ref, dx_ref, dw_ref;
  fill_inputs(P, rng, &hx, &hw, &hb, &hdy);
  const bool bias = version >= 2;  // v1 has no fused bias
  cpu_forward(y_ref, hx, hw, bias ? &hb : nullptr, g);
  cpu_backward(dx_ref, dw_ref, hdy, hx, hw, g);
  run(P, version, kForward, bias);
  run(P, version, kInputGrad, false);
  run(P, version, kWeightGrad, false);
  CHECK(cudaDeviceSynchronize());
  const double e[3] = {rel_error(download(P.y), y_ref), rel_error(download(P.dx), dx_ref),
                       rel_error(download(P.dw), dw_ref)};
  const bool ok = e[0] <= tol && e[1] <= tol && e[2] <= tol;
  if (!ok)
    std::printf("  FAIL v%d %-5s N%d H%d W%d C%d k%d d%d: rel err fwd %.2e dgrad %.2e wgrad %.2e (tol %.0e)\n",
                version, dtype, cv.N, cv.H, cv.W, cv.C, cv.k, cv.d, e[0], e[1], e[2], tol);
  return ok;
}

// ---------------------------------------------------------------- timing

template <class T> double median_ms(Problem<T>& P, int version, int pass, int reps) {
  return median_ms_of([&] { run(P, version, pass, true); }, reps);
}

// max |dw - reference| / max |reference| over channels 0, 1, 31, 32 + C / 3 and C - 1 (the weight gradient
// of one channel at the T shapes is ~20 M multiply-adds on the host).
template <class T> double sampled_wgrad_error(const Problem<T>& P) {
  const dwc::Shape& g = P.g;
  const std::vector<double> x = download(P.x), dy = download(P.dy), dw = download(P.dw);
  double worst = 0, scale = 0;
  for (int c : {0, 1, 31, std::min(g.C - 1, 32 + g.C / 3), g.C - 1}) {
    if (c >= g.C) continue;
    for (int r = 0; r < g.R; ++r)
      for (int s = 0; s < g.S; ++s) {
        double a = 0;
        for (int n = 0; n < g.N; ++n)
          for (int ho = 0; ho < g.Ho; ++ho) {
            const int h = ho - g.ph + r * g.dh;
            if (h < 0 || h >= g.H) continue;
            for (int wo = 0; wo < g.Wo; ++wo) {
              const int wi = wo - g.pw + s * g.dw;
              if (wi < 0 || wi >= g.W) continue;
              a += dy[((size_t(n) * g.Ho + ho) * g.Wo + wo) * g.C + c] * x[((size_t(n) * g.H + h) * g.W + wi) * g.C + c];
            }
          }
        worst = std::max(worst, std::fabs(dw[(size_t(c) * g.R + r) * g.S + s] - a));
        scale = std::max(scale, std::fabs(a));
      }
  }
  return worst / std::max(scale, 1e-300);
}

std::string describe(const dwc::Shape& g, const dwc::WeightPlanV4& p) {
  const dwc::Tile& t = p.tile.t;
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %dx%d OW%d KR%d rows/item %d rb%dx%d z%d splits %d blk/SM %d smem %zuK",
                p.tile.image ? "image" : "halo", t.th, t.tw(g.dw), t.ow, dwc::v4_kernel_rows(g.S), p.tile.item_rows,
                p.tile.rb_per_group, p.tile.parts, dwc::row_block_groups(p.tile), p.splits, p.blocks_per_sm,
                p.smem / 1024);
  return buf;
}

int main() {
  const int sms = announce_device();

  // Correctness: every odd width 3..31, dilations 1..5, borders (H, W not tile multiples, smaller than
  // the kernel), C not a multiple of 32 or 8, batch 1 and 2. bf16 tolerance: one rounding of the output.
  std::vector<Conv> small;
  for (int k = 3; k <= 31; k += 2) small.push_back({2, 9 + k % 5, 11 + k % 7, 5 + k % 3, k, 1});
  for (int d = 2; d <= 5; ++d) {
    small.push_back({1, 13, 10, 40, 3, d});
    small.push_back({2, 17, 19, 33, d < 5 ? 7 : 5, d});
  }
  small.push_back({1, 3, 4, 70, 13, 1});    // image smaller than the kernel
  small.push_back({3, 7, 7, 64, 13, 1});    // stage 3 like
  small.push_back({1, 28, 28, 48, 13, 1});  // several tiles per image
  small.push_back({2, 5, 37, 9, 5, 2});     // wide and flat
  bool all_ok = true;
  for (int version = 1; version <= 4; ++version) {
    int pass = 0, total = 0;
    for (const Conv& cv : small) {
      total += 2;
      pass += check_shape<float>(cv, version, 1e-5, "f32", sms);
      pass += check_shape<bf16>(cv, version, 8e-3, "bf16", sms);
    }
    std::printf("correctness v%d: %d / %d (shape, dtype) cases pass (fwd, dgrad, wgrad vs CPU double)\n", version, pass,
                total);
    all_ok = all_ok && pass == total;
  }

  // UniRepLKNet-T: stage 0 all 3x3; stages 1-3 the 13x13 DRB (lk_origin + branches (5,1) (7,2) (3,3)
  // (3,4) (3,5)); stage 2 also 3x3 blocks.
  std::vector<Conv> tshapes = {{128, 56, 56, 80, 3, 1}};
  const int stage_dims[3][2] = {{28, 160}, {14, 320}, {7, 640}};
  const int drb[6][2] = {{13, 1}, {5, 1}, {7, 2}, {3, 3}, {3, 4}, {3, 5}};
  for (int st = 0; st < 3; ++st) {
    for (const auto& b : drb) tshapes.push_back({128, stage_dims[st][0], stage_dims[st][0], stage_dims[st][1], b[0], b[1]});
    if (st == 1) tshapes.push_back({128, 14, 14, 320, 3, 1});
  }
  const double hbm = 2.98e12;
  std::printf("\nbf16 timings (ms, median); GB/s and x-floor (time / memory floor) of v3; speed-up of v3 over v1\n");
  std::printf("%-20s %-5s %9s %9s %9s %8s %8s %8s\n", "shape k/d", "pass", "v1 ms", "v2 ms", "v3 ms", "v3 GB/s", "x-floor",
              "v1/v3");
  double lk13_total[4] = {0, 0, 0, 0}, all_total[4] = {0, 0, 0, 0};
  for (const Conv& cv : tshapes) {
    const dwc::Shape g = cv.shape();
    Problem<bf16> P(g, sms);
    fill_device(P.x, 1, 1.f);
    fill_device(P.w, 2, 1.f / g.R);
    fill_device(P.w_rsc, 3, 1.f / g.R);
    fill_device(P.bias, 4, 1.f);
    fill_device(P.dy, 5, 1.f);
    const double act = double(g.N) * g.H * g.W * g.C * 2, wbytes = double(g.C) * g.R * g.S * 2;
    for (int pass = 0; pass < 3; ++pass) {
      const double t[4] = {0, median_ms(P, 1, pass, 5),
                           dwconv_v2::supported(P.g2) ? median_ms(P, 2, pass, 20) : NAN, median_ms(P, 3, pass, 20)};
      const double bytes = 2 * act + wbytes;
      const double floor_ms = bytes / hbm * 1e3;
      char name[32];
      std::snprintf(name, sizeof name, "%dx%dx%d k%d d%d", cv.H, cv.W, cv.C, cv.k, cv.d);
      std::printf("%-20s %-5s %9.4f %9.4f %9.4f %8.0f %8.1f %8.1f\n", name, pass_name(pass), t[1], t[2], t[3],
                  bytes / t[3] * 1e-6, t[3] / floor_ms, t[1] / t[3]);
      for (int v = 1; v <= 3; ++v) {
        all_total[v] += t[v];
        if (cv.H == 28 && cv.k == 13) lk13_total[v] += t[v];
      }
    }
  }
  std::printf("\n13x13 on [128,28,28,160] bf16, fwd + dgrad + wgrad: v1 %.4f  v2 %.4f  v3 %.4f ms (target < 0.5 ms; "
              "PyTorch 10.05 ms; float FMA floor 0.24 ms)\n", lk13_total[1], lk13_total[2], lk13_total[3]);
  std::printf("all rows above, fwd + dgrad + wgrad:          v1 %.4f  v2 %.4f  v3 %.4f ms\n", all_total[1],
              all_total[2], all_total[3]);

  // Weight gradient v3 vs v4 at the T shapes: partial and sum kernels separately, v4's plan, and the max
  // error of each against the CPU reference (sampled channels).
  std::printf("\nbf16 weight gradient (ms, median of 20): v3 and v4, partial + sum kernels; err = max abs error / "
              "max |ref| over 5 channels\n");
  std::printf("%-20s %8s %8s %8s %8s %8s %8s %6s %9s %9s  %s\n", "shape k/d", "v3 part", "v3 sum", "v3 all", "v4 part",
              "v4 sum", "v4 all", "v3/v4", "err v3", "err v4", "v4 plan");
  double wg_total[2] = {0, 0};
  for (const Conv& cv : tshapes) {
    const dwc::Shape g = cv.shape();
    Problem<bf16> P(g, sms);
    fill_device(P.x, 1, 1.f);
    fill_device(P.dy, 5, 1.f);
    double t[2][3], err[2];
    for (int v = 0; v < 2; ++v) {
      const int splits = v == 0 ? P.plan.splits : P.plan4.splits;
      t[v][0] = median_ms_of([&] {
        CHECK(v == 0 ? dwc::weight_partials_v3<bf16>(P.partial.p, P.dy.p, P.x.p, g, P.plan, 0)
                     : dwc::weight_partials_v4<bf16>(P.partial.p, P.dy.p, P.x.p, g, P.plan4, 0));
      }, 20);
      t[v][1] = median_ms_of([&] { CHECK(dwc::sum_weight_partials<bf16>(P.dw.p, P.partial.p, splits, g, 0)); }, 20);
      t[v][2] = median_ms(P, v == 0 ? 3 : 4, kWeightGrad, 20);
      CHECK(cudaDeviceSynchronize());
      err[v] = sampled_wgrad_error(P);
      wg_total[v] += t[v][2];
    }
    char name[32];
    std::snprintf(name, sizeof name, "%dx%dx%d k%d d%d", cv.H, cv.W, cv.C, cv.k, cv.d);
    std::printf("%-20s %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %6.2f %9.2e %9.2e  %s\n", name, t[0][0], t[0][1], t[0][2],
                t[1][0], t[1][1], t[1][2], t[0][2] / t[1][2], err[0], err[1], describe(g, P.plan4).c_str());
    all_ok = all_ok && err[0] < 1e-2 && err[1] < 1e-2;
  }
  std::printf("weight gradients of all rows above: v3 %.4f  v4 %.4f ms\n", wg_total[0], wg_total[1]);
  std::printf("%s\n", all_ok ? "ALL CORRECTNESS CHECKS PASSED" : "CORRECTNESS FAILURES (see FAIL lines)");
  return all_ok ? 0 : 1;
}
