// Element types and the dtype dispatch used by every kernel.
//
// bf16/f16 are stored as raw 16-bit patterns and converted through float, on the host and on the
// device alike, so the CPU reference and the CUDA kernels round the same way (round to nearest even).
// Kernels accumulate in acc_t<T>: double for double, float for everything else.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "core/error.h"

// Scalar functions and functors shared by host and device code. Forced inline on the host too, so
// the CPU loops over them vectorise whatever the inliner's budget in the caller (a loop reached
// without an OpenMP region in between was otherwise left calling them one element at a time).
#if defined(__CUDACC__)
#define UNIREP_HD __host__ __device__ __forceinline__
#else
#define UNIREP_HD inline __attribute__((always_inline))
#endif

namespace unirep {

enum class DType : uint8_t { Float32, Float64, BFloat16, Float16, Int32, Int64, UInt8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
inline bool is_floating(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16 || t == DType::Float16;
}

UNIREP_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
UNIREP_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  UNIREP_HD explicit bf16(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = uint16_t((u >> 16) | 0x40);  // quiet NaN
    } else {
      u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
      bits = uint16_t(u >> 16);
    }
  }
  UNIREP_HD explicit bf16(double d) : bf16(float(d)) {}
  UNIREP_HD operator float() const { return bits_float(uint32_t(bits) << 16); }
};

struct f16 {
  uint16_t bits = 0;
  f16() = default;
  UNIREP_HD explicit f16(float f) {
    uint32_t x = float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) {
      bits = uint16_t(sign | 0x7e00u);
    } else if (absx >= 0x477ff000u) {  // rounds to >= 65520: inf
      bits = uint16_t(sign | 0x7c00u);
    } else if (absx < 0x38800000u) {  // subnormal half (or zero): scale into integer range
      float a = bits_float(absx) * 16777216.0f;  // 2^24: one half-subnormal ulp becomes 1.0
      uint32_t m = uint32_t(a);
      float rem = a - float(m);
      if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
      bits = uint16_t(sign | m);
    } else {
      uint32_t mant = absx & 0x7fffffu;
      uint32_t exp = (absx >> 23) - 112u;
      uint32_t h = (exp << 10) | (mant >> 13);
      uint32_t rest = mant & 0x1fffu;
      if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
      bits = uint16_t(sign | h);
    }
  }
  UNIREP_HD explicit f16(double d) : f16(float(d)) {}
  UNIREP_HD operator float() const {
    uint32_t sign = uint32_t(bits & 0x8000u) << 16;
    uint32_t exp = (bits >> 10) & 0x1fu;
    uint32_t mant = bits & 0x3ffu;
    if (exp == 0) {
      float v = float(mant) * (1.0f / 16777216.0f);
      return sign ? -v : v;
    }
    if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
    return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
  }
};

template <class T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <> struct AccType<int32_t> { using type = int64_t; };
template <> struct AccType<int64_t> { using type = int64_t; };
template <> struct AccType<uint8_t> { using type = int64_t; };
template <class T> using acc_t = typename AccType<T>::type;

template <class T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::Float32; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::Float64; };
template <> struct DTypeOf<bf16> { static constexpr DType value = DType::BFloat16; };
template <> struct DTypeOf<f16> { static constexpr DType value = DType::Float16; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::Int32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct DTypeOf<uint8_t> { static constexpr DType value = DType::UInt8; };

// Converts any supported element type to any other through the accumulation type.
template <class To, class From> UNIREP_HD To convert(From v) {
  return static_cast<To>(static_cast<acc_t<To>>(static_cast<acc_t<From>>(v)));
}

}  // namespace unirep

// Usage: UNIREP_DISPATCH_FLOATING(x.dtype(), "relu", [&] { kernel<scalar_t>(...); });
#define UNIREP_DTYPE_CASE(ENUM, TYPE, ...) \
  case ::unirep::DType::ENUM: {            \
    using scalar_t = TYPE;                 \
    return __VA_ARGS__();                  \
  }

#define UNIREP_DISPATCH_FLOATING(DTYPE, NAME, ...)                                                  \
  [&] {                                                                                             \
    switch (DTYPE) {                                                                                \
      UNIREP_DTYPE_CASE(Float32, float, __VA_ARGS__)                                                \
      UNIREP_DTYPE_CASE(Float64, double, __VA_ARGS__)                                               \
      UNIREP_DTYPE_CASE(BFloat16, ::unirep::bf16, __VA_ARGS__)                                      \
      UNIREP_DTYPE_CASE(Float16, ::unirep::f16, __VA_ARGS__)                                        \
      default:                                                                                      \
        throw ::unirep::Error(std::string(NAME) + ": expected a floating dtype, got " +            \
                              ::unirep::dtype_name(DTYPE));                                         \
    }                                                                                               \
  }()

#define UNIREP_DISPATCH_ALL(DTYPE, NAME, ...)                                                       \
  [&] {                                                                                             \
    switch (DTYPE) {                                                                                \
      UNIREP_DTYPE_CASE(Float32, float, __VA_ARGS__)                                                \
      UNIREP_DTYPE_CASE(Float64, double, __VA_ARGS__)                                               \
      UNIREP_DTYPE_CASE(BFloat16, ::unirep::bf16, __VA_ARGS__)                                      \
      UNIREP_DTYPE_CASE(Float16, ::unirep::f16, __VA_ARGS__)                                        \
      UNIREP_DTYPE_CASE(Int32, int32_t, __VA_ARGS__)                                                \
      UNIREP_DTYPE_CASE(Int64, int64_t, __VA_ARGS__)                                                \
      UNIREP_DTYPE_CASE(UInt8, uint8_t, __VA_ARGS__)                                                \
    }                                                                                               \
    throw ::unirep::Error(std::string(NAME) + ": unknown dtype");                                   \
  }()

#define UNIREP_DISPATCH_INDEX(DTYPE, NAME, ...)                                                     \
  [&] {                                                                                             \
    switch (DTYPE) {                                                                                \
      case ::unirep::DType::Int32: {                                                                \
        using index_t = int32_t;                                                                    \
        return __VA_ARGS__();                                                                       \
      }                                                                                             \
      case ::unirep::DType::Int64: {                                                                \
        using index_t = int64_t;                                                                    \
        return __VA_ARGS__();                                                                       \
      }                                                                                             \
      default:                                                                                      \
        throw ::unirep::Error(std::string(NAME) + ": expected an int32 or int64 index tensor, got " + \
                              ::unirep::dtype_name(DTYPE));                                         \
    }                                                                                               \
  }()
