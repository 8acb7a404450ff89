// SPDX-License-Identifier: MIT
#pragma once
/* minibert's umbrella header: everything a CPU program needs. Host-compilable only; CUDA programs add
   <minibert/cuda/backend.hpp> and compile one .cu that includes <minibert/cuda/backend_impl.cuh>. */

#include <minibert/version.hpp>  // defines: MINIBERT_VERSION_*, version_string
#include <minibert/config.hpp>   // defines: MINIBERT_HOST_DEVICE, feature macros
#include <minibert/error.hpp>    // defines: error, MINIBERT_CHECK, MINIBERT_ASSERT
#include <minibert/dtype.hpp>    // defines: dtype, half, bfloat16
#include <minibert/tensor.hpp>   // defines: tensor, shape, device::cpu, device::cuda
#include <minibert/random.hpp>   // defines: generator (Philox)
#include <minibert/backend.hpp>  // defines: backend<Device> (the op table)
#include <minibert/cpu/backend.hpp> // defines: backend<device::cpu>, set_num_threads
#include <minibert/autograd.hpp> // defines: variable, node, no_grad, backward
#include <minibert/ops.hpp>      // defines: every differentiable op
#include <minibert/bert_config.hpp>    // defines: bert_config, hidden_activation, problem_kind
#include <minibert/io/checkpoint.hpp>  // defines: checkpoint, safetensors_file, save_safetensors, torch_checkpoint, atomic_write
