#include "core/ops/reduce.h"

#include <limits>
#include <vector>

#include "core/parallel.h"

namespace unirep {

namespace {

template <class acc> struct Reducer {
  ReduceOp op;
  acc init() const { return op == ReduceOp::Max ? -std::numeric_limits<acc>::infinity() : acc(0); }
  acc step(acc a, acc v) const {
    switch (op) {
      case ReduceOp::Sum: return a + v;
      case ReduceOp::Max: return (v > a || v != v) ? v : a;  // NaN propagates
      default: return a + v * v;
    }
  }
  acc combine(acc a, acc b) const { return op == ReduceOp::Max ? step(a, b) : a + b; }
};

template <class T> void reduce_rows_cpu(T* out, const T* x, int64_t rows, int64_t cols, ReduceOp op) {
  using acc = acc_t<T>;
  Reducer<acc> r{op};
  if (rows >= num_threads() || cols < kGrain) {
    parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* row = x + i * cols;
        acc a = r.init();
        for (int64_t j = 0; j < cols; ++j) a = r.step(a, static_cast<acc>(row[j]));
        out[i] = static_cast<T>(a);
      }
    });
    return;
  }
  // Few long rows: split each row across the threads, then combine the partials.
  for (int64_t i = 0; i < rows; ++i) {
    const T* row = x + i * cols;
    std::vector<acc> partial(size_t(num_threads()), r.init());
    parallel_for(0, cols, kGrain, [&](int64_t b, int64_t e) {
      acc a = r.init();
      for (int64_t j = b; j < e; ++j) a = r.step(a, static_cast<acc>(row[j]));
      partial[size_t(omp_get_thread_num())] = a;
    });
    acc a = r.init();
    for (acc p : partial) a = r.combine(a, p);
    out[i] = static_cast<T>(a);
  }
}

}  // namespace

void reduce_rows(const Tensor& out, const Tensor& x, int64_t rows, int64_t cols, ReduceOp op) {
  UNIREP_CHECK(x.is_contiguous() && out.is_contiguous(), "reduce: operands must be contiguous");
  if (out.is_cuda()) return cuda::reduce_rows(out, x, rows, cols, op);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "reduce", [&] {
    reduce_rows_cpu(out.data<scalar_t>(), x.data<scalar_t>(), rows, cols, op);
  });
}

}  // namespace unirep
