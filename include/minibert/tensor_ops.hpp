// SPDX-License-Identifier: MIT
#pragma once
/* Tensor functions that need a device's kernels, written once for every device through backend<Device>:
   contiguous (a packed copy of a strided view), clone, zeros, to_device / to_host between devices, and item. The
   member functions of tensor<T, Device> with the same names stay CPU-only conveniences. */

#include <cstdint> // int64_t
#include <vector>  // vector

#include <minibert/backend.hpp>
#include <minibert/tensor.hpp>

namespace minibert {

/// @brief t when already packed, else a packed copy on the same device
template <class T, class D> tensor<T, D> contiguous(const tensor<T, D>& t) {
  if (!t.defined() || t.is_contiguous()) return t;
  tensor<T, D> out = tensor<T, D>::empty(t.shape());
  backend<D>::copy_strided(current_context<D>(), t.data(), t.shape(), t.strides(), out.data());
  return out;
}

/// @brief a packed copy with its own storage, on the same device
template <class T, class D> tensor<T, D> clone(const tensor<T, D>& t) {
  tensor<T, D> out = tensor<T, D>::empty(t.shape()); // copy_strided copies a packed view as one block
  backend<D>::copy_strided(current_context<D>(), t.data(), t.shape(), t.strides(), out.data());
  return out;
}

/// @brief a tensor of shape s filled with v, on device D
template <class T, class D> tensor<T, D> full_on(const shape& s, T v) {
  tensor<T, D> out = tensor<T, D>::empty(s);
  backend<D>::fill(current_context<D>(), out.data(), out.numel(), v);
  return out;
}
template <class T, class D> tensor<T, D> zeros_on(const shape& s) { return full_on<T, D>(s, T(0)); }

/// @brief a packed copy of a host tensor on device D (the same tensor when D is the CPU and it is packed)
template <class D, class T> tensor<T, D> to_device(const tensor<T, device::cpu>& host) {
  if constexpr (std::is_same_v<D, device::cpu>) {
    return host.contiguous();
  } else {
    const tensor<T, device::cpu> h = host.contiguous();
    tensor<T, D> out = tensor<T, D>::empty(h.shape());
    backend<D>::upload(current_context<D>(), h.data(), out.data(), h.numel());
    return out;
  }
}

/// @brief a packed host copy of a device tensor (waits for the device)
template <class T, class D> tensor<T, device::cpu> to_host(const tensor<T, D>& t) {
  if constexpr (std::is_same_v<D, device::cpu>) {
    return t.contiguous();
  } else {
    const tensor<T, D> c = contiguous(t);
    tensor<T, device::cpu> out = tensor<T, device::cpu>::empty(c.shape());
    backend<D>::download(current_context<D>(), c.data(), out.data(), c.numel());
    return out;
  }
}

/// @brief the single value of a one-element tensor on any device (waits for the device)
template <class T, class D> T item(const tensor<T, D>& t) {
  MINIBERT_CHECK(t.numel() == 1, "tensor.item", "tensor of shape " << t.shape() << " has " << t.numel() << " elements");
  T v{};
  backend<D>::download(current_context<D>(), t.data(), &v, 1);
  return v;
}

} // namespace minibert
