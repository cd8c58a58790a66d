#pragma once
/// \file
/// Pictures of 2-D data: a scatter plot and a density (2-D histogram) of points, and a heat
/// map of values on a grid, each with a frame, numeric ticks, a title and optional markers
/// (say, the centres of a toy distribution's modes).
///
///     Plot2dOptions o{.title = "target", .x_range = {{-3, 3}}, .y_range = {{-3, 3}},
///                     .modes = ring8_modes().centres};
///     Image left = density_plot(target_samples, o);
///     o.title = "model";
///     save_png("compare.png", hstack({left, density_plot(model_samples, o)}));
///
/// Points are a Tensor [N, 2] of (x, y). Points outside the range and points with a NaN
/// coordinate are not drawn (or counted). Every plot is an Image whose data area is
/// `width` x `height` pixels, plus margins for the frame and labels.
#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"
#include "ember/io/image.hpp"
#include "ember/io/plot_axes.hpp"

namespace ember {

/// What a scatter, density or heat-map plot shows and how.
struct Plot2dOptions {
    /// Title above the plot (none when empty).
    std::string title{};
    ///@{
    /// The data shown; default: the points' extent with 5% margins (heat maps: [0, columns]
    /// x [0, rows]). Pass the same ranges to panels that are to be compared.
    std::optional<AxisRange> x_range{}, y_range{};
    ///@}
    ///@{
    int width = 320, height = 320;             ///< the data area, in pixels
    ///@}
    std::vector<std::array<double, 2>> modes{};  ///< (x, y) positions, marked by a "+"
    /// Colour of the mode markers.
    Rgb mode_colour = colours::red;
    bool axes = true;  ///< ticks and numeric labels (the frame and title are always drawn)

    // scatter_plot
    /// Colour of the points.
    Rgb point_colour = series_colour(0);
    int point_size = 2;  ///< side of the square drawn for each point, in pixels
    /// density_plot: bins x bins cells over the range; colour = viridis(count / max count),
    /// or of log(1 + count) / log(1 + max) with log_density (shows sparse tails).
    int bins = 100;
    /// Colour the density plot by log(1 + count) (see bins).
    bool log_density = false;
    /// heatmap_plot: the values mapped to viridis 0 and 1; default: their min and max.
    std::optional<AxisRange> value_range{};
};

namespace io_detail {

inline void check_plot2d_options(const Plot2dOptions& o, const char* op) {
    EMBER_CHECK(o.width >= 16 && o.height >= 16 && o.width <= 8192 && o.height <= 8192, op, "the data area ",
                o.width, "x", o.height, " is out of range; each side must be in [16, 8192]");
    EMBER_CHECK(o.point_size >= 1 && o.point_size <= 64, op, "point_size must be in [1, 64], got ", o.point_size);
    EMBER_CHECK(o.bins >= 1 && o.bins <= 4096, op, "bins must be in [1, 4096], got ", o.bins);
}

template <Real T>
Tensor<T> checked_points(const Tensor<T>& points, const char* op) {
    EMBER_CHECK(points.defined(), op, "the points tensor is undefined (default-constructed)");
    EMBER_CHECK(points.rank() == 2 && points.dim(1) == 2, op, "expected points of shape [N, 2], got ",
                points.shape().str());
    return points.contiguous();
}

// The image and its data area for a 2-D plot with the given ranges.
inline std::pair<Image, PlotArea> plot2d_canvas(const Plot2dOptions& o, AxisRange x, AxisRange y, const char* op) {
    check_range(x, op, "x");
    check_range(y, op, "y");
    const FrameStyle style{.title = o.title, .ticks = o.axes};
    PlotArea a{{0, 0, o.width, o.height}, x, y, false};
    const FrameMargins m = frame_margins(style, a);
    a.area.x = m.left, a.area.y = m.top;
    return {Image(m.left + o.width + m.right, m.top + o.height + m.bottom), a};
}

// Mode markers and the frame, drawn over the data.
inline void finish_plot2d(Image& img, const PlotArea& a, const Plot2dOptions& o) {
    for (const auto& [mx, my] : o.modes) {
        const double x = a.px(mx), y = a.py(my);
        // Four arms of a "+" around an open centre, which leaves the data under the mode
        // visible; white under the colour so that it shows on any background.
        for (const auto& [pen, colour] : {std::pair{4, colours::white}, std::pair{2, o.mode_colour}})
            for (const auto& [dx, dy] : {std::pair{1, 0}, std::pair{-1, 0}, std::pair{0, 1}, std::pair{0, -1}})
                img.draw_line(x + 4 * dx, y + 4 * dy, x + 9 * dx, y + 9 * dy, colour, pen, a.area);
    }
    draw_frame(img, a, FrameStyle{.title = o.title, .ticks = o.axes});
}

// The pixel span [begin, end) of cell i of n along a side of `pixels` pixels.
inline std::pair<int, int> cell_span(int i, int n, int pixels) {
    return {static_cast<int>(static_cast<long long>(i) * pixels / n),
            static_cast<int>(static_cast<long long>(i + 1) * pixels / n)};
}

// Fills the data area with an rows x cols grid of colours; cell (0, 0) is the top left.
template <class ColourOf>
void fill_cells(Image& img, const PlotArea& a, int rows, int cols, ColourOf colour_of) {
    for (int r = 0; r < rows; ++r) {
        const auto [y0, y1] = cell_span(r, rows, a.area.h);
        for (int c = 0; c < cols; ++c) {
            const auto [x0, x1] = cell_span(c, cols, a.area.w);
            img.fill_rect(a.area.x + x0, a.area.y + y0, x1 - x0, y1 - y0, colour_of(r, c));
        }
    }
}

}  // namespace io_detail

/// One dot (a point_size square) per point.
template <Real T>
Image scatter_plot(const Tensor<T>& points, const Plot2dOptions& o = {}) {
    constexpr const char* op = "scatter_plot";
    io_detail::check_plot2d_options(o, op);
    const Tensor<T> p = io_detail::checked_points(points, op);
    const std::vector<T> v = p.to_vector();
    std::vector<T> xs, ys;
    for (std::size_t i = 0; i < v.size(); i += 2) xs.push_back(v[i]), ys.push_back(v[i + 1]);
    auto [img, a] = io_detail::plot2d_canvas(o, o.x_range.value_or(auto_range(xs.begin(), xs.end())),
                                             o.y_range.value_or(auto_range(ys.begin(), ys.end())), op);
    const int half = (o.point_size - 1) / 2;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const double x = xs[i], y = ys[i];
        if (!(x >= a.x.lo && x <= a.x.hi && y >= a.y.lo && y <= a.y.hi)) continue;  // also skips NaN
        const int px = std::min(static_cast<int>(std::floor(a.px(x))), a.area.x + a.area.w - 1) - half;
        const int py = std::min(static_cast<int>(std::floor(a.py(y))), a.area.y + a.area.h - 1) - half;
        for (int dy = 0; dy < o.point_size; ++dy)
            for (int dx = 0; dx < o.point_size; ++dx)
                if (a.area.contains(px + dx, py + dy)) img.set(px + dx, py + dy, o.point_colour);
    }
    io_detail::finish_plot2d(img, a, o);
    return img;
}

/// A 2-D histogram of the points, bins x bins cells over the range, in viridis.
template <Real T>
Image density_plot(const Tensor<T>& points, const Plot2dOptions& o = {}) {
    constexpr const char* op = "density_plot";
    io_detail::check_plot2d_options(o, op);
    const Tensor<T> p = io_detail::checked_points(points, op);
    const std::vector<T> v = p.to_vector();
    std::vector<T> xs, ys;
    for (std::size_t i = 0; i < v.size(); i += 2) xs.push_back(v[i]), ys.push_back(v[i + 1]);
    auto [img, a] = io_detail::plot2d_canvas(o, o.x_range.value_or(auto_range(xs.begin(), xs.end())),
                                             o.y_range.value_or(auto_range(ys.begin(), ys.end())), op);
    const int n = o.bins;
    std::vector<double> counts(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0);
    for (std::size_t i = 0; i < xs.size(); ++i) {
        const double x = xs[i], y = ys[i];
        if (!(x >= a.x.lo && x <= a.x.hi && y >= a.y.lo && y <= a.y.hi)) continue;
        // Row 0 is the top (largest y); a point on the upper edge belongs to the last cell.
        const int c = std::min(n - 1, static_cast<int>((x - a.x.lo) / (a.x.hi - a.x.lo) * n));
        const int r = std::min(n - 1, static_cast<int>((a.y.hi - y) / (a.y.hi - a.y.lo) * n));
        counts[static_cast<std::size_t>(r) * static_cast<std::size_t>(n) + static_cast<std::size_t>(c)] += 1;
    }
    const double peak = std::max(1.0, *std::max_element(counts.begin(), counts.end()));
    io_detail::fill_cells(img, a, n, n, [&](int r, int c) {
        const double k = counts[static_cast<std::size_t>(r) * static_cast<std::size_t>(n) + static_cast<std::size_t>(c)];
        return viridis(o.log_density ? std::log1p(k) / std::log1p(peak) : k / peak);
    });
    io_detail::finish_plot2d(img, a, o);
    return img;
}

/// values [rows, cols] as coloured cells, row 0 at the TOP (the largest y), e.g.\ a density
/// evaluated at cell centres. Colours: viridis over value_range (default [min, max] of the
/// finite values); NaN cells are magenta (255, 0, 255).
template <Real T>
Image heatmap_plot(const Tensor<T>& values, const Plot2dOptions& o = {}) {
    constexpr const char* op = "heatmap_plot";
    io_detail::check_plot2d_options(o, op);
    EMBER_CHECK(values.defined(), op, "the values tensor is undefined (default-constructed)");
    EMBER_CHECK(values.rank() == 2 && values.numel() > 0, op, "expected a non-empty grid of values [rows, cols], got ",
                values.shape().str());
    const Index rows = values.dim(0), cols = values.dim(1);
    const std::vector<T> v = values.contiguous().to_vector();
    const AxisRange vr = o.value_range.value_or(auto_range(v.begin(), v.end(), 0.0));
    check_range(vr, op, "value");
    auto [img, a] = io_detail::plot2d_canvas(o, o.x_range.value_or(AxisRange{0, static_cast<double>(cols)}),
                                             o.y_range.value_or(AxisRange{0, static_cast<double>(rows)}), op);
    // With more cells than pixels, each pixel shows the cell under its top-left corner.
    const int shown_rows = static_cast<int>(std::min<Index>(rows, a.area.h));
    const int shown_cols = static_cast<int>(std::min<Index>(cols, a.area.w));
    io_detail::fill_cells(img, a, shown_rows, shown_cols, [&](int r, int c) {
        const Index i = (r * rows / shown_rows) * cols + c * cols / shown_cols;
        const double x = static_cast<double>(v[static_cast<std::size_t>(i)]);
        return std::isnan(x) ? colours::nan_magenta : viridis((x - vr.lo) / (vr.hi - vr.lo));
    });
    io_detail::finish_plot2d(img, a, o);
    return img;
}

}  // namespace ember
