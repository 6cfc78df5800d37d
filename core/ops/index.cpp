// CPU indexing kernels (index_select, index_add, gather, scatter_add) and the index range check.
// Forward copies move elements by size (any dtype); the backward sums run in acc_t and are
// race-free and deterministic (see core/ops/index.h).
#include "core/ops/index.h"

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <vector>

#include "core/ops/copy.h"
#include "core/ops/strided.h"
#include "core/parallel.h"

namespace unirep {

void check_index_range(const char* op, const Tensor& index, int64_t size, const std::string& what) {
  // A CUDA index is copied to the host here: one transfer and a stream synchronisation.
  Tensor h = index.detach();
  if (h.is_cuda()) h = h.cpu();
  h = h.contiguous();
  const int64_t n = h.numel();
  UNIREP_DISPATCH_INDEX(h.dtype(), op, [&] {
    const index_t* p = h.data<index_t>();
    std::atomic<int64_t> first_bad{n};
    parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        int64_t v = int64_t(p[i]);
        if (v < 0 || v >= size) {
          int64_t cur = first_bad.load();
          while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {
          }
          return;
        }
      }
    });
    int64_t bad = first_bad.load();
    if (bad < n) {
      int64_t v = int64_t(p[bad]);
      throw Error(detail::concat(op, ": index ", v, " (entry ", bad, " of index with shape ", shape_str(h.shape()),
                                 ") out of range [0, ", size, ") for ", what,
                                 v < 0 ? "; negative indices are not allowed" : ""));
    }
  });
}

namespace {

// ---- index_select: rows of `inner` elements copied from x[o, index[k]] to out[o, k]

template <class T, class I>
void index_select_t(T* out, const T* x, const I* idx, int64_t outer, int64_t K, int64_t D, int64_t inner) {
  const int64_t rows = outer * K;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(inner, 1));
  parallel_for(0, rows, grain, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      int64_t o = r / K, k = r - o * K;
      const T* src = x + (o * D + int64_t(idx[k])) * inner;
      T* dst = out + r * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = src[i];
    }
  });
}

template <class I>
void index_select_bytes(const Tensor& out, const Tensor& x, const I* idx, int64_t outer, int64_t K, int64_t D,
                        int64_t inner) {
  switch (x.element_size()) {
    case 1:
      return index_select_t(static_cast<uint8_t*>(out.data_ptr()), static_cast<const uint8_t*>(x.data_ptr()), idx,
                            outer, K, D, inner);
    case 2:
      return index_select_t(static_cast<uint16_t*>(out.data_ptr()), static_cast<const uint16_t*>(x.data_ptr()),
                            idx, outer, K, D, inner);
    case 4:
      return index_select_t(static_cast<uint32_t*>(out.data_ptr()), static_cast<const uint32_t*>(x.data_ptr()),
                            idx, outer, K, D, inner);
    default:
      return index_select_t(static_cast<uint64_t*>(out.data_ptr()), static_cast<const uint64_t*>(x.data_ptr()),
                            idx, outer, K, D, inner);
  }
}

// ---- index_add (backward of index_select): for each destination row d, the ascending list of k
// with index[k] == d (counting sort), summed in acc_t per block of the inner dim.

template <class scalar_t, class I>
void index_add_t(scalar_t* gx, const scalar_t* g, const I* idx, int64_t K, int64_t outer, int64_t D, int64_t inner) {
  using acc = acc_t<scalar_t>;
  std::vector<int64_t> start(static_cast<size_t>(D) + 1, 0), order(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) ++start[size_t(idx[k]) + 1];
  for (int64_t d = 0; d < D; ++d) start[size_t(d) + 1] += start[size_t(d)];
  {
    std::vector<int64_t> cursor(start.begin(), start.end() - 1);
    for (int64_t k = 0; k < K; ++k) order[size_t(cursor[size_t(idx[k])]++)] = k;
  }
  constexpr int64_t kBlock = 2048;
  const int64_t block = std::min<int64_t>(kBlock, std::max<int64_t>(inner, 1));
  const int64_t nblocks = (inner + block - 1) / block;
  const int64_t items = outer * D * nblocks;
  const int64_t work_per_item = block * (1 + (K + D - 1) / std::max<int64_t>(D, 1));
  const int64_t grain = std::max<int64_t>(1, kGrain / work_per_item);
  parallel_for(0, items, grain, [&](int64_t b, int64_t e) {
    std::vector<acc> buf(static_cast<size_t>(block));
    for (int64_t it = b; it < e; ++it) {
      int64_t row = it / nblocks, blk = it - row * nblocks;
      int64_t o = row / D, d = row - o * D;
      int64_t i0 = blk * block, len = std::min(inner, i0 + block) - i0;
      std::fill(buf.begin(), buf.begin() + len, acc(0));
      for (int64_t j = start[size_t(d)]; j < start[size_t(d) + 1]; ++j) {
        const scalar_t* src = g + (o * K + order[size_t(j)]) * inner + i0;
        for (int64_t i = 0; i < len; ++i) buf[size_t(i)] += static_cast<acc>(src[i]);
      }
      scalar_t* dst = gx + row * inner + i0;
      for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<scalar_t>(buf[size_t(i)]);
    }
  });
}

// ---- gather / scatter_add: lines along `dim`. The line shape is index's shape with size 1 at dim;
// each line is handled by one task, walking its K entries with the operands' strides at dim.

Shape line_shape(const Tensor& index, int64_t dim) {
  Shape s = index.shape();
  s[size_t(dim)] = 1;
  return s;
}

template <class T, class I>
void gather_t(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  T* op = static_cast<T*>(out.data_ptr());
  const T* xp = static_cast<const T*>(x.data_ptr());
  const I* ip = index.data<I>();
  const int64_t K = index.size(dim);
  const int64_t so = out.stride(dim), si = index.stride(dim), sx = x.stride(dim);
  Shape ls = line_shape(index, dim);
  auto sidx = make_strided_index<3>(ls, {&out.strides(), &index.strides(), &x.strides()});
  const int64_t lines = shape_numel(ls);
  parallel_for(0, lines, std::max<int64_t>(1, kGrain / std::max<int64_t>(K, 1)), [&](int64_t b, int64_t e) {
    int64_t off[3];
    for (int64_t l = b; l < e; ++l) {
      sidx.offsets(l, off);
      for (int64_t k = 0; k < K; ++k) op[off[0] + k * so] = xp[off[2] + int64_t(ip[off[1] + k * si]) * sx];
    }
  });
}

template <class I> void gather_bytes(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  switch (x.element_size()) {
    case 1: return gather_t<uint8_t, I>(out, x, dim, index);
    case 2: return gather_t<uint16_t, I>(out, x, dim, index);
    case 4: return gather_t<uint32_t, I>(out, x, dim, index);
    default: return gather_t<uint64_t, I>(out, x, dim, index);
  }
}

// acc_buf (contiguous, x's shape, dtype acc_t<scalar_t>) must be zero; lines are disjoint in it.
template <class scalar_t, class I>
void scatter_add_t(const Tensor& acc_buf, const Tensor& grad_out, int64_t dim, const Tensor& index) {
  using acc = acc_t<scalar_t>;
  acc* ap = acc_buf.data<acc>();
  const scalar_t* gp = grad_out.data<scalar_t>();
  const I* ip = index.data<I>();
  const int64_t K = index.size(dim);
  const int64_t sg = grad_out.stride(dim), si = index.stride(dim), sa = acc_buf.stride(dim);
  Shape ls = line_shape(index, dim);
  auto sidx = make_strided_index<3>(ls, {&grad_out.strides(), &index.strides(), &acc_buf.strides()});
  const int64_t lines = shape_numel(ls);
  parallel_for(0, lines, std::max<int64_t>(1, kGrain / std::max<int64_t>(K, 1)), [&](int64_t b, int64_t e) {
    int64_t off[3];
    for (int64_t l = b; l < e; ++l) {
      sidx.offsets(l, off);
      for (int64_t k = 0; k < K; ++k)
        ap[off[2] + int64_t(ip[off[1] + k * si]) * sa] += static_cast<acc>(gp[off[0] + k * sg]);
    }
  });
}

}  // namespace

void index_select_kernel(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer, int64_t D,
                         int64_t inner) {
  if (out.numel() == 0) return;
  if (out.is_cuda()) return cuda::index_select(out, x, index, outer, D, inner);
  Tensor idx = index.contiguous();
  UNIREP_DISPATCH_INDEX(idx.dtype(), "index_select", [&] {
    index_select_bytes(out, x, idx.data<index_t>(), outer, idx.numel(), D, inner);
  });
}

void index_add_backward_kernel(const Tensor& grad_x, const Tensor& grad_out, const Tensor& index, int64_t outer,
                               int64_t D, int64_t inner) {
  if (grad_x.numel() == 0) return;
  if (grad_x.is_cuda()) return cuda::index_add_backward(grad_x, grad_out, index, outer, D, inner);
  Tensor idx = index.contiguous();
  UNIREP_DISPATCH_FLOATING(grad_x.dtype(), "index_select backward", [&] {
    UNIREP_DISPATCH_INDEX(idx.dtype(), "index_select backward", [&] {
      index_add_t(grad_x.data<scalar_t>(), grad_out.data<scalar_t>(), idx.data<index_t>(), idx.numel(), outer, D,
                  inner);
    });
  });
}

void gather_kernel(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index) {
  if (out.numel() == 0) return;
  if (out.is_cuda()) return cuda::gather(out, x, dim, index);
  UNIREP_DISPATCH_INDEX(index.dtype(), "gather", [&] { gather_bytes<index_t>(out, x, dim, index); });
}

void scatter_add_backward_kernel(const Tensor& grad_x, const Tensor& grad_out, int64_t dim, const Tensor& index) {
  if (grad_x.numel() == 0) return;
  if (grad_x.is_cuda()) return cuda::scatter_add_backward(grad_x, grad_out, dim, index);
  UNIREP_DISPATCH_FLOATING(grad_x.dtype(), "gather backward", [&] {
    using acc = acc_t<scalar_t>;
    // float32/float64 accumulate in place; bfloat16/float16 through a float32 buffer.
    Tensor buf = std::is_same_v<acc, scalar_t> ? grad_x : Tensor::empty(grad_x.shape(), DTypeOf<acc>::value);
    fill_tensor(buf, 0.0);
    if (grad_out.numel() > 0) {
      UNIREP_DISPATCH_INDEX(index.dtype(), "gather backward",
                            [&] { scatter_add_t<scalar_t, index_t>(buf, grad_out, dim, index); });
    }
    if (!buf.same(grad_x)) copy_tensor(grad_x, buf);
  });
}

}  // namespace unirep
