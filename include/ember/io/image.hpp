#pragma once
/// \file
/// 8-bit RGB images in memory and as PNG files: the canvas that ember's picture helpers
/// (image_grid.hpp, plot2d.hpp, line_plot.hpp) draw on.
///
///     Image img(200, 100);                         // white
///     img.fill_rect(10, 10, 50, 20, {255, 0, 0});
///     draw_text(img, 10, 40, "loss 0.25", colours::black, 2);
///     Image both = hstack({img, other});           // panels side by side
///     save_png("out/picture.png", both);           // atomic (ember/io/atomic_file.hpp)
///
/// PNG encoding uses stb_image_write and text uses stb_easy_font, from libstb-dev; see
/// ember/io/detail/stb.hpp for how a header-only library includes them (programs need no
/// STB_IMAGE_WRITE_IMPLEMENTATION define). Coordinates are pixels, x to the right, y
/// downwards, (0, 0) the top-left corner. Drawing is clipped to the image.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/io/atomic_file.hpp"
#include "ember/io/detail/stb.hpp"

namespace ember {

/// A colour: red, green and blue, 0 to 255 each.
struct Rgb {
    ///@{
    /// One channel, 0 to 255.
    std::uint8_t r = 0, g = 0, b = 0;
    ///@}
    /// Equal channels.
    friend bool operator==(Rgb, Rgb) = default;
};

/// Named colours of the plots.
namespace colours {
/// (255, 255, 255).
inline constexpr Rgb white{255, 255, 255};
/// (0, 0, 0).
inline constexpr Rgb black{0, 0, 0};
/// (128, 128, 128): legend frames.
inline constexpr Rgb grey{128, 128, 128};
/// (225, 225, 225): grid lines.
inline constexpr Rgb light_grey{225, 225, 225};
/// (228, 26, 28): the default colour of mode markers.
inline constexpr Rgb red{228, 26, 28};
/// Marks NaN pixels and cells in image grids and heat maps: no colour map produces it.
inline constexpr Rgb nan_magenta{255, 0, 255};
}  // namespace colours

/// A rectangle of pixels: columns [x, x + w), rows [y, y + h).
struct Rect {
    ///@{
    /// Position and size in pixels (see the struct description).
    int x = 0, y = 0, w = 0, h = 0;
    ///@}
    /// Whether pixel (px, py) lies inside.
    bool contains(int px, int py) const { return px >= x && py >= y && px < x + w && py < y + h; }
};

/// An RGB image, 3 bytes a pixel, row-major, row 0 at the top.
class Image {
public:
    /// stb_image_write computes byte offsets in `int`; 16384² RGB pixels stay well below 2^31.
    static constexpr int kMaxSide = 16384;

    /// A `width` x `height` image (each side 1 to kMaxSide) filled with `background`.
    Image(int width, int height, Rgb background = colours::white) : width_(width), height_(height) {
        EMBER_CHECK(width >= 1 && height >= 1 && width <= kMaxSide && height <= kMaxSide, "Image", "size ", width,
                    "x", height, " is out of range; each side must be in [1, ", kMaxSide, "]");
        pixels_.resize(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
        fill(background);
    }

    /// Width in pixels.
    int width() const { return width_; }
    /// Height in pixels.
    int height() const { return height_; }
    /// The whole image as a rectangle.
    Rect bounds() const { return {0, 0, width_, height_}; }
    /// width() * height() * 3 bytes: R, G, B of pixel (0,0), then (1,0), ...
    const std::uint8_t* data() const { return pixels_.data(); }

    /// The pixel at (x, y); throws ember::Error outside the image.
    Rgb at(int x, int y) const {
        EMBER_CHECK(bounds().contains(x, y), "Image::at", "pixel (", x, ", ", y, ") is outside the ", width_, "x",
                    height_, " image");
        const std::uint8_t* p = &pixels_[offset(x, y)];
        return {p[0], p[1], p[2]};
    }
    /// Sets one pixel; pixels outside the image are ignored, so shapes may overhang it.
    void set(int x, int y, Rgb c) {
        if (!bounds().contains(x, y)) return;
        std::uint8_t* p = &pixels_[offset(x, y)];
        p[0] = c.r, p[1] = c.g, p[2] = c.b;
    }
    /// Sets every pixel to `c`.
    void fill(Rgb c) { fill_rect(0, 0, width_, height_, c); }
    /// Sets the pixels of a rectangle (clipped to the image) to `c`.
    void fill_rect(int x, int y, int w, int h, Rgb c) {
        // In long long: x + w must not overflow for a rectangle far off the image.
        const int x0 = std::max(x, 0), y0 = std::max(y, 0);
        const auto x1 = static_cast<int>(std::min<long long>(static_cast<long long>(x) + std::max(w, 0), width_));
        const auto y1 = static_cast<int>(std::min<long long>(static_cast<long long>(y) + std::max(h, 0), height_));
        for (int yy = y0; yy < y1; ++yy)
            for (int xx = x0; xx < x1; ++xx) set(xx, yy, c);
    }
    /// A 1-pixel outline just inside the rectangle.
    void draw_rect(int x, int y, int w, int h, Rgb c) {
        fill_rect(x, y, w, 1, c);
        fill_rect(x, y + h - 1, w, 1, c);
        fill_rect(x, y, 1, h, c);
        fill_rect(x + w - 1, y, 1, h, c);
    }
    /// A straight line between two points given in continuous pixel coordinates, drawn as
    /// `thickness` x `thickness` squares at unit steps along it (no anti-aliasing). Only
    /// pixels inside `clip` (default: the whole image) are changed.
    void draw_line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1) {
        draw_line(x0, y0, x1, y1, c, thickness, bounds());
    }
    /// draw_line drawing only inside `clip`.
    void draw_line(double x0, double y0, double x1, double y1, Rgb c, int thickness, Rect clip) {
        thickness = std::max(thickness, 1);
        // Cut the segment to the clip rectangle (widened by the pen) first: an end point far
        // outside, as in a zoomed-in plot, would otherwise cost millions of steps.
        const double pad = thickness + 1.0;
        if (!clip_segment(x0, y0, x1, y1, clip.x - pad, clip.y - pad, clip.x + clip.w + pad, clip.y + clip.h + pad))
            return;
        const int steps = static_cast<int>(std::ceil(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0))));
        const int half = (thickness - 1) / 2;
        for (int i = 0; i <= steps; ++i) {
            const double t = steps == 0 ? 0.0 : static_cast<double>(i) / steps;
            const int px = static_cast<int>(std::floor(x0 + t * (x1 - x0))) - half;
            const int py = static_cast<int>(std::floor(y0 + t * (y1 - y0))) - half;
            for (int dy = 0; dy < thickness; ++dy)
                for (int dx = 0; dx < thickness; ++dx)
                    if (clip.contains(px + dx, py + dy)) set(px + dx, py + dy, c);
        }
    }

    /// Copies `src` so that its top-left corner lands at (x, y); parts outside are clipped.
    void blit(const Image& src, int x, int y) {
        if (&src == this) {  // rows copied early would be read again
            const Image copy = src;
            blit(copy, x, y);
            return;
        }
        for (int sy = 0; sy < src.height_; ++sy) {
            const int ty = y + sy;
            if (ty < 0 || ty >= height_) continue;
            const int sx0 = std::max(0, -x), sx1 = std::min(src.width_, width_ - x);
            if (sx0 >= sx1) continue;
            std::memcpy(&pixels_[offset(x + sx0, ty)], &src.pixels_[src.offset(sx0, sy)],
                        static_cast<std::size_t>(sx1 - sx0) * 3);
        }
    }

private:
    // Liang-Barsky: shortens the segment (x0,y0)-(x1,y1) to its part inside
    // [xmin, xmax] x [ymin, ymax]; false if no part is inside (or a coordinate is not finite).
    static bool clip_segment(double& x0, double& y0, double& x1, double& y1, double xmin, double ymin, double xmax,
                             double ymax) {
        if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return false;
        const double dx = x1 - x0, dy = y1 - y0;
        double t0 = 0, t1 = 1;
        // Keeps the t with p * t <= q.
        auto edge = [&](double p, double q) {
            if (p == 0) return q >= 0;
            const double r = q / p;
            if (p < 0) t0 = std::max(t0, r);
            else t1 = std::min(t1, r);
            return t0 <= t1;
        };
        if (!edge(-dx, x0 - xmin) || !edge(dx, xmax - x0) || !edge(-dy, y0 - ymin) || !edge(dy, ymax - y0))
            return false;
        const double ax = x0, ay = y0;
        x0 = ax + t0 * dx, y0 = ay + t0 * dy;
        x1 = ax + t1 * dx, y1 = ay + t1 * dy;
        return true;
    }
    std::size_t offset(int x, int y) const {
        return (static_cast<std::size_t>(y) * static_cast<std::size_t>(width_) + static_cast<std::size_t>(x)) * 3;
    }

    int width_, height_;
    std::vector<std::uint8_t> pixels_;
};

/// Panels side by side, tops aligned, `gap` pixels apart; the rest is `background`.
inline Image hstack(const std::vector<Image>& panels, int gap = 8, Rgb background = colours::white) {
    EMBER_CHECK(!panels.empty(), "hstack", "needs at least one image");
    int w = gap * static_cast<int>(panels.size() - 1), h = 0;
    for (const Image& p : panels) w += p.width(), h = std::max(h, p.height());
    Image out(w, h, background);
    int x = 0;
    for (const Image& p : panels) out.blit(p, x, 0), x += p.width() + gap;
    return out;
}
/// Panels one below the other, left edges aligned, `gap` pixels apart.
inline Image vstack(const std::vector<Image>& panels, int gap = 8, Rgb background = colours::white) {
    EMBER_CHECK(!panels.empty(), "vstack", "needs at least one image");
    int w = 0, h = gap * static_cast<int>(panels.size() - 1);
    for (const Image& p : panels) h += p.height(), w = std::max(w, p.width());
    Image out(w, h, background);
    int y = 0;
    for (const Image& p : panels) out.blit(p, 0, y), y += p.height() + gap;
    return out;
}

// ---- colours ------------------------------------------------------------------------------

/// Matplotlib's viridis (perceptually uniform, readable in grey and by colour-blind
/// viewers) as a degree-6 polynomial per channel (Matt Zucker's fit, within ~2% of the
/// tabulated map). t is clamped to [0, 1]: 0 = dark purple, 1 = yellow; NaN gives 0.
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
    t = std::isnan(t) ? 0.0 : std::clamp(t, 0.0, 1.0);
    std::array<std::uint8_t, 3> out{};
    for (std::size_t ch = 0; ch < 3; ++ch) {
        double v = c[6][ch];
        for (std::size_t k = 6; k-- > 0;) v = v * t + c[k][ch];  // Horner
        out[ch] = static_cast<std::uint8_t>(std::lround(255.0 * std::clamp(v, 0.0, 1.0)));
    }
    return {out[0], out[1], out[2]};
}

/// Colour `i` of matplotlib's "tab10" cycle (blue, orange, green, red, ...), for series.
inline Rgb series_colour(std::size_t i) {
    static constexpr std::array<Rgb, 10> tab10 = {{{31, 119, 180},
                                                   {255, 127, 14},
                                                   {44, 160, 44},
                                                   {214, 39, 40},
                                                   {148, 103, 189},
                                                   {140, 86, 75},
                                                   {227, 119, 194},
                                                   {127, 127, 127},
                                                   {188, 189, 34},
                                                   {23, 190, 207}}};
    return tab10[i % tab10.size()];
}

// ---- text ---------------------------------------------------------------------------------
// stb_easy_font: ASCII only, digits and capitals 7 font pixels tall, lines 12 apart. Each
// font pixel is drawn as a scale x scale block.

namespace io_detail {
// stb_easy_font indexes a table by (c - 32) without a range check, so anything that is
// not printable ASCII (or a newline) is replaced before it gets there.
inline std::string font_safe(std::string_view text) {
    std::string s(text);
    for (char& c : s)
        if (c != '\n' && (c < 32 || c > 126)) c = '?';
    return s;
}
}  // namespace io_detail

/// Width in pixels of `text` (its longest line).
inline int text_width(std::string_view text, int scale = 1) {
    std::string s = io_detail::font_safe(text);
    return ember_stb_detail::stb_easy_font_width(s.data()) * scale;
}
/// Height in pixels of a line of digits or capitals (letters like g, p, y reach 2 lower).
inline int text_height(int scale = 1) { return 7 * scale; }

/// Draws `text` with its top-left corner at (x, y).
inline void draw_text(Image& img, int x, int y, std::string_view text, Rgb colour, int scale = 1) {
    std::string s = io_detail::font_safe(text);
    // Each quad is 4 vertices of 16 bytes (x, y, z floats + RGBA), and no glyph of the font
    // has more than 11 quads; stb stops (silently) when the buffer is full.
    std::vector<char> vertices(s.size() * 12 * 64 + 64);
    const int quads = ember_stb_detail::stb_easy_font_print(0, 0, s.data(), nullptr, vertices.data(),
                                                          static_cast<int>(vertices.size()));
    for (int q = 0; q < quads; ++q) {
        // The quads are axis-aligned rectangles: vertices 0 and 2 are opposite corners.
        float v0[2], v2[2];
        std::memcpy(v0, vertices.data() + (q * 4 + 0) * 16, sizeof v0);
        std::memcpy(v2, vertices.data() + (q * 4 + 2) * 16, sizeof v2);
        const int x0 = static_cast<int>(std::lround(v0[0])), y0 = static_cast<int>(std::lround(v0[1]));
        const int x1 = static_cast<int>(std::lround(v2[0])), y1 = static_cast<int>(std::lround(v2[1]));
        img.fill_rect(x + x0 * scale, y + y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale, colour);
    }
}

// ---- PNG ----------------------------------------------------------------------------------

/// The PNG file of `img` (8-bit RGB), in memory.
inline std::string encode_png(const Image& img) {
    std::string bytes;
    auto append = [](void* context, void* data, int size) {
        static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<std::size_t>(size));
    };
    if (!ember_stb_detail::stbi_write_png_to_func(append, &bytes, img.width(), img.height(), 3, img.data(),
                                                img.width() * 3))
        detail::fail("encode_png", "stb_image_write failed to encode a ", img.width(), "x", img.height(), " image");
    return bytes;
}

/// Writes `img` as a PNG file, atomically: a reader never sees a half-written picture.
inline void save_png(const std::filesystem::path& path, const Image& img) {
    write_file_atomic(path, encode_png(img), "save_png");
}

}  // namespace ember
