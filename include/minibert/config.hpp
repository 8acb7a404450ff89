// SPDX-License-Identifier: MIT
#pragma once
/* Compiler and feature macros shared by host and device code (cute/config.hpp style):
   MINIBERT_HOST_DEVICE expands to __host__ __device__ under nvcc and to nothing elsewhere. */

#if defined(__CUDACC__)
#define MINIBERT_HOST_DEVICE __host__ __device__ __forceinline__
#define MINIBERT_DEVICE __device__ __forceinline__
#else
#define MINIBERT_HOST_DEVICE inline
#define MINIBERT_DEVICE inline
#endif

#if defined(_OPENMP)
#define MINIBERT_HAS_OPENMP 1
#else
#define MINIBERT_HAS_OPENMP 0
#endif

// Restrict-qualified pointers for the CPU kernels' inner loops.
#if defined(__GNUC__) || defined(__clang__)
#define MINIBERT_RESTRICT __restrict__
#else
#define MINIBERT_RESTRICT
#endif
