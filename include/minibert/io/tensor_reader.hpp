// SPDX-License-Identifier: MIT
#pragma once
/* minibert::tensor_reader: the read interface shared by every checkpoint format (safetensors, torch zip):
   tensor names, per-tensor info (dtype, shape, strides, bytes in the mapped file) and read<T>(), which checks the
   expected shape and converts F64/F32/F16/BF16 to float/double (or integer dtypes to int64) straight into dst. */

#include <algorithm>        // equal
#include <bit>              // endian (little-endian hosts only)
#include <cstddef>          // byte, size_t
#include <cstdint>          // int64_t
#include <cstring>          // memcpy (unaligned element loads)
#include <initializer_list> // initializer_list shape overload
#include <map>              // map (metadata)
#include <span>             // span
#include <sstream>          // ostringstream (shape formatting)
#include <string>           // string
#include <type_traits>      // is_same_v
#include <vector>           // vector

#include <minibert/dtype.hpp>
#include <minibert/error.hpp>

namespace minibert {

static_assert(std::endian::native == std::endian::little,
              "minibert's checkpoint readers assume a little-endian host (safetensors and torch store little-endian)");

/// @brief Where and how one tensor is stored in a mapped checkpoint file.
struct tensor_info {
  minibert::dtype dtype = minibert::dtype::f32; ///< element type as stored
  std::vector<std::int64_t> shape;              ///< sizes, outermost first; empty for a 0-dim tensor
  std::vector<std::int64_t> strides;            ///< element strides (row-major for safetensors)
  std::span<const std::byte> bytes;             ///< from the first element to one past the last one reached

  /// @brief number of elements (1 for a 0-dim tensor)
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  /// @brief true when the elements are stored densely in row-major order
  bool is_contiguous() const;
};

/// @brief "[768, 3072]" (used in error messages)
inline std::string format_shape(std::span<const std::int64_t> shape);

/// @brief Abstract reader over a memory-mapped checkpoint. Implemented by safetensors_file and torch_checkpoint.
class tensor_reader {
public:
  virtual ~tensor_reader() = default;

  /// @brief tensor names in file order (safetensors: by data offset; torch: state-dict order)
  virtual const std::vector<std::string>& names() const = 0;
  /// @brief whether a tensor of that name exists
  virtual bool contains(const std::string& name) const = 0;
  /// @brief the tensor's dtype, shape, strides and bytes
  /// @throws minibert::error if there is no such tensor
  virtual const tensor_info& info(const std::string& name) const = 0;
  /// @brief the file's string->string metadata (safetensors `__metadata__`; empty for torch)
  virtual const std::map<std::string, std::string>& metadata() const = 0;
  /// @brief the path the reader was opened from
  virtual const std::string& path() const = 0;
  /// @brief "safetensors" or "torch"
  virtual const char* format() const = 0;

  /// @brief Copies tensor `name` into dst (numel elements, row-major), converting the element type.
  /// T = float or double reads F64/F32/F16/BF16; T = std::int64_t reads I64/I32/I16/I8/U8/BOOL; any other T with
  /// dtype_v<T> equal to the stored dtype (half, bfloat16, int32_t, uint8_t) is copied bit for bit.
  /// Strided (torch) tensors are gathered; no intermediate buffer is allocated.
  /// @param expected_shape the shape the caller allocated for; must equal the stored shape exactly
  /// @throws minibert::error naming the file and tensor if the tensor is missing, the shapes differ (both are
  ///         printed) or the stored dtype cannot be converted to T
  template <class T> void read(const std::string& name, T* dst, std::span<const std::int64_t> expected_shape) const;
  template <class T>
  void read(const std::string& name, T* dst, std::initializer_list<std::int64_t> expected_shape) const {
    read<T>(name, dst, std::span<const std::int64_t>(expected_shape.begin(), expected_shape.size()));
  }
  /// @brief reads a whole tensor into a new vector, whatever its shape (same conversions as read())
  /// @throws minibert::error as read()
  template <class T> std::vector<T> read_vector(const std::string& name) const {
    const tensor_info& ti = info(name);
    std::vector<T> out(static_cast<std::size_t>(ti.numel()));
    read<T>(name, out.data(), std::span<const std::int64_t>(ti.shape));
    return out;
  }

protected:
  /// @brief the error-message prefix for this format's errors ("safetensors", "torch_checkpoint")
  virtual const char* op_name() const = 0;
  /// @brief throws minibert::error(op_name(), "<path>: tensor '<name>': <msg>")
  [[noreturn]] void fail_tensor(const std::string& name, const std::string& msg) const {
    throw error(op_name(), path() + ": tensor '" + name + "': " + msg);
  }
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline bool tensor_info::is_contiguous() const {
  std::int64_t expect = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expect) return false;
    expect *= shape[i];
  }
  return true;
}

inline std::string format_shape(std::span<const std::int64_t> shape) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

namespace detail {

template <class Src> inline Src load_unaligned(const std::byte* p) {
  Src s;
  std::memcpy(static_cast<void*>(&s), p, sizeof(Src)); // mapped data need not be aligned for Src
  return s;
}

template <class Src, class T> inline T convert_element(Src s) {
  if constexpr (std::is_same_v<Src, T>)
    return s;
  else if constexpr (std::is_same_v<Src, half> || std::is_same_v<Src, bfloat16>)
    return static_cast<T>(static_cast<float>(s));
  else
    return static_cast<T>(s);
}

// Copies a (possibly strided) tensor into dense row-major dst, element by element. The odometer walks the index
// space without recursion; bytes were bounds-checked against the strides when the file was opened.
template <class Src, class T> inline void gather_convert(const tensor_info& ti, T* dst) {
  const std::int64_t n = ti.numel();
  if (n == 0) return;
  const std::byte* base = ti.bytes.data();
  if (ti.is_contiguous()) {
    MINIBERT_ASSERT(ti.bytes.size() >= static_cast<std::size_t>(n) * sizeof(Src));
    if constexpr (std::is_same_v<Src, T>) {
      std::memcpy(dst, base, static_cast<std::size_t>(n) * sizeof(T));
    } else {
      for (std::int64_t i = 0; i < n; ++i) dst[i] = convert_element<Src, T>(load_unaligned<Src>(base + i * sizeof(Src)));
    }
    return;
  }
  const std::size_t rank = ti.shape.size();
  std::vector<std::int64_t> idx(rank, 0);
  std::int64_t off = 0; // element offset of idx
  for (std::int64_t i = 0; i < n; ++i) {
    MINIBERT_ASSERT(static_cast<std::size_t>(off + 1) * sizeof(Src) <= ti.bytes.size());
    dst[i] = convert_element<Src, T>(load_unaligned<Src>(base + off * static_cast<std::int64_t>(sizeof(Src))));
    for (std::size_t d = rank; d-- > 0;) {
      if (++idx[d] < ti.shape[d]) {
        off += ti.strides[d];
        break;
      }
      off -= (ti.shape[d] - 1) * ti.strides[d];
      idx[d] = 0;
    }
  }
}

} // namespace detail

template <class T>
void tensor_reader::read(const std::string& name, T* dst, std::span<const std::int64_t> expected_shape) const {
  if (!contains(name)) fail_tensor(name, "not found (the file has " + std::to_string(names().size()) + " tensors)");
  const tensor_info& ti = info(name);
  const bool same = ti.shape.size() == expected_shape.size() &&
                    std::equal(ti.shape.begin(), ti.shape.end(), expected_shape.begin());
  if (!same) fail_tensor(name, "shape " + format_shape(ti.shape) + " in the file, expected " + format_shape(expected_shape));
  using minibert::dtype;
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    switch (ti.dtype) {
    case dtype::f64: return detail::gather_convert<double, T>(ti, dst);
    case dtype::f32: return detail::gather_convert<float, T>(ti, dst);
    case dtype::f16: return detail::gather_convert<half, T>(ti, dst);
    case dtype::bf16: return detail::gather_convert<bfloat16, T>(ti, dst);
    default: break;
    }
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    switch (ti.dtype) {
    case dtype::i64: return detail::gather_convert<std::int64_t, T>(ti, dst);
    case dtype::i32: return detail::gather_convert<std::int32_t, T>(ti, dst);
    case dtype::i16: return detail::gather_convert<std::int16_t, T>(ti, dst);
    case dtype::i8: return detail::gather_convert<std::int8_t, T>(ti, dst);
    case dtype::u8: case dtype::boolean: return detail::gather_convert<std::uint8_t, T>(ti, dst);
    default: break;
    }
  } else {
    static_assert(sizeof(dtype_of<T>) > 0, "read<T>: T must be float, double, int64_t or have a dtype_of<T>");
    if (ti.dtype == dtype_v<T>) return detail::gather_convert<T, T>(ti, dst);
  }
  fail_tensor(name, std::string("stored as ") + dtype_name(ti.dtype) + ", which read<" +
                        (std::is_same_v<T, float> ? "float" : std::is_same_v<T, double> ? "double"
                         : std::is_same_v<T, std::int64_t> ? "int64_t" : "T") +
                        "> cannot convert");
}

} // namespace minibert
