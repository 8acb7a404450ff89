// SPDX-License-Identifier: MIT
#pragma once
/* A small command-line flag parser for the example programs: --name VALUE and --flag forms, typed getters,
   generated --help text, and errors that name the flag. */

#include <cstdint>   // int64_t
#include <cstdlib>   // strtod, strtoll
#include <map>       // map
#include <optional>  // optional
#include <sstream>   // ostringstream
#include <string>    // string
#include <vector>    // vector

#include <minibert/error.hpp>

namespace sentiment {

/// One subcommand's flags: declare them, parse argv, read them back.
class cli {
public:
  cli(std::string command, std::string summary) : command_(std::move(command)), summary_(std::move(summary)) {}

  /// a flag taking a value; def empty = no default (optional unless required)
  cli& option(const std::string& name, const std::string& help, const std::string& def = "", bool required = false) {
    specs_.push_back({name, help, def, required, true});
    return *this;
  }
  /// a boolean switch
  cli& flag(const std::string& name, const std::string& help) {
    specs_.push_back({name, help, "", false, false});
    return *this;
  }
  /// positional arguments (e.g. run directories), described for --help
  cli& positional(const std::string& name, const std::string& help) {
    pos_name_ = name;
    pos_help_ = help;
    return *this;
  }

  /// @returns false when --help was asked (help printed to out)
  bool parse(int argc, char** argv, int first, std::ostream& out) {
    for (int i = first; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        out << help();
        return false;
      }
      if (a.rfind("--", 0) != 0) {
        MINIBERT_CHECK(!pos_name_.empty(), command_, "unexpected argument '" << a << "' (see --help)");
        positional_.push_back(a);
        continue;
      }
      std::string name = a.substr(2), value;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      const spec* s = find(name);
      MINIBERT_CHECK(s != nullptr, command_, "unknown flag --" << name << " (see --help)");
      if (s->takes_value && value.empty() && a.find('=') == std::string::npos) {
        MINIBERT_CHECK(i + 1 < argc, command_, "--" << name << " needs a value");
        value = argv[++i];
      }
      values_[name] = s->takes_value ? value : "1";
    }
    for (auto& s : specs_)
      MINIBERT_CHECK(!s.required || values_.count(s.name), command_, "--" << s.name << " is required (see --help)");
    return true;
  }

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::string str(const std::string& name) const {
    if (auto it = values_.find(name); it != values_.end()) return it->second;
    const spec* s = find(name);
    return s ? s->def : std::string();
  }
  std::int64_t integer(const std::string& name) const {
    const std::string v = str(name);
    char* end = nullptr;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    MINIBERT_CHECK(!v.empty() && end && *end == 0, command_, "--" << name << " expects an integer, got '" << v << "'");
    return x;
  }
  double number(const std::string& name) const {
    const std::string v = str(name);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    MINIBERT_CHECK(!v.empty() && end && *end == 0, command_, "--" << name << " expects a number, got '" << v << "'");
    return x;
  }
  const std::vector<std::string>& positionals() const { return positional_; }

  std::string help() const {
    std::ostringstream os;
    os << "usage: sentiment_trainer " << command_ << " [flags]" << (pos_name_.empty() ? "" : " " + pos_name_ + "...")
       << "\n\n" << summary_ << "\n\n";
    if (!pos_name_.empty()) os << "  " << pos_name_ << "\n      " << pos_help_ << "\n";
    for (auto& s : specs_) {
      os << "  --" << s.name << (s.takes_value ? " VALUE" : "") << "\n      " << s.help;
      if (s.required) os << " (required)";
      else if (!s.def.empty()) os << " (default: " << s.def << ")";
      os << "\n";
    }
    return os.str();
  }

private:
  struct spec {
    std::string name, help, def;
    bool required, takes_value;
  };
  const spec* find(const std::string& name) const {
    for (auto& s : specs_)
      if (s.name == name) return &s;
    return nullptr;
  }
  std::string command_, summary_, pos_name_, pos_help_;
  std::vector<spec> specs_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

} // namespace sentiment
