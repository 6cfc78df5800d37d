// Training checkpoints: everything a run needs to continue bit for bit, in one HDF5 tensor file
// (the layers/tensor_io.h format, so h5py and `unirep predict` read it too).
//
// Datasets, each named "<section>.<name>":
//   model.<state-dict name>    the model's parameters and buffers (PyTorch names)
//   ema.<state-dict name>      the EMA weights (when the run keeps them)
//   optimizer.<name>           the optimizer state (optim/optimizer.h: "step", "exp_avg.<param>", ...)
//   scaler.<name>              the dynamic loss scaler (float16 runs)
// Root attributes (strings):
//   format = "unirep-checkpoint", version = "1"
//   state  = JSON: step, epoch, epoch_complete, sampler {seed, epoch, consumed, dataset_size,
//            world_size}, generator {seed, offset} (drop path), best_top1, best_step, world_size
//   config = the resolved YAML config of the run
//
// Files of a run folder: checkpoints/step_<step, 10 digits>.h5 (the last `keep_last` are kept) and
// checkpoints/best.h5 (the best eval top-1 so far). Writes are atomic (temp file, fsync, rename;
// layers/tensor_io.h): a checkpoint is complete or absent; a crash mid-write leaves a temp file that
// no reader considers, and the previous checkpoints intact.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "layers/module.h"

namespace unirep {

struct Checkpoint {
  NamedTensors tensors;  // every section, prefixed names
  nlohmann::json state;
  std::string config_yaml;
};

// Prefixes every name with "<section>." and appends to out.
void add_section(NamedTensors& out, const std::string& section, const NamedTensors& tensors);
// The tensors of one section with the prefix removed (empty when the section is absent).
NamedTensors section(const NamedTensors& tensors, const std::string& section);

void write_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Throws an Error naming the file when it is missing, not HDF5, or not a unirep checkpoint.
Checkpoint read_checkpoint(const std::string& path);

// A model's weights from either a checkpoint ("model." section, or "ema." with use_ema) or a plain
// state-dict file (layers/tensor_io.h, e.g. from launch/convert_pytorch.py).
NamedTensors read_model_weights(const std::string& path, bool use_ema = false);

std::string checkpoint_dir(const std::string& run_dir);
std::string step_checkpoint_path(const std::string& run_dir, int64_t step);
std::string best_checkpoint_path(const std::string& run_dir);
// The step checkpoints of a run folder, oldest first (by step), valid HDF5 files only.
std::vector<std::string> list_step_checkpoints(const std::string& run_dir);
// The newest complete step checkpoint, or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);
// Deletes all but the newest keep_last step checkpoints, and temp files left by crashed writes.
void prune_checkpoints(const std::string& run_dir, int64_t keep_last);

}  // namespace unirep
