// Error checks for every CUDA runtime call and kernel launch: a failure throws unirep::Error naming
// the call, the file and line, and the runtime's message.
#pragma once
#include <cuda_runtime.h>

#include "core/cuda/profiler.h"
#include "core/error.h"

#define CUDA_CHECK(EXPR)                                                                         \
  do {                                                                                           \
    cudaError_t unirep_err_ = (EXPR);                                                            \
    if (unirep_err_ != cudaSuccess)                                                              \
      throw ::unirep::Error(::unirep::detail::concat("CUDA error '", cudaGetErrorString(unirep_err_), \
                                                     "' in ", #EXPR, " at ", __FILE__, ":", __LINE__)); \
  } while (0)

// After every kernel launch: launch-configuration errors surface here, at the launching op; under
// `unirep bench --profile` the launch is also timed (core/cuda/profiler.h).
#define CUDA_CHECK_LAUNCH()         \
  do {                              \
    CUDA_CHECK(cudaGetLastError()); \
    UNIREP_PROFILE_MARK();          \
  } while (0)
