// SPDX-License-Identifier: MIT
#pragma once
/* WordPiece in linear time: LinMaxMatch from "Fast WordPiece Tokenization" (Song et al., EMNLP 2021). A trie of
   the vocabulary (every token from the root r, continuation tokens without their "##" from a second root r#),
   stored as a double array, with a failure link f(v) and failure pops F(v) per node, so that each byte of a word
   is one transition and the output equals HF's longest-match-first MaxMatch. */

#include <algorithm> // sort, max
#include <cstddef>   // size_t
#include <cstdint>   // int32_t, uint32_t
#include <deque>     // deque (BFS queue)
#include <string>    // string
#include <utility>   // pair, move
#include <vector>    // vector

#include <minibert/error.hpp>
#include <minibert/tokenizer/vocab.hpp>

namespace minibert {

/// @brief The WordPiece model's options (the `model` object of a tokenizer.json).
struct wordpiece_options {
  std::string unk_token = "[UNK]";                ///< the token of a word that cannot be tokenized
  std::string continuing_subword_prefix = "##";   ///< marks tokens that continue a word
  std::size_t max_input_chars_per_word = 100;     ///< longer words (in code points) are one unk_token
};

/// @brief WordPiece tokenization of single words, identical to HF's MaxMatch, in time linear in the word.
class wordpiece {
public:
  wordpiece() = default;

  /// @throws minibert::error if the unk token is not in the vocabulary or the prefix is empty
  wordpiece(const vocab& v, wordpiece_options options) : opts_(std::move(options)) {
    MINIBERT_CHECK(!opts_.continuing_subword_prefix.empty(), "wordpiece", "empty continuing_subword_prefix");
    const auto unk = v.find(opts_.unk_token);
    MINIBERT_CHECK(unk.has_value(), "wordpiece", "unk_token '" << opts_.unk_token << "' is not in the vocabulary");
    unk_id_ = *unk;
    build(v);
  }

  /// @brief the options this model was built with
  const wordpiece_options& options() const noexcept { return opts_; }
  /// @brief the id of the unk token
  std::int32_t unk_id() const noexcept { return unk_id_; }

  /// @brief Tokenizes one pre-tokenized, normalized word w[0, n) of n_chars code points. Calls
  /// emit(id, begin, end) for each token, [begin, end) being its bytes in w. Returns false when the word cannot be
  /// tokenized or is longer than max_input_chars_per_word: the caller then discards what was emitted and writes
  /// one unk token for the whole word (as HF does). No allocation.
  template <class Emit>
  bool tokenize(const unsigned char* w, std::size_t n, std::size_t n_chars, Emit&& emit) const {
    if (n_chars > opts_.max_input_chars_per_word) return false;
    const slot* slots = slots_.data();
    const node_info* info = info_.data();
    const pop* pops = pops_.data();
    std::int32_t u = root;
    std::uint32_t start = 0; // bytes of w already emitted as tokens
    for (std::size_t i = 0; i < n; ++i) {
      const unsigned c = w[i];
      for (;;) {
        const std::int32_t t = slots[u].base + static_cast<std::int32_t>(c);
        if (slots[t].check == u) {
          u = t;
          break;
        }
        // No token continues with c: MaxMatch emits F(u) and goes on from f(u).
        const node_info& ni = info[u];
        if (ni.fail < 0) return false;
        for (std::uint32_t k = ni.pop_begin; k < ni.pop_end; ++k) {
          emit(pops[k].id, start, start + pops[k].len);
          start += pops[k].len;
        }
        u = ni.fail;
      }
    }
    while (u != suffix_root) { // the end of the word: pop until nothing is pending
      const node_info& ni = info[u];
      if (ni.fail < 0) return false;
      for (std::uint32_t k = ni.pop_begin; k < ni.pop_end; ++k) {
        emit(pops[k].id, start, start + pops[k].len);
        start += pops[k].len;
      }
      u = ni.fail;
    }
    return true;
  }

private:
  static constexpr std::int32_t root = 0;        // r: every token, as written
  static constexpr std::int32_t suffix_root = 1; // r#: continuation tokens, prefix removed
  static constexpr std::int32_t free_slot = -1;
  static constexpr std::int32_t no_parent = -2;

  struct slot {
    std::int32_t base;  // children of this node sit at base + byte
    std::int32_t check; // the parent of the node in this slot, or free_slot
  };
  struct node_info {
    std::int32_t fail = -1; // f(v): slot of the failure node, or -1 (the word is [UNK])
    std::uint32_t pop_begin = 0, pop_end = 0; // F(v) = pops_[pop_begin, pop_end)
  };
  struct pop {
    std::int32_t id;
    std::uint32_t len; // bytes of the word this token covers
  };

  // Build: a pointer trie, the failure links over it (BFS), then the double array.
  struct trie_node {
    std::vector<std::pair<unsigned char, std::int32_t>> kids; // sorted by byte
    std::int32_t id = -1;    // token id when this node's string is a token of its trie
    std::uint32_t depth = 0; // bytes from its root
  };

  static std::int32_t kid(const std::vector<trie_node>& t, std::int32_t v, unsigned char c) {
    for (const auto& [b, k] : t[static_cast<std::size_t>(v)].kids)
      if (b == c) return k;
    return -1;
  }

  static void insert(std::vector<trie_node>& t, std::int32_t from, const std::string& s, std::size_t skip,
                     std::int32_t id) {
    std::int32_t v = from;
    for (std::size_t i = skip; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      std::int32_t k = kid(t, v, c);
      if (k < 0) {
        k = static_cast<std::int32_t>(t.size());
        trie_node n;
        n.depth = t[static_cast<std::size_t>(v)].depth + 1;
        t.push_back(std::move(n));
        t[static_cast<std::size_t>(v)].kids.emplace_back(c, k);
      }
      v = k;
    }
    t[static_cast<std::size_t>(v)].id = id;
  }

  void build(const vocab& v) {
    const std::string& prefix = opts_.continuing_subword_prefix;
    std::vector<trie_node> t(2);
    for (const auto& [tok, id] : v.pairs()) {
      insert(t, root, tok, 0, id);
      if (tok.size() > prefix.size() && tok.compare(0, prefix.size(), prefix) == 0)
        insert(t, suffix_root, tok, prefix.size(), id);
    }
    for (trie_node& n : t) std::sort(n.kids.begin(), n.kids.end());

    // Failure links and pops in BFS order (parents before children), in trie-node numbering.
    std::vector<std::int32_t> fail(t.size(), -1);
    std::vector<std::pair<std::uint32_t, std::uint32_t>> range(t.size(), {0, 0});
    std::vector<pop> pool;
    std::deque<std::int32_t> queue{root, suffix_root};
    std::vector<std::int32_t> order;
    order.reserve(t.size());
    while (!queue.empty()) {
      const std::int32_t u = queue.front();
      queue.pop_front();
      order.push_back(u);
      for (const auto& [c, vtx] : t[static_cast<std::size_t>(u)].kids) {
        const auto vi = static_cast<std::size_t>(vtx);
        const auto begin = static_cast<std::uint32_t>(pool.size());
        if (t[vi].id >= 0) { // str(v) is a token: emit it, continue from r#
          pool.push_back({t[vi].id, t[vi].depth});
          fail[vi] = suffix_root;
        } else {
          const auto [pb, pe] = range[static_cast<std::size_t>(u)];
          for (std::uint32_t k = pb; k < pe; ++k) pool.push_back(pool[k]);
          std::int32_t z = fail[static_cast<std::size_t>(u)];
          while (z >= 0 && kid(t, z, c) < 0) {
            const auto [zb, ze] = range[static_cast<std::size_t>(z)];
            for (std::uint32_t k = zb; k < ze; ++k) pool.push_back(pool[k]);
            z = fail[static_cast<std::size_t>(z)];
          }
          fail[vi] = z >= 0 ? kid(t, z, c) : -1;
        }
        range[vi] = {begin, static_cast<std::uint32_t>(pool.size())};
        queue.push_back(vtx);
      }
    }

    // Double array: first fit, in BFS order. Slots 0 and 1 hold the two roots. next_free (union-find with path
    // halving) skips occupied slots, so placing a node costs about the number of its children.
    std::vector<std::int32_t> where(t.size(), -1);
    where[root] = 0;
    where[suffix_root] = 1;
    slots_.assign(2 + 512, slot{0, free_slot});
    slots_[0].check = no_parent;
    slots_[1].check = no_parent;
    std::vector<std::uint32_t> next_free(slots_.size());
    for (std::size_t i = 0; i < next_free.size(); ++i) next_free[i] = static_cast<std::uint32_t>(i);
    next_free[0] = 2;
    next_free[1] = 2;
    const auto find_free = [&](std::size_t i) {
      while (next_free[i] != i) {
        next_free[i] = next_free[next_free[i]];
        i = next_free[i];
      }
      return i;
    };
    const auto grow = [&](std::size_t need) {
      if (need < slots_.size()) return;
      const std::size_t old = slots_.size(), size = std::max(need + 512, old * 3 / 2);
      slots_.resize(size, slot{0, free_slot});
      next_free.resize(size);
      for (std::size_t i = old; i < size; ++i) next_free[i] = static_cast<std::uint32_t>(i);
    };
    // Placement in depth-first order keeps a word's path through the trie in nearby cache lines.
    std::vector<std::int32_t> dfs{suffix_root, root};
    std::vector<std::int32_t> placement;
    placement.reserve(t.size());
    while (!dfs.empty()) {
      const std::int32_t u = dfs.back();
      dfs.pop_back();
      placement.push_back(u);
      const auto& kids = t[static_cast<std::size_t>(u)].kids;
      for (auto it = kids.rbegin(); it != kids.rend(); ++it) dfs.push_back(it->second);
    }
    for (const std::int32_t u : placement) {
      const auto& kids = t[static_cast<std::size_t>(u)].kids;
      const std::int32_t su = where[static_cast<std::size_t>(u)];
      if (kids.empty()) continue; // base 0: every lookup lands on a slot whose check is not su
      const std::size_t c0 = kids.front().first;
      for (std::size_t pos = find_free(c0 + 1);; pos = find_free(pos + 1)) {
        grow(pos + 257);
        const std::size_t base = pos - c0;
        bool fits = true;
        for (const auto& [c, vtx] : kids) {
          if (slots_[base + c].check != free_slot) {
            fits = false;
            break;
          }
        }
        if (!fits) continue;
        slots_[static_cast<std::size_t>(su)].base = static_cast<std::int32_t>(base);
        for (const auto& [c, vtx] : kids) {
          slots_[base + c].check = su;
          next_free[base + c] = static_cast<std::uint32_t>(base + c + 1);
          where[static_cast<std::size_t>(vtx)] = static_cast<std::int32_t>(base + c);
        }
        break;
      }
    }
    // Every lookup reads slots[base + byte] with base < size - 256: keep 256 free slots at the end.
    std::size_t used = slots_.size();
    while (used > 2 && slots_[used - 1].check == free_slot) --used;
    slots_.resize(used + 256, slot{0, free_slot});

    info_.assign(slots_.size(), node_info{});
    pops_ = std::move(pool);
    for (std::size_t v = 0; v < t.size(); ++v) {
      node_info& ni = info_[static_cast<std::size_t>(where[v])];
      ni.fail = fail[v] >= 0 ? where[static_cast<std::size_t>(fail[v])] : -1;
      ni.pop_begin = range[v].first;
      ni.pop_end = range[v].second;
    }
  }

  wordpiece_options opts_;
  std::int32_t unk_id_ = 0;
  std::vector<slot> slots_;
  std::vector<node_info> info_;
  std::vector<pop> pops_;
};

} // namespace minibert
