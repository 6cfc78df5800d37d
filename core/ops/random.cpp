// CPU dropout / drop-path kernels (the math and the no-saved-mask scheme: core/ops/random.h).
#include "core/ops/random.h"

#include <vector>

#include "core/parallel.h"

namespace unirep {

void dropout_kernel(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale) {
  if (out.numel() == 0) return;
  if (out.is_cuda()) return cuda::dropout(out, x, seed, offset, p, scale);
  UNIREP_DISPATCH_FLOATING(out.dtype(), "dropout", [&] {
    using acc = acc_t<scalar_t>;
    scalar_t* o = out.data<scalar_t>();
    const scalar_t* in = x.data<scalar_t>();
    const acc s = static_cast<acc>(scale);
    parallel_for(0, out.numel(), kGrain / 4, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        o[i] = philox_keep(seed, offset + uint64_t(i), p) ? static_cast<scalar_t>(static_cast<acc>(in[i]) * s)
                                                          : static_cast<scalar_t>(acc(0));
    });
  });
}

void drop_path_kernel(const Tensor& out, const Tensor& x, uint64_t seed, uint64_t offset, double p, double scale,
                      int64_t samples) {
  if (out.numel() == 0) return;
  if (out.is_cuda()) return cuda::drop_path(out, x, seed, offset, p, scale, samples);
  const int64_t inner = out.numel() / samples;
  std::vector<uint8_t> keep(static_cast<size_t>(samples));
  for (int64_t n = 0; n < samples; ++n) keep[size_t(n)] = philox_keep(seed, offset + uint64_t(n), p) ? 1 : 0;
  UNIREP_DISPATCH_FLOATING(out.dtype(), "drop_path", [&] {
    using acc = acc_t<scalar_t>;
    scalar_t* o = out.data<scalar_t>();
    const scalar_t* in = x.data<scalar_t>();
    const acc s = static_cast<acc>(scale);
    parallel_for(0, out.numel(), kGrain, [&](int64_t b, int64_t e) {
      int64_t n = b / inner, j = b - n * inner;
      for (int64_t i = b; i < e; ++i) {
        o[i] = keep[size_t(n)] ? static_cast<scalar_t>(static_cast<acc>(in[i]) * s) : static_cast<scalar_t>(acc(0));
        if (++j == inner) {
          j = 0;
          ++n;
        }
      }
    });
  });
}

}  // namespace unirep
