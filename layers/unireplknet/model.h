// UniRepLKNet A-XL (spec 1-5) over NHWC input [N, H, W, in_chans].
//
// Classification: stem -> stage 0 -> (downsample -> stage) x 3 -> mean over H, W -> LayerNorm ->
// head. Backbone mode (config.features): the four stage outputs, each through its own LayerNorm
// (norm0..norm3), at strides 4, 8, 16, 32. Each stride-2 conv halves the size with ceil, so any
// input size works. Parameter and buffer names equal the official PyTorch state dict, training
// and deploy structure alike.
#pragma once
#include <memory>

#include "layers/unireplknet/blocks.h"
#include "layers/unireplknet/config.h"

namespace unirep {

class UniRepLKNet : public Module {
 public:
  explicit UniRepLKNet(UniRepLKNetConfig config);

  Tensor forward(const Tensor& x);                        // logits [N, num_classes]
  std::vector<Tensor> forward_features(const Tensor& x);  // backbone mode: NHWC maps of config.out_indices

  // Classification init of spec 4: conv/linear weights ~ N(0, 0.02) (truncated at +-2), biases 0,
  // head scaled by head_init_scale. Backbone mode uses PyTorch's default (Kaiming-uniform, a = sqrt 5).
  void init_weights(Generator& gen);

  // The deploy-structure model computing the same eval-mode function (spec 5), in this model's
  // dtype and on its device.
  std::shared_ptr<UniRepLKNet> reparameterized() const;

  // Conv and linear multiply-accumulates of one image of size h x w (spec 11's counting rule).
  int64_t macs(int64_t h, int64_t w) const;

  const UniRepLKNetConfig& config() const { return config_; }
  UniRepLKNetBlock& block(int64_t stage, int64_t index) const { return *blocks_.at(size_t(stage)).at(size_t(index)); }
  // Draws for drop path come from here (the process default unless set).
  void set_generator(Generator* gen) { gen_ = gen; }

 private:
  Tensor run_stages(const Tensor& x, std::vector<Tensor>* features);

  UniRepLKNetConfig config_;
  Generator* gen_;
  Container downsample_layers_, stages_;
  std::vector<std::shared_ptr<Conv2d>> down_convs_;  // stem conv 0, stem conv 3, downsample 1..3
  std::vector<std::shared_ptr<LayerNorm>> down_norms_;
  std::vector<std::vector<std::shared_ptr<UniRepLKNetBlock>>> blocks_;
  std::vector<std::shared_ptr<Container>> stage_containers_, down_containers_;
  std::shared_ptr<LayerNorm> norm_;
  std::shared_ptr<Linear> head_;
  std::vector<std::shared_ptr<LayerNorm>> out_norms_;
};

// Builds the model whose structure a state dict describes (depths, widths, kernel sizes, classes,
// input channels, training or deploy, classifier or backbone), so any checkpoint loads by itself.
UniRepLKNetConfig config_from_state_dict(const NamedTensors& state);

}  // namespace unirep
