// SPDX-License-Identifier: MIT
#pragma once
/* minibert::error, the one exception type users catch, and the checking macros:
   MINIBERT_CHECK (always on, for public entry points) and MINIBERT_ASSERT (debug-only invariants). */

#include <cassert>   // assert (default MINIBERT_ASSERT)
#include <sstream>   // ostringstream for MINIBERT_CHECK messages
#include <stdexcept> // runtime_error
#include <string>    // string

namespace minibert {

/// @brief The exception minibert throws for every user-visible failure: bad shapes or dtypes, corrupt
/// files, out-of-range ids, device failures. what() reads "[minibert.<op>] <details>".
class error : public std::runtime_error {
public:
  /// @param op  the operation or component that failed ("matmul", "safetensors", ...)
  /// @param msg what was given and what was expected
  error(const std::string& op, const std::string& msg)
      : std::runtime_error("[minibert." + op + "] " + msg), op_(op) {}
  /// @brief the failing operation's name, without the prefix
  const std::string& op() const noexcept { return op_; }

private:
  std::string op_;
};

} // namespace minibert

/// Always-on check for public entry points: throws minibert::error(op, streamed message) when cond is false.
/// Usage: MINIBERT_CHECK(a == b, "matmul", "lhs " << s1 << " x rhs " << s2 << ": inner dims differ");
#define MINIBERT_CHECK(cond, op, msg)                                                                       \
  do {                                                                                                      \
    if (!(cond)) {                                                                                          \
      std::ostringstream minibert_check_os_;                                                                \
      minibert_check_os_ << msg;                                                                            \
      throw ::minibert::error((op), minibert_check_os_.str());                                              \
    }                                                                                                       \
  } while (0)

/// Debug-only invariant check; define MINIBERT_ASSERT before including minibert to replace it.
#ifndef MINIBERT_ASSERT
#define MINIBERT_ASSERT(x) assert(x)
#endif
