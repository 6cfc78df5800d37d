// CUDA batch norm reductions against the CPU at shapes that pick every finish team (norm.cu: 32,
// 64, 128 or 256 threads per channel, by the number of row ranges), for float32 and bf16, the
// 16-byte vector path and the one-channel-per-thread path (C not a multiple of the vector width),
// channel-first inputs, and the split (SyncBN) kernels; each CUDA result computed twice must be
// bitwise the same. Everything here skips without a device.
#include <string>
#include <vector>

#include "core/ops/norm.h"
#include "tests/support/op_case.h"

namespace unirep {
namespace {

struct FinishCase {
  int64_t rows, C;
  const char* why;
};

// Row ranges per channel (nsplit) for bf16 / f32 follow from the channel-last block shape,
// rs = 256 / (C / V) rows a block and at least 8 rows a thread, at most 1024 ranges.
const std::vector<FinishCase> kCases = {
    {40, 3, "one range, scalar"},
    {200000, 3, "~290 ranges, scalar: team of 128"},
    {20000, 80, "~100 / ~170 ranges: teams of 32 and 64"},
    {40000, 80, "~200 / ~330 ranges: teams of 64 and 128"},
    {100352, 80, "~500 / ~840 ranges: teams of 128 and 256"},
    {30000, 100, "C % 8 == 4: scalar in bf16, vectors in f32"},
    {25088, 163, "odd C: scalar"},
    {25088, 320, "T stage 3"},
    {6272, 640, "T stage 4"},
};

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.to(DType::Float32).cpu().to_vector<float>() == b.to(DType::Float32).cpu().to_vector<float>();
}

struct BnResult {
  Tensor y, rm, rv, dx, dw, db;
};

BnResult run_bn(const Tensor& x_cpu, const Tensor& w, const Tensor& b, const Tensor& up, int64_t dim,
                Device dev) {
  const int64_t C = x_cpu.size(dim);
  Tensor x = x_cpu.to(dev).detach().requires_grad_();
  Tensor wd = w.to(dev).detach().requires_grad_(), bd = b.to(dev).detach().requires_grad_();
  Tensor rm = Tensor::zeros({C}, DType::Float32, dev), rv = Tensor::ones({C}, DType::Float32, dev);
  Tensor y = batch_norm(x, wd, bd, rm, rv, true, 0.1, 1e-5, dim);
  y.backward(up.to(dev));
  return {y.cpu(), rm.cpu(), rv.cpu(), x.grad().cpu(), wd.grad().cpu(), bd.grad().cpu()};
}

void expect_bn_matches(const Tensor& x, int64_t dim, Generator& gen, const std::string& what) {
  const int64_t C = x.size(dim);
  const Tensor w = Tensor::rand({C}, gen, 0.5, 1.5), b = Tensor::randn({C}, gen);
  const Tensor up = Tensor::randn(x.shape(), gen, x.dtype());
  const BnResult cpu = run_bn(x, w, b, up, dim, Device::cpu());
  const BnResult gpu = run_bn(x, w, b, up, dim, Device::cuda());
  const BnResult again = run_bn(x, w, b, up, dim, Device::cuda());
  const double tol = x.dtype() == DType::Float32 ? 1e-5 : 1e-2;
  const std::vector<std::pair<const char*, std::pair<Tensor, Tensor>>> pairs = {
      {"y", {gpu.y, cpu.y}},    {"running_mean", {gpu.rm, cpu.rm}}, {"running_var", {gpu.rv, cpu.rv}},
      {"dx", {gpu.dx, cpu.dx}}, {"dweight", {gpu.dw, cpu.dw}},      {"dbias", {gpu.db, cpu.db}}};
  for (const auto& [name, p] : pairs) EXPECT_LT(testing::relative_error(p.first, p.second), tol) << what << " " << name;
  const std::vector<std::pair<const char*, std::pair<Tensor, Tensor>>> runs = {
      {"y", {gpu.y, again.y}},    {"running_mean", {gpu.rm, again.rm}}, {"running_var", {gpu.rv, again.rv}},
      {"dx", {gpu.dx, again.dx}}, {"dweight", {gpu.dw, again.dw}},      {"dbias", {gpu.db, again.db}}};
  for (const auto& [name, p] : runs) EXPECT_TRUE(bitwise_equal(p.first, p.second)) << what << " " << name << " run to run";
}

TEST(Norm, CudaBatchNormFinishTeamsMatchCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator gen(41);
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    for (const FinishCase& k : kCases) {
      Tensor x;
      {
        NoGradGuard no_grad;
        x = add_scalar(Tensor::randn({k.rows, k.C}, gen, DType::Float32), 0.75).to(dt);
      }
      expect_bn_matches(x, -1, gen,
                        std::string(dtype_name(dt)) + " rows " + std::to_string(k.rows) + " C " + std::to_string(k.C) +
                            " (" + k.why + ")");
    }
  }
}

// Channel-first: a block per (channel, range), up to 1024 / C ranges (341 for C = 3: team of 128).
TEST(Norm, CudaBatchNormFinishChannelFirstMatchesCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator gen(42);
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    for (const Shape& shape : {Shape{64, 3, 64, 64}, Shape{8, 24, 28, 28}, Shape{2, 5, 3, 3}}) {
      const Tensor x = Tensor::randn(shape, gen, dt);
      expect_bn_matches(x, 1, gen, std::string(dtype_name(dt)) + " " + shape_str(shape));
    }
  }
}

// The split kernels SyncBN runs around its all-reduces, called directly: the part's float64 sums,
// mean/invstd and running stats from them, and the backward reduce.
TEST(Norm, CudaBatchNormSplitKernelsMatchCpu) {
  UNIREP_SKIP_WITHOUT_CUDA();
  Generator gen(43);
  for (DType dt : {DType::Float32, DType::BFloat16}) {
    for (const FinishCase& k : kCases) {
      const std::string what =
          std::string(dtype_name(dt)) + " rows " + std::to_string(k.rows) + " C " + std::to_string(k.C);
      const NormShape s{k.rows, k.C, 1};
      Tensor x;
      {
        NoGradGuard no_grad;
        x = add_scalar(Tensor::randn({k.rows, k.C}, gen, DType::Float32), -0.5).to(dt);
      }
      const Tensor dy = Tensor::randn({k.rows, k.C}, gen, dt);
      struct Split {
        Tensor sums, mean, invstd, rm, rv, grad_sums, dw, db;
      };
      auto run = [&](Device dev) {
        Split r;
        const Tensor xd = x.to(dev), dyd = dy.to(dev);
        r.sums = Tensor::empty({2 * k.C + 1}, DType::Float64, dev);
        batch_norm_partial_sums(r.sums, xd, s);
        r.mean = Tensor::empty({k.C}, DType::Float32, dev);
        r.invstd = Tensor::empty({k.C}, DType::Float32, dev);
        r.rm = Tensor::zeros({k.C}, DType::Float32, dev);
        r.rv = Tensor::ones({k.C}, DType::Float32, dev);
        batch_norm_stats_from_sums(r.mean, r.invstd, r.sums, r.rm, r.rv, 0.1, 1e-5);
        r.grad_sums = Tensor::empty({2 * k.C}, DType::Float32, dev);
        r.dw = Tensor::empty({k.C}, DType::Float32, dev);
        r.db = Tensor::empty({k.C}, DType::Float32, dev);
        batch_norm_backward_reduce(r.grad_sums, r.dw, r.db, dyd, xd, r.mean, r.invstd, s);
        return Split{r.sums.cpu(), r.mean.cpu(), r.invstd.cpu(), r.rm.cpu(), r.rv.cpu(), r.grad_sums.cpu(),
                     r.dw.cpu(), r.db.cpu()};
      };
      const Split cpu = run(Device::cpu()), gpu = run(Device::cuda()), again = run(Device::cuda());
      EXPECT_LT(testing::relative_error(gpu.sums, cpu.sums), 1e-5) << what << " sums";
      EXPECT_LT(testing::relative_error(gpu.mean, cpu.mean), 1e-5) << what << " mean";
      EXPECT_LT(testing::relative_error(gpu.invstd, cpu.invstd), 1e-5) << what << " invstd";
      EXPECT_LT(testing::relative_error(gpu.rv, cpu.rv), 1e-5) << what << " running_var";
      EXPECT_LT(testing::relative_error(gpu.grad_sums, cpu.grad_sums), 1e-4) << what << " grad_sums";
      EXPECT_LT(testing::relative_error(gpu.dw, cpu.dw), 1e-4) << what << " dweight";
      EXPECT_LT(testing::relative_error(gpu.db, cpu.db), 1e-4) << what << " dbias";
      EXPECT_TRUE(bitwise_equal(gpu.sums, again.sums) && bitwise_equal(gpu.mean, again.mean) &&
                  bitwise_equal(gpu.invstd, again.invstd) && bitwise_equal(gpu.grad_sums, again.grad_sums))
          << what << " run to run";
    }
  }
}

// Mean 1000, std 1, float32, 131,072 rows of 64 channels (1024 row ranges: the team of 256): the
// finish's float64 merge around the first range's mean keeps the variance as accurate as a centred
// two-pass one in float64 (momentum 1: the running stats are the batch mean and unbiased variance).
TEST(Norm, CudaBatchNormLargeMeanManyRanges) {
  UNIREP_SKIP_WITHOUT_CUDA();
  const int64_t rows = 131072, C = 64;
  Generator gen(44);
  Tensor x;
  {
    NoGradGuard no_grad;
    x = add_scalar(Tensor::randn({rows, C}, gen, DType::Float64), 1000.0).to(DType::Float32);
  }
  const std::vector<double> xv = x.to(DType::Float64).to_vector<double>();
  Tensor rm = Tensor::zeros({C}, DType::Float32, Device::cuda()), rv = Tensor::ones({C}, DType::Float32, Device::cuda());
  batch_norm(x.cuda(), Tensor(), Tensor(), rm, rv, true, 1.0, 0.0);
  const std::vector<float> rmv = rm.cpu().to_vector<float>(), rvv = rv.cpu().to_vector<float>();
  for (int64_t c = 0; c < C; ++c) {
    double mean = 0, m2 = 0;
    for (int64_t r = 0; r < rows; ++r) mean += xv[size_t(r * C + c)];
    mean /= double(rows);
    for (int64_t r = 0; r < rows; ++r) m2 += (xv[size_t(r * C + c)] - mean) * (xv[size_t(r * C + c)] - mean);
    EXPECT_NEAR(rmv[size_t(c)], mean, 1e-4) << "channel " << c;
    EXPECT_NEAR(rvv[size_t(c)] / (m2 / double(rows - 1)), 1.0, 1e-4) << "channel " << c;
  }
}

}  // namespace
}  // namespace unirep
