// SPDX-License-Identifier: MIT
// model.safetensors: header length, header JSON (nesting, duplicates, dtypes, shapes, offsets), overlaps and holes,
// sizes against the file. Every tensor a file is accepted with is read in full, converted to float.
#include <cstdint>

#include <minibert/io/safetensors.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const minibert::fuzz::memory_file file(data, size);
  minibert::fuzz::expect_clean_refusal([&] {
    const auto st = minibert::safetensors_file::open(file.path());
    std::size_t bytes = 0;
    for (const auto& name : st.names()) {
      bytes += st.info(name).bytes.size();
      (void)st.read_vector<float>(name);
    }
    minibert::fuzz::invariant(bytes + 8 <= size, "accepted tensors cover more bytes than the file has");
  }, file.path());
  return 0;
}
