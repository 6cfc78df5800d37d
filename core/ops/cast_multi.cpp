// Checks of cast_multi and its CPU form, a loop of copy_tensor (the same rounding as the CUDA kernel).
#include "core/ops/cast_multi.h"

#include "core/error.h"
#include "core/ops/copy.h"

namespace unirep {

void cast_multi(const std::vector<Tensor>& srcs, const std::vector<Tensor>& dsts) {
  UNIREP_CHECK(srcs.size() == dsts.size(), "cast_multi: ", srcs.size(), " sources but ", dsts.size(), " destinations");
  if (srcs.empty()) return;
  const DType dtype = dsts[0].defined() ? dsts[0].dtype() : DType::Float32;
  UNIREP_CHECK(dtype == DType::BFloat16 || dtype == DType::Float16,
               "cast_multi: destinations must be bfloat16 or float16, got ", dtype_name(dtype));
  const Device device = srcs[0].defined() ? srcs[0].device() : Device::cpu();
  for (size_t i = 0; i < srcs.size(); ++i) {
    const Tensor &s = srcs[i], &d = dsts[i];
    UNIREP_CHECK(s.defined() && s.dtype() == DType::Float32 && s.is_contiguous(), "cast_multi: source ", i,
                 " must be a contiguous float32 tensor, got ", s.defined() ? s.str() : "an undefined one");
    UNIREP_CHECK(d.defined() && d.dtype() == dtype && d.is_contiguous() && d.numel() == s.numel(),
                 "cast_multi: destination ", i, " must be a contiguous ", dtype_name(dtype), " tensor of ", s.numel(),
                 " elements, got ", d.defined() ? d.str() : "an undefined one");
    UNIREP_CHECK(s.device() == device && d.device() == device, "cast_multi: tensor pair ", i, " (", s.str(), ", ",
                 d.str(), ") is not on ", device.str(), ", expected one device");
  }
  if (device.is_cuda()) return cuda::cast_multi(srcs, dsts);
  for (size_t i = 0; i < srcs.size(); ++i) {
    const Tensor &s = srcs[i], &d = dsts[i];
    copy_tensor(make_view(d, {d.numel()}, {1}, d.offset()), make_view(s, {s.numel()}, {1}, s.offset()));
  }
}

}  // namespace unirep
