// SPDX-License-Identifier: MIT
#pragma once
/* Overflow-checked int64 arithmetic for sizes read from untrusted files (tensor shapes, storage counts, byte
   offsets): each returns false instead of wrapping, so a hostile count can never pass a range check. */

#include <cstdint> // int64_t

namespace minibert::detail {

// a * b, false on overflow past int64
inline bool mul_checked(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

// a + b, false on overflow past int64
inline bool add_checked(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_add_overflow(a, b, &out); }

} // namespace minibert::detail
