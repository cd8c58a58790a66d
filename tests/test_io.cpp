// NPY and safetensors files (include/ember/io/).
//
// The io_ref_* files in tests/data were written by numpy and PyTorch
// (tests/data/make_io_reference.py); the literals below are the values that script uses.
// The test case "npy and safetensors files for Python" writes ember's versions of the same
// files into $EMBER_IO_EXPORT_DIR, which `make_io_reference.py check DIR` loads in Python.
#include <doctest/doctest.h>

#include <ember/ember.hpp>
#include <ember/io/io.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

using namespace ember;
namespace fs = std::filesystem;

namespace {

// The reference files (tests/data), named by ctest in EMBER_TEST_DATA_DIR. Run by hand, the
// test program needs the variable set: `EMBER_TEST_DATA_DIR=tests/data build/release/tests/ember_tests`.
fs::path reference_dir() {
    const char* dir = std::getenv("EMBER_TEST_DATA_DIR");
    if (dir == nullptr || *dir == '\0')
        throw std::runtime_error("EMBER_TEST_DATA_DIR is not set: it names the directory of the reference files, tests/data");
    return dir;
}

// A fresh directory under the system's temporary directory, removed with its contents.
struct TempDir {
    fs::path path;
    TempDir() {
        static std::atomic<int> count{0};
        const std::string name = "ember_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(count++) + "_" +
                                 std::to_string(std::random_device{}());
        path = fs::temp_directory_path() / name;
        REQUIRE(fs::create_directory(path));
    }
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    fs::path operator/(const std::string& name) const { return path / name; }
    // Names of the files in the directory, sorted (hidden temporaries included).
    std::vector<std::string> listing() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
};

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE(in);
    return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}
std::string to_string(const std::vector<std::byte>& b) { return std::string(reinterpret_cast<const char*>(b.data()), b.size()); }
std::span<const std::byte> as_bytes(const std::string& s) { return std::as_bytes(std::span(s.data(), s.size())); }

// The message of the ember::Error that f throws ("no error" if none).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "no error";
}

template <class T>
std::vector<T> values_of(const Tensor<T>& t) {
    return t.to_vector();
}

// What a value becomes after a trip through `dtype`.
template <class U, class T>
U through(DType dtype, T v) {
    switch (dtype) {
        case DType::F32: return static_cast<U>(static_cast<float>(v));
        case DType::F64: return static_cast<U>(static_cast<double>(v));
        case DType::U8: return static_cast<U>(std::lround(v));
    }
    return U(0);
}

// Test tensors: one per rank 0-4 and two with a zero dimension. Values are integers in
// [0, 255] for uint8 and fractions otherwise, so that conversions are visible.
template <class T>
std::vector<Tensor<T>> sample_tensors(DType dtype) {
    std::vector<Tensor<T>> out;
    for (const Shape& s : {Shape{}, Shape{5}, Shape{2, 3}, Shape{2, 1, 3}, Shape{2, 3, 1, 2}, Shape{0, 3}, Shape{3, 0, 2}}) {
        Tensor<T> t = Tensor<T>::empty(s);
        for (Index i = 0; i < t.numel(); ++i)
            t.data()[i] = dtype == DType::U8 ? static_cast<T>((i * 37 + 11) % 256) : static_cast<T>((i - 3) * 0.37 + 1.0 / 3);
        out.push_back(t);
    }
    return out;
}

constexpr DType kAllDtypes[] = {DType::F32, DType::F64, DType::U8};

// ---- the reference values (as in make_io_reference.py) ----------------------------------

struct Expected {
    std::string name;
    Shape shape;
    std::vector<double> values;
};
const std::vector<Expected> kNpyExpected = {
    {"f32_2x3", {2, 3}, {1.5, -2.25, 3.0, 0.0, static_cast<double>(0.1f), -7.0}},
    {"f64_scalar", {}, {3.141592653589793}},
    {"u8_rank4", {1, 2, 2, 3}, {0, 1, 2, 127, 128, 200, 254, 255, 3, 4, 5, 6}},
    {"f64_vec", {4}, {-0.5, 1e-300, 2.5e10, 1e300}},
    {"f32_rank3", {2, 1, 2}, {1, 2, 3, 4}},
    {"f32_empty", {0, 3}, {}},
};
const std::vector<Expected> kCheckpointExpected = {
    {"step", {}, {7.0}},
    {"bias", {3}, {1e-3, -2.5, 1e10}},
    {"weight", {2, 2}, {0.5, -1.0, static_cast<double>(0.1f), 2.0}},
    {"cube", {2, 2, 1}, {1, 2, 3, 4}},
    {"image", {1, 2, 2, 1}, {0, 17, 254, 255}},
    {"empty", {0, 2}, {}},
};
const std::map<std::string, std::string> kCheckpointMetadata = {
    {"format", "pt"},
    {"note", "quote \" backslash \\ newline \n tab \t e-acute \xc3\xa9 emoji \xf0\x9f\x98\x80"}};

template <class T>
void check_values(const Tensor<T>& t, const Expected& e) {
    INFO(e.name);
    CHECK(t.shape() == e.shape);
    std::vector<T> want;
    for (double v : e.values) want.push_back(static_cast<T>(v));
    CHECK(values_of(t) == want);
}

// An .npy file with the given header dict text (padded as numpy does) and data bytes.
std::string npy_with_header(const std::string& dict, const std::string& data, int major = 1) {
    std::string header = dict;
    const std::size_t prefix = major == 1 ? 10 : 12;
    header.append((64 - (prefix + header.size() + 1) % 64) % 64, ' ');
    header += '\n';
    std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
    out += static_cast<char>(header.size() & 0xff);
    out += static_cast<char>(header.size() >> 8);
    if (major != 1) out += std::string(2, '\0');
    return out + header + data;
}

// Checks that `message` contains `part`, and shows the message when it does not.
#define CHECK_CONTAINS(message, part)                                    \
    do {                                                                 \
        const std::string message_ = (message);                          \
        CHECK_MESSAGE(message_.find(part) != std::string::npos, message_); \
    } while (0)

// zlib's CRC-32 of `bytes` continuing from `crc`, as 8 lowercase hex digits by crc_text.
std::uint32_t crc_of(const std::string& bytes, std::uint32_t crc = 0) {
    return static_cast<std::uint32_t>(::crc32_z(crc, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()));
}
std::string crc_text(std::uint32_t crc) {
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", crc);
    return buf;
}
// The checksum entry ember writes for a tensor: the CRC of "name\0DTYPE\0[shape]", then its data.
std::string tensor_crc(const std::string& name, const std::string& dtype, const std::string& shape,
                       const std::string& data) {
    return crc_text(crc_of(data, crc_of(name + '\0' + dtype + '\0' + shape)));
}

// A header padded with spaces to a multiple of 8 bytes, as the reference implementation pads.
std::string padded(std::string header) { return header.append((8 - header.size() % 8) % 8, ' '); }

// A safetensors file: 8-byte little-endian length, the header text, the data.
std::string safetensors_file(const std::string& header, const std::string& data = "", std::uint64_t length = ~0ull) {
    if (length == ~0ull) length = header.size();
    std::string out;
    for (int i = 0; i < 8; ++i) out += static_cast<char>((length >> (8 * i)) & 0xff);
    return out + header + data;
}

}  // namespace

// ===================================================================================
// NPY
// ===================================================================================

TEST_CASE_TEMPLATE("npy round trips every dtype and rank 0-4", T, float, double) {
    TempDir dir;
    const fs::path path = dir / "t.npy";
    for (DType dtype : kAllDtypes) {
        for (const Tensor<T>& t : sample_tensors<T>(dtype)) {
            INFO(dtype_name(dtype), " ", t.shape().str());
            save_npy(path, t, dtype);
            const Tensor<float> f = load_npy<float>(path);
            const Tensor<double> d = load_npy<double>(path);
            CHECK(f.shape() == t.shape());
            CHECK(d.shape() == t.shape());
            for (Index i = 0; i < t.numel(); ++i) {
                CHECK(f.flat(i) == through<float>(dtype, t.flat(i)));
                CHECK(d.flat(i) == through<double>(dtype, t.flat(i)));
            }
            // The in-memory functions produce and accept exactly the file's bytes.
            const std::string bytes = read_file(path);
            CHECK(to_string(npy_to_bytes(t, dtype)) == bytes);
            CHECK(values_of(npy_from_bytes<double>(as_bytes(bytes))) == values_of(d));
            // numpy aligns the data to 64 bytes; so do we.
            CHECK((bytes.size() - static_cast<std::size_t>(t.numel()) * dtype_size(dtype)) % 64 == 0);
        }
    }
    CHECK(dir.listing() == std::vector<std::string>{"t.npy"});
}

TEST_CASE("npy writes views in C order") {
    TempDir dir;
    const Tensor<double> t = Tensor<double>::arange(24).reshape({2, 3, 4});
    const Tensor<double> view = t.transpose(0, 2).slice(1, 1, 3);  // [4,2,2], not contiguous
    REQUIRE_FALSE(view.is_contiguous());
    save_npy(dir / "v.npy", view);
    const Tensor<double> back = load_npy<double>(dir / "v.npy");
    CHECK(back.shape() == view.shape());
    CHECK(values_of(back) == values_of(view));
}

TEST_CASE("npy files from ember are byte for byte those numpy writes") {
    TempDir dir;
    // The version 1.0 reference files: ember writes the same header text and padding.
    for (const char* name : {"f32_2x3", "f32_rank3", "f32_empty", "f64_vec"}) {
        INFO(name);
        const fs::path ref = reference_dir() / (std::string("io_ref_") + name + ".npy");
        const Tensor<double> t = load_npy<double>(ref);
        save_npy(dir / "out.npy", t, std::string(name).starts_with("f32") ? DType::F32 : DType::F64);
        CHECK(read_file(dir / "out.npy") == read_file(ref));
    }
}

TEST_CASE("npy reads the reference files numpy wrote (versions 1.0, 2.0, 3.0)") {
    for (const Expected& e : kNpyExpected) {
        const fs::path path = reference_dir() / ("io_ref_" + e.name + ".npy");
        check_values(load_npy<double>(path), e);
        if (e.name != "f64_vec") check_values(load_npy<float>(path), e);
    }
    // float64 values outside float's range become 0 and infinity in a Tensor<float>.
    const Tensor<float> f = load_npy<float>(reference_dir() / "io_ref_f64_vec.npy");
    CHECK(values_of(f) == std::vector<float>{-0.5f, 0.0f, 2.5e10f, std::numeric_limits<float>::infinity()});
}

TEST_CASE("npy rejects malformed files with messages naming the file, the expectation and the finding") {
    TempDir dir;
    const std::string good = read_file(reference_dir() / "io_ref_f32_2x3.npy");
    auto load_error = [&](const std::string& bytes) {
        write_file(dir / "bad.npy", bytes);
        return error_of([&] { (void)load_npy<float>(dir / "bad.npy"); });
    };
    const std::string at = "load_npy: " + (dir / "bad.npy").string() + ": ";
    const std::string f4 = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    const std::string two_floats(8, '\0');

    CHECK(load_error("PK\x03\x04 a zip file") == at + "not an NPY file: expected the magic string \\x93NUMPY, found \"PK\\x03\\x04 a\"");
    CHECK(load_error("") == at + "truncated NPY file of 0 bytes; the fixed header alone takes 10");
    CHECK(load_error(good.substr(0, 7)) == at + "truncated NPY file of 7 bytes; the fixed header alone takes 10");
    CHECK(load_error(good.substr(0, 11)) == at + "truncated NPY header: its length field says 118 bytes, but only 1 follow");
    std::string v4 = good;
    v4[6] = '\x04';
    CHECK(load_error(v4) == at + "unsupported NPY format version 4.0; expected 1.0, 2.0 or 3.0");
    CHECK(load_error(good.substr(0, good.size() - 4)) ==
          at + "truncated data: shape [2,3] of float32 needs 24 bytes after the header, found 20");
    CHECK(load_error(good + "xyz") == at + "unexpected data: shape [2,3] of float32 needs 24 bytes after the header, found 27");
    CHECK(load_error(npy_with_header(f4, two_floats, 2)) == "no error");

    // The files numpy wrote that ember must refuse.
    auto ref_error = [&](const std::string& name) {
        const fs::path p = reference_dir() / ("io_ref_" + name + ".npy");
        const std::string msg = error_of([&] { (void)load_npy<double>(p); });
        const std::string prefix = "load_npy: " + p.string() + ": ";
        CHECK_MESSAGE(msg.starts_with(prefix), msg);
        return msg.substr(std::min(prefix.size(), msg.size()));
    };
    CHECK(ref_error("bad_fortran") ==
          "fortran_order is True (column-major data), which is not supported; expected a C-order array "
          "(save numpy.ascontiguousarray(a))");
    CHECK(ref_error("bad_bigendian") ==
          "big-endian dtype '>f8' is not supported; expected little-endian '<f4', '<f8' or '|u1' "
          "(convert with a.astype(a.dtype.newbyteorder('<')))");
    CHECK(ref_error("bad_int32") == "unsupported dtype '<i4'; expected '<f4' (float32), '<f8' (float64) or '|u1' (uint8)");
    CHECK(ref_error("bad_rank5") == "shape [1,1,1,1,2] has rank 5; ember tensors have at most 4 dimensions");

    // Header dicts numpy would not write.
    auto header_error = [&](const std::string& dict) {
        const std::string msg = load_error(npy_with_header(dict, two_floats));
        CHECK_MESSAGE(msg.starts_with(at), msg);
        return msg.substr(std::min(at.size(), msg.size()));
    };
    CHECK(header_error("{'descr': '<f4', 'fortran_order': False}") ==
          "the NPY header lacks 'shape'; expected exactly 'descr', 'fortran_order' and 'shape'");
    CHECK(header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}") ==
          "unexpected key 'extra' in the NPY header; expected exactly 'descr', 'fortran_order' and 'shape'");
    const std::string dup = header_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}");
    CHECK(dup.starts_with("malformed NPY header \"{'descr': '<f4', 'descr'"));
    CHECK(dup.ends_with("\": duplicate key 'descr' at byte 17, found ''descr': ''"));
    CHECK(header_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}").ends_with(
        "structured (record) dtypes are not supported; expected a plain descr such as '<f4' at byte 10, found '[('a', '<f'"));
    CHECK(header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}")
              .ends_with("a one-element shape needs a trailing comma, as in (3,) at byte 53, found '}'"));
    CHECK(header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}")
              .ends_with("expected a non-negative integer dimension at byte 51, found '-2,)}'"));
    CHECK(header_error("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}")
              .ends_with("expected True or False for 'fortran_order' at byte 34, found '0, 'shape''"));
    CHECK(header_error("['descr', '<f4']").ends_with("expected '{' (the header is a Python dict) at byte 0, found '['descr','"));
    CHECK(header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk")
              .ends_with("unexpected text after the header dict at byte 58, found 'junk'"));
    // Accepted: double quotes, no trailing comma, other spacing.
    CHECK(load_error(npy_with_header("{\"descr\":\"<f4\",\"fortran_order\":False,\"shape\":(2,)}", two_floats)) == "no error");

    CHECK(error_of([&] { (void)load_npy<float>(dir / "missing.npy"); }) ==
          "load_npy: " + (dir / "missing.npy").string() + ": cannot open: No such file or directory");
    CHECK(error_of([&] { (void)load_npy<float>(dir.path); }) == "load_npy: " + dir.path.string() + ": not a regular file");
    CHECK(error_of([&] { (void)npy_from_bytes<float>(as_bytes(good.substr(0, 130)), "x.npy in archive.zip"); }) ==
          "load_npy: x.npy in archive.zip: truncated data: shape [2,3] of float32 needs 24 bytes after the header, found 2");
}

TEST_CASE("npy uint8 writing needs values in [0, 255] and rounds to the nearest integer") {
    TempDir dir;
    const fs::path path = dir / "u8.npy";
    save_npy(path, Tensor<float>::from({5}, {0.0f, 0.4f, 2.6f, 254.5f, 255.0f}), DType::U8);
    CHECK(values_of(load_npy<float>(path)) == std::vector<float>{0, 0, 3, 255, 255});
    const std::string at = "save_npy: " + path.string() + ": ";
    CHECK(error_of([&] { save_npy(path, Tensor<float>::from({3}, {1, 300, 2}), DType::U8); }) ==
          at + "cannot store 300 (element 1) as uint8: values must lie in [0, 255]");
    CHECK(error_of([&] { save_npy(path, Tensor<double>::from({2}, {0, -0.5}), DType::U8); }) ==
          at + "cannot store -0.5 (element 1) as uint8: values must lie in [0, 255]");
    CHECK(error_of([&] { save_npy(path, Tensor<double>::scalar(std::nan("")), DType::U8); }) ==
          at + "cannot store nan (element 0) as uint8: values must lie in [0, 255]");
    CHECK(error_of([&] { save_npy(path, Tensor<float>()); }) == at + "the tensor is undefined (default-constructed)");
    CHECK(values_of(load_npy<float>(path)) == std::vector<float>{0, 0, 3, 255, 255});  // untouched by the failures
    CHECK(dir.listing() == std::vector<std::string>{"u8.npy"});
}

// ===================================================================================
// safetensors
// ===================================================================================

TEST_CASE_TEMPLATE("safetensors round trips every dtype and rank 0-4, with metadata", T, float, double) {
    TempDir dir;
    const fs::path path = dir / "ckpt.safetensors";
    const std::map<std::string, std::string> metadata = {
        {"format", "ember"}, {"", "empty key"}, {"escapes", "\" \\ / \b \f \n \r \t \x01 \x1f \x7f"},
        {"unicode \xc3\xa9", "\xe2\x82\xac \xf0\x9f\x98\x80"}};
    for (DType dtype : kAllDtypes) {
        INFO(dtype_name(dtype));
        std::vector<std::pair<std::string, Tensor<T>>> named;
        for (const Tensor<T>& t : sample_tensors<T>(dtype)) named.emplace_back(std::string("t").append(t.shape().str()), t);
        named.emplace_back("name with \"quotes\", \\ and \xc3\xa9", Tensor<T>::scalar(5));
        save_safetensors(path, named, metadata, dtype);

        const std::string bytes = read_file(path);
        CHECK(to_string(safetensors_to_bytes(named, metadata, dtype)) == bytes);
        std::uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = n * 256 + static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
        CHECK((8 + n) % 8 == 0);  // data aligned to 8 bytes, as the reference writer does

        const Safetensors<float> f = load_safetensors<float>(path);
        const Safetensors<double> d = safetensors_from_bytes<double>(as_bytes(bytes));
        CHECK(f.metadata == metadata);
        CHECK(d.metadata == metadata);
        REQUIRE(f.tensors.size() == named.size());
        for (const auto& [name, t] : named) {
            INFO(name);
            CHECK(f.at(name).shape() == t.shape());
            CHECK(d.at(name).shape() == t.shape());
            for (Index i = 0; i < t.numel(); ++i) {
                CHECK(f.at(name).flat(i) == through<float>(dtype, t.flat(i)));
                CHECK(d.at(name).flat(i) == through<double>(dtype, t.flat(i)));
            }
        }
    }
    CHECK(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
}

TEST_CASE("safetensors saves maps, braced lists, views and empty checkpoints") {
    TempDir dir;
    const Tensor<double> a = Tensor<double>::arange(6).reshape({2, 3});
    const Tensor<double> b = Tensor<double>::from({2}, {-1, 1});
    save_safetensors(dir / "map.safetensors", std::map<std::string, Tensor<double>>{{"b", b}, {"a", a.transpose()}});
    const Safetensors<double> m = load_safetensors<double>(dir / "map.safetensors");
    CHECK(m.metadata.empty());
    CHECK(m.at("a").shape() == Shape{3, 2});
    CHECK(values_of(m.at("a")) == std::vector<double>{0, 3, 1, 4, 2, 5});
    CHECK(values_of(m.at("b")) == std::vector<double>{-1, 1});
    CHECK(error_of([&] { (void)m.at("c"); }) == "Safetensors::at: no tensor named 'c'");

    save_safetensors<double>(dir / "list.safetensors", {{"w", a}, {"v", b}}, {{"step", "3"}}, DType::F32);
    const Safetensors<float> l = load_safetensors<float>(dir / "list.safetensors");
    CHECK(l.metadata == std::map<std::string, std::string>{{"step", "3"}});
    CHECK(values_of(l.at("w")) == std::vector<float>{0, 1, 2, 3, 4, 5});

    save_safetensors(dir / "empty.safetensors", std::vector<std::pair<std::string, Tensor<float>>>{});
    CHECK(read_file(dir / "empty.safetensors") ==
          safetensors_file(padded("{\"__metadata__\":{\"crc32:__metadata__\":\"00000000\"}}")));
    const Safetensors<float> e = load_safetensors<float>(dir / "empty.safetensors");
    CHECK(e.tensors.empty());
    CHECK(e.metadata.empty());
}

TEST_CASE("safetensors writes the layout of the reference implementation, with ember's checksums") {
    // Its layout: compact JSON, "__metadata__" first, spaces up to a multiple of 8 bytes.
    // ember adds a CRC-32 of each tensor (name, dtype, shape, data) and of the metadata.
    std::string floats;
    for (float v : {0.f, 1.f, 2.f, 3.f, 4.f, 5.f}) floats += std::string(reinterpret_cast<const char*>(&v), 4);
    const std::string header = "{\"__metadata__\":{\"crc32:__metadata__\":\"00000000\",\"crc32:attn.0\":\"" +
                               tensor_crc("attn.0", "F32", "[1,2,3]", floats) +
                               "\"},\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    CHECK(to_string(safetensors_to_bytes<float>({{"attn.0", Tensor<float>::arange(6).reshape({1, 2, 3})}})) ==
          safetensors_file(padded(header), floats));
    const std::string metadata_crc = crc_text(crc_of(std::string("framework\0pt\0", 13)));
    CHECK(to_string(safetensors_to_bytes<float>({}, {{"framework", "pt"}})) ==
          safetensors_file(padded("{\"__metadata__\":{\"crc32:__metadata__\":\"" + metadata_crc +
                                  "\",\"framework\":\"pt\"}}")));
}

TEST_CASE("safetensors: a damaged file is refused, a file without checksums is read as it is") {
    const Tensor<float> w = Tensor<float>::arange(6).reshape({2, 3});
    const std::string good = to_string(safetensors_to_bytes<float>({{"w", w}, {"b", Tensor<float>::ones({3})}},
                                                                   {{"step", "10"}}));
    auto load = [](const std::string& bytes) {
        return safetensors_from_bytes<float>(std::as_bytes(std::span(bytes.data(), bytes.size())), "f");
    };
    const Safetensors<float> ok = load(good);
    CHECK(ok.checksummed);
    CHECK(ok.metadata == std::map<std::string, std::string>{{"step", "10"}});  // the checksums are not metadata
    auto damaged = [&](std::size_t at, char to) {
        std::string bytes = good;
        REQUIRE(at < bytes.size());
        bytes[at] = to;
        return error_of([&] { (void)load(bytes); });
    };
    auto header_at = [&](const std::string& text) {
        const std::size_t at = good.find(text);
        REQUIRE(at != std::string::npos);
        return at;
    };
    // One flipped bit in the last data byte (a float of "w" or "b").
    CHECK_CONTAINS(damaged(good.size() - 1, static_cast<char>(good.back() ^ 1)), "does not match its CRC-32");
    // A tensor's name, shape or dtype, or a metadata value.
    CHECK_CONTAINS(damaged(header_at("\"w\":{") + 1, 'v'), "has no CRC-32");
    std::string transposed = good;
    transposed.replace(header_at("[2,3]"), 5, "[3,2]");  // still 6 floats: only the checksum notices
    CHECK_CONTAINS(error_of([&] { (void)load(transposed); }), "tensor 'w' does not match its CRC-32");
    CHECK_CONTAINS(damaged(header_at("\"step\":\"10\"") + 9, '2'), "the metadata do not match their CRC-32");
    CHECK_CONTAINS(damaged(header_at("crc32:__metadata__\":\"") + 21, 'x'), "not 8 hex digits");

    // A file with no checksums, as PyTorch's safetensors writes it, loads unchecked.
    const std::string plain = safetensors_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                                               std::string("\0\0\x80\x3f", 4));
    const Safetensors<float> p = load(plain);
    CHECK(!p.checksummed);
    CHECK(p.at("w").data()[0] == 1.0f);

    // The prefix is ember's own.
    CHECK_CONTAINS(error_of([] { (void)safetensors_to_bytes<float>({}, {{"crc32:x", "1"}}); }),
                        "reserves for its checksums");
}

TEST_CASE("safetensors reads the reference checkpoint written in Python") {
    const fs::path path = reference_dir() / "io_ref_checkpoint.safetensors";
    const Safetensors<double> d = load_safetensors<double>(path);
    const Safetensors<float> f = load_safetensors<float>(path);
    CHECK(d.metadata == kCheckpointMetadata);
    CHECK(d.tensors.size() == kCheckpointExpected.size());
    for (const Expected& e : kCheckpointExpected) {
        check_values(d.at(e.name), e);
        check_values(f.at(e.name), e);
    }
}

TEST_CASE("safetensors rejects malformed files with messages naming the file and the problem") {
    TempDir dir;
    const fs::path path = dir / "bad.safetensors";
    const std::string at = "load_safetensors: " + path.string() + ": ";
    // Loads `bytes` from a file and from memory; both must fail the same way.
    auto error = [&](const std::string& bytes) {
        write_file(path, bytes);
        const std::string from_file = error_of([&] { (void)load_safetensors<float>(path); });
        const std::string from_memory = error_of([&] { (void)safetensors_from_bytes<double>(as_bytes(bytes), "mem"); });
        if (from_file == "no error") {
            CHECK(from_memory == "no error");
            return from_file;
        }
        CHECK_MESSAGE(from_file.starts_with(at), from_file);
        const std::string tail = from_file.substr(std::min(at.size(), from_file.size()));
        CHECK(from_memory == "load_safetensors: mem: " + tail);
        return tail;
    };
    auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, const std::string& offsets) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
    };
    const std::string eight(8, '\x01');
    // A valid file to start from: two F32 [2] tensors, 16 bytes of data.
    const std::string a = entry("a", "F32", "[2]", "[0,8]"), b = entry("b", "F32", "[2]", "[8,16]");
    CHECK(error(safetensors_file("{" + a + "," + b + "}", eight + eight)) == "no error");

    // Sizes and lengths.
    CHECK(error("") == "the file is 0 bytes long; a safetensors file starts with an 8-byte header length");
    CHECK(error(std::string("\x02\0\0\0", 4)) == "the file is 4 bytes long; a safetensors file starts with an 8-byte header length");
    CHECK(error(safetensors_file("{}", "", 3)) == "header length 3 runs past the end of the file (2 bytes follow the length field)");
    CHECK(error(safetensors_file("{}", "", std::uint64_t(1) << 62)) ==
          "header length 4611686018427387904 exceeds the limit of 100000000 bytes");
    CHECK(error(safetensors_file("{}", "", 100'000'001)) == "header length 100000001 exceeds the limit of 100000000 bytes");
    CHECK(error(safetensors_file("{" + a + "," + b + "}", eight + "\x01")) ==
          "tensor 'b': data_offsets [8, 16] run past the end of the data section (9 bytes)");

    // Malformed JSON.
    CHECK(error(safetensors_file("")) == "the header must be a JSON object starting with '{', found \"\"");
    CHECK(error(safetensors_file(" {}")) == "the header must be a JSON object starting with '{', found \" {}\"");
    CHECK(error(safetensors_file("{")) == "invalid JSON header at byte 1: expected a tensor name (a JSON string), found the end of the header");
    CHECK(error(safetensors_file("{\"a\":1}")) == "invalid JSON header at byte 5: expected '{' (tensor 'a' must be an object), found '1}'");
    CHECK(error(safetensors_file("{" + a + ",}", eight)) ==
          "invalid JSON header at byte 54: expected a tensor name (a JSON string), found '}'");
    CHECK(error(safetensors_file("{" + a + "} {}", eight)) == "invalid JSON header at byte 55: unexpected text after the header object, found '{}'");
    CHECK(error(safetensors_file("{\"a")) == "invalid JSON header at byte 3: unterminated string, found the end of the header");
    CHECK(error(safetensors_file("{\"a\\q\":{}}")) == "invalid JSON header at byte 4: invalid escape sequence, found 'q\":{}}'");
    CHECK(error(safetensors_file("{\"a\nb\":{}}")) ==
          "invalid JSON header at byte 3: control character in a string (it must be escaped), found '\\x0ab\":{}}'");
    CHECK(error(safetensors_file("{\"\xff\":{}}")) == "invalid JSON header at byte 2: invalid UTF-8 in a string, found '\\xff\":{}}'");
    CHECK(error(safetensors_file("{\"\xc0\xaf\":{}}")) == "invalid JSON header at byte 2: invalid UTF-8 in a string, found '\\xc0\\xaf\":{}}'");
    CHECK(error(safetensors_file("{\"\\ud800\":{}}")) ==
          "invalid JSON header at byte 8: unpaired UTF-16 high surrogate in a \\u escape, found '\":{}}'");
    CHECK(error(safetensors_file("{\"\\udc00\":{}}")) ==
          "invalid JSON header at byte 8: unpaired UTF-16 low surrogate in a \\u escape, found '\":{}}'");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[02]", "[0,8]") + "}", eight)) ==
          "invalid JSON header at byte 29: leading zeros are not valid JSON, found '02],\"data_of'");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[2.0]", "[0,8]") + "}", eight)) ==
          "invalid JSON header at byte 30: expected an element of the shape of tensor 'a' to be an integer, found '.0],\"data_of'");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[-2]", "[0,8]") + "}", eight)) ==
          "invalid JSON header at byte 29: expected an element of the shape of tensor 'a' (a non-negative integer), found '-2],\"data_of'");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[18446744073709551616]", "[0,8]") + "}", eight)) ==
          "invalid JSON header at byte 48: integer too large, found '6],\"data_off'");
    CHECK(error(safetensors_file("{\"a\":{\"dtype\":true}}")) ==
          "invalid JSON header at byte 14: expected the dtype of tensor 'a' (a JSON string), found 'true}}'");
    CHECK(error(safetensors_file("{\"__metadata__\":{\"k\":1}}")) ==
          "invalid JSON header at byte 21: expected a metadata value (a JSON string), found '1}}'");
    CHECK(error(safetensors_file("{\"__metadata__\":[]}")) ==
          "invalid JSON header at byte 16: expected '{' (\"__metadata__\" must be an object of strings), found '[]}'");

    // Keys and fields.
    CHECK(error(safetensors_file("{" + a + "," + a + "}", eight)) == "invalid JSON header at byte 54: duplicate key 'a', found '\"a\":{\"dtype\"'");
    CHECK(error(safetensors_file("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}")) ==
          "invalid JSON header at byte 25: duplicate metadata key 'k', found '\"k\":\"2\"}}'");
    CHECK(error(safetensors_file("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}")) ==
          "invalid JSON header at byte 20: duplicate field 'dtype' in tensor 'a', found '\"dtype\":\"F32'");
    CHECK(error(safetensors_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[]}}")) == "tensor 'a' lacks \"data_offsets\"");
    CHECK(error(safetensors_file("{\"a\":{\"dtype\":\"F32\",\"extra\":1}}")) ==
          "invalid JSON header at byte 20: unexpected field 'extra' in tensor 'a'; expected exactly \"dtype\", \"shape\" and "
          "\"data_offsets\", found '\"extra\":1}}'");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[2]", "[0]") + "}", eight)) ==
          "tensor 'a': data_offsets must be [begin, end], found 1 number(s)");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[2]", "[0,8,9]") + "}", eight)) ==
          "invalid JSON header at byte 52: the data_offsets of tensor 'a' has more than 2 entries, found '9]}}'");

    // Dtypes and shapes.
    CHECK(error(safetensors_file("{" + entry("a", "F99", "[2]", "[0,8]") + "}", eight)) ==
          "tensor 'a' has unknown dtype \"F99\"; expected F32, F64 or U8");
    CHECK(error(safetensors_file("{" + entry("a", "BF16", "[4]", "[0,8]") + "}", eight)) ==
          "tensor 'a' has dtype BF16, which ember does not read; expected F32, F64 or U8");
    CHECK(error(safetensors_file("{" + entry("a", "U8", "[1,1,1,2,4]", "[0,8]") + "}", eight)) ==
          "tensor 'a': shape [1,1,1,2,4] has rank 5; ember tensors have at most 4 dimensions");
    CHECK(error(safetensors_file("{" + entry("a", "U8", "[0,4294967296,4294967296,4294967296]", "[0,0]") + "}")) ==
          "tensor 'a': shape [0,4294967296,4294967296,4294967296] is too large");

    // Offsets.
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[2]", "[8,0]") + "}", eight)) ==
          "tensor 'a': data_offsets [8, 0] end before they begin");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[2]", "[0,12]") + "}", eight)) ==
          "tensor 'a': data_offsets [0, 12] run past the end of the data section (8 bytes)");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[3]", "[0,8]") + "}", eight)) ==
          "tensor 'a': data_offsets [0, 8] span 8 bytes, but shape [3] of F32 needs 12");
    CHECK(error(safetensors_file("{" + a + "," + entry("b", "F32", "[2]", "[4,12]") + "}", eight + "\x01\x01\x01\x01")) ==
          "tensors 'a' [0, 8] and 'b' [4, 12] overlap");
    CHECK(error(safetensors_file("{" + a + "," + entry("b", "F32", "[2]", "[12,20]") + "}", eight + eight + "\x01\x01\x01\x01")) ==
          "bytes [8, 12) of the data section belong to no tensor");
    CHECK(error(safetensors_file("{" + a + "}", eight + "\x01")) == "bytes [8, 9) of the data section belong to no tensor");
    CHECK(error(safetensors_file("{" + entry("a", "F32", "[2]", "[4,12]") + "}", eight + "\x01\x01\x01\x01")) ==
          "bytes [0, 4) of the data section belong to no tensor");
    // A zero-size tensor inside another's range overlaps it; at a boundary it does not.
    CHECK(error(safetensors_file("{" + a + "," + entry("z", "F32", "[0]", "[4,4]") + "}", eight)) ==
          "tensors 'a' [0, 8] and 'z' [4, 4] overlap");
    CHECK(error(safetensors_file("{" + a + "," + entry("z", "F32", "[0,5]", "[8,8]") + "}", eight)) == "no error");

    CHECK(error_of([&] { (void)load_safetensors<float>(dir / "missing.safetensors"); }) ==
          "load_safetensors: " + (dir / "missing.safetensors").string() + ": cannot open: No such file or directory");
}

TEST_CASE("safetensors saving refuses duplicate, reserved and undefined tensors before writing anything") {
    TempDir dir;
    const fs::path path = dir / "x.safetensors";
    const std::string at = "save_safetensors: " + path.string() + ": ";
    const Tensor<float> t = Tensor<float>::ones({2});
    CHECK(error_of([&] { save_safetensors<float>(path, {{"a", t}, {"a", t}}); }) == at + "two tensors are named 'a'");
    CHECK(error_of([&] { save_safetensors<float>(path, {{"__metadata__", t}}); }) ==
          at + "\"__metadata__\" is reserved and cannot name a tensor");
    CHECK(error_of([&] { save_safetensors<float>(path, {{"a", t}, {"b", Tensor<float>()}}); }) ==
          at + "tensor 'b' is undefined (default-constructed)");
    CHECK(error_of([&] { save_safetensors<float>(path, {{"bad \xff", t}}); }) == at + "tensor name 'bad \\xff' is not valid UTF-8");
    CHECK(error_of([&] { save_safetensors<float>(path, {{"a", t}}, {{"k", "\xc3"}}); }) ==
          at + "metadata entry 'k' is not valid UTF-8");
    CHECK(dir.listing().empty());
}

// ===================================================================================
// Atomic writes
// ===================================================================================

TEST_CASE("atomic writes replace a file whole or leave it untouched") {
    TempDir dir;
    const fs::path path = dir / "f.bin";
    write_file_atomic(path, "first");
    CHECK(read_file(path) == "first");
    write_file_atomic(path, "second version");
    CHECK(read_file(path) == "second version");

    // A producer that fails after writing more than the writer buffers (so bytes have
    // reached the temporary file): its exception propagates unchanged.
    const std::string big(3 << 20, 'x');
    CHECK_THROWS_WITH_AS(write_file_atomic(path,
                                           [&](AtomicWriter& w) {
                                               w.write(big);
                                               w.write(big);
                                               throw std::runtime_error("disk on fire");
                                           }),
                         "disk on fire", std::runtime_error);
    CHECK(read_file(path) == "second version");
    CHECK(dir.listing() == std::vector<std::string>{"f.bin"});

    // The file system refusing: a missing directory, a directory in the way.
    CHECK(error_of([&] { write_file_atomic(dir / "no" / "f.bin", "x"); })
              .starts_with("write_file_atomic: " + (dir / "no" / "f.bin").string() + ": cannot create the temporary file "));
    fs::create_directory(dir / "d");
    CHECK(error_of([&] { write_file_atomic(dir / "d", "x"); }) ==
          "write_file_atomic: " + (dir / "d").string() + ": cannot rename the temporary over it: Is a directory");
    CHECK(error_of([&] { write_file_atomic(dir.path / "", "x"); }) ==
          "write_file_atomic: '" + (dir.path / "").string() + "' does not name a file");
    CHECK(dir.listing() == std::vector<std::string>{"d", "f.bin"});
}

TEST_CASE("atomic writes remove the temporaries of dead processes, and only theirs") {
    TempDir dir;
    // A process that has exited: its PID names no process (until reused, which a live
    // process keeping its file would also survive).
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    REQUIRE(child > 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    const std::string dead = ".f.bin.tmp-" + std::to_string(child) + "-0";
    const std::string alive = ".f.bin.tmp-" + std::to_string(::getppid()) + "-3";
    const std::string other = ".g.bin.tmp-" + std::to_string(child) + "-0";  // another target's
    for (const std::string& name : {dead, alive, other}) write_file(dir / name, "partial");
    write_file_atomic(dir / "f.bin", "complete");
    std::vector<std::string> want = {alive, other, "f.bin"};
    std::sort(want.begin(), want.end());
    CHECK(dir.listing() == want);
    CHECK(read_file(dir / "f.bin") == "complete");
}

TEST_CASE("atomic saves of npy and safetensors that fail midway leave the old file") {
    TempDir dir;
    const fs::path st = dir / "model.safetensors", npy = dir / "image.npy";
    save_safetensors<float>(st, {{"w", Tensor<float>::ones({2, 2})}}, {{"step", "1"}}, DType::U8);
    save_npy(npy, Tensor<float>::full({4}, 7), DType::U8);
    const std::string old_st = read_file(st), old_npy = read_file(npy);

    // The second tensor holds a value uint8 cannot store, found after the header and the
    // first tensor's data have been written.
    const Tensor<float> good = Tensor<float>::full({100000}, 1), bad = Tensor<float>::from({3}, {1, 256, 2});
    CHECK(error_of([&] { save_safetensors<float>(st, {{"good", good}, {"bad", bad}}, {}, DType::U8); }) ==
          "save_safetensors: " + st.string() + ": cannot store 256 (element 1 of tensor 'bad') as uint8: values must lie in [0, 255]");
    CHECK(read_file(st) == old_st);
    CHECK(error_of([&] { save_npy(npy, Tensor<double>::from({2}, {1, std::nan("")}), DType::U8); }) ==
          "save_npy: " + npy.string() + ": cannot store nan (element 1) as uint8: values must lie in [0, 255]");
    CHECK(read_file(npy) == old_npy);
    CHECK(dir.listing() == std::vector<std::string>{"image.npy", "model.safetensors"});
    CHECK(load_safetensors<float>(st).metadata.at("step") == "1");
}

TEST_CASE("atomic writes from several threads leave one complete version") {
    TempDir dir;
    const fs::path path = dir / "shared.npy";
    // The tensors are made here, not in the threads: ember's per-thread small-object cache
    // is never freed, which LeakSanitizer reports for every thread that created a tensor.
    std::vector<Tensor<double>> versions;
    for (int k = 0; k < 4; ++k) versions.push_back(Tensor<double>::full({1000}, k));
    std::vector<std::thread> threads;
    for (int k = 0; k < 4; ++k)
        threads.emplace_back([&, k] {
            for (int i = 0; i < 10; ++i) save_npy(path, versions[static_cast<std::size_t>(k)]);
        });
    for (auto& t : threads) t.join();
    const std::vector<double> v = values_of(load_npy<double>(path));
    CHECK(v.size() == 1000);
    CHECK(std::all_of(v.begin(), v.end(), [&](double x) { return x == v[0]; }));
    CHECK(dir.listing() == std::vector<std::string>{"shared.npy"});
}

// ===================================================================================
// Files for Python
// ===================================================================================

TEST_CASE("npy and safetensors files for Python (kept in $EMBER_IO_EXPORT_DIR when set)") {
    TempDir tmp;
    const char* env = std::getenv("EMBER_IO_EXPORT_DIR");
    const fs::path dir = env && *env ? fs::path(env) : tmp.path;
    auto find = [](const std::vector<Expected>& list, const std::string& name) {
        return *std::find_if(list.begin(), list.end(), [&](const Expected& e) { return e.name == name; });
    };
    auto tensor = [&](const std::vector<Expected>& list, const std::string& name) {
        const Expected e = find(list, name);
        return Tensor<double>::from(e.shape, e.values);
    };
    auto as_float = [](const Tensor<double>& t) {
        Tensor<float> f = Tensor<float>::empty(t.shape());
        for (Index i = 0; i < t.numel(); ++i) f.data()[i] = static_cast<float>(t.flat(i));
        return f;
    };
    // Each file from the tensor type and dtype a user would plausibly have.
    save_npy(dir / "ember_f32_2x3.npy", as_float(tensor(kNpyExpected, "f32_2x3")));
    save_npy(dir / "ember_f64_scalar.npy", tensor(kNpyExpected, "f64_scalar"));
    save_npy(dir / "ember_u8_rank4.npy", as_float(tensor(kNpyExpected, "u8_rank4")), DType::U8);
    save_npy(dir / "ember_f64_vec.npy", tensor(kNpyExpected, "f64_vec"));
    save_npy(dir / "ember_f32_rank3.npy", tensor(kNpyExpected, "f32_rank3"), DType::F32);
    save_npy(dir / "ember_f32_empty.npy", as_float(tensor(kNpyExpected, "f32_empty")));
    std::vector<std::pair<std::string, Tensor<float>>> f32;
    for (const char* name : {"step", "weight", "cube", "empty"}) f32.emplace_back(name, as_float(tensor(kCheckpointExpected, name)));
    save_safetensors(dir / "ember_checkpoint_f32.safetensors", f32, kCheckpointMetadata);
    save_safetensors<double>(dir / "ember_checkpoint_f64.safetensors", {{"bias", tensor(kCheckpointExpected, "bias")}},
                             kCheckpointMetadata);
    save_safetensors<double>(dir / "ember_checkpoint_u8.safetensors", {{"image", tensor(kCheckpointExpected, "image")}},
                             kCheckpointMetadata, DType::U8);
    // And they read back here as the literals.
    for (const Expected& e : kNpyExpected) check_values(load_npy<double>(dir / ("ember_" + e.name + ".npy")), e);
    for (const char* file : {"ember_checkpoint_f32.safetensors", "ember_checkpoint_f64.safetensors", "ember_checkpoint_u8.safetensors"}) {
        const Safetensors<double> c = load_safetensors<double>(dir / file);
        CHECK(c.metadata == kCheckpointMetadata);
        for (const auto& [name, t] : c.tensors) check_values(t, find(kCheckpointExpected, name));
    }
}
