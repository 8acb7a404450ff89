// SPDX-License-Identifier: MIT
#pragma once
/* tensor<T, Device>: a strided view over reference-counted device storage. Shape, strides and views
   (reshape, permute/transpose, slice) without copies; no math here (that lives in the backends and ops). */

#include <algorithm>        // copy, fill
#include <array>            // array (shape's fixed-capacity dims)
#include <atomic>           // atomic_thread_fence (sole_handle)
#include <cstddef>          // size_t
#include <cstdint>          // int64_t
#include <initializer_list> // initializer_list
#include <memory>           // shared_ptr
#include <ostream>          // ostream (shape printing)
#include <string>           // to_string
#include <type_traits>      // is_same_v
#include <vector>           // vector

#include <minibert/cpu/allocator.hpp>
#include <minibert/dtype.hpp>
#include <minibert/error.hpp>

namespace minibert {

namespace device {
/// @brief Device tag: host memory, kernels from the Eigen CPU backend (namespace minibert::cpu).
struct cpu {
  static constexpr const char* name = "cpu";
};
/// @brief Device tag: NVIDIA GPU memory; memory and kernels come from <minibert/cuda/backend.hpp>.
struct cuda {
  static constexpr const char* name = "cuda";
};
} // namespace device

/// @brief Memory of one device. Each device provides allocate/deallocate/copy functions (the CUDA ones are
/// declared in cuda/backend.hpp and defined in the one .cu that includes cuda/backend_impl.cuh).
template <class Device> struct device_memory;

template <> struct device_memory<device::cpu> {
  static constexpr std::size_t alignment = cpu::host_allocator::small_alignment;
  static void* allocate(std::size_t bytes) { return cpu::host_allocator::instance().allocate(bytes); }
  static void deallocate(void* p) noexcept { cpu::host_allocator::instance().deallocate(p); }
};

/// @brief Largest tensor rank; BERT needs 4 (B, NH, T, HS).
inline constexpr int max_rank = 6;

/// @brief A tensor's sizes (or strides): a fixed-capacity list of up to max_rank int64 values.
class shape {
public:
  shape() = default;
  shape(std::initializer_list<std::int64_t> dims) {
    MINIBERT_CHECK(dims.size() <= std::size_t(max_rank), "shape", "rank " << dims.size() << " > " << max_rank);
    for (auto d : dims) d_[rank_++] = d;
  }
  template <class It> shape(It first, It last) {
    for (; first != last; ++first) {
      MINIBERT_CHECK(rank_ < max_rank, "shape", "rank > " << max_rank);
      d_[rank_++] = static_cast<std::int64_t>(*first);
    }
  }
  explicit shape(const std::vector<std::int64_t>& v) : shape(v.begin(), v.end()) {}

  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return d_[i]; }
  std::int64_t& operator[](int i) { return d_[i]; }
  /// @brief size of dim i; negative i counts from the end
  std::int64_t dim(int i) const { return d_[normalize(i)]; }
  int normalize(int i) const {
    const int j = i < 0 ? i + rank_ : i;
    MINIBERT_CHECK(j >= 0 && j < rank_, "shape", "dim " << i << " out of range for rank " << rank_);
    return j;
  }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= d_[i];
    return n;
  }
  void push_back(std::int64_t d) {
    MINIBERT_CHECK(rank_ < max_rank, "shape", "rank > " << max_rank);
    d_[rank_++] = d;
  }
  const std::int64_t* begin() const { return d_.data(); }
  const std::int64_t* end() const { return d_.data() + rank_; }
  std::vector<std::int64_t> to_vector() const { return {begin(), end()}; }
  friend bool operator==(const shape& a, const shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.d_[i] != b.d_[i]) return false;
    return true;
  }
  /// @brief "(2,3,4)"
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ',';
      s += std::to_string(d_[i]);
    }
    return s + ")";
  }
  friend std::ostream& operator<<(std::ostream& os, const shape& s) { return os << s.str(); }

private:
  std::array<std::int64_t, max_rank> d_{};
  int rank_ = 0;
};

/// @brief row-major (C-contiguous) strides of a shape
inline shape contiguous_strides(const shape& s) {
  shape st = s;
  std::int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

namespace detail {
/// @brief Calls f(offset, o, inner, inner_stride) for each innermost row of a strided view of `sizes`: offset is
/// the row's first element (in elements from the view's start), o its position in row-major order.
template <class F> void for_each_strided_row(const shape& sizes, const shape& strides, F&& f) {
  const std::int64_t n = sizes.numel();
  if (n == 0) return;
  const int r = sizes.rank();
  if (r == 0) {
    f(std::int64_t(0), std::int64_t(0), std::int64_t(1), std::int64_t(1));
    return;
  }
  const std::int64_t inner = sizes[r - 1], istride = strides[r - 1];
  std::array<std::int64_t, max_rank> idx{};
  for (std::int64_t o = 0; o < n; o += inner) { // odometer over all dims but the last
    std::int64_t off = 0;
    for (int k = 0; k < r - 1; ++k) off += idx[k] * strides[k];
    f(off, o, inner, istride);
    for (int k = r - 2; k >= 0; --k) {
      if (++idx[k] < sizes[k]) break;
      idx[k] = 0;
    }
  }
}
/// @brief dst (packed, row-major) = the strided view (sizes, strides) starting at src (host memory)
template <class T> void gather_strided(const T* src, const shape& sizes, const shape& strides, T* dst) {
  if (sizes.numel() > 0 && (strides == contiguous_strides(sizes) || sizes.numel() == 1)) {
    std::copy(src, src + sizes.numel(), dst);
    return;
  }
  for_each_strided_row(sizes, strides, [&](std::int64_t off, std::int64_t o, std::int64_t inner, std::int64_t st) {
    for (std::int64_t j = 0; j < inner; ++j) dst[o + j] = src[off + j * st];
  });
}
/// @brief the strided view (sizes, strides) starting at dst = src (packed, row-major; host memory)
template <class T> void scatter_strided(const T* src, T* dst, const shape& sizes, const shape& strides) {
  for_each_strided_row(sizes, strides, [&](std::int64_t off, std::int64_t o, std::int64_t inner, std::int64_t st) {
    for (std::int64_t j = 0; j < inner; ++j) dst[off + j * st] = src[o + j];
  });
}
} // namespace detail

/// @brief Reference-counted, uninitialized device buffer of n elements of T.
template <class T, class Device> class storage {
public:
  explicit storage(std::size_t n)
      : data_(static_cast<T*>(device_memory<Device>::allocate(n * sizeof(T)))), size_(n) {}
  ~storage() { device_memory<Device>::deallocate(data_); }
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;
  T* data() const { return data_; }
  std::size_t size() const { return size_; }

private:
  T* data_;
  std::size_t size_;
};

/// @brief A strided view over shared device storage. Copies of a tensor share storage (like torch.Tensor);
/// clone() copies data. Element type T: float or double on the CPU (half/bfloat16 storage for the CUDA
/// backend); integer types hold token ids and labels.
template <class T, class Device = device::cpu> class tensor {
public:
  using value_type = T;
  using device_type = Device;
  using shape_type = ::minibert::shape;

  tensor() = default;

  /// @brief uninitialized contiguous tensor
  static tensor empty(const shape_type& s) {
    tensor t;
    MINIBERT_CHECK(s.numel() >= 0, "tensor.empty", "negative size in " << s);
    for (auto d : s) MINIBERT_CHECK(d >= 0, "tensor.empty", "negative size in " << s);
    t.storage_ = std::make_shared<storage<T, Device>>(static_cast<std::size_t>(s.numel()));
    t.shape_ = s;
    t.strides_ = contiguous_strides(s);
    return t;
  }
  static tensor zeros(const shape_type& s) { return full(s, T(0)); }
  static tensor full(const shape_type& s, T v) {
    static_assert(std::is_same_v<Device, device::cpu>, "full(): use the backend's fill on other devices");
    tensor t = empty(s);
    std::fill(t.data(), t.data() + t.numel(), v);
    return t;
  }
  /// @brief copies values (row-major) into a new tensor of shape s
  static tensor from(const std::vector<T>& values, const shape_type& s) {
    static_assert(std::is_same_v<Device, device::cpu>, "from(): host data goes to the CPU; copy to devices after");
    MINIBERT_CHECK(std::int64_t(values.size()) == s.numel(), "tensor.from",
                   values.size() << " values for shape " << s << " (" << s.numel() << " elements)");
    tensor t = empty(s);
    std::copy(values.begin(), values.end(), t.data());
    return t;
  }

  bool defined() const { return storage_ != nullptr || shape_.rank() > 0; }
  const shape_type& shape() const { return shape_; }
  const shape_type& strides() const { return strides_; }
  int rank() const { return shape_.rank(); }
  std::int64_t size(int i) const { return shape_.dim(i); }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t offset() const { return offset_; }

  /// @brief pointer to element 0 of this view (device memory for non-CPU devices)
  T* data() const { return storage_ ? storage_->data() + offset_ : nullptr; }
  const std::shared_ptr<storage<T, Device>>& storage_ptr() const { return storage_; }
  bool shares_storage(const tensor& o) const { return storage_ && storage_ == o.storage_; }
  /// @brief whether this is the only handle on its storage and covers all of it, so that writing into it in place is
  /// seen nowhere else (and keeps nothing else alive). Handles are not shared across threads: the acquire fence orders
  /// this thread's writes after whatever the last other holder did before it let go.
  bool sole_handle() const {
    if (!storage_ || storage_.use_count() != 1 || offset_ != 0 || std::size_t(numel()) != storage_->size()) return false;
    std::atomic_thread_fence(std::memory_order_acquire);
    return true;
  }

  bool is_contiguous() const { return strides_ == contiguous_strides(shape_) || numel() <= 1; }

  /// @brief the single value of a one-element tensor
  T item() const {
    static_assert(std::is_same_v<Device, device::cpu>, "item(): copy to the CPU first");
    MINIBERT_CHECK(numel() == 1, "tensor.item", "tensor of shape " << shape_ << " has " << numel() << " elements");
    return *data();
  }
  /// @brief element at a multi-index (CPU only; for tests and small host-side work)
  T& at(std::initializer_list<std::int64_t> idx) const {
    static_assert(std::is_same_v<Device, device::cpu>, "at(): CPU tensors only");
    MINIBERT_CHECK(int(idx.size()) == rank(), "tensor.at", idx.size() << " indices for shape " << shape_);
    std::int64_t off = 0;
    int i = 0;
    for (auto v : idx) {
      MINIBERT_CHECK(v >= 0 && v < shape_[i], "tensor.at", "index " << v << " out of range in dim " << i << " of " << shape_);
      off += v * strides_[i++];
    }
    return data()[off];
  }

  // ------------------------------------------------------------------ views (no copies)

  /// @brief same data, new shape; one dim may be -1. Views when the layout allows, else copies (as torch.reshape).
  tensor reshape(shape_type s) const {
    int infer = -1;
    std::int64_t known = 1;
    for (int i = 0; i < s.rank(); ++i) {
      if (s[i] == -1) {
        MINIBERT_CHECK(infer < 0, "reshape", shape_ << " -> " << s << ": more than one -1");
        infer = i;
      } else {
        known *= s[i];
      }
    }
    if (infer >= 0) {
      MINIBERT_CHECK(known > 0 && numel() % known == 0, "reshape", shape_ << " -> " << s << ": cannot infer -1");
      s[infer] = numel() / known;
    }
    MINIBERT_CHECK(s.numel() == numel(), "reshape",
                   shape_ << " -> " << s << ": " << numel() << " elements != " << s.numel());
    if (!is_contiguous()) {
      if constexpr (std::is_same_v<Device, device::cpu>) return contiguous().reshape(s);
      else throw error("reshape", "a strided view " + shape_.str() + " on " + Device::name +
                                      ": pack it first with minibert::contiguous(t)");
    }
    tensor t = *this;
    t.shape_ = s;
    t.strides_ = contiguous_strides(s);
    return t;
  }
  /// @brief reorder dims: out.dim(i) = dim(order[i]) (a view)
  tensor permute(std::initializer_list<int> order) const { return permute(std::vector<int>(order)); }
  tensor permute(const std::vector<int>& order) const {
    MINIBERT_CHECK(int(order.size()) == rank(), "permute", "order of " << order.size() << " dims for shape " << shape_);
    tensor t = *this;
    std::array<bool, max_rank> seen{};
    int i = 0;
    for (int d : order) {
      const int j = shape_.normalize(d);
      MINIBERT_CHECK(!seen[j], "permute", "dim " << d << " repeated for shape " << shape_);
      seen[j] = true;
      t.shape_[i] = shape_[j];
      t.strides_[i] = strides_[j];
      ++i;
    }
    return t;
  }
  /// @brief swap two dims (a view)
  tensor transpose(int a, int b) const {
    a = shape_.normalize(a);
    b = shape_.normalize(b);
    tensor t = *this;
    std::swap(t.shape_[a], t.shape_[b]);
    std::swap(t.strides_[a], t.strides_[b]);
    return t;
  }
  /// @brief elements [begin, end) of dim d (a view)
  tensor slice(int d, std::int64_t begin, std::int64_t end) const {
    d = shape_.normalize(d);
    MINIBERT_CHECK(0 <= begin && begin <= end && end <= shape_[d], "slice",
                   "[" << begin << "," << end << ") out of range for dim " << d << " of " << shape_);
    tensor t = *this;
    t.offset_ += begin * strides_[d];
    t.shape_[d] = end - begin;
    return t;
  }
  /// @brief index i of dim d, dropping that dim (a view)
  tensor select(int d, std::int64_t i) const {
    d = shape_.normalize(d);
    tensor t = slice(d, i, i + 1);
    shape_type s, st;
    for (int k = 0; k < rank(); ++k)
      if (k != d) {
        s.push_back(t.shape_[k]);
        st.push_back(t.strides_[k]);
      }
    t.shape_ = s;
    t.strides_ = st;
    return t;
  }

  /// @brief this tensor when contiguous, else a contiguous copy
  tensor contiguous() const { return is_contiguous() ? *this : clone(); }
  /// @brief a contiguous copy with its own storage
  tensor clone() const {
    static_assert(std::is_same_v<Device, device::cpu>, "clone(): use the backend's copy on other devices");
    tensor t = empty(shape_);
    copy_strided(*this, t.data());
    return t;
  }
  /// @brief values in row-major order (CPU only)
  std::vector<T> to_vector() const {
    std::vector<T> v(static_cast<std::size_t>(numel()));
    copy_strided(*this, v.data());
    return v;
  }

private:
  static void copy_strided(const tensor& src, T* dst) {
    static_assert(std::is_same_v<Device, device::cpu>, "strided copy: CPU only");
    detail::gather_strided(src.data(), src.shape_, src.strides_, dst);
  }

  std::shared_ptr<storage<T, Device>> storage_;
  std::int64_t offset_ = 0;
  shape_type shape_;
  shape_type strides_;
};

} // namespace minibert
