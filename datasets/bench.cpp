// The data-pipeline benchmark (see bench.h).
//
// Measured on the 2-core AMD EPYC (Zen 4) build machine, Release with -march=native, 16 synthetic
// 500x375 q90 JPEGs of 104 KB on average, 3000-4000 images:
//   1 thread : 718 img/s  (718 img/s per core)
//   2 threads: 1434 img/s (717 img/s per core; 721 per CPU-second)
// against the floor of 400 img/s per core. Where the time goes (perf, 1 thread): libjpeg-turbo
// ~55 % (Huffman decoding of the whole file dominates; only the crop's rows and columns are inverse-
// transformed and colour-converted), RandAugment's affine ops ~12 %, the bicubic resize ~9 %,
// normalisation ~4 %, the rest a few % each. Without -march=native (no AVX2 paths) ~370 img/s per core.
#include "datasets/bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>

#include <time.h>

#include "core/error.h"
#include "datasets/transforms.h"

namespace unirep {

namespace {

double thread_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

}  // namespace

Image synthetic_photo(int64_t H, int64_t W, uint64_t seed) {
  UNIREP_CHECK(H > 0 && W > 0, "synthetic_photo: size must be positive, got ", H, "x", W);
  Rng rng = make_rng(seed, 0x5EEDull);
  const double two_pi = 6.283185307179586;
  // 1/f-like texture: value noise on grids of 64, 32, ..., 2 pixels, smoothstep-interpolated.
  std::vector<float> tex(size_t(H * W), 0.f);
  for (int cell = 64; cell >= 2; cell /= 2) {
    const int64_t gh = H / cell + 2, gw = W / cell + 2;
    std::vector<float> g(size_t(gh * gw));
    fill_normal(g.data(), int64_t(g.size()), rng);
    const float amp = float(30.0 * std::pow(cell / 64.0, 0.35));
    for (int64_t y = 0; y < H; ++y) {
      const int64_t iy = y / cell;
      double ty = double(y % cell) / cell;
      ty = ty * ty * (3 - 2 * ty);
      const float* r0 = &g[size_t(iy * gw)];
      const float* r1 = r0 + gw;
      for (int64_t x = 0; x < W; ++x) {
        const int64_t ix = x / cell;
        double tx = double(x % cell) / cell;
        tx = tx * tx * (3 - 2 * tx);
        const double v = (r0[ix] * (1 - tx) + r0[ix + 1] * tx) * (1 - ty) + (r1[ix] * (1 - tx) + r1[ix + 1] * tx) * ty;
        tex[size_t(y * W + x)] += amp * float(v);
      }
    }
  }
  struct Wave {
    double fx, fy, phase, amp;
  };
  auto wave = [&](double fmin, double fmax, double amp) {
    const double f = rand_uniform(rng, fmin, fmax), th = rand_uniform(rng, 0, two_pi);
    return Wave{f * std::cos(th), f * std::sin(th), rand_uniform(rng, 0, two_pi), amp * rand_uniform(rng, 0.5, 1.0)};
  };
  const double L = double(std::max(H, W));
  double base[3];
  for (auto& b : base) b = rand_uniform(rng, 60, 190);
  Wave low[3][3];  // smooth colour gradients
  for (auto& c : low)
    for (auto& w : c) w = wave(0.5 / L, 3.0 / L, 45);
  const Wave envelope = wave(1.0 / L, 3.0 / L, 1.0);  // where the background is textured
  struct Blob {  // objects: rotated ellipses with their own colour, shading and texture strength
    double cx, cy, rx, ry, cs, sn, col[3], grad, tex;
  };
  std::vector<Blob> blobs(static_cast<size_t>(rand_int(rng, 6, 12)));
  for (auto& b : blobs) {
    b.cx = rand_uniform(rng, 0, double(W));
    b.cy = rand_uniform(rng, 0, double(H));
    b.rx = rand_uniform(rng, 0.05, 0.3) * double(W);
    b.ry = rand_uniform(rng, 0.05, 0.3) * double(H);
    const double th = rand_uniform(rng, 0, two_pi);
    b.cs = std::cos(th);
    b.sn = std::sin(th);
    for (auto& c : b.col) c = rand_uniform(rng, 10, 245);
    b.grad = rand_uniform(rng, -0.4, 0.4);
    b.tex = rand_uniform(rng, 0.2, 1.5);
  }
  // The waves are separable: sin(a(x) + b(y)) = sin a cos b + cos a sin b, tabulated per row and column.
  struct Table {
    std::vector<double> sx, cx, sy, cy;
  };
  auto tabulate = [&](const Wave& w) {
    Table t;
    for (int64_t x = 0; x < W; ++x) {
      t.sx.push_back(std::sin(two_pi * w.fx * double(x) + w.phase));
      t.cx.push_back(std::cos(two_pi * w.fx * double(x) + w.phase));
    }
    for (int64_t y = 0; y < H; ++y) {
      t.sy.push_back(std::sin(two_pi * w.fy * double(y)));
      t.cy.push_back(std::cos(two_pi * w.fy * double(y)));
    }
    return t;
  };
  Table low_t[3][3];
  for (int c = 0; c < 3; ++c)
    for (int k = 0; k < 3; ++k) low_t[c][k] = tabulate(low[c][k]);
  const Table env_t = tabulate(envelope);
  std::vector<float> noise(static_cast<size_t>(W * 4));
  Image img(H, W, 3);
  for (int64_t y = 0; y < H; ++y) {
    uint8_t* out = img.row(y);
    fill_normal(noise.data(), W * 4, rng);
    for (int64_t x = 0; x < W; ++x) {
      double v[3];
      for (int c = 0; c < 3; ++c) {
        v[c] = base[c];
        for (int k = 0; k < 3; ++k) {
          const Table& t = low_t[c][k];
          v[c] += low[c][k].amp * (t.sx[size_t(x)] * t.cy[size_t(y)] + t.cx[size_t(x)] * t.sy[size_t(y)]);
        }
      }
      const double env = env_t.sx[size_t(x)] * env_t.cy[size_t(y)] + env_t.cx[size_t(x)] * env_t.sy[size_t(y)];
      double e = 0.35 + 0.65 * (0.5 + 0.5 * env);
      for (const auto& b : blobs) {
        const double dx = x - b.cx, dy = y - b.cy;
        const double u = (dx * b.cs + dy * b.sn) / b.rx, t = (-dx * b.sn + dy * b.cs) / b.ry;
        if (u * u + t * t < 1.0) {
          for (int c = 0; c < 3; ++c) v[c] = b.col[c] * (1.0 + b.grad * u) + 0.15 * (v[c] - base[c]);
          e = b.tex;
        }
      }
      // Fine-grained detail (foliage, fur) where textured, plus sensor noise everywhere.
      const double t = double(tex[size_t(y * W + x)]) * e + 58.0 * e * e * noise[size_t(4 * x)];
      for (int c = 0; c < 3; ++c) {
        const double val = v[c] + t * (0.85 + 0.1 * c) + 3.0 * noise[size_t(4 * x + 1 + c)];
        out[3 * x + c] = uint8_t(std::clamp<long>(std::lround(val), 0L, 255L));
      }
    }
  }
  return img;
}

std::vector<std::vector<uint8_t>> synthetic_jpegs(int count, int64_t height, int64_t width, int quality,
                                                  uint64_t seed) {
  std::vector<std::vector<uint8_t>> out;
  out.reserve(size_t(std::max(count, 0)));
  for (int i = 0; i < count; ++i) out.push_back(encode_jpeg(synthetic_photo(height, width, seed + uint64_t(i)), quality));
  return out;
}

AugmentBenchResult augment_bench(int threads, int images, bool print, bool channels_last) {
  if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
  UNIREP_CHECK(images > 0, "data bench: --images must be positive, got ", images);
  const int distinct = 16;
  const auto jpegs = synthetic_jpegs(distinct, 375, 500, 90, 1234);
  double bytes = 0;
  for (const auto& j : jpegs) bytes += double(j.size());
  ImageNetTrainConfig cfg;
  cfg.layout = channels_last ? Layout::HWC : Layout::CHW;
  const size_t per_image = size_t(cfg.size * cfg.size * 3);
  std::vector<double> cpu(size_t(threads), 0.0);
  auto work = [&](int t, int begin, int end) {
    const double c0 = thread_cpu_seconds();
    std::vector<float> out(per_image);
    for (int i = begin + t; i < end; i += threads) {
      Rng rng = make_rng(42, 0, uint64_t(i));
      const auto& j = jpegs[size_t(i % distinct)];
      imagenet_train_transform_jpeg(j.data(), j.size(), cfg, rng, out.data());
    }
    cpu[size_t(t)] = thread_cpu_seconds() - c0;
  };
  auto run = [&](int begin, int end) {
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work, t, begin, end);
    work(0, begin, end);
    for (auto& th : pool) th.join();
  };
  run(0, std::min(images, 4 * threads));  // warm-up: page in code, tables and buffers
  const auto t0 = std::chrono::steady_clock::now();
  run(0, images);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu_seconds = 0;
  for (double c : cpu) cpu_seconds += c;
  AugmentBenchResult r;
  r.threads = threads;
  r.images = images;
  r.seconds = seconds;
  r.images_per_second = double(images) / seconds;
  r.per_core = r.images_per_second / threads;
  r.cpu_seconds = cpu_seconds;
  r.per_cpu_second = cpu_seconds > 0 ? double(images) / cpu_seconds : 0.0;
  r.mean_jpeg_bytes = bytes / distinct;
  if (print) {
    std::printf(
        "data bench: %d images (500x375 JPEG q90, mean %.1f KB) -> 224x224 train pipeline (decode, RandomResizedCrop "
        "bicubic, flip, RandAugment rand-m9-mstd0.5-inc1, normalise, random erasing 0.25), %d thread%s: %.3f s, "
        "%.1f img/s total, %.1f img/s per core (wall clock); %.1f img/s per CPU-second of the workers\n",
        images, r.mean_jpeg_bytes / 1024.0, threads, threads == 1 ? "" : "s", seconds, r.images_per_second,
        r.per_core, r.per_cpu_second);
    std::fflush(stdout);
  }
  return r;
}

double run_augment_bench(int threads, int images, bool print) { return augment_bench(threads, images, print).per_core; }

int data_bench(int threads, int images) {
  augment_bench(threads, images, true);
  return 0;
}

}  // namespace unirep
