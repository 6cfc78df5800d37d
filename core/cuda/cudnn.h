// cuDNN: one handle per device, created lazily and bound to that device's unirep stream, so cuDNN
// kernels queue behind (and before) every other kernel of the process. CUDNN_CHECK wraps every
// cuDNN call: a failure throws unirep::Error naming the call, the file and line, and cuDNN's message.
#pragma once
#include <cudnn.h>

#include "core/error.h"

#define CUDNN_CHECK(EXPR)                                                                              \
  do {                                                                                                 \
    cudnnStatus_t unirep_status_ = (EXPR);                                                             \
    if (unirep_status_ != CUDNN_STATUS_SUCCESS)                                                        \
      throw ::unirep::Error(::unirep::detail::concat("cuDNN error '", cudnnGetErrorString(unirep_status_), \
                                                     "' in ", #EXPR, " at ", __FILE__, ":", __LINE__)); \
  } while (0)

namespace unirep::cuda {

// The handle of `device` (-1: the current device), bound to unirep::cuda::stream(device).
cudnnHandle_t cudnn_handle(int device = -1);

}  // namespace unirep::cuda
