// CPU GEMM: OpenBLAS on one thread per call, panels of C over the OpenMP threads (core/ops/gemm_cpu.h).
#include "core/ops/gemm_cpu.h"

#include <cblas.h>

#include <algorithm>
#include <utility>

#include "core/parallel.h"

namespace unirep {

namespace {

// Runs before main (OpenBLAS initialises itself when its shared library loads, earlier still). The
// object file is always linked: every GEMM of the library comes through this file.
const bool kBlasSingleThreaded = [] {
  openblas_set_num_threads(1);
  return true;
}();

// Multiply-adds every panel gets at least. Above OpenBLAS's small-matrix limit (about 10^6 on
// x86-64; smaller products go to other kernels, which round differently) every panel takes the
// kernels the whole product takes, which is what makes the result independent of the split; and a
// panel is then tens of microseconds of one core, well above the cost of a parallel region.
constexpr int64_t kPanelWork = int64_t(1) << 20;
// Panel boundaries fall on multiples of the widest SIMD row of the kernels.
constexpr int64_t kPanelAlign = 16;

// [begin, end) of panel p of `panels` over `extent` rows or columns.
std::pair<int64_t, int64_t> panel_bounds(int64_t extent, int64_t p, int64_t panels) {
  const int64_t units = (extent + kPanelAlign - 1) / kPanelAlign;
  return {std::min(extent, units * p / panels * kPanelAlign), std::min(extent, units * (p + 1) / panels * kPanelAlign)};
}

inline CBLAS_TRANSPOSE op(bool t) { return t ? CblasTrans : CblasNoTrans; }

void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, op(ta), op(tb), int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c,
              int(ldc));
}
void blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
          const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, op(ta), op(tb), int(m), int(n), int(k), alpha, a, int(lda), b, int(ldb), beta, c,
              int(ldc));
}

// Row panels duplicate the packing of op(B) (k x n) in every panel, column panels that of op(A)
// (m x k): split the dim whose other operand is the smaller one.
bool split_rows(int64_t m, int64_t n) { return n <= m; }

template <class T>
void gemm_panels(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                 int64_t ldb, T beta, T* c, int64_t ldc) {
  const int64_t panels = cpu_gemm_panels(m, n, k);
  if (panels <= 1) return blas(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  const bool rows = split_rows(m, n);
  const int64_t extent = rows ? m : n;
  parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const auto [begin, end] = panel_bounds(extent, p, panels);
      if (rows)
        blas(ta, tb, end - begin, n, k, alpha, a + (ta ? begin : begin * lda), lda, b, ldb, beta, c + begin * ldc,
             ldc);
      else
        blas(ta, tb, m, end - begin, k, alpha, a, lda, b + (tb ? begin * ldb : begin), ldb, beta, c + begin, ldc);
    }
  });
}

}  // namespace

int64_t cpu_gemm_panels(int64_t m, int64_t n, int64_t k) {
  if (omp_in_parallel()) return 1;
  const bool rows = split_rows(m, n);
  const int64_t extent = rows ? m : n, other = rows ? n : m;
  const int64_t units = (extent + kPanelAlign - 1) / kPanelAlign;
  for (int64_t panels = std::min<int64_t>(num_threads(), units); panels > 1; --panels) {
    int64_t smallest = extent;
    for (int64_t p = 0; p < panels; ++p) {
      const auto [begin, end] = panel_bounds(extent, p, panels);
      smallest = std::min(smallest, end - begin);
    }
    if (smallest * other * k >= kPanelWork) return panels;
  }
  return 1;
}

void cpu_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_panels(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void cpu_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
              const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  gemm_panels(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace unirep
