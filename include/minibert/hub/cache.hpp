// SPDX-License-Identifier: MIT
#pragma once
/* The Hugging Face hub cache exactly as huggingface_hub 0.26 lays it out, so minibert and Python share downloads:
     <cache>/models--org--name/blobs/<etag>                 file contents, named by ETag (git sha1, or sha256 for LFS)
     <cache>/models--org--name/blobs/<etag>.incomplete      a download in progress (resumed with a Range request)
     <cache>/models--org--name/snapshots/<commit>/<file>    relative symlink to ../../blobs/<etag>
     <cache>/models--org--name/refs/<revision>              the commit a branch or tag named when last looked up
     <cache>/.locks/models--org--name/<etag>.lock           flock()ed while a process downloads that blob
   and its environment: HF_HUB_CACHE (else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub; HF_HOME defaults to
   $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface), HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE).
   Also the checks that keep names from the server inside the cache, and the hook through which the downloader
   (hub/download.hpp) offers itself to resolve_model_path. No network code here. */

#include <algorithm>   // min
#include <atomic>      // atomic counter for temporary link names
#include <cctype>      // isalnum, isspace, toupper
#include <cerrno>      // errno, EINTR, EWOULDBLOCK
#include <cstdio>      // FILE, fprintf
#include <cstdlib>     // getenv
#include <cstring>     // strerror
#include <filesystem>  // path, create_directories, rename, read_symlink
#include <fstream>     // ifstream
#include <optional>    // optional
#include <string>      // string, to_string
#include <string_view> // string_view

#include <fcntl.h>    // open, O_* flags
#include <sys/file.h> // flock
#include <sys/stat.h> // stat, fstat
#include <unistd.h>   // close, getpid, symlink

#include <minibert/error.hpp>
#include <minibert/io/atomic_file.hpp>

namespace minibert {

namespace hub {

/// @brief `value` with a leading "~/" replaced by $HOME (Python's os.path.expanduser, which HF_HOME goes through)
inline std::string expand_user(const std::string& value) {
  const char* home = std::getenv("HOME");
  if (home && (value == "~" || value.rfind("~/", 0) == 0)) return home + value.substr(1);
  return value;
}

/// @brief the environment variable's value, or "" when unset
inline std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

/// @brief whether an environment variable is set to 1, ON, YES or TRUE (any case), as huggingface_hub's _is_true
inline bool env_true(const char* name) {
  std::string v = env_or_empty(name);
  for (char& c : v) c = char(std::toupper(static_cast<unsigned char>(c)));
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

} // namespace hub

/// @brief $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (huggingface_hub's rules)
inline std::filesystem::path hf_home() {
  if (const std::string h = hub::env_or_empty("HF_HOME"); !h.empty()) return hub::expand_user(h);
  if (const std::string x = hub::env_or_empty("XDG_CACHE_HOME"); !x.empty())
    return std::filesystem::path(x) / "huggingface";
  const std::string home = hub::env_or_empty("HOME");
  return std::filesystem::path(home.empty() ? "." : home) / ".cache" / "huggingface";
}

/// @brief the hub cache folder: $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
/// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (huggingface_hub's rules)
inline std::filesystem::path hf_hub_cache() {
  if (const std::string c = hub::env_or_empty("HF_HUB_CACHE"); !c.empty()) return c;
  if (const std::string c = hub::env_or_empty("HUGGINGFACE_HUB_CACHE"); !c.empty()) return c;
  return hf_home() / "hub";
}

/// @brief whether downloads are forbidden: HF_HUB_OFFLINE (or transformers' TRANSFORMERS_OFFLINE) is 1/ON/YES/TRUE
inline bool hf_hub_offline() { return hub::env_true("HF_HUB_OFFLINE") || hub::env_true("TRANSFORMERS_OFFLINE"); }

/// @brief whether `s` can name a hub repository ("name" or "org/name"), by huggingface_hub's validate_repo_id:
/// 1-96 characters of [A-Za-z0-9_.-] per part, not starting or ending with '-' or '.', no "--" or ".."
inline bool is_hub_repo_id(const std::string& s) {
  const std::size_t slash = s.find('/');
  const auto part_ok = [](const std::string& p) {
    if (p.empty() || p.size() > 96 || p.front() == '-' || p.front() == '.' || p.back() == '-' || p.back() == '.')
      return false;
    for (unsigned char c : p)
      if (!std::isalnum(c) && c != '_' && c != '-' && c != '.') return false;
    return true;
  };
  if (s.find("--") != std::string::npos || s.find("..") != std::string::npos) return false;
  if (slash == std::string::npos) return part_ok(s);
  return part_ok(s.substr(0, slash)) && part_ok(s.substr(slash + 1));
}

namespace hub {

/// @brief "models--org--name": a model repository's folder in the cache (huggingface_hub's repo_folder_name)
inline std::string repo_folder_name(const std::string& repo_id) {
  std::string folder = "models";
  std::size_t start = 0;
  for (std::size_t slash; (slash = repo_id.find('/', start)) != std::string::npos; start = slash + 1)
    folder += "--" + repo_id.substr(start, slash - start);
  return folder + "--" + repo_id.substr(start);
}

/// @brief whether `s` is a full commit hash (40 lower-case hex digits, huggingface_hub's REGEX_COMMIT_HASH)
inline bool is_commit_hash(std::string_view s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

/// @brief whether an ETag is a sha256 (64 lower-case hex digits): the hub's ETag of an LFS file is its sha256
inline bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

/// @brief an ETag header as huggingface_hub's _normalize_etag turns it into a file name:
/// etag.lstrip("W/").strip('"') (leading 'W' and '/' characters, then surrounding quotes, removed)
inline std::string normalize_etag(std::string etag) {
  etag.erase(0, std::min(etag.find_first_not_of("W/"), etag.size()));
  const std::size_t first = etag.find_first_not_of('"');
  if (first == std::string::npos) return "";
  return etag.substr(first, etag.find_last_not_of('"') - first + 1);
}

/// @brief the reason `name` is not a safe name for one path component ("" when it is): empty, "." or "..", or
/// holding '/', a control character or a backslash
inline std::string unsafe_component_reason(std::string_view name) {
  if (name.empty()) return "it is empty";
  if (name == "." || name == "..") return "it is '" + std::string(name) + "'";
  for (unsigned char c : name) {
    if (c == '/') return "it holds a '/'";
    if (c == '\\') return "it holds a backslash";
    if (c < 0x20 || c == 0x7f) return "it holds a control character";
  }
  return "";
}

/// @brief checks a name from the server (ETag, commit) that becomes one path component of the cache
/// @throws minibert::error("hub", "<source>: the <what> '<value>' ... would not stay inside the cache ...")
inline void check_component(const std::string& what, const std::string& value, const std::string& source) {
  if (const std::string why = unsafe_component_reason(value); !why.empty())
    throw error("hub", source + ": the " + what + " '" + value + "' is not a safe file name (" + why +
                           "): refusing it, as it would not stay inside the cache folder");
}

/// @brief checks a relative path from the server or the user (a file name in a repository, a revision such as
/// "refs/pr/1") before it names a place in the cache: not absolute, no component empty, "." or "..", no control
/// character (a backslash is a plain character in a POSIX file name, as huggingface_hub treats it)
/// @throws minibert::error("hub", "<source>: the <what> '<name>' ...: refusing it, as it could escape the cache
/// folder")
inline void check_relative_path(const std::string& what, const std::string& name, const std::string& source) {
  const std::string prefix = source.empty() ? "" : source + ": ";
  if (!name.empty() && name.front() == '/')
    throw error("hub", prefix + "the " + what + " '" + name + "' is absolute: refusing it, as it would escape the "
                                "cache folder");
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = name.find('/', start);
    const std::string part = name.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    std::string why = unsafe_component_reason(part);
    if (why == "it holds a backslash") why.clear();
    if (!why.empty())
      throw error("hub", prefix + "the " + what + " '" + name + "' has an unsafe part (" + why +
                             "): refusing it, as it could escape the cache folder");
    if (slash == std::string::npos) return;
    start = slash + 1;
  }
}

/// @brief check_relative_path for a file name in a repository (a sibling's rfilename), `source` the URL it came from
inline void check_repo_filename(const std::string& name, const std::string& source) {
  check_relative_path("file name", name, source);
}

/// @brief check_relative_path for a revision (branch, tag or commit), before it names refs/<revision>
inline void check_revision(const std::string& revision) { check_relative_path("revision", revision, ""); }

/// @brief where one model repository lives in the cache, and the names of its parts
struct repo_cache {
  std::filesystem::path cache; ///< the hub cache folder
  std::string repo_id;         ///< "org/name"

  std::filesystem::path storage() const { return cache / repo_folder_name(repo_id); }
  std::filesystem::path blob(const std::string& etag) const { return storage() / "blobs" / etag; }
  std::filesystem::path incomplete(const std::string& etag) const {
    return storage() / "blobs" / (etag + ".incomplete");
  }
  std::filesystem::path snapshot(const std::string& commit) const { return storage() / "snapshots" / commit; }
  std::filesystem::path pointer(const std::string& commit, const std::string& filename) const {
    return snapshot(commit) / filename;
  }
  std::filesystem::path ref(const std::string& revision) const { return storage() / "refs" / revision; }
  std::filesystem::path lock(const std::string& etag) const {
    return cache / ".locks" / repo_folder_name(repo_id) / (etag + ".lock");
  }

  /// @brief the commit `revision` stands for in the cache: itself when a commit hash, else refs/<revision>'s
  /// content (nullopt when there is no such ref)
  std::optional<std::string> cached_commit(const std::string& revision) const {
    if (is_commit_hash(revision)) return revision;
    std::ifstream in(ref(revision));
    std::string commit;
    if (!in || !std::getline(in, commit)) return std::nullopt;
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
    if (commit.empty() || !unsafe_component_reason(commit).empty()) return std::nullopt;
    return commit;
  }

  /// @brief records that `revision` names `commit` (refs/<revision>), unless it is the commit itself or already
  /// recorded (huggingface_hub's _cache_commit_hash_for_specific_revision); written atomically
  void write_ref(const std::string& revision, const std::string& commit) const {
    if (revision == commit || cached_commit(revision) == commit) return;
    std::filesystem::create_directories(ref(revision).parent_path());
    atomic_write_bytes(ref(revision), std::string_view(commit));
  }
};

/// @brief makes `link` a symlink to `target` by the relative path between them (Python's os.path.relpath of the
/// absolute, normalized paths; no symlink resolution), replacing whatever link was there atomically (a temporary
/// link renamed over it)
/// @throws minibert::error("hub", ...) naming both paths when the link cannot be made
inline void make_relative_symlink(const std::filesystem::path& target, const std::filesystem::path& link) {
  namespace fs = std::filesystem;
  const fs::path abs_target = fs::absolute(target).lexically_normal();
  const fs::path abs_link = fs::absolute(link).lexically_normal();
  const fs::path relative = abs_target.lexically_relative(abs_link.parent_path());
  static std::atomic<unsigned> counter{0};
  const fs::path tmp = abs_link.parent_path() / ("." + abs_link.filename().string() + ".symlink-" +
                                                 std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::error_code ec;
  fs::create_directories(abs_link.parent_path(), ec);
  if (::symlink(relative.c_str(), tmp.c_str()) != 0 || ::rename(tmp.c_str(), abs_link.c_str()) != 0) {
    const int e = errno;
    fs::remove(tmp, ec);
    throw error("hub", "cannot link " + link.string() + " -> " + relative.string() + ": " + std::strerror(e));
  }
}

/// @brief an exclusive flock() on a lock file, held for the object's lifetime: the same lock as Python's filelock
/// (which huggingface_hub takes on <cache>/.locks/models--org--name/<etag>.lock), so minibert and Python processes
/// (and threads of one process) never download the same blob at once. The file stays (as filelock leaves it);
/// should somebody remove it while we wait, we lock the new one instead.
class file_lock {
public:
  /// @param waiting_log where "waiting for <path>" goes when another holder makes us wait (nullptr: nowhere)
  explicit file_lock(const std::filesystem::path& path, std::FILE* waiting_log = nullptr) {
    std::filesystem::create_directories(path.parent_path());
    bool said_waiting = false;
    while (true) {
      fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      if (fd_ < 0) fail(path, "cannot open the lock file");
      if (!lock_now()) {
        if (waiting_log && !said_waiting) {
          std::fprintf(waiting_log, "hub: waiting for another download to finish (lock %s)\n", path.c_str());
          said_waiting = true;
        }
        lock_waiting(path);
      }
      if (still_the_file_at(path)) return;
      ::close(fd_); // replaced while we waited: lock the file that is there now
    }
  }
  ~file_lock() {
    if (fd_ >= 0) ::close(fd_); // closing releases the flock
  }
  file_lock(const file_lock&) = delete;
  file_lock& operator=(const file_lock&) = delete;

private:
  bool lock_now() { return ::flock(fd_, LOCK_EX | LOCK_NB) == 0; }
  void lock_waiting(const std::filesystem::path& path) {
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) fail(path, "flock failed");
  }
  bool still_the_file_at(const std::filesystem::path& path) const {
    struct stat held {}, there {};
    return ::fstat(fd_, &held) == 0 && ::stat(path.c_str(), &there) == 0 && held.st_dev == there.st_dev &&
           held.st_ino == there.st_ino;
  }
  [[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
    const int e = errno;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    throw error("hub", what + ": " + path.string() + ": " + std::strerror(e));
  }

  int fd_ = -1;
};

/// @brief downloads a hub id's model files into the cache and returns their snapshot folder
using model_downloader = std::filesystem::path (*)(const std::string& repo_id);

/// @brief the downloader resolve_model_path uses for an id that is not cached (nullptr: none; <minibert/hub/
/// download.hpp> installs snapshot_download)
inline model_downloader& installed_model_downloader() {
  static model_downloader downloader = nullptr;
  return downloader;
}

} // namespace hub
} // namespace minibert
