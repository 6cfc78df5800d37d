// Random draws for the augmentations. Every transform takes an `Rng&` (std::mt19937_64, whose output
// sequence the C++ standard fixes), and the distributions below are written out here rather than
// taken from <random> (whose algorithms differ between standard libraries), so a seed gives the same
// augmentations everywhere. No global RNG is used anywhere in datasets/.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>

#include "core/generator.h"

namespace unirep {

using Rng = std::mt19937_64;

// Uniform in [0, 1) with 53 random bits.
inline double rand_uniform(Rng& rng) { return double(rng() >> 11) * (1.0 / 9007199254740992.0); }
// Uniform in [lo, hi).
inline double rand_uniform(Rng& rng, double lo, double hi) { return lo + (hi - lo) * rand_uniform(rng); }
// Uniform integer in [lo, hi], both ends included (Python's random.randint; numpy's randint(lo, hi + 1)).
// Lemire's multiply-shift with rejection: exactly uniform.
inline int64_t rand_int(Rng& rng, int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  uint64_t range = uint64_t(hi - lo) + 1;
  if (range == 0) return int64_t(rng());  // the full 64-bit range
  unsigned __int128 m = (unsigned __int128)rng() * range;
  uint64_t low = uint64_t(m);
  if (low < range) {
    uint64_t threshold = (0 - range) % range;
    while (low < threshold) {
      m = (unsigned __int128)rng() * range;
      low = uint64_t(m);
    }
  }
  return lo + int64_t(m >> 64);
}
// True with probability p.
inline bool rand_bool(Rng& rng, double p = 0.5) { return rand_uniform(rng) < p; }
// Standard normal (Box-Muller, one value per call).
inline double rand_normal(Rng& rng) {
  double u1 = 1.0 - rand_uniform(rng);  // (0, 1]
  double u2 = rand_uniform(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
namespace detail {

// Tables of Marsaglia and Tsang's ziggurat for the normal (2000), 128 layers, 32-bit draws.
struct ZigguratTables {
  uint32_t k[128];
  double w[128], f[128];
  ZigguratTables() {
    const double m1 = 2147483648.0, vn = 9.91256303526217e-3;
    double dn = 3.442619855899, tn = dn;
    const double q = vn / std::exp(-0.5 * dn * dn);
    k[0] = uint32_t((dn / q) * m1);
    k[1] = 0;
    w[0] = q / m1;
    w[127] = dn / m1;
    f[0] = 1.0;
    f[127] = std::exp(-0.5 * dn * dn);
    for (int i = 126; i >= 1; --i) {
      dn = std::sqrt(-2.0 * std::log(vn / dn + std::exp(-0.5 * dn * dn)));
      k[i + 1] = uint32_t((dn / tn) * m1);
      tn = dn;
      f[i] = std::exp(-0.5 * dn * dn);
      w[i] = dn / m1;
    }
  }
};

inline const ZigguratTables& ziggurat() {
  static const ZigguratTables t;
  return t;
}

// One standard normal from a signed 32-bit draw (the common case is a multiply and a compare).
inline double ziggurat_normal(Rng& rng, const ZigguratTables& t) {
  for (;;) {
    const int32_t hz = int32_t(uint32_t(rng() >> 32));
    const int iz = hz & 127;
    const uint32_t mag = hz < 0 ? uint32_t(0) - uint32_t(hz) : uint32_t(hz);
    const double x = double(hz) * t.w[iz];
    if (mag < t.k[iz]) return x;
    if (iz == 0) {  // the tail beyond r
      const double r = 3.442619855899;
      double xt, yt;
      do {
        xt = -std::log(1.0 - rand_uniform(rng)) / r;
        yt = -std::log(1.0 - rand_uniform(rng));
      } while (yt + yt < xt * xt);
      return hz > 0 ? r + xt : -r - xt;
    }
    if (t.f[iz] + rand_uniform(rng) * (t.f[iz - 1] - t.f[iz]) < std::exp(-0.5 * x * x)) return x;
  }
}

}  // namespace detail

// n standard normal floats by the ziggurat method (a few ns each: random erasing fills up to a third
// of an image with them).
inline void fill_normal(float* out, int64_t n, Rng& rng) {
  const detail::ZigguratTables& t = detail::ziggurat();
  for (int64_t i = 0; i < n; ++i) out[i] = float(detail::ziggurat_normal(rng, t));
}

// Gamma(alpha, 1) by Marsaglia and Tsang (2000); alpha < 1 through Gamma(alpha + 1) * U^(1 / alpha).
inline double rand_gamma(Rng& rng, double alpha) {
  if (alpha < 1.0) {
    double u = 1.0 - rand_uniform(rng);
    return rand_gamma(rng, alpha + 1.0) * std::pow(u, 1.0 / alpha);
  }
  const double d = alpha - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = rand_normal(rng);
      v = 1.0 + c * x;
    } while (v <= 0.0);
    v = v * v * v;
    double u = 1.0 - rand_uniform(rng);
    if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
    if (std::log(u) < 0.5 * x * x + d * (1.0 - v + std::log(v))) return d * v;
  }
}
// Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
inline double rand_beta(Rng& rng, double a, double b) {
  double x = rand_gamma(rng, a), y = rand_gamma(rng, b);
  return x + y > 0.0 ? x / (x + y) : 0.5;
}

// SplitMix64 finaliser: decorrelates nearby seeds.
inline uint64_t mix_seed(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// An independent stream per (seed, a, b), e.g. (run seed, epoch, sample index): the loader gives every
// sample its own Rng, so the augmentation of a sample does not depend on which worker thread ran it.
inline Rng make_rng(uint64_t seed, uint64_t a = 0, uint64_t b = 0) {
  return Rng(mix_seed(mix_seed(mix_seed(seed) ^ a) ^ b));
}

// An Rng seeded from the project's Philox generator (one counter of it is consumed).
inline Rng make_rng(Generator& gen) {
  PhiloxResult r = philox4x32(gen.seed(), gen.advance(1));
  return Rng(mix_seed((uint64_t(r.x[0]) << 32) | r.x[1]));
}

}  // namespace unirep
