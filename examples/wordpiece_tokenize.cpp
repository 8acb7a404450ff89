// SPDX-License-Identifier: MIT
// wordpiece_tokenize: UTF-8 lines on stdin -> token ids ([CLS] ... [SEP]) on stdout, one line per line, the ids of
// Hugging Face's BertTokenizerFast. Lines are encoded in blocks on all cores; output order is input order.
#include <cstdio>    // fwrite, fputs
#include <cstdlib>   // strtoull
#include <cstring>   // strcmp
#include <iostream>  // cin, cerr
#include <string>    // string, getline
#include <utility>   // pair
#include <vector>    // vector

#include <minibert/tokenizer.hpp>

namespace {

const char* usage =
    "usage: wordpiece_tokenize --tokenizer PATH [--max-length N] [--pair] [--replace-invalid] [--threads N]\n"
    "\n"
    "Reads UTF-8 text from stdin, one text per line, and writes for each line its token ids, [CLS] and [SEP]\n"
    "included, separated by single spaces: one output line per input line, identical to Hugging Face's\n"
    "BertTokenizerFast (tokenizers) with the same tokenizer.\n"
    "\n"
    "  --tokenizer PATH    a tokenizer.json, a vocab.txt (with the tokenizer_config.json beside it, if any), or a\n"
    "                      model directory holding either\n"
    "  --max-length N      truncate to N tokens, special tokens included (longest_first for pairs);\n"
    "                      without it nothing is truncated\n"
    "  --pair              each line holds two texts separated by a TAB: [CLS] A [SEP] B [SEP]\n"
    "  --replace-invalid   read invalid UTF-8 as U+FFFD instead of failing (the default names the line and byte)\n"
    "  --threads N         encoding threads (default: all cores)\n"
    "  --help              this text\n"
    "\n"
    "Example: echo 'Hello, world!' | wordpiece_tokenize --tokenizer bert-base-uncased/  ->  101 7592 1010 2088 999 102\n";

struct arguments {
  std::string tokenizer;
  std::size_t max_length = 0;
  bool pair = false, replace_invalid = false;
  std::size_t threads = 0;
};

bool parse(int argc, char** argv, arguments& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto value = [&]() -> const char* {
      if (i + 1 >= argc) throw minibert::error("wordpiece_tokenize", arg + " needs a value");
      return argv[++i];
    };
    const auto number = [&](const char* v) {
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v, &end, 10);
      if (!end || *end || !*v) throw minibert::error("wordpiece_tokenize", arg + " needs a number, got '" + v + "'");
      return static_cast<std::size_t>(n);
    };
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      return false;
    } else if (arg == "--tokenizer") {
      a.tokenizer = value();
    } else if (arg == "--max-length") {
      a.max_length = number(value());
      if (a.max_length == 0) throw minibert::error("wordpiece_tokenize", "--max-length must be at least 1");
    } else if (arg == "--pair") {
      a.pair = true;
    } else if (arg == "--replace-invalid") {
      a.replace_invalid = true;
    } else if (arg == "--threads") {
      a.threads = number(value());
    } else {
      throw minibert::error("wordpiece_tokenize", "unknown argument '" + arg + "' (see --help)");
    }
  }
  if (a.tokenizer.empty()) throw minibert::error("wordpiece_tokenize", "--tokenizer PATH is required (see --help)");
  return true;
}

// Encodes one block of lines and writes their ids; `first_line` numbers the lines in error messages.
void encode_block(const minibert::tokenizer& tok, const std::vector<std::string>& lines, std::size_t first_line,
                  const arguments& a, const minibert::encode_options& o, std::string& out) {
  std::vector<minibert::encoding> enc;
  try {
    if (a.pair) {
      std::vector<std::pair<std::string_view, std::string_view>> pairs;
      pairs.reserve(lines.size());
      for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string_view line = lines[i];
        const std::size_t tab = line.find('\t');
        if (tab == std::string_view::npos)
          throw minibert::error("wordpiece_tokenize", "line " + std::to_string(first_line + i) +
                                                          ": --pair needs two texts separated by a TAB");
        pairs.emplace_back(line.substr(0, tab), line.substr(tab + 1));
      }
      enc = tok.encode_batch(pairs, o, a.threads);
    } else {
      enc = tok.encode_batch(lines, o, a.threads);
    }
  } catch (const minibert::error& e) {
    // "[minibert.tokenizer] batch item K: ..." -> "[minibert.tokenizer] line N: ..."
    std::string what = e.what();
    const std::size_t prefix = what.find("] ");
    if (prefix != std::string::npos) what = what.substr(prefix + 2);
    const std::string tag = "batch item ";
    if (what.rfind(tag, 0) == 0) {
      const std::size_t k = std::stoul(what.substr(tag.size()));
      what = "line " + std::to_string(first_line + k) + what.substr(what.find(':'));
    }
    if (what.find("utf8_policy::replace") != std::string::npos) what += " (--replace-invalid)";
    throw minibert::error(e.op(), what);
  }
  out.clear();
  for (const minibert::encoding& e : enc) {
    for (std::size_t k = 0; k < e.ids.size(); ++k) {
      if (k) out += ' ';
      out += std::to_string(e.ids[k]);
    }
    out += '\n';
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

} // namespace

int main(int argc, char** argv) {
  try {
    arguments a;
    if (!parse(argc, argv, a)) return 0;
    const minibert::tokenizer tok = minibert::tokenizer::from_pretrained(a.tokenizer);
    minibert::encode_options o;
    if (a.max_length) o.truncation = minibert::truncation_options{a.max_length};
    if (a.replace_invalid) o.invalid_utf8 = minibert::utf8_policy::replace;
    std::ios::sync_with_stdio(false);
    constexpr std::size_t block = 8192;
    std::vector<std::string> lines;
    std::string line, out;
    std::size_t first_line = 1;
    while (std::getline(std::cin, line)) {
      lines.push_back(std::move(line));
      if (lines.size() == block) {
        encode_block(tok, lines, first_line, a, o, out);
        first_line += lines.size();
        lines.clear();
      }
    }
    if (!lines.empty()) encode_block(tok, lines, first_line, a, o, out);
    std::fflush(stdout);
    return 0;
  } catch (const minibert::error& e) {
    std::fflush(stdout);
    std::cerr << e.what() << '\n';
    return 1;
  }
}
