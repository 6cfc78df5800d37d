// Tensor core: factories, views, contiguity, copies across dtypes and devices, RNG, allocator.
#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "core/allocator.h"
#include "core/generator.h"

namespace unirep {
namespace {

TEST(Tensor, FactoriesAndMetadata) {
  Tensor t = Tensor::zeros({2, 3, 4});
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.dtype(), DType::Float32);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(Tensor::full({2}, 2.5, DType::Float64).to_vector<double>(), (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(Tensor::arange(4).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(Tensor::scalar(3.0).dim(), 0);
  EXPECT_DOUBLE_EQ(Tensor::scalar(3.0).item(), 3.0);
  EXPECT_EQ(t.str(), "float32[2, 3, 4] cpu");
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = Tensor::from_vector(std::vector<float>{0, 1, 2, 3, 4, 5}, {2, 3});
  Tensor p = t.permute({1, 0});
  EXPECT_EQ(p.shape(), (Shape{3, 2}));
  EXPECT_FALSE(p.is_contiguous());
  EXPECT_EQ(p.storage(), t.storage());
  EXPECT_EQ(p.contiguous().to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(t.slice(1, 1, 3).to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  EXPECT_EQ(t.slice(1, 0, 3, 2).to_vector<float>(), (std::vector<float>{0, 2, 3, 5}));
  EXPECT_EQ(t.select(0, -1).to_vector<float>(), (std::vector<float>{3, 4, 5}));
  EXPECT_EQ(t.reshape({3, -1}).shape(), (Shape{3, 2}));
  EXPECT_EQ(t.reshape({3, 2}).storage(), t.storage());
  Tensor e = Tensor::from_vector(std::vector<float>{7, 8}, {2, 1}).expand({2, 3});
  EXPECT_EQ(e.strides(), (Shape{1, 0}));
  EXPECT_EQ(e.to_vector<float>(), (std::vector<float>{7, 7, 7, 8, 8, 8}));
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 2, 3}));
  EXPECT_EQ(t.unsqueeze(-1).squeeze(-1).shape(), (Shape{2, 3}));
  EXPECT_EQ(t.flatten().shape(), (Shape{6}));
  // A permuted tensor cannot be viewed flat, but it can be reshaped (which copies).
  EXPECT_THROW(p.view({6}), Error);
  EXPECT_EQ(p.reshape({6}).to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(Tensor, NhwcActivationLayout) {
  // NCHW -> NHWC is a permute plus a copy; the channel becomes the contiguous dim.
  Tensor nchw = Tensor::arange(2 * 3 * 2 * 2, DType::Float32).reshape({2, 3, 2, 2});
  Tensor nhwc = nchw.permute({0, 2, 3, 1}).contiguous();
  EXPECT_EQ(nhwc.shape(), (Shape{2, 2, 2, 3}));
  EXPECT_EQ(nhwc.stride(3), 1);
  std::vector<float> v = nhwc.to_vector<float>();
  EXPECT_EQ((std::vector<float>(v.begin(), v.begin() + 3)), (std::vector<float>{0, 4, 8}));
}

TEST(Tensor, DtypeConversionsRoundTrip) {
  Tensor x = Tensor::from_vector(std::vector<double>{1.0, -2.5, 3.140625, 65504.0, 1e-3}, {5});
  EXPECT_EQ(x.to(DType::Float32).to(DType::Float64).to_vector<double>()[2], 3.140625);
  std::vector<double> bf = x.to(DType::BFloat16).to(DType::Float64).to_vector<double>();
  EXPECT_EQ(bf[0], 1.0);
  EXPECT_EQ(bf[1], -2.5);
  EXPECT_EQ(bf[2], 3.140625);  // exactly representable with 8 mantissa bits
  std::vector<double> hf = x.to(DType::Float16).to(DType::Float64).to_vector<double>();
  EXPECT_EQ(hf[3], 65504.0);
  EXPECT_NEAR(hf[4], 1e-3, 1e-6);
  EXPECT_EQ(x.to(DType::Int64).to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3, 65504, 0}));
}

TEST(Tensor, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float(bf16(1.0f + 1.0f / 256)), 1.0f);             // tie -> even
  EXPECT_EQ(float(bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);  // tie -> even (up)
  EXPECT_EQ(float(bf16(1.0f + 1.5f / 256)), 1.0f + 2.0f / 256);
  EXPECT_TRUE(std::isnan(float(bf16(std::nanf("")))));
  EXPECT_EQ(float(f16(1.0f / 16777216.0f)), 1.0f / 16777216.0f);  // smallest half subnormal
}

TEST(Tensor, InPlaceOpsAndCopy) {
  Tensor t = Tensor::zeros({2, 2});
  t.fill_(3);
  t.add_(Tensor::ones({2, 2}), 2.0);
  t.mul_(0.5);
  EXPECT_EQ(t.to_vector<float>(), (std::vector<float>(4, 2.5f)));
  Tensor dst = Tensor::zeros({2, 2}, DType::Float64);
  dst.permute({1, 0}).copy_(Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}));
  EXPECT_EQ(dst.to_vector<double>(), (std::vector<double>{1, 3, 2, 4}));
  Tensor leaf = Tensor::zeros({2}).requires_grad_();
  EXPECT_THROW(leaf.fill_(1), Error);
  {
    NoGradGuard no_grad;
    EXPECT_NO_THROW(leaf.fill_(1));
  }
}

TEST(Tensor, BroadcastAndStridedCopies) {
  // Copies walk runs of the innermost dim: memcpy rows (a bias expanded over rows), fills (a column
  // expanded along rows), strided runs (a transpose); sizes that the threads split mid-row.
  Generator gen(5);
  Tensor row = Tensor::randn({1001}, gen), col = Tensor::randn({77, 1}, gen), m = Tensor::randn({301, 257}, gen);
  std::vector<float> rv = row.to_vector<float>(), cv = col.to_vector<float>(), mv = m.to_vector<float>();
  std::vector<float> rows = row.expand({77, 1001}).contiguous().to_vector<float>();
  std::vector<float> cols = col.expand({77, 1001}).contiguous().to_vector<float>();
  for (int64_t i = 0; i < 77; ++i)
    for (int64_t j = 0; j < 1001; ++j) {
      ASSERT_EQ(rows[size_t(i * 1001 + j)], rv[size_t(j)]);
      ASSERT_EQ(cols[size_t(i * 1001 + j)], cv[size_t(i)]);
    }
  std::vector<float> mt = m.transpose(0, 1).contiguous().to_vector<float>();
  Tensor into = Tensor::zeros({257, 301});
  into.transpose(0, 1).copy_(m);
  std::vector<float> iv = into.to_vector<float>();
  for (int64_t i = 0; i < 301; ++i)
    for (int64_t j = 0; j < 257; ++j) {
      ASSERT_EQ(mt[size_t(j * 301 + i)], mv[size_t(i * 257 + j)]);
      ASSERT_EQ(iv[size_t(j * 301 + i)], mv[size_t(i * 257 + j)]);
    }
}

TEST(Tensor, CpuAllocatorReusesFreedBlocks) {
  // Large blocks come back from the cache: the same size, or a size of the same class (8 per power
  // of two), gets the block just freed; a size of another class does not.
  const void* first = nullptr;
  {
    Tensor t = Tensor::empty({300000});
    first = t.data_ptr();
  }
  {
    Tensor t = Tensor::empty({300000});
    EXPECT_EQ(t.data_ptr(), first);
  }
  {
    Tensor t = Tensor::empty({299000});
    EXPECT_EQ(t.data_ptr(), first);
    Tensor u = Tensor::empty({300000});  // the block is taken: a new one
    EXPECT_NE(u.data_ptr(), first);
  }
  Tensor other = Tensor::empty({200000});
  EXPECT_NE(other.data_ptr(), first);
}

TEST(Tensor, BadInputMessages) {
  Tensor t = Tensor::zeros({2, 3});
  EXPECT_THROW(t.reshape({4, 2}), Error);
  EXPECT_THROW(t.permute({0, 0}), Error);
  EXPECT_THROW(t.expand({3, 3}), Error);
  EXPECT_THROW(t.size(2), Error);
  EXPECT_THROW(Tensor::from_vector(std::vector<float>{1, 2}, {3}), Error);
  try {
    t.data<double>();
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("float32"), std::string::npos);
  }
}

TEST(Generator, PhiloxIsCounterBased) {
  Generator a(5), b(5), c(6);
  Tensor x = Tensor::rand({1000}, a), y = Tensor::rand({1000}, b), z = Tensor::rand({1000}, c);
  EXPECT_EQ(x.to_vector<float>(), y.to_vector<float>());
  EXPECT_NE(x.to_vector<float>(), z.to_vector<float>());
  EXPECT_EQ(a.offset(), 1000u);
  // Drawing 600 then 400 gives the same numbers as drawing 1000 at once.
  Generator d(5);
  std::vector<float> first = Tensor::rand({600}, d).to_vector<float>(), second = Tensor::rand({400}, d).to_vector<float>();
  first.insert(first.end(), second.begin(), second.end());
  EXPECT_EQ(first, x.to_vector<float>());
  Tensor n = Tensor::randn({20000}, a, DType::Float64);
  EXPECT_NEAR(mean(n).item(), 0.0, 0.03);
  EXPECT_NEAR(mean(mul(n, n)).item(), 1.0, 0.03);
  double lo = 1, hi = 0;
  for (float v : x.to_vector<float>()) lo = std::min<double>(lo, v), hi = std::max<double>(hi, v);
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
}

TEST(Cuda, CopiesAndRandomMatchTheHost) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator g1(11), g2(11);
  Tensor host = Tensor::randn({3, 5, 7}, g1);
  Tensor dev = Tensor::randn({3, 5, 7}, g2, DType::Float32, Device::cuda());
  EXPECT_EQ(dev.to_vector<float>(), host.to_vector<float>());
  Tensor back = host.cuda().permute({2, 0, 1}).contiguous().to(DType::BFloat16).cpu().to(DType::Float32);
  Tensor expect = host.permute({2, 0, 1}).contiguous().to(DType::BFloat16).to(DType::Float32);
  EXPECT_EQ(back.to_vector<float>(), expect.to_vector<float>());
  Tensor f = Tensor::full({1000}, 1.5, DType::Float16, Device::cuda());
  EXPECT_EQ(sum(f.to(DType::Float32)).item(), 1500.0);
}

// Strided copies on the GPU, vector path (core/ops/copy.cu: a bias expanded over rows, a per-row
// scalar expanded along the rows, a permute that keeps whole rows) and per-element fallbacks (odd
// row length, misaligned slice, a transpose), for every element size.
TEST(Cuda, StridedCopiesMatchTheHost) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  Generator gen(3);
  for (DType dt : {DType::Float64, DType::Float32, DType::BFloat16, DType::UInt8}) {
    auto values = [&](const Shape& shape) { return Tensor::rand(shape, gen, 0.0, 200.0).to(dt); };
    Tensor row = values({48}), col = values({37, 1}), t = values({6, 5, 40}), odd = values({9, 13});
    Tensor flat = values({2001});
    auto check = [&](const std::string& what, const Tensor& host_view, const Tensor& dev_view) {
      EXPECT_EQ(dev_view.contiguous().cpu().to(DType::Float64).to_vector<double>(),
                host_view.contiguous().to(DType::Float64).to_vector<double>())
          << what << " " << dtype_name(dt);
    };
    check("bias over rows", row.expand({37, 48}), row.cuda().expand({37, 48}));
    check("row scalars", col.expand({37, 48}), col.cuda().expand({37, 48}));
    check("permute of whole rows", t.permute({1, 0, 2}), t.cuda().permute({1, 0, 2}));
    check("odd rows", odd.expand({2, 9, 13}), odd.cuda().expand({2, 9, 13}));
    check("misaligned", flat.slice(0, 1, 2001).reshape({50, 40}).permute({1, 0}),
          flat.cuda().slice(0, 1, 2001).reshape({50, 40}).permute({1, 0}));
    check("misaligned rows", flat.slice(0, 1, 1601).reshape({40, 40}).slice(1, 0, 32),
          flat.cuda().slice(0, 1, 1601).reshape({40, 40}).slice(1, 0, 32));
    check("transpose", t.transpose(0, 2), t.cuda().transpose(0, 2));
  }
}

TEST(Cuda, CachingAllocatorReusesBlocks) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  {  // warm the cache with one block of each size the loop asks for
    Tensor a = Tensor::empty({1 << 20}, DType::Float32, Device::cuda());
    Tensor b = Tensor::empty({1000}, DType::Float32, Device::cuda());
  }
  CudaAllocatorStats before = cuda_allocator_stats(0);
  for (int step = 0; step < 50; ++step) {
    Tensor a = Tensor::empty({1 << 20}, DType::Float32, Device::cuda());
    Tensor b = Tensor::empty({1000}, DType::Float32, Device::cuda());
  }
  CudaAllocatorStats after = cuda_allocator_stats(0);
  EXPECT_EQ(after.cuda_malloc_calls, before.cuda_malloc_calls) << "steady state must not call cudaMalloc";
  EXPECT_EQ(after.allocated_bytes, before.allocated_bytes);
  EXPECT_GE(after.peak_allocated_bytes, int64_t(4) << 20);
}

}  // namespace
}  // namespace unirep
