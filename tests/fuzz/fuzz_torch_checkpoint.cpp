// SPDX-License-Identifier: MIT
// pytorch_model.bin as a whole: zip index, data.pkl through the restricted pickle machine, storages against their
// records, sizes/strides/offsets of every tensor. Every tensor a file is accepted with is gathered in full.
#include <cstdint>

#include <minibert/io/torch_checkpoint.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const minibert::fuzz::memory_file file(data, size);
  minibert::fuzz::expect_clean_refusal([&] {
    const auto ck = minibert::torch_checkpoint::open(file.path());
    for (const auto& name : ck.names()) (void)ck.read_vector<float>(name);
  }, file.path());
  return 0;
}
