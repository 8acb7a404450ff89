// SPDX-License-Identifier: MIT
#pragma once
/* Finding a model: a local directory as given, or a hub id ("bert-base-uncased", "org/name") looked up in the
   local Hugging Face cache (huggingface_hub's layout: <cache>/models--org--name/refs/main names the snapshot in
   <cache>/models--org--name/snapshots/<revision>/), and downloaded into it when it is not there: in programs built
   with the downloader and unless HF_HUB_OFFLINE forbids the network. The downloader (hub/download.hpp, libcurl) is
   included here when MINIBERT_WITH_CURL is defined (CMake's minibert::hub target defines it and links libcurl); any
   translation unit that includes it installs it for resolve_model_path, so resolve_model_path itself is the same
   function in every translation unit, with or without the macro. Without the downloader nothing here touches the
   network. */

#include <algorithm>  // sort
#include <filesystem> // path, exists, directory_iterator
#include <fstream>    // ifstream
#include <optional>   // optional
#include <string>     // string
#include <vector>     // vector

#include <minibert/error.hpp>
#include <minibert/hub/cache.hpp> // hf_hub_cache, hf_hub_offline, is_hub_repo_id, installed_model_downloader
#if defined(MINIBERT_WITH_CURL)
#include <minibert/hub/download.hpp> // snapshot_download, hub_download; installs the downloader
#endif

namespace minibert {

namespace hub::detail {

/// @brief the snapshot refs/main names, else the newest one; nullopt when the cache has none for `root`
inline std::optional<std::filesystem::path> cached_main_snapshot(const std::filesystem::path& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root / "snapshots", ec)) return std::nullopt;
  std::string rev;
  if (std::ifstream ref(root / "refs" / "main"); ref) std::getline(ref, rev);
  if (!rev.empty() && fs::is_directory(root / "snapshots" / rev, ec)) return root / "snapshots" / rev;
  std::vector<fs::path> snaps; // no refs/main: the only (or newest) snapshot
  for (const auto& e : fs::directory_iterator(root / "snapshots", ec))
    if (e.is_directory()) snaps.push_back(e.path());
  if (snaps.empty()) return std::nullopt;
  std::sort(snaps.begin(), snaps.end(), [](const fs::path& a, const fs::path& b) {
    return fs::last_write_time(a) < fs::last_write_time(b);
  });
  return snaps.back();
}

/// @brief whether a snapshot holds the weights (model.safetensors or pytorch_model.bin, links not dangling): one
/// without them is a download that was interrupted, or limited to other files
inline bool holds_model_weights(const std::filesystem::path& snapshot) {
  std::error_code ec;
  return std::filesystem::exists(snapshot / "model.safetensors", ec) ||
         std::filesystem::exists(snapshot / "pytorch_model.bin", ec);
}

// what resolve_model_path found of a hub id in the cache, for its messages
inline std::string not_cached(const std::string& id, const std::filesystem::path& root,
                              const std::optional<std::filesystem::path>& snapshot) {
  if (snapshot) return "'" + id + "' is in the local Hugging Face cache (" + snapshot->string() + ") without its weights";
  return "'" + id + "' is neither a model directory nor a model in the local Hugging Face cache (" + root.string() + ")";
}

} // namespace hub::detail

/// @brief `name_or_path` itself when it is a directory, else the cached snapshot of that hub id, else (with the
/// downloader built in and HF_HUB_OFFLINE unset) that hub id's BERT files downloaded into the cache; a cached
/// snapshot without weights (an interrupted download) is completed by the downloader when there is one
/// @throws minibert::error naming every place looked in (and why a download failed) when neither works
inline std::filesystem::path resolve_model_path(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(name_or_path, ec)) return name_or_path;
  if (!is_hub_repo_id(name_or_path))
    throw error("hub", "'" + name_or_path + "' is not a model directory (" +
                           (fs::exists(name_or_path, ec) ? "it is a file" : "no such directory") +
                           ") and not a hub id (\"name\" or \"org/name\")");
  const fs::path root = hf_hub_cache() / hub::repo_folder_name(name_or_path);
  const std::optional<fs::path> cached = hub::detail::cached_main_snapshot(root);
  const hub::model_downloader download = hub::installed_model_downloader();
  if (cached && (hub::detail::holds_model_weights(*cached) || !download || hf_hub_offline())) return *cached;
  const std::string not_found = hub::detail::not_cached(name_or_path, root, cached);
  if (!download) throw error("hub", not_found + "; download it there or pass the directory that holds config.json");
  if (hf_hub_offline())
    throw error("hub", not_found + ", and HF_HUB_OFFLINE forbids downloading it; unset HF_HUB_OFFLINE or pass the "
                                   "directory that holds config.json");
  try {
    return download(name_or_path); // resumes what an interrupted download left
  } catch (const error& e) {
    const std::string why = e.what(); // "[minibert.hub] ..." without its prefix
    throw error("hub", not_found + ", and downloading it failed: " + why.substr(why.find("] ") + 2));
  }
}

} // namespace minibert
