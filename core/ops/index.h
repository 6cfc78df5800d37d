// Indexing kernels: index_select / index_add and gather / scatter_add (torch semantics).
//
// index_select along dim d views x as [outer, D, inner] (contiguous) and writes
//   out[o, k, i] = x[o, index[k], i]                 out: [outer, K, inner]
// and its gradient is an index_add into zeros:
//   grad_x[o, d, i] = sum over k with index[k] == d of grad_out[o, k, i].
// gather along dim d (index has x's rank, index.size(j) <= x.size(j) for j != d) writes, for every
// position p of index,
//   out[p] = x[p with coordinate d replaced by index[p]]
// and its gradient scatter-adds grad_out[p] into grad_x at the same place.
//
// Index tensors are int32 or int64. Every entry must lie in [0, size) (negative indices are errors,
// not wrapped): callers run check_index_range before any kernel below (the kernels assume valid
// indices); it throws naming the op, the value and the range. For a CUDA index that check copies
// the index to the host, which waits for the stream (a host synchronisation per call) and costs one
// device-to-host transfer of the index: index tensors are small next to the data they index, and an
// out-of-range index on the device would otherwise be a silent out-of-bounds access.
//
// The backward kernels do not re-validate (the forward did, and the CUDA check would cost a second
// host synchronisation). On the CPU the reductions are race-free and deterministic: index_add
// builds, for each destination row d, the list of k with index[k] == d (ascending) and sums it in
// acc_t; scatter_add walks each line along dim sequentially, one line per task. On CUDA both use
// atomicAdd: natively into float32/float64 gradients, into a float32 buffer for bfloat16/float16
// (converted at the end), so repeated indices accumulate at float precision.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace unirep {

// Throws "<op>: index <v> out of range [0, <size>) ..." at the first offending entry. `what`
// describes the indexed dim for the message (e.g. "dim 1 of x with shape [2, 5, 3]").
void check_index_range(const char* op, const Tensor& index, int64_t size, const std::string& what);

// out: contiguous [outer, K, inner]; x: contiguous [outer, D, inner]; index: 1-d with K entries.
// Any dtype (the copy only moves elements).
void index_select_kernel(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer, int64_t D,
                         int64_t inner);
// grad_x: contiguous [outer, D, inner], fully overwritten with the index_add of grad_out
// (contiguous [outer, K, inner]) into zeros. Floating dtypes.
void index_add_backward_kernel(const Tensor& grad_x, const Tensor& grad_out, const Tensor& index, int64_t outer,
                               int64_t D, int64_t inner);
// out: contiguous, index's shape; x, index: any strides; any dtype.
void gather_kernel(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index);
// grad_x: contiguous, fully overwritten with zeros scatter-added with grad_out (index's shape, any
// strides) at the positions index names. Floating dtypes.
void scatter_add_backward_kernel(const Tensor& grad_x, const Tensor& grad_out, int64_t dim, const Tensor& index);

namespace cuda {
void index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer, int64_t D, int64_t inner);
void index_add_backward(const Tensor& grad_x, const Tensor& grad_out, const Tensor& index, int64_t outer, int64_t D,
                        int64_t inner);
void gather(const Tensor& out, const Tensor& x, int64_t dim, const Tensor& index);
void scatter_add_backward(const Tensor& grad_x, const Tensor& grad_out, int64_t dim, const Tensor& index);
}  // namespace cuda

}  // namespace unirep
