#include "core/cuda/staged_upload.h"

#include <cstring>

#include "core/cuda/check.h"
#include "core/cuda/context.h"
#include "core/error.h"

namespace unirep::cuda {

namespace {

bool capturing(cudaStream_t s) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CUDA_CHECK(cudaStreamIsCapturing(s, &status));
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace

StagedUpload::StagedUpload(int device) : device_(device) {
  CUDA_CHECK(cudaEventCreateWithFlags(&read_, cudaEventDisableTiming));
}

StagedUpload::~StagedUpload() {
  if (read_) cudaEventSynchronize(read_);
  if (host_) cudaFreeHost(host_);
  if (device_buffer_) cudaFree(device_buffer_);
  if (read_) cudaEventDestroy(read_);
}

void StagedUpload::write(const void* data, size_t bytes) {
  CUDA_CHECK(cudaEventSynchronize(read_));
  if (bytes > capacity_) {
    UNIREP_CHECK(!capturing(stream(device_)), "StagedUpload: ", bytes, " bytes do not fit the ", capacity_,
                 " bytes a captured CUDA graph uploads from");
    if (host_) CUDA_CHECK(cudaFreeHost(host_));
    if (device_buffer_) CUDA_CHECK(cudaFree(device_buffer_));
    host_ = device_buffer_ = nullptr;
    CUDA_CHECK(cudaMallocHost(&host_, bytes));
    CUDA_CHECK(cudaMalloc(&device_buffer_, bytes));
    capacity_ = bytes;
  }
  std::memcpy(host_, data, bytes);
  size_ = bytes;
}

const void* StagedUpload::upload() {
  UNIREP_CHECK(size_ > 0, "StagedUpload::upload: nothing written");
  cudaStream_t s = stream(device_);
  CUDA_CHECK(cudaMemcpyAsync(device_buffer_, host_, size_, cudaMemcpyHostToDevice, s));
  if (capturing(s))
    CUDA_CHECK(cudaEventRecordWithFlags(read_, s, cudaEventRecordExternal));
  else
    CUDA_CHECK(cudaEventRecord(read_, s));
  return device_buffer_;
}

}  // namespace unirep::cuda
