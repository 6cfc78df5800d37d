// Helpers shared by the converters (datasets/convert_*.cpp) and inspect: file listing and reading,
// JPEG/PNG validation through libjpeg and libpng, label-map PNG decoding, shard counts and an
// ordered parallel map (workers produce items, the calling thread consumes them in index order).
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

namespace unirep::convert {

// A source file left out under skip_corrupt: counted, and logged with the reason.
inline void note_skipped(std::ostream* log, const std::string& why, int64_t& skipped) {
  ++skipped;
  if (log) *log << "[data] skipping " << why << "\n";
}

// The whole file; errors name it.
std::vector<uint8_t> read_file(const std::string& path);

// Regular files directly in `dir` whose extension is one of `extensions` (lower case, with the dot;
// compared case-insensitively), sorted by name. Sub-folders of `dir`, sorted, likewise.
std::vector<std::string> list_files(const std::string& dir, const std::vector<std::string>& extensions);
std::vector<std::string> list_subfolders(const std::string& dir);
bool is_directory(const std::string& path);

struct ImageInfo {
  int64_t height = 0, width = 0, channels = 0;
  bool png = false;  // else JPEG
};

// Validates JPEG or PNG bytes (by their signature) and returns the image's shape; `full` decodes the
// whole image (JPEG at 1/8 scale: every entropy-coded block is still decoded), else only the header
// is parsed. A truncated JPEG ("premature end of data") counts as corrupt. Throws unirep::Error
// naming `name`.
ImageInfo probe_image(const std::vector<uint8_t>& bytes, const std::string& name, bool full = true);

// Decodes an 8-bit (or packed 1/2/4-bit) single-channel grey or palette PNG into its values (palette:
// the indices), row-major. Throws naming `name`.
std::vector<uint8_t> decode_label_png(const std::vector<uint8_t>& bytes, const std::string& name, int64_t& height,
                                      int64_t& width);

// Shards for a split of `records` when the largest has `largest` records and gets `shards`.
int64_t shards_for_split(int64_t shards, int64_t records, int64_t largest);
// `shards` or, when 0, enough shards for about 256 MiB of source bytes each.
int64_t default_shards(int64_t shards, uint64_t largest_split_bytes);
int resolve_workers(int workers);

// Calls produce(i) for i in [0, n) on `workers` threads and consume(i, value) on the calling thread
// in index order, with at most `window` items produced ahead of the consumer. An exception from
// produce(i) is rethrown when the consumer reaches i (so the first bad item in order is reported);
// an exception from consume stops the workers and propagates.
template <class T, class Produce, class Consume>
void ordered_parallel(int64_t n, int workers, int64_t window, Produce produce, Consume consume) {
  if (n <= 0) return;
  workers = std::max(1, workers);
  window = std::max<int64_t>(window, 2 * workers);
  struct Slot {
    std::optional<T> value;
    std::exception_ptr error;
    bool ready = false;
  };
  std::vector<Slot> slots(static_cast<size_t>(window));
  std::mutex m;
  std::condition_variable cv_ready, cv_space;
  int64_t next = 0, consumed = 0;
  bool stop = false;
  auto worker = [&] {
    for (;;) {
      int64_t i;
      {
        std::unique_lock<std::mutex> lock(m);
        cv_space.wait(lock, [&] { return stop || next >= n || next < consumed + window; });
        if (stop || next >= n) return;
        i = next++;
      }
      std::optional<T> value;
      std::exception_ptr error;
      try {
        value.emplace(produce(i));
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(m);
      Slot& s = slots[size_t(i % window)];
      s.value = std::move(value);
      s.error = error;
      s.ready = true;
      cv_ready.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < workers; ++t) pool.emplace_back(worker);
  auto finish = [&] {
    {
      std::lock_guard<std::mutex> lock(m);
      stop = true;
    }
    cv_space.notify_all();
    for (auto& t : pool) t.join();
  };
  try {
    for (int64_t i = 0; i < n; ++i) {
      std::optional<T> value;
      std::exception_ptr error;
      {
        std::unique_lock<std::mutex> lock(m);
        Slot& s = slots[size_t(i % window)];
        cv_ready.wait(lock, [&] { return s.ready; });
        value = std::move(s.value);
        error = s.error;
        s = Slot();
        ++consumed;
      }
      cv_space.notify_all();
      if (error) std::rethrow_exception(error);
      consume(i, std::move(*value));
    }
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

}  // namespace unirep::convert
