// Batched GEMM (core/ops/matmul.h), CPU side: validation, dispatch, and the OpenBLAS reference.
//   float / double: one cpu_gemm (core/ops/gemm_cpu.h) per matrix (row-major, so no transposition
//   tricks). bf16 / f16: the operands are widened to float once, multiplied with sgemm, and C rounded
//   back once, so every output element is the float-accumulated product rounded a single time.
// Threading: a large GEMM is split into panels over the threads by cpu_gemm; a batch of small ones
// (too small to split) is spread over the threads instead, one whole GEMM per matrix.
#include "core/ops/matmul.h"

#include <climits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "core/ops/gemm_cpu.h"
#include "core/parallel.h"

namespace unirep {

namespace {

// Multiply-adds a thread should get at least, when the batch is split.
constexpr int64_t kGemmGrain = int64_t(1) << 16;

// float / double: one GEMM per matrix of the batch. Strides are resolved (>= 0).
template <class T> void gemm_blas(const GemmParams& p, const T* a, const T* b, T* c) {
  const int64_t m = p.m, n = p.n, k = p.k, c_stride = m * n;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      cpu_gemm(p.trans_a, p.trans_b, m, n, k, T(p.alpha), a + i * p.stride_a, p.trans_a ? m : k, b + i * p.stride_b,
               p.trans_b ? k : n, T(p.beta), c + i * c_stride, n);
  };
  if (p.batch > 1 && cpu_gemm_panels(m, n, k) <= 1)
    parallel_for(0, p.batch, std::max<int64_t>(1, kGemmGrain / std::max<int64_t>(m * n * k, 1)), run);
  else
    run(0, p.batch);
}

// dst[j + i*size] = float(src[j + i*stride]) for i < count, j < size.
template <class T> void widen(float* dst, const T* src, int64_t count, int64_t stride, int64_t size) {
  parallel_for(0, count * size, kGrain, [&](int64_t begin, int64_t end) {
    int64_t j = begin % size;
    const T* s = src + (begin / size) * stride;
    for (int64_t i = begin; i < end; ++i) {
      dst[i] = static_cast<float>(s[j]);
      if (++j == size) {
        j = 0;
        s += stride;
      }
    }
  });
}

// bf16 / f16: widen the operands (each broadcast matrix once), sgemm, round C back.
template <class T> void gemm_half(const GemmParams& p, const T* a, const T* b, T* c) {
  int64_t size_a = p.m * p.k, size_b = p.k * p.n, size_c = p.m * p.n;
  int64_t count_a = p.stride_a == 0 ? 1 : p.batch, count_b = p.stride_b == 0 ? 1 : p.batch;
  std::unique_ptr<float[]> fa(new float[size_t(count_a * size_a)]);
  std::unique_ptr<float[]> fb(new float[size_t(count_b * size_b)]);
  std::unique_ptr<float[]> fc(new float[size_t(p.batch * size_c)]);
  widen(fa.get(), a, count_a, p.stride_a, size_a);
  widen(fb.get(), b, count_b, p.stride_b, size_b);
  if (p.beta != 0.0) widen(fc.get(), c, p.batch, size_c, size_c);
  GemmParams q = p;
  q.stride_a = p.stride_a == 0 ? 0 : size_a;
  q.stride_b = p.stride_b == 0 ? 0 : size_b;
  gemm_blas<float>(q, fa.get(), fb.get(), fc.get());
  float* out = fc.get();
  parallel_for(0, p.batch * size_c, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) c[i] = T(out[i]);
  });
}

// Throws unless the storage of t holds `count` matrices of `size` elements `stride` apart.
void check_extent(const Tensor& t, const char* which, int64_t count, int64_t stride, int64_t size) {
  if (count == 0 || size == 0) return;
  int64_t last = t.offset() + (count - 1) * stride + size;
  int64_t available = int64_t(t.storage()->nbytes / t.element_size());
  UNIREP_CHECK(last <= available, "gemm: operand ", which, " ", t.str(), " holds ", available - t.offset(),
               " elements from its offset, but ", count, " matrices of ", size, " elements ", stride,
               " apart need ", last - t.offset());
}

}  // namespace

void gemm(const Tensor& c, const Tensor& a, const Tensor& b, const GemmParams& params) {
  UNIREP_CHECK(a.defined() && b.defined() && c.defined(), "gemm: undefined operand");
  UNIREP_CHECK(is_floating(c.dtype()), "gemm: expected a floating dtype, got ", dtype_name(c.dtype()));
  UNIREP_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: dtypes differ: a ", dtype_name(a.dtype()),
               ", b ", dtype_name(b.dtype()), ", c ", dtype_name(c.dtype()));
  UNIREP_CHECK(a.device() == c.device() && b.device() == c.device(), "gemm: devices differ: a ", a.device().str(),
               ", b ", b.device().str(), ", c ", c.device().str());
  GemmParams p = params;
  UNIREP_CHECK(p.batch >= 0 && p.m >= 0 && p.n >= 0 && p.k >= 0, "gemm: negative extent (batch ", p.batch, ", m ",
               p.m, ", n ", p.n, ", k ", p.k, ")");
  UNIREP_CHECK(p.m <= INT_MAX && p.n <= INT_MAX && p.k <= INT_MAX, "gemm: m ", p.m, ", n ", p.n, ", k ", p.k,
               " exceed the 32-bit BLAS limit");
  if (p.stride_a < 0) p.stride_a = p.m * p.k;
  if (p.stride_b < 0) p.stride_b = p.k * p.n;
  UNIREP_CHECK(c.is_contiguous() && c.numel() == p.batch * p.m * p.n, "gemm: c must be a contiguous [", p.batch,
               ", ", p.m, ", ", p.n, "] tensor, got ", c.str());
  check_extent(a, "a", p.batch, p.stride_a, p.m * p.k);
  check_extent(b, "b", p.batch, p.stride_b, p.k * p.n);
  if (p.batch == 0 || p.m == 0 || p.n == 0) return;
  if (p.k == 0) {  // an empty sum: C = beta * C
    if (p.beta == 0.0)
      c.detach().fill_(0.0);
    else if (p.beta != 1.0)
      c.detach().mul_(p.beta);
    return;
  }
  if (c.is_cuda()) return cuda::gemm(c, a, b, p);
  UNIREP_DISPATCH_FLOATING(c.dtype(), "gemm", [&] {
    const scalar_t* pa = a.data<scalar_t>();
    const scalar_t* pb = b.data<scalar_t>();
    scalar_t* pc = c.data<scalar_t>();
    if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>)
      gemm_blas<scalar_t>(p, pa, pb, pc);
    else
      gemm_half<scalar_t>(p, pa, pb, pc);
  });
}

void linear_gemm(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias) {
  UNIREP_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1) && y.dim() == 2 && y.size(0) == x.size(0) &&
                   y.size(1) == w.size(0),
               "linear_gemm: expected y [rows, out], x [rows, in], w [out, in], got y ", shape_str(y.shape()), ", x ",
               shape_str(x.shape()), ", w ", shape_str(w.shape()));
  UNIREP_CHECK(x.is_contiguous() && w.is_contiguous() && y.is_contiguous(), "linear_gemm: operands must be contiguous");
  const int64_t rows = x.size(0), out_f = w.size(0), in_f = w.size(1);
  GemmParams p{1, rows, out_f, in_f, false, true};
  if (bias.defined()) {
    UNIREP_CHECK(bias.shape() == Shape{out_f} && bias.dtype() == y.dtype() && bias.device() == y.device(),
                 "linear_gemm: bias ", bias.str(), " does not match y ", y.str());
    if (y.is_cuda() && rows > 0 && out_f > 0 && in_f > 0 && cuda::linear_gemm_lt(y, x, w, bias)) return;
    y.detach().copy_(bias.expand({rows, out_f}));
    p.beta = 1.0;
  }
  gemm(y, x, w, p);
}

void linear_weight_grad(const Tensor& dw, const Tensor& db, const Tensor& dy, const Tensor& x) {
  UNIREP_CHECK(dy.dim() == 2 && x.dim() == 2 && dy.size(0) == x.size(0) && dw.dim() == 2 &&
                   dw.size(0) == dy.size(1) && dw.size(1) == x.size(1),
               "linear_weight_grad: expected dw [out, in], dy [rows, out], x [rows, in], got dw ",
               shape_str(dw.shape()), ", dy ", shape_str(dy.shape()), ", x ", shape_str(x.shape()));
  UNIREP_CHECK(dy.is_contiguous() && x.is_contiguous() && dw.is_contiguous(),
               "linear_weight_grad: operands must be contiguous");
  const int64_t rows = dy.size(0), out_f = dy.size(1), in_f = x.size(1);
  if (db.defined()) {
    UNIREP_CHECK(db.shape() == Shape{out_f} && db.dtype() == dy.dtype() && db.device() == dy.device() &&
                     db.is_contiguous(),
                 "linear_weight_grad: db ", db.str(), " does not match dy ", dy.str());
    if (dy.is_cuda() && rows > 0 && out_f > 0 && in_f > 0 && cuda::linear_weight_grad_lt(dw, db, dy, x)) return;
    linear_bias_grad(db, dy);
  }
  gemm(dw, dy, x, GemmParams{1, out_f, in_f, rows, true, false});
}

void linear_bias_grad(const Tensor& db, const Tensor& dy) {
  const int64_t rows = dy.size(0), out_f = dy.size(1);
  gemm(db, ones_vector(rows, dy.dtype(), dy.device()), dy, GemmParams{1, 1, out_f, rows});
}

Tensor ones_vector(int64_t n, DType dtype, Device device) {
  static std::mutex mutex;
  // Never destroyed (like the streams and library handles): no device free after the runtime's teardown.
  static auto* buffers = new std::map<std::tuple<DeviceType, int, DType>, Tensor>();
  std::lock_guard<std::mutex> lock(mutex);
  Tensor& buffer = (*buffers)[{device.type, device.is_cuda() ? device.index : 0, dtype}];
  if (!buffer.defined() || buffer.numel() < n) buffer = Tensor::ones({std::max<int64_t>(n, 1024)}, dtype, device);
  return buffer.slice(0, 0, n);
}

}  // namespace unirep
