// Pictures (include/ember/io/image.hpp, image_grid.hpp, plot2d.hpp, line_plot.hpp, csv.hpp)
// and training plumbing (include/ember/train/metrics.hpp, progress.hpp).
//
// PNG files are checked by decoding them again with stb_image (libstb-dev), compiled
// into this translation unit only.
#include <doctest/doctest.h>

#include <ember/ember.hpp>
#include <ember/io/csv.hpp>
#include <ember/train/train.hpp>

// The picture tests need libstb-dev, as the picture headers do; the rest runs without it.
#if __has_include(<stb/stb_image_write.h>) && __has_include(<stb/stb_easy_font.h>) && __has_include(<stb/stb_image.h>)
#define EMBER_TEST_PICTURES 1
#include <ember/io/plot.hpp>

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

// A program may use stb_image_write itself, with its own implementation, after (or
// before) including ember: ember's private copy must not get in the way.
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#else
#define EMBER_TEST_PICTURES 0
#endif

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace ember;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system's temporary directory, removed with its contents.
struct TempDir {
    fs::path path;
    TempDir() {
        static std::atomic<int> count{0};
        path = fs::temp_directory_path() / ("ember_test_plot_" + std::to_string(::getpid()) + "_" +
                                            std::to_string(count++) + "_" + std::to_string(std::random_device{}()));
        REQUIRE(fs::create_directory(path));
    }
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    fs::path operator/(const std::string& name) const { return path / name; }
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

#if EMBER_TEST_PICTURES
// A PNG decoded by stb_image into 8-bit RGB.
struct Decoded {
    int width = 0, height = 0;
    std::vector<unsigned char> rgb;
    Rgb at(int x, int y) const {
        const std::size_t i = (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
        return {rgb[i], rgb[i + 1], rgb[i + 2]};
    }
};
Decoded decode_png(const std::string& bytes) {
    Decoded d;
    int channels = 0;
    unsigned char* p = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()),
                                             static_cast<int>(bytes.size()), &d.width, &d.height, &channels, 3);
    REQUIRE_MESSAGE(p != nullptr, "stb_image could not decode the PNG: " << stbi_failure_reason());
    d.rgb.assign(p, p + static_cast<std::size_t>(d.width) * static_cast<std::size_t>(d.height) * 3);
    stbi_image_free(p);
    return d;
}
Decoded decode_png_file(const fs::path& path) { return decode_png(read_file(path)); }

int count_pixels(const Image& img, Rgb c) {
    int n = 0;
    for (int y = 0; y < img.height(); ++y)
        for (int x = 0; x < img.width(); ++x) n += img.at(x, y) == c;
    return n;
}

#endif

// Everything printed to a FILE* (a temporary file).
std::string contents(std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string s;
    for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
    return s;
}

}  // namespace

#if EMBER_TEST_PICTURES

// ---- Image and PNG ----------------------------------------------------------------------

TEST_CASE("Image: pixels, clipping, blit, stacking and a PNG round trip") {
    Image img(7, 5, Rgb{10, 20, 30});
    CHECK(img.at(6, 4) == Rgb{10, 20, 30});
    img.set(2, 3, Rgb{1, 2, 3});
    img.set(-1, 0, colours::red);  // ignored
    img.set(7, 0, colours::red);   // ignored
    img.fill_rect(5, 3, 10, 10, colours::white);  // clipped to (5..6, 3..4)
    CHECK(img.at(2, 3) == Rgb{1, 2, 3});
    CHECK(count_pixels(img, colours::white) == 4);
    CHECK(count_pixels(img, colours::red) == 0);
    CHECK(error_of([&] { (void)img.at(7, 0); }).find("outside the 7x5 image") != std::string::npos);
    CHECK(error_of([] { Image(0, 3); }).find("Image: size 0x3 is out of range") != std::string::npos);

    const Decoded d = decode_png(encode_png(img));
    REQUIRE(d.width == 7);
    REQUIRE(d.height == 5);
    for (int y = 0; y < 5; ++y)
        for (int x = 0; x < 7; ++x) CHECK(d.at(x, y) == img.at(x, y));

    Image a(3, 2, colours::red), b(2, 4, colours::black);
    const Image h = hstack({a, b}, 1, colours::white);
    CHECK(h.width() == 6);
    CHECK(h.height() == 4);
    CHECK(h.at(0, 0) == colours::red);
    CHECK(h.at(3, 0) == colours::white);  // the gap
    CHECK(h.at(4, 3) == colours::black);
    CHECK(h.at(0, 3) == colours::white);  // below the shorter panel
    const Image v = vstack({a, b}, 0);
    CHECK(v.width() == 3);
    CHECK(v.height() == 6);
    CHECK(v.at(1, 2) == colours::black);
    CHECK(v.at(2, 5) == colours::white);

    Image canvas(4, 4, colours::white);
    canvas.blit(a, 2, 3);  // only (2..3, 3) is inside
    CHECK(count_pixels(canvas, colours::red) == 2);
    canvas.blit(a, -2, -1);  // only (0, 0) is inside
    CHECK(canvas.at(0, 0) == colours::red);
    CHECK(count_pixels(canvas, colours::red) == 3);
}

TEST_CASE("ember's copy of stb_image_write and the program's own give the same PNG") {
    Image img(9, 4, colours::red);
    img.set(3, 2, colours::black);
    std::string own;
    auto append = [](void* context, void* data, int size) {
        static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
    };
    REQUIRE(::stbi_write_png_to_func(append, &own, img.width(), img.height(), 3, img.data(), img.width() * 3) != 0);
    CHECK(own == encode_png(img));
}

TEST_CASE("Image: lines and text") {
    Image img(20, 20);
    img.draw_line(0.5, 0.5, 19.5, 19.5, colours::black);  // the diagonal
    for (int i = 0; i < 20; ++i) CHECK(img.at(i, i) == colours::black);
    CHECK(count_pixels(img, colours::black) == 20);

    Image clipped(20, 20);
    clipped.draw_line(-1e9, 10.5, 1e9, 10.5, colours::black, 1, Rect{5, 0, 5, 20});  // far end points: clipped
    CHECK(count_pixels(clipped, colours::black) == 5);
    CHECK(clipped.at(5, 10) == colours::black);
    CHECK(clipped.at(9, 10) == colours::black);

    Image text(60, 12);
    draw_text(text, 1, 1, "1000", colours::black);
    CHECK(count_pixels(text, colours::black) > 20);
    CHECK(text_width("1000") > text_width("1"));
    CHECK(text_width("ab", 2) == 2 * text_width("ab"));
    // Non-ASCII bytes and control characters are drawn as '?' rather than read out of
    // the font's table.
    Image odd(60, 12);
    draw_text(odd, 1, 1, "\xc3\xa9\t\x7f", colours::black);
    CHECK(count_pixels(odd, colours::black) > 0);
}

TEST_CASE("viridis and the series colours") {
    // A polynomial fit, within a few units of matplotlib's table at the ends.
    auto near = [](Rgb a, Rgb b) { return std::abs(a.r - b.r) <= 4 && std::abs(a.g - b.g) <= 4 && std::abs(a.b - b.b) <= 4; };
    CHECK(near(viridis(0), Rgb{68, 1, 84}));
    CHECK(near(viridis(0.5), Rgb{33, 145, 140}));
    CHECK(near(viridis(1), Rgb{253, 231, 37}));
    CHECK(viridis(-5) == viridis(0));
    CHECK(viridis(7) == viridis(1));
    CHECK(viridis(std::nan("")) == viridis(0));
    CHECK(series_colour(0) == Rgb{31, 119, 180});
    CHECK(series_colour(10) == series_colour(0));
}

// ---- image grids --------------------------------------------------------------------------

TEST_CASE("save_image_grid: a 2x2 grid of constant images, decoded again") {
    TempDir dir;
    // Four grey 3x5 images (H = 3, W = 5) with values lo, hi, the middle and beyond hi.
    const std::vector<float> levels = {-1.0f, 1.0f, 0.0f, 3.0f};
    const std::vector<int> expected = {0, 255, 128, 255};  // floor(255 * t + 0.5), clamped
    Tensor<float> images = Tensor<float>::empty({4, 1, 3, 5});
    for (Index i = 0; i < 4; ++i)
        for (Index k = 0; k < 15; ++k) images.data()[i * 15 + k] = levels[static_cast<std::size_t>(i)];

    save_image_grid(dir / "grid.png", images, 2, -1.0, 1.0, 2);
    const Decoded d = decode_png_file(dir / "grid.png");
    // (W + padding) * columns + padding wide, (H + padding) * rows + padding high.
    REQUIRE(d.width == (5 + 2) * 2 + 2);
    REQUIRE(d.height == (3 + 2) * 2 + 2);
    for (int y = 0; y < d.height; ++y)
        for (int x = 0; x < d.width; ++x) {
            int want = 0;  // padding is black
            for (int i = 0; i < 4; ++i) {
                const int x0 = (i % 2) * 7 + 2, y0 = (i / 2) * 5 + 2;
                if (x >= x0 && x < x0 + 5 && y >= y0 && y < y0 + 3) want = expected[static_cast<std::size_t>(i)];
            }
            const auto u = static_cast<std::uint8_t>(want);
            const Rgb expected_rgb{u, u, u};
            CHECK_MESSAGE(d.at(x, y) == expected_rgb, "pixel (" << x << ", " << y << ")");
        }
    // Nothing is left behind but the picture.
    CHECK(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator()) == 1);
}

TEST_CASE("image_grid: layout of an incomplete last row, colour channels, NaN, doubles") {
    // 3 images, 2 per row: the 4th cell stays black.
    Tensor<double> images = Tensor<double>::full({3, 3, 2, 2}, 0.0);
    for (Index i = 0; i < 3; ++i) {
        for (Index k = 0; k < 4; ++k) {
            images.data()[i * 12 + k] = 1.0;        // R = hi
            images.data()[i * 12 + 4 + k] = 0.0;    // G = lo
            images.data()[i * 12 + 8 + k] = 0.25;   // B: a quarter
        }
    }
    images.data()[2 * 12 + 8 + 3] = std::nan("");  // image 2, pixel (1, 1), blue channel
    const Image g = image_grid(images, 2, 0.0, 1.0, 1);
    CHECK(g.width() == (2 + 1) * 2 + 1);
    CHECK(g.height() == (2 + 1) * 2 + 1);
    CHECK(g.at(1, 1) == Rgb{255, 0, 64});         // image 0
    CHECK(g.at(4, 2) == Rgb{255, 0, 64});         // image 1
    CHECK(g.at(1, 4) == Rgb{255, 0, 64});         // image 2
    CHECK(g.at(2, 5) == colours::nan_magenta);    // image 2, pixel (1, 1)
    CHECK(g.at(4, 4) == colours::black);          // the empty cell
    CHECK(g.at(0, 0) == colours::black);          // padding

    // nrow larger than N: one row of N images.
    const Image row = image_grid(Tensor<float>::zeros({2, 1, 4, 4}), 8, 0.0, 1.0, 0);
    CHECK(row.width() == 8);
    CHECK(row.height() == 4);
}

TEST_CASE("image_grid: bad input is an ember::Error that says what was expected") {
    const Tensor<float> ok = Tensor<float>::zeros({2, 1, 4, 4});
    CHECK(error_of([] { image_grid(Tensor<float>::zeros({2, 4, 4}), 2, 0.0, 1.0); }) ==
          "image_grid: expected images of shape [N, C, H, W] with C = 1 or 3, got [2,4,4] (reshape [N, H, W] grey "
          "images to [N, 1, H, W])");
    CHECK(error_of([] { image_grid(Tensor<float>::zeros({2, 2, 4, 4}), 2, 0.0, 1.0); }).find("C = 1 or 3, got [2,2,4,4]") !=
          std::string::npos);
    CHECK(error_of([] { image_grid(Tensor<float>::zeros({0, 1, 4, 4}), 2, 0.0, 1.0); }).find("no pixels to draw") !=
          std::string::npos);
    CHECK(error_of([] { image_grid(Tensor<float>::zeros({2, 1, 0, 4}), 2, 0.0, 1.0); }).find("no pixels to draw") !=
          std::string::npos);
    CHECK(error_of([&] { image_grid(ok, 2, 1.0, 1.0); }).find("the value range [1, 1] must be finite with lo < hi") !=
          std::string::npos);
    CHECK(error_of([&] { image_grid(ok, 2, std::nan(""), 1.0); }).find("must be finite") != std::string::npos);
    CHECK(error_of([&] { image_grid(ok, 0, 0.0, 1.0); }).find("nrow (images per row) must be at least 1, got 0") !=
          std::string::npos);
    CHECK(error_of([&] { image_grid(ok, 2, 0.0, 1.0, -1); }).find("padding must be in [0, 1024], got -1") !=
          std::string::npos);
    CHECK(error_of([] { image_grid(Tensor<float>(), 2, 0.0, 1.0); }).find("undefined") != std::string::npos);
    TempDir dir;
    CHECK(error_of([&] { save_image_grid(dir / "no" / "such" / "dir.png", ok, 2, 0.0, 1.0); }).find("save_png") !=
          std::string::npos);
}

// ---- 2-D plots ----------------------------------------------------------------------------

TEST_CASE("density_plot: counts land in the right cell") {
    // 50 points at (0.55, 0.55) in [0, 1]^2 with 10 bins: one cell of 10x10 pixels is the
    // maximum, all others are empty.
    Tensor<float> pts = Tensor<float>::full({50, 2}, 0.55f);
    pts.data()[0] = 7.0f;          // outside the range: not counted
    pts.data()[3] = std::nanf("");  // NaN: not counted
    Plot2dOptions o{.x_range = AxisRange{0, 1}, .y_range = AxisRange{0, 1}, .width = 100, .height = 100, .bins = 10};
    const Image img = density_plot(pts, o);
    CHECK(img.width() > 100);
    CHECK(img.height() > 100);
    CHECK(count_pixels(img, viridis(1)) == 100);
    CHECK(count_pixels(img, viridis(0)) == 100 * 100 - 100);

    // The same cell, seen through the decoded PNG: its pixels form a 10x10 square whose
    // top-left corner is 50 pixels right of the area's left edge and 40 below its top
    // (row 0 of the grid is the largest y).
    const Decoded d = decode_png(encode_png(img));
    int x_min = d.width, y_min = d.height, x_area = d.width, y_area = d.height;
    for (int y = 0; y < d.height; ++y)
        for (int x = 0; x < d.width; ++x) {
            if (d.at(x, y) == viridis(1)) x_min = std::min(x_min, x), y_min = std::min(y_min, y);
            if (d.at(x, y) == viridis(0) || d.at(x, y) == viridis(1)) x_area = std::min(x_area, x), y_area = std::min(y_area, y);
        }
    CHECK(x_min - x_area == 50);
    CHECK(y_min - y_area == 40);

    // log_density lifts a cell with few counts above the linear scale.
    Tensor<float> two = Tensor<float>::from({3, 2}, {0.05f, 0.05f, 0.55f, 0.55f, 0.55f, 0.55f});
    o.log_density = true;
    const Image lg = density_plot(two, o);
    CHECK(count_pixels(lg, viridis(std::log1p(1.0) / std::log1p(2.0))) == 100);
}

TEST_CASE("scatter_plot: one dot per point inside the range, markers, errors") {
    Tensor<double> pts = Tensor<double>::from({3, 2}, {0.5, 0.5, 5.0, 0.5, std::nan(""), 0.5});
    const Plot2dOptions o{.title = "points",
                          .x_range = AxisRange{0, 1},
                          .y_range = AxisRange{0, 1},
                          .width = 64,
                          .height = 64,
                          .modes = {{0.25, 0.25}},
                          .point_size = 3};
    const Image img = scatter_plot(pts, o);
    CHECK(count_pixels(img, o.point_colour) == 9);  // one 3x3 dot
    CHECK(count_pixels(img, o.mode_colour) > 10);   // the "+" of the mode
    CHECK(count_pixels(img, colours::black) > 20);  // the title

    // Default ranges come from the data.
    const Image autorange = scatter_plot(Tensor<float>::from({2, 2}, {-3.f, 10.f, 4.f, 20.f}));
    CHECK(count_pixels(autorange, Plot2dOptions{}.point_colour) == 2 * 2 * 2);

    CHECK(error_of([] { scatter_plot(Tensor<float>::zeros({5, 3})); }) ==
          "scatter_plot: expected points of shape [N, 2], got [5,3]");
    CHECK(error_of([] { density_plot(Tensor<float>::zeros({5, 2}), {.x_range = AxisRange{1, 0}}); }) ==
          "density_plot: the x range [1, 0] must be finite with lo < hi");
    CHECK(error_of([] { density_plot(Tensor<float>::zeros({5, 2}), {.bins = 0}); }) ==
          "density_plot: bins must be in [1, 4096], got 0");
    CHECK(error_of([] { scatter_plot(Tensor<float>::zeros({5, 2}), {.width = 2}); }).find("data area 2x320") !=
          std::string::npos);
}

TEST_CASE("heatmap_plot: cells, value range, NaN") {
    Tensor<float> v = Tensor<float>::from({2, 2}, {0.f, 1.f, 2.f, std::nanf("")});
    const Image img = heatmap_plot(v, {.width = 64, .height = 64, .axes = false});
    CHECK(count_pixels(img, viridis(0)) == 32 * 32);        // top left: the minimum
    CHECK(count_pixels(img, viridis(1)) == 32 * 32);        // bottom left: the maximum, 2
    CHECK(count_pixels(img, viridis(0.5)) == 32 * 32);      // top right
    CHECK(count_pixels(img, colours::nan_magenta) == 32 * 32);
    const Image fixed = heatmap_plot(v, {.width = 64, .height = 64, .value_range = AxisRange{0, 4}});
    CHECK(count_pixels(fixed, viridis(0.5)) == 32 * 32);    // 2 is half of [0, 4]
    CHECK(error_of([] { heatmap_plot(Tensor<float>::zeros({4})); }) ==
          "heatmap_plot: expected a non-empty grid of values [rows, cols], got [4]");
}

// ---- line plots -----------------------------------------------------------------------

TEST_CASE("line_plot: size, colours, log axis, errors") {
    TempDir dir;
    std::vector<double> x, y1, y2;
    for (int i = 1; i <= 200; ++i) x.push_back(i), y1.push_back(1.0 / i), y2.push_back(i % 10 == 0 ? 0.5 : std::nan(""));
    const std::vector<Series> series = {{"train", x, y1}, {"test", x, y2}};
    save_line_plot(dir / "lines.png", series, {.title = "loss", .width = 500, .height = 300});
    const Decoded d = decode_png_file(dir / "lines.png");
    CHECK(d.width == 500);
    CHECK(d.height == 300);
    int first = 0, second = 0, background = 0;
    for (int yy = 0; yy < d.height; ++yy)
        for (int xx = 0; xx < d.width; ++xx) {
            first += d.at(xx, yy) == series_colour(0);
            second += d.at(xx, yy) == series_colour(1);
            background += d.at(xx, yy) == colours::white;
        }
    CHECK(first > 200);   // the curve
    CHECK(second > 100);  // the sparse series is joined across its gaps
    CHECK(background < d.width * d.height);

    // Log scale: non-positive values are skipped, not an error.
    std::vector<double> y3 = y1;
    y3[5] = 0, y3[6] = -1;
    const Image lg = line_plot({{"nll", x, y3}}, {.log_y = true});
    CHECK(lg.width() == 640);
    CHECK(lg.height() == 400);
    CHECK(count_pixels(lg, series_colour(0)) > 200);

    // Nothing to draw: an empty frame.
    CHECK(line_plot({}).width() == 640);
    CHECK(line_plot({{"empty", {}, {}}}).height() == 400);

    CHECK(error_of([] { line_plot({{"bad", {1, 2, 3}, {1, 2}}}); }) ==
          "line_plot: series 'bad' has 3 x values and 2 y values");
    CHECK(error_of([&] { line_plot({{"nll", x, y1}}, {.log_y = true, .y_range = AxisRange{0, 1}}); }) ==
          "line_plot: a logarithmic y axis needs a positive range, got [0, 1]");
    CHECK(error_of([] { line_plot({}, {.width = 10}); }).find("line_plot: size 10x400 is out of range") !=
          std::string::npos);
}

TEST_CASE("ticks and their labels") {
    CHECK(nice_ticks(0, 1) == std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1});
    CHECK(tick_labels(nice_ticks(0, 1)) == std::vector<std::string>{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"});
    CHECK(tick_labels(nice_ticks(-3, 3)) == std::vector<std::string>{"-3", "-2", "-1", "0", "1", "2", "3"});
    CHECK(tick_labels(nice_ticks(0, 2000)) ==
          std::vector<std::string>{"0", "500", "1000", "1500", "2000"});
    CHECK(tick_labels(nice_ticks(0, 3e-5)) == std::vector<std::string>{"0", "1e-05", "2e-05", "3e-05"});
    CHECK(tick_labels(nice_ticks(1e6, 3e6)) == std::vector<std::string>{"1e+06", "1.5e+06", "2e+06", "2.5e+06", "3e+06"});
    CHECK(log_ticks(1e-3, 20) == std::vector<double>{1e-3, 1e-2, 1e-1, 1, 10});
    CHECK(tick_labels(log_ticks(1e-3, 20), true) == std::vector<std::string>{"0.001", "0.01", "0.1", "1", "10"});
    CHECK(log_ticks(1.5, 9) == std::vector<double>{2, 5});  // no power of ten inside
    const std::vector<double> few = {0.0, 1.0, std::nan("")};
    const AxisRange r = auto_range(few.begin(), few.end());
    CHECK(r.lo == doctest::Approx(-0.05));
    CHECK(r.hi == doctest::Approx(1.05));
    const std::vector<double> one = {3.0};
    CHECK(auto_range(one.begin(), one.end()).lo == 2.0);
}

#endif  // EMBER_TEST_PICTURES

// ---- CSV and training plumbing ---------------------------------------------------------

TEST_CASE("read_numeric_csv: values, missing fields, errors") {
    const CsvTable t = parse_numeric_csv("step, loss,nll\r\n1,0.5,\n2,0.25,3e-2\n\n3,nan,inf\n");
    CHECK(t.columns == std::vector<std::string>{"step", "loss", "nll"});
    REQUIRE(t.rows() == 3);
    CHECK(t.column("step") == std::vector<double>{1, 2, 3});
    CHECK(t.column("loss")[1] == 0.25);
    CHECK(std::isnan(t.column("nll")[0]));  // empty field
    CHECK(t.column("nll")[1] == 0.03);
    CHECK(std::isinf(t.column("nll")[2]));
    CHECK(error_of([&] { (void)t.column("lr"); }) == "CsvTable::column: no column named 'lr'; the columns are: step, loss, nll");
    CHECK(error_of([] { parse_numeric_csv("a,b\n1,2,3\n", "m.csv"); }) ==
          "read_numeric_csv: m.csv: line 2 has 3 fields; the header has 2");
    CHECK(error_of([] { parse_numeric_csv("a,b\n1,x1\n", "m.csv"); }) ==
          "read_numeric_csv: m.csv: line 2, column 'b': 'x1' is not a number (or not within the range of double)");
    CHECK(error_of([] { parse_numeric_csv("a,a\n", "m.csv"); }) ==
          "read_numeric_csv: m.csv: line 1: column 'a' appears twice");
    CHECK(error_of([] { parse_numeric_csv("\n\n", "m.csv"); }).find("the file is empty") != std::string::npos);
    CHECK(error_of([] { read_numeric_csv("/nonexistent/m.csv"); }).find("cannot open") != std::string::npos);
}

TEST_CASE("MetricsLog: header, rows, missing values, errors") {
    TempDir dir;
    const fs::path p = dir / "metrics.csv";
    {
        MetricsLog log(p);
        log.write(0, {{"loss", 0.5}, {"lr", 1e-3}});
        log.write(1, {{"lr", 1e-3}});  // loss missing: an empty field
        log.write(2, {{"loss", std::nan("")}, {"lr", -std::numeric_limits<double>::infinity()}});
        // Each row is in the file as soon as write() returns.
        CHECK(read_file(p) == "step,loss,lr\n0,0.5,0.001\n1,,0.001\n2,nan,-inf\n");
        CHECK(log.columns() == std::vector<std::string>{"step", "loss", "lr"});
        CHECK(error_of([&] { log.write(3, {{"acc", 1}}); }) ==
              "MetricsLog::write: " + p.string() + ": 'acc' is not a metric column of this log; its columns are "
              "step,loss,lr");
        CHECK(error_of([&] { log.write(2, {{"loss", 1}}); }) ==
              "MetricsLog::write: " + p.string() + ": step 2 after step 2; steps must increase");
        CHECK(error_of([&] { log.write(5, {{"loss", 1}, {"loss", 2}}); }).find("given twice in one row") !=
              std::string::npos);
        log.write(10, std::vector<std::pair<std::string, double>>{{"loss", 0.1}});
    }
    const CsvTable t = read_numeric_csv(p);
    CHECK(t.column("step") == std::vector<double>{0, 1, 2, 10});
    CHECK(std::isnan(t.column("loss")[1]));
    CHECK(MetricsLog::format_value(0.1) == "0.1");
    CHECK(MetricsLog::format_value(1.0 / 3) == "0.3333333333333333");

    // A fresh run (start step 0) starts an empty log.
    {
        MetricsLog log(p);
        CHECK(read_file(p).empty());
        CHECK(error_of([&] { log.write(1, {{"a,b", 1}}); }).find("must be non-empty and free of ,") != std::string::npos);
        CHECK(error_of([&] { log.write(1, {{"step", 1}}); }).find("given twice") != std::string::npos);
    }
    CHECK(error_of([&] { MetricsLog(dir / "no" / "dir.csv"); }).find("MetricsLog") != std::string::npos);
}

TEST_CASE("MetricsLog: resuming keeps the rows before the start step") {
    TempDir dir;
    const fs::path p = dir / "metrics.csv";
    {
        MetricsLog log(p, 0, {"loss", "test"});
        for (int s = 0; s < 10; ++s) {
            if (s % 5 == 0) log.write(s, {{"loss", s * 0.5}, {"test", 1.0}});
            else log.write(s, {{"loss", s * 0.5}});
        }
    }
    // A crash in the middle of a row leaves a partial last line.
    write_file(p, read_file(p) + "10,5.");
    {
        MetricsLog log(p, 6);  // resumed from a checkpoint of step 6
        CHECK(read_file(p) == "step,loss,test\n0,0,1\n1,0.5,\n2,1,\n3,1.5,\n4,2,\n5,2.5,1\n");
        CHECK(log.columns() == std::vector<std::string>{"step", "loss", "test"});
        CHECK(error_of([&] { log.write(5, {{"loss", 1}}); }).find("step 5 comes before the start step 6") !=
              std::string::npos);
        log.write(6, {{"loss", 9.0}});
    }
    CHECK(read_numeric_csv(p).column("step") == std::vector<double>{0, 1, 2, 3, 4, 5, 6});
    // Resuming past the end keeps everything; the header fixes the columns.
    {
        MetricsLog log(p, 100, {"loss", "test"});
        CHECK(read_numeric_csv(p).rows() == 7);
        CHECK(error_of([&] { MetricsLog other(p, 100, {"loss"}); }) ==
              "MetricsLog: " + p.string() + ": cannot resume: the file has the columns step,loss,test, this run asks "
              "for step,loss");
    }
    // No row kept: the columns are chosen again.
    {
        MetricsLog log(p, 0);
        log.write(0, {{"acc", 0.5}});
    }
    CHECK(read_file(p) == "step,acc\n0,0.5\n");
    // A file that is not a metrics log is not silently rewritten.
    write_file(p, "time,loss\n1,2\n");
    CHECK(error_of([&] { MetricsLog(p, 5); }).find("not a header starting with \"step\"") != std::string::npos);
    write_file(p, "step,loss\n1,2\nabc,3\n");
    CHECK(error_of([&] { MetricsLog(p, 5); }).find("line 3 does not start with an integer step") != std::string::npos);
    CHECK(read_file(p) == "step,loss\n1,2\nabc,3\n");
}

#if EMBER_TEST_PICTURES
TEST_CASE("metrics_plot: a metrics CSV as curves against its step column") {
    TempDir dir;
    {
        MetricsLog log(dir / "m.csv");
        for (int s = 0; s < 50; ++s) log.write(s, {{"loss", 1.0 / (s + 1)}, {"lr", 0.01}});
    }
    save_metrics_plot(dir / "m.csv", dir / "m.png", {"loss"}, {.width = 320, .height = 200});
    const Decoded d = decode_png_file(dir / "m.png");
    CHECK(d.width == 320);
    CHECK(d.height == 200);
    const Image all = plot_metrics_csv(dir / "m.csv");  // every column but step
    CHECK(count_pixels(all, series_colour(0)) > 50);
    CHECK(count_pixels(all, series_colour(1)) > 50);
    CHECK(error_of([&] { plot_metrics_csv(dir / "m.csv", {"acc"}); }) ==
          "metrics_plot: no column named 'acc'; the columns are: step, loss, lr");
    CHECK(error_of([] { metrics_plot(parse_numeric_csv("iter,loss\n1,2\n")); }).find("no \"step\" column") !=
          std::string::npos);
}

TEST_CASE("metrics_plot: a log without rows, or still empty, gives empty axes") {
    TempDir dir;
    { std::ofstream(dir / "empty.csv"); }  // a run that has not logged anything yet
    { std::ofstream(dir / "header.csv") << "step,loss\n"; }
    for (const char* name : {"empty.csv", "header.csv"}) {
        CAPTURE(name);
        save_metrics_plot(dir / name, dir / "m.png", {"loss"}, {.width = 320, .height = 200});
        const Decoded d = decode_png_file(dir / "m.png");
        CHECK(d.width == 320);
        CHECK(d.height == 200);
    }
    CHECK(plot_metrics_csv(dir / "empty.csv").width() > 0);  // no columns asked: axes only
}
#endif

TEST_CASE("format_progress and format_duration") {
    CHECK(format_duration(0) == "00:00");
    CHECK(format_duration(59.9) == "00:59");
    CHECK(format_duration(61) == "01:01");
    CHECK(format_duration(3600) == "1:00:00");
    CHECK(format_duration(100 * 3600 + 62) == "100:01:02");
    CHECK(format_duration(std::nan("")) == "--:--");
    CHECK(format_duration(-1) == "--:--");

    ProgressStatus s{.label = "train", .step = 1200, .total = 5000, .start_step = 0, .elapsed = 34,
                     .values = {{"loss", 0.25}, {"nll", 1702.46}}};
    // 1200 / 34 s = 35.3 steps/s; (5000 - 1200) / 35.29 = 107.7 s left.
    CHECK(format_progress(s) == "train 1200/5000 24.0% | 35.3 steps/s | 00:34 elapsed | ETA 01:47 | loss 0.25 | nll 1702");
    s.start_step = 1000;  // resumed: 200 steps in 34 s
    CHECK(format_progress(s).find("5.9 steps/s | 00:34 elapsed | ETA 10:46") != std::string::npos);
    s = ProgressStatus{.step = 3, .total = 0, .elapsed = 12};  // unknown total, slow steps
    CHECK(format_progress(s) == "3 | 4.00 s/step | 00:12 elapsed");
    s = ProgressStatus{.step = 0, .total = 10, .elapsed = 0};  // nothing done yet
    CHECK(format_progress(s) == "0/10 0.0% | - steps/s | 00:00 elapsed | ETA --:--");
    s = ProgressStatus{.step = 10, .total = 10, .elapsed = 5};
    CHECK(format_progress(s) == "10/10 100.0% | 2.0 steps/s | 00:05 elapsed | ETA 00:00");
}

TEST_CASE("Progress: plain lines by steps and by time, or one terminal line") {
    double now = 0;
    auto clock = [&] { return now; };
    {
        std::FILE* f = std::tmpfile();
        REQUIRE(f != nullptr);
        {
            Progress p(35, {.stream = f, .interactive = false, .every_steps = 10, .every_seconds = 0, .clock = clock});
            for (int i = 1; i <= 35; ++i) now += 0.5, p.update(i, {{"loss", 1.0 / i}});
            p.finish();
        }
        const std::string out = contents(f);
        std::fclose(f);
        CHECK(std::count(out.begin(), out.end(), '\n') == 4);  // steps 10, 20, 30 and the final one
        CHECK(out.find("10/35 28.6% | 2.0 steps/s | 00:05 elapsed | ETA 00:12 | loss 0.1\n") != std::string::npos);
        CHECK(out.find("35/35 100.0%") != std::string::npos);
        CHECK(out.find('\r') == std::string::npos);
    }
    {
        std::FILE* f = std::tmpfile();
        now = 0;
        {
            Progress p(0, {.stream = f, .interactive = false, .every_seconds = 3, .clock = clock});
            for (int i = 1; i <= 10; ++i) now += 1, p.update(i);  // a line at 3, 6 and 9 s
            p.message("hello");
        }
        const std::string out = contents(f);
        std::fclose(f);
        CHECK(std::count(out.begin(), out.end(), '\n') == 4);
        CHECK(out.find("9 | 1.0 steps/s | 00:09 elapsed\nhello\n") != std::string::npos);
    }
    {
        std::FILE* f = std::tmpfile();
        now = 0;
        {
            Progress p(4, {.label = "fit", .stream = f, .interactive = true, .refresh_seconds = 0, .clock = clock});
            CHECK(p.interactive());
            for (int i = 1; i <= 4; ++i) now += 1, p.update(i);
        }  // the destructor ends the line
        const std::string out = contents(f);
        std::fclose(f);
        CHECK(std::count(out.begin(), out.end(), '\r') == 4);
        CHECK(std::count(out.begin(), out.end(), '\n') == 1);
        CHECK(out.ends_with("\rfit 4/4 100.0% | 1.0 steps/s | 00:04 elapsed | ETA 00:00\n"));
    }
}
