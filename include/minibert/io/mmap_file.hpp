// SPDX-License-Identifier: MIT
#pragma once
/* minibert::mmap_file: a read-only, move-only memory map of a whole file (POSIX mmap), the zero-copy base of the
   checkpoint readers. An empty file maps to an empty span (mmap refuses length 0). */

#include <cerrno>      // errno
#include <cstddef>     // byte, size_t
#include <cstring>     // strerror
#include <filesystem>  // path
#include <span>        // span
#include <string>      // string
#include <utility>     // exchange, move

#include <fcntl.h>     // open, O_RDONLY, O_CLOEXEC
#include <sys/mman.h>  // mmap, munmap, madvise
#include <sys/stat.h>  // fstat
#include <unistd.h>    // close

#include <minibert/error.hpp>

namespace minibert {

/// @brief A read-only memory map of an entire file. Move-only; unmaps on destruction.
/// The file may change size under the map only at the caller's risk (as with any mmap).
class mmap_file {
public:
  mmap_file() = default;

  /// @brief maps `path` read-only
  /// @throws minibert::error("mmap", "<path>: <what>: <errno text>") if the file cannot be opened, is not a
  ///         regular file, or cannot be mapped
  explicit mmap_file(const std::filesystem::path& path);

  mmap_file(const mmap_file&) = delete;
  mmap_file& operator=(const mmap_file&) = delete;
  mmap_file(mmap_file&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)), path_(std::move(o.path_)) {}
  mmap_file& operator=(mmap_file&& o) noexcept {
    if (this != &o) {
      unmap();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
      path_ = std::move(o.path_);
    }
    return *this;
  }
  ~mmap_file() { unmap(); }

  /// @brief the mapped bytes (empty for an empty file)
  std::span<const std::byte> bytes() const noexcept { return {data_, size_}; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// @brief the path the map was opened from (for error messages)
  const std::string& path() const noexcept { return path_; }

private:
  void unmap() noexcept {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
  }

  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {
// closes a descriptor on scope exit; the map stays valid after close (POSIX keeps the mapping)
struct fd_closer {
  int fd;
  ~fd_closer() {
    if (fd >= 0) ::close(fd);
  }
};
} // namespace detail

inline mmap_file::mmap_file(const std::filesystem::path& path) : path_(path.string()) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw error("mmap", path_ + ": cannot open: " + std::strerror(e));
  }
  detail::fd_closer closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    throw error("mmap", path_ + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) throw error("mmap", path_ + ": not a regular file");
  if (st.st_size == 0) return; // mmap(len 0) is EINVAL: an empty file is an empty span
  void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    throw error("mmap", path_ + ": cannot map " + std::to_string(st.st_size) + " bytes: " + std::strerror(e));
  }
  data_ = static_cast<const std::byte*>(p);
  size_ = static_cast<std::size_t>(st.st_size);
}

} // namespace minibert
