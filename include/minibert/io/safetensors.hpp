// SPDX-License-Identifier: MIT
#pragma once
/* safetensors (huggingface/safetensors) reader and writer. Reader: memory-maps the file and validates the header
   against the file as strictly as the reference Rust crate (no holes, no overlaps, exact sizes). Writer: the same
   bytes the reference writes (tensors ordered by descending dtype alignment then name, compact JSON, header padded
   with spaces to a multiple of 8), replaced atomically. Format: 8-byte LE header length N, N bytes of JSON, data. */

#include <algorithm>   // sort, stable_sort
#include <cstddef>     // byte, size_t
#include <cstdint>     // uint64_t, int64_t
#include <cstring>     // memcpy, memchr
#include <filesystem>  // path
#include <map>         // map (metadata)
#include <ostream>     // ostream
#include <set>         // set (duplicate names in the writer)
#include <span>        // span
#include <string>      // string
#include <string_view> // string_view
#include <unordered_map> // name -> info
#include <utility>     // move, pair
#include <vector>      // vector

#include <nlohmann/json.hpp>

#include <minibert/detail/checked_math.hpp>
#include <minibert/detail/json_limits.hpp>
#include <minibert/dtype.hpp>
#include <minibert/error.hpp>
#include <minibert/io/atomic_file.hpp>
#include <minibert/io/mmap_file.hpp>
#include <minibert/io/tensor_reader.hpp>

namespace minibert {

/// @brief the reference implementation's header size limit (safetensors MAX_HEADER_SIZE)
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

/// @brief A validated, memory-mapped safetensors file. Tensor bytes point into the map (zero-copy).
class safetensors_file final : public tensor_reader {
public:
  /// @brief maps and validates `path`
  /// @throws minibert::error("safetensors", "<path>: [tensor '<name>': ]...") if the file is unreadable,
  ///   truncated, has an absurd header length (> file or > 100 MB), malformed or non-object JSON, a duplicate name,
  ///   a tensor entry with a missing/invalid dtype, shape or data_offsets, an unknown dtype, offsets out of range
  ///   or reversed, a byte size != numel * dtype size, overlapping tensors, or data bytes covered by no tensor
  static safetensors_file open(const std::filesystem::path& path);

  const std::vector<std::string>& names() const override { return names_; }
  bool contains(const std::string& name) const override { return infos_.count(name) != 0; }
  /// @throws minibert::error("safetensors", "<path>: tensor '<name>': not found")
  const tensor_info& info(const std::string& name) const override {
    auto it = infos_.find(name);
    if (it == infos_.end()) fail_tensor(name, "not found (the file has " + std::to_string(names_.size()) + " tensors)");
    return it->second;
  }
  const std::map<std::string, std::string>& metadata() const override { return metadata_; }
  const std::string& path() const override { return map_.path(); }
  const char* format() const override { return "safetensors"; }

protected:
  const char* op_name() const override { return "safetensors"; }

private:
  mmap_file map_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, tensor_info> infos_;
  std::map<std::string, std::string> metadata_;
};

/// @brief One tensor to write: dense row-major little-endian data of numel(shape) * dtype_size(dtype) bytes.
struct safetensors_entry {
  std::string name;
  minibert::dtype dtype = minibert::dtype::f32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
};

/// @brief Writes a safetensors file atomically (atomic_file.hpp), byte-identical to what the reference
/// implementation writes for the same tensors: data ordered by descending dtype alignment, then by name; the header
/// lists tensors in that order as compact JSON ("dtype", "shape", "data_offsets"), `__metadata__` first (keys
/// sorted; omitted when empty), padded with spaces to a multiple of 8 bytes.
/// @throws minibert::error("safetensors", "<path>: tensor '<name>': ...") for a duplicate or reserved name, a
///   negative dimension, a size overflow, null data or a name that is not valid UTF-8; atomic_write's errors on I/O
inline void save_safetensors(const std::filesystem::path& path, std::span<const safetensors_entry> entries,
                             const std::map<std::string, std::string>& metadata = {});

// ------------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

struct st_dtype_row {
  const char* name;
  minibert::dtype type;
  int rank; // position in the Rust crate's Dtype enum, which is in increasing alignment order
};
inline constexpr st_dtype_row st_dtypes[] = {
    {"BOOL", dtype::boolean, 0}, {"U8", dtype::u8, 1},    {"I8", dtype::i8, 2},   {"I16", dtype::i16, 5},
    {"F16", dtype::f16, 7},      {"BF16", dtype::bf16, 8}, {"I32", dtype::i32, 9}, {"F32", dtype::f32, 11},
    {"F64", dtype::f64, 12},     {"I64", dtype::i64, 13}};

inline bool st_parse_dtype(std::string_view s, minibert::dtype& out) {
  for (const auto& r : st_dtypes)
    if (s == r.name) {
      out = r.type;
      return true;
    }
  return false;
}
inline int st_dtype_rank(minibert::dtype t) {
  for (const auto& r : st_dtypes)
    if (r.type == t) return r.rank;
  return -1;
}

// a JSON value as a non-negative int64, or false
inline bool st_nonneg(const nlohmann::json& v, std::int64_t& out) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX)) return false;
    out = static_cast<std::int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    out = v.get<std::int64_t>();
    return out >= 0;
  }
  return false;
}

inline std::uint64_t read_le_u64(const std::byte* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v; // little-endian host (static_assert in tensor_reader.hpp)
}

} // namespace detail

inline safetensors_file safetensors_file::open(const std::filesystem::path& path) {
  safetensors_file f;
  f.map_ = mmap_file(path);
  const std::string& p = f.map_.path();
  auto fail = [&](const std::string& msg) -> void { throw error("safetensors", p + ": " + msg); };
  auto fail_t = [&](const std::string& name, const std::string& msg) -> void {
    throw error("safetensors", p + ": tensor '" + name + "': " + msg);
  };
  const std::size_t size = f.map_.size();
  if (size < 8)
    fail("truncated: " + std::to_string(size) + " bytes, but a safetensors file starts with an 8-byte header length");
  const std::uint64_t n = detail::read_le_u64(f.map_.data());
  if (n > safetensors_max_header)
    fail("header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupt, or not a safetensors file)");
  if (n > size - 8)
    fail("header length " + std::to_string(n) + " exceeds the file size (" + std::to_string(size) +
         " bytes): truncated, or not a safetensors file");
  const char* text = reinterpret_cast<const char*>(f.map_.data() + 8);
  if (n == 0 || text[0] != '{') fail("header is not a JSON object (it must start with '{')");
  // nlohmann stops at a NUL as if the input ended there; JSON (and the reference's serde_json) allows none
  if (std::memchr(text, 0, n) != nullptr) fail("header is not valid JSON: it contains a NUL byte (padding must be spaces)");
  const std::uint64_t data_size = size - 8 - n;

  // nlohmann keeps the last of duplicate keys silently; the format forbids duplicates. Nesting is capped while
  // parsing (a bad shape's message dumps it, recursively).
  const auto on_duplicate = [&](std::size_t depth, const std::string& k) {
    if (depth == 1) fail_t(k, "duplicate name in the header");
    fail("duplicate key '" + k + "' in the header");
  };
  const nlohmann::json header = detail::parse_json_limited(std::string_view(text, n), "safetensors", p,
                                                           "header is not valid JSON", on_duplicate);
  if (!header.is_object()) fail("header is not a JSON object");

  struct span_rec {
    std::int64_t begin, end;
    const std::string* name;
  };
  std::vector<span_rec> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not a JSON object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__: value of '" + m.key() + "' is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) fail_t(name, "header entry is not a JSON object");
    tensor_info ti;
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail_t(name, "missing or non-string 'dtype'");
    if (!detail::st_parse_dtype(dt->get_ref<const std::string&>(), ti.dtype))
      fail_t(name, "unknown or unsupported dtype '" + dt->get<std::string>() +
                       "' (minibert reads F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail_t(name, "missing or non-array 'shape'");
    std::int64_t numel = 1;
    for (const auto& d : *sh) {
      std::int64_t dim = 0;
      if (!detail::st_nonneg(d, dim)) fail_t(name, "shape " + sh->dump() + " has an entry that is not a non-negative integer");
      if (!detail::mul_checked(numel, dim, numel)) fail_t(name, "shape " + sh->dump() + " overflows");
      ti.shape.push_back(dim);
    }
    auto off = v.find("data_offsets");
    std::int64_t b = 0, e = 0;
    if (off == v.end() || !off->is_array() || off->size() != 2 || !detail::st_nonneg((*off)[0], b) ||
        !detail::st_nonneg((*off)[1], e))
      fail_t(name, "missing or invalid 'data_offsets' (need [begin, end], non-negative integers)");
    const std::string offs = "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "]";
    if (e < b) fail_t(name, offs + ": end is before begin");
    if (static_cast<std::uint64_t>(e) > data_size)
      fail_t(name, offs + " out of range: the data region has " + std::to_string(data_size) +
                       " bytes (the file is truncated, or its header is corrupt)");
    std::int64_t nbytes = 0;
    if (!detail::mul_checked(numel, static_cast<std::int64_t>(dtype_size(ti.dtype)), nbytes))
      fail_t(name, "shape " + format_shape(ti.shape) + " overflows");
    if (nbytes != e - b)
      fail_t(name, "shape " + format_shape(ti.shape) + " of " + dtype_name(ti.dtype) + " needs " +
                       std::to_string(nbytes) + " bytes, but " + offs + " span " + std::to_string(e - b));
    ti.strides.assign(ti.shape.size(), 1);
    for (std::size_t i = ti.shape.size(); i-- > 1;) ti.strides[i - 1] = ti.strides[i] * ti.shape[i];
    ti.bytes = f.map_.bytes().subspan(8 + n + static_cast<std::size_t>(b), static_cast<std::size_t>(e - b));
    auto [pos, inserted] = f.infos_.emplace(name, std::move(ti));
    spans.push_back({b, e, &pos->first});
  }

  // Mirror the reference's Metadata::validate: sorted by offsets, each tensor starts where the previous ended,
  // and the last one ends at the end of the file. So no overlaps and no holes.
  std::sort(spans.begin(), spans.end(), [](const span_rec& a, const span_rec& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::int64_t pos = 0;
  const std::string* prev = nullptr;
  for (const auto& s : spans) {
    const std::string offs = "data_offsets [" + std::to_string(s.begin) + ", " + std::to_string(s.end) + "]";
    if (s.begin < pos) fail_t(*s.name, offs + " overlap tensor '" + *prev + "' (which ends at " + std::to_string(pos) + ")");
    if (s.begin > pos)
      fail_t(*s.name, offs + " leave a hole: data bytes [" + std::to_string(pos) + ", " + std::to_string(s.begin) +
                          ") belong to no tensor (the format forbids holes)");
    pos = s.end;
    prev = s.name;
    f.names_.push_back(*s.name);
  }
  if (static_cast<std::uint64_t>(pos) != data_size) {
    const std::string tail = "data bytes [" + std::to_string(pos) + ", " + std::to_string(data_size) +
                             ") after the last tensor belong to no tensor (the format forbids holes)";
    if (prev != nullptr) fail_t(*prev, tail);
    fail(tail);
  }
  return f;
}

inline void save_safetensors(const std::filesystem::path& path, std::span<const safetensors_entry> entries,
                             const std::map<std::string, std::string>& metadata) {
  const std::string p = path.string();
  auto fail_t = [&](const std::string& name, const std::string& msg) -> void {
    throw error("safetensors", p + ": tensor '" + name + "': " + msg);
  };
  auto quoted = [&](const std::string& s, const std::string& tensor) {
    try {
      return nlohmann::json(s).dump(); // same escapes as serde_json: \" \\ \b \f \n \r \t, other controls \u00xx
    } catch (const nlohmann::json::exception&) {
      fail_t(tensor, "name or metadata is not valid UTF-8");
    }
    return std::string();
  };
  std::vector<const safetensors_entry*> order;
  std::set<std::string_view> seen;
  std::vector<std::int64_t> sizes;
  for (const auto& e : entries) {
    if (e.name == "__metadata__") fail_t(e.name, "the name is reserved for the metadata");
    if (!seen.insert(e.name).second) fail_t(e.name, "duplicate name");
    order.push_back(&e);
  }
  // Descending dtype alignment, then name (bytewise), exactly as the reference's prepare() sorts.
  std::stable_sort(order.begin(), order.end(), [](const safetensors_entry* a, const safetensors_entry* b) {
    const int ra = detail::st_dtype_rank(a->dtype), rb = detail::st_dtype_rank(b->dtype);
    return ra != rb ? ra > rb : a->name < b->name;
  });
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) h += ',';
      h += quoted(k, "__metadata__") + ":" + quoted(v, "__metadata__");
      first = false;
    }
    h += "}";
  }
  std::int64_t offset = 0;
  for (const safetensors_entry* e : order) {
    std::int64_t numel = 1;
    std::string shape = "[";
    for (std::size_t i = 0; i < e->shape.size(); ++i) {
      if (e->shape[i] < 0) fail_t(e->name, "negative dimension in shape " + format_shape(e->shape));
      if (!detail::mul_checked(numel, e->shape[i], numel)) fail_t(e->name, "shape " + format_shape(e->shape) + " overflows");
      if (i) shape += ',';
      shape += std::to_string(e->shape[i]);
    }
    shape += "]";
    std::int64_t nbytes = 0;
    if (!detail::mul_checked(numel, static_cast<std::int64_t>(dtype_size(e->dtype)), nbytes) ||
        __builtin_add_overflow(offset, nbytes, &nbytes))
      fail_t(e->name, "shape " + format_shape(e->shape) + " overflows");
    if (e->data == nullptr && nbytes != offset) fail_t(e->name, "data is null");
    if (h.size() > 1) h += ",";
    h += quoted(e->name, e->name) + ":{\"dtype\":\"" + dtype_name(e->dtype) + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(nbytes) + "]}";
    sizes.push_back(nbytes - offset);
    offset = nbytes;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' '); // the reference pads with spaces so the data starts 8-byte aligned
  atomic_write(path, [&](std::ostream& os) {
    const std::uint64_t n = h.size();
    char len[8];
    std::memcpy(len, &n, 8);
    os.write(len, 8);
    os.write(h.data(), static_cast<std::streamsize>(h.size()));
    for (std::size_t i = 0; i < order.size(); ++i)
      os.write(static_cast<const char*>(order[i]->data), static_cast<std::streamsize>(sizes[i]));
  });
}

} // namespace minibert
