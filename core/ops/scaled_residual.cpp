// CPU reference of core/ops/scaled_residual.h: rows in parallel for the elementwise parts, dgamma
// summed per channel over the rows in order (float for float/bf16/f16, double for double).
#include "core/ops/scaled_residual.h"

#include <cstdint>
#include <vector>

#include "core/ops/norm.h"
#include "core/ops/random.h"
#include "core/parallel.h"

namespace unirep {

namespace {

template <class T, class P> struct ScaledResidualCpu {
  using acc = acc_t<T>;
  const ResidualScale& s;
  int64_t C;
  const P* gamma;

  bool kept(int64_t row) const {
    return !s.drop || philox_keep(s.seed, s.offset + uint64_t(row * C / s.per_sample), s.p);
  }
  acc factor(int64_t c) const {
    acc f = gamma ? static_cast<acc>(gamma[c]) : acc(1);
    return s.drop ? f * static_cast<acc>(s.keep_scale) : f;
  }
};

}  // namespace

void scaled_residual_forward(const Tensor& out, const Tensor& x, const Tensor& branch, const Tensor& gamma,
                             const ResidualScale& s) {
  if (out.is_cuda()) return cuda::scaled_residual_forward(out, x, branch, gamma, s);
  const int64_t C = x.size(-1), rows = x.numel() / C;
  UNIREP_DISPATCH_FLOATING(x.dtype(), "scaled_residual", [&] {
    using T = scalar_t;
    with_norm_param<T>(gamma.defined() ? gamma.dtype() : x.dtype(), [&](auto tag) {
      using P = typename decltype(tag)::type;
      using acc = acc_t<T>;
      const ScaledResidualCpu<T, P> k{s, C, gamma.defined() ? gamma.data<P>() : nullptr};
      const T* px = x.data<T>();
      const T* pb = branch.data<T>();
      T* po = out.data<T>();
      parallel_for(0, rows, std::max<int64_t>(1, 4096 / C), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const bool keep = k.kept(r);
          for (int64_t c = 0; c < C; ++c) {
            const int64_t i = r * C + c;
            po[i] = keep ? static_cast<T>(static_cast<acc>(px[i]) + k.factor(c) * static_cast<acc>(pb[i])) : px[i];
          }
        }
      });
    });
  });
}

void scaled_residual_backward(const Tensor& dbranch, const Tensor& dgamma, const Tensor& dout, const Tensor& branch,
                              const Tensor& gamma, const ResidualScale& s) {
  if (dout.is_cuda()) return cuda::scaled_residual_backward(dbranch, dgamma, dout, branch, gamma, s);
  const int64_t C = dout.size(-1), rows = dout.numel() / C;
  UNIREP_DISPATCH_FLOATING(dout.dtype(), "scaled_residual_backward", [&] {
    using T = scalar_t;
    with_norm_param<T>(gamma.defined() ? gamma.dtype() : dout.dtype(), [&](auto tag) {
      using P = typename decltype(tag)::type;
      using acc = acc_t<T>;
      const ScaledResidualCpu<T, P> k{s, C, gamma.defined() ? gamma.data<P>() : nullptr};
      const T* pd = dout.data<T>();
      if (dbranch.defined()) {
        T* pdb = dbranch.data<T>();
        parallel_for(0, rows, std::max<int64_t>(1, 4096 / C), [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            const bool keep = k.kept(r);
            for (int64_t c = 0; c < C; ++c) {
              const int64_t i = r * C + c;
              pdb[i] = keep ? static_cast<T>(k.factor(c) * static_cast<acc>(pd[i])) : T(acc(0));
            }
          }
        });
      }
      if (dgamma.defined()) {
        const T* pb = branch.data<T>();
        const acc scale = s.drop ? static_cast<acc>(s.keep_scale) : acc(1);
        std::vector<uint8_t> row_kept(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) row_kept[size_t(r)] = k.kept(r);
        P* pg = dgamma.data<P>();
        parallel_for(0, C, 8, [&](int64_t begin, int64_t end) {
          for (int64_t c = begin; c < end; ++c) {
            acc sum = 0;
            for (int64_t r = 0; r < rows; ++r)
              if (row_kept[size_t(r)]) sum += static_cast<acc>(pd[r * C + c]) * static_cast<acc>(pb[r * C + c]);
            pg[c] = static_cast<P>(sum * scale);
          }
        });
      }
    });
  });
}

}  // namespace unirep
