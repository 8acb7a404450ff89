// SPDX-License-Identifier: MIT
#pragma once
// What the GPU test files share: the skip notice without a GPU, and a model's weights copied from the CPU.
#include <cstddef>  // size_t
#include <iostream> // cout (skip notice)

#include <doctest/doctest.h>

#include <minibert/cuda/backend.hpp>
#include <minibert/tensor_ops.hpp> // to_device

namespace test { // test_helpers.hpp's

/// @brief true (after printing the notice CTest's SKIP_REGULAR_EXPRESSION looks for) when no CUDA device is visible
inline bool skip_without_gpu(const char* name) {
  if (minibert::cuda_available()) return false;
  std::cout << "[minibert-skip] " << name << ": no CUDA device" << std::endl;
  return true;
}

/// @brief the parameters of `cpu` copied into `gpu` (the same architecture: same names, same order)
template <class Model, class GpuModel> void copy_weights(const Model& cpu, GpuModel& gpu) {
  auto src = cpu.named_parameters();
  auto dst = gpu.named_parameters();
  REQUIRE(src.size() == dst.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    REQUIRE(src[i].first == dst[i].first);
    using cuda = minibert::device::cuda;
    const minibert::tensor<float, cuda> up = minibert::to_device<cuda>(src[i].second.value());
    minibert::backend<cuda>::copy(minibert::current_context<cuda>(), up.data(), dst[i].second.mutable_value().data(),
                                  up.numel());
  }
}

} // namespace test
