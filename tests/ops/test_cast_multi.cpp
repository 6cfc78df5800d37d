// cast_multi: the same bits as copy_tensor per tensor (CPU), and CUDA bitwise equal to the CPU on
// many tensors (several launches), sizes off the 8-element pack, multi-chunk tensors and
// misaligned sources and destinations (the element-by-element fallback).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/generator.h"
#include "core/ops/cast_multi.h"
#include "core/ops/copy.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

// Every source size: under, at and over the pack width, and over one 8192-element chunk.
const std::vector<int64_t> kSizes = {1, 7, 8, 9, 13, 64, 100, 8192, 8193, 20003};

// The values of the last source: a bf16 tie (1 + 2^-8, to 1; exact in float16), a float16 overflow
// (70144 in bf16), a float16 subnormal, a bf16 rounding up to 3.004e38, inf and signed zeros.
const std::vector<float> kSpecial = {1.0f + 0.00390625f, 7e4f, -1e-6f, 3e38f, std::numeric_limits<float>::infinity(),
                                     0.0f, -0.0f};

// `count` float32 tensors of the sizes above in turn (every third a misaligned slice of a bigger
// one), values of both signs over 1e-3..1e3, then kSpecial.
std::vector<Tensor> sources(Generator& gen, int count, Device device) {
  std::vector<Tensor> out;
  for (int i = 0; i < count; ++i) {
    const int64_t n = kSizes[size_t(i) % kSizes.size()];
    Tensor t = Tensor::randn({n + 1}, gen);
    t.mul_(std::pow(10.0, double(i % 7) - 3));
    t = t.to(device);
    out.push_back(i % 3 == 2 ? t.slice(0, 1, n + 1) : t.slice(0, 0, n));
  }
  out.push_back(Tensor::from_vector(kSpecial, {int64_t(kSpecial.size())}, DType::Float32, device));
  return out;
}

// Uninitialised destinations for `srcs`; every fourth misaligned by one element.
std::vector<Tensor> destinations_for(const std::vector<Tensor>& srcs, DType dtype) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < srcs.size(); ++i) {
    const int64_t n = srcs[i].numel();
    Tensor d = Tensor::empty({n + 1}, dtype, srcs[i].device());
    out.push_back(i % 4 == 1 ? d.slice(0, 1, n + 1) : d.slice(0, 0, n));
  }
  return out;
}

TEST(CastMulti, CpuEqualsCopyTensorPerTensor) {
  Generator gen(3);
  const std::vector<Tensor> srcs = sources(gen, 12, Device::cpu());
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const std::vector<Tensor> dsts = destinations_for(srcs, dtype);
    cast_multi(srcs, dsts);
    for (size_t i = 0; i < srcs.size(); ++i) {
      Tensor expected = Tensor::empty(srcs[i].shape(), dtype);
      copy_tensor(expected, srcs[i]);
      EXPECT_EQ(dsts[i].to_vector<float>(), expected.to_vector<float>()) << dtype_name(dtype) << " tensor " << i;
    }
  }
  Tensor b = Tensor::empty({7}, DType::BFloat16), h = Tensor::empty({7}, DType::Float16);
  cast_multi({srcs.back()}, {b});
  cast_multi({srcs.back()}, {h});
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(b.to_vector<float>(), (std::vector<float>{1.0f, 70144.0f, -9.98377800e-07f, 3.00405527e+38f, inf, 0.0f, -0.0f}));
  EXPECT_EQ(h.to_vector<float>(), (std::vector<float>{1.00390625f, inf, -17 * std::ldexp(1.0f, -24), inf, inf, 0.0f, -0.0f}));
}

TEST(CastMulti, RejectsBadArguments) {
  Tensor f = Tensor::zeros({4}), b = Tensor::empty({4}, DType::BFloat16);
  EXPECT_THROW(cast_multi({f}, {}), Error);
  EXPECT_THROW(cast_multi({f}, {Tensor::empty({3}, DType::BFloat16)}), Error);
  EXPECT_THROW(cast_multi({f}, {Tensor::empty({4}, DType::Float32)}), Error);
  EXPECT_THROW(cast_multi({f.to(DType::Float64)}, {b}), Error);
  EXPECT_THROW(cast_multi({f, f}, {b, Tensor::empty({4}, DType::Float16)}), Error);
  EXPECT_THROW(cast_multi({Tensor::zeros({2, 2}).transpose(0, 1)}, {b}), Error);
  EXPECT_NO_THROW(cast_multi({}, {}));
}

// 300 tensors: three launches of up to 128.
TEST(CastMulti, CudaMatchesCpuBitwise) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator gen(5);
  const std::vector<Tensor> cpu_srcs = sources(gen, 300, Device::cpu());
  std::vector<Tensor> cuda_srcs;
  for (size_t i = 0; i < cpu_srcs.size(); ++i) {
    // the same values, misaligned on the device where they were on the host
    const int64_t n = cpu_srcs[i].numel();
    Tensor t = Tensor::zeros({n + 1}, DType::Float32, Device::cuda(0));
    Tensor s = i % 3 == 2 ? t.slice(0, 1, n + 1) : t.slice(0, 0, n);
    s.copy_(cpu_srcs[i]);
    cuda_srcs.push_back(s);
  }
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    const std::vector<Tensor> cpu_dsts = destinations_for(cpu_srcs, dtype);
    const std::vector<Tensor> cuda_dsts = destinations_for(cuda_srcs, dtype);
    cast_multi(cpu_srcs, cpu_dsts);
    cast_multi(cuda_srcs, cuda_dsts);
    for (size_t i = 0; i < cpu_srcs.size(); ++i)
      ASSERT_EQ(cuda_dsts[i].to_vector<float>(), cpu_dsts[i].to_vector<float>()) << dtype_name(dtype) << " tensor " << i;
  }
}

}  // namespace
}  // namespace unirep
