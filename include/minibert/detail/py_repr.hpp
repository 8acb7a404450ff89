// SPDX-License-Identifier: MIT
#pragma once
/* Python's repr() of a float (the shortest digits that round-trip, fixed notation for exponents -4..15, else
   scientific with a two-digit exponent), so log lines read as transformers prints them: 4e-06, 0.0001, 0.6206. */

#include <charconv> // to_chars
#include <cmath>    // isfinite, isnan
#include <cstdlib>  // atoi
#include <string>   // string

namespace minibert::detail {

inline std::string py_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (!std::isfinite(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific); // shortest round-trip
  std::string s(buf, r.ptr);
  const auto e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  std::string mant = s.substr(0, e);
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out;
  if (exp < -4 || exp >= 16) {
    out = digits.substr(0, 1) + (digits.size() > 1 ? "." + digits.substr(1) : "") + "e" + (exp < 0 ? "-" : "+");
    const int a = exp < 0 ? -exp : exp;
    out += (a < 10 ? "0" : "") + std::to_string(a);
  } else if (exp < 0) {
    out = "0." + std::string(std::size_t(-exp - 1), '0') + digits;
  } else {
    if (digits.size() <= std::size_t(exp) + 1) out = digits + std::string(std::size_t(exp) + 1 - digits.size(), '0') + ".0";
    else out = digits.substr(0, std::size_t(exp) + 1) + "." + digits.substr(std::size_t(exp) + 1);
  }
  return neg ? "-" + out : out;
}

} // namespace minibert::detail
