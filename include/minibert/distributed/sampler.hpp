// SPDX-License-Identifier: MIT
#pragma once
/* The rows one rank trains on in one epoch, exactly as torch.utils.data.DistributedSampler chooses them: a
   permutation (torch.randperm from a generator seeded with seed + epoch, or file order without shuffling), padded by
   repeating its start until it divides evenly among the ranks (drop_last=False), then every world_size-th entry from
   position rank. Every rank draws the same permutation, so the shards are disjoint and cover the data; with one rank
   the shard is the whole permutation. */

#include <cstddef> // size_t
#include <cstdint> // int64_t, uint64_t
#include <vector>  // vector

#include <minibert/error.hpp>
#include <minibert/torch_random.hpp>

namespace minibert::distributed {

/// @brief which of world_size shards a process takes
struct shard {
  int rank = 0, world_size = 1;
};

/// @brief rows per rank of a dataset of n rows: ceil(n / world_size) (the shards are padded to the same size)
inline std::size_t shard_size(std::size_t n, shard s) {
  const auto W = std::size_t(s.world_size);
  return (n + W - 1) / W;
}

/// @brief DistributedSampler(dataset of n rows, num_replicas=s.world_size, rank=s.rank, shuffle, seed,
/// drop_last=False) after set_epoch(epoch): ceil(n / world_size) row indices
inline std::vector<std::size_t> distributed_sampler_indices(std::size_t n, shard s, bool shuffle, std::uint64_t seed,
                                                            std::int64_t epoch) {
  MINIBERT_CHECK(s.world_size >= 1 && s.rank >= 0 && s.rank < s.world_size, "distributed_sampler",
                 "rank " << s.rank << " of world size " << s.world_size);
  std::vector<std::size_t> order(n);
  if (shuffle) {
    torch_generator gen(seed + std::uint64_t(epoch));
    const std::vector<std::int64_t> perm = torch_randperm(std::int64_t(n), gen);
    order.assign(perm.begin(), perm.end());
  } else {
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
  }
  if (n == 0 || s.world_size == 1) return order;
  const std::size_t W = std::size_t(s.world_size), per_rank = shard_size(n, s);
  std::vector<std::size_t> mine;
  mine.reserve(per_rank);
  for (std::size_t k = 0; k < per_rank; ++k) mine.push_back(order[(std::size_t(s.rank) + k * W) % n]);
  return mine;
}

} // namespace minibert::distributed
