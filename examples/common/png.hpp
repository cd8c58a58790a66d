#pragma once
// Small picture helpers shared by ember's examples: an RGB image, the viridis colour map,
// tiny text labels, and PNG / text files written atomically.
//
// The PNG encoder is stb_image_write (Debian: libstb-dev), a single-header library:
// exactly ONE translation unit of a program must say
//     #define STB_IMAGE_WRITE_IMPLEMENTATION
// before it includes this header. The text labels use stb_easy_font, whose functions are
// all `static`, so it needs no such define.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <stb/stb_easy_font.h>
#include <stb/stb_image_write.h>

namespace ember_examples {

struct Rgb {
    std::uint8_t r = 0, g = 0, b = 0;
};

// An 8-bit RGB image, row-major, row 0 at the top.
class Image {
public:
    Image(int width, int height, Rgb background = {}) : width_(width), height_(height) {
        if (width <= 0 || height <= 0) throw std::invalid_argument("Image: size must be positive");
        pixels_.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
        fill_rect(0, 0, width, height, background);
    }
    int width() const { return width_; }
    int height() const { return height_; }
    const std::uint8_t* data() const { return pixels_.data(); }

    // Pixels outside the image are ignored, so callers may draw partly off-canvas.
    void set(int x, int y, Rgb c) {
        if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
        std::uint8_t* p = &pixels_[(static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x)) * 3];
        p[0] = c.r, p[1] = c.g, p[2] = c.b;
    }
    void fill_rect(int x0, int y0, int w, int h, Rgb c) {
        for (int y = y0; y < y0 + h; ++y)
            for (int x = x0; x < x0 + w; ++x) set(x, y, c);
    }

private:
    int width_, height_;
    std::vector<std::uint8_t> pixels_;
};

// Matplotlib's viridis (perceptually uniform, readable in grey and by colour-blind
// viewers) as a degree-6 polynomial per channel (Matt Zucker's fit, within ~2% of the
// tabulated map). t is clamped to [0, 1]: 0 = dark purple, 1 = yellow.
inline Rgb viridis(double t) {
    static constexpr std::array<std::array<double, 3>, 7> c = {{
        {0.2777273272234177, 0.005407344544966578, 0.3340998053353061},
        {0.1050930431085774, 1.404613529898575, 1.384590162594685},
        {-0.3308618287255563, 0.214847559468213, 0.09509516302823659},
        {-4.634230498983486, -5.799100973351585, -19.33244095627987},
        {6.228269936347081, 14.17993336680509, 56.69055260068105},
        {4.776384997670288, -13.74514537774601, -65.35303263337234},
        {-5.435455855934631, 4.645852612178535, 26.3124352495832},
    }};
    t = std::isfinite(t) ? std::clamp(t, 0.0, 1.0) : 0.0;
    std::array<std::uint8_t, 3> out{};
    for (std::size_t ch = 0; ch < 3; ++ch) {
        double v = c[6][ch];
        for (std::size_t k = 6; k-- > 0;) v = v * t + c[k][ch];  // Horner
        out[ch] = static_cast<std::uint8_t>(std::lround(255.0 * std::clamp(v, 0.0, 1.0)));
    }
    return {out[0], out[1], out[2]};
}

// Draws ASCII `text` with its top-left corner at (x, y); each font pixel becomes a
// scale x scale block (stb_easy_font glyphs are about 7 pixels tall at scale 1).
inline void draw_text(Image& img, int x, int y, std::string_view text, Rgb colour, int scale = 1) {
    std::string buf(text);  // stb_easy_font_print takes a non-const char*
    // Each quad is 4 vertices of 16 bytes (x, y, z floats + RGBA); about 270 bytes a glyph.
    std::vector<char> vertices(buf.size() * 300 + 64);
    const int quads = stb_easy_font_print(0, 0, buf.data(), nullptr, vertices.data(), static_cast<int>(vertices.size()));
    for (int q = 0; q < quads; ++q) {
        // The quads are axis-aligned rectangles: vertex 0 and vertex 2 are opposite corners.
        float v0[2], v2[2];
        std::memcpy(v0, vertices.data() + (q * 4 + 0) * 16, sizeof v0);
        std::memcpy(v2, vertices.data() + (q * 4 + 2) * 16, sizeof v2);
        const int x0 = static_cast<int>(std::lround(v0[0])), y0 = static_cast<int>(std::lround(v0[1]));
        const int x1 = static_cast<int>(std::lround(v2[0])), y1 = static_cast<int>(std::lround(v2[1]));
        img.fill_rect(x + x0 * scale, y + y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale, colour);
    }
}

// Writes `bytes` to `path` atomically: first to a hidden temporary next to it
// (DIR/.NAME.tmp), then renamed over `path`, so a reader never sees a half-written file
// and an interrupted run leaves the previous file intact. Throws std::runtime_error.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
    const std::filesystem::path tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.close();
        if (!out) {
            std::error_code ignored;
            std::filesystem::remove(tmp, ignored);
            throw std::runtime_error("cannot write " + tmp.string());
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw std::runtime_error("cannot rename " + tmp.string() + " to " + path.string() + ": " + ec.message());
    }
}

// Encodes `img` as PNG in memory and writes it atomically to `path`.
inline void write_png_atomic(const Image& img, const std::filesystem::path& path) {
    std::string bytes;
    auto append = [](void* context, void* data, int size) {
        static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
    };
    if (!stbi_write_png_to_func(append, &bytes, img.width(), img.height(), 3, img.data(), img.width() * 3))
        throw std::runtime_error("PNG encoding failed for " + path.string());
    write_file_atomic(path, bytes);
}

}  // namespace ember_examples
