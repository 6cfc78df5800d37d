#include "optim/param_groups.h"

#include <cmath>
#include <map>
#include <utility>

namespace unirep {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// The integer at dot-separated position `index` of `name` ("stages.2.7.gamma", 2 -> 7).
int64_t index_component(const std::string& name, size_t index) {
  size_t begin = 0;
  for (size_t i = 0; i < index; ++i) {
    begin = name.find('.', begin);
    UNIREP_CHECK(begin != std::string::npos, "layer id: parameter '", name, "' has no component ", index);
    ++begin;
  }
  size_t end = name.find('.', begin);
  std::string part = name.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
  UNIREP_CHECK(!part.empty() && part.find_first_not_of("0123456789") == std::string::npos, "layer id: parameter '",
               name, "' should have an index at component ", index, ", got '", part, "'");
  return std::stoll(part);
}

// The UniRepLKNet id of a backbone name without prefix; `last` is the id of stage 3 and the last
// downsampling, `rest` the id of everything else. The first name component is at `offset`.
int64_t backbone_layer_id(const std::string& full_name, const std::string& name, size_t offset, int64_t last,
                          int64_t rest) {
  if (starts_with(name, "downsample_layers.")) {
    int64_t stage = index_component(full_name, offset + 1);
    UNIREP_CHECK(stage >= 0 && stage <= 3, "layer id: parameter '", full_name, "' names downsampling layer ", stage,
                 ", expected 0..3");
    return stage == 0 ? 0 : stage == 3 ? last : stage + 1;
  }
  if (starts_with(name, "stages.")) {
    int64_t stage = index_component(full_name, offset + 1);
    UNIREP_CHECK(stage >= 0 && stage <= 3, "layer id: parameter '", full_name, "' names stage ", stage,
                 ", expected 0..3");
    if (stage == 2) return 3 + index_component(full_name, offset + 2) / 3;
    return stage == 3 ? last : stage + 1;
  }
  return rest;
}

}  // namespace

bool excluded_from_weight_decay(const std::string& name, const Tensor& param) {
  const std::string bias = ".bias";
  bool is_bias = name.size() >= bias.size() && name.compare(name.size() - bias.size(), bias.size(), bias) == 0;
  return param.dim() == 1 || is_bias;
}

int64_t classification_layer_id(const std::string& name) { return backbone_layer_id(name, name, 0, 12, 13); }

int64_t downstream_layer_id(const std::string& name, int64_t num_layers) {
  const std::string prefix = "backbone.";
  if (!starts_with(name, prefix)) return num_layers + 1;
  return backbone_layer_id(name, name.substr(prefix.size()), 1, num_layers, num_layers + 1);
}

std::vector<ParamGroup> make_param_groups(const NamedTensors& named_params, const ParamGroupOptions& options) {
  UNIREP_CHECK(options.weight_decay >= 0, "make_param_groups: weight_decay must be >= 0, got ", options.weight_decay);
  UNIREP_CHECK(options.layer_decay > 0, "make_param_groups: layer_decay must be > 0, got ", options.layer_decay);
  UNIREP_CHECK(options.num_layers >= 3, "make_param_groups: num_layers must be >= 3, got ", options.num_layers);
  bool classification = options.rule == LayerDecayRule::Classification;
  // Exponent base: the id whose scale is 1 (the head / non-backbone parts).
  int64_t top = classification ? 13 : options.num_layers + 1;

  std::vector<ParamGroup> groups;
  std::map<std::pair<int64_t, bool>, size_t> index;
  for (const auto& [name, param] : named_params) {
    if (!param.defined() || !param.requires_grad()) continue;
    int64_t id = classification ? classification_layer_id(name) : downstream_layer_id(name, options.num_layers);
    bool decay = !excluded_from_weight_decay(name, param);
    auto [it, added] = index.emplace(std::make_pair(id, decay), groups.size());
    if (added) {
      ParamGroup group;
      group.name = "layer_" + std::to_string(id) + (decay ? "_decay" : "_no_decay");
      group.weight_decay = decay ? options.weight_decay : 0.0;
      group.lr_scale = std::pow(options.layer_decay, double(top - id));
      group.layer_id = id;
      groups.push_back(std::move(group));
    }
    ParamGroup& group = groups[it->second];
    group.param_names.push_back(name);
    group.params.push_back(param);
  }
  return groups;
}

}  // namespace unirep
