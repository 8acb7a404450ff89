// SPDX-License-Identifier: MIT
// The packaging self-tests' light CUDA consumer: a kernel of its own, compiled by nvcc with minibert::cuda's usage
// requirements (include directories, definitions, the CUDA runtime) and minibert's CUDA declarations in scope; it
// runs the kernel when there is a GPU. consumer_cuda.cu + consumer_cuda_main.cpp (MINIBERT_PACKAGING_CUDA_PROGRAM=ON)
// also compile the whole backend through the package.
#include <minibert/cuda/backend.hpp>
#include <minibert/version.hpp> // version_string

#include <cstdio> // printf

#include <cuda_runtime.h>

__global__ void square_in_place(float* x) { x[threadIdx.x] *= x[threadIdx.x]; }

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("minibert %s light CUDA consumer: built and linked; no CUDA device to run on\n",
                minibert::version_string);
    return 0;
  }
  float host[4] = {1.f, 2.f, 3.f, 4.f};
  float* dev = nullptr;
  if (cudaMalloc(&dev, sizeof host) != cudaSuccess) return 1;
  cudaMemcpy(dev, host, sizeof host, cudaMemcpyHostToDevice);
  square_in_place<<<1, 4>>>(dev);
  const bool copied = cudaMemcpy(host, dev, sizeof host, cudaMemcpyDeviceToHost) == cudaSuccess;
  cudaFree(dev);
  const bool ok = copied && host[0] == 1.f && host[1] == 4.f && host[2] == 9.f && host[3] == 16.f;
  std::printf("minibert %s light CUDA consumer: %s\n", minibert::version_string, ok ? "kernel ran" : "WRONG RESULT");
  return ok ? 0 : 1;
}
