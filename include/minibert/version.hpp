// SPDX-License-Identifier: MIT
#pragma once
/* minibert's version numbers (kept in step with project() in CMakeLists.txt). */

#define MINIBERT_VERSION_MAJOR 0
#define MINIBERT_VERSION_MINOR 1
#define MINIBERT_VERSION_PATCH 0

namespace minibert {
inline constexpr int version_major = MINIBERT_VERSION_MAJOR;
inline constexpr int version_minor = MINIBERT_VERSION_MINOR;
inline constexpr int version_patch = MINIBERT_VERSION_PATCH;
inline constexpr const char* version_string = "0.1.0";
} // namespace minibert
