// SPDX-License-Identifier: MIT
#pragma once
/* minibert::tokenizer: the whole BERT tokenization pipeline of HF tokenizers (added tokens, BertNormalizer,
   BertPreTokenizer, WordPiece, truncation, template, padding) and decoding. Immutable and cheap to copy once
   built; encode is thread-safe and allocates nothing per token (per-thread scratch buffers are reused). */

#include <algorithm>   // max, min
#include <atomic>      // atomic
#include <cstddef>     // size_t
#include <cstdint>     // int32_t, uint32_t
#include <exception>   // exception_ptr
#include <filesystem>  // path
#include <memory>      // shared_ptr
#include <mutex>       // mutex
#include <optional>    // optional
#include <span>        // span
#include <string>      // string
#include <string_view> // string_view
#include <thread>      // thread
#include <unordered_set> // unordered_set
#include <utility>     // pair, move
#include <vector>      // vector

#include <minibert/error.hpp>
#include <minibert/tokenizer/added_tokens.hpp>
#include <minibert/tokenizer/decode.hpp>
#include <minibert/tokenizer/encoding.hpp>
#include <minibert/tokenizer/loader.hpp>
#include <minibert/tokenizer/normalizer.hpp>
#include <minibert/tokenizer/wordpiece.hpp>

namespace minibert {

namespace detail {
struct tokenizer_state;
struct tokenizer_workspace;
} // namespace detail

/// @brief A BERT WordPiece tokenizer that gives the ids, type ids, masks and offsets of HF tokenizers
/// (BertTokenizerFast) for every text.
class tokenizer {
public:
  /// @brief Builds a tokenizer from its full description.
  /// @throws minibert::error if the description is inconsistent (unk token missing, bad ids)
  explicit tokenizer(tokenizer_spec spec);

  /// @brief Loads a tokenizer.json, a vocab.txt (with the tokenizer_config.json beside it, if any), or a model
  /// directory holding either (tokenizer.json preferred).
  /// @throws minibert::error if the path is missing or a file is malformed (the message names file and line)
  static tokenizer from_pretrained(const std::filesystem::path& path) { return tokenizer(detail::load_spec(path)); }
  /// @brief A tokenizer for a vocab.txt with BertTokenizer's settings.
  static tokenizer from_vocab(const std::filesystem::path& vocab_txt, const bert_vocab_options& options = {}) {
    return tokenizer(detail::spec_from_vocab(vocab::from_file(vocab_txt), options, vocab_txt.string()));
  }
  /// @brief A tokenizer from the text of a tokenizer.json.
  static tokenizer from_json(std::string_view json_text, const std::string& source = "tokenizer.json") {
    return tokenizer(detail::spec_from_json(json_text, source));
  }

  /// @brief Encodes one text with the file's default options (usually no truncation, no padding).
  /// @throws minibert::error on invalid UTF-8 (with its byte offset) or impossible truncation
  encoding encode(std::string_view text) const { return encode(text, default_options()); }
  encoding encode(std::string_view text, const encode_options& options) const {
    encoding e;
    encode_into(e, text, nullptr, options);
    return e;
  }
  /// @brief Encodes a pair: [CLS] text [SEP] pair [SEP], type ids 0 then 1.
  encoding encode(std::string_view text, std::string_view pair) const { return encode(text, pair, default_options()); }
  encoding encode(std::string_view text, std::string_view pair, const encode_options& options) const {
    encoding e;
    encode_into(e, text, &pair, options);
    return e;
  }
  /// @brief Encodes into `out`, reusing its buffers (no allocation once they are large enough).
  void encode_into(encoding& out, std::string_view text, const std::string_view* pair,
                   const encode_options& options) const;

  /// @brief Encodes many texts on `num_threads` threads (0: all cores); results are in input order. Padding to
  /// the longest pads to the longest of the batch.
  /// @throws minibert::error for the first failing text, naming its index
  std::vector<encoding> encode_batch(std::span<const std::string_view> texts, const encode_options& options,
                                     std::size_t num_threads = 0) const {
    std::vector<encoding> out;
    encode_batch_into(out, texts, options, num_threads);
    return out;
  }
  std::vector<encoding> encode_batch(const std::vector<std::string>& texts, const encode_options& options,
                                     std::size_t num_threads = 0) const {
    std::vector<encoding> out;
    encode_batch_into(out, texts, options, num_threads);
    return out;
  }
  /// @brief Encodes many pairs (see encode_batch).
  std::vector<encoding> encode_batch(std::span<const std::pair<std::string_view, std::string_view>> pairs,
                                     const encode_options& options, std::size_t num_threads = 0) const {
    std::vector<encoding> out;
    encode_batch_into(out, pairs, options, num_threads);
    return out;
  }
  /// @brief encode_batch into `out` (resized to the batch), reusing the buffers of its encodings: a data loader
  /// that keeps `out` between batches allocates nothing once the buffers are large enough.
  void encode_batch_into(std::vector<encoding>& out, std::span<const std::string_view> texts,
                         const encode_options& options, std::size_t num_threads = 0) const {
    batch(out, texts.size(), options, num_threads,
          [&](encoding& e, std::size_t i) { encode_into(e, texts[i], nullptr, options); });
  }
  void encode_batch_into(std::vector<encoding>& out, const std::vector<std::string>& texts,
                         const encode_options& options, std::size_t num_threads = 0) const {
    batch(out, texts.size(), options, num_threads,
          [&](encoding& e, std::size_t i) { encode_into(e, texts[i], nullptr, options); });
  }
  void encode_batch_into(std::vector<encoding>& out, std::span<const std::pair<std::string_view, std::string_view>> pairs,
                         const encode_options& options, std::size_t num_threads = 0) const {
    batch(out, pairs.size(), options, num_threads,
          [&](encoding& e, std::size_t i) { encode_into(e, pairs[i].first, &pairs[i].second, options); });
  }

  /// @brief Ids back to text, as HF's decode: continuation tokens joined, tokenization spaces cleaned up.
  /// @throws minibert::error if an id names no token
  std::string decode(std::span<const std::int32_t> ids, bool skip_special_tokens = false) const;

  /// @brief the id of a token (added tokens included), if any
  std::optional<std::int32_t> token_to_id(std::string_view token) const;
  /// @brief the token of an id (added tokens included)
  /// @throws minibert::error if no token has this id
  const std::string& id_to_token(std::int32_t id) const;
  /// @brief the number of ids (largest id + 1, added tokens included)
  std::size_t vocab_size() const noexcept;
  /// @brief what this tokenizer was built from
  const tokenizer_spec& spec() const noexcept;
  /// @brief the options encode(text) uses: the file's truncation and padding, code-point offsets
  encode_options default_options() const;
  /// @brief the id padding uses by default (the pad token's id, 0 if there is none)
  std::int32_t pad_id() const noexcept;

private:
  template <class Fn>
  void batch(std::vector<encoding>& out, std::size_t n, const encode_options& options, std::size_t num_threads,
             Fn&& fn) const;
  void encode_sequence(std::string_view text, detail::token_sequence& out, detail::tokenizer_workspace& ws,
                       const encode_options& o, const char* what) const;

  std::shared_ptr<const detail::tokenizer_state> s_;
};

// ---------------------------------------------------------------------------------------------------------------
// implementation

namespace detail {

struct tokenizer_state {
  tokenizer_spec spec;
  minibert::wordpiece model;
  bert_normalizer normalizer;
  added_token_matcher raw_matcher;        // normalized = false: matched in the original text
  added_token_matcher normalized_matcher; // normalized = true: matched in the normalized text
  std::vector<std::string> added_by_id;   // id -> added token content ("" if none)
  std::unordered_set<std::string> special; // contents of special added tokens (skipped by decode)
  std::int32_t pad_id = 0;
  std::size_t vocab_size = 0;
};

// Per-thread scratch: reused by every encode on the thread.
struct tokenizer_workspace {
  token_sequence a, b;
  std::vector<unsigned char> word;   // the current word's normalized bytes
  std::vector<std::uint32_t> wbegin; // per byte of `word`: original begin of its character
  std::vector<std::uint32_t> wend;   // per byte: original end
  // normalized-text buffer, for added tokens with normalized = true
  struct nchar {
    std::uint32_t at, ab, ae;
    std::uint8_t len, kind; // kind: 0 word, 1 punct, 2 space
  };
  std::vector<unsigned char> nbytes;
  std::vector<nchar> nchars;

  static tokenizer_workspace& local() {
    thread_local tokenizer_workspace ws;
    return ws;
  }
};

// The pre-tokenizer and the model: collects each word's bytes and alignment, runs WordPiece when it ends.
class word_sink {
public:
  word_sink(const wordpiece& model, token_sequence& out, tokenizer_workspace& ws)
      : model_(model), out_(out), ws_(ws), max_chars_(model.options().max_input_chars_per_word) {}

  void word(const char* s, int n, std::uint32_t ab, std::uint32_t ae) {
    if (chars_ == 0) first_begin_ = ab;
    if (chars_ >= max_chars_) { // the word is [UNK] already: keep only where it ends
      ++chars_;
      last_end_ = ae;
      return;
    }
    const std::size_t need = len_ + static_cast<std::size_t>(n);
    if (need > ws_.word.size()) grow(need);
    for (int k = 0; k < n; ++k) {
      ws_.word[len_] = static_cast<unsigned char>(s[k]);
      ws_.wbegin[len_] = ab;
      ws_.wend[len_] = ae;
      ++len_;
    }
    ++chars_;
    last_end_ = ae;
  }
  void punct(const char* s, int n, std::uint32_t ab, std::uint32_t ae) {
    flush();
    word(s, n, ab, ae);
    flush();
  }
  void space(const char*, int, std::uint32_t, std::uint32_t) { flush(); }

  void flush() {
    if (chars_ == 0) return;
    const std::size_t mark = out_.ids.size();
    const std::uint32_t* wb = ws_.wbegin.data();
    const std::uint32_t* we = ws_.wend.data();
    const bool ok = chars_ <= max_chars_ &&
                    model_.tokenize(ws_.word.data(), len_, chars_, [&](std::int32_t id, std::uint32_t b, std::uint32_t e) {
                      out_.ids.push_back(id);
                      out_.offsets.push_back({wb[b], we[e - 1]});
                    });
    if (!ok) {
      out_.ids.resize(mark);
      out_.offsets.resize(mark);
      out_.ids.push_back(model_.unk_id());
      out_.offsets.push_back({first_begin_, last_end_});
    }
    len_ = 0;
    chars_ = 0;
  }

private:
  void grow(std::size_t need) {
    const std::size_t size = std::max<std::size_t>(need, 2 * ws_.word.size() + 64);
    ws_.word.resize(size);
    ws_.wbegin.resize(size);
    ws_.wend.resize(size);
  }

  const wordpiece& model_;
  token_sequence& out_;
  tokenizer_workspace& ws_;
  std::size_t max_chars_;
  std::size_t len_ = 0, chars_ = 0;
  std::uint32_t first_begin_ = 0, last_end_ = 0;
};

// Records the normalized text (for normalized added tokens), to be replayed into a word_sink.
struct buffer_sink {
  tokenizer_workspace& ws;
  void put(const char* s, int n, std::uint32_t ab, std::uint32_t ae, std::uint8_t kind) {
    ws.nchars.push_back({static_cast<std::uint32_t>(ws.nbytes.size()), ab, ae, static_cast<std::uint8_t>(n), kind});
    ws.nbytes.insert(ws.nbytes.end(), s, s + n);
  }
  void word(const char* s, int n, std::uint32_t ab, std::uint32_t ae) { put(s, n, ab, ae, 0); }
  void punct(const char* s, int n, std::uint32_t ab, std::uint32_t ae) { put(s, n, ab, ae, 1); }
  void space(const char* s, int n, std::uint32_t ab, std::uint32_t ae) { put(s, n, ab, ae, 2); }
};

inline std::uint32_t count_code_points(const unsigned char* s, std::size_t n) noexcept {
  std::uint32_t k = 0;
  for (std::size_t i = 0; i < n; ++i) k += (s[i] & 0xC0) != 0x80;
  return k;
}

} // namespace detail

inline tokenizer::tokenizer(tokenizer_spec spec) {
  auto st = std::make_shared<detail::tokenizer_state>();
  try {
    st->model = wordpiece(spec.vocab, spec.model);
  } catch (const error& e) { // the model's own checks (unk_token not in the vocabulary, ...): name the file
    const std::string what = e.what(), details = what.substr(what.find("] ") + 2);
    throw error(e.op(), spec.source + ": " + details);
  }
  st->normalizer = detail::bert_normalizer(spec.normalizer);
  std::vector<added_token> raw, norm;
  std::int32_t max_id = spec.vocab.max_id();
  for (const added_token& t : spec.added_tokens) {
    MINIBERT_CHECK(t.id >= 0, "tokenizer", spec.source << ": added token '" << t.content << "' has id " << t.id);
    max_id = std::max(max_id, t.id);
  }
  st->added_by_id.assign(static_cast<std::size_t>(max_id + 1), std::string());
  for (const added_token& t : spec.added_tokens) {
    if (t.special) st->special.insert(t.content);
    added_token m = t;
    // A normalized token is matched in the normalized text by its normalized form, but decodes as its content (HF
    // tokenizers 0.20, which transformers 4.46 uses; 0.21+ decode it in its normalized form).
    if (t.normalized) m.content = normalize(t.content, spec.normalizer);
    st->added_by_id[static_cast<std::size_t>(t.id)] = t.content;
    if (m.content.empty()) continue;
    (t.normalized ? norm : raw).push_back(std::move(m));
  }
  st->raw_matcher = detail::added_token_matcher(std::move(raw));
  st->normalized_matcher = detail::added_token_matcher(std::move(norm));
  st->vocab_size = static_cast<std::size_t>(max_id + 1);
  if (spec.post) {
    for (const auto* tmpl : {&spec.post->single, &spec.post->pair})
      for (const template_piece& p : *tmpl)
        for (const std::int32_t id : p.ids)
          MINIBERT_CHECK(id >= 0 && id <= max_id && (spec.vocab.contains(id) || !st->added_by_id[static_cast<std::size_t>(id)].empty()),
                         "tokenizer", spec.source << ": post_processor uses id " << id << ", which names no token");
  }
  if (spec.padding && spec.padding->pad_id) st->pad_id = *spec.padding->pad_id;
  else if (const auto id = spec.vocab.find(spec.pad_token)) st->pad_id = *id;
  st->spec = std::move(spec);
  s_ = std::move(st);
}

inline void tokenizer::encode_sequence(std::string_view text, detail::token_sequence& out,
                                       detail::tokenizer_workspace& ws, const encode_options& o,
                                       const char* what) const {
  const detail::tokenizer_state& st = *s_;
  out.clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  MINIBERT_CHECK(n <= UINT32_MAX, "tokenizer", "text of " << n << " bytes is too long (limit 4 GiB)");
  const bool bytes = o.offsets == offset_unit::bytes;
  detail::word_sink sink(st.model, out, ws);
  std::size_t pos = 0;
  std::uint32_t upos = 0;
  detail::added_token_matcher::match m{};
  for (;;) {
    const bool found = st.raw_matcher.next(s, n, pos, pos, m);
    const std::size_t piece_end = found ? m.begin : n;
    if (st.normalized_matcher.empty()) {
      upos = st.normalizer.run(s, s + pos, s + piece_end, upos, o.offsets, o.invalid_utf8, sink, what);
      sink.flush();
    } else {
      ws.nbytes.clear();
      ws.nchars.clear();
      detail::buffer_sink buf{ws};
      upos = st.normalizer.run(s, s + pos, s + piece_end, upos, o.offsets, o.invalid_utf8, buf, what);
      std::size_t q = 0, c = 0; // byte and character cursors in the normalized text
      const auto replay_to = [&](std::size_t byte) {
        for (; c < ws.nchars.size() && ws.nchars[c].at < byte; ++c) {
          const auto& ch = ws.nchars[c];
          const char* p = reinterpret_cast<const char*>(ws.nbytes.data()) + ch.at;
          if (ch.kind == 0) sink.word(p, ch.len, ch.ab, ch.ae);
          else if (ch.kind == 1) sink.punct(p, ch.len, ch.ab, ch.ae);
          else sink.space(p, ch.len, ch.ab, ch.ae);
        }
        sink.flush();
      };
      detail::added_token_matcher::match nm{};
      while (st.normalized_matcher.next(ws.nbytes.data(), ws.nbytes.size(), q, q, nm)) {
        replay_to(nm.begin);
        std::uint32_t ab = 0, ae = 0;
        bool first = true;
        for (; c < ws.nchars.size() && ws.nchars[c].at < nm.end; ++c) {
          if (first) ab = ws.nchars[c].ab;
          first = false;
          ae = ws.nchars[c].ae;
        }
        out.ids.push_back(nm.id);
        out.offsets.push_back({ab, ae});
        q = nm.end;
      }
      replay_to(ws.nbytes.size());
    }
    if (!found) break;
    const std::uint32_t units =
        bytes ? static_cast<std::uint32_t>(m.end - m.begin) : detail::count_code_points(s + m.begin, m.end - m.begin);
    out.ids.push_back(m.id);
    out.offsets.push_back({upos, upos + units});
    upos += units;
    pos = m.end;
  }
}

inline void tokenizer::encode_into(encoding& out, std::string_view text, const std::string_view* pair,
                                   const encode_options& o) const {
  MINIBERT_CHECK(s_ != nullptr, "tokenizer", "encode on a moved-from tokenizer");
  detail::tokenizer_workspace& ws = detail::tokenizer_workspace::local();
  encode_sequence(text, ws.a, ws, o, pair ? "the first text" : "text");
  if (pair) encode_sequence(*pair, ws.b, ws, o, "the second text");
  detail::token_sequence* b = pair ? &ws.b : nullptr;
  ws.a.keep_begin = 0;
  ws.a.keep_end = ws.a.size();
  if (b) {
    b->keep_begin = 0;
    b->keep_end = b->size();
  }
  const post_processor* post = s_->spec.post ? &*s_->spec.post : nullptr;
  if (o.truncation) {
    const std::size_t added = o.add_special_tokens && post ? post->added_tokens(pair != nullptr) : 0;
    MINIBERT_CHECK(o.truncation->max_length >= added, "tokenizer",
                   "truncation max_length " << o.truncation->max_length << " is smaller than the " << added
                                            << " special tokens the template adds");
    detail::truncate_sequences(ws.a, b, o.truncation->max_length - added, o.truncation->strategy,
                               o.truncation->direction);
  }
  detail::assemble(out, ws.a, b, post, o.add_special_tokens);
  if (o.padding)
    detail::pad_encoding(out, detail::padding_target(*o.padding, out.size()), *o.padding, o.padding->pad_id.value_or(s_->pad_id));
}

template <class Fn>
void tokenizer::batch(std::vector<encoding>& out, std::size_t n, const encode_options& options,
                      std::size_t num_threads, Fn&& fn) const {
  out.resize(n);
  encode_options per_item = options;
  const bool pad_longest = options.padding && options.padding->to == padding_options::strategy::longest;
  if (pad_longest) per_item.padding.reset();
  std::size_t threads = num_threads ? num_threads : std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, (n + 31) / 32); // a thread per 32 texts at least
  std::mutex mu;
  std::size_t bad_index = n;
  std::exception_ptr bad;
  const auto run_one = [&](std::size_t i) {
    try {
      fn(out[i], i);
      if (per_item.padding)
        detail::pad_encoding(out[i], detail::padding_target(*per_item.padding, out[i].size()), *per_item.padding,
                             per_item.padding->pad_id.value_or(s_->pad_id));
    } catch (const error& e) {
      const std::lock_guard<std::mutex> lock(mu);
      if (i < bad_index) {
        bad_index = i;
        const std::string what = e.what();
        const std::size_t cut = what.find("] ");
        bad = std::make_exception_ptr(
            error(e.op(), "batch item " + std::to_string(i) + ": " + (cut == std::string::npos ? what : what.substr(cut + 2))));
      }
    }
  };
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) run_one(i);
  } else {
    std::atomic<std::size_t> next{0};
    const std::size_t chunk = std::max<std::size_t>(1, std::min<std::size_t>(256, n / (threads * 16)));
    const auto worker = [&] {
      for (std::size_t start; (start = next.fetch_add(chunk)) < n;)
        for (std::size_t i = start; i < std::min(n, start + chunk); ++i) run_one(i);
    };
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
    worker();
    for (std::thread& t : pool) t.join();
  }
  if (bad) std::rethrow_exception(bad);
  if (pad_longest) {
    std::size_t longest = 0;
    for (const encoding& e : out) longest = std::max(longest, e.size());
    const std::size_t target = detail::padding_target(*options.padding, longest);
    for (encoding& e : out) detail::pad_encoding(e, target, *options.padding, options.padding->pad_id.value_or(s_->pad_id));
  }
}

inline std::string tokenizer::decode(std::span<const std::int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string_view> tokens;
  tokens.reserve(ids.size());
  for (const std::int32_t id : ids) {
    const std::string& t = id_to_token(id);
    if (skip_special_tokens && s_->special.count(t)) continue;
    tokens.push_back(t);
  }
  return detail::decode_tokens(tokens, s_->spec.decoder);
}

inline std::optional<std::int32_t> tokenizer::token_to_id(std::string_view token) const {
  for (const added_token& t : s_->spec.added_tokens)
    if (t.content == token) return t.id;
  return s_->spec.vocab.find(token);
}

inline const std::string& tokenizer::id_to_token(std::int32_t id) const {
  if (id >= 0 && static_cast<std::size_t>(id) < s_->added_by_id.size() && !s_->added_by_id[static_cast<std::size_t>(id)].empty())
    return s_->added_by_id[static_cast<std::size_t>(id)];
  MINIBERT_CHECK(s_->spec.vocab.contains(id), "tokenizer",
                 "token id " << id << " names no token (vocabulary size " << s_->vocab_size << ")");
  return s_->spec.vocab.token(id);
}

inline std::size_t tokenizer::vocab_size() const noexcept { return s_->vocab_size; }
inline const tokenizer_spec& tokenizer::spec() const noexcept { return s_->spec; }
inline std::int32_t tokenizer::pad_id() const noexcept { return s_->pad_id; }

inline encode_options tokenizer::default_options() const {
  encode_options o;
  o.truncation = s_->spec.truncation;
  o.padding = s_->spec.padding;
  return o;
}

} // namespace minibert
