// SPDX-License-Identifier: MIT
// The one translation unit of a program that defines minibert's CUDA backend (every member of backend<device::cuda>,
// instantiated for float, half and bfloat16). Everything else in the program is plain C++ and includes
// <minibert/cuda/backend.hpp>.
#include <minibert/cuda/backend_impl.cuh>
