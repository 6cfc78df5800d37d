// Matrix products: CPU through OpenBLAS (bf16/f16 computed in float), CUDA through cuBLAS with
// float32 accumulation (no TF32: float32 results match the CPU reference). Under autocast both run
// in the autocast dtype (autograd/autocast.h).
#pragma once
#include "core/tensor.h"

namespace unirep {

// a [..., m, k] x b [..., k, n] -> [..., m, n]; batch dims broadcast; 1-d operands as in torch.matmul.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in], weight [out, in] (PyTorch layout), bias [out] or undefined -> [..., out].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace unirep
