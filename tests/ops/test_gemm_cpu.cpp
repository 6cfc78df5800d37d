// The paneled CPU GEMM (core/ops/gemm_cpu.h): the panels of 2, 3 or 4 threads together equal one
// whole single-threaded BLAS call bit for bit (every transpose, row and column splits, odd sizes,
// leading dims wider than the matrix, beta accumulation), which matches a float64 loop.
#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "core/generator.h"
#include "core/ops/gemm_cpu.h"
#include "core/tensor.h"

namespace unirep {
namespace {

struct Case {
  bool ta, tb;
  int64_t m, n, k;
};

// Sets the OpenMP thread count for a scope.
struct Threads {
  int saved = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
};

// Uniform [-1, 1) values from a xorshift stream (cheap: the matrices hold millions of elements).
std::vector<float> random_floats(uint64_t& state, int64_t count) {
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    x = float(int64_t(state >> 40) - (int64_t(1) << 23)) / float(1 << 23);
  }
  return v;
}

TEST(GemmCpu, PanelsEqualOneWholeCallBitwise) {
  uint64_t gen = 7;
  // Row panels (n <= m) and column panels (n > m), the shapes of the model's GEMMs (pointwise convs,
  // weight gradients with a long k), odd sizes that end panels mid-vector, and products just large
  // enough to split (panels at OpenBLAS's small-matrix limit); 2, 3 and 4 panels.
  const std::vector<Case> cases = {{false, true, 1000, 40, 160},  {false, false, 1000, 160, 40},
                                   {true, false, 160, 40, 4100},  {true, false, 37, 301, 2000},
                                   {false, true, 33, 517, 129},   {true, true, 301, 77, 120},
                                   {false, false, 1, 1280, 4096}, {false, true, 4097, 3, 640},
                                   {false, false, 320, 50, 140},  {true, true, 182, 103, 169}};
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "ta " << c.ta << " tb " << c.tb << " m " << c.m << " n " << c.n << " k "
                                      << c.k);
    const int64_t lda = (c.ta ? c.m : c.k) + 3, ldb = (c.tb ? c.k : c.n) + 5, ldc = c.n + 2;
    const std::vector<float> a = random_floats(gen, (c.ta ? c.k : c.m) * lda);
    const std::vector<float> b = random_floats(gen, (c.tb ? c.n : c.k) * ldb);
    const std::vector<float> c0 = random_floats(gen, c.m * ldc);
    for (float beta : {0.0f, 0.5f}) {
      std::vector<float> whole = c0;
      cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans, c.tb ? CblasTrans : CblasNoTrans, int(c.m),
                  int(c.n), int(c.k), 1.5f, a.data(), int(lda), b.data(), int(ldb), beta, whole.data(), int(ldc));
      for (int threads : {2, 3, 4}) {
        Threads scope(threads);
        ASSERT_GT(cpu_gemm_panels(c.m, c.n, c.k), 1) << threads << " threads";
        std::vector<float> paneled = c0;
        cpu_gemm(c.ta, c.tb, c.m, c.n, c.k, 1.5f, a.data(), lda, b.data(), ldb, beta, paneled.data(), ldc);
        ASSERT_EQ(0, std::memcmp(whole.data(), paneled.data(), whole.size() * sizeof(float)))
            << "beta " << beta << ", " << cpu_gemm_panels(c.m, c.n, c.k) << " panels";
      }
      // And the values: a float64 loop, for a sample of elements (padding columns untouched).
      for (int64_t i = 0; i < c.m; i += 7) {
        for (int64_t j = 0; j < c.n; j += 5) {
          double ref = beta * double(c0[size_t(i * ldc + j)]);
          for (int64_t p = 0; p < c.k; ++p)
            ref += 1.5 * double(a[size_t(c.ta ? p * lda + i : i * lda + p)]) *
                   double(b[size_t(c.tb ? j * ldb + p : p * ldb + j)]);
          EXPECT_NEAR(whole[size_t(i * ldc + j)], ref, 1e-5 * std::sqrt(double(c.k)) * 4) << i << ", " << j;
        }
        for (int64_t j = c.n; j < ldc; ++j) EXPECT_EQ(whole[size_t(i * ldc + j)], c0[size_t(i * ldc + j)]);
      }
    }
  }
}

TEST(GemmCpu, DoublePanelsEqualOneWholeCall) {
  Threads scope(2);
  const int64_t m = 515, n = 33, k = 300;
  ASSERT_GT(cpu_gemm_panels(m, n, k), 1);
  Generator gen(3);
  Tensor a = Tensor::randn({m, k}, gen, DType::Float64), b = Tensor::randn({n, k}, gen, DType::Float64);
  std::vector<double> whole(size_t(m * n)), paneled(size_t(m * n));
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.0, a.data<double>(), int(k),
              b.data<double>(), int(k), 0.0, whole.data(), int(n));
  cpu_gemm(false, true, m, n, k, 1.0, a.data<double>(), k, b.data<double>(), k, 0.0, paneled.data(), n);
  EXPECT_EQ(whole, paneled);
}

TEST(GemmCpu, SmallProductsStayWhole) {
  Threads scope(2);
  EXPECT_EQ(cpu_gemm_panels(8, 8, 8), 1);
  EXPECT_EQ(cpu_gemm_panels(100, 100, 150), 1);  // halves under OpenBLAS's small-matrix limit
  EXPECT_EQ(cpu_gemm_panels(4096, 160, 40), 2);
#pragma omp parallel num_threads(2)
  {
    if (omp_get_thread_num() == 0) {
      EXPECT_EQ(cpu_gemm_panels(4096, 4096, 64), 1);  // nested: runs whole
    }
  }
}

}  // namespace
}  // namespace unirep
