// The building blocks, each a Module over NHWC activations with PyTorch's parameter names and
// shapes: Conv2d, Linear, BatchNorm2d, LayerNorm, GRN, SEBlock, DropPath.
#pragma once
#include "autograd/ops.h"
#include "layers/module.h"

namespace unirep {

class Communicator;

class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, int64_t dilation = 1,
         int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) const;

  Tensor weight, bias;  // [out, in / groups, k, k], [out] or undefined
  Conv2dParams params;
  int64_t in_channels, out_channels, kernel_size;
};

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true);
  Tensor forward(const Tensor& x) const { return linear(x, weight, bias); }

  Tensor weight, bias;  // [out, in], [out] or undefined
};

// BatchNorm over the channel (last) dim of NHWC data, eps 1e-5 and momentum 0.1 by default.
// num_batches_tracked counts training forwards, as in PyTorch (an int64 scalar buffer, incremented
// where it lives, so a captured training step's replays count too).
// sync (set by convert_sync_batch_norm, distributed/sync_batch_norm.h; not owned): training
// forwards take their statistics over all of its ranks; nullptr or a single rank: plain batch norm.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x);
  // What a forward does to the buffers before normalising: a training forward outside a checkpoint
  // recompute (which sees a batch counted already) counts it in num_batches_tracked and returns
  // true, the running stats are then to be updated.
  bool track_batch();

  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;
  Communicator* sync = nullptr;
};

// LayerNorm over the channel dim, eps 1e-6. ChannelsLast normalises the last dim: the spec's
// channels_last LN, and also its channels_first LN (stem, downsampling, norm0..3) once the
// activations are NHWC, as they are in this model. ChannelsFirst normalises dim 1 of NCHW data.
// bns[0](xs[0]) + ... + bns[B-1](xs[B-1]) as one op (batch_norm_branch_sum,
// autograd/functions/branch_norm.h): the same buffers' updates, num_batches_tracked, SyncBN
// communicator and gradients as the unfused forwards and adds. The modules must agree on training
// mode and on sync; 1 to 8 branches of one shape.
Tensor batch_norm_branch_sum(const std::vector<Tensor>& xs, const std::vector<BatchNorm2d*>& bns);

class LayerNorm : public Module {
 public:
  enum class Format { ChannelsLast, ChannelsFirst };
  explicit LayerNorm(int64_t channels, double eps = 1e-6, Format format = Format::ChannelsLast);
  Tensor forward(const Tensor& x) const {
    return layer_norm(x, weight, bias, eps, format == Format::ChannelsLast ? -1 : 1);
  }

  Tensor weight, bias;
  double eps;
  Format format;
};

class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) const { return gelu(x); }
};

// Global Response Normalisation on NHWC z [N, H, W, F] (spec 2.7):
//   G = ||z||_2 over (H, W) per sample and channel; Nx = G / (mean_F G + 1e-6);
//   out = (gamma Nx + 1) z + beta, gamma and beta of shape [1, 1, 1, F] (beta absent in deploy).
// The UniRepLKNet block does not call forward: it runs gelu, GRN and pwconv2 as one op on GRN's
// parameters (gelu_grn_linear, autograd/functions/gelu_grn.h).
class GRN : public Module {
 public:
  GRN(int64_t channels, bool use_bias);
  Tensor forward(const Tensor& z) const;

  Tensor gamma, beta;
};

// Squeeze-and-excitation (spec 2.6): gate = sigmoid(up(relu(down(mean_HW u)))), out = u * gate.
// down/up are 1x1 Conv2d modules (their PyTorch names and shapes), applied as linears on [N, C].
class SEBlock : public Module {
 public:
  SEBlock(int64_t channels, int64_t hidden);
  Tensor forward(const Tensor& u) const;

  std::shared_ptr<Conv2d> down, up;
};

// Stochastic depth on the residual branch: per-sample Bernoulli(1 - rate) mask scaled by 1/(1 - rate).
class DropPath : public Module {
 public:
  explicit DropPath(double rate) : rate(rate) {}
  Tensor forward(const Tensor& x, Generator& gen) const { return drop_path(x, rate, training(), gen); }

  double rate;
};

}  // namespace unirep
