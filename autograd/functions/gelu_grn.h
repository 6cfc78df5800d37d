// Fused exact GELU + Global Response Normalisation, the UniRepLKNet MLP's gelu then GRN (spec 2.7):
//   z = gelu(h);  G = ||z||_2 over the positions, per sample and channel;  Nx = G / (mean_F G + 1e-6);
//   out = (gamma Nx + 1) z + beta.
// h is [N, ..., F] (NHWC: the positions are the dims between the first and the last), any floating
// dtype; gamma and beta have F elements (GRN's [1, 1, 1, F], or [F]) and beta may be undefined.
// gamma/beta have h's dtype, or float32 next to a bf16/f16 h (autocast's master parameters: no
// casts, as batch_norm; their gradients are then float32). The output and h's gradient have h's
// dtype; z is computed in float32 (float64 for float64 h) and never rounded.
// The graph keeps only h and the per-(sample, channel) norms G: the backward recomputes gelu(h).
// Kernels and the backward math: core/ops/gelu_grn.h.
#pragma once
#include "core/tensor.h"

namespace unirep {

Tensor gelu_grn(const Tensor& h, const Tensor& gamma, const Tensor& beta);

// linear(gelu_grn(h, gamma, beta), weight, bias): the block's MLP after pwconv1, with the GRN output
// (the linear's input, 4x the block's channels) not kept for backward: the graph holds h, G and the
// per-(sample, channel) GRN scale, and the backward rebuilds the linear's input with one pass over h
// (core/ops/gelu_grn.h, gelu_grn_apply) for the weight gradient, then drops it. Against gelu_grn then
// linear that trades one elementwise pass for the largest tensor a training step saves per block
// (UniRepLKNet-T, bf16, batch 128: 2.4 GB). weight [out, F], bias [out] or undefined; under autocast
// weight and bias are cast as linear's are (gamma and beta are not, as gelu_grn's).
Tensor gelu_grn_linear(const Tensor& h, const Tensor& gamma, const Tensor& beta, const Tensor& weight,
                       const Tensor& bias);

}  // namespace unirep
