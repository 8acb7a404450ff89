// SPDX-License-Identifier: MIT
#pragma once
/* minibert::checkpoint: opens a Hugging Face weights file whatever its format, chosen by content (safetensors or
   torch.save zip), or a model directory (model.safetensors preferred over pytorch_model.bin, as transformers
   does), behind the one tensor_reader interface. */

#include <cstdint>    // int64_t
#include <filesystem> // path, exists
#include <fstream>    // ifstream (sniffing the first bytes)
#include <initializer_list> // initializer_list shape overload
#include <map>        // map
#include <memory>     // unique_ptr
#include <span>       // span
#include <string>     // string
#include <utility>    // move
#include <vector>     // vector

#include <minibert/error.hpp>
#include <minibert/io/safetensors.hpp>
#include <minibert/io/tensor_reader.hpp>
#include <minibert/io/torch_checkpoint.hpp>

namespace minibert {

/// @brief An open checkpoint of either format. Move-only; forwards to the format's reader.
class checkpoint {
public:
  /// @brief opens `path`, choosing the reader by content: an 8-byte length followed by '{' -> safetensors,
  /// "PK\3\4" -> torch zip, a legacy torch pickle (0x80 .. 0x8a) -> torch (which explains how to re-save it)
  /// @throws minibert::error("checkpoint", "<path>: ...") if the file is missing or of no known format, and the
  ///   format reader's errors for a corrupt file
  static checkpoint open(const std::filesystem::path& path);
  /// @brief opens `dir`/model.safetensors if present, else `dir`/pytorch_model.bin
  /// @throws minibert::error("checkpoint", "<dir>: ...") naming both files if neither exists
  static checkpoint open_dir(const std::filesystem::path& dir);

  const std::vector<std::string>& names() const { return r_->names(); }
  bool contains(const std::string& name) const { return r_->contains(name); }
  /// @throws minibert::error if there is no such tensor
  const tensor_info& info(const std::string& name) const { return r_->info(name); }
  const std::map<std::string, std::string>& metadata() const { return r_->metadata(); }
  const std::string& path() const { return r_->path(); }
  /// @brief "safetensors" or "torch"
  const char* format() const { return r_->format(); }
  /// @brief see tensor_reader::read
  /// @throws minibert::error naming the file and tensor on a missing tensor, shape mismatch or dtype mismatch
  template <class T> void read(const std::string& name, T* dst, std::span<const std::int64_t> expected_shape) const {
    r_->read<T>(name, dst, expected_shape);
  }
  template <class T>
  void read(const std::string& name, T* dst, std::initializer_list<std::int64_t> expected_shape) const {
    r_->read<T>(name, dst, expected_shape);
  }
  template <class T> std::vector<T> read_vector(const std::string& name) const { return r_->read_vector<T>(name); }
  /// @brief the format reader itself
  const tensor_reader& reader() const { return *r_; }

private:
  explicit checkpoint(std::unique_ptr<tensor_reader> r) : r_(std::move(r)) {}
  std::unique_ptr<tensor_reader> r_;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline checkpoint checkpoint::open(const std::filesystem::path& path) {
  const std::string p = path.string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(path, ec);
    throw error("checkpoint", p + (exists ? ": cannot be opened for reading" : ": no such file"));
  }
  unsigned char head[9] = {};
  in.read(reinterpret_cast<char*>(head), sizeof(head));
  const auto got = in.gcount();
  // safetensors first: its first byte is the low byte of the header length, which may well be 0x80
  if (got == 9 && head[8] == '{')
    return checkpoint(std::make_unique<safetensors_file>(safetensors_file::open(path)));
  if (got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4)
    return checkpoint(std::make_unique<torch_checkpoint>(torch_checkpoint::open(path)));
  if (got >= 3 && head[0] == 0x80 && head[2] == 0x8a) // legacy torch pickle (PROTO, LONG1 magic): explained there
    return checkpoint(std::make_unique<torch_checkpoint>(torch_checkpoint::open(path)));
  throw error("checkpoint", p + ": neither a safetensors file nor a torch.save zip archive (" + std::to_string(got) +
                                " bytes read from its start)");
}

inline checkpoint checkpoint::open_dir(const std::filesystem::path& dir) {
  for (const char* name : {"model.safetensors", "pytorch_model.bin"}) {
    const std::filesystem::path f = dir / name;
    std::error_code ec;
    if (std::filesystem::is_regular_file(f, ec)) return open(f);
  }
  throw error("checkpoint", dir.string() + ": no weights found: looked for model.safetensors and pytorch_model.bin" +
                                " (sharded checkpoints with an *.index.json are not supported)");
}

} // namespace minibert
