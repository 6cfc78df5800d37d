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
// n standard normal floats (Marsaglia's polar method: two values per accepted pair, no trigonometry).
inline void fill_normal(float* out, int64_t n, Rng& rng) {
  int64_t i = 0;
  while (i < n) {
    double u, v, s;
    do {
      u = 2.0 * rand_uniform(rng) - 1.0;
      v = 2.0 * rand_uniform(rng) - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = std::sqrt(-2.0 * std::log(s) / s);
    out[i++] = float(u * f);
    if (i < n) out[i++] = float(v * f);
  }
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
