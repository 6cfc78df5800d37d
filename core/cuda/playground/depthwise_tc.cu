// Tensor-core depthwise playground (issue 7): the mma.sync kernels of core/ops/depthwise_conv_tc.cuh
// against a CPU double reference and against the CUDA-core v3 kernels conv2d runs today
// (core/ops/depthwise_conv_kernels.cuh, weight gradient through depthwise_conv_wgrad.cuh's production
// choice), then timings of both at the UniRepLKNet-T large-kernel shapes (bf16).
//   1. Small awkward shapes, bf16 and f16, every output checked against the CPU: kernel sizes 7..15,
//      images smaller than the kernel, not multiples of the 32 x 32 tile, several tiles per image
//      (224 wide), "valid" padding (the input gradient then runs with padding R - 1).
//   2. The timing shapes: forward and input gradient of images 0 and N - 1 (all channels) and the weight
//      gradient of five channels (all images) against the CPU; every output element against v3.
//   3. Times (median of 20 after a warm-up, cudaEvent) of v3 and tc per pass and their sums.
// Errors: max |a - ref| / max |ref| per tensor; bf16 / f16 outputs are rounded once, so up to 2^-8 / 2^-11
// of an element: tolerance 1e-2 (bf16) and 2e-3 (f16); v3 and tc round the same float sums.
// Build and run:  ninja -C build playground_depthwise_tc && ./build/playground_depthwise_tc
// Exit status 1 when a check fails.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/cuda/playground/common.cuh"
#include "core/ops/depthwise_conv_kernels.cuh"
#include "core/ops/depthwise_conv_tc.cuh"
#include "core/ops/depthwise_conv_wgrad.cuh"

using unirep::bf16;
using unirep::f16;
namespace dwc = unirep::cuda::dwconv;
namespace tc = unirep::cuda::depthwise_tc;
using namespace playground;

struct Conv {
  int N, H, W, C, k, pad;
  dwc::Shape shape() const {
    return dwc::Shape{N, H, W, C, k, k, H + 2 * pad - k + 1, W + 2 * pad - k + 1, pad, pad, 1, 1};
  }
  std::string name() const {
    char b[64];
    std::snprintf(b, sizeof b, "[%d,%d,%d,%d] k%d p%d", N, H, W, C, k, pad);
    return b;
  }
};

// ---------------------------------------------------------------- CPU reference (double sums)

size_t at(const dwc::Shape& g, int n, int h, int w, int H, int W, int c) {
  return ((size_t(n) * H + h) * W + w) * g.C + c;
}

// y of image n (all channels).
std::vector<double> ref_forward(const std::vector<double>& x, const std::vector<double>& w,
                                const std::vector<double>* b, const dwc::Shape& g, int n) {
  std::vector<double> y(size_t(g.Ho) * g.Wo * g.C);
  for (int ho = 0; ho < g.Ho; ++ho)
    for (int wo = 0; wo < g.Wo; ++wo)
      for (int c = 0; c < g.C; ++c) {
        double a = b ? (*b)[size_t(c)] : 0.0;
        for (int r = 0; r < g.R; ++r) {
          const int h = ho - g.ph + r;
          if (h < 0 || h >= g.H) continue;
          for (int s = 0; s < g.S; ++s) {
            const int wi = wo - g.pw + s;
            if (wi >= 0 && wi < g.W) a += x[at(g, n, h, wi, g.H, g.W, c)] * w[(size_t(c) * g.R + r) * g.S + s];
          }
        }
        y[(size_t(ho) * g.Wo + wo) * g.C + c] = a;
      }
  return y;
}

// dx of image n (all channels): dx[h, w] = sum_{r, s} dy[h + ph - r, w + pw - s] W[r, s].
std::vector<double> ref_input_grad(const std::vector<double>& dy, const std::vector<double>& w, const dwc::Shape& g,
                                   int n) {
  std::vector<double> dx(size_t(g.H) * g.W * g.C);
  for (int h = 0; h < g.H; ++h)
    for (int wi = 0; wi < g.W; ++wi)
      for (int c = 0; c < g.C; ++c) {
        double a = 0;
        for (int r = 0; r < g.R; ++r) {
          const int ho = h + g.ph - r;
          if (ho < 0 || ho >= g.Ho) continue;
          for (int s = 0; s < g.S; ++s) {
            const int wo = wi + g.pw - s;
            if (wo >= 0 && wo < g.Wo) a += dy[at(g, n, ho, wo, g.Ho, g.Wo, c)] * w[(size_t(c) * g.R + r) * g.S + s];
          }
        }
        dx[(size_t(h) * g.W + wi) * g.C + c] = a;
      }
  return dx;
}

// dw[c, r, s] of channel c over all images.
std::vector<double> ref_weight_grad(const std::vector<double>& dy, const std::vector<double>& x, const dwc::Shape& g,
                                    int c) {
  std::vector<double> dw(size_t(g.R) * g.S, 0.0);
  for (int n = 0; n < g.N; ++n)
    for (int ho = 0; ho < g.Ho; ++ho)
      for (int wo = 0; wo < g.Wo; ++wo) {
        const double d = dy[at(g, n, ho, wo, g.Ho, g.Wo, c)];
        for (int r = 0; r < g.R; ++r) {
          const int h = ho - g.ph + r;
          if (h < 0 || h >= g.H) continue;
          for (int s = 0; s < g.S; ++s) {
            const int wi = wo - g.pw + s;
            if (wi >= 0 && wi < g.W) dw[size_t(r) * g.S + s] += d * x[at(g, n, h, wi, g.H, g.W, c)];
          }
        }
      }
  return dw;
}

// ---------------------------------------------------------------- errors

struct Err {
  double worst = 0, scale = 0;
  void add(double a, double ref) {
    worst = std::max(worst, std::fabs(a - ref));
    scale = std::max(scale, std::fabs(ref));
  }
  double rel() const { return worst / std::max(scale, 1e-300); }
};

// ---------------------------------------------------------------- one geometry on the device

template <class T> struct Problem {
  dwc::Shape g;
  Buf<T> x, w, bias, dy, y, dx, dw, y3, dx3, dw3;
  dwc::WeightPlan plan3;
  tc::WeightPlan plan;
  Buf<float> ws3, ws_fwd, ws;
  Problem(const dwc::Shape& s, int sms)
      : g(s), x(size_t(s.N) * s.H * s.W * s.C), w(size_t(s.C) * s.R * s.S), bias(size_t(s.C)),
        dy(size_t(s.N) * s.Ho * s.Wo * s.C), y(dy.n), dx(x.n), dw(w.n), y3(dy.n), dx3(x.n), dw3(w.n),
        plan3(dwc::weight_plan<T>(s, sms)), plan(tc::weight_plan<T>(s, sms)), ws3(plan3.workspace),
        ws_fwd(dwc::forward_workspace(s)), ws(plan.workspace) {}
};

template <class T> void run_tc(Problem<T>& P, int pass, int sms) {
  if (pass == 0) CHECK(tc::forward<T>(P.y.p, P.x.p, P.w.p, P.bias.p, P.g, false, sms, 0));
  else if (pass == 1) CHECK(tc::input_grad<T>(P.dx.p, P.dy.p, P.w.p, P.g, sms, 0));
  else CHECK(tc::weight_grad<T>(P.dw.p, P.dy.p, P.x.p, P.g, P.plan, P.ws.p, 0));
}

template <class T> void run_v3(Problem<T>& P, int pass) {
  if (pass == 0) CHECK(dwc::forward<T>(P.y3.p, P.x.p, P.w.p, P.bias.p, P.g, false, P.ws_fwd.p, 0));
  else if (pass == 1) CHECK(dwc::input_grad<T>(P.dx3.p, P.dy.p, P.w.p, P.g, P.ws_fwd.p, 0));
  else CHECK(dwc::weight_grad<T>(P.dw3.p, P.dy.p, P.x.p, P.g, P.plan3, P.ws3.p, 0));
}

template <class T> void fill_device(Buf<T>& b, uint32_t seed, float scale) {
  fill_hash<T><<<dwc::grid_1d(int64_t(b.n)), 256>>>(b.p, b.n, seed, scale);
  CHECK(cudaGetLastError());
}

const char* kPass[3] = {"fwd", "dgrad", "wgrad"};

// Every pass of both kernels once, then: tc vs CPU on the sampled images / channels (all when full),
// tc vs v3 everywhere. Returns whether all errors are within tol.
template <class T> bool check(Problem<T>& P, int sms, bool full, double tol, const char* label) {
  const dwc::Shape& g = P.g;
  for (int pass = 0; pass < 3; ++pass) {
    run_tc(P, pass, sms);
    run_v3(P, pass);
  }
  CHECK(cudaDeviceSynchronize());
  const std::vector<double> x = download(P.x), w = download(P.w), b = download(P.bias), dy = download(P.dy);
  const std::vector<double> y = download(P.y), dx = download(P.dx), dw = download(P.dw);
  Err cpu[3], v3[3];
  std::vector<int> images, channels;
  for (int n = 0; n < g.N; ++n)
    if (full || n == 0 || n == g.N - 1) images.push_back(n);
  for (int c = 0; c < g.C; ++c)
    if (full || c == 0 || c == 7 || c == 8 || c == g.C / 2 + 3 || c == g.C - 1) channels.push_back(c);
  for (int n : images) {
    const std::vector<double> yr = ref_forward(x, w, &b, g, n), dxr = ref_input_grad(dy, w, g, n);
    for (size_t i = 0; i < yr.size(); ++i) cpu[0].add(y[size_t(n) * yr.size() + i], yr[i]);
    for (size_t i = 0; i < dxr.size(); ++i) cpu[1].add(dx[size_t(n) * dxr.size() + i], dxr[i]);
  }
  for (int c : channels) {
    const std::vector<double> dwr = ref_weight_grad(dy, x, g, c);
    for (size_t i = 0; i < dwr.size(); ++i) cpu[2].add(dw[size_t(c) * dwr.size() + i], dwr[i]);
  }
  const std::vector<double> y3 = download(P.y3), dx3 = download(P.dx3), dw3 = download(P.dw3);
  for (size_t i = 0; i < y.size(); ++i) v3[0].add(y[i], y3[i]);
  for (size_t i = 0; i < dx.size(); ++i) v3[1].add(dx[i], dx3[i]);
  for (size_t i = 0; i < dw.size(); ++i) v3[2].add(dw[i], dw3[i]);
  bool ok = true;
  for (int p = 0; p < 3; ++p) ok = ok && cpu[p].rel() <= tol && v3[p].rel() <= tol;
  std::printf("%-5s %-26s %s", label, ("[" + std::to_string(g.N) + "," + std::to_string(g.H) + "," +
                                       std::to_string(g.W) + "," + std::to_string(g.C) + "] k" + std::to_string(g.R) +
                                       " p" + std::to_string(g.ph)).c_str(), ok ? "ok  " : "FAIL");
  for (int p = 0; p < 3; ++p)
    std::printf("  %s cpu %.1e/%.1e v3 %.1e", kPass[p], cpu[p].worst, cpu[p].rel(), v3[p].rel());
  std::printf("\n");
  return ok;
}

template <class T> bool check_small(const Conv& cv, int sms, double tol, const char* label, unsigned seed) {
  const dwc::Shape g = cv.shape();
  if (!tc::supported(g, std::is_same<T, bf16>::value ? unirep::DType::BFloat16 : unirep::DType::Float16)) {
    std::printf("FAIL %s: not supported by the tensor-core kernels\n", cv.name().c_str());
    return false;
  }
  Problem<T> P(g, sms);
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto gen = [&](Buf<T>& b, double scale) {
    std::vector<double> v(b.n);
    for (double& e : v) e = nd(rng) * scale;
    upload(b, rounded<T>(v));
  };
  gen(P.x, 1.0);
  gen(P.w, 1.0 / g.R);
  gen(P.bias, 1.0);
  gen(P.dy, 1.0);
  return check(P, sms, true, tol, label);
}

int main() {
  const int sms = announce_device();
  std::printf("errors per pass: cpu max-abs/(max-abs/max|ref|), v3 max-abs/max|v3|\n");

  bool all_ok = true;
  const std::vector<Conv> small = {
      {2, 9, 11, 8, 13, 6},  {1, 7, 7, 16, 13, 6},   {2, 28, 28, 16, 13, 6}, {2, 28, 28, 16, 7, 3},
      {1, 30, 37, 24, 9, 4}, {1, 40, 70, 8, 15, 7},  {3, 14, 14, 8, 11, 5},  {1, 20, 24, 8, 13, 0},
      {1, 3, 5, 8, 7, 3},    {1, 224, 224, 8, 7, 3}, {1, 56, 56, 16, 13, 6},
  };
  unsigned seed = 1;
  for (const Conv& cv : small) {
    all_ok = check_small<bf16>(cv, sms, 1e-2, "bf16", seed++) && all_ok;
    all_ok = check_small<f16>(cv, sms, 2e-3, "f16", seed++) && all_ok;
  }

  const std::vector<Conv> shapes = {{128, 28, 28, 160, 13, 6}, {128, 14, 14, 320, 13, 6}, {128, 7, 7, 640, 13, 6},
                                    {128, 28, 28, 160, 7, 3},  {128, 56, 56, 80, 13, 6}};
  std::printf("\ntiming shapes (bf16): images 0 and N-1 and channels 0, 7, 8, C/2+3, C-1 vs CPU; all vs v3\n");
  std::vector<std::vector<double>> times;
  for (const Conv& cv : shapes) {
    const dwc::Shape g = cv.shape();
    Problem<bf16> P(g, sms);
    fill_device(P.x, 1, 1.f);
    fill_device(P.w, 2, 1.f / g.R);
    fill_device(P.bias, 3, 1.f);
    fill_device(P.dy, 4, 1.f);
    all_ok = check(P, sms, false, 1e-2, "bf16") && all_ok;
    std::printf("      tc weight-gradient plan: %d splits (%d blocks of 8 channels), %d blocks per SM\n", P.plan.splits,
                P.plan.splits * g.C / tc::kChannels, P.plan.blocks_per_sm);
    std::vector<double> t(6);
    for (int pass = 0; pass < 3; ++pass) {
      t[pass] = median_ms_of([&] { run_v3(P, pass); }, 20);
      t[3 + pass] = median_ms_of([&] { run_tc(P, pass, sms); }, 20);
    }
    times.push_back(t);
  }

  std::printf("\nbf16 times (ms, median of 20); target for 13x13 [128,28,28,160]: tc sum < 0.50 ms\n");
  std::printf("%-26s %8s %8s %8s %8s | %8s %8s %8s %8s | %6s\n", "shape", "v3 fwd", "v3 dgrad", "v3 wgrad", "v3 sum",
              "tc fwd", "tc dgrad", "tc wgrad", "tc sum", "v3/tc");
  for (size_t i = 0; i < shapes.size(); ++i) {
    const std::vector<double>& t = times[i];
    const double s3 = t[0] + t[1] + t[2], stc = t[3] + t[4] + t[5];
    std::printf("%-26s %8.4f %8.4f %8.4f %8.4f | %8.4f %8.4f %8.4f %8.4f | %6.2f\n", shapes[i].name().c_str(), t[0],
                t[1], t[2], s3, t[3], t[4], t[5], stc, s3 / stc);
  }
  std::printf("%s\n", all_ok ? "ALL CORRECTNESS CHECKS PASSED" : "CORRECTNESS FAILURES (see FAIL lines)");
  return all_ok ? 0 : 1;
}
