// SPDX-License-Identifier: MIT
#pragma once
/* minibert::torch_checkpoint: reads a pytorch_model.bin written by torch.save (PyTorch >= 1.6 zip format):
   a ZIP archive of stored entries <top>/data.pkl (a pickled OrderedDict name -> tensor) and <top>/data/<key>
   (raw little-endian storages). The pickle goes through a whitelist-only machine (pickle.hpp), never Python.
   Tensors keep their storage offset and strides (views, shared storages); read<T>() gathers them. */

#include <cstddef>       // byte, size_t
#include <cstdint>       // int64_t
#include <filesystem>    // path
#include <map>           // map (empty metadata)
#include <set>           // set (verified storages)
#include <string>        // string
#include <unordered_map> // name -> info
#include <utility>       // move
#include <vector>        // vector

#include <minibert/detail/checked_math.hpp>
#include <minibert/dtype.hpp>
#include <minibert/error.hpp>
#include <minibert/io/mmap_file.hpp>
#include <minibert/io/pickle.hpp>
#include <minibert/io/tensor_reader.hpp>
#include <minibert/io/zip_archive.hpp>

namespace minibert {

/// @brief A validated, memory-mapped torch.save checkpoint (state dict). Tensor bytes point into the map.
class torch_checkpoint final : public tensor_reader {
public:
  /// @brief maps `path`, indexes the zip, unpickles data.pkl and checks every tensor against its storage; CRC-32 of
  /// data.pkl and of every storage record is verified
  /// @throws minibert::error("torch_checkpoint", "<path>: ...") for a legacy (pre-1.6) or non-zip file, a truncated
  ///   or corrupt zip, a compressed or encrypted entry, a forbidden global or unsupported opcode in data.pkl, a
  ///   result that is not a dict of name -> tensor, a missing storage record, a storage or tensor whose byte size
  ///   overflows 64 bits (named by tensor and storage key), or a tensor reaching past its storage
  static torch_checkpoint open(const std::filesystem::path& path);

  const std::vector<std::string>& names() const override { return names_; }
  bool contains(const std::string& name) const override { return infos_.count(name) != 0; }
  /// @throws minibert::error("torch_checkpoint", "<path>: tensor '<name>': not found")
  const tensor_info& info(const std::string& name) const override {
    auto it = infos_.find(name);
    if (it == infos_.end()) fail_tensor(name, "not found (the file has " + std::to_string(names_.size()) + " tensors)");
    return it->second;
  }
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::string& path() const override { return map_.path(); }
  const char* format() const override { return "torch"; }
  /// @brief the archive's top folder (torch names it after the file it saved to, e.g. "archive")
  const std::string& archive_name() const { return top_; }

protected:
  const char* op_name() const override { return "torch_checkpoint"; }

private:
  mmap_file map_;
  std::string top_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, tensor_info> infos_;
  std::map<std::string, std::string> metadata_;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline torch_checkpoint torch_checkpoint::open(const std::filesystem::path& path) {
  torch_checkpoint ck;
  ck.map_ = mmap_file(path);
  const std::string& p = ck.map_.path();
  const char* op = "torch_checkpoint";
  auto fail = [&](const std::string& msg) -> void { throw error(op, p + ": " + msg); };
  auto fail_t = [&](const std::string& name, const std::string& msg) -> void {
    throw error(op, p + ": tensor '" + name + "': " + msg);
  };
  const auto bytes = ck.map_.bytes();
  // legacy files start with the pickled magic number: PROTO 2, LONG1 0x1950a86a20f9469cfc6c
  if (bytes.size() >= 3 && bytes[0] == std::byte{0x80} && bytes[2] == std::byte{0x8a})
    fail("legacy torch.save format (a bare pickle, PyTorch < 1.6 or _use_new_zipfile_serialization=False) is not "
         "supported; re-save it with torch >= 1.6: torch.save(torch.load(f), f)");
  if (bytes.size() < 4 || bytes[0] != std::byte{'P'} || bytes[1] != std::byte{'K'})
    fail("not a torch.save zip archive (PyTorch >= 1.6 format)");
  const detail::zip_archive zip(bytes, p, op);

  // <top>/data.pkl, where <top> is whatever folder name torch chose (the saved file's stem, or "archive")
  const detail::zip_entry* pkl = nullptr;
  for (const auto& e : zip.entries()) {
    const auto slash = e.name.find('/');
    if (slash != std::string::npos && e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
      if (pkl != nullptr) fail("two data.pkl entries ('" + pkl->name + "', '" + e.name + "')");
      pkl = &e;
    }
  }
  if (pkl == nullptr) fail("no '<folder>/data.pkl' entry: not a torch.save archive");
  ck.top_ = pkl->name.substr(0, pkl->name.find('/'));
  zip.verify_crc(*pkl);
  // torch >= 2.1 records the writer's byte order; older archives are little-endian by construction
  if (const detail::zip_entry* bo = zip.find(ck.top_ + "/byteorder")) {
    const auto b = zip.data(*bo);
    const std::string order(reinterpret_cast<const char*>(b.data()), b.size());
    if (order != "little") fail("stored in '" + order + "' byte order; minibert reads little-endian checkpoints only");
  }

  detail::torch_unpickler vm(zip.data(*pkl), p + ": " + pkl->name, op);
  const std::uint32_t root = vm.run();
  if (vm.node(root).kind != detail::pk::dict)
    fail("data.pkl does not hold a dict (minibert reads state dicts: name -> tensor)");
  const auto& kv = vm.node(root).items;
  std::set<std::string> verified;
  for (std::size_t k = 0; k < kv.size(); k += 2) {
    const detail::pnode& key = vm.node(kv[k]);
    if (key.kind != detail::pk::string) fail("data.pkl: state dict key #" + std::to_string(k / 2) + " is not a string");
    const std::string& name = key.s;
    const detail::pnode& t = vm.node(kv[k + 1]);
    if (t.kind != detail::pk::tensor)
      fail_t(name, "value is not a tensor (minibert reads plain state dicts: name -> tensor)");
    if (ck.infos_.count(name)) fail_t(name, "duplicate name in the state dict");
    const detail::pnode& st = vm.node(t.items[0]);
    const std::string rec_name = ck.top_ + "/data/" + st.s;
    const detail::zip_entry* rec = zip.find(rec_name);
    if (rec == nullptr) fail_t(name, "storage record '" + rec_name + "' is missing from the archive");
    const auto data = zip.data(*rec);
    const auto es = static_cast<std::int64_t>(dtype_size(st.type));
    // every size below is overflow-checked: a hostile count (2^62 elements of 4 bytes wraps to 0) must not pass
    std::int64_t st_bytes = 0;
    if (st.i < 0 || !detail::mul_checked(st.i, es, st_bytes))
      fail_t(name, "storage '" + rec_name + "': " + std::to_string(st.i) + " elements of " + dtype_name(st.type) +
                       " overflow a 64-bit byte count");
    if (static_cast<std::uint64_t>(st_bytes) != data.size())
      fail_t(name, "storage '" + rec_name + "' holds " + std::to_string(data.size()) + " bytes, but the pickle says " +
                       std::to_string(st.i) + " elements of " + dtype_name(st.type));
    if (verified.insert(rec_name).second) zip.verify_crc(*rec);

    tensor_info ti;
    ti.dtype = st.type;
    ti.shape = t.size;
    ti.strides = t.stride;
    if (ti.shape.size() != ti.strides.size())
      fail_t(name, "size " + format_shape(ti.shape) + " and stride " + format_shape(ti.strides) + " differ in rank");
    // Elements reached: offset + sum((size_i - 1) * stride_i), which must stay inside the storage.
    std::int64_t numel = 1, last = t.i;
    bool bad = t.i < 0;
    for (std::size_t d = 0; d < ti.shape.size() && !bad; ++d) {
      const std::int64_t s = ti.shape[d], str = ti.strides[d];
      std::int64_t reach = 0;
      bad = s < 0 || str < 0 || !detail::mul_checked(numel, s, numel) ||
            (s > 0 && (!detail::mul_checked(s - 1, str, reach) || !detail::add_checked(last, reach, last)));
    }
    if (bad) fail_t(name, "invalid size " + format_shape(ti.shape) + " / stride " + format_shape(ti.strides) +
                              " / offset " + std::to_string(t.i));
    if (numel > 0 && last >= st.i)
      fail_t(name, "size " + format_shape(ti.shape) + ", stride " + format_shape(ti.strides) + " at offset " +
                       std::to_string(t.i) + " reaches element " + std::to_string(last) + " of a storage of " +
                       std::to_string(st.i));
    if (numel > 0) {
      // last < st.i and st.i * es fits (checked above), so these cannot overflow; checked anyway, never assumed
      std::int64_t first_byte = 0, span_bytes = 0, end_byte = 0;
      if (!detail::mul_checked(t.i, es, first_byte) || !detail::mul_checked(last - t.i + 1, es, span_bytes) ||
          !detail::add_checked(first_byte, span_bytes, end_byte) || static_cast<std::uint64_t>(end_byte) > data.size())
        fail_t(name, "offset " + std::to_string(t.i) + " and size " + format_shape(ti.shape) + " reach past storage '" +
                         rec_name + "' (" + std::to_string(data.size()) + " bytes)");
      ti.bytes = data.subspan(static_cast<std::size_t>(first_byte), static_cast<std::size_t>(span_bytes));
    }
    ck.infos_.emplace(name, std::move(ti));
    ck.names_.push_back(name);
  }
  return ck;
}

} // namespace minibert
