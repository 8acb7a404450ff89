# SPDX-License-Identifier: MIT
"""The rows torch.utils.data.DistributedSampler gives each rank, as JSON on standard output: for every case
(n, world_size, shuffle, seed, epoch) the list of each rank's indices. test_distributed compares
minibert::distributed::distributed_sampler_indices with it element for element."""
import json
import sys

import torch
from torch.utils.data import DistributedSampler

CASES = [(10, 2, True, 42, 0), (10, 3, True, 42, 1), (11, 4, True, 7, 3), (3, 5, True, 1, 0), (9, 3, False, 0, 0),
         (1000, 8, True, 42, 2), (7, 1, True, 42, 0), (2, 8, False, 0, 0)]


def main():
    out = []
    for n, world, shuffle, seed, epoch in CASES:
        shards = []
        for rank in range(world):
            s = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
            s.set_epoch(epoch)
            shards.append(list(iter(s)))
        out.append({"n": n, "world_size": world, "shuffle": shuffle, "seed": seed, "epoch": epoch, "shards": shards})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
