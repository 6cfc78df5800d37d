#include "layers/basic.h"

#include "autograd/checkpoint.h"
#include "core/ops/copy.h"
#include "distributed/sync_batch_norm.h"

namespace unirep {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation,
               int64_t groups, bool has_bias)
    : in_channels(in), out_channels(out), kernel_size(kernel) {
  UNIREP_CHECK(in % groups == 0 && out % groups == 0, "Conv2d: channels ", in, " -> ", out,
               " not divisible by groups ", groups);
  params = Conv2dParams{stride, stride, padding, padding, dilation, dilation, groups};
  weight = Tensor::zeros({out, in / groups, kernel, kernel}).requires_grad_();
  register_parameter("weight", &weight);
  if (has_bias) {
    bias = Tensor::zeros({out}).requires_grad_();
    register_parameter("bias", &bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) const { return conv2d(x, weight, bias, params); }

Linear::Linear(int64_t in, int64_t out, bool has_bias) {
  weight = Tensor::zeros({out, in}).requires_grad_();
  register_parameter("weight", &weight);
  if (has_bias) {
    bias = Tensor::zeros({out}).requires_grad_();
    register_parameter("bias", &bias);
  }
}

BatchNorm2d::BatchNorm2d(int64_t channels, double eps, double momentum) : eps(eps), momentum(momentum) {
  weight = Tensor::ones({channels}).requires_grad_();
  bias = Tensor::zeros({channels}).requires_grad_();
  running_mean = Tensor::zeros({channels});
  running_var = Tensor::ones({channels});
  num_batches_tracked = Tensor::zeros({}, DType::Int64);
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
  register_buffer("running_mean", &running_mean);
  register_buffer("running_var", &running_var);
  register_buffer("num_batches_tracked", &num_batches_tracked);
}

bool BatchNorm2d::track_batch() {
  if (!training() || in_checkpoint_recompute()) return false;
  increment_counter(num_batches_tracked);
  return true;
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  const bool use_running = track_batch() || !training();
  const Tensor rm = use_running ? running_mean : Tensor(), rv = use_running ? running_var : Tensor();
  if (training() && sync && sync->size() > 1)
    return sync_batch_norm(x, weight, bias, rm, rv, true, momentum, eps, *sync);
  return batch_norm(x, weight, bias, rm, rv, training(), momentum, eps);
}

Tensor batch_norm_branch_sum(const std::vector<Tensor>& xs, const std::vector<BatchNorm2d*>& bns) {
  UNIREP_CHECK(!bns.empty(), "batch_norm_branch_sum: no BatchNorm2d given");
  const bool training = bns[0]->training();
  Communicator* const sync = bns[0]->sync;
  for (BatchNorm2d* bn : bns)
    UNIREP_CHECK(bn->training() == training && bn->sync == sync,
                 "batch_norm_branch_sum: every BatchNorm2d must share training mode and sync communicator");
  std::vector<BatchNormBranch> branches;
  for (BatchNorm2d* bn : bns) {
    const bool use_running = bn->track_batch() || !training;
    branches.push_back({bn->weight, bn->bias, use_running ? bn->running_mean : Tensor(),
                        use_running ? bn->running_var : Tensor(), bn->momentum, bn->eps});
  }
  return batch_norm_branch_sum(xs, branches, training, sync);
}

LayerNorm::LayerNorm(int64_t channels, double eps, Format format) : eps(eps), format(format) {
  weight = Tensor::ones({channels}).requires_grad_();
  bias = Tensor::zeros({channels}).requires_grad_();
  register_parameter("weight", &weight);
  register_parameter("bias", &bias);
}

GRN::GRN(int64_t channels, bool use_bias) {
  gamma = Tensor::zeros({1, 1, 1, channels}).requires_grad_();
  register_parameter("gamma", &gamma);
  if (use_bias) {
    beta = Tensor::zeros({1, 1, 1, channels}).requires_grad_();
    register_parameter("beta", &beta);
  }
}

Tensor GRN::forward(const Tensor& z) const {
  Tensor g = norm(z, {1, 2}, true);                       // [N, 1, 1, F]
  Tensor nx = div(g, add_scalar(mean(g, {3}, true), 1e-6));  // [N, 1, 1, F]
  Tensor out = mul(add_scalar(mul(gamma, nx), 1.0), z);
  return beta.defined() ? add(out, beta) : out;
}

SEBlock::SEBlock(int64_t channels, int64_t hidden) {
  down = std::make_shared<Conv2d>(channels, hidden, 1);
  up = std::make_shared<Conv2d>(hidden, channels, 1);
  register_module("down", down.get());
  register_module("up", up.get());
}

Tensor SEBlock::forward(const Tensor& u) const {
  int64_t n = u.size(0), c = u.size(3), hidden = down->out_channels;
  Tensor s = global_avg_pool(u);  // [N, C]
  Tensor t = relu(linear(s, down->weight.reshape({hidden, c}), down->bias));
  Tensor gate = sigmoid(linear(t, up->weight.reshape({c, hidden}), up->bias));
  return mul(u, gate.reshape({n, 1, 1, c}));
}

}  // namespace unirep
