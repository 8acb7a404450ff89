// SPDX-License-Identifier: MIT
#pragma once
/* minibert's umbrella header: everything a CPU program needs. Host-compilable only; CUDA programs add
   <minibert/cuda/backend.hpp> and compile one .cu that includes <minibert/cuda/backend_impl.cuh>. */

#include <minibert/version.hpp>  // defines: MINIBERT_VERSION_*, version_string
#include <minibert/config.hpp>   // defines: MINIBERT_HOST_DEVICE, feature macros
#include <minibert/error.hpp>    // defines: error, MINIBERT_CHECK, MINIBERT_ASSERT
#include <minibert/dtype.hpp>    // defines: dtype, half, bfloat16
#include <minibert/tensor.hpp>   // defines: tensor, shape, device::cpu, device::cuda
#include <minibert/tensor_ops.hpp> // defines: contiguous, clone, zeros_on, to_device, to_host, item (any device)
#include <minibert/random.hpp>   // defines: generator (Philox)
#include <minibert/torch_random.hpp> // defines: torch_generator, torch_normal, torch_uniform, torch_randperm
#include <minibert/backend.hpp>  // defines: backend<Device> (the op table), backend_for (the contract), context
#include <minibert/cpu/backend.hpp> // defines: backend<device::cpu>, set_num_threads
#include <minibert/autograd.hpp> // defines: variable, node, no_grad, backward
#include <minibert/ops.hpp>      // defines: every differentiable op
#include <minibert/bert_config.hpp>    // defines: bert_config, hidden_activation, problem_kind
#include <minibert/io/checkpoint.hpp>  // defines: checkpoint, safetensors_file, save_safetensors, torch_checkpoint, atomic_write
#include <minibert/tokenizer.hpp> // defines: tokenizer, encoding, encode_options, vocab, wordpiece, normalize
#include <minibert/nn/module.hpp>      // defines: module (parameter registry, train/eval)
#include <minibert/nn/layers.hpp>      // defines: linear_layer, layer_norm_layer, embedding_layer
#include <minibert/encoder.hpp>        // defines: bert_inputs, bert_embeddings ... bert_model
#include <minibert/heads.hpp>          // defines: bert_for_sequence_classification, bert_for_masked_lm
#include <minibert/pretrained.hpp>     // defines: load_weights, from_pretrained, save_pretrained
#include <minibert/hub.hpp>            // defines: resolve_model_path (local Hugging Face cache)
#include <minibert/optimizer.hpp>      // defines: adamw, param_group, default_param_groups, clip_grad_norm
#include <minibert/scheduler.hpp>      // defines: lr_schedule, scheduler, schedule_kind
#include <minibert/training/grad_scaler.hpp> // defines: grad_scaler, grad_scaler_options (fp16 loss scaling)
#include <minibert/data.hpp>           // defines: dataset, example, read_dataset, split_validation
#include <minibert/metrics.hpp>        // defines: classification_metrics, compute_classification_metrics
#include <minibert/report.hpp>         // defines: report_data, write_report, compare_runs
#include <minibert/training/step_graphs.hpp> // defines: step_graphs (the training step as CUDA graphs)
#include <minibert/training/trainer.hpp> // defines: training_args, trainer, tokenize_dataset, collate
