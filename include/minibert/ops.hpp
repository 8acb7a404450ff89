// SPDX-License-Identifier: MIT
#pragma once
/* All differentiable ops (forward and backward side by side in each header under ops/). */

#include <minibert/ops/activation.hpp>  // defines: activate, gelu, tanh, relu
#include <minibert/ops/attention.hpp>   // defines: attention, self_attention (fused multi-head self-attention)
#include <minibert/ops/dropout.hpp>     // defines: dropout
#include <minibert/ops/elementwise.hpp> // defines: add, sub, mul, scale, operator+ - *
#include <minibert/ops/embedding.hpp>   // defines: embedding
#include <minibert/ops/layer_norm.hpp>  // defines: layer_norm
#include <minibert/ops/loss.hpp>        // defines: cross_entropy, mse_loss, bce_with_logits
#include <minibert/ops/matmul.hpp>      // defines: matmul, linear
#include <minibert/ops/reduce.hpp>      // defines: sum, mean
#include <minibert/ops/shape.hpp>       // defines: reshape, permute, transpose, slice, select, concat, contiguous
#include <minibert/ops/softmax.hpp>     // defines: softmax (with additive mask)
