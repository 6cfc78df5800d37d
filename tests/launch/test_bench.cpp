// `unirep bench` and `unirep dist-check --bandwidth` end to end through the CLI on the CPU, with tiny
// shapes: the JSON fields agree with each other (img/s x ms/step = batch per rank, the total is the
// sum over ranks, busbw = algbw x 2 (n - 1) / n), bad options are errors naming the option, and the
// data-parallel paths run under mpirun in a loopback-only namespace (skipped where there is none),
// and launch/bench_vs_pytorch.sh runs its CPU smoke test (skipped without torch).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/device.h"
#include "tests/datasets/fixtures.h"
#include "tests/launch/train_fixtures.h"

namespace unirep {
namespace {

using testing_data::TempDir;
using namespace testing_train;

const std::vector<std::string> kTiny = {"--model", "a", "--image-size", "32", "--batch", "4", "--steps", "2",
                                        "--warmup", "1", "--device", "cpu"};

std::vector<std::string> tiny(std::vector<std::string> extra) {
  std::vector<std::string> args = {"bench"};
  args.insert(args.end(), kTiny.begin(), kTiny.end());
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// The last line of the log that is a JSON object.
nlohmann::json last_json(const std::string& text) {
  std::istringstream in(text);
  std::string found;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '{') found = line;
  if (found.empty()) ADD_FAILURE() << "no JSON line in:\n" << text;
  return found.empty() ? nlohmann::json::object() : nlohmann::json::parse(found);
}

// netns_mpirun.sh 2 unirep ARGS; returns the exit status (77: no network namespace here).
int run_two_ranks(const std::vector<std::string>& args, const std::string& log) {
  std::string command = std::string(UNIREP_SOURCE_DIR) + "/tests/distributed/netns_mpirun.sh 2 " + UNIREP_CLI_PATH;
  for (const std::string& a : args) command += " '" + a + "'";
  const int status = std::system((command + " > '" + log + "' 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

void expect_consistent(const nlohmann::json& j, int64_t world) {
  EXPECT_EQ(j.at("world_size").get<int64_t>(), world);
  const std::vector<double> per_rank = j.at("per_rank_img_per_s").get<std::vector<double>>();
  ASSERT_EQ(int64_t(per_rank.size()), world);
  double sum = 0;
  for (double v : per_rank) {
    EXPECT_GT(v, 0);
    sum += v;
  }
  EXPECT_NEAR(j.at("img_per_s").get<double>(), sum, 1e-9 * sum);
  // ms_per_step is the slowest rank's, so its img/s is the smallest: batch / (ms / 1000).
  const double slowest = *std::min_element(per_rank.begin(), per_rank.end());
  EXPECT_NEAR(slowest * j.at("ms_per_step").get<double>() / 1e3, double(j.at("batch").get<int64_t>()), 1e-6);
  EXPECT_TRUE(j.at("peak_mem_bytes").is_null()) << "the CPU has no allocator peak";
  EXPECT_TRUE(j.at("cuda_mallocs_in_timed_steps").is_null());
  EXPECT_EQ(j.at("device"), "cpu");
}

TEST(BenchCli, TrainJsonOnCpu) {
  TempDir dir("bench");
  ASSERT_EQ(run_cli(tiny({"--dtype", "f32", "--json"}), dir / "log"), 0) << read_text(dir / "log");
  const nlohmann::json j = last_json(read_text(dir / "log"));
  EXPECT_EQ(j.at("model"), "a");
  EXPECT_EQ(j.at("mode"), "train");
  EXPECT_EQ(j.at("dtype"), "f32");
  EXPECT_EQ(j.at("batch").get<int64_t>(), 4);
  EXPECT_EQ(j.at("image_size").get<int64_t>(), 32);
  EXPECT_EQ(j.at("steps").get<int64_t>(), 2);
  EXPECT_EQ(j.at("backend"), "single");
  EXPECT_EQ(j.at("no_comm"), false);
  expect_consistent(j, 1);
}

TEST(BenchCli, DeployInferenceInBf16PrintsALine) {
  TempDir dir("bench");
  ASSERT_EQ(run_cli(tiny({"--mode", "infer", "--deploy", "--dtype", "bf16"}), dir / "log"), 0) << read_text(dir / "log");
  const std::string out = read_text(dir / "log");
  EXPECT_NE(out.find("UniRepLKNet-a infer (deploy) bf16, batch 4 x 32x32x3 on cpu: "), std::string::npos) << out;
  EXPECT_NE(out.find(" img/s, "), std::string::npos) << out;
}

// --cuda-graph on a GPU: the captured train and infer steps replay (f32 and bf16) and report it.
TEST(BenchCli, CudaGraphReplaysTrainAndInferSteps) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir("bench");
  for (const std::vector<std::string>& extra : std::vector<std::vector<std::string>>{
           {"--mode", "train", "--dtype", "f32"}, {"--mode", "train", "--dtype", "bf16"}, {"--mode", "infer"}}) {
    std::vector<std::string> args = {"bench", "--model", "a", "--image-size", "32", "--batch", "8", "--steps", "3",
                                     "--warmup", "2", "--device", "cuda", "--cuda-graph", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_EQ(run_cli(args, dir / "log"), 0) << read_text(dir / "log");
    const std::string out = read_text(dir / "log");
    nlohmann::json j = nlohmann::json::parse(out.substr(out.rfind('{')));
    EXPECT_TRUE(j["cuda_graph"].get<bool>());
    EXPECT_GT(j["img_per_s"].get<double>(), 0.0);
    EXPECT_EQ(j["cuda_mallocs_in_timed_steps"].get<int64_t>(), 0) << "replays allocate nothing";
  }
}

TEST(BenchCli, BadOptionsAreErrorsNamingThem) {
  TempDir dir("bench");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {tiny({"--mode", "fit"}), "--mode expects train or infer"},
      {tiny({"--dtype", "fp8"}), "--dtype expects bf16, f16 or f32"},
      {tiny({"--batch", "0"}), "--batch must be positive"},
      {tiny({"--steps", "0"}), "--steps must be positive"},
      {tiny({"--warmup", "-1"}), "--warmup must be >= 0"},
      {tiny({"--deploy"}), "use it with --mode infer"},
      {tiny({"--mode", "infer", "--no-comm"}), "--no-comm"},
      {tiny({"--model", "q"}), "q"},
      {tiny({"--stepz", "3"}), "unknown option '--stepz'"},
      {tiny({"--device", "tpu"}), "--device expects auto, cpu or cuda"},
      {tiny({"--cuda-graph"}), "--cuda-graph replays a CUDA graph: not with --device cpu"},
  };
  for (const auto& [args, message] : cases) {
    EXPECT_EQ(run_cli(args, dir / "log"), 1) << args.back();
    EXPECT_NE(read_text(dir / "log").find(message), std::string::npos) << read_text(dir / "log");
  }
}

TEST(BenchCli, TwoRanksWithAndWithoutGradientAllReduce) {
  TempDir dir("bench");
  for (const bool no_comm : {false, true}) {
    std::vector<std::string> args = tiny({"--dtype", "f32", "--backend", "mpi", "--timeout", "60", "--json"});
    if (no_comm) args.push_back("--no-comm");
    const int rc = run_two_ranks(args, dir / "log");
    if (rc == 77) GTEST_SKIP() << "no network namespace for mpirun here";
    ASSERT_EQ(rc, 0) << read_text(dir / "log");
    const nlohmann::json j = last_json(read_text(dir / "log"));
    EXPECT_EQ(j.at("backend"), "mpi");
    EXPECT_EQ(j.at("no_comm"), no_comm);
    expect_consistent(j, 2);
  }
}

// The rows of the bandwidth table: {dtype, MiB, time us, algbw, busbw}.
struct BandwidthRow {
  std::string dtype;
  double mib, us, algbw, busbw;
};

std::vector<BandwidthRow> bandwidth_rows(const std::string& text) {
  std::vector<BandwidthRow> rows;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    BandwidthRow r;
    if (fields >> r.dtype >> r.mib >> r.us >> r.algbw >> r.busbw && r.dtype == "float32") rows.push_back(r);
  }
  return rows;
}

void expect_bandwidth_table(const std::string& text, int world) {
  const std::vector<BandwidthRow> rows = bandwidth_rows(text);
  ASSERT_EQ(rows.size(), 3u) << text;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].mib, double(1 << i)) << text;
    EXPECT_GT(rows[i].us, 0) << text;
    // algbw = bytes / time in GB/s, so algbw x time in us = bytes / 1000; both are rounded to 3
    // decimals (+-0.0005 each), which moves the product by up to 0.0005 (time + algbw).
    const double kilobytes = rows[i].mib * double(1 << 20) / 1e3;
    EXPECT_NEAR(rows[i].algbw * rows[i].us, kilobytes, 0.0006 * (rows[i].us + rows[i].algbw)) << text;
    EXPECT_NEAR(rows[i].busbw, rows[i].algbw * 2.0 * (world - 1) / world, 0.002) << text;
  }
  EXPECT_NE(text.find("dist-check: bandwidth done (" + std::to_string(world) + " ranks"), std::string::npos) << text;
}

TEST(DistCheckBandwidth, OneMpiProcess) {
  TempDir dir("bandwidth");
  ASSERT_EQ(run_cli({"dist-check", "--bandwidth", "--backend", "mpi", "--max-mb", "4", "--iters", "2", "--warmup", "1"},
                    dir / "log"),
            0)
      << read_text(dir / "log");
  expect_bandwidth_table(read_text(dir / "log"), 1);
}

TEST(DistCheckBandwidth, TwoRanksMpi) {
  TempDir dir("bandwidth");
  const int rc = run_two_ranks({"dist-check", "--bandwidth", "--backend", "mpi", "--timeout", "60", "--max-mb", "4",
                                "--iters", "3", "--warmup", "1"},
                               dir / "log");
  if (rc == 77) GTEST_SKIP() << "no network namespace for mpirun here";
  ASSERT_EQ(rc, 0) << read_text(dir / "log");
  expect_bandwidth_table(read_text(dir / "log"), 2);
}

TEST(DistCheckBandwidth, OptionsOutsideBandwidthAreErrors) {
  TempDir dir("bandwidth");
  EXPECT_EQ(run_cli({"dist-check", "--max-mb", "4"}, dir / "log"), 1);
  EXPECT_NE(read_text(dir / "log").find("apply to --bandwidth"), std::string::npos) << read_text(dir / "log");
  EXPECT_EQ(run_cli({"dist-check", "--bandwidth", "--max-mb", "0"}, dir / "log"), 1);
  EXPECT_NE(read_text(dir / "log").find("--max-mb must be >= 1"), std::string::npos) << read_text(dir / "log");
  EXPECT_EQ(run_cli({"dist-check", "--bandwidth", "--backend", "none"}, dir / "log"), 1);
  EXPECT_NE(read_text(dir / "log").find("no all-reduce to time"), std::string::npos) << read_text(dir / "log");
}

// launch/bench_vs_pytorch.sh on the CPU with Debian's torch (skipped without it): ours and eager
// measured, the table's ratio is ours' img/s over eager's from the measurements file.
TEST(BenchVsPytorch, CpuSmokeTableHasTheRatio) {
  if (std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") != 0) GTEST_SKIP() << "no torch here";
  TempDir dir("bench_vs_pytorch");
  const std::string command = std::string(UNIREP_SOURCE_DIR) +
                              "/launch/bench_vs_pytorch.sh --device cpu --models a --infer-models a --image-size 32 "
                              "--batch 2 --steps 1 --warmup 1 --dtype f32 --only ours,eager --python /usr/bin/python3 "
                              "--unirep " + UNIREP_CLI_PATH + " --out " + (dir / "results.jsonl") + " > " +
                              (dir / "log") + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << read_text(dir / "log");
  std::map<std::string, double> img_per_s;  // "impl mode deploy"
  std::istringstream results(read_text(dir / "results.jsonl"));
  for (std::string line; std::getline(results, line);) {
    const nlohmann::json r = nlohmann::json::parse(line);
    const std::string key = r.value("impl", std::string("ours")) + " " + r.at("mode").get<std::string>() +
                            (r.at("deploy").get<bool>() ? " deploy" : "");
    img_per_s[key] = r.at("img_per_s").get<double>();
  }
  ASSERT_EQ(img_per_s.size(), 6u) << read_text(dir / "results.jsonl");
  char row[200];
  std::snprintf(row, sizeof row, "| train | a | f32 | 2 | 32 | %.1f | %.1f | - | %.2f | - |", img_per_s["ours train"],
                img_per_s["eager train"], img_per_s["ours train"] / img_per_s["eager train"]);
  EXPECT_NE(read_text(dir / "log").find(row), std::string::npos) << row << "\n" << read_text(dir / "log");
  EXPECT_NE(read_text(dir / "log").find("| infer (deploy) | a | f32 |"), std::string::npos) << read_text(dir / "log");
}

}  // namespace
}  // namespace unirep
