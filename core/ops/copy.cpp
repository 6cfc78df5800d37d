#include "core/ops/copy.h"

#include <algorithm>
#include <cstring>

#include "core/generator.h"
#include "core/ops/loops_cpu.h"

namespace unirep {

Generator& default_generator() {
  static Generator gen(0x5eed);
  return gen;
}

namespace {

// Runs along the innermost merged dim: a memcpy where both sides are dense along it, a fill where
// the source is constant along it (a broadcast row, e.g. a bias expanded over the rows of a matrix).
template <class T> void cpu_strided_copy_t(const Tensor& dst, const Tensor& src) {
  T* d = static_cast<T*>(dst.data_ptr());
  const T* s = static_cast<const T*>(src.data_ptr());
  auto idx = make_strided_index<2>(dst.shape(), {&dst.strides(), &src.strides()});
  const int64_t ds = inner_stride(idx, 0), ss = inner_stride(idx, 1);
  cpu_strided_runs(idx, dst.numel(), [&](const int64_t* off, int64_t len) {
    T* dp = d + off[0];
    const T* sp = s + off[1];
    if (ds == 1 && ss == 1)
      std::memcpy(dp, sp, size_t(len) * sizeof(T));
    else if (ds == 1 && ss == 0)
      std::fill(dp, dp + len, *sp);
    else
      for (int64_t j = 0; j < len; ++j) dp[j * ds] = sp[j * ss];
  });
}

void cpu_strided_copy(const Tensor& dst, const Tensor& src) {
  if (dst.is_contiguous() && src.is_contiguous()) {
    std::memcpy(dst.data_ptr(), src.data_ptr(), dst.numel() * dst.element_size());
    return;
  }
  switch (dst.element_size()) {
    case 1: return cpu_strided_copy_t<uint8_t>(dst, src);
    case 2: return cpu_strided_copy_t<uint16_t>(dst, src);
    case 4: return cpu_strided_copy_t<uint32_t>(dst, src);
    default: return cpu_strided_copy_t<uint64_t>(dst, src);
  }
}

void cpu_convert(void* dst, DType dst_dtype, const void* src, DType src_dtype, int64_t n) {
  UNIREP_DISPATCH_ALL(dst_dtype, "copy", [&] {
    using dst_t = scalar_t;
    UNIREP_DISPATCH_ALL(src_dtype, "copy", [&] {
      const scalar_t* s = static_cast<const scalar_t*>(src);
      dst_t* d = static_cast<dst_t*>(dst);
      parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = convert<dst_t>(s[i]);
      });
    });
  });
}

void strided_copy(const Tensor& dst, const Tensor& src) {
  if (dst.is_cuda())
    cuda::strided_copy(dst, src);
  else
    cpu_strided_copy(dst, src);
}

}  // namespace

void copy_tensor(const Tensor& dst, const Tensor& src) {
  UNIREP_CHECK(dst.shape() == src.shape(), "copy: destination shape ", shape_str(dst.shape()),
               " differs from source shape ", shape_str(src.shape()));
  if (dst.numel() == 0) return;
  if (dst.device() != src.device()) {
    Tensor s = src.is_contiguous() ? src : src.detach().contiguous();
    Tensor staged = Tensor::empty(s.shape(), s.dtype(), dst.device());
    size_t nbytes = size_t(s.numel()) * s.element_size();
    UNIREP_CHECK(src.is_cuda() != dst.is_cuda(), "copy: between two CUDA devices (", src.device().str(), " -> ",
                 dst.device().str(), ") is not supported; go through the host");
    if (dst.is_cuda())
      cuda::memcpy_host_to_device(staged.data_ptr(), s.data_ptr(), nbytes, dst.device().index);
    else
      cuda::memcpy_device_to_host(staged.data_ptr(), s.data_ptr(), nbytes, src.device().index);
    copy_tensor(dst, staged);
    return;
  }
  if (dst.dtype() == src.dtype()) {
    strided_copy(dst, src);
    return;
  }
  Tensor s = src.is_contiguous() ? src : src.detach().contiguous();
  Tensor d = dst.is_contiguous() ? dst : Tensor::empty(dst.shape(), dst.dtype(), dst.device());
  if (dst.is_cuda())
    cuda::convert_dtype(d.data_ptr(), d.dtype(), s.data_ptr(), s.dtype(), d.numel());
  else
    cpu_convert(d.data_ptr(), d.dtype(), s.data_ptr(), s.dtype(), d.numel());
  if (!d.same(dst)) strided_copy(dst, d);
}

void fill_tensor(const Tensor& dst, double value) {
  if (dst.numel() == 0) return;
  if (!dst.is_contiguous()) {
    Tensor t = Tensor::empty(dst.shape(), dst.dtype(), dst.device());
    fill_tensor(t, value);
    strided_copy(dst, t);
    return;
  }
  if (dst.is_cuda()) {
    cuda::fill(dst.data_ptr(), dst.dtype(), dst.numel(), value);
    return;
  }
  UNIREP_DISPATCH_ALL(dst.dtype(), "fill", [&] {
    scalar_t v = convert<scalar_t>(value);
    scalar_t* d = static_cast<scalar_t*>(dst.data_ptr());
    parallel_for(0, dst.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = v;
    });
  });
}

void increment_counter(const Tensor& counter) {
  UNIREP_CHECK(counter.defined() && counter.dim() == 0 && counter.dtype() == DType::Int64,
               "increment_counter: expected a 0-d int64 tensor, got ", counter.defined() ? counter.str() : "undefined");
  if (counter.is_cuda())
    cuda::increment_counter(counter.data<int64_t>());
  else
    ++*counter.data<int64_t>();
}

void fill_uniform(const Tensor& dst, Generator& gen, double lo, double hi) {
  UNIREP_CHECK(dst.is_contiguous(), "rand: destination must be contiguous");
  uint64_t seed = gen.seed(), offset = gen.advance(uint64_t(dst.numel()));
  if (dst.is_cuda()) return cuda::fill_uniform(dst, seed, offset, lo, hi);
  UNIREP_DISPATCH_FLOATING(dst.dtype(), "rand", [&] {
    scalar_t* d = dst.data<scalar_t>();
    parallel_for(0, dst.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        d[i] = static_cast<scalar_t>(lo + (hi - lo) * philox_uniform_double(seed, offset + uint64_t(i)));
    });
  });
}

void fill_normal(const Tensor& dst, Generator& gen) {
  UNIREP_CHECK(dst.is_contiguous(), "randn: destination must be contiguous");
  uint64_t seed = gen.seed(), offset = gen.advance(uint64_t(dst.numel()));
  if (dst.is_cuda()) return cuda::fill_normal(dst, seed, offset);
  UNIREP_DISPATCH_FLOATING(dst.dtype(), "randn", [&] {
    scalar_t* d = dst.data<scalar_t>();
    parallel_for(0, dst.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = static_cast<scalar_t>(philox_normal(seed, offset + uint64_t(i)));
    });
  });
}

}  // namespace unirep
