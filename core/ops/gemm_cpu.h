// Row-major GEMM on the CPU, C = alpha op(A) op(B) + beta C with op(A) m x k, op(B) k x n and leading
// dims lda, ldb, ldc: OpenBLAS threaded by us, not by itself.
//
// OpenBLAS is set to one thread when the library starts: its own pthread pool would otherwise run
// next to the OpenMP threads of parallel_for and the two would fight for the cores (on a 2-core
// machine half the time went to spinning and rescheduling). A product large enough to share is
// split instead into panels of C (row panels when op(B) is the smaller operand, else column panels),
// one per OpenMP thread, each a single-threaded BLAS call; inside a parallel region (a batch of small
// products spread over the threads) the call runs whole on the calling thread.
//
// Reproducibility: the reduction dim k is never split, and every panel is large enough for OpenBLAS
// to take the kernels the whole product takes (gemm_cpu.cpp), so every element of C is the same dot
// product accumulated in the same order whatever the number of panels: results are bitwise identical
// run to run and across thread counts (tests/ops/test_gemm_cpu.cpp checks 2, 3 and 4 panels against
// one whole call). Elsewhere (reductions over per-thread partials) results may depend on the thread
// count; they never depend on timing, which is what checkpoint resumption needs.
#pragma once
#include <cstdint>

namespace unirep {

void cpu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void cpu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
              int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

// Panels a product of this shape is split into on the current thread count (1: one whole call).
int64_t cpu_gemm_panels(int64_t m, int64_t n, int64_t k);

}  // namespace unirep
