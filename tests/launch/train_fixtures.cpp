#include "tests/launch/train_fixtures.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "datasets/shards.h"

namespace unirep::testing_train {

void write_quadrant_dataset(const std::string& dir, int64_t train, int64_t test, int64_t size) {
  DatasetSpec spec;
  spec.kind = DatasetKind::Classification;
  spec.height = spec.width = size;
  spec.channels = 1;
  spec.classes = {"top-left", "top-right", "bottom-left", "bottom-right"};
  spec.source = "tests: quadrant squares";
  ShardWriter writer(dir, spec, /*overwrite=*/true);
  std::mt19937 rng(7);
  for (auto [split, count] : {std::pair<std::string, int64_t>{"train", train}, {"test", test}}) {
    writer.begin_split(split, count, 2);
    for (int64_t i = 0; i < count; ++i) {
      ClassificationRecord r;
      r.label = int64_t(rng() % 4);
      r.height = r.width = size;
      r.channels = 1;
      r.image.resize(size_t(size * size));
      for (auto& p : r.image) p = uint8_t(rng() % 96);
      const int64_t half = size / 2, side = size / 4;
      const int64_t top = (r.label / 2) * half + int64_t(rng() % uint32_t(half - side + 1));
      const int64_t left = (r.label % 2) * half + int64_t(rng() % uint32_t(half - side + 1));
      for (int64_t y = top; y < top + side; ++y)
        for (int64_t x = left; x < left + side; ++x) r.image[size_t(y * size + x)] = 255;
      writer.add(r);
    }
    writer.end_split();
  }
  writer.finish();
}

std::string quadrant_config(const std::string& dataset_dir, const std::string& extra) {
  std::ostringstream s;
  s << "model:\n  variant: a\n  drop_path_rate: 0.1\n"
    << "data:\n  path: " << dataset_dir << "\n  eval_split: test\n  input_size: 16\n  num_workers: 2\n"
    << "  prefetch: 2\n  mean: [0.25]\n  std: [0.3]\n"
    << "augment:\n  pipeline: small\n  translate: 1\n  hflip: 0\n  mixup: 0.8\n  cutmix: 1.0\n"
    << "  label_smoothing: 0.1\n  rand_augment: \"\"\n  random_erasing: 0\n"
    << "optimizer:\n  name: adamw\n  lr: 0.002\n  weight_decay: 0.05\n"
    << "schedule:\n  name: cosine\n  warmup_steps: 3\n  min_lr: 1.0e-5\n"
    << "train:\n  epochs: 2\n  batch_size: 16\n  seed: 3\n  device: cpu\n  threads: 2\n"
    << "ema:\n  enabled: true\n  decay: 0.9\n  eval: true\n"
    << "logging:\n  print_every_steps: 1\n  progress: false\n"
    << extra;
  return s.str();
}

int run_cli(const std::vector<std::string>& args, const std::string& log) {
  pid_t pid = ::fork();
  UNIREP_CHECK(pid >= 0, "fork failed");
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    std::string cli = UNIREP_CLI_PATH;
    argv.push_back(cli.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(cli.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> records;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) records.push_back(nlohmann::json::parse(line));
  return records;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace unirep::testing_train
