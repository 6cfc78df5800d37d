// Dilated Reparam Block playground: the six depthwise convs of a K = 13 block (13x13 d1, 5x5 d1, 7x7 d2,
// 3x3 d3, 3x3 d4, 3x3 d5, all on the same x, "same" padding, no bias) run
//   separate: what conv2d did per branch: six tiled forwards (core/ops/depthwise_conv_kernels.cuh), and for
//             the input gradient six tiled input gradients plus the five adds the autograd engine does;
//   fused:    the kernels of core/ops/dilated_branches_kernels.cuh: one forward staging x once with the
//             largest halo and writing the six outputs, one input gradient summing the six branches in
//             registers and writing dx once.
// Each version is first checked against a CPU reference (double sums) at small awkward shapes (tile
// borders, images smaller than the kernels, odd C, C % 4 != 0), f32 and bf16; then timed in bf16 at the
// UniRepLKNet-T DRB shapes [128, 28, 28, 160], [128, 14, 14, 320], [128, 7, 7, 640].
// Build and run:  ninja -C build playground_dilated_branches && ./build/playground_dilated_branches
// Exit status 1 when a version disagrees with the reference. Times: median of 20 runs after a warm-up,
// cudaEvent. Memory floor at 2.98 TB/s (the H100 device-to-device copy bandwidth of core/cuda/PERF.md):
// forward separate 12 tensor passes (each branch reads x, writes z_b), fused 7 (x once, six z_b);
// input gradient separate 6 x 2 + 5 x 3 = 27 passes, fused 7 (six dz_b, dx once); weights ignored.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/cuda/playground/common.cuh"
#include "core/ops/dilated_branches_kernels.cuh"

using unirep::bf16;
namespace dwc = unirep::cuda::dwconv;
using namespace playground;
using Set = dwc::K13Branches;
constexpr int NB = Set::kCount;

struct Image {
  int N, H, W, C;
  size_t numel() const { return size_t(N) * H * W * C; }
};

dwc::Shape branch_shape(const Image& im, int b) {
  const int k = Set::kernel(b), d = Set::dilation(b), p = Set::pad(b);
  return dwc::Shape{im.N, im.H, im.W, im.C, k, k, im.H, im.W, p, p, d, d};
}

// ---------------------------------------------------------------- CPU reference (double sums)

// z = conv(x, w) of branch b; dx += conv_transpose(dz) of branch b.
void cpu_branch(std::vector<double>* z, std::vector<double>* dx, const std::vector<double>& in,
                const std::vector<double>& w, const Image& im, int b) {
  const int k = Set::kernel(b), d = Set::dilation(b), p = Set::pad(b);
  if (z) z->assign(im.numel(), 0.0);
  for (int n = 0; n < im.N; ++n)
    for (int h = 0; h < im.H; ++h)
      for (int x = 0; x < im.W; ++x)
        for (int c = 0; c < im.C; ++c) {
          const size_t o = ((size_t(n) * im.H + h) * im.W + x) * im.C + c;
          for (int r = 0; r < k; ++r)
            for (int s = 0; s < k; ++s) {
              const int hi = h - p + r * d, wi = x - p + s * d;
              if (hi < 0 || hi >= im.H || wi < 0 || wi >= im.W) continue;
              const size_t i = ((size_t(n) * im.H + hi) * im.W + wi) * im.C + c;
              const double wv = w[(size_t(c) * k + r) * k + s];
              if (z) (*z)[o] += in[i] * wv;          // forward: in is x
              if (dx) (*dx)[i] += in[o] * wv;        // input gradient: in is dz, scattered
            }
        }
}

// ---------------------------------------------------------------- device buffers

// out = a + b (the engine's gradient accumulation between branches).
template <class T> __global__ void add_kernel(T* out, const T* a, const T* b, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    out[i] = T(float(a[i]) + float(b[i]));
}

// x, the six weights, six z, six dz, dx, the separate path's partial dx and sums, workspaces.
template <class T> struct Problem {
  Image im;
  Buf<T> x, dx, part, sum_a, sum_b;
  std::vector<Buf<T>*> w, z, dz;
  Buf<float> ws;
  explicit Problem(const Image& i)
      : im(i), x(i.numel()), dx(i.numel()), part(i.numel()), sum_a(i.numel()), sum_b(i.numel()),
        ws(dwc::branch_weight_floats<Set>(i.C)) {
    for (int b = 0; b < NB; ++b) {
      w.push_back(new Buf<T>(size_t(i.C) * Set::kernel(b) * Set::kernel(b)));
      z.push_back(new Buf<T>(i.numel()));
      dz.push_back(new Buf<T>(i.numel()));
    }
  }
  ~Problem() {
    for (int b = 0; b < NB; ++b) {
      delete w[size_t(b)];
      delete z[size_t(b)];
      delete dz[size_t(b)];
    }
  }
  dwc::BranchIn<T> weights() const {
    dwc::BranchIn<T> in{};
    for (int b = 0; b < NB; ++b) in.p[b] = w[size_t(b)]->p;
    return in;
  }
};

enum Version { kSeparate, kFused };
enum Pass { kForward, kInputGrad };

// Separate input gradient: branch 0 into dx, the others into part and summed (out of place, as the engine).
template <class T> void run(Problem<T>& P, int version, int pass) {
  const Image& im = P.im;
  const dwc::Shape gu = dwc::branch_union_shape<Set>(im.N, im.H, im.W, im.C);
  if (version == kFused) {
    if (pass == kForward) {
      dwc::BranchOut<T> out{};
      for (int b = 0; b < NB; ++b) out.p[b] = P.z[size_t(b)]->p;
      CHECK((dwc::branches_forward<Set, T>(out, P.x.p, P.weights(), gu, P.ws.p, 0)));
    } else {
      dwc::BranchIn<T> in{};
      for (int b = 0; b < NB; ++b) in.p[b] = P.dz[size_t(b)]->p;
      CHECK((dwc::branches_input_grad<Set, T>(P.dx.p, in, P.weights(), gu, P.ws.p, 0)));
    }
    return;
  }
  if (pass == kForward) {
    for (int b = 0; b < NB; ++b)
      CHECK(dwc::forward<T>(P.z[size_t(b)]->p, P.x.p, P.w[size_t(b)]->p, nullptr, branch_shape(im, b), false, P.ws.p, 0));
    return;
  }
  T* acc = P.sum_a.p;
  for (int b = 0; b < NB; ++b) {
    T* target = b == 0 ? acc : P.part.p;
    CHECK(dwc::input_grad<T>(target, P.dz[size_t(b)]->p, P.w[size_t(b)]->p, branch_shape(im, b), P.ws.p, 0));
    if (b == 0) continue;
    T* out = b == NB - 1 ? P.dx.p : (acc == P.sum_a.p ? P.sum_b.p : P.sum_a.p);
    add_kernel<T><<<dwc::grid_1d(int64_t(im.numel())), 256>>>(out, acc, P.part.p, im.numel());
    CHECK(cudaGetLastError());
    acc = out;
  }
}

template <class T> bool check_shape(const Image& im, int version, double tol, const char* dtype) {
  const dwc::Shape gu = dwc::branch_union_shape<Set>(im.N, im.H, im.W, im.C);
  if (!dwc::branches_supported<Set>(gu)) {
    std::printf("  FAIL: %dx%dx%dx%d is outside the fused kernels' budget\n", im.N, im.H, im.W, im.C);
    return false;
  }
  Problem<T> P(im);
  std::mt19937 rng(77u + unsigned(im.H * 31 + im.C));
  std::normal_distribution<double> nd(0.0, 1.0);
  auto gen = [&](size_t n, double scale) {
    std::vector<double> v(n);
    for (double& e : v) e = nd(rng) * scale;
    return rounded<T>(v);
  };
  const std::vector<double> hx = gen(im.numel(), 1.0);
  upload(P.x, hx);
  std::vector<std::vector<double>> hw, hdz;
  std::vector<double> dx_ref(im.numel(), 0.0);
  double fwd_err = 0;
  for (int b = 0; b < NB; ++b) {
    hw.push_back(gen(P.w[size_t(b)]->n, 1.0 / Set::kernel(b)));
    hdz.push_back(gen(im.numel(), 1.0));
    upload(*P.w[size_t(b)], hw.back());
    upload(*P.dz[size_t(b)], hdz.back());
    cpu_branch(nullptr, &dx_ref, hdz.back(), hw.back(), im, b);
  }
  run(P, version, kForward);
  run(P, version, kInputGrad);
  CHECK(cudaDeviceSynchronize());
  for (int b = 0; b < NB; ++b) {
    std::vector<double> z_ref;
    cpu_branch(&z_ref, nullptr, hx, hw[size_t(b)], im, b);
    fwd_err = std::max(fwd_err, rel_error(download(P.z[size_t(b)]->p, im.numel()), z_ref));
  }
  const double dx_err = rel_error(download(P.dx.p, im.numel()), dx_ref);
  // The separate version rounds each partial sum to T: a few roundings more than the fused one.
  const double dx_tol = version == kSeparate ? 3 * tol : tol;
  const bool ok = fwd_err <= tol && dx_err <= dx_tol;
  if (!ok)
    std::printf("  FAIL %s %-5s N%d H%d W%d C%d: rel err fwd %.2e dgrad %.2e (tol %.0e)\n",
                version == kFused ? "fused" : "separate", dtype, im.N, im.H, im.W, im.C, fwd_err, dx_err, tol);
  return ok;
}

template <class T> double median_ms(Problem<T>& P, int version, int pass, int reps) {
  return median_ms_of([&] { run(P, version, pass); }, reps);
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  const std::vector<Image> small = {{2, 9, 11, 5}, {1, 14, 14, 40}, {2, 17, 30, 36}, {1, 3, 4, 8}, {2, 7, 7, 70}};
  bool all_ok = true;
  for (int version : {kSeparate, kFused}) {
    int pass = 0, total = 0;
    for (const Image& im : small) {
      total += 2;
      pass += check_shape<float>(im, version, 1e-5, "f32");
      pass += check_shape<bf16>(im, version, 8e-3, "bf16");
    }
    std::printf("correctness %s: %d / %d (shape, dtype) cases pass (six z and dx vs CPU double)\n",
                version == kFused ? "fused" : "separate", pass, total);
    all_ok = all_ok && pass == total;
  }

  const std::vector<Image> shapes = {{128, 28, 28, 160}, {128, 14, 14, 320}, {128, 7, 7, 640}};
  const double hbm = 2.98e12;
  std::printf("\nbf16 timings (ms, median of 20); floor = tensor passes x bytes / 2.98 TB/s\n");
  std::printf("%-18s %-6s %11s %9s %11s %9s %9s %8s\n", "shape", "pass", "separate ms", "floor ms", "fused ms",
              "floor ms", "x-floor", "speed-up");
  double tot_sep[2] = {0, 0}, tot_fused[2] = {0, 0};
  for (const Image& im : shapes) {
    Problem<bf16> P(im);
    fill_hash<bf16><<<dwc::grid_1d(int64_t(im.numel())), 256>>>(P.x.p, im.numel(), 1u, 1.0f);
    for (int b = 0; b < NB; ++b) {
      fill_hash<bf16><<<dwc::grid_1d(int64_t(P.w[size_t(b)]->n)), 256>>>(P.w[size_t(b)]->p, P.w[size_t(b)]->n,
                                                                        11u + b, 1.0f / Set::kernel(b));
      fill_hash<bf16><<<dwc::grid_1d(int64_t(im.numel())), 256>>>(P.dz[size_t(b)]->p, im.numel(), 21u + b, 1.0f);
    }
    CHECK(cudaGetLastError());
    const double bytes = double(im.numel()) * sizeof(bf16);
    for (int pass : {kForward, kInputGrad}) {
      const double sep = median_ms(P, kSeparate, pass, 20), fused = median_ms(P, kFused, pass, 20);
      const double sep_floor = (pass == kForward ? 12 : 27) * bytes / hbm * 1e3, fused_floor = 7 * bytes / hbm * 1e3;
      tot_sep[pass] += sep;
      tot_fused[pass] += fused;
      char name[32];
      std::snprintf(name, sizeof(name), "%dx%dx%dx%d", im.N, im.H, im.W, im.C);
      std::printf("%-18s %-6s %11.3f %9.3f %11.3f %9.3f %9.1f %8.2f\n", name, pass == kForward ? "fwd" : "dgrad", sep,
                  sep_floor, fused, fused_floor, fused / fused_floor, sep / fused);
    }
  }
  std::printf("one block per stage: fwd separate %.3f ms fused %.3f ms; dgrad separate %.3f ms fused %.3f ms\n",
              tot_sep[0], tot_fused[0], tot_sep[1], tot_fused[1]);
  return all_ok ? 0 : 1;
}
