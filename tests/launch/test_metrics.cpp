// The run's JSONL metrics log (one flushed line per record; resuming cuts it back to the checkpoint's step) and the
// progress line (in place on a terminal, a line per update otherwise).
#include "launch/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace unirep {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class MetricsLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    folder_ = fs::temp_directory_path() /
              ("unirep_metrics_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(folder_);
    path_ = (folder_ / "run" / "metrics.jsonl").string();
  }
  void TearDown() override { fs::remove_all(folder_); }

  std::string contents() const {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void append_raw(const std::string& text) const {
    std::ofstream out(path_, std::ios::binary | std::ios::app);
    out << text;
  }

  fs::path folder_;
  std::string path_;
};

json step_record(int64_t epoch, int64_t step) {
  return {{"kind", "step"}, {"epoch", epoch}, {"step", step}, {"loss", 2.0 / double(step)},
          {"lr", 1e-3 * double(step)}, {"img_per_s", 1000.5}, {"time", 0.25 * double(step)}};
}

json epoch_record(int64_t epoch, int64_t step) {
  return {{"kind", "epoch"}, {"epoch", epoch}, {"step", step}, {"train_loss", 0.5}, {"top1", 0.75},
          {"top5", 0.9}, {"eval_loss", 0.6}, {"time", 1.5}};
}

// An uninterrupted 2-epoch run of 4 steps per epoch.
void write_run(MetricsLog& log, int64_t from_step, int64_t to_step) {
  for (int64_t step = from_step; step <= to_step; ++step) {
    log.write(step_record((step - 1) / 4 + 1, step));
    if (step % 4 == 0) log.write(epoch_record(step / 4, step));
  }
}

TEST_F(MetricsLogTest, WritesOneParsableObjectPerLine) {
  MetricsLog log(path_);
  log.write(step_record(1, 1));
  log.write(epoch_record(1, 1));
  log.write({{"kind", "step"}, {"step", 2}, {"loss", std::nan("")}});
  std::istringstream lines(contents());
  std::string line;
  std::vector<json> records;
  while (std::getline(lines, line)) records.push_back(json::parse(line));
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0], step_record(1, 1));
  EXPECT_EQ(records[0]["lr"].get<double>(), 1e-3);  // written with every digit a double needs
  EXPECT_EQ(records[1], epoch_record(1, 1));
  EXPECT_TRUE(records[2]["loss"].is_null());  // JSON has no NaN
  EXPECT_EQ(contents().back(), '\n');
}

TEST_F(MetricsLogTest, EveryLineIsInTheFileBeforeTheNextWrite) {
  MetricsLog log(path_);
  log.write(step_record(1, 1));
  EXPECT_EQ(contents(), step_record(1, 1).dump() + "\n");
  log.write(step_record(1, 2));
  EXPECT_EQ(contents(), step_record(1, 1).dump() + "\n" + step_record(1, 2).dump() + "\n");
}

TEST_F(MetricsLogTest, AppendsToAnExistingLogAndDropsItsTornLastLine) {
  {
    MetricsLog log(path_);
    log.write(step_record(1, 1));
  }
  append_raw("{\"kind\":\"step\",\"epo");  // a run killed mid-line
  MetricsLog log(path_);
  log.write(step_record(1, 2));
  EXPECT_EQ(contents(), step_record(1, 1).dump() + "\n" + step_record(1, 2).dump() + "\n");
}

TEST_F(MetricsLogTest, RejectsRecordsWithoutKindOrIntegerStep) {
  MetricsLog log(path_);
  EXPECT_THROW(log.write({{"kind", "step"}, {"loss", 1.0}}), Error);
  EXPECT_THROW(log.write({{"step", 3}}), Error);
  EXPECT_THROW(log.write({{"kind", "step"}, {"step", 2.5}}), Error);
  EXPECT_THROW(log.write(json::array({1, 2})), Error);
  EXPECT_EQ(contents(), "");
}

TEST_F(MetricsLogTest, TruncateKeepsTheRecordsTheCheckpointCovers) {
  MetricsLog log(path_);
  write_run(log, 1, 6);
  log.write({{"kind", "eval"}, {"step", 5}, {"top1", 0.5}});
  log.truncate_after_step(4);  // steps 1..4 and epoch 1 (written at step 4)
  std::string expected;
  for (int64_t step = 1; step <= 4; ++step) expected += step_record(1, step).dump() + "\n";
  expected += epoch_record(1, 4).dump() + "\n";
  EXPECT_EQ(contents(), expected);
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
  log.write(step_record(2, 5));  // the log stays open for appending
  EXPECT_EQ(contents(), expected + step_record(2, 5).dump() + "\n");
}

TEST_F(MetricsLogTest, ResumedRunsLogEqualsAnUninterruptedRunsLog) {
  std::string uninterrupted;
  {
    MetricsLog log(path_);
    write_run(log, 1, 8);
    uninterrupted = contents();
  }
  fs::remove(path_);
  {
    MetricsLog log(path_);
    write_run(log, 1, 7);  // checkpoint after step 4, killed during step 7's line
  }
  append_raw("{\"kind\":\"st");
  MetricsLog log(path_);
  log.truncate_after_step(4);
  write_run(log, 5, 8);
  EXPECT_EQ(contents(), uninterrupted);
}

TEST_F(MetricsLogTest, TruncateDropsATornLastLine) {
  MetricsLog log(path_);
  write_run(log, 1, 2);
  append_raw("{\"kind\":\"step\",\"step\":1");  // torn after the log was opened; its step would be kept
  log.truncate_after_step(10);
  EXPECT_EQ(contents(), step_record(1, 1).dump() + "\n" + step_record(1, 2).dump() + "\n");
}

TEST_F(MetricsLogTest, TruncateMinusOneEmptiesTheLog) {
  MetricsLog log(path_);
  write_run(log, 1, 4);
  log.truncate_after_step(-1);
  EXPECT_EQ(contents(), "");
}

TEST_F(MetricsLogTest, TruncateRejectsAMalformedLineAndLeavesTheLogAlone) {
  MetricsLog log(path_);
  write_run(log, 1, 1);
  append_raw("not json\n");
  const std::string before = contents();
  try {
    log.truncate_after_step(0);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2 of '" + path_ + "'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(contents(), before);
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
}

TEST_F(MetricsLogTest, DisabledLogTouchesNoFile) {
  MetricsLog log(path_, /*enabled=*/false);
  log.write(step_record(1, 1));
  log.truncate_after_step(0);
  EXPECT_FALSE(fs::exists(folder_));
}

TEST(MetricsProgressLine, FormatDuration) {
  EXPECT_EQ(ProgressLine::format_duration(0), "0s");
  EXPECT_EQ(ProgressLine::format_duration(45), "45s");
  EXPECT_EQ(ProgressLine::format_duration(59.4), "59s");
  EXPECT_EQ(ProgressLine::format_duration(59.6), "1m00s");
  EXPECT_EQ(ProgressLine::format_duration(187), "3m07s");
  EXPECT_EQ(ProgressLine::format_duration(3599), "59m59s");
  EXPECT_EQ(ProgressLine::format_duration(3600), "1h00m");
  EXPECT_EQ(ProgressLine::format_duration(7559), "2h05m");
  EXPECT_EQ(ProgressLine::format_duration(360000), "100h00m");
  EXPECT_EQ(ProgressLine::format_duration(-1), "?");
  EXPECT_EQ(ProgressLine::format_duration(std::nan("")), "?");
  EXPECT_EQ(ProgressLine::format_duration(INFINITY), "?");
}

std::string read_all(std::FILE* f) {
  std::rewind(f);
  std::string text;
  for (int c; (c = std::fgetc(f)) != EOF;) text += char(c);
  return text;
}

TEST(MetricsProgressLine, LogFileGetsOneLinePerUpdate) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  ProgressLine progress(/*is_terminal=*/false, 2340, out);
  progress.update(2, 5, 812, 0.43119, 0.00193, 1234.4, 112);
  progress.update(2, 5, 813, 0.5, 0.00194, 1000, 45);
  progress.finish();
  EXPECT_EQ(read_all(out),
            "epoch 2/5  step 812/2340  loss 0.4312  lr 1.93e-03  1234 img/s  ETA 1m52s\n"
            "epoch 2/5  step 813/2340  loss 0.5000  lr 1.94e-03  1000 img/s  ETA 45s\n");
  std::fclose(out);
}

TEST(MetricsProgressLine, TerminalRewritesTheLineInPlace) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  ProgressLine progress(/*is_terminal=*/true, 100, out);
  progress.update(1, 1, 99, 0.25, 0.001, 100, 7500);
  progress.update(1, 1, 100, 0.25, 0.001, 100, 0);
  progress.finish();
  progress.finish();
  const std::string long_text = "epoch 1/1  step 99/100  loss 0.2500  lr 1.00e-03  100 img/s  ETA 2h05m";
  const std::string short_text = "epoch 1/1  step 100/100  loss 0.2500  lr 1.00e-03  100 img/s  ETA 0s";
  ASSERT_LT(short_text.size(), long_text.size());
  EXPECT_EQ(read_all(out), "\r" + long_text + "\r" + short_text +
                               std::string(long_text.size() - short_text.size(), ' ') + "\n");
  std::fclose(out);
}

}  // namespace
}  // namespace unirep
