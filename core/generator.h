// Seeded random numbers that are identical on the CPU and on the GPU.
//
// Philox4x32-10 (Salmon et al., SC'11) is a counter-based generator: the value for element i of a
// draw is philox(seed, offset + i), a pure function, so any device, thread count or launch shape
// produces the same numbers, and a draw of n values just advances the generator's offset by n.
// That makes dropout masks testable CPU-vs-CUDA bit for bit, and the RNG state is two integers
// (seed, offset) that a checkpoint can store.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/dtype.h"

namespace unirep {

struct PhiloxResult {
  uint32_t x[4];
};

UNIREP_HD PhiloxResult philox4x32(uint64_t seed, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    uint64_t p0 = uint64_t(0xD2511F53u) * c0;
    uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in [0, 1) with 24 random bits (exactly representable in float).
UNIREP_HD float philox_uniform(uint64_t seed, uint64_t counter) {
  return float(philox4x32(seed, counter).x[0] >> 8) * (1.0f / 16777216.0f);
}

// Uniform in [0, 1) with 53 random bits, for float64 draws.
UNIREP_HD double philox_uniform_double(uint64_t seed, uint64_t counter) {
  PhiloxResult r = philox4x32(seed, counter);
  uint64_t bits = (uint64_t(r.x[0]) << 21) ^ (uint64_t(r.x[1]) >> 11);
  return double(bits & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Standard normal by Box-Muller on the first two words (computed in double on every device).
UNIREP_HD double philox_normal(uint64_t seed, uint64_t counter) {
  PhiloxResult r = philox4x32(seed, counter);
  double u1 = (double(r.x[0]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
  double u2 = double(r.x[1]) * (1.0 / 4294967296.0);
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2);
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves n counters and returns the first.
  uint64_t advance(uint64_t n) {
    uint64_t start = offset_;
    offset_ += n;
    return start;
  }

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process-wide generator used when an op is not handed one.
Generator& default_generator();

}  // namespace unirep
