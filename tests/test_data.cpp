// Data: the IDX reader (plain, gzip, and every kind of bad file), MNIST when available,
// the built-in 2-D distributions against their definitions, and mini-batches.
#include <doctest/doctest.h>

#include <algorithm>

#include <cmath>
#include <cstdlib>
#include <ember/data/data.hpp>
#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>

using namespace ember;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    fs::path path;
    TempDir() {
        Generator g(static_cast<std::uint64_t>(std::rand()) ^ reinterpret_cast<std::uintptr_t>(this));
        path = fs::temp_directory_path() / ("ember_test_data_" + std::to_string(g.randint(1 << 30)));
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A valid 2x3 unsigned-byte IDX file.
std::vector<std::uint8_t> small_idx() { return {0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255}; }
}  // namespace

TEST_CASE("read_idx: plain and gzip files give the same values") {
    TempDir tmp;
    const std::vector<std::uint8_t> values = {1, 2, 3, 4, 5, 255};
    write_idx_u8(tmp.file("a.idx"), {2, 3}, values, false);
    write_idx_u8(tmp.file("a.idx.gz"), {2, 3}, values, true);
    for (const char* name : {"a.idx", "a.idx.gz"}) {
        IdxArray a = read_idx(tmp.file(name));
        CHECK(a.type == 0x08);
        CHECK(a.dims == std::vector<Index>{2, 3});
        Tensor<float> t = a.to_tensor<float>();
        CHECK(t.shape() == Shape{2, 3});
        CHECK(t.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 255});
    }
    CHECK(fs::file_size(tmp.file("a.idx.gz")) != fs::file_size(tmp.file("a.idx")));
}

TEST_CASE("read_idx: big-endian multi-byte types") {
    // int16 [-2, 258], float32 [1.5], float64 [-0.25]
    auto a = parse_idx(std::vector<std::uint8_t>{0, 0, 0x0B, 1, 0, 0, 0, 2, 0xFF, 0xFE, 0x01, 0x02});
    CHECK(a.to_tensor<double>().to_vector() == std::vector<double>{-2, 258});
    auto f = parse_idx(std::vector<std::uint8_t>{0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0xC0, 0, 0});
    CHECK(f.to_tensor<float>().item() == 1.5f);
    auto d = parse_idx(std::vector<std::uint8_t>{0, 0, 0x0E, 1, 0, 0, 0, 1, 0xBF, 0xD0, 0, 0, 0, 0, 0, 0});
    CHECK(d.to_tensor<double>().item() == -0.25);
}

TEST_CASE("read_idx: bad files fail with clear messages") {
    TempDir tmp;
    auto bad = [&](std::vector<std::uint8_t> bytes, const char* expect) {
        write_bytes(tmp.file("bad.idx"), bytes);
        CHECK_THROWS_WITH_AS(read_idx(tmp.file("bad.idx")), doctest::Contains(expect), Error);
        CHECK_THROWS_WITH_AS(parse_idx(bytes), doctest::Contains(expect), Error);
    };
    std::vector<std::uint8_t> ok = small_idx();
    auto truncated = ok;
    truncated.pop_back();
    bad(truncated, "truncated");
    auto trailing = ok;
    trailing.push_back(9);
    bad(trailing, "trailing bytes");
    auto magic = ok;
    magic[0] = 1;
    bad(magic, "not an IDX file");
    auto type = ok;
    type[2] = 0x07;
    bad(type, "unknown element type 0x7");
    auto rank = ok;
    rank[3] = 5;
    bad(rank, "5 dimensions; ember tensors hold 1 to 4");
    bad({0, 0, 8}, "truncated");
    bad({0, 0, 8, 2, 0, 0, 0, 2}, "truncated");
    bad({0, 0, 8, 1, 0xFF, 0xFF, 0xFF, 0xF0}, "too large");
    CHECK_THROWS_WITH_AS(read_idx(tmp.file("missing.idx")), doctest::Contains("cannot open file"), Error);

    // A corrupted gzip stream.
    write_idx_u8(tmp.file("c.gz"), {2, 3}, std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6}, true);
    std::vector<char> gz(fs::file_size(tmp.file("c.gz")));
    std::ifstream(tmp.file("c.gz"), std::ios::binary).read(gz.data(), static_cast<std::streamsize>(gz.size()));
    for (std::size_t i = 12; i < gz.size() - 8; ++i) gz[i] = static_cast<char>(gz[i] ^ 0x5A);
    std::ofstream(tmp.file("c.gz"), std::ios::binary).write(gz.data(), static_cast<std::streamsize>(gz.size()));
    CHECK_THROWS_AS(read_idx(tmp.file("c.gz")), Error);
}

TEST_CASE("read_idx: a header claiming more than the file holds fails before allocating") {
    TempDir tmp;
    // 20 bytes claiming 65535 x 65535 bytes (4.3 GB): refused from the file's size.
    const std::vector<std::uint8_t> claim = {0, 0, 0x08, 3, 0, 0, 0xFF, 0xFF, 0, 0, 0xFF, 0xFF, 0, 0, 0, 1, 1, 2, 3, 4};
    write_bytes(tmp.file("claim.idx"), claim);
    CHECK_THROWS_WITH_AS(read_idx(tmp.file("claim.idx")),
                         doctest::Contains("need 4294836225 data bytes but the file has 4 (truncated)"), Error);
    // Compressed: more than a deflate stream of the file's size can hold.
    write_idx_u8(tmp.file("claim.gz"), {65535, 65535, 1}, std::vector<std::uint8_t>{1, 2, 3, 4}, true);
    CHECK_THROWS_WITH_AS(read_idx(tmp.file("claim.gz")), doctest::Contains("more than a gzip file of"), Error);
    // Within what the compressed size allows, but short: read in steps, found truncated.
    std::vector<std::uint8_t> noise(1000 * 999);  // incompressible, so the size check passes
    std::uint32_t state = 1;
    for (std::uint8_t& b : noise) b = static_cast<std::uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
    write_idx_u8(tmp.file("short.gz"), {1000, 1000}, noise, true);
    CHECK_THROWS_WITH_AS(read_idx(tmp.file("short.gz")), doctest::Contains("(truncated)"), Error);
}

TEST_CASE("read_idx: a gzip stream whose check value is wrong is called corrupt") {
    TempDir tmp;
    write_idx_u8(tmp.file("crc.gz"), {2, 3}, std::vector<std::uint8_t>{1, 2, 3, 4, 5, 6}, true);
    std::vector<char> gz(fs::file_size(tmp.file("crc.gz")));
    std::ifstream(tmp.file("crc.gz"), std::ios::binary).read(gz.data(), static_cast<std::streamsize>(gz.size()));
    gz[gz.size() - 8] = static_cast<char>(gz[gz.size() - 8] ^ 1);  // the trailer's CRC-32 of the data
    std::ofstream(tmp.file("crc.gz"), std::ios::binary).write(gz.data(), static_cast<std::streamsize>(gz.size()));
    CHECK_THROWS_WITH_AS(read_idx(tmp.file("crc.gz")), doctest::Contains("corrupt gzip stream"), Error);
}

TEST_CASE("MNIST: located and loaded when present, or a message saying how to get it") {
    TempDir tmp;
    CHECK_THROWS_WITH_AS(find_dataset(Dataset::mnist, tmp.path.string()), doctest::Contains("scripts/fetch-mnist"), Error);
    std::string dir;
    try {
        dir = find_dataset(Dataset::mnist);
    } catch (const Error& e) {
        MESSAGE("MNIST not available, skipping the real-data checks: " << std::string(e.what()));
        return;
    }
    ImageSet test = load_image_set(dir, false);
    CHECK(test.images.shape() == Shape{10000, 1, 28, 28});
    CHECK(test.labels.size() == 10000);
    CHECK(test.labels[0] == 7);  // the first MNIST test digit is a 7
    std::vector<int> counts(10);
    for (Index l : test.labels) ++counts[static_cast<std::size_t>(l)];
    CHECK(counts[1] == 1135);  // known class counts of the MNIST test set
    CHECK(counts[5] == 892);
    CHECK(max(test.images).item() == 255.f);
}

TEST_CASE("mini-batches as an endless stream: next_wrapping and seek") {
    const Tensor<float> data = Tensor<float>::arange(10).reshape({10, 1});
    const BatchIterator<float>::Options o{.batch_size = 4, .shuffle = true, .drop_last = true, .seed = 7};
    // Epoch by epoch with next()/start_epoch(), as the reference order.
    BatchIterator<float> ref(data, o);
    std::vector<std::vector<Index>> expected;
    for (std::uint64_t e = 0; e < 3; ++e) {
        ref.start_epoch(e);
        while (auto b = ref.next()) expected.push_back(b->rows);
    }
    REQUIRE(expected.size() == 6);  // 2 full batches per epoch (drop_last)
    BatchIterator<float> endless(data, o);
    for (const auto& rows : expected) CHECK(endless.next_wrapping().rows == rows);
    // Resuming after k batches gives the batches an uninterrupted stream gives next.
    for (std::int64_t k = 0; k < 5; ++k) {
        BatchIterator<float> resumed(data, o);
        resumed.seek(k);
        for (std::size_t i = static_cast<std::size_t>(k); i < expected.size(); ++i)
            CHECK(resumed.next_wrapping().rows == expected[i]);
    }
    BatchIterator<float> too_small(data, {.batch_size = 11, .drop_last = true});
    CHECK_THROWS_WITH_AS(too_small.next_wrapping(), "BatchIterator: an epoch of 10 samples has no batch of 11 (drop_last)",
                         Error);
    CHECK_THROWS_WITH_AS(too_small.seek(3), "BatchIterator: an epoch of 10 samples has no batch of 11", Error);
}

TEST_CASE("toy 2-D distributions match their definitions") {
    Generator gen(4);
    const Index n = 20000;
    // 25 Gaussians: each sample within 5 std of its nearest centre; per-axis variance 8 + 0.05²
    Tensor<double> g = sample_toy2d<double>(Toy2d::grid25, n, gen);
    const ToyModes gm = grid25_modes();
    double var_x = 0;
    for (Index i = 0; i < n; ++i) {
        const double x = g.data()[2 * i], y = g.data()[2 * i + 1];
        double best = 1e9;
        for (auto& c : gm.centres) best = std::min(best, std::hypot(x - c[0], y - c[1]));
        CHECK_MESSAGE(best < 5 * gm.std * 1.5, "sample ", i, " at distance ", best);
        var_x += x * x;
    }
    var_x /= n;
    // Var of the centre coordinate over {-4..4} is 8; sd of the estimate ≈ sqrt(Var(x²)/n)
    CHECK(std::fabs(var_x - (8 + 0.0025)) < 4 * std::sqrt(2 * 8.0 * 8.0 / n) * 1.5);

    Tensor<double> r = sample_toy2d<double>(Toy2d::ring8, n, gen);
    double mean_r = 0;
    for (Index i = 0; i < n; ++i) mean_r += std::hypot(r.data()[2 * i], r.data()[2 * i + 1]);
    CHECK(std::fabs(mean_r / n - 2.0) < 0.01);

    Tensor<double> rings = sample_toy2d<double>(Toy2d::rings, n, gen);
    double mr = 0;
    for (Index i = 0; i < n; ++i) mr += std::hypot(rings.data()[2 * i], rings.data()[2 * i + 1]);
    CHECK(std::fabs(mr / n - 2.0) < 4 * std::sqrt(2.0 / 3 / n) + 0.01);  // radii 1,2,3: mean 2, var 2/3

    Tensor<double> cb = sample_toy2d<double>(Toy2d::checkerboard, n, gen);
    for (Index i = 0; i < n; ++i) {
        const double x = cb.data()[2 * i] / 2, y = cb.data()[2 * i + 1] / 2;
        REQUIRE((x >= -2 && x < 2 && y >= -2 && y < 2));
        const long cell = std::lround(std::floor(x) + std::floor(y));
        CHECK_MESSAGE(((cell % 2) + 2) % 2 == 0, "sample ", i, " in a white square: ", x, ",", y);
    }
    for (Toy2d k : {Toy2d::swiss_roll, Toy2d::two_moons}) {
        Tensor<float> s = sample_toy2d<float>(k, 1000, gen);
        CHECK(s.shape() == Shape{1000, 2});
        CHECK(max(Tensor<float>(abs(s))).item() < 4.f);
    }
    Generator a(1), b(1);
    CHECK(sample_toy2d<float>(Toy2d::swiss_roll, 100, a).to_vector() == sample_toy2d<float>(Toy2d::swiss_roll, 100, b).to_vector());
    CHECK_THROWS_WITH_AS(parse_toy2d("spiral"), doctest::Contains("unknown distribution 'spiral'"), Error);
}

TEST_CASE("mini-batches: deterministic shuffling, drop_last, labels, transforms") {
    Tensor<float> data = Tensor<float>::arange(10).reshape({10, 1});
    std::vector<Index> labels = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    BatchIterator<float> it(data, labels, {.batch_size = 4, .shuffle = true, .drop_last = false, .seed = 3});
    CHECK(it.batches_per_epoch() == 3);
    std::vector<Index> seen;
    while (auto b = it.next()) {
        for (std::size_t i = 0; i < b->rows.size(); ++i) {
            CHECK(b->x.data()[i] == static_cast<float>(b->rows[i]));
            CHECK(b->labels[i] == b->rows[i]);
            seen.push_back(b->rows[i]);
        }
    }
    CHECK(seen.size() == 10);
    std::vector<Index> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    CHECK(sorted == labels);
    it.start_epoch(0);
    CHECK(it.next()->rows == std::vector<Index>(seen.begin(), seen.begin() + 4));  // same seed, same order
    it.start_epoch(1);
    CHECK(it.next()->rows != std::vector<Index>(seen.begin(), seen.begin() + 4));

    BatchIterator<float> dl(data, {.batch_size = 4, .shuffle = false, .drop_last = true});
    int batches = 0;
    while (dl.next()) ++batches;
    CHECK(batches == 2);
    CHECK_THROWS_WITH_AS(BatchIterator<float>(data, {1, 2}, {}), "BatchIterator: 2 labels for 10 samples", Error);

    Tensor<float> px = Tensor<float>::from({3}, {0, 127.5f, 255});
    CHECK(scale_to_unit(px).to_vector() == std::vector<float>{0, 0.5f, 1});
    const std::vector<float> sym = scale_to_symmetric(px).to_vector();
    for (std::size_t i = 0; i < 3; ++i) CHECK(sym[i] == doctest::Approx(-1.0 + static_cast<double>(i)).epsilon(1e-6));
    // symmetric_to_unit inverts scale_to_symmetric up to the 255 scale, and clamps strays.
    CHECK(symmetric_to_unit(Tensor<float>::from({5}, {-1.5f, -1, 0, 0.5f, 2})).to_vector() ==
          std::vector<float>{0, 0, 0.5f, 0.75f, 1});
    Generator g(5);
    Tensor<float> deq = dequantize(px, g);
    for (Index i = 0; i < 3; ++i) {
        CHECK(deq.data()[i] >= px.data()[i] / 256);
        CHECK(deq.data()[i] < (px.data()[i] + 1) / 256);
    }
    // 255 + u rounds to 256 in float for u within 2^-17 of 1 (about 8 in 2^20 draws):
    // dequantised values must still stay below 1.
    const std::vector<float> top = dequantize(Tensor<float>::full({1 << 20}, 255.0f), g).to_vector();
    CHECK(*std::max_element(top.begin(), top.end()) < 1.0f);
    Tensor<float> half = Tensor<float>::full({100000}, 0.25f);
    Tensor<float> bin = binarize(half, g);
    const double ones = sum(bin).item();
    CHECK(std::fabs(ones / 100000 - 0.25) < 4 * std::sqrt(0.25 * 0.75 / 100000));
}
