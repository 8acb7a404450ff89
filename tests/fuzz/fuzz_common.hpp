// SPDX-License-Identifier: MIT
#pragma once
/* What every fuzz target shares. A target feeds libFuzzer's bytes to one parser of untrusted input and accepts
   exactly one way to fail: minibert::error. Any other exception escapes to libFuzzer, which reports it as a crash
   (an std::out_of_range from a library, a bare std::bad_alloc), as ASan and UBSan report memory and UB defects;
   `invariant` traps when a parser's success violates what it promises. */

#include <sys/mman.h> // memfd_create
#include <unistd.h>   // write, close

#include <cstddef>    // size_t
#include <cstdint>    // uint8_t
#include <cstdio>     // fprintf
#include <cstdlib>    // abort
#include <string>     // string
#include <string_view> // string_view

#include <minibert/error.hpp>

namespace minibert::fuzz {

/// @brief runs `f`; a minibert::error is the parser refusing bad input, which is what it should do, provided its
/// message names the input (`source`: the file's path or name; empty for input that is no file)
template <class F> void expect_clean_refusal(F&& f, std::string_view source = {}) {
  try {
    f();
  } catch (const minibert::error& e) {
    if (!source.empty() && std::string_view(e.what()).find(source) == std::string_view::npos) {
      std::fprintf(stderr, "fuzz invariant violated: an error that does not name '%.*s': %s\n",
                   static_cast<int>(source.size()), source.data(), e.what());
      std::abort();
    }
  }
}

/// @brief aborts (a libFuzzer finding) when `ok` is false
inline void invariant(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
  std::abort();
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// @brief The input as a file (an anonymous memfd, reopened through /proc/self/fd), for the readers that take a path
/// and memory-map it, so the fuzzer exercises the same open/map path as a real checkpoint.
class memory_file {
public:
  memory_file(const std::uint8_t* data, std::size_t size) : fd_(memfd_create("fuzz-input", 0)) {
    invariant(fd_ >= 0, "memfd_create failed");
    for (std::size_t done = 0; done < size;) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      invariant(n > 0, "write to the memfd failed");
      done += static_cast<std::size_t>(n);
    }
  }
  ~memory_file() { ::close(fd_); }
  memory_file(const memory_file&) = delete;
  memory_file& operator=(const memory_file&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

private:
  int fd_;
};

} // namespace minibert::fuzz
