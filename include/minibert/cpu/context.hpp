// SPDX-License-Identifier: MIT
#pragma once
/* context<device::cpu>: what CPU kernels run in. The thread count is OpenMP's (set_num_threads); the scratch arena
   gives kernels temporary buffers without allocating a tensor per call: one growing 64-byte aligned block, handed
   out whole and valid until the next scratch() call on the same context. The default context is per thread, so
   two threads never share an arena. */

#include <cstddef> // size_t
#include <cstdint> // int64_t
#include <memory>  // unique_ptr

#include <minibert/backend.hpp>
#include <minibert/cpu/parallel.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

template <> struct context<device::cpu> {
  /// @brief the precision of matrix products (precision.hpp; set for a region with autocast<device::cpu>)
  matmul_precision matmul = matmul_precision::fp32;

  /// @brief threads the CPU kernels use (OpenMP's; set with set_num_threads)
  int threads() const { return num_threads(); }

  /// @brief n zeroed elements of T, 64-byte aligned; valid until the next scratch() call on this context
  template <class T> T* scratch(std::int64_t n) {
    const std::size_t bytes = std::size_t(n > 0 ? n : 0) * sizeof(T);
    if (bytes > capacity_) {
      buffer_.reset(static_cast<std::byte*>(device_memory<device::cpu>::allocate(bytes)));
      capacity_ = bytes;
    }
    T* p = reinterpret_cast<T*>(buffer_.get());
    for (std::int64_t i = 0; i < n; ++i) p[i] = T(0);
    return p;
  }
  /// @brief bytes the arena holds
  std::size_t scratch_capacity() const { return capacity_; }

private:
  struct release {
    void operator()(std::byte* p) const noexcept { device_memory<device::cpu>::deallocate(p); }
  };
  std::unique_ptr<std::byte, release> buffer_;
  std::size_t capacity_ = 0;
};

template <> inline context<device::cpu>& default_context<device::cpu>() {
  thread_local context<device::cpu> ctx;
  return ctx;
}

} // namespace minibert
