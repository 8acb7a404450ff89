// SPDX-License-Identifier: MIT
#pragma once
/* minibert::detail::zip_archive: a read-only index of a ZIP archive held in memory (the torch.save container).
   Parses the end-of-central-directory record (ZIP64 included: torch writes ZIP64 records even for small files)
   and the central directory, and hands out zero-copy views of STORED entries. Compressed, encrypted and
   multi-disk archives are refused. CRC-32 verification is available per entry. Spec: PKWARE APPNOTE.TXT 6.3. */

#include <array>         // array (CRC tables)
#include <cstddef>       // byte, size_t
#include <cstdint>       // uint16_t, uint32_t, uint64_t
#include <cstring>       // memcpy
#include <span>          // span
#include <string>        // string
#include <unordered_map> // name -> entry
#include <utility>       // move
#include <vector>        // vector

#include <minibert/error.hpp>

namespace minibert {
namespace detail {

/// One central-directory entry, with its data located through the local header.
struct zip_entry {
  std::string name;
  std::uint16_t method = 0; // 0 = stored
  std::uint16_t flags = 0;
  std::uint32_t crc32 = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t size = 0;
  std::uint64_t local_offset = 0;
};

class zip_archive {
public:
  /// Indexes `bytes` (the whole file); errors are minibert::error(op, "<path>: ...").
  zip_archive(std::span<const std::byte> bytes, std::string path, std::string op);

  const std::vector<zip_entry>& entries() const { return entries_; }
  const zip_entry* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }
  /// The bytes of a stored entry (zero-copy). Refuses compressed or encrypted entries.
  std::span<const std::byte> data(const zip_entry& e) const;
  /// Throws unless the CRC-32 of the entry's data matches the central directory.
  void verify_crc(const zip_entry& e) const;

private:
  [[noreturn]] void fail(const std::string& msg) const { throw error(op_, path_ + ": " + msg); }
  std::uint16_t u16(std::uint64_t at) const { return static_cast<std::uint16_t>(get(at, 2)); }
  std::uint32_t u32(std::uint64_t at) const { return static_cast<std::uint32_t>(get(at, 4)); }
  std::uint64_t u64(std::uint64_t at) const { return get(at, 8); }
  std::uint64_t get(std::uint64_t at, unsigned n) const {
    if (at > bytes_.size() || n > bytes_.size() - at) fail("truncated or corrupt zip: read past the end at offset " + std::to_string(at));
    std::uint64_t v = 0;
    std::memcpy(&v, bytes_.data() + at, n); // little-endian host
    return v;
  }

  std::span<const std::byte> bytes_;
  std::string path_, op_;
  std::vector<zip_entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

// CRC-32 (IEEE, reflected 0xEDB88320), slicing-by-8: ~8x the speed of the byte-table loop, which matters for
// a 440 MB checkpoint.
inline std::uint32_t crc32(std::span<const std::byte> data) {
  static const auto tables = [] {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xffu];
    return t;
  }();
  std::uint32_t c = 0xffffffffu;
  const std::byte* p = data.data();
  std::size_t n = data.size();
  while (n >= 8) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^ tables[4][lo >> 24] ^
        tables[3][hi & 0xff] ^ tables[2][(hi >> 8) & 0xff] ^ tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = tables[0][(c ^ static_cast<std::uint32_t>(*p++)) & 0xffu] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

inline zip_archive::zip_archive(std::span<const std::byte> bytes, std::string path, std::string op)
    : bytes_(bytes), path_(std::move(path)), op_(std::move(op)) {
  constexpr std::uint32_t eocd_sig = 0x06054b50, z64_loc_sig = 0x07064b50, z64_eocd_sig = 0x06064b50,
                          cd_sig = 0x02014b50;
  const std::size_t size = bytes_.size();
  if (size < 22) fail("truncated or not a zip archive: " + std::to_string(size) + " bytes");
  // The EOCD record is the last 22 bytes plus a comment of at most 65535 bytes: scan backwards for it.
  std::uint64_t eocd = UINT64_MAX;
  const std::uint64_t lowest = size >= 22 + 65535 ? size - 22 - 65535 : 0;
  for (std::uint64_t at = size - 22 + 1; at-- > lowest;) {
    if (u32(at) == eocd_sig && at + 22 + u16(at + 20) == size) {
      eocd = at;
      break;
    }
  }
  if (eocd == UINT64_MAX) fail("truncated or not a zip archive: no end-of-central-directory record");
  std::uint64_t disk = u16(eocd + 4), cd_disk = u16(eocd + 6), count = u16(eocd + 10), cd_size = u32(eocd + 12),
                cd_offset = u32(eocd + 16);
  if (eocd >= 20 && u32(eocd - 20) == z64_loc_sig) { // ZIP64: the real values are in the ZIP64 EOCD record
    const std::uint64_t z = u64(eocd - 20 + 8);
    if (u32(z) != z64_eocd_sig) fail("corrupt zip: ZIP64 locator points to no ZIP64 end-of-central-directory record");
    disk = u32(z + 16);
    cd_disk = u32(z + 20);
    count = u64(z + 32);
    cd_size = u64(z + 40);
    cd_offset = u64(z + 48);
  }
  if (disk != 0 || cd_disk != 0) fail("multi-disk zip archives are not supported");
  if (cd_offset > size || cd_size > size - cd_offset) fail("truncated or corrupt zip: central directory out of range");
  if (count > cd_size / 46) fail("corrupt zip: " + std::to_string(count) + " entries cannot fit the central directory");
  entries_.reserve(count);
  std::uint64_t at = cd_offset;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (u32(at) != cd_sig) fail("corrupt zip: bad central directory entry signature at offset " + std::to_string(at));
    zip_entry e;
    e.flags = u16(at + 8);
    e.method = u16(at + 10);
    e.crc32 = u32(at + 16);
    e.compressed_size = u32(at + 20);
    e.size = u32(at + 24);
    const std::uint16_t name_len = u16(at + 28), extra_len = u16(at + 30), comment_len = u16(at + 32);
    e.local_offset = u32(at + 42);
    const std::uint64_t name_at = at + 46, extra_at = name_at + name_len;
    if (extra_at + extra_len + comment_len > cd_offset + cd_size) fail("corrupt zip: central directory entry overruns");
    e.name.assign(reinterpret_cast<const char*>(bytes_.data() + name_at), name_len);
    // ZIP64 extended information (0x0001): 8-byte values replace the fields that hold 0xFFFFFFFF, in this order
    for (std::uint64_t x = extra_at; x + 4 <= extra_at + extra_len;) {
      const std::uint16_t id = u16(x), len = u16(x + 2);
      if (x + 4 + len > extra_at + extra_len) fail("corrupt zip: extra field overruns in entry '" + e.name + "'");
      if (id == 0x0001) {
        std::uint64_t y = x + 4;
        auto take = [&](std::uint64_t& field) {
          if (field != 0xffffffffu) return;
          if (y + 8 > x + 4 + len) fail("corrupt zip: short ZIP64 extra field in entry '" + e.name + "'");
          field = u64(y);
          y += 8;
        };
        take(e.size);
        take(e.compressed_size);
        take(e.local_offset);
      }
      x += 4 + len;
    }
    if (!index_.emplace(e.name, entries_.size()).second) fail("corrupt zip: duplicate entry '" + e.name + "'");
    entries_.push_back(std::move(e));
    at = extra_at + extra_len + comment_len;
  }
}

inline std::span<const std::byte> zip_archive::data(const zip_entry& e) const {
  if (e.flags & 0x1u) fail("zip entry '" + e.name + "' is encrypted");
  if (e.method != 0)
    fail("zip entry '" + e.name + "' is compressed (method " + std::to_string(e.method) +
         "); torch.save stores entries uncompressed, and minibert reads only stored entries (re-save with torch.save)");
  if (e.compressed_size != e.size) fail("corrupt zip: stored entry '" + e.name + "' has different sizes");
  const std::uint64_t lh = e.local_offset;
  if (u32(lh) != 0x04034b50) fail("corrupt zip: bad local header for entry '" + e.name + "'");
  // The local header's name/extra lengths may differ from the central directory's (torch pads with an extra field
  // to align data to 64 bytes), so the data offset comes from the local header.
  const std::uint64_t start = lh + 30 + u16(lh + 26) + u16(lh + 28);
  if (start > bytes_.size() || e.size > bytes_.size() - start)
    fail("truncated zip: entry '" + e.name + "' extends past the end of the file");
  return bytes_.subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(e.size));
}

inline void zip_archive::verify_crc(const zip_entry& e) const {
  if (crc32(data(e)) != e.crc32) fail("corrupt zip: CRC-32 mismatch in entry '" + e.name + "'");
}

} // namespace detail
} // namespace minibert
