// SPDX-License-Identifier: MIT
// The zip reader behind pytorch_model.bin on its own: end-of-central-directory search, ZIP64 records and extra
// fields, entry names, local headers, stored data ranges, CRC-32.
#include <cstdint>
#include <span>

#include <minibert/io/zip_archive.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  minibert::fuzz::expect_clean_refusal([&] {
    const minibert::detail::zip_archive zip(bytes, "fuzz.zip", "torch_checkpoint");
    for (const auto& e : zip.entries()) {
      minibert::fuzz::invariant(zip.find(e.name) != nullptr, "an indexed entry cannot be found by name");
      minibert::fuzz::expect_clean_refusal([&] {
        const auto d = zip.data(e);
        minibert::fuzz::invariant(d.data() >= bytes.data() && d.data() + d.size() <= bytes.data() + bytes.size(),
                                  "entry data outside the archive");
        zip.verify_crc(e);
      }, "fuzz.zip");
    }
  }, "fuzz.zip");
  return 0;
}
