#include "launch/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "layers/tensor_io.h"

namespace unirep {

namespace fs = std::filesystem;

namespace {
constexpr const char* kFormat = "unirep-checkpoint";
constexpr const char* kStepPrefix = "step_";
constexpr const char* kSuffix = ".h5";

// The step of "step_0000000123.h5", or -1 for any other name.
int64_t step_of(const std::string& file_name) {
  const std::string prefix = kStepPrefix, suffix = kSuffix;
  if (file_name.size() <= prefix.size() + suffix.size() || file_name.rfind(prefix, 0) != 0 ||
      file_name.compare(file_name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits = file_name.substr(prefix.size(), file_name.size() - prefix.size() - suffix.size());
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}
}  // namespace

void add_section(NamedTensors& out, const std::string& name, const NamedTensors& tensors) {
  for (const auto& [key, tensor] : tensors) out.emplace_back(name + "." + key, tensor);
}

NamedTensors section(const NamedTensors& tensors, const std::string& name) {
  const std::string prefix = name + ".";
  NamedTensors out;
  for (const auto& [key, tensor] : tensors)
    if (key.rfind(prefix, 0) == 0) out.emplace_back(key.substr(prefix.size()), tensor);
  return out;
}

void write_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  save_tensors(path, checkpoint.tensors,
               {{"format", kFormat}, {"version", "1"}, {"state", checkpoint.state.dump()},
                {"config", checkpoint.config_yaml}});
}

Checkpoint read_checkpoint(const std::string& path) {
  UNIREP_CHECK(fs::exists(path), "checkpoint '", path, "' does not exist");
  std::map<std::string, std::string> attributes = load_attributes(path);
  UNIREP_CHECK(attributes["format"] == kFormat, "'", path, "' is not a unirep checkpoint (format attribute '",
               attributes["format"], "', expected '", kFormat, "')");
  Checkpoint checkpoint;
  try {
    checkpoint.state = nlohmann::json::parse(attributes["state"]);
  } catch (const nlohmann::json::exception& e) {
    throw Error("checkpoint '" + path + "': its state attribute is not valid JSON (" + e.what() + ")");
  }
  checkpoint.config_yaml = attributes["config"];
  checkpoint.tensors = load_tensors(path);
  return checkpoint;
}

NamedTensors read_model_weights(const std::string& path, bool use_ema) {
  UNIREP_CHECK(fs::exists(path), "weights file '", path, "' does not exist");
  std::map<std::string, std::string> attributes = load_attributes(path);
  if (attributes["format"] != kFormat) {
    UNIREP_CHECK(!use_ema, "'", path, "' is a plain state dict: it has no EMA weights");
    return load_tensors(path);
  }
  NamedTensors weights = section(load_tensors(path), use_ema ? "ema" : "model");
  UNIREP_CHECK(!weights.empty(), "checkpoint '", path, "' has no ", use_ema ? "EMA" : "model",
               " weights", use_ema ? " (the run did not keep an EMA: ema.enabled false)" : "");
  return weights;
}

std::string checkpoint_dir(const std::string& run_dir) { return (fs::path(run_dir) / "checkpoints").string(); }

std::string step_checkpoint_path(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "%s%010lld%s", kStepPrefix, static_cast<long long>(step), kSuffix);
  return (fs::path(checkpoint_dir(run_dir)) / name).string();
}

std::string best_checkpoint_path(const std::string& run_dir) {
  return (fs::path(checkpoint_dir(run_dir)) / "best.h5").string();
}

std::vector<std::string> list_step_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const fs::path dir = checkpoint_dir(run_dir);
  if (!fs::is_directory(dir)) return {};
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const int64_t step = step_of(entry.path().filename().string());
    if (step >= 0 && entry.is_regular_file() && hdf5_file_exists_and_valid(entry.path().string()))
      found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& [step, path] : found) paths.push_back(path);
  return paths;
}

std::string latest_checkpoint(const std::string& run_dir) {
  std::vector<std::string> paths = list_step_checkpoints(run_dir);
  return paths.empty() ? "" : paths.back();
}

void prune_checkpoints(const std::string& run_dir, int64_t keep_last) {
  std::vector<std::string> paths = list_step_checkpoints(run_dir);
  for (size_t i = 0; i + size_t(std::max<int64_t>(keep_last, 1)) < paths.size(); ++i) fs::remove(paths[i]);
  const fs::path dir = checkpoint_dir(run_dir);
  if (!fs::is_directory(dir)) return;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string().find(".h5.tmp.") != std::string::npos) fs::remove(entry.path());
}

}  // namespace unirep
