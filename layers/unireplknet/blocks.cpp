#include "layers/unireplknet/blocks.h"

#include "autograd/checkpoint.h"
#include "layers/unireplknet/config.h"

namespace unirep {

DilatedReparamBlock::DilatedReparamBlock(int64_t channels, int64_t K, bool deploy) : kernel_size(K) {
  std::vector<std::pair<int64_t, int64_t>> table = dilated_branches(K);  // validates K
  lk_origin = std::make_shared<Conv2d>(channels, channels, K, 1, K / 2, 1, channels, deploy);
  register_module("lk_origin", lk_origin.get());
  if (deploy) return;
  origin_bn = std::make_shared<BatchNorm2d>(channels);
  register_module("origin_bn", origin_bn.get());
  for (auto [k, r] : table) {
    Branch b{k, r, std::make_shared<Conv2d>(channels, channels, k, 1, (r * (k - 1) + 1) / 2, r, channels, false),
             std::make_shared<BatchNorm2d>(channels)};
    std::string suffix = "k" + std::to_string(k) + "_" + std::to_string(r);
    register_module("dil_conv_" + suffix, b.conv.get());
    register_module("dil_bn_" + suffix, b.bn.get());
    branches.push_back(b);
  }
}

Tensor DilatedReparamBlock::forward(const Tensor& x) {
  if (!origin_bn) return lk_origin->forward(x);
  // The six depthwise convs read the same x: one op (one kernel each way on the GPU for K = 13); their
  // BNs and the adds another (one pass forward, one dy read for every branch's dz backward).
  std::vector<Tensor> weights{lk_origin->weight};
  std::vector<int64_t> dilations{1};
  std::vector<BatchNorm2d*> bns{origin_bn.get()};
  for (const Branch& b : branches) {
    weights.push_back(b.conv->weight);
    dilations.push_back(b.dilation);
    bns.push_back(b.bn.get());
  }
  return batch_norm_branch_sum(dilated_branch_convs(x, weights, dilations), bns);
}

UniRepLKNetBlock::UniRepLKNetBlock(int64_t dim, int64_t K, double drop_path_rate, double layer_scale_init_value,
                                   bool deploy, bool with_cp)
    : dim(dim), kernel_size(K), deploy(deploy), with_cp(with_cp) {
  UNIREP_CHECK(K == 3 || K == 5 || (K >= 7 && K % 2 == 1), "UniRepLKNetBlock: kernel size ", K,
               " unsupported (3, 5, or an odd size >= 7)");
  if (!deploy && layer_scale_init_value > 0) {
    gamma = Tensor::full({dim}, layer_scale_init_value).requires_grad_();
    register_parameter("gamma", &gamma);
  }
  if (K >= 7) {
    lark = std::make_shared<DilatedReparamBlock>(dim, K, deploy);
    register_module("dwconv", lark.get());
  } else {
    smak = std::make_shared<Conv2d>(dim, dim, K, 1, K / 2, 1, dim, deploy);
    register_module("dwconv", smak.get());
  }
  if (!deploy) {
    norm = std::make_shared<BatchNorm2d>(dim);
    register_module("norm", norm.get());
  }
  se = std::make_shared<SEBlock>(dim, dim / 4);
  register_module("se", se.get());
  // Upstream wraps these in Sequentials with permutes/GELU at the other indices: hence the names.
  pwconv1 = std::make_shared<Linear>(dim, 4 * dim);
  pwconv1_seq_.add("1", pwconv1);
  register_module("pwconv1", &pwconv1_seq_);
  grn = std::make_shared<GRN>(4 * dim, !deploy);
  act_seq_.add("1", grn);
  register_module("act", &act_seq_);
  pwconv2 = std::make_shared<Linear>(4 * dim, dim, deploy);
  pwconv2_seq_.add("0", pwconv2);
  if (!deploy) {
    pwconv2_bn = std::make_shared<BatchNorm2d>(dim);
    pwconv2_seq_.add("2", pwconv2_bn);
  }
  register_module("pwconv2", &pwconv2_seq_);
  if (drop_path_rate > 0) {
    drop_path = std::make_shared<DropPath>(drop_path_rate);
    register_module("drop_path", drop_path.get());
  }
}

Tensor UniRepLKNetBlock::residual_branch(const Tensor& x) {
  Tensor y = lark ? lark->forward(x) : smak->forward(x);
  if (norm) y = norm->forward(y);
  y = se->forward(y);
  // GELU, GRN and pwconv2 as one op that keeps pwconv1's output, not GRN's, for the backward.
  y = gelu_grn_linear(pwconv1->forward(y), grn->gamma, grn->beta, pwconv2->weight, pwconv2->bias);
  return pwconv2_bn ? pwconv2_bn->forward(y) : y;
}

Tensor UniRepLKNetBlock::output(const Tensor& x, Generator& gen) {
  // Layer scale, drop path and the residual add in one pass (autograd/functions/scaled_residual.h).
  const bool dropping = drop_path && drop_path->training();
  return scaled_residual_add(x, residual_branch(x), gamma, dropping ? drop_path->rate : 0.0, dropping, gen);
}

Tensor UniRepLKNetBlock::forward(const Tensor& x, Generator& gen) {
  if (!with_cp) return output(x, gen);
  // The recompute runs in backward, after this frame is gone: capture only what outlives it.
  return checkpoint([this, &gen](const std::vector<Tensor>& in) { return std::vector<Tensor>{output(in[0], gen)}; },
                    {x}, {&gen})[0];
}

}  // namespace unirep
