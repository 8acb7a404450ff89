// SPDX-License-Identifier: MIT
#pragma once
/* The precision of matrix products on fp32 data: a mixed-precision policy in the sense of torch.autocast. With
   bf16 (or fp16) the operands of every GEMM -- linear layers forward and backward, attention's q k^T and P v and
   their gradients -- are rounded to that type and multiplied with fp32 accumulation; everything else (softmax,
   layer norm, GELU, losses, reductions, the optimizer and its master weights) stays fp32, as autocast keeps those
   ops in fp32. Unlike autocast, the product is kept in fp32 rather than rounded to 16 bits, so activations stay
   fp32 (no memory saving; one rounding fewer per product). Set it for a region with autocast<Device>
   (backend.hpp); the CPU runs bf16 on AVX512-BF16 (vdpbf16ps) where the CPU has it. */

#include <cstdint> // uint16_t
#include <string>  // string

#include <minibert/dtype.hpp>
#include <minibert/error.hpp>

namespace minibert {

enum class matmul_precision { fp32, bf16, fp16 };

inline const char* precision_name(matmul_precision p) {
  switch (p) {
  case matmul_precision::bf16: return "bf16";
  case matmul_precision::fp16: return "fp16";
  default: return "fp32";
  }
}

/// @brief x rounded to the precision's type and back (round to nearest even; fp16 overflows to inf, as a cast does)
inline float round_to_precision(matmul_precision p, float x) {
  switch (p) {
  case matmul_precision::bf16: return float(bfloat16(x));
  case matmul_precision::fp16: return float(half(x));
  default: return x;
  }
}

} // namespace minibert
