// DataLoader (see loader.h for the design). The state machine, all under one mutex:
//   cursor_      the next record to start, counted from the pass's first position; its batch is
//                cursor_ / B and its row cursor_ % B. Workers take records in this order.
//   returned_    batches handed out in this pass. A record of batch b may start only while
//                b < returned_ + prefetch: the bound of the queue.
//   slot state   per slot: the batch it holds, its rows, how many records were handed out and done,
//                ready (complete, copied), the first error (lowest row).
// A worker that takes row 0 of a batch claims its slot; the worker that completes the batch's last
// record finalises it (BatchFn, device copy) and marks it ready. After an error no record starts, so
// every batch before the failing one still completes and the failing one ends once its started
// records are done; next() then throws its error. Quiescing (set_epoch, restore, an error, the
// destructor) stops handing out records and waits for the records in progress.
#include "datasets/loader.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <iostream>
#include <mutex>
#include <thread>

#include <cuda_runtime.h>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/error.h"
#include "core/parallel.h"
#include "core/pinned.h"

namespace unirep {

float* Batch::image(int64_t row) const {
  return images.data<float>() + row * (images.numel() / std::max<int64_t>(images.size(0), 1));
}
int64_t* Batch::label(int64_t row) const { return labels.data<int64_t>() + row; }
float* Batch::soft_target(int64_t row) const {
  UNIREP_CHECK(soft_targets.defined(), "Batch::soft_target: this loader has no soft targets (num_classes = 0)");
  return soft_targets.data<float>() + row * soft_targets.size(1);
}

namespace {

struct Slot {
  Batch host;  // full-size buffers the workers write (pinned with a CUDA device)
  Batch out;   // what next() hands out: views of `host` or of the device buffers
  Tensor dev_images, dev_labels, dev_soft;  // full-size device buffers (CUDA)
  cudaEvent_t copied = nullptr;    // the last host-to-device copy out of this slot
  cudaEvent_t released = nullptr;  // the consumer's last use of the device buffers (compute stream)
  int64_t batch = -1;  // batch of the pass this slot holds
  int64_t rows = 0, handed = 0, done = 0;
  bool ready = false;
  int64_t error_row = -1;
  std::exception_ptr error;
};

struct Task {
  int64_t slot, batch, row, position;  // position: the sampler's
};

}  // namespace

struct DataLoader::Impl {
  DistributedSampler sampler;
  LoaderOptions opt;
  FetchFn fetch;
  BatchFn on_batch;
  bool use_cuda = false;
  cudaStream_t copy_stream = nullptr;
  std::mutex copy_mutex;  // keeps each batch's wait + copies + record contiguous on the copy stream

  std::vector<Slot> slots;
  std::vector<std::thread> workers;

  mutable std::mutex mu;
  std::condition_variable work_cv;      // workers: a record may be startable, or shutdown
  std::condition_variable consumer_cv;  // consumer: a batch completed, or a worker went idle
  bool shutdown = false;
  bool running = false;        // records may be handed out
  bool stop_handing = false;   // an error occurred in this pass
  int64_t start_pos = 0;       // the pass's first sampler position
  int64_t end = 0;             // records in the pass
  int64_t nbatches = 0;        // batches in the pass
  int64_t cursor = 0;
  int64_t returned = 0;
  int64_t held = -1;           // slot the consumer holds
  int64_t active = 0;          // workers inside a record or a finalisation
  std::exception_ptr error;    // the failed state, rethrown by next()
  LoaderStats stats;

  Impl(DistributedSampler s, LoaderOptions o, FetchFn f, BatchFn b)
      : sampler(std::move(s)), opt(o), fetch(std::move(f)), on_batch(std::move(b)) {}

  int64_t B() const { return opt.batch_size; }
  int64_t image_row_bytes() const { return opt.height * opt.width * opt.channels * int64_t(sizeof(float)); }

  // ------------------------------------------------------------------ setup
  void allocate_slots() {
    const int64_t b = B();
    Shape img{b, opt.height, opt.width, opt.channels}, lab{b}, soft{b, opt.num_classes};
    slots.resize(size_t(opt.prefetch) + 1);
    for (Slot& s : slots) {
      auto host_empty = [&](const Shape& sh, DType dt) {
        return use_cuda ? pinned_empty(sh, dt) : Tensor::empty(sh, dt);
      };
      s.host.images = host_empty(img, DType::Float32);
      s.host.labels = host_empty(lab, DType::Int64);
      if (opt.num_classes > 0) s.host.soft_targets = host_empty(soft, DType::Float32);
      s.host.indices.reserve(size_t(b));
      s.out.indices.reserve(size_t(b));
      if (use_cuda) {
        s.dev_images = Tensor::empty(img, DType::Float32, opt.device);
        s.dev_labels = Tensor::empty(lab, DType::Int64, opt.device);
        if (opt.num_classes > 0) s.dev_soft = Tensor::empty(soft, DType::Float32, opt.device);
        CUDA_CHECK(cudaEventCreateWithFlags(&s.copied, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&s.released, cudaEventDisableTiming));
        // The allocator may still initialise the device buffers on the compute stream: the first copy
        // into them waits for that as it will wait for every later use.
        CUDA_CHECK(cudaEventRecord(s.released, cuda::stream(opt.device.index)));
      }
    }
  }

  void destroy_cuda() noexcept {
    if (!use_cuda) return;
    if (copy_stream) cudaStreamSynchronize(copy_stream);  // no copy may still read or write the buffers
    for (Slot& s : slots) {
      if (s.copied) cudaEventDestroy(s.copied);
      if (s.released) cudaEventDestroy(s.released);
      s.copied = s.released = nullptr;
    }
    if (copy_stream) cudaStreamDestroy(copy_stream);
    copy_stream = nullptr;
    cudaGetLastError();
  }

  // ------------------------------------------------------------------ pass control (mu held)
  void release_held_locked() {
    if (held < 0) return;
    if (use_cuda) CUDA_CHECK(cudaEventRecord(slots[size_t(held)].released, cuda::stream(opt.device.index)));
    held = -1;
  }

  void quiesce_locked(std::unique_lock<std::mutex>& lk) {
    running = false;
    consumer_cv.wait(lk, [&] { return active == 0; });
  }

  void reset_pass_locked(int64_t first_position) {
    release_held_locked();
    const int64_t remaining = sampler.num_samples() - first_position;
    start_pos = first_position;
    nbatches = opt.drop_last ? remaining / B() : (remaining + B() - 1) / B();
    end = opt.drop_last ? nbatches * B() : remaining;
    cursor = 0;
    returned = 0;
    stop_handing = false;
    error = nullptr;
    for (Slot& s : slots) {
      s.batch = -1;
      s.ready = false;
      s.error = nullptr;
      s.error_row = -1;
    }
    running = true;
    work_cv.notify_all();
  }

  bool can_start_locked() const {
    return running && !stop_handing && cursor < end && cursor / B() < returned + opt.prefetch;
  }

  // ------------------------------------------------------------------ workers
  Task take_locked() {
    const int64_t k = cursor / B(), row = cursor % B();
    const int64_t si = k % int64_t(slots.size());
    Slot& s = slots[size_t(si)];
    if (row == 0) {
      s.batch = k;
      s.rows = std::min(B(), end - k * B());
      s.handed = s.done = 0;
      s.ready = false;
      s.error = nullptr;
      s.error_row = -1;
      s.host.size = s.rows;
      s.host.epoch = sampler.epoch();
      s.host.position = start_pos + k * B();
      s.host.batch_index = s.host.position / B();
      s.host.indices.assign(size_t(s.rows), -1);
      ++stats.batches_started;
      stats.max_in_flight = std::max(stats.max_in_flight, k + 1 - returned);
    }
    ++s.handed;
    Task t{si, k, row, start_pos + cursor};
    ++cursor;
    ++active;
    return t;
  }

  // Runs one record outside the lock; returns the error, if any.
  std::exception_ptr run_task(const Task& t) {
    Slot& s = slots[size_t(t.slot)];
    int64_t index = -1;
    try {
      if (use_cuda) CUDA_CHECK(cudaEventSynchronize(s.copied));  // the previous copy out of this slot
      index = sampler.index_at(t.position);
      const int64_t n = sampler.num_samples();
      for (int attempt = 0;; ++attempt) {
        if (fetch(index, t.row, s.host)) break;
        int64_t skipped;
        {
          std::lock_guard<std::mutex> lk(mu);
          skipped = ++stats.skipped;
        }
        UNIREP_CHECK(attempt < opt.max_substitutes, "DataLoader: record ", index, " (epoch ", sampler.epoch(),
                     ", position ", (t.position + attempt) % n, ") could not be read and neither could ",
                     opt.max_substitutes, " substitutes for position ", t.position,
                     " (the fetch function returned false for each)");
        const int64_t next_index = sampler.index_at((t.position + attempt + 1) % n);
        if (opt.log_skips)  // one write per line, so that lines of concurrent workers do not interleave
          std::cerr << detail::concat("DataLoader: skipped record ", index, " (epoch ", sampler.epoch(), ", batch ",
                                      s.host.batch_index, ", row ", t.row, "; ", skipped,
                                      " skipped so far); substituting index ", next_index, "\n");
        index = next_index;
      }
      s.host.indices[size_t(t.row)] = index;
      return nullptr;
    } catch (const std::exception& e) {
      return std::make_exception_ptr(Error(detail::concat(
          "DataLoader: fetching index ", index, " (epoch ", sampler.epoch(), ", batch ", s.host.batch_index, ", row ",
          t.row, ") failed: ", e.what())));
    } catch (...) {
      return std::make_exception_ptr(Error(detail::concat("DataLoader: fetching index ", index, " (epoch ",
                                                          sampler.epoch(), ", batch ", s.host.batch_index,
                                                          ", row ", t.row, ") failed with a non-standard exception")));
    }
  }

  // The batch's records are all done: batch function, views to hand out, device copy. Outside the lock.
  std::exception_ptr finalise(Slot& s) {
    try {
      if (on_batch) on_batch(s.host);
    } catch (const std::exception& e) {
      return std::make_exception_ptr(Error(detail::concat("DataLoader: the batch function failed on batch ",
                                                          s.host.batch_index, " (epoch ", s.host.epoch,
                                                          "): ", e.what())));
    } catch (...) {
      return std::make_exception_ptr(Error(detail::concat("DataLoader: the batch function failed on batch ",
                                                          s.host.batch_index, " (epoch ", s.host.epoch,
                                                          ") with a non-standard exception")));
    }
    try {
      const int64_t rows = s.rows;
      const bool full = rows == B();
      Batch& o = s.out;
      o.size = rows;
      o.epoch = s.host.epoch;
      o.batch_index = s.host.batch_index;
      o.position = s.host.position;
      o.indices.assign(s.host.indices.begin(), s.host.indices.end());  // within the reserved capacity
      const Tensor& im = use_cuda ? s.dev_images : s.host.images;
      const Tensor& lb = use_cuda ? s.dev_labels : s.host.labels;
      const Tensor& st = use_cuda ? s.dev_soft : s.host.soft_targets;
      o.images = full ? im : im.slice(0, 0, rows);
      o.labels = full ? lb : lb.slice(0, 0, rows);
      o.soft_targets = st.defined() ? (full ? st : st.slice(0, 0, rows)) : Tensor();
      if (use_cuda) {
        std::lock_guard<std::mutex> lk(copy_mutex);
        CUDA_CHECK(cudaStreamWaitEvent(copy_stream, s.released, 0));
        CUDA_CHECK(cudaMemcpyAsync(s.dev_images.data_ptr(), s.host.images.data_ptr(),
                                   size_t(rows * image_row_bytes()), cudaMemcpyHostToDevice, copy_stream));
        CUDA_CHECK(cudaMemcpyAsync(s.dev_labels.data_ptr(), s.host.labels.data_ptr(), size_t(rows) * sizeof(int64_t),
                                   cudaMemcpyHostToDevice, copy_stream));
        if (s.dev_soft.defined())
          CUDA_CHECK(cudaMemcpyAsync(s.dev_soft.data_ptr(), s.host.soft_targets.data_ptr(),
                                     size_t(rows * opt.num_classes) * sizeof(float), cudaMemcpyHostToDevice,
                                     copy_stream));
        CUDA_CHECK(cudaEventRecord(s.copied, copy_stream));
      }
      return nullptr;
    } catch (const std::exception& e) {
      return std::make_exception_ptr(Error(detail::concat("DataLoader: handing out batch ", s.host.batch_index,
                                                          " (epoch ", s.host.epoch, ") failed: ", e.what())));
    }
  }

  void record_error_locked(Slot& s, int64_t row, std::exception_ptr e) {
    if (!s.error || row < s.error_row) {
      s.error = std::move(e);
      s.error_row = row;
    }
    stop_handing = true;
  }

  void worker_main() {
    omp_set_num_threads(1);
    if (use_cuda) {
      if (cudaSetDevice(opt.device.index) != cudaSuccess) cudaGetLastError();  // surfaces at the first CUDA call
    }
    std::unique_lock<std::mutex> lk(mu);
    for (;;) {
      work_cv.wait(lk, [&] { return shutdown || can_start_locked(); });
      if (shutdown) return;
      Task t = take_locked();
      lk.unlock();
      std::exception_ptr err = run_task(t);
      lk.lock();
      Slot& s = slots[size_t(t.slot)];
      ++s.done;
      if (err) record_error_locked(s, t.row, std::move(err));
      bool finalise_now = !s.error && s.done == s.rows;
      if (finalise_now) {
        lk.unlock();
        std::exception_ptr ferr = finalise(s);
        lk.lock();
        if (ferr)
          record_error_locked(s, s.rows, std::move(ferr));
        else
          s.ready = true;
      }
      --active;
      consumer_cv.notify_all();
    }
  }

  bool batch_done_locked(const Slot& s, int64_t k) const {
    return s.batch == k && (s.ready || (s.error && s.done == s.handed));
  }
};

DataLoader::DataLoader(DistributedSampler sampler, LoaderOptions options, FetchFn fetch, BatchFn on_batch)
    : impl_(std::make_unique<Impl>(std::move(sampler), options, std::move(fetch), std::move(on_batch))) {
  Impl& m = *impl_;
  const LoaderOptions& o = m.opt;
  UNIREP_CHECK(m.fetch != nullptr, "DataLoader: a fetch function is required");
  UNIREP_CHECK(o.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", o.batch_size);
  UNIREP_CHECK(o.height >= 1 && o.width >= 1 && o.channels >= 1, "DataLoader: image size must be positive, got [",
               o.height, ", ", o.width, ", ", o.channels, "] (H, W, C)");
  UNIREP_CHECK(o.num_classes >= 0, "DataLoader: num_classes must be >= 0, got ", o.num_classes);
  UNIREP_CHECK(o.num_workers >= 1, "DataLoader: num_workers must be >= 1, got ", o.num_workers);
  UNIREP_CHECK(o.prefetch >= 1, "DataLoader: prefetch must be >= 1 batch, got ", o.prefetch);
  UNIREP_CHECK(o.max_substitutes >= 0, "DataLoader: max_substitutes must be >= 0, got ", o.max_substitutes);
  m.use_cuda = o.device.is_cuda();
  if (m.use_cuda) {
    UNIREP_CHECK(o.device.index < cuda_device_count(), "DataLoader: ", o.device.str(), " requested but ",
                 cuda_device_count(), " CUDA devices are available");
    int prev = cuda::current_device();
    cuda::set_device(o.device.index);
    try {
      CUDA_CHECK(cudaStreamCreateWithFlags(&m.copy_stream, cudaStreamNonBlocking));
      m.allocate_slots();
    } catch (...) {
      m.destroy_cuda();
      cuda::set_device(prev);
      throw;
    }
    cuda::set_device(prev);
  } else {
    m.allocate_slots();
  }
  {
    std::lock_guard<std::mutex> lk(m.mu);
    m.reset_pass_locked(m.sampler.consumed());
  }
  try {
    for (int i = 0; i < o.num_workers; ++i) m.workers.emplace_back([&m] { m.worker_main(); });
  } catch (...) {
    {
      std::lock_guard<std::mutex> lk(m.mu);
      m.shutdown = true;
    }
    m.work_cv.notify_all();
    for (auto& w : m.workers) w.join();
    m.destroy_cuda();
    throw;
  }
}

DataLoader::~DataLoader() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lk(m.mu);
    m.shutdown = true;
    m.running = false;
  }
  m.work_cv.notify_all();
  for (auto& w : m.workers) w.join();
  m.destroy_cuda();
}

const Batch* DataLoader::next() {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lk(m.mu);
  if (m.error) std::rethrow_exception(m.error);
  m.release_held_locked();
  if (m.returned >= m.nbatches) return nullptr;
  const int64_t k = m.returned;
  const int64_t si = k % int64_t(m.slots.size());
  Slot& s = m.slots[size_t(si)];
  m.consumer_cv.wait(lk, [&] { return m.batch_done_locked(s, k); });
  if (s.error) {
    m.quiesce_locked(lk);
    m.error = s.error;
    std::rethrow_exception(m.error);
  }
  ++m.returned;
  ++m.stats.batches_returned;
  m.held = si;
  m.work_cv.notify_all();  // the queue has room again
  lk.unlock();
  if (m.use_cuda) CUDA_CHECK(cudaStreamWaitEvent(cuda::stream(m.opt.device.index), s.copied, 0));
  return &s.out;
}

void DataLoader::set_epoch(int64_t epoch) {
  Impl& m = *impl_;
  std::unique_lock<std::mutex> lk(m.mu);
  const bool was_running = m.running;
  m.quiesce_locked(lk);
  try {
    m.sampler.set_epoch(epoch);
  } catch (...) {
    m.running = was_running;  // a bad epoch number leaves the current pass as it was
    m.work_cv.notify_all();
    throw;
  }
  m.reset_pass_locked(0);
}

SamplerState DataLoader::state() const {
  const Impl& m = *impl_;
  std::lock_guard<std::mutex> lk(m.mu);
  SamplerState st = m.sampler.state();
  st.consumed = m.start_pos + std::min(m.returned * m.B(), m.end);
  return st;
}

void DataLoader::restore(const SamplerState& state) {
  Impl& m = *impl_;
  DistributedSampler restored = m.sampler;
  restored.restore(state);  // validates before anything stops
  std::unique_lock<std::mutex> lk(m.mu);
  m.quiesce_locked(lk);
  m.sampler = std::move(restored);
  m.reset_pass_locked(state.consumed);
}

int64_t DataLoader::epoch() const { return impl_->sampler.epoch(); }

int64_t DataLoader::num_batches() const {
  const Impl& m = *impl_;
  int64_t n = m.sampler.num_samples();
  return m.opt.drop_last ? n / m.B() : (n + m.B() - 1) / m.B();
}

const DistributedSampler& DataLoader::sampler() const { return impl_->sampler; }
const LoaderOptions& DataLoader::options() const { return impl_->opt; }

LoaderStats DataLoader::stats() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->stats;
}

}  // namespace unirep
