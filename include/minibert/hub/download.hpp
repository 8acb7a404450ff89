// SPDX-License-Identifier: MIT
#pragma once
/* Downloading from the Hugging Face Hub into the cache that huggingface_hub uses, the way its 0.26 release does, so
   the two share downloads in both directions:
     snapshot_download(repo_id, options)      GET {endpoint}/api/models/{repo_id}/revision/{revision} lists the files
                                              and names the commit; refs/<revision> records it; the selected files
                                              (by default the ones a BERT model needs) come by hub_download; returns
                                              <cache>/models--org--name/snapshots/<commit>
     hub_download(repo_id, filename, options) HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename} (redirects to
                                              another host not followed) gives X-Repo-Commit, the ETag (X-Linked-Etag
                                              for LFS files), the size (X-Linked-Size or Content-Length) and the
                                              Location of the file store; the GET follows redirects into
                                              blobs/<etag>.incomplete under a flock on .locks/models--org--name/
                                              <etag>.lock, resumes with a Range request after a dropped connection,
                                              checks the size (and the sha256 when the ETag is one: LFS files),
                                              renames it into blobs/<etag> and links snapshots/<commit>/<filename>
                                              to it by a relative symlink; returns that link
   Environment: HF_ENDPOINT, HF_TOKEN (or HUGGING_FACE_HUB_TOKEN, or the file $HF_TOKEN_PATH / $HF_HOME/token; sent
   only to the endpoint's host, never to a redirect's), HF_HUB_OFFLINE (no network at all: the cache or an error),
   HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT (seconds, default 10), and the cache's (hub/cache.hpp).
   When the hub cannot be reached (or answers an error other than "no such revision/file"), what the cache holds for
   the revision is used, as huggingface_hub does. Progress: a bar with size, rate and ETA when the log is a terminal,
   one line per file otherwise. Needs libcurl (MINIBERT_WITH_CURL; CMake's minibert::hub). */

#include <algorithm>  // find
#include <cctype>     // isalnum
#include <cerrno>     // errno, EINTR
#include <chrono>     // milliseconds, steady_clock
#include <cstdint>    // int64_t
#include <cstdio>     // FILE, fprintf
#include <cstdlib>    // strtol
#include <cstring>    // strerror
#include <filesystem> // path, exists, create_directories, remove
#include <fstream>    // ifstream (token file)
#include <functional> // ref
#include <iterator>   // istreambuf_iterator
#include <optional>   // optional
#include <string>     // string, erase
#include <thread>     // this_thread::sleep_for
#include <vector>     // vector

#include <fcntl.h>    // open, O_* flags
#include <fnmatch.h>  // fnmatch
#include <sys/stat.h> // fstat
#include <unistd.h>   // write, fsync, ftruncate, close

#include <nlohmann/json.hpp>

#include <minibert/detail/json_limits.hpp>
#include <minibert/error.hpp>
#include <minibert/hub/cache.hpp>
#include <minibert/hub/http.hpp>
#include <minibert/hub/sha256.hpp>
#include <minibert/training/progress.hpp>

namespace minibert {

/// @brief where and how to download; every unset field comes from the environment as in huggingface_hub
struct hub_options {
  std::string revision = "main";            ///< branch, tag or commit
  std::filesystem::path cache_dir;          ///< empty: hf_hub_cache()
  std::string endpoint;                     ///< empty: $HF_ENDPOINT, else https://huggingface.co
  std::optional<std::string> token;         ///< unset: $HF_TOKEN, $HUGGING_FACE_HUB_TOKEN, else the token file
  std::vector<std::string> allow_patterns;  ///< snapshot_download: fnmatch patterns; empty: the BERT model files
  std::optional<bool> offline;              ///< unset: $HF_HUB_OFFLINE (or $TRANSFORMERS_OFFLINE)
  long etag_timeout_s = 0;                  ///< metadata requests; 0: $HF_HUB_ETAG_TIMEOUT, else 10
  long download_timeout_s = 0;              ///< downloads: seconds without a byte; 0: $HF_HUB_DOWNLOAD_TIMEOUT, else 10
  int max_retries = 5;                      ///< resumes after dropped connections without progress, per file
  std::chrono::milliseconds retry_delay{1000}; ///< pause before a resume
  std::FILE* log = stderr;                  ///< progress and notes; nullptr: silent
};

/// @brief a request the hub refused (an HTTP status) or that failed on the way (status 0)
class hub_request_error : public error {
public:
  hub_request_error(const std::string& msg, long status, std::string error_code)
      : error("hub", msg), status_(status), error_code_(std::move(error_code)) {}
  long status() const noexcept { return status_; }
  /// @brief the hub's X-Error-Code ("RepoNotFound", "RevisionNotFound", "EntryNotFound", "GatedRepo") or ""
  const std::string& error_code() const noexcept { return error_code_; }
  /// @brief whether the cache may answer instead: every failure but "this revision or file does not exist"
  /// (huggingface_hub's rule)
  bool cache_may_answer() const noexcept {
    return error_code_ != "RevisionNotFound" && error_code_ != "EntryNotFound";
  }

private:
  long status_;
  std::string error_code_;
};

namespace hub {

/// @brief the configuration and tokenizer files snapshot_download takes by default (those a repository has), with
/// model.safetensors, else pytorch_model.bin
inline const std::vector<std::string>& bert_config_and_tokenizer_files() {
  static const std::vector<std::string> files = {"config.json",           "vocab.txt",
                                                 "tokenizer.json",        "tokenizer_config.json",
                                                 "special_tokens_map.json", "added_tokens.json"};
  return files;
}

/// @brief whether `name` matches one of `patterns` as Python's fnmatch does in huggingface_hub's allow_patterns
/// ('*' crosses '/', a backslash is a plain character, a pattern ending in '/' means everything below it)
inline bool matches_any(const std::string& name, const std::vector<std::string>& patterns) {
  for (std::string p : patterns) {
    if (!p.empty() && p.back() == '/') p += '*';
    if (::fnmatch(p.c_str(), name.c_str(), FNM_NOESCAPE) == 0) return true;
  }
  return false;
}

namespace detail {

// ------------------------------------------------------------------------------------------------ session

/// @brief the options with the environment's defaults filled in, fixed for one download
struct session {
  std::filesystem::path cache;
  std::string endpoint;
  std::string token;
  bool offline = false;
  std::string offline_reason;
  long etag_timeout_s = 10, download_timeout_s = 10;
  int max_retries = 5;
  std::chrono::milliseconds retry_delay{1000};
  std::FILE* log = nullptr;
};

inline long env_seconds(const char* name, long fallback) {
  const std::string v = env_or_empty(name);
  char* end = nullptr;
  const long s = v.empty() ? 0 : std::strtol(v.c_str(), &end, 10);
  return s > 0 && end && *end == 0 ? s : fallback;
}

// huggingface_hub's _clean_token: CR and LF removed, surrounding blanks trimmed
inline std::string clean_token(std::string t) {
  std::erase(t, '\r');
  std::erase(t, '\n');
  return trim(t);
}

inline std::string token_from_environment() {
  for (const char* name : {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})
    if (std::string t = clean_token(env_or_empty(name)); !t.empty()) return t;
  const std::string path_env = env_or_empty("HF_TOKEN_PATH");
  std::ifstream in(path_env.empty() ? hf_home() / "token" : std::filesystem::path(path_env));
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return clean_token(token);
}

inline std::string endpoint_from_environment() {
  std::string e = env_or_empty("HF_ENDPOINT");
  if (e.empty()) e = "https://huggingface.co";
  while (e.size() > 1 && e.back() == '/') e.pop_back();
  return e;
}

inline session make_session(const hub_options& o) {
  session s;
  s.cache = o.cache_dir.empty() ? hf_hub_cache() : o.cache_dir;
  s.endpoint = o.endpoint.empty() ? endpoint_from_environment() : o.endpoint;
  s.token = o.token ? clean_token(*o.token) : token_from_environment();
  s.offline = o.offline.value_or(hf_hub_offline());
  s.offline_reason = o.offline ? "downloads are turned off (hub_options::offline)"
                               : "HF_HUB_OFFLINE is set: no network access";
  s.etag_timeout_s = o.etag_timeout_s > 0 ? o.etag_timeout_s : env_seconds("HF_HUB_ETAG_TIMEOUT", 10);
  s.download_timeout_s = o.download_timeout_s > 0 ? o.download_timeout_s : env_seconds("HF_HUB_DOWNLOAD_TIMEOUT", 10);
  s.max_retries = o.max_retries;
  s.retry_delay = o.retry_delay;
  s.log = o.log;
  return s;
}

// ------------------------------------------------------------------------------------------------ requests

/// @brief what a request is about, for error messages
struct subject {
  std::string repo_id, revision, filename; // filename "" for the repository itself
};

inline std::string describe(const subject& what) {
  if (what.filename.empty()) return "the repository '" + what.repo_id + "' at revision '" + what.revision + "'";
  return "the file '" + what.filename + "' of '" + what.repo_id + "' at revision '" + what.revision + "'";
}

/// @brief the token goes to the endpoint's scheme, host and port only: never to a redirect's other host
inline bool token_sent_to(const session& s, const std::string& url) {
  return !s.token.empty() && same_origin(url, s.endpoint);
}

inline std::vector<std::string> headers_for(const session& s, const std::string& url) {
  std::vector<std::string> h = {"Accept-Encoding: identity"}; // the real size; no compression
  if (token_sent_to(s, url)) h.push_back("Authorization: Bearer " + s.token);
  return h;
}

/// @brief a Location without a host ("/path"): huggingface_hub's HEAD follows only those (a renamed repository),
/// not a redirect to the file store
inline bool is_relative_location(const std::string& location) {
  std::size_t i = 0;
  while (i < location.size() && (std::isalnum(static_cast<unsigned char>(location[i])) || location[i] == '+' ||
                                 location[i] == '-' || location[i] == '.'))
    ++i;
  const std::string rest = i > 0 && i < location.size() && location[i] == ':' ? location.substr(i + 1) : location;
  return !location.empty() && rest.rfind("//", 0) != 0;
}

enum class redirects { all, relative_only };

/// @brief `req`, following redirects (all of them, or relative ones only) with the headers each hop's host may see
/// @throws minibert::error("hub", ...) after 10 redirects
inline http_response request(const session& s, http_request req, redirects policy, const body_sink& sink = nullptr) {
  for (int hop = 0; hop <= 10; ++hop) {
    req.headers = headers_for(s, req.url);
    http_response r = http_perform(req, sink);
    if (!r.is_redirect() || r.redirect_url.empty()) return r;
    if (policy == redirects::relative_only && !is_relative_location(r.header("location"))) return r;
    req.url = r.redirect_url;
  }
  throw error("hub", req.method + " " + req.url + ": more than 10 redirects");
}

inline std::string status_explanation(const session& s, const http_response& r, const subject& what) {
  const std::string code = r.header("x-error-code");
  if (r.status == 401 || r.status == 403) {
    if (token_sent_to(s, r.url))
      return describe(what) + " is private, gated or missing, and the token (HF_TOKEN) was refused or lacks access";
    return describe(what) + " is private, gated or does not exist: a token is needed (set HF_TOKEN to a token with "
                            "access; see https://huggingface.co/settings/tokens)";
  }
  if (r.status == 404) {
    if (code == "RevisionNotFound")
      return "the revision '" + what.revision + "' does not exist in '" + what.repo_id + "'";
    if (code == "EntryNotFound") return describe(what) + " does not exist";
    return "the repository '" + what.repo_id + "' or its revision '" + what.revision + "' does not exist";
  }
  const std::string detail = r.header("x-error-message").empty() ? r.short_body.substr(0, 200)
                                                                 : r.header("x-error-message");
  return "the hub refused the request for " + describe(what) + (detail.empty() ? "" : ": " + detail);
}

/// @throws hub_request_error naming the method, URL, status and what it means
[[noreturn]] inline void throw_request_error(const session& s, const std::string& method, const http_response& r,
                                             const subject& what) {
  if (!r.error.empty())
    throw hub_request_error(method + " " + r.url + " failed: " + r.error + " (check the network and HF_ENDPOINT; " +
                                "HF_HUB_OFFLINE=1 uses the local cache only)",
                            0, "");
  throw hub_request_error(method + " " + r.url + ": HTTP " + std::to_string(r.status) + ": " +
                              status_explanation(s, r, what),
                          r.status, r.header("x-error-code"));
}

// ------------------------------------------------------------------------------------------------ file metadata

/// @brief what the HEAD request says about one file
struct file_metadata {
  std::string commit, etag, url; // url: where the GET goes (the file store's Location, or the resolve URL)
  std::int64_t size = -1;
};

inline std::string resolve_url(const session& s, const subject& what) {
  return s.endpoint + "/" + what.repo_id + "/resolve/" + percent_encode(what.revision, false) + "/" +
         percent_encode(what.filename, true);
}

inline std::int64_t parse_size(const std::string& text) {
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(text);
}

/// @throws minibert::error("hub", "HEAD <url>: ...") when a header huggingface_hub needs is missing or unsafe
inline file_metadata metadata_from(const http_response& r) {
  const std::string where = "HEAD " + r.url;
  file_metadata m;
  m.commit = r.header("x-repo-commit");
  m.etag = normalize_etag(r.header("x-linked-etag").empty() ? r.header("etag") : r.header("x-linked-etag"));
  m.size = parse_size(r.header("x-linked-size").empty() ? r.header("content-length") : r.header("x-linked-size"));
  m.url = r.is_redirect() && !r.redirect_url.empty() ? r.redirect_url : r.url;
  if (m.commit.empty())
    throw error("hub", where + ": no X-Repo-Commit header: the server does not look like a Hugging Face hub (a "
                               "proxy or a wrong HF_ENDPOINT?)");
  check_component("commit", m.commit, where);
  if (m.etag.empty()) throw error("hub", where + ": no ETag header: the file cannot be cached reliably");
  check_component("ETag", m.etag, where);
  if (m.size < 0) throw error("hub", where + ": no valid X-Linked-Size or Content-Length header");
  return m;
}

inline file_metadata fetch_metadata(const session& s, const subject& what) {
  http_request req;
  req.method = "HEAD";
  req.url = resolve_url(s, what);
  req.connect_timeout_s = req.read_timeout_s = s.etag_timeout_s;
  const http_response r = request(s, req, redirects::relative_only);
  if (!r.error.empty() || !(r.ok() || r.is_redirect())) throw_request_error(s, "HEAD", r, what);
  return metadata_from(r);
}

// ------------------------------------------------------------------------------------------------ blob download

/// @brief blobs/<etag>.incomplete opened for appending; finish_as() moves the complete file into place
class incomplete_file {
public:
  explicit incomplete_file(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd_ < 0) fail("cannot open");
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail("cannot stat");
    size_ = st.st_size;
  }
  ~incomplete_file() {
    if (fd_ >= 0) ::close(fd_);
  }
  incomplete_file(const incomplete_file&) = delete;
  incomplete_file& operator=(const incomplete_file&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::int64_t size() const { return size_; }
  /// @returns "" or why the bytes could not be written
  std::string append(const char* p, std::size_t n) {
    while (n > 0) {
      const ::ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return "cannot write " + path_.string() + ": " + std::strerror(errno);
      p += w, n -= std::size_t(w), size_ += w;
    }
    return "";
  }
  void truncate() {
    if (::ftruncate(fd_, 0) != 0) fail("cannot truncate");
    size_ = 0;
  }
  /// @brief fsync, close and rename onto `blob` (atomic: readers see no blob or the whole one), then fsync the folder
  void finish_as(const std::filesystem::path& blob) {
    if (::fsync(fd_) != 0) fail("fsync failed on");
    ::close(fd_);
    fd_ = -1;
    if (::rename(path_.c_str(), blob.c_str()) != 0) fail("cannot rename into " + blob.string() + ":");
    if (const int dir = ::open(blob.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }

private:
  [[noreturn]] void fail(const std::string& what) const {
    throw error("hub", what + " " + path_.string() + ": " + std::strerror(errno));
  }
  std::filesystem::path path_;
  int fd_ = -1;
  std::int64_t size_ = 0;
};

/// @brief a download's progress: a bar on a terminal, a line at the start and end otherwise
class download_progress {
public:
  download_progress(std::FILE* log, const std::string& filename, std::int64_t total, std::int64_t resumed_from)
      : log_(log), name_(filename.size() > 40 ? "(...)" + filename.substr(filename.size() - 40) : filename),
        total_(total), start_(std::chrono::steady_clock::now()), first_(resumed_from) {
    if (!log_) return;
    bar_.emplace(name_, total, log_, progress_unit::bytes);
    bar_->start_at(resumed_from);
    if (!bar_->interactive() && (total >= 10'000'000 || resumed_from > 0)) // small files: the end line only
      std::fprintf(log_, "hub: downloading %s (%s)%s\n", filename.c_str(), human_bytes(double(total)).c_str(),
                   resumed_from > 0 ? (", resuming at " + human_bytes(double(resumed_from))).c_str() : "");
  }
  void update(std::int64_t done) {
    if (bar_) bar_->update(done);
  }
  void note(const std::string& line) {
    if (!log_) return;
    bar_->clear_line();
    std::fprintf(log_, "hub: %s\n", line.c_str());
  }
  void done() {
    if (!log_) return;
    bar_->update(total_);
    bar_->finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    if (!bar_->interactive())
      std::fprintf(log_, "hub: downloaded %s: %s in %.1f s (%s/s)\n", name_.c_str(),
                   human_bytes(double(total_)).c_str(), secs,
                   human_bytes(secs > 0 ? double(total_ - first_) / secs : 0.0).c_str());
  }

private:
  std::FILE* log_;
  std::string name_;
  std::int64_t total_;
  std::chrono::steady_clock::time_point start_;
  std::int64_t first_;
  std::optional<progress_bar> bar_;
};

/// @brief one GET's body into `f`: a 200 answer to a Range request restarts the file, a 206 must continue it
/// exactly, and no byte past the announced size is taken
struct body_writer {
  incomplete_file& f;
  const file_metadata& m;
  download_progress& progress;
  std::string refusal; // why the body was refused, when it was
  bool started = false;

  bool operator()(const http_response& head, const char* data, std::size_t n) {
    if (!started && !start(head)) return false;
    started = true;
    if (f.size() + std::int64_t(n) > m.size) {
      refusal = "the server sent more than the announced " + std::to_string(m.size) + " bytes";
      return false;
    }
    refusal = f.append(data, n);
    progress.update(f.size());
    return refusal.empty();
  }

  bool start(const http_response& head) {
    if (head.status == 200 && f.size() > 0) f.truncate(); // the Range was ignored: the whole file comes again
    if (head.status != 206) return true;
    const std::string range = head.header("content-range"); // "bytes START-END/TOTAL"
    const std::size_t dash = range.find('-');
    const std::string start = range.rfind("bytes ", 0) == 0 && dash != std::string::npos ? range.substr(6, dash - 6)
                                                                                       : "";
    if (parse_size(start) == f.size()) return true;
    refusal = "asked for the bytes from " + std::to_string(f.size()) + " on, the server answered Content-Range '" +
              range + "'";
    return false;
  }
};

/// @brief GET `m.url` into `f` until it holds `m.size` bytes, resuming with a Range request after each dropped
/// connection (up to max_retries times in a row without progress)
/// @throws minibert::error / hub_request_error naming the URL and status, the bytes received and the .incomplete
inline void fetch_into(const session& s, const subject& what, const file_metadata& m, incomplete_file& f,
                       download_progress& progress) {
  int retries_left = s.max_retries;
  std::int64_t furthest = f.size();
  while (f.size() < m.size) {
    http_request req;
    req.url = m.url;
    req.range_from = f.size();
    req.connect_timeout_s = req.read_timeout_s = s.download_timeout_s;
    body_writer writer{f, m, progress, {}, false};
    const http_response r = request(s, req, redirects::all, std::ref(writer));
    if (r.status == 0) throw_request_error(s, "GET", r, what); // no answer at all: not a dropped transfer
    if (!writer.refusal.empty()) {
      f.truncate();
      throw error("hub", "GET " + r.url + ": " + writer.refusal + "; the partial download was discarded");
    }
    if (r.error.empty() && !r.ok()) {
      if (r.status == 416) f.truncate(); // our partial file does not fit the server's: start over next time
      throw_request_error(s, "GET", r, what);
    }
    if (f.size() >= m.size) break;
    const std::string why = "GET " + r.url + ": " + (r.error.empty() ? "the answer ended early" : r.error) + "; " +
                            std::to_string(f.size()) + " of " + std::to_string(m.size) + " bytes";
    if (f.size() > furthest) {
      furthest = f.size();
      retries_left = s.max_retries;
    } else if (retries_left-- <= 0) {
      throw error("hub", why + " after " + std::to_string(s.max_retries) + " resumes without progress (the partial " +
                             "download stays in " + f.path().string() + " and the next attempt resumes it)");
    }
    progress.note(why + "; resuming");
    std::this_thread::sleep_for(s.retry_delay);
  }
}

/// @throws minibert::error when the file's sha256 is not the ETag (LFS files; the corrupt download is removed)
inline void check_sha256(const file_metadata& m, const subject& what, const std::filesystem::path& file) {
  if (!is_sha256_hex(m.etag)) return; // a git blob's ETag is its sha1 over a header: only LFS ETags are sha256s
  const std::string got = sha256_file(file);
  if (got == m.etag) return;
  std::error_code ec;
  std::filesystem::remove(file, ec);
  throw error("hub", "GET " + m.url + ": " + describe(what) + " has sha256 " + got + ", not the " + m.etag +
                         " the hub announced (its ETag): the corrupt download was removed; try again");
}

/// @brief downloads one blob into blobs/<etag> (the caller holds the blob's lock)
inline void download_blob(const session& s, const subject& what, const file_metadata& m, const repo_cache& rc) {
  incomplete_file f(rc.incomplete(m.etag));
  if (f.size() > m.size) f.truncate(); // longer than the file can be: not a prefix of it
  download_progress progress(s.log, what.filename, m.size, f.size());
  fetch_into(s, what, m, f, progress);
  check_sha256(m, what, f.path());
  f.finish_as(rc.blob(m.etag));
  progress.done();
}

// ------------------------------------------------------------------------------------------------ one file

inline std::optional<std::filesystem::path> cached_pointer(const repo_cache& rc, const subject& what) {
  const std::optional<std::string> commit = rc.cached_commit(what.revision);
  if (!commit) return std::nullopt;
  const std::filesystem::path p = rc.pointer(*commit, what.filename);
  std::error_code ec;
  return std::filesystem::exists(p, ec) ? std::optional(p) : std::nullopt;
}

inline void note(const session& s, const std::string& line) {
  if (s.log) std::fprintf(s.log, "hub: %s\n", line.c_str());
}

/// @brief huggingface_hub's _hf_hub_download_to_cache_dir
inline std::filesystem::path download_file(const session& s, const subject& what) {
  check_repo_filename(what.filename, "the requested file");
  const repo_cache rc{s.cache, what.repo_id};
  if (is_commit_hash(what.revision))
    if (auto p = cached_pointer(rc, what)) return *p;
  if (s.offline) {
    if (auto p = cached_pointer(rc, what)) return *p;
    throw error("hub", s.offline_reason + ", and " + describe(what) + " is not in the local Hugging Face cache (" +
                           rc.storage().string() + ")");
  }
  file_metadata m;
  try {
    m = fetch_metadata(s, what);
  } catch (const hub_request_error& e) {
    const auto p = e.cache_may_answer() ? cached_pointer(rc, what) : std::nullopt;
    if (!p) throw;
    note(s, std::string(e.what()) + "; using the cached " + p->string());
    return *p;
  }
  const std::filesystem::path blob = rc.blob(m.etag), pointer = rc.pointer(m.commit, what.filename);
  std::filesystem::create_directories(blob.parent_path());
  std::filesystem::create_directories(pointer.parent_path());
  rc.write_ref(what.revision, m.commit);
  std::error_code ec;
  if (std::filesystem::exists(pointer, ec)) return pointer;
  if (!std::filesystem::exists(blob, ec)) {
    file_lock lock(rc.lock(m.etag), s.log);
    if (!std::filesystem::exists(blob, ec)) download_blob(s, what, m, rc); // nobody finished it while we waited
  }
  make_relative_symlink(blob, pointer);
  return pointer;
}

// ------------------------------------------------------------------------------------------------ a snapshot

/// @brief what the revision API says: the commit and the repository's file names
struct repo_listing {
  std::string commit;
  std::vector<std::string> files;
};

/// @throws minibert::error("hub", "GET <url>: ...") when the answer lacks "sha" or "siblings", or a name is unsafe
inline repo_listing parse_listing(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("sha") || !j["sha"].is_string())
    throw error("hub", where + ": the hub's answer has no \"sha\" string (the commit)");
  if (!j.contains("siblings") || !j["siblings"].is_array())
    throw error("hub", where + ": the hub's answer has no \"siblings\" list (the files)");
  repo_listing l;
  l.commit = j["sha"].get<std::string>();
  check_component("commit", l.commit, where);
  for (const nlohmann::json& f : j["siblings"]) {
    if (!f.is_object() || !f.contains("rfilename") || !f["rfilename"].is_string())
      throw error("hub", where + ": a \"siblings\" entry has no \"rfilename\" string: " + f.dump().substr(0, 200));
    l.files.push_back(f["rfilename"].get<std::string>());
    check_repo_filename(l.files.back(), where);
  }
  return l;
}

inline repo_listing fetch_listing(const session& s, const subject& what) {
  http_request req;
  req.url = s.endpoint + "/api/models/" + what.repo_id + "/revision/" + percent_encode(what.revision, false);
  req.connect_timeout_s = req.read_timeout_s = s.etag_timeout_s;
  std::string body;
  constexpr std::size_t max_body = std::size_t(64) << 20;
  const http_response r = request(s, req, redirects::all, [&](const http_response&, const char* d, std::size_t n) {
    body.append(d, n);
    return body.size() <= max_body;
  });
  if (body.size() > max_body) throw error("hub", "GET " + r.url + ": the answer is larger than 64 MiB");
  if (!r.ok()) throw_request_error(s, "GET", r, what);
  const std::string where = "GET " + r.url;
  const nlohmann::json j =
      ::minibert::detail::parse_json_limited(body, "hub", where, "the hub's answer is not valid JSON");
  return parse_listing(j, where);
}

inline std::string list_names(const std::vector<std::string>& files) {
  std::string out;
  for (std::size_t i = 0; i < files.size() && i < 20; ++i) out += (i ? ", " : "") + files[i];
  return files.size() > 20 ? out + ", ..." : out;
}

/// @brief the BERT files a repository has: config and tokenizer files, model.safetensors or else pytorch_model.bin
/// @throws minibert::error when it has no config.json or neither weights file
inline std::vector<std::string> bert_files_of(const repo_listing& l, const subject& what) {
  const auto has = [&](const std::string& f) { return std::find(l.files.begin(), l.files.end(), f) != l.files.end(); };
  std::vector<std::string> picked;
  for (const std::string& f : bert_config_and_tokenizer_files())
    if (has(f)) picked.push_back(f);
  const std::string weights = has("model.safetensors") ? "model.safetensors" : "pytorch_model.bin";
  if (!has("config.json") || !has(weights))
    throw error("hub", describe(what) + " (commit " + l.commit + ") has no " +
                           (has("config.json") ? "model.safetensors or pytorch_model.bin" : "config.json") +
                           ", so it is not a BERT model minibert can load; its files: " + list_names(l.files) +
                           " (choose files with allow_patterns / --include)");
  picked.push_back(weights);
  return picked;
}

inline std::vector<std::string> select_files(const repo_listing& l, const subject& what,
                                             const std::vector<std::string>& patterns) {
  if (patterns.empty()) return bert_files_of(l, what);
  std::vector<std::string> picked;
  for (const std::string& f : l.files)
    if (matches_any(f, patterns)) picked.push_back(f);
  if (picked.empty())
    throw error("hub", "no file of " + describe(what) + " matches the patterns " + list_names(patterns) +
                           "; its files: " + list_names(l.files));
  return picked;
}

inline std::optional<std::filesystem::path> cached_snapshot(const repo_cache& rc, const std::string& revision) {
  const std::optional<std::string> commit = rc.cached_commit(revision);
  std::error_code ec;
  if (commit && std::filesystem::is_directory(rc.snapshot(*commit), ec)) return rc.snapshot(*commit);
  return std::nullopt;
}

/// @brief huggingface_hub's snapshot_download (into the cache)
inline std::filesystem::path download_snapshot(const session& s, const subject& what,
                                               const std::vector<std::string>& patterns) {
  const repo_cache rc{s.cache, what.repo_id};
  if (s.offline) {
    if (auto dir = cached_snapshot(rc, what.revision)) return *dir;
    throw error("hub", s.offline_reason + ", and " + describe(what) + " is not in the local Hugging Face cache (" +
                           rc.storage().string() + ")");
  }
  repo_listing listing;
  try {
    listing = fetch_listing(s, what);
  } catch (const hub_request_error& e) {
    const auto dir = e.cache_may_answer() ? cached_snapshot(rc, what.revision) : std::nullopt;
    if (!dir) throw;
    note(s, std::string(e.what()) + "; using the cached snapshot " + dir->string());
    return *dir;
  }
  const std::vector<std::string> files = select_files(listing, what, patterns);
  std::filesystem::create_directories(rc.snapshot(listing.commit));
  rc.write_ref(what.revision, listing.commit);
  for (const std::string& f : files) download_file(s, {what.repo_id, listing.commit, f});
  return rc.snapshot(listing.commit);
}

inline void check_request(const std::string& repo_id, const std::string& revision) {
  if (!is_hub_repo_id(repo_id))
    throw error("hub", "'" + repo_id + "' is not a hub repository id (\"name\" or \"org/name\")");
  check_revision(revision);
}

} // namespace detail
} // namespace hub

/// @brief one file of a hub model in the local cache, downloaded when missing (huggingface_hub's hf_hub_download)
/// @returns the path of <cache>/models--org--name/snapshots/<commit>/<filename> (a symlink into blobs/)
/// @throws minibert::error("hub", ...) naming the URL and status (401/403: a token is needed; 404: no such repository,
/// revision or file), a timeout, a truncated or corrupt download, an unsafe name, or offline without the file
inline std::filesystem::path hub_download(const std::string& repo_id, const std::string& filename,
                                          const hub_options& options = {}) {
  hub::detail::check_request(repo_id, options.revision);
  return hub::detail::download_file(hub::detail::make_session(options), {repo_id, options.revision, filename});
}

/// @brief a hub model's files in the local cache, downloading what is missing (huggingface_hub's snapshot_download):
/// those matching options.allow_patterns, or by default the ones a BERT model needs (config.json, the tokenizer
/// files, model.safetensors or else pytorch_model.bin)
/// @returns <cache>/models--org--name/snapshots/<commit>
/// @throws minibert::error("hub", ...) as hub_download, and for a malformed answer of the revision API
inline std::filesystem::path snapshot_download(const std::string& repo_id, const hub_options& options = {}) {
  hub::detail::check_request(repo_id, options.revision);
  return hub::detail::download_snapshot(hub::detail::make_session(options), {repo_id, options.revision, ""},
                                        options.allow_patterns);
}

namespace hub::detail {

inline std::filesystem::path download_model_for_resolve(const std::string& repo_id) {
  return snapshot_download(repo_id);
}

namespace {
// Every translation unit that includes the downloader installs it (the same function each time) for
// resolve_model_path, whose own definition therefore does not depend on MINIBERT_WITH_CURL.
[[maybe_unused]] const bool downloader_installed = (installed_model_downloader() = &download_model_for_resolve, true);
} // namespace

} // namespace hub::detail
} // namespace minibert
