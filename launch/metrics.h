// Training logs, written by rank 0 only: the metrics of a run as JSON Lines, and the live progress line.
//
// RUN_DIR/metrics.jsonl holds one JSON object per line, flushed per line, so a killed run keeps every complete
// line. Every record carries "kind" (a string) and "step" (an integer):
//   {"kind":"step","epoch":e,"step":s,"loss":..,"lr":..,"img_per_s":..,"time":seconds since start}
//   {"kind":"epoch","epoch":e,"step":s,"train_loss":..,"top1":..,"top5":..,"ema_top1":..,"ema_top5":..,
//    "eval_loss":..,"time":..}   (the EMA and eval fields only when there is an EMA model / an evaluation)
// "step" counts the optimizer steps completed when the record was written: 1 for the first step record, and for an
// epoch or eval record the steps done when it ran. A checkpoint saved after S steps therefore covers exactly the
// records with step <= S, which is what resuming keeps (truncate_after_step). NaN and infinity are written as null
// (JSON has no such numbers); launch/plot_run.py reads them back as gaps.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace unirep {

class MetricsLog {
 public:
  // Appends to `path` (created with its folder when missing). A torn last line left by a killed run is dropped on
  // opening, so new records never glue onto it. A disabled log (ranks other than 0) touches no file.
  explicit MetricsLog(const std::string& path, bool enabled = true);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // One line per record, flushed; throws unless the record is an object with a string "kind" and an integer "step".
  void write(const nlohmann::json& record);
  // Keeps the records with step <= `step` (those a checkpoint saved after `step` steps covers), so that the log of a
  // resumed run equals an uninterrupted run's; truncate_after_step(-1) empties it for a fresh run. Atomic:
  // the kept lines go to a temporary file that replaces the log. A complete line that is not such a record throws.
  void truncate_after_step(int64_t step);

  const std::string& path() const { return path_; }
  bool enabled() const { return enabled_; }

 private:
  void open_for_append();

  std::string path_;
  bool enabled_;
  std::FILE* file_ = nullptr;
};

// "epoch 2/5  step 812/2340  loss 0.4312  lr 1.93e-03  1234 img/s  ETA 1m52s". On a terminal each update rewrites
// the line in place ('\r', padded with spaces to clear a longer previous text); otherwise (a log file) each update
// is a line of its own, and the caller updates only every N steps. Call finish() before printing anything else.
class ProgressLine {
 public:
  ProgressLine(bool is_terminal, int64_t total_steps, std::FILE* out = stdout);
  void update(int64_t epoch, int64_t epochs, int64_t step, double loss, double lr, double img_per_s,
              double eta_seconds);
  // Ends a pending in-place line with a newline; does nothing otherwise.
  void finish();
  // "45s", "3m07s", "2h05m" (whole seconds, rounded; hours drop the seconds); "?" when not finite or negative.
  static std::string format_duration(double seconds);

 private:
  bool is_terminal_;
  int64_t total_steps_;
  std::FILE* out_;
  size_t previous_length_ = 0;
  bool pending_ = false;
};

}  // namespace unirep
