// CPU elementwise loops. cpu_elementwise<scalar_t>(out, f, in...) computes out = f(in...) with
// every operand already of out's shape (expand() inputs first; strides may be 0) and of dtype
// scalar_t; f receives and returns acc_t<scalar_t>. Contiguous operands take a plain loop the
// compiler vectorises; others walk an odometer per thread chunk (no div/mod per element).
#pragma once
#include <utility>

#include "core/ops/strided.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace unirep {

template <int N, class F> void cpu_strided_for(const StridedIndex<N>& idx, int64_t n, const F& body) {
  parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    int64_t off[N];
    idx.offsets(begin, off);
    int64_t pos[kMaxDims];
    int64_t rem = begin;
    for (int d = idx.ndim - 1; d >= 0; --d) {
      pos[d] = rem % idx.sizes[d];
      rem /= idx.sizes[d];
    }
    for (int64_t i = begin; i < end; ++i) {
      body(off);
      for (int d = idx.ndim - 1; d >= 0; --d) {
        for (int k = 0; k < N; ++k) off[k] += idx.strides[k][d];
        if (++pos[d] < idx.sizes[d]) break;
        for (int k = 0; k < N; ++k) off[k] -= idx.strides[k][d] * idx.sizes[d];
        pos[d] = 0;
      }
    }
  });
}

namespace detail {
template <class scalar_t, class F, size_t... I, class... Ins>
void cpu_elementwise_impl(const Tensor& out, const F& f, std::index_sequence<I...>, const Ins&... ins) {
  using acc = acc_t<scalar_t>;
  constexpr int N = 1 + sizeof...(Ins);
  scalar_t* o = out.data<scalar_t>();
  const scalar_t* in_ptrs[sizeof...(Ins) > 0 ? sizeof...(Ins) : 1] = {ins.template data<scalar_t>()...};
  (void)in_ptrs;
  int64_t n = out.numel();
  bool contiguous = out.is_contiguous() && (ins.is_contiguous() && ...);
  if (contiguous) {
    parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = static_cast<scalar_t>(f(static_cast<acc>(in_ptrs[I][i])...));
    });
    return;
  }
  auto idx = make_strided_index<N>(out.shape(), {&out.strides(), &ins.strides()...});
  cpu_strided_for<N>(idx, n, [&](const int64_t* off) {
    o[off[0]] = static_cast<scalar_t>(f(static_cast<acc>(in_ptrs[I][off[I + 1]])...));
  });
}
}  // namespace detail

template <class scalar_t, class F, class... Ins>
void cpu_elementwise(const Tensor& out, const F& f, const Ins&... ins) {
  detail::cpu_elementwise_impl<scalar_t>(out, f, std::index_sequence_for<Ins...>{}, ins...);
}

}  // namespace unirep
