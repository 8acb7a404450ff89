// SPDX-License-Identifier: MIT
#pragma once
/* Crash-safe file replacement: atomic_write / atomic_write_bytes write a temporary file beside the target, fsync
   it, rename it over the target and fsync the directory (the classic POSIX recipe), so readers see either the old
   file or the complete new one, never a torn write. Used for checkpoints, configs, reports. */

#include <atomic>      // atomic counter for temporary names
#include <cerrno>      // errno, EEXIST, EINTR, EINVAL
#include <cstddef>     // byte, size_t
#include <cstring>     // strerror
#include <filesystem>  // path
#include <fstream>     // ifstream (atomic_copy_file)
#include <ostream>     // ostream
#include <span>        // span
#include <streambuf>   // streambuf
#include <string>      // string, to_string
#include <string_view> // string_view
#include <utility>     // forward

#include <fcntl.h>     // open, O_* flags
#include <sys/stat.h>  // fstat, fchmod
#include <unistd.h>    // write, fsync, close, unlink, getpid

#include <minibert/error.hpp>

namespace minibert {

/// @brief Replaces `path` atomically with what `fill(std::ostream&)` writes. The data goes to a temporary file in
/// the same directory, which is flushed, fsync'ed and renamed over `path`; then the directory is fsync'ed.
/// An existing target keeps its permission bits; a new one gets 0666 minus the umask.
/// On any failure (including an exception thrown by `fill`) the old file is untouched and the temporary removed.
/// @throws minibert::error("atomic_write", "<path>: ...") on I/O failure; exceptions from `fill` propagate
template <class Fill> void atomic_write(const std::filesystem::path& path, Fill&& fill);

/// @brief atomic_write of a byte buffer
/// @throws minibert::error("atomic_write", "<path>: ...") on I/O failure
inline void atomic_write_bytes(const std::filesystem::path& path, std::span<const std::byte> bytes);

/// @brief atomic_write of a text buffer (written as is, no newline added)
/// @throws minibert::error("atomic_write", "<path>: ...") on I/O failure
inline void atomic_write_bytes(const std::filesystem::path& path, std::string_view text);

/// @brief Replaces `to` atomically with a copy of `from` (std::filesystem::copy_file is not atomic: a crash leaves
/// a torn copy)
/// @throws minibert::error("atomic_write", "<from>: cannot be read") or atomic_write's errors on `to`
inline void atomic_copy_file(const std::filesystem::path& from, const std::filesystem::path& to);

/// @brief fsync of a directory, so that a rename or unlink done in it survives a power loss (a renamed file's
/// own data is not enough: the directory entry is what points to it). A file system that cannot fsync
/// directories (EINVAL) or a directory that cannot be opened for reading is skipped: the rename already happened.
/// @throws minibert::error(op, "<what>: ... fsync of directory '<dir>' failed: <errno text>")
inline void sync_directory(const std::filesystem::path& dir, const std::string& op, const std::string& what);

/// @brief Whether `name` is the name of a temporary file that atomic_write makes beside its target
/// (".<target name>.tmp-<pid>-<n>"), which a killed process leaves behind
inline bool is_atomic_write_temp(const std::string& name);

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

inline std::string errno_text(int e) { return std::strerror(e); }

// A small write-only streambuf over a POSIX descriptor: we need the descriptor for fsync, which std::ofstream
// does not expose. Remembers the first write error instead of throwing through iostream machinery.
class fd_streambuf : public std::streambuf {
public:
  explicit fd_streambuf(int fd) : fd_(fd) { setp(buf_, buf_ + sizeof(buf_)); }
  int error() const { return err_; }
  bool flush_all() { return drain() && err_ == 0; }

protected:
  int_type overflow(int_type ch) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    if (n >= static_cast<std::streamsize>(sizeof(buf_))) { // large blocks bypass the buffer
      if (!drain() || !write_all(s, static_cast<std::size_t>(n))) return 0;
      return n;
    }
    return std::streambuf::xsputn(s, n);
  }
  int sync() override { return drain() ? 0 : -1; }

private:
  bool drain() {
    const std::size_t n = static_cast<std::size_t>(pptr() - pbase());
    setp(buf_, buf_ + sizeof(buf_));
    return n == 0 || write_all(buf_, n);
  }
  bool write_all(const char* p, std::size_t n) {
    if (err_ != 0) return false;
    while (n > 0) {
      const ::ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        err_ = errno;
        return false;
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return true;
  }

  int fd_;
  int err_ = 0;
  char buf_[1 << 16];
};

// Creates a fresh temporary file beside `target` (O_EXCL, so never somebody else's file).
inline int create_temp_beside(const std::filesystem::path& target, std::string& tmp_out) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  const std::string stem = "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-";
  for (int attempt = 0; attempt < 100; ++attempt) {
    tmp_out = (dir / (stem + std::to_string(counter.fetch_add(1)))).string();
    const int fd = ::open(tmp_out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) return fd;
    if (errno != EEXIST) {
      const int e = errno;
      throw error("atomic_write", target.string() + ": cannot create a temporary file in '" + dir.string() +
                                      "': " + errno_text(e));
    }
  }
  throw error("atomic_write", target.string() + ": cannot find a free temporary name in '" + dir.string() + "'");
}

// Owns the temporary file until commit(): the destructor closes and unlinks it on any failure path.
class temp_file_guard {
public:
  explicit temp_file_guard(const std::filesystem::path& target) : target_(target) {
    fd_ = create_temp_beside(target, tmp_);
  }
  temp_file_guard(const temp_file_guard&) = delete;
  temp_file_guard& operator=(const temp_file_guard&) = delete;
  ~temp_file_guard() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  int fd() const { return fd_; }

  // fsync, close, keep the old permission bits, rename over the target, fsync the directory
  void commit() {
    const std::string t = target_.string();
    struct stat st {};
    if (::stat(t.c_str(), &st) == 0) ::fchmod(fd_, st.st_mode & 07777);
    if (::fsync(fd_) != 0) fail("fsync of the temporary file failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close of the temporary file failed");
    if (::rename(tmp_.c_str(), t.c_str()) != 0) fail("rename from '" + tmp_ + "' failed");
    committed_ = true;
    sync_directory(target_.has_parent_path() ? target_.parent_path() : ".", "atomic_write", t + ": written, but");
  }

  [[noreturn]] void fail(const std::string& what, int e = 0) const {
    if (e == 0) e = errno;
    throw error("atomic_write", target_.string() + ": " + what + ": " + errno_text(e));
  }

private:
  std::filesystem::path target_;
  std::string tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

} // namespace detail

template <class Fill> void atomic_write(const std::filesystem::path& path, Fill&& fill) {
  detail::temp_file_guard tmp(path);
  {
    detail::fd_streambuf buf(tmp.fd());
    std::ostream os(&buf);
    std::forward<Fill>(fill)(static_cast<std::ostream&>(os));
    os.flush();
    if (!buf.flush_all() || !os.good()) tmp.fail("write failed", buf.error() != 0 ? buf.error() : EIO);
  }
  tmp.commit();
}

inline void atomic_write_bytes(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  atomic_write(path, [&](std::ostream& os) {
    os.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  });
}

inline void atomic_write_bytes(const std::filesystem::path& path, std::string_view text) {
  atomic_write_bytes(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

inline void atomic_copy_file(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw error("atomic_write", from.string() + ": cannot be read");
  atomic_write(to, [&](std::ostream& os) {
    char chunk[1 << 16];
    while (in.read(chunk, sizeof(chunk)) || in.gcount() > 0) os.write(chunk, in.gcount());
    if (in.bad()) throw error("atomic_write", from.string() + ": read error");
  });
}

inline void sync_directory(const std::filesystem::path& dir, const std::string& op, const std::string& what) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  const int rc = ::fsync(dfd);
  const int e = errno;
  ::close(dfd);
  if (rc != 0 && e != EINVAL)
    throw error(op, what + " fsync of directory '" + dir.string() + "' failed: " + detail::errno_text(e));
}

inline bool is_atomic_write_temp(const std::string& name) {
  const std::size_t at = name.rfind(".tmp-");
  return name.size() > 1 && name[0] == '.' && at != std::string::npos && at > 1 &&
         name.find_first_not_of("0123456789-", at + 5) == std::string::npos;
}

} // namespace minibert
