// SPDX-License-Identifier: MIT
// The packaging self-tests' consumer: includes the umbrella header, runs one differentiable op.
#include <minibert/bert.hpp>

#include <cstdio> // printf

int main() {
  using namespace minibert;
  auto x = variable<float>(tensor<float>::full({2, 3}, 1.5f), true);
  auto y = sum(mul(x, x));
  y.backward();
  const float g = x.grad().data()[0]; // d(sum x^2)/dx = 2x = 3
  std::printf("minibert %s consumer: loss %.2f grad %.2f\n", version_string, y.value().item(), g);
  return (y.value().item() == 13.5f && g == 3.0f) ? 0 : 1;
}
