// SPDX-License-Identifier: MIT
// torch.save reader (minibert/io/torch_checkpoint.hpp) and format dispatch (minibert/io/checkpoint.hpp).
// Fixtures come from real torch (tests/python/torch_fixtures.py): every tensor minibert reads must equal, element for
// element, the contiguous copy torch wrote into expected.safetensors; hostile and foreign files must be refused.
#include <doctest/doctest.h>

#include <minibert/io/checkpoint.hpp>
#include <minibert/io/torch_checkpoint.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace test_torch_checkpoint { // each test file in its own namespace: a test group compiles as one unit

namespace fs = std::filesystem;
using minibert::checkpoint;
using minibert::dtype;
using minibert::torch_checkpoint;

namespace {

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

// Runs torch_fixtures.py into a directory of this test case's own (ctest runs cases in parallel processes).
fs::path fixtures(const std::string& case_name) {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "io_fixtures" / ("torch_" + case_name);
  fs::remove_all(d);
  fs::create_directories(d);
  const std::string cmd = std::string("'") + MINIBERT_TEST_PYTHON + "' '" + MINIBERT_TEST_SOURCE_DIR +
                          "/python/torch_fixtures.py' '" + d.string() + "'";
  REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "failed: " << cmd);
  return d;
}

template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const minibert::error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Every tensor of `got` equals the same-named tensor of `want`, in its own dtype (bit for bit) and as double.
void check_same_tensors(const minibert::tensor_reader& got, const minibert::tensor_reader& want) {
  for (const auto& name : want.names()) {
    CAPTURE(name);
    REQUIRE(got.contains(name));
    const auto& g = got.info(name);
    const auto& w = want.info(name);
    CHECK(g.dtype == w.dtype);
    CHECK(g.shape == w.shape);
    const std::size_t n = static_cast<std::size_t>(w.numel());
    if (w.dtype == dtype::i64) {
      CHECK(got.read_vector<std::int64_t>(name) == want.read_vector<std::int64_t>(name));
      continue;
    }
    CHECK(got.read_vector<double>(name) == want.read_vector<double>(name)); // no NaNs in these fixtures
    const auto gf = got.read_vector<float>(name), wf = want.read_vector<float>(name);
    CHECK(gf == wf);
    std::vector<unsigned char> gb(n * minibert::dtype_size(w.dtype)), wb(gb.size());
    switch (w.dtype) { // same-dtype reads copy the stored bits
    case dtype::f16:
      got.read(name, reinterpret_cast<minibert::half*>(gb.data()), std::span<const std::int64_t>(w.shape));
      want.read(name, reinterpret_cast<minibert::half*>(wb.data()), std::span<const std::int64_t>(w.shape));
      break;
    case dtype::bf16:
      got.read(name, reinterpret_cast<minibert::bfloat16*>(gb.data()), std::span<const std::int64_t>(w.shape));
      want.read(name, reinterpret_cast<minibert::bfloat16*>(wb.data()), std::span<const std::int64_t>(w.shape));
      break;
    default: break;
    }
    CHECK(gb == wb);
  }
}

} // namespace

TEST_CASE("torch_checkpoint: reads every tensor torch.save wrote (dtypes, views, shared storage, 0-dim)") {
  const fs::path d = fixtures("read_values");
  const auto ck = torch_checkpoint::open(d / "pytorch_model.bin");
  const auto want = minibert::safetensors_file::open(d / "expected.safetensors");
  CHECK(ck.archive_name() == "pytorch_model"); // torch names the zip's top folder after the file
  const auto names = nlohmann::json::parse(slurp(d / "names.json")).get<std::vector<std::string>>();
  CHECK(ck.names() == names); // state-dict order
  check_same_tensors(ck, want);

  // the layout torch recorded is kept: views are strided and share one storage
  const auto& tr = ck.info("transposed");
  CHECK_FALSE(tr.is_contiguous());
  CHECK(tr.strides == std::vector<std::int64_t>{1, 4});
  const auto& full = ck.info("shared.full");
  const auto& slice = ck.info("shared.slice");
  const auto& block = ck.info("shared.block");
  CHECK(slice.bytes.data() == full.bytes.data() + 2 * 4);
  CHECK(block.bytes.data() == full.bytes.data() + 5 * 4);
  CHECK(ck.info("scalar").shape.empty());
  CHECK(ck.info("scalar").numel() == 1);
  CHECK(ck.info("empty").numel() == 0);
  CHECK(ck.info("half").dtype == dtype::f16);
  CHECK(ck.info("bf16").dtype == dtype::bf16);
  float s = 0;
  ck.read<float>("scalar", &s, std::span<const std::int64_t>());
  CHECK(s == 2.5f); // torch.tensor(2.5) in the fixture

  // the same archive with ZIP64 extra fields in every central-directory entry, entries not aligned
  const auto z64 = torch_checkpoint::open(d / "zip64.bin");
  CHECK(z64.names() == names);
  check_same_tensors(z64, want);
}

TEST_CASE("checkpoint: open() picks the reader by content, open_dir() prefers model.safetensors") {
  const fs::path d = fixtures("dispatch");
  const fs::path torch_renamed = d / "weights.safetensors"; // extension lies: content decides
  fs::copy_file(d / "pytorch_model.bin", torch_renamed);
  const auto a = checkpoint::open(torch_renamed);
  CHECK(std::string(a.format()) == "torch");
  const auto b = checkpoint::open(d / "expected.safetensors");
  CHECK(std::string(b.format()) == "safetensors");
  check_same_tensors(a.reader(), b.reader());

  const fs::path dir = d / "model";
  fs::create_directories(dir);
  const std::string none = error_of([&] { checkpoint::open_dir(dir); });
  CHECK(has(none, dir.string()));
  CHECK(has(none, "model.safetensors"));
  CHECK(has(none, "pytorch_model.bin"));
  fs::copy_file(d / "pytorch_model.bin", dir / "pytorch_model.bin");
  CHECK(std::string(checkpoint::open_dir(dir).format()) == "torch");
  fs::copy_file(d / "expected.safetensors", dir / "model.safetensors");
  CHECK(std::string(checkpoint::open_dir(dir).format()) == "safetensors");
  std::vector<float> w(12);
  checkpoint::open_dir(dir).read<float>("encoder.layer.0.attention.self.query.weight", w.data(), {4, 3});
  CHECK(w == b.read_vector<float>("encoder.layer.0.attention.self.query.weight"));

  // a safetensors header of length 0x80 starts with byte 0x80, like a legacy torch pickle: content still decides
  std::string hdr = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  hdr.resize(0x80, ' ');
  spit(d / "len128.safetensors", std::string("\x80\0\0\0\0\0\0\0", 8) + hdr + std::string("\0\0\x80\x3f", 4));
  const auto st128 = checkpoint::open(d / "len128.safetensors");
  CHECK(std::string(st128.format()) == "safetensors");
  CHECK(st128.read_vector<float>("w") == std::vector<float>{1.0f});

  spit(d / "junk.bin", "this is not a checkpoint");
  const std::string junk = error_of([&] { checkpoint::open(d / "junk.bin"); });
  CHECK(has(junk, (d / "junk.bin").string()));
  CHECK(has(junk, "neither"));
  CHECK(has(error_of([&] { checkpoint::open(d / "missing.bin"); }), "no such file"));
}

TEST_CASE("torch_checkpoint: rejects a truncated zip") {
  const fs::path d = fixtures("truncated");
  const std::string whole = slurp(d / "pytorch_model.bin");
  for (std::size_t keep : {whole.size() / 2, whole.size() - 10, std::size_t(10)}) {
    CAPTURE(keep);
    spit(d / "cut.bin", whole.substr(0, keep));
    const std::string msg = error_of([&] { torch_checkpoint::open(d / "cut.bin"); });
    CHECK(has(msg, (d / "cut.bin").string()));
    CHECK_MESSAGE((has(msg, "truncated") || has(msg, "corrupt")), msg);
  }
}

TEST_CASE("torch_checkpoint: refuses a pickle with a forbidden global and never runs it") {
  const fs::path d = fixtures("forbidden_global");
  const std::string msg = error_of([&] { torch_checkpoint::open(d / "forbidden_global.bin"); });
  CHECK(has(msg, (d / "forbidden_global.bin").string()));
  CHECK(has(msg, "forbidden global 'os.system'"));
  CHECK_FALSE(fs::exists(d / "PWNED"));
}

TEST_CASE("torch_checkpoint: refuses compressed entries") {
  const fs::path d = fixtures("compressed");
  const std::string msg = error_of([&] { torch_checkpoint::open(d / "compressed.bin"); });
  CHECK(has(msg, (d / "compressed.bin").string()));
  CHECK(has(msg, "is compressed (method 8)"));
}

TEST_CASE("torch_checkpoint: refuses the legacy format, non-state-dicts and corrupted data") {
  const fs::path d = fixtures("other_rejections");
  const std::string legacy = error_of([&] { checkpoint::open(d / "legacy.bin"); });
  CHECK(has(legacy, (d / "legacy.bin").string()));
  CHECK(has(legacy, "re-save it with torch >= 1.6"));
  const std::string be = error_of([&] { torch_checkpoint::open(d / "big_endian.bin"); });
  CHECK(has(be, (d / "big_endian.bin").string()));
  CHECK(has(be, "'big' byte order"));
  const std::string nsd = error_of([&] { torch_checkpoint::open(d / "not_a_state_dict.bin"); });
  CHECK(has(nsd, "tensor 'a'"));
  CHECK(has(nsd, "not a tensor"));

  // flip one bit inside a storage: the CRC-32 recorded in the zip catches it
  std::string bytes = slurp(d / "pytorch_model.bin");
  std::size_t at = std::string::npos;
  {
    const auto ck = torch_checkpoint::open(d / "pytorch_model.bin");
    const auto& b = ck.info("double").bytes; // 3 random doubles: unique in the file
    at = bytes.find(std::string(reinterpret_cast<const char*>(b.data()), b.size()));
    REQUIRE(at != std::string::npos);
  }
  bytes[at + 3] ^= 0x10;
  spit(d / "flipped.bin", bytes);
  const std::string crc = error_of([&] { torch_checkpoint::open(d / "flipped.bin"); });
  CHECK(has(crc, "CRC-32 mismatch"));

  // wrong expected shape names the tensor and both shapes
  const auto ck = torch_checkpoint::open(d / "pytorch_model.bin");
  std::vector<float> dst(12);
  const std::string shape = error_of([&] { ck.read<float>("transposed", dst.data(), {3, 4}); });
  CHECK(has(shape, "tensor 'transposed'"));
  CHECK(has(shape, "[4, 3]"));
  CHECK(has(shape, "[3, 4]"));
}

TEST_CASE("torch_checkpoint: refuses a storage count whose byte size overflows 64 bits") {
  // fuzzing reproducer: 2^62 + 1 float32 elements over a 4-byte record; the unchecked product wrapped to 4, so the
  // tensor's bytes were a 4-byte span behind a shape of 2^62 + 1 elements (read<T>() ran past the map)
  const fs::path d = fixtures("huge_storage");
  const std::string msg = error_of([&] { torch_checkpoint::open(d / "huge_storage.bin"); });
  CHECK_MESSAGE(has(msg, "[minibert.torch_checkpoint]"), msg);
  CHECK(has(msg, (d / "huge_storage.bin").string()));
  CHECK(has(msg, "tensor 'w'"));
  CHECK(has(msg, "storage 'archive/data/0'"));
  CHECK(has(msg, "4611686018427387905 elements of F32"));
  CHECK(has(msg, "overflow"));
}

namespace {

// A torch-like zip of stored entries, written by hand (local headers, central directory, end record): what the
// hostile-input cases below put around their data.pkl.
std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, directory;
  const auto le = [](std::string& s, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  for (const auto& [name, data] : entries) {
    const auto crc = minibert::detail::crc32(std::as_bytes(std::span<const char>(data.data(), data.size())));
    const std::uint64_t offset = out.size();
    le(out, 0x04034b50, 4), le(out, 20, 2), le(out, 0, 2), le(out, 0, 2), le(out, 0, 4), le(out, crc, 4);
    le(out, data.size(), 4), le(out, data.size(), 4), le(out, name.size(), 2), le(out, 0, 2);
    out += name + data;
    le(directory, 0x02014b50, 4), le(directory, 20, 2), le(directory, 20, 2), le(directory, 0, 2);
    le(directory, 0, 2), le(directory, 0, 4), le(directory, crc, 4), le(directory, data.size(), 4);
    le(directory, data.size(), 4), le(directory, name.size(), 2), le(directory, 0, 2), le(directory, 0, 2);
    le(directory, 0, 2), le(directory, 0, 2), le(directory, 0, 4), le(directory, offset, 4);
    directory += name;
  }
  const std::uint64_t cd_offset = out.size();
  out += directory;
  le(out, 0x06054b50, 4), le(out, 0, 2), le(out, 0, 2), le(out, entries.size(), 2), le(out, entries.size(), 2);
  le(out, directory.size(), 4), le(out, cd_offset, 4), le(out, 0, 2);
  return out;
}

} // namespace

TEST_CASE("torch_checkpoint: a pickle nesting a million levels, or making too many objects, ends in bounded time") {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "io_fixtures" / "torch_pickle_limits";
  fs::remove_all(d);
  fs::create_directories(d);
  // PROTO 2, a million EMPTY_LISTs, a million APPENDs (each list into the one below it), STOP: lists nested 10^6 deep.
  // The machine keeps objects in an arena (no recursion), so this is a data.pkl that is no state dict.
  const std::string nested = "\x80\x02" + std::string(1'000'000, ']') + std::string(999'999, 'a') + ".";
  spit(d / "nested.bin", stored_zip({{"archive/data.pkl", nested}}));
  const std::string msg = error_of([&] { torch_checkpoint::open(d / "nested.bin"); });
  CHECK_MESSAGE(has(msg, (d / "nested.bin").string() + ": data.pkl does not hold a dict"), msg);
  // 2^22 + 1 NONEs: past the object limit, refused while running rather than after growing without bound
  const std::string nones = "\x80\x02" + std::string(minibert::detail::pickle_max_objects + 1, 'N') + ".";
  spit(d / "nones.bin", stored_zip({{"archive/data.pkl", nones}}));
  const std::string many = error_of([&] { torch_checkpoint::open(d / "nones.bin"); });
  CHECK_MESSAGE(has(many, (d / "nones.bin").string() + ": archive/data.pkl: more than 4194304 objects"), many);
  CHECK_MESSAGE(has(many, "pickle byte 4194306"), many); // the opcode that would make object 2^22 + 1
}

TEST_CASE("torch_checkpoint: a zip bomb (1 GiB of storage deflated to 1 MB) is refused without inflating it") {
  const fs::path d = fs::path(MINIBERT_TEST_BINARY_DIR) / "io_fixtures" / "torch_zip_bomb";
  fs::remove_all(d);
  fs::create_directories(d);
  const fs::path bomb = d / "bomb.bin";
  const std::string write = std::string("'") + MINIBERT_TEST_PYTHON + "' '" + MINIBERT_TEST_SOURCE_DIR +
                            "/python/torch_fixtures.py' --zip-bomb '" + bomb.string() + "'";
  REQUIRE_MESSAGE(std::system(write.c_str()) == 0, "failed: " << write);
  CHECK(fs::file_size(bomb) < 4'000'000);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg = error_of([&] { torch_checkpoint::open(bomb); });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK_MESSAGE(has(msg, bomb.string()), msg);
  CHECK_MESSAGE(has(msg, "zip entry 'archive/data/0' is compressed (method 8)"), msg);
  CHECK_MESSAGE(seconds < 5, seconds << " s: was it inflated?");
}

} // namespace test_torch_checkpoint
