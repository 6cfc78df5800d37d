#include "layers/unireplknet/model.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace unirep {

UniRepLKNet::UniRepLKNet(UniRepLKNetConfig config) : config_(std::move(config)), gen_(&default_generator()) {
  UniRepLKNetConfig& c = config_;
  UNIREP_CHECK(c.depths.size() == 4 && c.dims.size() == 4, "UniRepLKNet: expected 4 depths and 4 dims, got ",
               to_string(c.depths), " and ", to_string(c.dims));
  if (c.kernel_sizes.empty()) c.kernel_sizes = default_kernel_sizes(c.depths);
  for (size_t i = 0; i < 4; ++i)
    UNIREP_CHECK(int64_t(c.kernel_sizes[i].size()) == c.depths[i], "UniRepLKNet: stage ", i, " has ", c.depths[i],
                 " blocks but ", c.kernel_sizes[i].size(), " kernel sizes");
  UNIREP_CHECK(c.features || c.num_classes > 0, "UniRepLKNet: num_classes must be positive, got ", c.num_classes);
  for (int64_t i : c.out_indices)
    UNIREP_CHECK(i >= 0 && i < 4, "UniRepLKNet: out_indices ", to_string(c.out_indices), " must lie in 0..3");

  // Stem (downsample_layers.0): conv 3x3 s2 -> LN -> GELU -> conv 3x3 s2 -> LN; then conv + LN per stage.
  auto add_conv_ln = [&](Container& seq, const std::string& conv_name, const std::string& ln_name, int64_t in,
                         int64_t out) {
    down_convs_.push_back(std::make_shared<Conv2d>(in, out, 3, 2, 1));
    down_norms_.push_back(std::make_shared<LayerNorm>(out));
    seq.add(conv_name, down_convs_.back());
    seq.add(ln_name, down_norms_.back());
  };
  for (int64_t i = 0; i < 4; ++i) {
    auto seq = std::make_shared<Container>();
    if (i == 0) {
      add_conv_ln(*seq, "0", "1", c.in_chans, c.dims[0] / 2);
      add_conv_ln(*seq, "3", "4", c.dims[0] / 2, c.dims[0]);
    } else {
      add_conv_ln(*seq, "0", "1", c.dims[size_t(i - 1)], c.dims[size_t(i)]);
    }
    down_containers_.push_back(seq);
    downsample_layers_.add(std::to_string(i), seq);
  }
  register_module("downsample_layers", &downsample_layers_);

  int64_t total = c.depths[0] + c.depths[1] + c.depths[2] + c.depths[3], k = 0;
  for (int64_t i = 0; i < 4; ++i) {
    auto stage = std::make_shared<Container>();
    blocks_.emplace_back();
    for (int64_t j = 0; j < c.depths[size_t(i)]; ++j, ++k) {
      double rate = total > 1 ? c.drop_path_rate * double(k) / double(total - 1) : 0.0;
      auto block = std::make_shared<UniRepLKNetBlock>(c.dims[size_t(i)], c.kernel_sizes[size_t(i)][size_t(j)], rate,
                                                      c.layer_scale_init_value, c.deploy, c.with_cp);
      blocks_.back().push_back(block);
      stage->add(std::to_string(j), block);
    }
    stage_containers_.push_back(stage);
    stages_.add(std::to_string(i), stage);
  }
  register_module("stages", &stages_);

  if (c.features) {
    for (int64_t i = 0; i < 4; ++i) {
      out_norms_.push_back(std::make_shared<LayerNorm>(c.dims[size_t(i)]));
      register_module("norm" + std::to_string(i), out_norms_.back().get());
    }
  } else {
    norm_ = std::make_shared<LayerNorm>(c.dims[3]);
    head_ = std::make_shared<Linear>(c.dims[3], c.num_classes);
    register_module("norm", norm_.get());
    register_module("head", head_.get());
  }
}

Tensor UniRepLKNet::run_stages(const Tensor& x, std::vector<Tensor>* features) {
  UNIREP_CHECK(x.dim() == 4 && x.size(3) == config_.in_chans, "UniRepLKNet: expected NHWC input [N, H, W, ",
               config_.in_chans, "], got ", shape_str(x.shape()));
  Tensor h = down_norms_[0]->forward(down_convs_[0]->forward(x));
  h = down_norms_[1]->forward(down_convs_[1]->forward(gelu(h)));
  for (size_t i = 0; i < 4; ++i) {
    if (i > 0) h = down_norms_[i + 1]->forward(down_convs_[i + 1]->forward(h));
    for (auto& block : blocks_[i]) h = block->forward(h, *gen_);
    if (features && std::find(config_.out_indices.begin(), config_.out_indices.end(), int64_t(i)) !=
                        config_.out_indices.end())
      features->push_back(out_norms_[i]->forward(h));
  }
  return h;
}

Tensor UniRepLKNet::forward(const Tensor& x) {
  UNIREP_CHECK(!config_.features, "UniRepLKNet::forward: a backbone-mode model has no head; use forward_features");
  Tensor h = run_stages(x, nullptr);
  return head_->forward(norm_->forward(global_avg_pool(h)));
}

std::vector<Tensor> UniRepLKNet::forward_features(const Tensor& x) {
  UNIREP_CHECK(config_.features, "UniRepLKNet::forward_features: build the model with features = true");
  std::vector<Tensor> out;
  run_stages(x, &out);
  return out;
}

void UniRepLKNet::init_weights(Generator& gen) {
  NoGradGuard no_grad;
  NamedTensors params = named_parameters();
  std::map<std::string, Tensor> by_name(params.begin(), params.end());
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  // Conv and linear weights are the >= 2-d ".weight" tensors; their biases share the prefix.
  for (auto& [name, t] : params) {
    if (!ends_with(name, ".weight") || t.dim() < 2) continue;
    std::string prefix = name.substr(0, name.size() - 7);
    auto bias = by_name.find(prefix + ".bias");
    Tensor w = t, b = bias == by_name.end() ? Tensor() : bias->second;
    if (config_.features) {  // PyTorch's default: Kaiming-uniform (a = sqrt 5), bound 1 / sqrt(fan_in)
      double bound = 1.0 / std::sqrt(double(w.numel() / w.size(0)));
      w.copy_(Tensor::rand(w.shape(), gen, -bound, bound));
      if (b.defined()) b.copy_(Tensor::rand(b.shape(), gen, -bound, bound));
    } else {  // N(0, 0.02) truncated at +-2 (100 sigma: never reached), biases 0
      w.copy_(Tensor::randn(w.shape(), gen));
      w.mul_(0.02);
      if (b.defined()) b.fill_(0.0);
    }
  }
  if (head_ && config_.head_init_scale != 1.0) {
    head_->weight.mul_(config_.head_init_scale);
    head_->bias.mul_(config_.head_init_scale);
  }
}

int64_t UniRepLKNet::macs(int64_t h, int64_t w) const {
  auto halve = [](int64_t n) { return (n + 2 - 3) / 2 + 1; };
  const UniRepLKNetConfig& c = config_;
  int64_t total = 0;
  auto conv = [&](int64_t cin, int64_t cout, int64_t k, int64_t groups, int64_t positions) {
    total += k * k * (cin / groups) * cout * positions;
  };
  h = halve(h), w = halve(w);
  conv(c.in_chans, c.dims[0] / 2, 3, 1, h * w);
  h = halve(h), w = halve(w);
  conv(c.dims[0] / 2, c.dims[0], 3, 1, h * w);
  for (size_t i = 0; i < 4; ++i) {
    int64_t C = c.dims[i];
    if (i > 0) {
      h = halve(h), w = halve(w);
      conv(c.dims[i - 1], C, 3, 1, h * w);
    }
    for (auto& block : blocks_[i]) {
      int64_t K = block->kernel_size;
      conv(C, C, K, C, h * w);
      if (K >= 7 && !c.deploy)
        for (auto [k, r] : dilated_branches(K)) conv(C, C, k, C, h * w);
      conv(C, C / 4, 1, 1, 1);
      conv(C / 4, C, 1, 1, 1);
      total += 2 * C * 4 * C * h * w;  // pwconv1 and pwconv2
    }
  }
  if (!c.features) total += c.dims[3] * c.num_classes;
  return total;
}

UniRepLKNetConfig config_from_state_dict(const NamedTensors& state) {
  std::map<std::string, const Tensor*> by_name;
  for (auto& [name, t] : state) by_name[name] = &t;
  auto get = [&](const std::string& name) -> const Tensor* {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  };
  const Tensor* stem = get("downsample_layers.0.0.weight");
  UNIREP_CHECK(stem && stem->dim() == 4, "config_from_state_dict: no downsample_layers.0.0.weight: not a UniRepLKNet state dict");
  UniRepLKNetConfig c;
  c.in_chans = stem->size(1);
  for (int64_t i = 0; i < 4; ++i) {
    const Tensor* down = get("downsample_layers." + std::to_string(i) + (i == 0 ? ".3.weight" : ".0.weight"));
    UNIREP_CHECK(down, "config_from_state_dict: missing downsampling conv of stage ", i);
    c.dims.push_back(down->size(0));
    std::vector<int64_t> kernels;
    for (int64_t j = 0;; ++j) {
      std::string pre = "stages." + std::to_string(i) + "." + std::to_string(j) + ".dwconv.";
      const Tensor* k = get(pre + "lk_origin.weight");
      if (!k) k = get(pre + "weight");
      if (!k) break;
      kernels.push_back(k->size(2));
    }
    c.depths.push_back(int64_t(kernels.size()));
    c.kernel_sizes.push_back(kernels);
  }
  c.deploy = get("stages.0.0.norm.weight") == nullptr;
  c.features = get("head.weight") == nullptr;
  if (!c.features) c.num_classes = get("head.weight")->size(0);
  if (!c.deploy) c.layer_scale_init_value = get("stages.0.0.gamma") ? 1e-6 : 0.0;
  for (const std::string& v : unireplknet_variant_names()) {
    UniRepLKNetConfig known = unireplknet_variant(v);
    if (known.depths == c.depths && known.dims == c.dims) c.name = v;
  }
  return c;
}

}  // namespace unirep
