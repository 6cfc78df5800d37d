// batch_norm_branch_sum: y = sum_i batch_norm(x_i, weight_i, bias_i, running_mean_i, running_var_i),
// the Dilated Reparam Block's origin BN plus its dilated branches' BNs, as one differentiable op on
// channels-last inputs of one shape and dtype (1 to 8 branches). Same semantics as the unfused
// batch_norm (autograd/functions/norm.h) or, with a communicator of more than one rank,
// sync_batch_norm (distributed/sync_batch_norm.h) per branch followed by the adds: the same
// statistics kernels and running-stat updates, the same gradients. What differs:
//   forward:  the applies and adds are one pass (core/ops/branch_norm.h); the branch sum is kept
//             in float and rounded once (the unfused path rounds each BN output and each add);
//   backward: per branch the reduce sum(dy), sum(dy (x - mean)) (which also gives dweight/dbias),
//             then one pass reading dy once for every dx_i;
//   sync:     the branches' statistics travel in ONE all-reduce per direction (packed [B, 2C + 1]
//             float64 forward, [B, 2C] backward), not one per branch; the parameters' gradients
//             stay local, as sync_batch_norm's.
// eval (training = false): every branch uses its running stats, no communication.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace unirep {

class Communicator;

struct BatchNormBranch {
  Tensor weight, bias;              // [C] or undefined (affine off); one dtype over all branches
  Tensor running_mean, running_var;  // [C] or undefined (training: no update); needed for eval
  double momentum = 0.1, eps = 1e-5;
};

// comm: nullptr or one rank: per-process statistics (batch_norm); more ranks: statistics over
// all of them (sync_batch_norm).
Tensor batch_norm_branch_sum(const std::vector<Tensor>& xs, const std::vector<BatchNormBranch>& branches,
                             bool training, Communicator* comm = nullptr);

}  // namespace unirep
