// SPDX-License-Identifier: MIT
#pragma once
/* minibert's umbrella header: everything a CPU program needs. Host-compilable only; CUDA programs add
   <minibert/cuda/backend.hpp> and compile one .cu that includes <minibert/cuda/backend_impl.cuh>. */

#include <minibert/version.hpp>  // defines: MINIBERT_VERSION_*, version_string
#include <minibert/config.hpp>   // defines: MINIBERT_HOST_DEVICE, feature macros
#include <minibert/error.hpp>    // defines: error, MINIBERT_CHECK, MINIBERT_ASSERT
