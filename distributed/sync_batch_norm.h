// SyncBatchNorm: batch norm whose training statistics are those of the whole batch, split over the
// ranks of a Communicator (PyTorch's nn.SyncBatchNorm), on channels-last activations [..., C].
// One collective per layer and direction: the statistics travel packed in one all-reduce forward
// and one backward, never one per statistic.
//
// Forward (training). Rank r holds n_r of the N = sum_r n_r values of each channel (n_r may differ
// between ranks, or be 0):
//   sums_r = [sum x, sum x^2, n_r]                float64 [2C + 1], formed from the rank's two-pass
//                                                 mean m and centred M2 as n m and M2 + n m^2
//   [S1, S2, N] = all_reduce_sum(sums_r)          the one forward collective
//   mean = S1 / N,  var = S2 / N - mean^2,  invstd = 1 / sqrt(var + eps)
//   y = (x - mean) invstd w + b
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var N / (N - 1)     (unbiased, as PyTorch)
// float64 sums whatever x's dtype: the subtraction S2 / N - mean^2 then costs nothing in float32
// precision (norm.h never forms E[x^2] - E[x]^2 in the accumulation dtype), and N is exact. Every
// rank computes the same mean/invstd and running stats, so the buffers stay equal without a
// broadcast. Eval: plain batch_norm with the running stats, no communication.
//
// Backward. Data-parallel training gives rank r a loss L_r and the gradient reducer averages the
// parameter gradients, so the model follows L = (1/R) sum_r L_r = Phi / R, Phi = sum_r L_r. Each
// y_j feeds only its own rank's loss: dPhi/dy_j = g_j, the gradient arriving at that rank's output.
// Through the shared mean/invstd every x_i reaches every y_j, and batch norm's gradient is
//   dPhi/dx_i = w invstd (g_i - (1/N) sum_j g_j - xhat_i (1/N) sum_j g_j xhat_j),  xhat = (x - mean) invstd
// with the sums over ALL ranks' positions j. So the backward reduces sum(dy) and sum(dy (x - mean))
// over the rank's positions, adds them over the ranks in ONE all-reduce of a packed [2C] (the
// adjoint of the forward's), and forms dx on each rank: rank r's x.grad is dPhi/dx_i for its i.
// The parameters' gradients stay LOCAL:
//   dweight_r = sum_{j on r} g_j xhat_j,  dbias_r = sum_{j on r} g_j,  sum_r dweight_r = dPhi/dw;
// the reducer's average then gives (1/R) dPhi/dw = dL/dw. Reducing them here too would count
// them R times. Everything upstream of x is consistent with this: each rank's backward computes
// its share of dPhi, the reducer's average turns Phi into L.
// Example: for the mean loss over the global batch, L = (1/N) sum_i l_i, take L_r = (R / N)
// sum_{i on r} l_i (the local mean when every rank has N / R samples); then x.grad on rank r is R
// times dL/dx_i and the averaged parameter gradients are dL/dw exactly
// (tests/distributed/test_sync_batch_norm.cpp checks both).
//
// Collectives are made by every rank in the same order: the forward's all-reduce when the layer
// runs, the backward's when its node runs (identical graphs give identical orders). All ranks pass
// inputs with the same C and dtype. The backward's all-reduce runs only when x needs a gradient
// (the same on every rank). On CUDA every step is stream-ordered: the total count N stays on the
// device, no host reads it. The CPU path throws when N < 2; the CUDA path cannot check N without a
// host synchronisation (N < 2 gives non-finite statistics there), except that a single rank's
// input is checked as plain batch norm checks it.
// Activation checkpointing: the recompute calls the op again (its collective too, on every rank
// alike) without running stats, as BatchNorm2d's plain recompute does.
#pragma once
#include "core/tensor.h"
#include "distributed/communicator.h"

namespace unirep {

class Module;

// Batch norm over the last dim of x, statistics over every rank of comm (training) or from the
// running stats (eval, no communication). weight/bias [C] may be undefined (affine off); dtypes
// as batch_norm's (autograd/functions/norm.h): a bf16/f16 x with float32 weight, bias and running
// stats under autocast, statistics in float32 (float64 for a float64 x). running_mean/running_var
// [C] are updated in place when defined (training). A single-rank comm runs the same code path
// (its all-reduces leave the sums as they are); BatchNorm2d calls plain batch_norm instead.
Tensor sync_batch_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& running_mean,
                       const Tensor& running_var, bool training, double momentum, double eps, Communicator& comm);

// Sets every BatchNorm2d under root (root included) to take its training statistics over comm's
// ranks (BatchNorm2d::sync); nullptr restores plain per-rank batch norm. comm is not owned and must
// outlive the forwards and backwards that use it. Returns how many BatchNorm2d were set.
int convert_sync_batch_norm(Module& root, Communicator* comm);

}  // namespace unirep
