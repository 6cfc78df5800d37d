// Page-locked ("pinned") host memory. The GPU's DMA engines read it directly, so a host-to-device
// cudaMemcpyAsync from it is truly asynchronous and runs at full PCIe/NVLink bandwidth, where a copy
// from pageable memory is staged through a driver buffer and blocks the calling thread. The data
// loader allocates its batch buffers here once and reuses them.
//
// A pinned tensor is an ordinary CPU tensor (device cpu) whose Storage has `pinned` set: every CPU
// op reads and writes it as usual; only its allocation (cudaHostAlloc) and release (cudaFreeHost)
// differ. Pinning needs a CUDA driver: without one the allocation throws.
#pragma once
#include <cstddef>

#include "core/tensor.h"

namespace unirep {

// cudaHostAlloc / cudaFreeHost with error checks (the message names the size and the runtime's error).
void* pinned_alloc(size_t nbytes);
void pinned_free(void* ptr);

// An uninitialised CPU tensor in pinned memory.
Tensor pinned_empty(const Shape& shape, DType dtype = DType::Float32);
// True when `t` is a CPU tensor whose storage is pinned.
bool is_pinned(const Tensor& t);

}  // namespace unirep
