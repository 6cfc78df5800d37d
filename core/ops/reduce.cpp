#include "core/ops/reduce.h"

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/parallel.h"

namespace unirep {

namespace {

// The op is a template parameter so that the column loops (independent columns, no reassociation)
// vectorise.
template <class acc, ReduceOp Op> struct Reducer {
  static acc init() { return Op == ReduceOp::Max ? -std::numeric_limits<acc>::infinity() : acc(0); }
  static acc step(acc a, acc v) {
    if constexpr (Op == ReduceOp::Sum) return a + v;
    if constexpr (Op == ReduceOp::Max) return (v > a || v != v) ? v : a;  // NaN propagates
    return a + v * v;
  }
  static acc combine(acc a, acc b) { return Op == ReduceOp::Max ? step(a, b) : a + b; }
};

template <class F> void with_op(ReduceOp op, const F& f) {
  switch (op) {
    case ReduceOp::Sum: return f(std::integral_constant<ReduceOp, ReduceOp::Sum>{});
    case ReduceOp::Max: return f(std::integral_constant<ReduceOp, ReduceOp::Max>{});
    default: return f(std::integral_constant<ReduceOp, ReduceOp::SumSquares>{});
  }
}

template <class T, ReduceOp Op> void reduce_rows_cpu(T* out, const T* x, int64_t rows, int64_t cols) {
  using acc = acc_t<T>;
  using r = Reducer<acc, Op>;
  if (rows >= num_threads() || cols < kGrain) {
    parallel_for(0, rows, std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* row = x + i * cols;
        acc a = r::init();
        for (int64_t j = 0; j < cols; ++j) a = r::step(a, static_cast<acc>(row[j]));
        out[i] = static_cast<T>(a);
      }
    });
    return;
  }
  // Few long rows: split each row across the threads, then combine the partials.
  for (int64_t i = 0; i < rows; ++i) {
    const T* row = x + i * cols;
    std::vector<acc> partial(size_t(num_threads()), r::init());
    parallel_for(0, cols, kGrain, [&](int64_t b, int64_t e) {
      acc a = r::init();
      for (int64_t j = b; j < e; ++j) a = r::step(a, static_cast<acc>(row[j]));
      partial[size_t(omp_get_thread_num())] = a;
    });
    acc a = r::init();
    for (acc p : partial) a = r::combine(a, p);
    out[i] = static_cast<T>(a);
  }
}

// One slice [rows, cols]: each thread reduces a band of rows into its own column vector; the bands
// are then combined in a fixed order, so the result does not depend on timing.
template <class T, ReduceOp Op> void reduce_cols_slice(T* out, const T* x, int64_t rows, int64_t cols) {
  using acc = acc_t<T>;
  using r = Reducer<acc, Op>;
  int64_t bands = std::clamp<int64_t>(rows * cols / kGrain, 1, num_threads());
  std::vector<acc> partial(size_t(bands * cols), r::init());
  parallel_for(0, bands, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      acc* p = partial.data() + b * cols;
      for (int64_t i = rows * b / bands; i < rows * (b + 1) / bands; ++i) {
        const T* row = x + i * cols;
        for (int64_t j = 0; j < cols; ++j) p[j] = r::step(p[j], static_cast<acc>(row[j]));
      }
    }
  });
  parallel_for(0, cols, kGrain, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      acc a = partial[size_t(j)];
      for (int64_t b = 1; b < bands; ++b) a = r::combine(a, partial[size_t(b * cols + j)]);
      out[j] = static_cast<T>(a);
    }
  });
}

// Several slices: one thread per slice, rows accumulated in order (thread-count independent).
template <class T, ReduceOp Op> void reduce_cols_cpu(T* out, const T* x, int64_t outer, int64_t rows, int64_t cols) {
  using acc = acc_t<T>;
  if (outer < num_threads()) {
    for (int64_t o = 0; o < outer; ++o) reduce_cols_slice<T, Op>(out + o * cols, x + o * rows * cols, rows, cols);
    return;
  }
  using r = Reducer<acc, Op>;
  parallel_for(0, outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(rows * cols, 1)), [&](int64_t o0, int64_t o1) {
    std::vector<acc> p(static_cast<size_t>(cols));
    for (int64_t o = o0; o < o1; ++o) {
      std::fill(p.begin(), p.end(), r::init());
      for (int64_t i = 0; i < rows; ++i) {
        const T* row = x + (o * rows + i) * cols;
        for (int64_t j = 0; j < cols; ++j) p[size_t(j)] = r::step(p[size_t(j)], static_cast<acc>(row[j]));
      }
      for (int64_t j = 0; j < cols; ++j) out[o * cols + j] = static_cast<T>(p[size_t(j)]);
    }
  });
}

}  // namespace

void reduce_cols(const Tensor& out, const Tensor& x, int64_t outer, int64_t rows, int64_t cols, ReduceOp op) {
  UNIREP_CHECK(x.is_contiguous() && out.is_contiguous(), "reduce: operands must be contiguous");
  if (out.is_cuda()) return cuda::reduce_cols(out, x, outer, rows, cols, op);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "reduce", [&] {
    with_op(op, [&](auto o) {
      reduce_cols_cpu<scalar_t, o()>(out.data<scalar_t>(), x.data<scalar_t>(), outer, rows, cols);
    });
  });
}

void reduce_rows(const Tensor& out, const Tensor& x, int64_t rows, int64_t cols, ReduceOp op) {
  UNIREP_CHECK(x.is_contiguous() && out.is_contiguous(), "reduce: operands must be contiguous");
  if (out.is_cuda()) return cuda::reduce_rows(out, x, rows, cols, op);
  UNIREP_DISPATCH_FLOATING(x.dtype(), "reduce", [&] {
    with_op(op, [&](auto o) { reduce_rows_cpu<scalar_t, o()>(out.data<scalar_t>(), x.data<scalar_t>(), rows, cols); });
  });
}

}  // namespace unirep
