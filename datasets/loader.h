// DataLoader: batches of a DistributedSampler's indices, fetched by a pool of worker threads into
// preallocated batch buffers, handed out in sampler order through a bounded prefetch queue.
//
// Work. The unit of work is one record: "fetch index i into row r of batch b" (the user's FetchFn:
// read the record, decode, augment, write floats into the batch's image tensor in place, and the
// label). Workers take records in sampler order from a shared cursor, so the records of one batch
// are fetched in parallel; the worker that completes a batch runs the optional BatchFn on it (a
// batch-level step such as mixup/cutmix) and, with a CUDA device, issues its host-to-device copy.
// next() hands out batch b only after batches 0..b-1 and waits for it if needed: the output is the
// same, in the same order, whatever the number of workers or their timing.
//
// Queue. `prefetch` bounds the batches started but not yet handed out (b < handed_out + prefetch).
// There are prefetch + 1 buffer sets ("slots"): the extra one is the batch the consumer holds. They
// are allocated once, in the constructor; batch b uses slot b % (prefetch + 1), so the steady state
// allocates no buffers. The batch returned by next() stays valid until the following call to
// next(), set_epoch(), restore() or the destructor, which recycle its slot.
//
// CUDA (options.device is a CUDA device). Host buffers are pinned (core/pinned.h); each slot also
// has device buffers. The completed batch is copied with cudaMemcpyAsync on the loader's own copy
// stream, after an event that marks the consumer's last use of the slot's device buffers (recorded
// on unirep::cuda::stream() when the consumer moves past that batch). next() makes the compute
// stream wait for the copy's event and returns device tensors: no host synchronisation, and the
// copies of the prefetched batches overlap the compute of the current one. A worker waits for the
// previous copy out of a slot's pinned buffer before writing into it again.
//
// Errors. An exception from FetchFn or BatchFn is stored with the batch; next() returns the batches
// before it and then throws unirep::Error naming the index, the epoch, the batch and the row, and
// the original message. From the first error on, no new record is started; next() throws the same
// error until set_epoch() or restore() starts a new pass. The destructor stops the workers after
// their current record (a FetchFn must return) and joins them.
// Skipping: a FetchFn returns false for a record it cannot use (a corrupt record, under a
// skip-corrupt policy). The loader counts it (stats().skipped), logs it to stderr (log_skips), and
// fetches the rank's next index of the epoch instead (position p + 1, p + 2, ... wrapping around
// to the start, as the sampler's padding does), at most max_substitutes times before it fails
// with an error. Batch::indices names the index actually in each row.
//
// Position. state() is the sampler state of the batches next() has handed out (the one the consumer
// holds included), not of the batches prefetched: restore(state()) in a new loader continues with
// exactly the batches the uninterrupted run would have handed out next (with the same epoch, seed,
// batch size and drop_last).
//
// Threads. next(), set_epoch(), restore() and the destructor are for one consumer thread. FetchFn
// and BatchFn run concurrently on the worker threads and must be thread-safe; they run with one
// OpenMP thread (omp_set_num_threads(1) per worker), so CPU ops called from them do not
// oversubscribe the cores. HDF5 serialises every library call behind one global lock: a FetchFn
// should read record bytes outside libhdf5 (resolved file offsets + pread) and decode in parallel.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/tensor.h"
#include "datasets/sampler.h"

namespace unirep {

struct Batch {
  Tensor images;        // [B, H, W, C] float32 (NHWC)
  Tensor labels;        // [B] int64
  Tensor soft_targets;  // [B, num_classes] float32 when LoaderOptions::num_classes > 0, else undefined
  std::vector<int64_t> indices;  // the dataset index in each row (after substitution of skipped records)
  int64_t size = 0;         // rows: the batch size, or less for a kept last partial batch
  int64_t epoch = 0;
  int64_t batch_index = 0;  // in the epoch (position / batch size)
  int64_t position = 0;     // the sampler position of row 0; row r holds position + r

  // Row pointers into the buffers (device pointers in a batch handed out on a CUDA device). The
  // FetchFn sees the full-size host buffers and writes row `row` only.
  float* image(int64_t row) const;
  int64_t* label(int64_t row) const;
  float* soft_target(int64_t row) const;
};

struct LoaderOptions {
  int64_t batch_size = 1;
  int64_t height = 1, width = 1, channels = 3;  // of the image tensor [B, H, W, C]
  int64_t num_classes = 0;       // > 0: a soft-target tensor [B, num_classes] per batch
  int num_workers = 2;
  int prefetch = 2;              // queue capacity in batches (started and not yet handed out)
  bool drop_last = false;        // drop the epoch's last partial batch instead of handing it out short
  Device device = Device::cpu();  // a CUDA device: pinned host buffers, asynchronous copies, device batches
  int max_substitutes = 16;      // per record whose fetch returns false: how many next indices to try
  bool log_skips = true;         // one stderr line per record whose fetch returned false
};

// Fetches dataset index `index` into row `row` of `batch`; returns false to skip the record.
using FetchFn = std::function<bool(int64_t index, int64_t row, Batch& batch)>;
// Runs once on each complete host batch, on a worker thread, before it is handed out.
using BatchFn = std::function<void(Batch& batch)>;

struct LoaderStats {
  int64_t skipped = 0;           // records whose fetch returned false, since construction
  int64_t batches_started = 0;   // since construction, prefetched and cancelled ones included
  int64_t batches_returned = 0;  // handed out by next(), since construction
  int64_t max_in_flight = 0;     // most batches started and not yet handed out at one time (<= prefetch)
};

class DataLoader {
 public:
  // Starts prefetching the sampler's current epoch from its current position.
  DataLoader(DistributedSampler sampler, LoaderOptions options, FetchFn fetch, BatchFn on_batch = nullptr);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch of the epoch, or nullptr at its end (see the header comment for its lifetime).
  const Batch* next();
  // Drops the current pass (prefetched batches included) and starts epoch `epoch` from its beginning.
  void set_epoch(int64_t epoch);
  // The sampler state of the batches handed out so far (not of those prefetched).
  SamplerState state() const;
  // Drops the current pass and continues from `state` (from state() of this or another loader).
  void restore(const SamplerState& state);

  int64_t epoch() const;
  // Batches in a whole epoch (from its first position).
  int64_t num_batches() const;
  // The sampler: its epoch, seed and order. Its own position is that of the pass's start; the
  // loader's position is state().
  const DistributedSampler& sampler() const;
  const LoaderOptions& options() const;
  LoaderStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace unirep
