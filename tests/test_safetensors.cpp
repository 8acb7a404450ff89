// SPDX-License-Identifier: MIT
// safetensors reader/writer (minibert/io/safetensors.hpp) and atomic_file.hpp: files written by the Python reference
// layout (tests/python/safetensors_reference.py), byte-identical writer output, bit-exact round trips, and one case
// per rejection, each checking that the message names the file and the tensor.
#include <doctest/doctest.h>

#include <minibert/io/atomic_file.hpp>
#include <minibert/io/safetensors.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace test_safetensors { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using minibert::dtype;
using minibert::safetensors_entry;
using minibert::safetensors_file;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "io_fixtures" / ("safetensors_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read " << p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void run_python(const std::string& script, const fs::path& outdir) {
  const std::string cmd = std::string("'") + MINIBERT_TEST_PYTHON + "' '" + MINIBERT_TEST_SOURCE_DIR + "/python/" +
                          script + "' '" + outdir.string() + "'";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "failed: " << cmd);
}

// A safetensors file from a header text and a data region; n overrides the header length field.
std::string st_bytes(const std::string& header, const std::string& data, std::int64_t n = -1) {
  const std::uint64_t len = n < 0 ? header.size() : static_cast<std::uint64_t>(n);
  std::string out(8, '\0');
  std::memcpy(out.data(), &len, 8);
  return out + header + data;
}

// what() of the minibert::error thrown by f, or "" if none
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const minibert::error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Writes a file, opens it, and returns the error message (which must exist).
std::string open_error(const std::string& case_name, const std::string& bytes, fs::path* where = nullptr) {
  const fs::path p = fresh_dir(case_name) / "bad.safetensors";
  spit(p, bytes);
  if (where) *where = p;
  const std::string msg = error_of([&] { safetensors_file::open(p); });
  REQUIRE_MESSAGE(!msg.empty(), case_name << ": the file was accepted");
  CHECK_MESSAGE(has(msg, p.string()), msg);
  CHECK_MESSAGE(has(msg, "[minibert.safetensors]"), msg);
  return msg;
}

const std::string f32x2 = std::string(8, '\x01'); // 2 floats of data

} // namespace

TEST_CASE("safetensors: reads the Python reference file exactly (values, dtypes, shapes, metadata)") {
  const fs::path d = fresh_dir("reference_read");
  run_python("safetensors_reference.py", d);
  const auto f = safetensors_file::open(d / "reference.safetensors");
  const auto manifest = nlohmann::json::parse(slurp(d / "manifest.json"));
  CHECK(f.names().size() == manifest.size());
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("source") == "minibert \xc3\xa9 test");
  for (const auto& m : manifest) {
    const std::string name = m["name"];
    CAPTURE(name);
    REQUIRE(f.contains(name));
    const auto& ti = f.info(name);
    CHECK(std::string(minibert::dtype_name(ti.dtype)) == m["dtype"].get<std::string>());
    CHECK(ti.shape == m["shape"].get<std::vector<std::int64_t>>());
    const std::string raw = slurp(d / m["raw"].get<std::string>());
    REQUIRE(ti.bytes.size() == raw.size());
    CHECK((raw.empty() || std::memcmp(ti.bytes.data(), raw.data(), raw.size()) == 0));
    if (ti.dtype == dtype::f32 || ti.dtype == dtype::f16 || ti.dtype == dtype::bf16 || ti.dtype == dtype::f64) {
      const std::string f64 = slurp(d / m["f64"].get<std::string>());
      std::vector<double> want(f64.size() / 8);
      if (!f64.empty()) std::memcpy(want.data(), f64.data(), f64.size());
      std::vector<double> got(want.size());
      std::vector<float> gotf(want.size());
      f.read<double>(name, got.data(), ti.shape);
      f.read<float>(name, gotf.data(), ti.shape);
      for (std::size_t i = 0; i < want.size(); ++i) {
        if (std::isnan(want[i])) {
          CHECK(std::isnan(got[i]));
          CHECK(std::isnan(gotf[i]));
        } else {
          CHECK(got[i] == want[i]); // every F16/BF16/F32 value is exact in double
          CHECK(gotf[i] == static_cast<float>(want[i]));
        }
      }
    } else if (ti.dtype == dtype::i64) {
      const auto ids = f.read_vector<std::int64_t>(name);
      for (std::size_t i = 0; i < ids.size(); ++i) CHECK(ids[i] == static_cast<std::int64_t>(i)); // torch.arange
    }
  }
}

TEST_CASE("safetensors: writer output is byte-identical to the reference layout") {
  const fs::path d = fresh_dir("byte_identical");
  run_python("safetensors_reference.py", d);
  const auto ref = safetensors_file::open(d / "reference.safetensors");
  // Feed the writer in reverse file order: it must sort (dtype alignment, then name) itself.
  std::vector<safetensors_entry> entries;
  for (auto it = ref.names().rbegin(); it != ref.names().rend(); ++it) {
    const auto& ti = ref.info(*it);
    entries.push_back({*it, ti.dtype, ti.shape, ti.bytes.data()});
  }
  minibert::save_safetensors(d / "minibert.safetensors", entries, ref.metadata());
  const std::string want = slurp(d / "reference.safetensors"), got = slurp(d / "minibert.safetensors");
  CHECK(got.size() == want.size());
  CHECK_MESSAGE(got == want, "header minibert: " << got.substr(8, 200) << "\nheader reference: " << want.substr(8, 200));
}

TEST_CASE_TEMPLATE("safetensors: bit-exact round trip", T, float, double, minibert::half, minibert::bfloat16) {
  constexpr dtype dt = minibert::dtype_v<T>;
  using bits_t = std::conditional_t<sizeof(T) == 2, std::uint16_t, std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
  // every 16-bit pattern for F16/BF16 (NaNs, infinities, subnormals, -0); random patterns otherwise
  std::vector<bits_t> bits(sizeof(T) == 2 ? 65536 : 4096);
  std::mt19937_64 rng(7);
  for (std::size_t i = 0; i < bits.size(); ++i) bits[i] = sizeof(T) == 2 ? static_cast<bits_t>(i) : static_cast<bits_t>(rng());
  if constexpr (sizeof(T) == 4) bits[0] = 0x7fc00001u, bits[1] = 0x80000000u, bits[2] = 0x00000001u;
  const std::vector<bits_t> small = {bits[3], bits[4], bits[5]};
  const fs::path p = fresh_dir(std::string("roundtrip_") + minibert::dtype_name(dt)) / "rt.safetensors";
  const std::vector<safetensors_entry> entries = {
      {"all", dt, {static_cast<std::int64_t>(bits.size() / 16), 16}, bits.data()},
      {"small", dt, {3}, small.data()},
      {"none", dt, {2, 0}, nullptr}};
  minibert::save_safetensors(p, entries);
  const auto f = safetensors_file::open(p);
  REQUIRE(f.names().size() == 3);
  const auto& ti = f.info("all");
  CHECK(ti.dtype == dt);
  CHECK(ti.shape == entries[0].shape);
  REQUIRE(ti.bytes.size() == bits.size() * sizeof(T));
  CHECK(std::memcmp(ti.bytes.data(), bits.data(), ti.bytes.size()) == 0);
  std::vector<T> back(bits.size());
  f.read<T>("all", back.data(), entries[0].shape); // same dtype: a bit copy
  CHECK(std::memcmp(back.data(), bits.data(), ti.bytes.size()) == 0);
  std::vector<double> wide(bits.size());
  f.read<double>("all", wide.data(), entries[0].shape);
  for (std::size_t i = 0; i < bits.size(); ++i) {
    const T v = std::bit_cast<T>(bits[i]);
    const double want = static_cast<double>(static_cast<std::conditional_t<std::is_same_v<T, double>, double, float>>(v));
    CHECK((std::isnan(want) ? std::isnan(wide[i]) : wide[i] == want));
  }
  CHECK(f.info("none").bytes.empty());
  std::vector<T> s(3);
  f.read<T>("small", s.data(), {3});
  CHECK(std::memcmp(s.data(), small.data(), 3 * sizeof(T)) == 0);
}

TEST_CASE("safetensors: rejects a truncated file") {
  const std::string good = st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f32x2);
  const std::string msg = open_error("truncated", good.substr(0, good.size() - 3));
  CHECK(has(msg, "tensor 'w'"));
  CHECK(has(msg, "out of range"));
  CHECK(has(open_error("truncated_tiny", good.substr(0, 5)), "truncated"));
}

TEST_CASE("safetensors: rejects an absurd header length") {
  const std::string hdr = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  CHECK(has(open_error("hdr_past_eof", st_bytes(hdr, f32x2, 4096)), "exceeds the file size"));
  CHECK(has(open_error("hdr_100mb", st_bytes(hdr, f32x2, 100'000'001)), "100 MB"));
  CHECK(has(open_error("hdr_2e64", st_bytes(hdr, f32x2, INT64_MAX)), "100 MB"));
}

TEST_CASE("safetensors: rejects an empty or malformed JSON header") {
  CHECK(has(open_error("hdr_zero", st_bytes("", f32x2, 0)), "not a JSON object"));
  CHECK(has(open_error("hdr_malformed", st_bytes(R"({"w":{"dtype":"F32","shape":[2],)", "")), "not valid JSON"));
  CHECK(has(open_error("hdr_array", st_bytes("[1, 2]  ", "")), "not a JSON object"));
  CHECK(has(open_error("hdr_nul_pad", st_bytes(std::string("{}") + '\0', "")), "not valid JSON"));
}

TEST_CASE("safetensors: a header nested 100k deep, or with a number past a double, is refused") {
  // fuzzing reproducer: the bad shape's message dump()ed it recursively and overflowed the stack
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  CHECK(has(open_error("hdr_deep", st_bytes(R"({"w":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,8]}})", f32x2)),
            "JSON nested deeper than 256 levels"));
  const std::string big = open_error("hdr_1e999", st_bytes(R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,8]}})", f32x2));
  CHECK(has(big, "header is not valid JSON"));
  CHECK(has(big, "1e999"));
}

TEST_CASE("safetensors: rejects offsets out of range") {
  const std::string msg = open_error(
      "offsets_range", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", f32x2));
  CHECK(has(msg, "tensor 'b'"));
  CHECK(has(msg, "data_offsets [8, 16] out of range"));
  const std::string rev = open_error("offsets_reversed", st_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", f32x2));
  CHECK(has(rev, "tensor 'a'"));
  CHECK(has(rev, "end is before begin"));
}

TEST_CASE("safetensors: a header that claims terabytes is refused before anything is read or allocated") {
  // 2^21 x 2^20 float32 = 8 TiB, in a file of a few hundred bytes: the offsets are checked against the file size
  const std::string msg = open_error(
      "terabytes", st_bytes(R"({"w":{"dtype":"F32","shape":[2097152,1048576],"data_offsets":[0,8796093022208]}})", f32x2));
  CHECK(has(msg, "tensor 'w'"));
  CHECK(has(msg, "data_offsets [0, 8796093022208] out of range: the data region has 8 bytes"));
}

TEST_CASE("safetensors: rejects overlapping tensors") {
  const std::string msg = open_error(
      "overlap", st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f32x2));
  CHECK(has(msg, "tensor 'b'"));
  CHECK(has(msg, "overlap tensor 'a'"));
}

TEST_CASE("safetensors: rejects a hole in the data region") {
  const std::string mid = open_error(
      "hole_middle", st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                              std::string(12, '\0')));
  CHECK(has(mid, "tensor 'b'"));
  CHECK(has(mid, "hole"));
  const std::string tail = open_error("hole_tail", st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", f32x2));
  CHECK(has(tail, "tensor 'a'"));
  CHECK(has(tail, "data bytes [4, 8)"));
  const std::string head = open_error("hole_head", st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f32x2));
  CHECK(has(head, "tensor 'a'"));
  CHECK(has(head, "hole"));
}

TEST_CASE("safetensors: rejects a size that does not match shape and dtype") {
  const std::string msg = open_error("size_mismatch", st_bytes(R"({"w":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", f32x2));
  CHECK(has(msg, "tensor 'w'"));
  CHECK(has(msg, "shape [3] of F16 needs 6 bytes"));
}

TEST_CASE("safetensors: rejects an unknown dtype") {
  const std::string msg = open_error("dtype", st_bytes(R"({"w":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", f32x2));
  CHECK(has(msg, "tensor 'w'"));
  CHECK(has(msg, "dtype 'F31'"));
}

TEST_CASE("safetensors: rejects a duplicate tensor name") {
  const std::string msg = open_error(
      "duplicate", st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", f32x2));
  CHECK(has(msg, "tensor 'w'"));
  CHECK(has(msg, "duplicate"));
}

TEST_CASE("safetensors: rejects malformed tensor entries and metadata") {
  struct bad_case {
    const char* header;
    const char* tensor;
    const char* says;
  };
  const bad_case cases[] = {
      {R"({"w":{"shape":[2],"data_offsets":[0,8]}})", "w", "'dtype'"},
      {R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", "w", "'shape'"},
      {R"({"w":{"dtype":"F32","shape":[2]}})", "w", "'data_offsets'"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "w", "non-negative"},
      {R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", "w", "non-negative"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", "w", "'data_offsets'"},
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", "w", "overflows"},
      {R"({"w":[1,2]})", "w", "not a JSON object"},
      {R"({"__metadata__":{"k":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "", "'k' is not a string"},
  };
  int i = 0;
  for (const auto& c : cases) {
    CAPTURE(c.header);
    const std::string msg = open_error("malformed_" + std::to_string(i++), st_bytes(c.header, f32x2));
    if (*c.tensor) CHECK(has(msg, std::string("tensor '") + c.tensor + "'"));
    CHECK_MESSAGE(has(msg, c.says), msg);
  }
}

TEST_CASE("safetensors: read with a wrong expected shape names the tensor and both shapes") {
  const fs::path p = fresh_dir("wrong_shape") / "w.safetensors";
  const std::vector<float> v(6, 1.0f);
  minibert::save_safetensors(p, std::vector<safetensors_entry>{{"enc.w", dtype::f32, {2, 3}, v.data()}});
  const auto f = safetensors_file::open(p);
  std::vector<float> dst(6);
  const std::string msg = error_of([&] { f.read<float>("enc.w", dst.data(), {3, 2}); });
  CHECK(has(msg, p.string()));
  CHECK(has(msg, "tensor 'enc.w'"));
  CHECK(has(msg, "[2, 3]"));
  CHECK(has(msg, "[3, 2]"));
  CHECK(has(error_of([&] { f.read<float>("enc.w", dst.data(), {6}); }), "expected [6]"));
  CHECK(has(error_of([&] { f.read<float>("missing", dst.data(), {6}); }), "tensor 'missing': not found"));
  CHECK(has(error_of([&] { f.read<std::int64_t>("enc.w", nullptr, {2, 3}); }), "stored as F32"));
  f.read<float>("enc.w", dst.data(), {2, 3});
  CHECK(dst == v);
}

TEST_CASE("safetensors: writer rejects bad entries and leaves the old file alone") {
  const fs::path p = fresh_dir("writer_errors") / "w.safetensors";
  spit(p, "old contents");
  const float x[2] = {1, 2};
  auto save = [&](std::vector<safetensors_entry> e) { return error_of([&] { minibert::save_safetensors(p, e); }); };
  CHECK(has(save({{"a", dtype::f32, {2}, x}, {"a", dtype::f32, {2}, x}}), "tensor 'a': duplicate"));
  CHECK(has(save({{"__metadata__", dtype::f32, {2}, x}}), "reserved"));
  CHECK(has(save({{"n", dtype::f32, {-1}, x}}), "tensor 'n': negative"));
  CHECK(has(save({{"z", dtype::f32, {2}, nullptr}}), "tensor 'z': data is null"));
  CHECK(slurp(p) == "old contents");
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(p.parent_path())) ++files;
  CHECK(files == 1);
}

TEST_CASE("atomic_write: replaces the file, and on failure keeps the old one and removes the temporary") {
  const fs::path d = fresh_dir("atomic");
  const fs::path p = d / "report.txt";
  minibert::atomic_write_bytes(p, std::string_view("first\n"));
  CHECK(slurp(p) == "first\n");
  CHECK_THROWS_WITH_AS(minibert::atomic_write(p, [](std::ostream& os) {
                         os << "partial";
                         throw std::runtime_error("writer failed");
                       }),
                       "writer failed", std::runtime_error);
  CHECK(slurp(p) == "first\n");
  std::vector<fs::path> left;
  for (const auto& e : fs::directory_iterator(d)) left.push_back(e.path());
  CHECK(left == std::vector<fs::path>{p});
  std::string big(3 << 20, 'x'); // larger than the stream buffer
  big[12345] = 'y';
  minibert::atomic_write(p, [&](std::ostream& os) { os << big; });
  CHECK(slurp(p) == big);
  const std::string msg = error_of([&] { minibert::atomic_write_bytes(d / "no_such_dir" / "f", std::string_view("x")); });
  CHECK(has(msg, (d / "no_such_dir" / "f").string()));
  CHECK(has(msg, "No such file or directory"));
}

} // namespace test_safetensors
