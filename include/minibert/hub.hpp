// SPDX-License-Identifier: MIT
#pragma once
/* Finding a model: a local directory as given, or a hub id ("bert-base-uncased", "org/name") looked up in the
   local Hugging Face cache (huggingface_hub's layout: <cache>/models--org--name/refs/main names the snapshot in
   <cache>/models--org--name/snapshots/<revision>/). No network access, ever. */

#include <algorithm>  // sort
#include <cctype>     // isalnum
#include <cstdlib>    // getenv
#include <filesystem> // path, exists, directory_iterator
#include <fstream>    // ifstream
#include <string>     // string
#include <vector>     // vector

#include <minibert/error.hpp>

namespace minibert {

/// @brief the hub cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
/// ~/.cache/huggingface/hub (huggingface_hub's rules)
inline std::filesystem::path hf_hub_cache() {
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) return c;
  if (const char* h = std::getenv("HF_HOME"); h && *h) return std::filesystem::path(h) / "hub";
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::filesystem::path(x) / "huggingface" / "hub";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : ".") / ".cache" / "huggingface" / "hub";
}

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

/// @brief `name_or_path` itself when it is a directory, else the cached snapshot of that hub id
/// @throws minibert::error naming every place looked in when neither exists
inline std::filesystem::path resolve_model_path(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(name_or_path, ec)) return name_or_path;
  if (!is_hub_repo_id(name_or_path))
    throw error("hub", "'" + name_or_path + "' is not a model directory (" +
                           (fs::exists(name_or_path, ec) ? "it is a file" : "no such directory") +
                           ") and not a hub id (\"name\" or \"org/name\")");
  std::string repo = "models--";
  for (char c : name_or_path) repo += c == '/' ? std::string("--") : std::string(1, c);
  const fs::path root = hf_hub_cache() / repo;
  if (fs::is_directory(root / "snapshots", ec)) {
    std::string rev;
    if (std::ifstream ref(root / "refs" / "main"); ref) std::getline(ref, rev);
    if (!rev.empty() && fs::is_directory(root / "snapshots" / rev, ec)) return root / "snapshots" / rev;
    std::vector<fs::path> snaps; // no refs/main: the only (or newest) snapshot
    for (const auto& e : fs::directory_iterator(root / "snapshots", ec))
      if (e.is_directory()) snaps.push_back(e.path());
    if (!snaps.empty()) {
      std::sort(snaps.begin(), snaps.end(), [](const fs::path& a, const fs::path& b) {
        return fs::last_write_time(a) < fs::last_write_time(b);
      });
      return snaps.back();
    }
  }
  throw error("hub", "'" + name_or_path + "' is neither a model directory nor a model in the local Hugging Face cache (" +
                         root.string() + "); download it there or pass the directory that holds config.json");
}

} // namespace minibert
