// SPDX-License-Identifier: MIT
#pragma once
/* minibert::detail::torch_unpickler: a minimal, safe pickle machine for the data.pkl of a torch.save'd state dict.
   It implements only the opcodes pickle emits for a state dict (protocol 2, plus the protocol-4 framing ones) and
   resolves only whitelisted globals (collections.OrderedDict, torch._utils._rebuild_tensor_v2 and
   _rebuild_parameter, torch.*Storage) into data; nothing is ever imported or called. Objects live in an arena
   addressed by index, so hostile input cannot cause deep recursion or reference cycles that leak. */

#include <cstddef>       // byte, size_t
#include <cstdint>       // int64_t, uint32_t
#include <cstring>       // memcpy
#include <span>          // span
#include <string>        // string
#include <string_view>   // string_view
#include <utility>       // move
#include <unordered_map> // memo, storages by key
#include <vector>        // vector

#include <minibert/dtype.hpp>
#include <minibert/error.hpp>

namespace minibert {
namespace detail {

/// Most objects one data.pkl may create: 2^22 (about 700 MB of objects at most). A state dict needs about 20 per
/// tensor (bert-base: ~4,000 in all), so this leaves room for 200,000 tensors while a hostile pickle (a million
/// nested lists, a few MB of NONE opcodes) ends with an error, not gigabytes.
inline constexpr std::size_t pickle_max_objects = std::size_t{1} << 22;

enum class pk : std::uint8_t { none, boolean, integer, real, string, tuple, list, dict, global, storage, tensor };

/// One unpickled object. Compound objects refer to others by arena index.
struct pnode {
  pk kind = pk::none;
  std::int64_t i = 0;              // integer/boolean value; tensor: storage offset; storage: numel
  double f = 0;                    // real value
  std::string s, s2;               // string; global: module, name; storage: key, location
  std::vector<std::uint32_t> items; // tuple/list items; dict: key, value, key, value ...; tensor: {storage}
  std::vector<std::int64_t> size, stride; // tensor
  minibert::dtype type = minibert::dtype::f32; // storage element type
};

class torch_unpickler {
public:
  torch_unpickler(std::span<const std::byte> pkl, std::string where, std::string op)
      : p_(pkl), where_(std::move(where)), op_(std::move(op)) {}

  /// Runs the program to STOP; returns the arena index of the result.
  std::uint32_t run();
  const pnode& node(std::uint32_t id) const { return nodes_[id]; }

private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw error(op_, where_ + ": " + msg + " (pickle byte " + std::to_string(op_pos_) + ")");
  }
  const std::byte* take(std::size_t n) {
    if (n > p_.size() - pos_) fail("truncated pickle");
    const std::byte* q = p_.data() + pos_;
    pos_ += n;
    return q;
  }
  template <class U> U take_le() {
    U v;
    std::memcpy(&v, take(sizeof(U)), sizeof(U));
    return v;
  }
  std::string take_str(std::size_t n) {
    const std::byte* q = take(n);
    return std::string(reinterpret_cast<const char*>(q), n);
  }
  std::string take_line() {
    std::string out;
    for (;;) {
      const char c = static_cast<char>(*take(1));
      if (c == '\n') return out;
      out.push_back(c);
    }
  }
  std::uint32_t make(pnode n) {
    if (nodes_.size() >= pickle_max_objects)
      fail("more than " + std::to_string(pickle_max_objects) + " objects (minibert's limit; a state dict needs about 20 "
           "per tensor)");
    nodes_.push_back(std::move(n));
    return static_cast<std::uint32_t>(nodes_.size() - 1);
  }
  void push(std::uint32_t id) { stack_.push_back(id); }
  std::uint32_t pop() {
    if (stack_.size() <= mark_floor()) fail("stack underflow");
    const std::uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::uint32_t top() const {
    if (stack_.size() <= mark_floor()) fail("stack underflow");
    return stack_.back();
  }
  std::size_t mark_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<std::uint32_t> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const std::size_t m = marks_.back();
    marks_.pop_back();
    std::vector<std::uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  std::uint32_t make_tuple(std::vector<std::uint32_t> items) {
    pnode n;
    n.kind = pk::tuple;
    n.items = std::move(items);
    return make(std::move(n));
  }
  std::uint32_t make_global(const std::string& module, const std::string& name);
  std::uint32_t reduce(std::uint32_t callable, std::uint32_t args);
  std::uint32_t persistent_load(std::uint32_t pid);
  std::int64_t as_int(std::uint32_t id, const char* what) const {
    if (nodes_[id].kind != pk::integer) fail(std::string(what) + " is not an integer");
    return nodes_[id].i;
  }
  std::vector<std::int64_t> as_int_tuple(std::uint32_t id, const char* what) const {
    if (nodes_[id].kind != pk::tuple) fail(std::string(what) + " is not a tuple");
    std::vector<std::int64_t> out;
    for (auto it : nodes_[id].items) out.push_back(as_int(it, what));
    return out;
  }

  std::span<const std::byte> p_;
  std::string where_, op_;
  std::size_t pos_ = 0, op_pos_ = 0;
  std::vector<pnode> nodes_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, std::uint32_t> memo_;
  std::unordered_map<std::string, std::uint32_t> storages_;
};

// ------------------------------------------------------------------------------------------------------------------
// implementation

inline bool torch_storage_dtype(std::string_view name, minibert::dtype& out) {
  struct row {
    const char* name;
    minibert::dtype type;
  };
  static constexpr row rows[] = {{"DoubleStorage", dtype::f64}, {"FloatStorage", dtype::f32},
                                 {"HalfStorage", dtype::f16},   {"BFloat16Storage", dtype::bf16},
                                 {"LongStorage", dtype::i64},   {"IntStorage", dtype::i32},
                                 {"ShortStorage", dtype::i16},  {"CharStorage", dtype::i8},
                                 {"ByteStorage", dtype::u8},    {"BoolStorage", dtype::boolean}};
  for (const auto& r : rows)
    if (name == r.name) {
      out = r.type;
      return true;
    }
  return false;
}

inline std::uint32_t torch_unpickler::make_global(const std::string& module, const std::string& name) {
  minibert::dtype t;
  const bool ok = (module == "collections" && name == "OrderedDict") ||
                  (module == "torch._utils" && (name == "_rebuild_tensor_v2" || name == "_rebuild_parameter")) ||
                  (module == "torch" && torch_storage_dtype(name, t));
  if (!ok)
    fail("forbidden global '" + module + "." + name + "': a state dict only needs collections.OrderedDict, "
         "torch._utils._rebuild_tensor_v2/_rebuild_parameter and torch.*Storage, and minibert never runs pickled code");
  pnode n;
  n.kind = pk::global;
  n.s = module;
  n.s2 = name;
  return make(std::move(n));
}

inline std::uint32_t torch_unpickler::persistent_load(std::uint32_t pid) {
  // torch.save's persistent id: ('storage', <torch.XStorage>, key, location, numel)
  const pnode& t = nodes_[pid];
  if (t.kind != pk::tuple || t.items.size() != 5 || nodes_[t.items[0]].kind != pk::string ||
      nodes_[t.items[0]].s != "storage")
    fail("unsupported persistent id (expected ('storage', type, key, location, numel))");
  const pnode& type = nodes_[t.items[1]];
  const pnode& key = nodes_[t.items[2]];
  const pnode& loc = nodes_[t.items[3]];
  minibert::dtype dt;
  if (type.kind != pk::global || type.s != "torch" || !torch_storage_dtype(type.s2, dt))
    fail("persistent id has no torch.*Storage type");
  if (key.kind != pk::string || loc.kind != pk::string) fail("persistent id key/location are not strings");
  const std::int64_t numel = as_int(t.items[4], "storage numel");
  if (numel < 0) fail("negative storage size");
  auto it = storages_.find(key.s);
  if (it != storages_.end()) { // shared storage: the same object, which must agree with itself
    const pnode& s = nodes_[it->second];
    if (s.type != dt || s.i != numel) fail("storage '" + key.s + "' is referenced with different types or sizes");
    return it->second;
  }
  pnode n;
  n.kind = pk::storage;
  n.type = dt;
  n.i = numel;
  n.s = key.s;
  n.s2 = loc.s;
  const std::uint32_t id = make(std::move(n));
  storages_.emplace(nodes_[id].s, id);
  return id;
}

inline std::uint32_t torch_unpickler::reduce(std::uint32_t callable, std::uint32_t args_id) {
  const pnode& c = nodes_[callable];
  if (c.kind != pk::global) fail("REDUCE on something that is not a whitelisted global");
  if (nodes_[args_id].kind != pk::tuple) fail("REDUCE arguments are not a tuple");
  const std::vector<std::uint32_t> args = nodes_[args_id].items; // copy: make() may reallocate nodes_
  const std::string fn = c.s + "." + c.s2;
  if (fn == "collections.OrderedDict") {
    if (!args.empty()) fail("OrderedDict(...) with arguments is not supported");
    pnode n;
    n.kind = pk::dict;
    return make(std::move(n));
  }
  if (fn == "torch._utils._rebuild_tensor_v2") {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (args.size() != 6 && args.size() != 7) fail("_rebuild_tensor_v2 expects 6 or 7 arguments");
    if (nodes_[args[0]].kind != pk::storage) fail("_rebuild_tensor_v2: first argument is not a storage");
    pnode n;
    n.kind = pk::tensor;
    n.items = {args[0]};
    n.i = as_int(args[1], "storage offset");
    n.size = as_int_tuple(args[2], "tensor size");
    n.stride = as_int_tuple(args[3], "tensor stride");
    return make(std::move(n));
  }
  if (fn == "torch._utils._rebuild_parameter") { // (data, requires_grad, backward_hooks): the data is the tensor
    if (args.size() != 3 || nodes_[args[0]].kind != pk::tensor) fail("_rebuild_parameter expects (tensor, bool, hooks)");
    return args[0];
  }
  fail("'" + fn + "' cannot be called");
}

inline std::uint32_t torch_unpickler::run() {
  for (;;) {
    op_pos_ = pos_;
    const auto op = static_cast<std::uint8_t>(*take(1));
    switch (op) {
    case 0x80: { // PROTO
      const auto v = static_cast<std::uint8_t>(*take(1));
      if (v < 2 || v > 5) fail("unsupported pickle protocol " + std::to_string(v));
      break;
    }
    case 0x95: take(8); break; // FRAME (protocol 4): only a length hint
    case '.': {                // STOP
      const std::uint32_t r = pop();
      if (!marks_.empty()) fail("unbalanced MARK at STOP");
      return r;
    }
    case '(': marks_.push_back(stack_.size()); break; // MARK
    case 'N': push(make({})); break;                  // NONE
    case 0x88: case 0x89: {                           // NEWTRUE, NEWFALSE
      pnode n;
      n.kind = pk::boolean;
      n.i = op == 0x88;
      push(make(std::move(n)));
      break;
    }
    case 'J': case 'K': case 'M': case 0x8a: { // BININT, BININT1, BININT2, LONG1
      pnode n;
      n.kind = pk::integer;
      if (op == 'J') n.i = take_le<std::int32_t>();
      else if (op == 'K') n.i = take_le<std::uint8_t>();
      else if (op == 'M') n.i = take_le<std::uint16_t>();
      else {
        const auto len = take_le<std::uint8_t>();
        if (len > 8) fail("LONG1 integer wider than 64 bits");
        std::uint64_t u = 0;
        const std::byte* q = take(len);
        for (unsigned k = 0; k < len; ++k) u |= std::uint64_t(static_cast<std::uint8_t>(q[k])) << (8 * k);
        if (len > 0 && len < 8 && (static_cast<std::uint8_t>(q[len - 1]) & 0x80)) u |= ~std::uint64_t(0) << (8 * len);
        n.i = static_cast<std::int64_t>(u); // two's complement, little-endian
      }
      push(make(std::move(n)));
      break;
    }
    case 'G': { // BINFLOAT: big-endian double
      std::uint64_t u = 0;
      const std::byte* q = take(8);
      for (int k = 0; k < 8; ++k) u = (u << 8) | static_cast<std::uint8_t>(q[k]);
      pnode n;
      n.kind = pk::real;
      std::memcpy(&n.f, &u, 8);
      push(make(std::move(n)));
      break;
    }
    case 'X': case 0x8c: case 0x8d: { // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
      std::uint64_t len = op == 'X' ? take_le<std::uint32_t>() : op == 0x8c ? take_le<std::uint8_t>() : take_le<std::uint64_t>();
      if (len > p_.size()) fail("truncated pickle");
      pnode n;
      n.kind = pk::string;
      n.s = take_str(static_cast<std::size_t>(len));
      push(make(std::move(n)));
      break;
    }
    case 'q': memo_[take_le<std::uint8_t>()] = top(); break;  // BINPUT
    case 'r': memo_[take_le<std::uint32_t>()] = top(); break; // LONG_BINPUT
    case 0x94: {                                               // MEMOIZE: next free index
      const std::uint64_t k = memo_.size();
      memo_[k] = top();
      break;
    }
    case 'h': case 'j': {                                      // BINGET, LONG_BINGET
      const std::uint64_t k = op == 'h' ? take_le<std::uint8_t>() : take_le<std::uint32_t>();
      auto it = memo_.find(k);
      if (it == memo_.end()) fail("memo key " + std::to_string(k) + " not found");
      push(it->second);
      break;
    }
    case 'c': { // GLOBAL "module\nname\n"
      const std::string module = take_line();
      push(make_global(module, take_line()));
      break;
    }
    case 0x93: { // STACK_GLOBAL
      const std::uint32_t name = pop(), module = pop();
      if (nodes_[name].kind != pk::string || nodes_[module].kind != pk::string) fail("STACK_GLOBAL needs two strings");
      push(make_global(nodes_[module].s, nodes_[name].s));
      break;
    }
    case ')': push(make_tuple({})); break;          // EMPTY_TUPLE
    case 't': push(make_tuple(pop_mark())); break;  // TUPLE
    case 0x85: case 0x86: case 0x87: {              // TUPLE1..3
      std::vector<std::uint32_t> items(op - 0x84);
      for (std::size_t k = items.size(); k-- > 0;) items[k] = pop();
      push(make_tuple(std::move(items)));
      break;
    }
    case '}': case ']': { // EMPTY_DICT, EMPTY_LIST
      pnode n;
      n.kind = op == '}' ? pk::dict : pk::list;
      push(make(std::move(n)));
      break;
    }
    case 's': case 'u': { // SETITEM, SETITEMS
      std::vector<std::uint32_t> kv;
      if (op == 's') {
        const std::uint32_t v = pop(), k = pop();
        kv = {k, v};
      } else {
        kv = pop_mark();
        if (kv.size() % 2) fail("SETITEMS with an odd number of items");
      }
      const std::uint32_t d = top();
      if (nodes_[d].kind != pk::dict) fail("SETITEM(S) on something that is not a dict");
      nodes_[d].items.insert(nodes_[d].items.end(), kv.begin(), kv.end());
      break;
    }
    case 'a': case 'e': { // APPEND, APPENDS
      std::vector<std::uint32_t> xs;
      if (op == 'a') xs = {pop()};
      else xs = pop_mark();
      const std::uint32_t l = top();
      if (nodes_[l].kind != pk::list) fail("APPEND(S) on something that is not a list");
      nodes_[l].items.insert(nodes_[l].items.end(), xs.begin(), xs.end());
      break;
    }
    case 'Q': push(persistent_load(pop())); break; // BINPERSID
    case 'R': {                                     // REDUCE
      const std::uint32_t args = pop(), callable = pop();
      push(reduce(callable, args));
      break;
    }
    case 'b': { // BUILD: only the state torch attaches to an OrderedDict (_metadata) or a tensor; ignored
      pop();
      const pk k = nodes_[top()].kind;
      if (k != pk::dict && k != pk::tensor) fail("BUILD on an unsupported object");
      break;
    }
    default: {
      static const char* hex = "0123456789abcdef";
      fail(std::string("unsupported pickle opcode 0x") + hex[op >> 4] + hex[op & 15] +
           " (not one torch.save emits for a state dict)");
    }
    }
  }
}

} // namespace detail
} // namespace minibert
