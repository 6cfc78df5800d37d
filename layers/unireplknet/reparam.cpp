// Structural re-parameterisation (spec 5): the deploy model computing the training model's
// eval-mode function. With s = gamma_bn / sqrt(running_var + eps) for a BatchNorm:
//   1. BN after a conv (W, b):   W' = W s,  b' = beta_bn + (b - mu) s;
//   2. a dilated branch kernel (k, r) becomes dense of size r (k - 1) + 1 (taps at multiples of r);
//   3. branches are zero-padded to K and added to the large kernel, their biases summed;
//   4. the block's BN folds into that conv by rule 1;
//   5. GRN beta, pwconv2's BN and the layer scale fold into pwconv2:
//        W2' = diag(gamma s2) W2,   b2' = gamma (beta_bn2 + (W2 beta_grn - mu2) s2).
// All of it runs as tensor ops in the model's dtype on its device (float32 or float64).
#include <map>

#include "layers/unireplknet/model.h"

namespace unirep {

namespace {

struct Fused {
  Tensor weight, bias;
};

// Rule 1 for a depthwise weight [C, 1, k, k] (or any [C, ...] weight) and an optional bias.
Fused fuse_bn(const Tensor& weight, const Tensor& bias, const BatchNorm2d& bn) {
  Tensor s = div(bn.weight, sqrt(add_scalar(bn.running_var.to(bn.weight.dtype()), bn.eps)));
  Shape per_channel(size_t(weight.dim()), 1);
  per_channel[0] = weight.size(0);
  Tensor w = mul(weight, s.reshape(per_channel));
  Tensor mu = bn.running_mean.to(bn.weight.dtype());
  Tensor b = add(bn.bias, mul(bias.defined() ? sub(bias, mu) : neg(mu), s));
  return {w, b};
}

// Rules 2 and 3: a depthwise kernel [C, 1, k, k] of dilation r placed at the centre of a K x K kernel.
Tensor dense_centred(const Tensor& w, int64_t r, int64_t K) {
  int64_t k = w.size(2), k_eq = r * (k - 1) + 1;
  Tensor dense = Tensor::zeros({w.size(0), 1, k_eq, k_eq}, w.dtype(), w.device());
  dense.slice(2, 0, k_eq, r).slice(3, 0, k_eq, r).copy_(w);
  int64_t p = K / 2 - k_eq / 2;
  return p == 0 ? dense : pad(dense, {p, p, p, p});
}

}  // namespace

std::shared_ptr<UniRepLKNet> UniRepLKNet::reparameterized() const {
  UNIREP_CHECK(!config_.deploy, "reparameterized: the model is already in deploy structure");
  NoGradGuard no_grad;
  UniRepLKNetConfig c = config_;
  c.deploy = true;
  auto out = std::make_shared<UniRepLKNet>(c);
  out->to(down_convs_[0]->weight.device());
  out->to(down_convs_[0]->weight.dtype());

  // Everything outside the blocks, and each block's SE, pwconv1 and GRN gamma, carries over by name.
  NamedTensors mine = state_dict();
  std::map<std::string, Tensor> source(mine.begin(), mine.end());
  NamedTensors carried;
  for (auto& [name, t] : out->state_dict()) {
    auto it = source.find(name);
    if (it != source.end() && it->second.shape() == t.shape()) carried.emplace_back(name, it->second);
  }
  out->load_state_dict(carried, /*strict=*/false);

  for (size_t i = 0; i < blocks_.size(); ++i) {
    for (size_t j = 0; j < blocks_[i].size(); ++j) {
      const UniRepLKNetBlock& b = *blocks_[i][j];
      UniRepLKNetBlock& d = *out->blocks_[i][j];
      Fused mixer;
      if (b.lark) {
        mixer = fuse_bn(b.lark->lk_origin->weight, Tensor(), *b.lark->origin_bn);
        for (const auto& branch : b.lark->branches) {
          Fused f = fuse_bn(branch.conv->weight, Tensor(), *branch.bn);
          mixer.weight = add(mixer.weight, dense_centred(f.weight, branch.dilation, b.kernel_size));
          mixer.bias = add(mixer.bias, f.bias);
        }
      } else {
        mixer.weight = b.smak->weight;
      }
      mixer = fuse_bn(mixer.weight, mixer.bias, *b.norm);
      Conv2d& dw = d.lark ? *d.lark->lk_origin : *d.smak;
      dw.weight.copy_(mixer.weight);
      dw.bias.copy_(mixer.bias);

      const BatchNorm2d& bn2 = *b.pwconv2_bn;
      Tensor s2 = div(bn2.weight, sqrt(add_scalar(bn2.running_var.to(bn2.weight.dtype()), bn2.eps)));
      Tensor scale = b.gamma.defined() ? mul(b.gamma, s2) : s2;
      Tensor w2 = b.pwconv2->weight;                                  // [C, 4C]
      Tensor w2_beta = matmul(w2, b.grn->beta.reshape({-1}));         // [C]
      Tensor shift = add(bn2.bias, mul(sub(w2_beta, bn2.running_mean.to(w2.dtype())), s2));
      d.pwconv2->weight.copy_(mul(w2, scale.reshape({-1, 1})));
      d.pwconv2->bias.copy_(b.gamma.defined() ? mul(b.gamma, shift) : shift);
    }
  }
  out->train(training());
  return out;
}

}  // namespace unirep
