// Fused exact GELU + Global Response Normalisation (the UniRepLKNet MLP: GRN(gelu(pwconv1(x)))).
// h is contiguous [N, P, F] (NHWC with P = H*W positions); per sample n and channel f:
//
//   z = gelu(h)                          (exact erf GELU, ew::gelu)
//   S[n,f] = sum_p z^2,  G = sqrt(S),    d[n] = mean_f G[n,f] + eps,   Nx = G / d
//   scale[n,f] = gamma[f] Nx + 1,        out = scale z + beta[f]       (beta may be absent)
//
// Backward, given dy (sums over p unless noted):
//   A[n,f] = sum_p dy z,  B[n,f] = sum_p dy
//   dbeta[f] = sum_n B,   dgamma[f] = sum_n A Nx,   dNx = A gamma
//   Nx_f = G_f / d with d = (1/F) sum_k G_k + eps couples the channels of a sample:
//     dG_f = dNx_f / d - (1/F) sum_k dNx_k G_k / d^2 = (dNx_f - c) / d,   c[n] = (1/F) sum_k dNx_k Nx_k
//   G = sqrt(S):  dz from G = dG z / G  (0 where G == 0: the whole channel is 0 there)
//   dz = dy scale + z k,  k[n,f] = dG / G (or 0),   dh = dz gelu'(h)
//
// Memory trick: z is never stored. The forward reads h twice (sums, then out) and keeps only the
// per-(n, f) norms G ([N, F], the statistics dtype); the backward recomputes z (and gelu') from h in
// both of its passes, so the autograd graph holds h and G instead of h, z and the GRN products.
//
// Dtypes: out/dh have h's dtype; z, the sums and the per-(n, f) coefficients stay in acc_t (float32,
// float64 for float64 h), z is never rounded to 16 bits. gamma/beta (and dgamma/dbeta) share one
// dtype: h's, or float32 next to a bf16/f16 h (norm_param_dtype's rule, core/ops/norm.h).
// Sums are deterministic: partials per (sample, position range, channel) combined in a fixed order.
#pragma once
#include "core/tensor.h"

namespace unirep {

struct GeluGrnShape {
  int64_t batch = 1, positions = 1, channels = 1;  // N, P = H*W, F
};

// GRN's epsilon (spec 2.7).
constexpr double kGrnEps = 1e-6;

// out: h's shape and dtype; norm: [N * F] contiguous, norm_stat_dtype(h) (written: G, for the backward);
// beta may be undefined; scale, when defined ([N * F], norm's dtype), receives the per-(n, f) scale, for
// gelu_grn_apply to rebuild out later without the sums pass.
void gelu_grn_forward(const Tensor& out, const Tensor& norm, const Tensor& h, const Tensor& gamma,
                      const Tensor& beta, GeluGrnShape s, const Tensor& scale = Tensor());
// out = gelu(h) * scale + beta with the scale gelu_grn_forward wrote: its output again, from h
// alone (one pass; the recompute of autograd/functions/gelu_grn.h's gelu_grn_linear).
void gelu_grn_apply(const Tensor& out, const Tensor& h, const Tensor& scale, const Tensor& beta, GeluGrnShape s);
// dh (h's shape and dtype), dgamma, dbeta ([F] elements, gamma's dtype): each may be undefined (not
// wanted). dy: h's shape and dtype, contiguous; norm: G from the forward.
void gelu_grn_backward(const Tensor& dh, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                       const Tensor& h, const Tensor& norm, const Tensor& gamma, GeluGrnShape s);

namespace cuda {
void gelu_grn_forward(const Tensor& out, const Tensor& norm, const Tensor& h, const Tensor& gamma,
                      const Tensor& beta, GeluGrnShape s, const Tensor& scale);
void gelu_grn_apply(const Tensor& out, const Tensor& h, const Tensor& scale, const Tensor& beta, GeluGrnShape s);
void gelu_grn_backward(const Tensor& dh, const Tensor& dgamma, const Tensor& dbeta, const Tensor& dy,
                       const Tensor& h, const Tensor& norm, const Tensor& gamma, GeluGrnShape s);
}  // namespace cuda

}  // namespace unirep
