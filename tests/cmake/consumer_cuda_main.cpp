// SPDX-License-Identifier: MIT
// The packaging self-tests' CUDA consumer, plain C++ (the backend itself is defined by consumer_cuda.cu): runs one
// op on the GPU when there is one; without a GPU it proves that the backend compiles and links.
#include <minibert/bert.hpp>
#include <minibert/cuda/backend.hpp>

#include <cstdio> // printf

int main() {
  using namespace minibert;
  if (!cuda_available()) {
    std::printf("minibert %s CUDA consumer: built and linked; no CUDA device to run on\n", version_string);
    return 0;
  }
  auto x = variable<float, device::cuda>(to_device<device::cuda>(tensor<float>::full({2, 3}, 1.5f)), true);
  auto y = sum(mul(x, x));
  y.backward();
  const float loss = item(y.value()), g = to_host(x.grad()).data()[0]; // d(sum x^2)/dx = 2x = 3
  std::printf("minibert %s CUDA consumer: loss %.2f grad %.2f\n", version_string, loss, g);
  return (loss == 13.5f && g == 3.0f) ? 0 : 1;
}
