// SPDX-License-Identifier: MIT
// The plain C++ file of a program that defines the CUDA backend's cuDNN attention provider (built with
// MINIBERT_CUDNN=1 beside cuda_backend.cu; cudnn_frontend is host code and stays out of the nvcc translation unit).
#include <minibert/cuda/attention_cudnn_impl.hpp>
