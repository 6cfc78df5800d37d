// The 32-bit index decoding of the CUDA strided loops (core/cuda/strided32.cuh), checked on the host
// (the same code runs on the device): the multiply-high division is exact, and the decoded offsets
// equal StridedIndex's 64-bit ones; what does not fit in 31 bits is refused.
#include <gtest/gtest.h>

#include <random>

#include "core/cuda/strided32.cuh"

namespace unirep {
namespace {

TEST(FastDivmod32, ExactForEveryNumeratorBelow2To31) {
  std::mt19937_64 rng(5);
  std::vector<uint32_t> divisors = {1, 2, 3, 5, 7, 80, 160, 320, 640, 3136, 56 * 56 * 80, 65535, 65536, 65537,
                                    (1u << 31) - 1, 1u << 31};
  for (int i = 0; i < 200; ++i) divisors.push_back(uint32_t(rng() % (1u << 31)) + 1);
  for (uint32_t d : divisors) {
    const cuda::FastDivmod32 f(d);
    std::vector<uint32_t> numerators = {0, 1, d - 1, d, d + 1, (1u << 31) - 1, (1u << 31) - 2};
    for (int i = 0; i < 2000; ++i) numerators.push_back(uint32_t(rng() % (1u << 31)));
    for (uint32_t n : numerators) {
      if (n >= (1u << 31)) continue;
      ASSERT_EQ(f.div(n), n / d) << n << " / " << d;
    }
  }
}

TEST(StridedIndex32, MatchesTheSixtyFourBitDecoding) {
  // x[N, H, W, C] (a transposed view) times g[C] broadcast into out[N, H, W, C].
  const Shape shape = {3, 5, 7, 11};
  const Shape out_strides = {385, 77, 11, 1}, view_strides = {385, 1, 5, 35}, bcast = {0, 0, 0, 1};
  auto idx = make_strided_index<3>(shape, {&out_strides, &view_strides, &bcast});
  cuda::StridedIndex32<3> idx32;
  ASSERT_TRUE(cuda::to_strided_index32(idx, 3 * 5 * 7 * 11, &idx32));
  for (int64_t i = 0; i < 3 * 5 * 7 * 11; ++i) {
    int64_t off[3];
    uint32_t off32[3];
    idx.offsets(i, off);
    idx32.offsets(uint32_t(i), off32);
    for (int k = 0; k < 3; ++k) ASSERT_EQ(int64_t(off32[k]), off[k]) << "element " << i << " operand " << k;
  }
  // An operand whose largest offset needs 32 bits keeps the 64-bit path.
  const Shape big = {1 << 16, 1 << 15}, big_strides = {1 << 15, 1}, small = {0, 1};
  auto wide = make_strided_index<2>(big, {&big_strides, &small});
  EXPECT_FALSE(cuda::to_strided_index32(wide, int64_t(1) << 31, &*std::make_unique<cuda::StridedIndex32<2>>()));
}

}  // namespace
}  // namespace unirep
