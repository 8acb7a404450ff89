// SPDX-License-Identifier: MIT
// The one .cu of the CUDA consumer: defines minibert's CUDA backend (consumer_cuda_main.cpp is plain C++).
#include <minibert/cuda/backend_impl.cuh>
