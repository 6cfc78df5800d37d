// Values the host sets before every step for kernels that read them from device memory.
//
// Why: a kernel argument captured in a CUDA graph keeps its capture-time value at every replay, but
// a copy from pinned host memory captured in the graph reads that memory again at every replay. So
// per-step constants (an AdamW step's learning rates and bias corrections) are written by the host
// into a pinned buffer (write), copied to a device buffer on the device's stream (upload, a memcpy
// node when the stream is capturing) and read there by the kernels queued after the copy.
//
// write() first waits for the previous upload to have read the pinned buffer (an event recorded
// after each copy, an event node in a graph), so the host never changes values a queued copy has
// yet to read; that bounds how far the host runs ahead to one step, which a training step never
// exceeds by much anyway.
#pragma once
#include <cstddef>

#include <cuda_runtime.h>

namespace unirep::cuda {

class StagedUpload {
 public:
  explicit StagedUpload(int device);
  ~StagedUpload();
  StagedUpload(const StagedUpload&) = delete;
  StagedUpload& operator=(const StagedUpload&) = delete;

  // Copies `bytes` bytes into the pinned buffer (grown when needed, which is refused while the
  // device's stream is capturing: a graph's upload must keep its buffers).
  void write(const void* data, size_t bytes);
  // Queues the copy of the written bytes to the device buffer; returns that buffer.
  const void* upload();

 private:
  int device_;
  void* host_ = nullptr;
  void* device_buffer_ = nullptr;
  size_t capacity_ = 0, size_ = 0;
  cudaEvent_t read_ = nullptr;  // recorded after each upload's copy
};

}  // namespace unirep::cuda
