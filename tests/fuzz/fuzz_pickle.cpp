// SPDX-License-Identifier: MIT
// The restricted pickle machine behind data.pkl on its own: opcodes, stack underflow, MARK balance, memo indices,
// string lengths, forbidden globals, persistent ids, REDUCE of the whitelisted callables.
#include <cstdint>
#include <span>

#include <minibert/io/pickle.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  minibert::fuzz::expect_clean_refusal([&] {
    minibert::detail::torch_unpickler vm(bytes, "fuzz.pkl", "torch_checkpoint");
    (void)vm.node(vm.run());
  }, "fuzz.pkl");
  return 0;
}
