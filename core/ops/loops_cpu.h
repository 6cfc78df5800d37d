// CPU elementwise loops. cpu_elementwise<scalar_t>(out, f, in...) computes out = f(in...) with
// every operand already of out's shape (expand() inputs first; strides may be 0) and of dtype
// scalar_t; f receives and returns acc_t<scalar_t>.
//
// Contiguous operands take a plain loop the compiler vectorises. Otherwise the dims are merged
// (strided.h) and the loop walks runs along the innermost merged dim, an odometer advancing the
// outer dims once per run (no div/mod per element). When out is dense along the run and every input
// is either dense or constant along it (the broadcasts of NHWC data: [N, H, W, C] with [C],
// [N, 1, 1, C] or [N, H, W, 1]), the run is again a plain vectorisable loop, instantiated per
// input for which of the two it is; any other layout takes an element-by-element loop.
#pragma once
#include <algorithm>
#include <type_traits>
#include <utility>

#include "core/ops/strided.h"
#include "core/parallel.h"
#include "core/tensor.h"

namespace unirep {

// Calls run(off, len) for runs covering the n positions of idx: run covers the positions
// off[k] + j * inner_stride(idx, k), j < len, of the innermost merged dim (at most one row of it).
template <int N, class F> void cpu_strided_runs(StridedIndex<N> idx, int64_t n, const F& run) {
  if (idx.ndim == 0) {  // every dim of size 1: a single position
    idx.ndim = 1;
    idx.sizes[0] = 1;
    for (int k = 0; k < N; ++k) idx.strides[k][0] = 0;
  }
  const int last = idx.ndim - 1;
  const int64_t inner = idx.sizes[last];
  parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    int64_t off[N];
    idx.offsets(begin, off);
    int64_t pos[kMaxDims];
    int64_t rem = begin;
    for (int d = last; d >= 0; --d) {
      pos[d] = rem % idx.sizes[d];
      rem /= idx.sizes[d];
    }
    for (int64_t i = begin;;) {
      const int64_t len = std::min(inner - pos[last], end - i);
      run(static_cast<const int64_t*>(off), len);
      i += len;
      if (i >= end) break;
      // The run ended its row: back to the row's start, then carry into the outer dims.
      for (int k = 0; k < N; ++k) off[k] -= idx.strides[k][last] * pos[last];
      pos[last] = 0;
      for (int d = last - 1; d >= 0; --d) {
        for (int k = 0; k < N; ++k) off[k] += idx.strides[k][d];
        if (++pos[d] < idx.sizes[d]) break;
        for (int k = 0; k < N; ++k) off[k] -= idx.strides[k][d] * idx.sizes[d];
        pos[d] = 0;
      }
    }
  });
}

template <int N> int64_t inner_stride(const StridedIndex<N>& idx, int k) {
  return idx.ndim == 0 ? 0 : idx.strides[k][idx.ndim - 1];
}

// Calls body(off) for every position of idx (off[k]: the offset of operand k).
template <int N, class F> void cpu_strided_for(const StridedIndex<N>& idx, int64_t n, const F& body) {
  int64_t step[N];
  for (int k = 0; k < N; ++k) step[k] = inner_stride(idx, k);
  cpu_strided_runs(idx, n, [&](const int64_t* start, int64_t len) {
    int64_t off[N];
    for (int k = 0; k < N; ++k) off[k] = start[k];
    for (int64_t j = 0; j < len; ++j) {
      body(static_cast<const int64_t*>(off));
      for (int k = 0; k < N; ++k) off[k] += step[k];
    }
  });
}

namespace detail {

// Calls g(std::integral_constant<unsigned, mask>{}) for the runtime mask in [M, Count).
template <unsigned M, unsigned Count, class G> void with_mask(unsigned mask, const G& g) {
  if constexpr (M + 1 < Count) {
    if (mask != M) return with_mask<M + 1, Count>(mask, g);
  }
  g(std::integral_constant<unsigned, M>{});
}

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
  // Bit k of `dense`: input k is dense along the innermost dim (else constant along it).
  bool runs = inner_stride(idx, 0) == 1;
  unsigned dense = 0;
  for (int k = 1; k < N; ++k) {
    const int64_t s = inner_stride(idx, k);
    if (s == 1) dense |= 1u << (k - 1);
    runs = runs && (s == 0 || s == 1);
  }
  if (runs) {
    with_mask<0, (1u << sizeof...(Ins))>(dense, [&](auto mask) {
      constexpr unsigned kDense = decltype(mask)::value;
      cpu_strided_runs(idx, n, [&](const int64_t* off, int64_t len) {
        scalar_t* po = o + off[0];
        const scalar_t* pin[sizeof...(Ins) > 0 ? sizeof...(Ins) : 1] = {(in_ptrs[I] + off[I + 1])...};
        (void)pin;
        for (int64_t j = 0; j < len; ++j)
          po[j] = static_cast<scalar_t>(f(static_cast<acc>(pin[I][(kDense >> I & 1u) ? j : 0])...));
      });
    });
    return;
  }
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
