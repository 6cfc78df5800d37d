// Inputs for the training tests: a small learnable dataset, a config for it, and a way to run the
// `unirep` CLI as a child process.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace unirep::testing_train {

// A raw classification dataset of size x size grey images in 4 classes: noise plus a bright square
// in the quadrant named by the label. Splits "train" and "test".
void write_quadrant_dataset(const std::string& dir, int64_t train, int64_t test, int64_t size = 16);

// A YAML config training UniRepLKNet-A on that dataset (every stochastic part on: translation,
// mixup/cutmix, drop path, EMA; no flip, which would swap the left and right classes), with `extra`
// lines appended (keys the base does not set; change the others with --set).
std::string quadrant_config(const std::string& dataset_dir, const std::string& extra = "");

// Runs the CLI with `args` (no shell), stdout+stderr to `log`; returns the exit status.
int run_cli(const std::vector<std::string>& args, const std::string& log);

// The records of a metrics.jsonl file.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

std::string read_text(const std::string& path);
void write_text(const std::string& path, const std::string& text);

}  // namespace unirep::testing_train
