// The training engine end to end through the CLI: the loss falls, eval agrees with the run, max_steps
// cuts a run short, a run killed with SIGKILL or stopped with SIGTERM resumes to bitwise the same
// losses and weights as an uninterrupted one, a crash during a checkpoint write leaves the previous
// checkpoint intact.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "core/device.h"
#include "launch/checkpoint.h"
#include "layers/tensor_io.h"
#include "tests/datasets/fixtures.h"
#include "tests/launch/train_fixtures.h"

namespace unirep {
namespace {

namespace fs = std::filesystem;
using testing_data::TempDir;
using namespace testing_train;

std::vector<std::pair<double, double>> step_losses_and_lrs(const std::string& metrics) {
  std::vector<std::pair<double, double>> out;
  int64_t expected_step = 1;
  for (const nlohmann::json& r : read_jsonl(metrics)) {
    if (r.at("kind") != "step") continue;
    EXPECT_EQ(r.at("step").get<int64_t>(), expected_step++) << metrics;
    out.emplace_back(r.at("loss").get<double>(), r.at("lr").get<double>());
  }
  return out;
}

// Bitwise equality of two tensor files, tensor by tensor.
void expect_same_tensors(const std::string& a, const std::string& b) {
  NamedTensors ta = load_tensors(a), tb = load_tensors(b);
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    ASSERT_EQ(ta[i].first, tb[i].first);
    const Tensor& x = ta[i].second;
    const Tensor& y = tb[i].second;
    ASSERT_EQ(x.shape(), y.shape()) << ta[i].first;
    ASSERT_EQ(x.dtype(), y.dtype()) << ta[i].first;
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * x.element_size()), 0) << ta[i].first << " differs";
  }
}

TEST(Trainer, LossFallsEvalAgreesAndMaxStepsCuts) {
  TempDir dir;
  write_quadrant_dataset(dir / "data", 512, 128);
  write_text(dir / "cfg.yaml", quadrant_config(dir / "data"));
  const std::vector<std::string> no_mixing = {"--set", "augment.mixup=0", "--set", "augment.cutmix=0",
                                              "--set", "train.epochs=3"};
  std::vector<std::string> args = {"train", "--config", dir / "cfg.yaml", "--out", dir / "run"};
  args.insert(args.end(), no_mixing.begin(), no_mixing.end());
  ASSERT_EQ(run_cli(args, dir / "train.log"), 0) << read_text(dir / "train.log");

  auto losses = step_losses_and_lrs(dir / "run/metrics.jsonl");
  ASSERT_EQ(losses.size(), 96u);  // 3 epochs x 512 / 16
  double first = 0, last = 0;
  for (int i = 0; i < 8; ++i) first += losses[size_t(i)].first / 8, last += losses[losses.size() - 1 - size_t(i)].first / 8;
  EXPECT_LT(last, first - 0.3) << "the loss did not fall: " << first << " -> " << last;
  nlohmann::json result = nlohmann::json::parse(read_text(dir / "run/result.json"));
  EXPECT_GT(result["eval"]["top1"].get<double>(), 0.6) << "chance is 0.25";
  EXPECT_EQ(result["steps"].get<int64_t>(), 96);
  for (const char* f : {"config.yaml", "model.h5", "model_ema.h5", "checkpoints/best.h5"})
    EXPECT_TRUE(fs::exists(dir.path() / "run" / f)) << f;

  // unirep eval --json on the final weights reproduces the run's final evaluation.
  std::vector<std::string> eval = {"eval", "--config", dir / "cfg.yaml", "--checkpoint", dir / "run/model.h5", "--json"};
  ASSERT_EQ(run_cli(eval, dir / "eval.log"), 0) << read_text(dir / "eval.log");
  std::string out = read_text(dir / "eval.log");
  nlohmann::json e = nlohmann::json::parse(out.substr(out.rfind('{')));
  EXPECT_NEAR(e["top1"].get<double>(), result["eval"]["top1"].get<double>(), 1e-6);
  EXPECT_NEAR(e["top5"].get<double>(), 1.0, 1e-9);  // 4 classes: the target is always in the top 5
  EXPECT_EQ(e["images"].get<int64_t>(), 128);

  // train.max_steps stops after that many optimizer steps.
  args = {"train", "--config", dir / "cfg.yaml", "--out", dir / "short", "--set", "train.max_steps=5"};
  ASSERT_EQ(run_cli(args, dir / "short.log"), 0) << read_text(dir / "short.log");
  EXPECT_EQ(step_losses_and_lrs(dir / "short/metrics.jsonl").size(), 5u);

  // A fresh start never overwrites a run that has checkpoints.
  EXPECT_NE(run_cli(args, dir / "again.log"), 0);
  EXPECT_NE(read_text(dir / "again.log").find("already holds checkpoints"), std::string::npos) << read_text(dir / "again.log");
}

// The step replayed as a CUDA graph (train.cuda_graph auto) trains exactly as the eager step: the same
// kernels on the same data, so bitwise the same losses, weights and EMA weights; mixup's soft targets,
// label smoothing, the EMA, gradient clipping and the AdamW schedule (lr, weight decay, bias
// corrections restaged every replay) all run inside the graph.
TEST(Trainer, CudaGraphStepsEqualEagerSteps) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  write_quadrant_dataset(dir / "data", 256, 64);
  write_text(dir / "cfg.yaml", quadrant_config(dir / "data"));
  auto run = [&](const std::string& name, const std::string& graph) {
    std::vector<std::string> args = {"train", "--config", dir / "cfg.yaml", "--out", dir / name,
                                     "--set", "train.device=cuda", "--set", "model.drop_path_rate=0",
                                     "--set", "optimizer.clip_grad=1.0", "--set", "train.epochs=2",
                                     "--set", "train.cuda_graph=" + graph};
    EXPECT_EQ(run_cli(args, dir / (name + ".log")), 0) << read_text(dir / (name + ".log"));
    return nlohmann::json::parse(read_text(dir.path() / name / "result.json"));
  };
  nlohmann::json eager = run("eager", "off"), graph = run("graph", "auto");
  EXPECT_EQ(eager["cuda_graph_steps"].get<int64_t>(), 0);
  EXPECT_EQ(graph["cuda_graph_steps"].get<int64_t>(), 30) << "32 steps, 2 of them eager";
  EXPECT_EQ(step_losses_and_lrs(dir / "graph/metrics.jsonl"), step_losses_and_lrs(dir / "eager/metrics.jsonl"));
  expect_same_tensors(dir / "eager/model.h5", dir / "graph/model.h5");
  expect_same_tensors(dir / "eager/model_ema.h5", dir / "graph/model_ema.h5");
  EXPECT_EQ(graph["eval"]["top1"], eager["eval"]["top1"]);

  // What cannot be replayed trains eagerly and says why: drop path draws new masks every step.
  std::vector<std::string> args = {"train", "--config", dir / "cfg.yaml", "--out", dir / "drop",
                                   "--set", "train.device=cuda", "--set", "train.max_steps=4"};
  ASSERT_EQ(run_cli(args, dir / "drop.log"), 0) << read_text(dir / "drop.log");
  EXPECT_NE(read_text(dir / "drop.log").find("not replayed as a CUDA graph (drop path"), std::string::npos)
      << read_text(dir / "drop.log");
}

// Starts `unirep train --config cfg --out run_dir` as a child, sends it `signal` once metrics.jsonl
// shows step `at`, and returns its wait status and the step reached.
std::pair<int, int64_t> interrupt_run(const std::string& cfg, const std::string& run_dir, const std::string& log,
                                      int signal, int64_t at) {
  std::fflush(nullptr);  // the child must not repeat the parent's buffered output
  pid_t pid = ::fork();
  if (pid == 0) {
    const std::string cli = UNIREP_CLI_PATH;
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    (void)f;
    ::dup2(1, 2);
    std::string a[] = {cli, "train", "--config", cfg, "--out", run_dir};
    char* argv[] = {a[0].data(), a[1].data(), a[2].data(), a[3].data(), a[4].data(), a[5].data(), nullptr};
    ::execv(cli.c_str(), argv);
    ::_exit(127);
  }
  EXPECT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int64_t reached = 0;
  int status = 0;
  while (reached < at && std::chrono::steady_clock::now() < deadline) {
    reached = 0;
    if (fs::exists(run_dir + "/metrics.jsonl")) {
      std::string text = read_text(run_dir + "/metrics.jsonl");
      size_t pos = 0;
      while ((pos = text.find("\"kind\":\"step\"", pos)) != std::string::npos) ++reached, ++pos;
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      ADD_FAILURE() << "the run ended before step " << at << ": " << read_text(log);
      return {status, reached};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, signal);
  ::waitpid(pid, &status, 0);
  return {status, reached};
}

// A run killed with SIGKILL at a random step resumes from its last periodic checkpoint; one sent
// SIGTERM stops at the next step with a checkpoint of that step and exit status 143. Both, resumed
// with --resume auto, end bitwise equal to the uninterrupted run: losses, lrs, weights and EMA.
TEST(Trainer, ResumeAfterSigkillOrSigtermIsBitwiseIdentical) {
  TempDir dir;
  write_quadrant_dataset(dir / "data", 256, 64);
  write_text(dir / "cfg.yaml", quadrant_config(dir / "data", "checkpoint:\n  every_steps: 3\n  keep_last: 2\n"));
  ASSERT_EQ(run_cli({"train", "--config", dir / "cfg.yaml", "--out", dir / "full"}, dir / "full.log"), 0)
      << read_text(dir / "full.log");

  std::random_device device;
  for (int signal : {SIGKILL, SIGTERM}) {
    SCOPED_TRACE(signal == SIGKILL ? "SIGKILL" : "SIGTERM");
    const std::string run = dir / (signal == SIGKILL ? "killed" : "stopped"), log = run + ".log";
    const int64_t at = 2 + int64_t(device() % 27);  // of 2 epochs x 16 steps
    auto [status, reached] = interrupt_run(dir / "cfg.yaml", run, log, signal, at);
    if (signal == SIGKILL) {
      ASSERT_TRUE(WIFSIGNALED(status)) << "killed at step >= " << at;
    } else {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM) << read_text(log);
      // The checkpoint is of the step at which it stopped: the newest one, and the last logged step.
      const std::string text = read_text(log);
      const size_t pos = text.find("SIGTERM received: stopping at step ");
      ASSERT_NE(pos, std::string::npos) << text;
      const int64_t stopped_at = std::atoll(text.c_str() + pos + std::strlen("SIGTERM received: stopping at step "));
      EXPECT_GE(stopped_at, reached);
      EXPECT_EQ(latest_checkpoint(run), step_checkpoint_path(run, stopped_at));
      EXPECT_EQ(read_checkpoint(latest_checkpoint(run)).state.at("step").get<int64_t>(), stopped_at);
      EXPECT_EQ(step_losses_and_lrs(run + "/metrics.jsonl").size(), size_t(stopped_at));
    }
    std::printf("%s at step %lld (latest checkpoint %s)\n", signal == SIGKILL ? "killed" : "stopped",
                (long long)reached, latest_checkpoint(run).c_str());

    ASSERT_EQ(run_cli({"train", "--config", dir / "cfg.yaml", "--out", run, "--resume", "auto"}, run + "-resume.log"), 0)
        << read_text(run + "-resume.log");
    EXPECT_EQ(step_losses_and_lrs(run + "/metrics.jsonl"), step_losses_and_lrs(dir / "full/metrics.jsonl"))
        << "interrupted at step " << reached;
    expect_same_tensors(dir / "full/model.h5", run + "/model.h5");
    expect_same_tensors(dir / "full/model_ema.h5", run + "/model_ema.h5");
    EXPECT_LE(list_step_checkpoints(run).size(), 2u);  // keep_last
  }
}

TEST(TrainCheckpoint, CrashDuringWriteKeepsThePreviousOne) {
  TempDir dir;
  const std::string path = step_checkpoint_path(dir.path().string(), 7);
  fs::create_directories(checkpoint_dir(dir.path().string()));
  Checkpoint first;
  first.tensors = {{"model.w", Tensor::full({4}, 1.5)}};
  first.state = {{"step", 7}};
  first.config_yaml = "model:\n  variant: a\n";
  write_checkpoint(path, first);

  // A child rewrites the same checkpoint with 512 MB of tensors and is killed mid-write.
  Checkpoint big;
  for (int i = 0; i < 64; ++i) big.tensors.emplace_back("model.t" + std::to_string(i), Tensor::zeros({2 << 20}));
  big.state = {{"step", 8}};
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    write_checkpoint(path, big);
    ::_exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool killed_mid_write = false;
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& e : fs::directory_iterator(checkpoint_dir(dir.path().string())))
      if (e.path().string().find(".tmp.") != std::string::npos && fs::file_size(e.path()) > (64u << 20)) {
        ::kill(pid, SIGKILL);
        killed_mid_write = true;
      }
    if (killed_mid_write) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(killed_mid_write && WIFSIGNALED(status)) << "the write finished before it could be interrupted";

  Checkpoint back = read_checkpoint(path);
  EXPECT_EQ(back.state["step"], 7);
  ASSERT_EQ(back.tensors.size(), 1u);
  EXPECT_EQ(back.tensors[0].second.to_vector<float>(), std::vector<float>(4, 1.5f));
  EXPECT_EQ(latest_checkpoint(dir.path().string()), path);
  prune_checkpoints(dir.path().string(), 2);  // removes the crashed write's temp file
  EXPECT_EQ(std::distance(fs::directory_iterator(checkpoint_dir(dir.path().string())), fs::directory_iterator{}), 1);
}

TEST(TrainCheckpoint, ReadingErrorsNameTheFile) {
  TempDir dir;
  try {
    read_checkpoint(dir / "nope.h5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.h5' does not exist"), std::string::npos) << e.what();
  }
  save_tensors(dir / "plain.h5", {{"w", Tensor::zeros({2})}}, {{"format", "unirep-state-dict"}});
  try {
    read_checkpoint(dir / "plain.h5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a unirep checkpoint"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_model_weights(dir / "plain.h5").size(), 1u);  // a plain state dict is model weights
}

}  // namespace
}  // namespace unirep

namespace unirep {
namespace {

// Data parallel through mpirun: 2 ranks of batch 16 with SyncBN train to the same weights as 1 rank
// of batch 32 (the same 32 samples per step: rank r takes the epoch order's positions r, r + 2, ...;
// every sample's augmentation is seeded by its index; SGD, no mixup or drop path, whose streams are
// per rank), and their eval counts sum to exactly one pass over the split.
// On CPUs the ranks reduce through MPI; on GPUs (one per rank) through NCCL, SyncBN included.
void expect_two_ranks_equal_one(const std::string& device, const std::string& backend) {
  TempDir dir;
  write_quadrant_dataset(dir / "data", 256, 72);
  write_text(dir / "cfg.yaml", quadrant_config(dir / "data"));
  const std::vector<std::string> common = {
      "--set", "augment.mixup=0", "--set", "augment.cutmix=0", "--set", "model.drop_path_rate=0",
      "--set", "optimizer.name=sgd", "--set", "optimizer.lr=0.05", "--set", "train.max_steps=6",
      "--set", "train.threads=1", "--set", "data.num_workers=1", "--set", "ema.enabled=false",
      "--set", "ema.eval=false", "--set", "train.device=" + device};
  std::vector<std::string> one = {"train", "--config", dir / "cfg.yaml", "--out", dir / "one",
                                  "--set", "train.batch_size=32", "--set", "distributed.backend=none"};
  one.insert(one.end(), common.begin(), common.end());
  ASSERT_EQ(run_cli(one, dir / "one.log"), 0) << read_text(dir / "one.log");

  const std::string script = std::string(UNIREP_SOURCE_DIR) + "/tests/distributed/netns_mpirun.sh";
  std::vector<std::string> two = {"train", "--config", dir / "cfg.yaml", "--out", dir / "two",
                                  "--set", "train.batch_size=16", "--set", "distributed.backend=" + backend,
                                  "--set", "distributed.sync_bn=true", "--set", "distributed.timeout_s=60"};
  two.insert(two.end(), common.begin(), common.end());
  // NCCL's bootstrap finds only loopback in the namespace; NVLink SHARP stays off (the device notes).
  std::string command = "env NCCL_SOCKET_IFNAME=lo NCCL_NVLS_ENABLE=0 " + script + " 2 " + UNIREP_CLI_PATH;
  for (const std::string& a : two) command += " '" + a + "'";
  const int status = std::system((command + " > " + (dir / "two.log") + " 2>&1").c_str());
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "no network namespace for mpirun here";
  ASSERT_EQ(status, 0) << read_text(dir / "two.log");

  const std::string log = read_text(dir / "two.log");
  EXPECT_NE(log.find("2 ranks (" + backend + ")"), std::string::npos) << log;
  const size_t last_step = log.find("step 6/6 ");  // only rank 0 logs: the line appears once
  ASSERT_NE(last_step, std::string::npos) << log;
  EXPECT_EQ(log.find("step 6/6 ", last_step + 1), std::string::npos) << log;
  NamedTensors a = load_tensors(dir / "one/model.h5"), b = load_tensors(dir / "two/model.h5");
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].second.dtype() != DType::Float32) {
      EXPECT_EQ(a[i].second.to_vector<int64_t>(), b[i].second.to_vector<int64_t>()) << a[i].first;
      continue;
    }
    // Relative L2 difference, with an absolute floor for tensors that stay at ~0 (the biases of BNs
    // that another BN follows get only rounding noise as gradient).
    std::vector<float> x = a[i].second.to_vector<float>(), y = b[i].second.to_vector<float>();
    double diff = 0, norm = 0;
    for (size_t j = 0; j < x.size(); ++j) diff += std::pow(x[j] - y[j], 2), norm += std::pow(x[j], 2);
    const double scale = std::max(std::sqrt(norm), 1e-3 * std::sqrt(double(x.size())));
    worst = std::max(worst, std::sqrt(diff) / scale);
  }
  std::printf("worst relative L2 difference over the state dict: %.3g\n", worst);
  EXPECT_LT(worst, 3e-4) << "float32 sums in another order over 6 SGD steps (measured 7.9e-5)";
  nlohmann::json ra = nlohmann::json::parse(read_text(dir / "one/result.json"));
  nlohmann::json rb = nlohmann::json::parse(read_text(dir / "two/result.json"));
  EXPECT_EQ(rb["eval"]["images"].get<int64_t>(), 72);
  EXPECT_NEAR(ra["eval"]["top1"].get<double>(), rb["eval"]["top1"].get<double>(), 1.0 / 72 + 1e-9);
}

TEST(Trainer, TwoRanksWithSyncBnEqualOneRankWithTheWholeBatch) { expect_two_ranks_equal_one("cpu", "mpi"); }

TEST(Trainer, TwoGpusNcclWithSyncBnEqualOneGpuWithTheWholeBatch) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs 2 GPUs (" << cuda_device_count() << " here)";
  expect_two_ranks_equal_one("cuda", "nccl");
}

}  // namespace
}  // namespace unirep
