// Parameter groups: weight-decay exclusion and layer-wise learning-rate decay (spec 6.2, 7.6).
//
// A parameter is excluded from weight decay when it is 1-D or its name ends with ".bias" (biases,
// BN/LN weights, the layer scale gamma [C]); GRN gamma/beta are [1, 1, 1, 4C] and therefore decayed.
// Layer ids follow the parameter name:
//   classification (upstream optim_factory / main.py)     downstream (mmdet/mmseg constructor, n = num_layers)
//   downsample_layers.0                  0                backbone.downsample_layers.0           0
//   stages.0.*                           1                backbone.stages.0.*                    1
//   downsample_layers.1, stages.1.*      2                backbone.downsample_layers.1, stages.1 2
//   downsample_layers.2                  3                backbone.downsample_layers.2           3
//   stages.2.j.*                         3 + j/3          backbone.stages.2.j.*                  3 + j/3
//   downsample_layers.3, stages.3.*      12               backbone.downsample_layers.3, stages.3 n
//   anything else (norm, head)           13               anything else (norm0..3, neck, heads)  n + 1
// and the group's lr scale is layer_decay^(13 - id) (classification) or layer_decay^(n + 1 - id)
// (downstream). Ids are reported even when layer_decay is 1 (every scale is then 1).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "layers/module.h"

namespace unirep {

struct ParamGroup {
  std::string name;  // "layer_<id>_decay" / "layer_<id>_no_decay"
  std::vector<std::string> param_names;
  std::vector<Tensor> params;
  double weight_decay = 0;  // 0 for the no-decay groups
  double lr_scale = 1;
  int64_t layer_id = 0;
};

bool excluded_from_weight_decay(const std::string& name, const Tensor& param);
int64_t classification_layer_id(const std::string& name);
int64_t downstream_layer_id(const std::string& name, int64_t num_layers);

enum class LayerDecayRule { Classification, Downstream };

struct ParamGroupOptions {
  double weight_decay = 0.05;
  double layer_decay = 1.0;
  LayerDecayRule rule = LayerDecayRule::Classification;
  int64_t num_layers = 12;  // downstream rule only (spec 7.6: 12, or 9 for the ADE20K T config)
};

// Groups the parameters that require grad by (layer id, decay / no decay), groups and their members
// in first-appearance order of named_params.
std::vector<ParamGroup> make_param_groups(const NamedTensors& named_params, const ParamGroupOptions& options);

}  // namespace unirep
