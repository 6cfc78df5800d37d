// `unirep bench-cpu`: a tiny run prints its throughput line; bad sizes are errors naming the options.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "launch/bench_cpu.h"

namespace unirep {
namespace {

int run(std::vector<std::string> words) {
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  return command_bench_cpu(int(argv.size()), argv.data());
}

TEST(BenchCpu, TinyRunPrintsThroughput) {
  ::testing::internal::CaptureStdout();
  const int rc = run({"unirep", "bench-cpu", "--batch", "2", "--image-size", "16", "--steps", "1"});
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  EXPECT_NE(out.find("UniRepLKNet-a, batch 2, 16x16 x 1"), std::string::npos) << out;
  EXPECT_NE(out.find("img/s"), std::string::npos) << out;
}

TEST(BenchCpu, BadSizesAreErrors) {
  try {
    run({"unirep", "bench-cpu", "--batch", "0"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--batch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run({"unirep", "bench-cpu", "--batchsize", "4"}), Error);
}

}  // namespace
}  // namespace unirep
