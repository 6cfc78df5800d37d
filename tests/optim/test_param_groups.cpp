// Parameter groups of the real UniRepLKNet A and T against the spec's tables: layer ids (6.2
// classification, 7.6 downstream with n = 12 and the ADE20K T config's n = 9, 8.4), weight-decay
// exclusion (GRN gamma/beta decayed; layer scale, biases and norm weights not) and lr scales.
#include <cmath>
#include <cstdio>
#include <map>
#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "layers/unireplknet/model.h"
#include "optim/param_groups.h"

namespace unirep {
namespace {

UniRepLKNetConfig variant(const std::string& v, bool features) {
  UniRepLKNetConfig c = unireplknet_variant(v);
  c.features = features;
  return c;
}

// Spec 6.2's table (classification); for the downstream rule (7.6) stage 3 and the last
// downsampling get n and everything else n + 1.
int64_t table_id(const std::string& name, int64_t last, int64_t rest) {
  int stage = -1, block = -1;
  if (std::sscanf(name.c_str(), "downsample_layers.%d.", &stage) == 1) {
    const int64_t ids[] = {0, 2, 3, last};
    return ids[stage];
  }
  if (std::sscanf(name.c_str(), "stages.%d.%d.", &stage, &block) == 2) {
    if (stage == 2) return 3 + block / 3;
    const int64_t ids[] = {1, 2, -1, last};
    return ids[stage];
  }
  return rest;
}

// Decayed: conv and linear weights and GRN's gamma/beta [1, 1, 1, 4C]; everything else (biases, the
// layer scale gamma [C], LayerNorm/BatchNorm weights) is not.
bool expected_decay(const std::string& name) {
  static const std::regex decayed(
      R"((downsample_layers\.0\.[03]|downsample_layers\.[123]\.0|stages\.\d+\.\d+\.(dwconv|dwconv\.lk_origin|)"
      R"(dwconv\.dil_conv_k\d+_\d+|se\.down|se\.up|pwconv1\.1|pwconv2\.0)|head)\.weight|stages\.\d+\.\d+\.act\.1\.(gamma|beta))");
  return std::regex_match(name, decayed);
}

struct Member {
  int64_t id;
  bool decay;
  double scale;
};

// Every parameter's group, checking that each appears exactly once and groups are well-formed.
std::map<std::string, Member> members(const std::vector<ParamGroup>& groups, double weight_decay) {
  std::map<std::string, Member> out;
  for (const ParamGroup& g : groups) {
    EXPECT_EQ(g.param_names.size(), g.params.size()) << g.name;
    bool decay = g.weight_decay > 0;
    EXPECT_EQ(g.name, "layer_" + std::to_string(g.layer_id) + (decay ? "_decay" : "_no_decay"));
    EXPECT_EQ(g.weight_decay, decay ? weight_decay : 0.0) << g.name;
    for (const std::string& n : g.param_names) EXPECT_TRUE(out.emplace(n, Member{g.layer_id, decay, g.lr_scale}).second) << n;
  }
  return out;
}

NamedTensors prefixed(const NamedTensors& named, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [n, t] : named) out.emplace_back(prefix + n, t);
  return out;
}

TEST(ParamGroups, ClassificationIdsDecayAndScalesForAandT) {
  for (const std::string v : {"a", "t"}) {
    UniRepLKNet model(variant(v, false));
    NamedTensors named = model.named_parameters();
    ASSERT_EQ(named.size(), v == "a" ? 374u : 684u);  // spec 3.1 parameter tensor counts
    ParamGroupOptions o;
    o.weight_decay = 0.05;
    o.layer_decay = 0.8;
    std::vector<ParamGroup> groups = make_param_groups(named, o);
    std::map<std::string, Member> got = members(groups, 0.05);
    ASSERT_EQ(got.size(), named.size());
    std::set<int64_t> ids;
    for (const auto& [name, t] : named) {
      const Member& m = got.at(name);
      int64_t id = table_id(name, 12, 13);
      EXPECT_EQ(m.id, id) << v << " " << name;
      EXPECT_EQ(m.decay, expected_decay(name)) << v << " " << name;
      EXPECT_DOUBLE_EQ(m.scale, std::pow(0.8, double(13 - id))) << v << " " << name;
      ids.insert(m.id);
    }
    // A: stage 2 has 6 blocks (ids 3, 4); T: 18 blocks (ids 3..8); ids 9..11 unused.
    std::set<int64_t> want = v == "a" ? std::set<int64_t>{0, 1, 2, 3, 4, 12, 13}
                                      : std::set<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 13};
    EXPECT_EQ(ids, want) << v;
    // Groups in first-appearance order: the stem conv weight, then its bias.
    ASSERT_GE(groups.size(), 2u);
    EXPECT_EQ(groups[0].name, "layer_0_decay");
    EXPECT_EQ(groups[0].param_names.front(), "downsample_layers.0.0.weight");
    EXPECT_EQ(groups[1].name, "layer_0_no_decay");
    EXPECT_EQ(groups[1].param_names.front(), "downsample_layers.0.0.bias");
    EXPECT_EQ(groups.back().name, "layer_13_decay");  // head.weight comes after norm.weight/bias
  }
}

TEST(ParamGroups, SpotChecksFromTheSpecTables) {
  EXPECT_EQ(classification_layer_id("downsample_layers.0.3.weight"), 0);
  EXPECT_EQ(classification_layer_id("stages.0.2.dwconv.weight"), 1);
  EXPECT_EQ(classification_layer_id("downsample_layers.1.0.weight"), 2);
  EXPECT_EQ(classification_layer_id("stages.1.0.gamma"), 2);
  EXPECT_EQ(classification_layer_id("downsample_layers.2.1.bias"), 3);
  EXPECT_EQ(classification_layer_id("stages.2.0.se.up.weight"), 3);
  EXPECT_EQ(classification_layer_id("stages.2.17.act.1.gamma"), 8);
  EXPECT_EQ(classification_layer_id("stages.2.26.norm.bias"), 11);
  EXPECT_EQ(classification_layer_id("downsample_layers.3.0.weight"), 12);
  EXPECT_EQ(classification_layer_id("stages.3.2.pwconv2.2.weight"), 12);
  EXPECT_EQ(classification_layer_id("norm.weight"), 13);
  EXPECT_EQ(classification_layer_id("head.bias"), 13);

  EXPECT_EQ(downstream_layer_id("backbone.downsample_layers.0.0.weight", 12), 0);
  EXPECT_EQ(downstream_layer_id("backbone.stages.2.17.gamma", 12), 8);
  EXPECT_EQ(downstream_layer_id("backbone.stages.3.0.gamma", 12), 12);
  EXPECT_EQ(downstream_layer_id("backbone.norm3.weight", 12), 13);
  EXPECT_EQ(downstream_layer_id("decode_head.conv_seg.weight", 12), 13);
  EXPECT_EQ(downstream_layer_id("backbone.downsample_layers.3.1.weight", 9), 9);
  EXPECT_EQ(downstream_layer_id("neck.fpn_convs.0.conv.weight", 9), 10);
  // Without the prefix a name is not part of the backbone.
  EXPECT_EQ(downstream_layer_id("stages.0.0.gamma", 12), 13);

  Tensor grn = Tensor::zeros({1, 1, 1, 8}), layer_scale = Tensor::zeros({8}), conv = Tensor::zeros({8, 1, 3, 3});
  EXPECT_FALSE(excluded_from_weight_decay("stages.0.0.act.1.gamma", grn));
  EXPECT_FALSE(excluded_from_weight_decay("stages.0.0.act.1.beta", grn));
  EXPECT_TRUE(excluded_from_weight_decay("stages.0.0.gamma", layer_scale));
  EXPECT_TRUE(excluded_from_weight_decay("stages.0.0.norm.weight", layer_scale));
  EXPECT_TRUE(excluded_from_weight_decay("some.conv.bias", conv));  // by name, whatever the shape
  EXPECT_FALSE(excluded_from_weight_decay("stages.0.0.dwconv.weight", conv));

  try {
    classification_layer_id("stages.x.0.gamma");
    ADD_FAILURE() << "no error for a non-numeric stage";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stages.x.0.gamma"), std::string::npos) << e.what();
  }
}

// Downstream rule for T (names prefixed "backbone.", plus head parameters): n = 12 as in the COCO
// configs (stage 2 ids 3..8, stage 3 at 12, the rest 13) and n = 9 as the ADE20K T config (stage 3
// at 9, the rest 10); lr_scale = rate^(n + 1 - id).
TEST(ParamGroups, DownstreamIdsForTWithTwelveAndNineLayers) {
  UniRepLKNet backbone(variant("t", true));
  NamedTensors named = prefixed(backbone.named_parameters(), "backbone.");
  Tensor head_w = Tensor::zeros({150, 512, 1, 1}).requires_grad_(), head_b = Tensor::zeros({150}).requires_grad_();
  named.emplace_back("decode_head.conv_seg.weight", head_w);
  named.emplace_back("decode_head.conv_seg.bias", head_b);
  for (int64_t n : {12, 9}) {
    ParamGroupOptions o;
    o.rule = LayerDecayRule::Downstream;
    o.num_layers = n;
    o.layer_decay = 0.9;
    o.weight_decay = 0.05;
    std::map<std::string, Member> got = members(make_param_groups(named, o), 0.05);
    ASSERT_EQ(got.size(), named.size());
    std::set<int64_t> ids;
    for (const auto& [name, t] : named) {
      bool in_backbone = name.rfind("backbone.", 0) == 0;
      std::string local = in_backbone ? name.substr(9) : name;
      int64_t id = in_backbone ? table_id(local, n, n + 1) : n + 1;
      const Member& m = got.at(name);
      EXPECT_EQ(m.id, id) << n << " " << name;
      EXPECT_EQ(m.decay, in_backbone ? expected_decay(local) : name == "decode_head.conv_seg.weight") << name;
      EXPECT_DOUBLE_EQ(m.scale, std::pow(0.9, double(n + 1 - id))) << n << " " << name;
      ids.insert(m.id);
    }
    EXPECT_EQ(ids, (std::set<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, n, n + 1})) << n;
    EXPECT_EQ(got.at("backbone.norm0.weight").id, n + 1);
    EXPECT_DOUBLE_EQ(got.at("backbone.norm0.weight").scale, 1.0);
    EXPECT_DOUBLE_EQ(got.at("backbone.downsample_layers.0.0.weight").scale, std::pow(0.9, double(n + 1)));
  }
}

TEST(ParamGroups, LayerDecayOneKeepsIdsAndSkipsFrozenParams) {
  UniRepLKNet model(variant("a", false));
  NamedTensors named = model.named_parameters();
  named[0].second.requires_grad_(false);  // downsample_layers.0.0.weight frozen
  std::vector<ParamGroup> groups = make_param_groups(named, ParamGroupOptions{});
  std::map<std::string, Member> got = members(groups, 0.05);
  EXPECT_EQ(got.size(), named.size() - 1);
  EXPECT_FALSE(got.count("downsample_layers.0.0.weight"));
  std::set<int64_t> ids;
  for (const ParamGroup& g : groups) {
    EXPECT_EQ(g.lr_scale, 1.0) << g.name;
    ids.insert(g.layer_id);
  }
  EXPECT_EQ(ids, (std::set<int64_t>{0, 1, 2, 3, 4, 12, 13}));
  EXPECT_EQ(groups[0].name, "layer_0_no_decay");  // the frozen weight made no group
}

}  // namespace
}  // namespace unirep
