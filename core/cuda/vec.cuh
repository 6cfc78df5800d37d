// The 16-byte vector access every memory-bound kernel uses: V consecutive elements of T moved by one
// load or store (one 128-bit instruction when V = kVec<T> and the address is 16-byte aligned), and
// the host-side choice between that and one element per thread.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/tensor.h"

namespace unirep::cuda {

template <class T> constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte vector

template <class T, int V> struct alignas(sizeof(T) * V) VecOf {
  T v[V];
};

template <class T, int V> __device__ __forceinline__ VecOf<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const VecOf<T, V>*>(p);
}
template <class T, int V> __device__ __forceinline__ void store_vec(T* p, const VecOf<T, V>& x) {
  *reinterpret_cast<VecOf<T, V>*>(p) = x;
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
inline const void* address_of(const void* p) { return p; }
inline const void* address_of(const Tensor* t) { return t->defined() ? t->data_ptr() : nullptr; }

// f(integral_constant<int, V>) with V = kVec<T> when rows of C elements are whole vectors and every
// operand (raw pointers or tensors; null and undefined ones aside) is 16-byte aligned, else V = 1.
template <class T, class Operands, class F> void with_vector_width(int64_t C, const Operands& operands, const F& f) {
  bool vector = C % kVec<T> == 0;
  for (const auto& op : operands) vector = vector && aligned16(address_of(op));
  if (vector)
    f(std::integral_constant<int, kVec<T>>());
  else
    f(std::integral_constant<int, 1>());
}
template <class T, class F> void with_vector_width(int64_t C, std::initializer_list<const Tensor*> operands, const F& f) {
  with_vector_width<T, std::initializer_list<const Tensor*>, F>(C, operands, f);
}

}  // namespace unirep::cuda
