#include "launch/metrics.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace unirep {

namespace fs = std::filesystem;

namespace {

// Cuts a file back to its last newline: what follows it is a line a killed writer did not finish.
// Reads backwards from the end, since logs of long runs hold hundreds of thousands of lines.
void drop_torn_tail(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return;
  std::ifstream in(path, std::ios::binary);
  UNIREP_CHECK(in, "metrics log: cannot read '", path, "'");
  in.seekg(0, std::ios::end);
  const int64_t size = in.tellg();
  int64_t keep = 0;
  char chunk[65536];
  for (int64_t end = size; end > 0 && keep == 0;) {
    const int64_t begin = std::max<int64_t>(0, end - int64_t(sizeof chunk));
    in.seekg(begin);
    in.read(chunk, end - begin);
    UNIREP_CHECK(in, "metrics log: cannot read '", path, "'");
    for (int64_t i = end - begin - 1; i >= 0; --i) {
      if (chunk[i] == '\n') {
        keep = begin + i + 1;
        break;
      }
    }
    end = begin;
  }
  if (keep != size) fs::resize_file(path, uintmax_t(keep));
}

bool is_record(const nlohmann::json& record) {
  if (!record.is_object()) return false;
  auto kind = record.find("kind"), step = record.find("step");
  return kind != record.end() && kind->is_string() && step != record.end() && step->is_number_integer();
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path, bool enabled) : path_(path), enabled_(enabled) {
  if (!enabled_) return;
  const fs::path folder = fs::path(path_).parent_path();
  std::error_code ec;
  if (!folder.empty()) fs::create_directories(folder, ec);
  UNIREP_CHECK(!ec, "metrics log: cannot create the folder '", folder.string(), "': ", ec.message());
  drop_torn_tail(path_);
  open_for_append();
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::open_for_append() {
  file_ = std::fopen(path_.c_str(), "a");
  UNIREP_CHECK(file_, "metrics log: cannot open '", path_, "' for appending: ", std::strerror(errno));
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!enabled_) return;
  UNIREP_CHECK(is_record(record), "metrics log: a record is an object with a string \"kind\" and an integer "
               "\"step\", got ", record.dump());
  UNIREP_CHECK(file_, "metrics log: '", path_, "' is not open");
  const std::string line = record.dump() + '\n';
  const bool written = std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0;
  UNIREP_CHECK(written, "metrics log: cannot write to '", path_, "': ", std::strerror(errno));
}

void MetricsLog::truncate_after_step(int64_t step) {
  if (!enabled_) return;
  if (file_) std::fclose(file_);
  file_ = nullptr;
  const std::string temporary = path_ + ".tmp";
  {
    std::ifstream in(path_, std::ios::binary);
    std::FILE* out = std::fopen(temporary.c_str(), "wb");
    UNIREP_CHECK(out, "metrics log: cannot create '", temporary, "': ", std::strerror(errno));
    std::string line;
    int64_t number = 0;
    bool ok = true;
    // A last line without its newline is torn: getline then stops at the end of the file.
    while (ok && std::getline(in, line) && !in.eof()) {
      ++number;
      if (line.empty()) continue;
      nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!is_record(record)) {
        std::fclose(out);
        fs::remove(temporary);
        open_for_append();
        throw Error("metrics log: line " + std::to_string(number) + " of '" + path_ +
                    "' is not a record with a string \"kind\" and an integer \"step\": " + line.substr(0, 120));
      }
      if (record["step"].get<int64_t>() > step) continue;
      line += '\n';
      ok = std::fwrite(line.data(), 1, line.size(), out) == line.size();
    }
    ok = ok && std::fflush(out) == 0 && ::fsync(::fileno(out)) == 0;
    const int error = errno;
    std::fclose(out);
    UNIREP_CHECK(ok, "metrics log: cannot write '", temporary, "': ", std::strerror(error));
  }
  std::error_code ec;
  fs::rename(temporary, path_, ec);
  UNIREP_CHECK(!ec, "metrics log: cannot replace '", path_, "' by '", temporary, "': ", ec.message());
  open_for_append();
}

ProgressLine::ProgressLine(bool is_terminal, int64_t total_steps, std::FILE* out)
    : is_terminal_(is_terminal), total_steps_(total_steps), out_(out) {}

void ProgressLine::update(int64_t epoch, int64_t epochs, int64_t step, double loss, double lr, double img_per_s,
                          double eta_seconds) {
  char text[256];
  std::snprintf(text, sizeof text, "epoch %" PRId64 "/%" PRId64 "  step %" PRId64 "/%" PRId64
                "  loss %.4f  lr %.2e  %.0f img/s  ETA %s",
                epoch, epochs, step, total_steps_, loss, lr, img_per_s, format_duration(eta_seconds).c_str());
  std::string line = text;
  if (is_terminal_) {
    const size_t length = line.size();
    if (length < previous_length_) line.append(previous_length_ - length, ' ');
    previous_length_ = length;
    pending_ = true;
    std::fputc('\r', out_);
  } else {
    line += '\n';
  }
  std::fputs(line.c_str(), out_);
  std::fflush(out_);
}

void ProgressLine::finish() {
  if (!pending_) return;
  std::fputc('\n', out_);
  std::fflush(out_);
  pending_ = false;
  previous_length_ = 0;
}

std::string ProgressLine::format_duration(double seconds) {
  // Past a century the figure says nothing, and llround would overflow.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 3.2e9) return "?";
  const long long s = std::llround(seconds);
  char text[32];
  if (s < 60)
    std::snprintf(text, sizeof text, "%llds", s);
  else if (s < 3600)
    std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  return text;
}

}  // namespace unirep
