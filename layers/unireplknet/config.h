// UniRepLKNet variants (spec 1.1): depths, widths and the default kernel-size tables, and the
// Dilated Reparam Block branch tables (spec 2.5).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace unirep {

struct UniRepLKNetConfig {
  std::string name = "custom";
  std::vector<int64_t> depths;                     // blocks per stage (4 stages)
  std::vector<int64_t> dims;                       // width per stage
  std::vector<std::vector<int64_t>> kernel_sizes;  // per stage, per block; empty = default table
  int64_t in_chans = 3;
  int64_t num_classes = 1000;
  double drop_path_rate = 0.0;
  double layer_scale_init_value = 1e-6;
  double head_init_scale = 1.0;
  bool deploy = false;
  bool features = false;  // backbone mode: norm0..norm3 and the stage feature maps, no norm/head
  std::vector<int64_t> out_indices = {0, 1, 2, 3};  // backbone mode: which stages' maps forward_features returns
  bool with_cp = false;   // recompute each block in backward (activation checkpointing)
};

// "a", "f", "p", "n", "t", "s", "b", "l", "xl" (case-insensitive); throws listing them otherwise.
UniRepLKNetConfig unireplknet_variant(const std::string& name);
const std::vector<std::string>& unireplknet_variant_names();

// The default kernel table selected by the depth tuple (spec 1.1); throws for other depths.
std::vector<std::vector<int64_t>> default_kernel_sizes(const std::vector<int64_t>& depths);

// Dilated Reparam Block branches (kernel, dilation) for a large kernel K in {5, 7, ..., 17}.
std::vector<std::pair<int64_t, int64_t>> dilated_branches(int64_t K);

}  // namespace unirep
