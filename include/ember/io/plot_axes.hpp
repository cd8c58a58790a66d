#pragma once
/// \file
/// The parts shared by ember's plots (plot2d.hpp, line_plot.hpp): an axis range, tick
/// positions and labels, the mapping from data to pixels, and the frame with its ticks,
/// numeric labels and title.
///
/// Tick labels are formatted by std::to_chars, so they do not depend on the C locale.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/io/image.hpp"

namespace ember {

/// A closed interval of data values shown along one axis.
struct AxisRange {
    ///@{
    /// The ends of the interval, lo < hi.
    double lo = 0, hi = 1;
///@}
};

/// A range that covers the finite values in [first, last) with `margin` (a fraction of the
/// span) on each side. A single distinct value v gets v +- max(1, |v| / 10) around it, no
/// values at all [0, 1]. With log_scale only positive values count, the margin applies to
/// their log10, and the fallbacks are a decade either side of v, and [0.1, 10].
template <class It>
AxisRange auto_range(It first, It last, double margin = 0.05, bool log_scale = false) {
    double lo = INFINITY, hi = -INFINITY;
    for (; first != last; ++first) {
        const double v = static_cast<double>(*first);
        if (!std::isfinite(v) || (log_scale && v <= 0)) continue;
        const double u = log_scale ? std::log10(v) : v;
        lo = std::min(lo, u), hi = std::max(hi, u);
    }
    if (lo > hi) {  // no values
        lo = log_scale ? -1 : 0;
        hi = 1;
    } else if (lo == hi) {
        const double d = log_scale ? 1 : std::max(1.0, std::fabs(lo) / 10);
        lo -= d, hi += d;
    } else {
        const double pad = (hi - lo) * margin;
        lo -= pad, hi += pad;
    }
    return log_scale ? AxisRange{std::pow(10.0, lo), std::pow(10.0, hi)} : AxisRange{lo, hi};
}

/// Throws ember::Error (naming `op` and `axis`) unless r is finite with lo < hi, and with
/// log_scale also lo > 0.
inline void check_range(const AxisRange& r, const char* op, const char* axis, bool log_scale = false) {
    EMBER_CHECK(std::isfinite(r.lo) && std::isfinite(r.hi) && r.lo < r.hi, op, "the ", axis, " range [", r.lo,
                ", ", r.hi, "] must be finite with lo < hi");
    EMBER_CHECK(!log_scale || r.lo > 0, op, "a logarithmic ", axis, " axis needs a positive range, got [", r.lo,
                ", ", r.hi, "]");
}

// ---- ticks ----------------------------------------------------------------------------------

/// Round tick values (1, 2 or 5 times a power of ten apart) inside [lo, hi], at most about
/// `max_ticks` of them.
inline std::vector<double> nice_ticks(double lo, double hi, int max_ticks = 6) {
    std::vector<double> ticks;
    if (!(lo < hi) || !std::isfinite(lo) || !std::isfinite(hi)) return ticks;
    const double rough = (hi - lo) / std::max(1, max_ticks);
    const double mag = std::pow(10.0, std::floor(std::log10(rough)));
    const double r = rough / mag;
    const double step = (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
    const double first = std::ceil(lo / step - 1e-9);
    for (double k = first;; k += 1) {
        double v = k * step;  // k * step, not a running sum, so no error accumulates
        if (v > hi + step * 1e-9) break;
        if (std::fabs(v) < step * 1e-9) v = 0;  // no "-0" or "1e-17"
        ticks.push_back(v);
    }
    return ticks;
}

/// Ticks for a logarithmic axis over [lo, hi] (0 < lo < hi): powers of ten (every second or
/// third one if there are many); when fewer than two fit, also 2 and 5 times them; when
/// even that gives fewer than two, the linear nice_ticks.
inline std::vector<double> log_ticks(double lo, double hi, int max_ticks = 6) {
    std::vector<double> ticks;
    if (!(0 < lo && lo < hi) || !std::isfinite(hi)) return ticks;
    const int k0 = static_cast<int>(std::ceil(std::log10(lo) - 1e-9)), k1 = static_cast<int>(std::floor(std::log10(hi) + 1e-9));
    const int every = std::max(1, (k1 - k0 + max_ticks) / std::max(1, max_ticks));
    for (int k = k0; k <= k1; ++k)
        if ((k - k0) % every == 0) ticks.push_back(std::pow(10.0, k));
    if (ticks.size() >= 2) return ticks;
    ticks.clear();
    for (int k = k0 - 1; k <= k1; ++k)
        for (double m : {1.0, 2.0, 5.0}) {
            const double v = m * std::pow(10.0, k);
            if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push_back(v);
        }
    if (ticks.size() >= 2) return ticks;
    return nice_ticks(lo, hi, max_ticks);
}

/// Labels for the ticks of one axis, in one style for the whole axis: as many decimals as
/// the distance between ticks needs ("0.0 0.5 1.0", "1500 2000"), or 3 significant digits
/// ("1e-05 2e-05", "1e+06 2e+06") when the step is below 1e-4 or a tick reaches 1e6, on
/// logarithmic axes and for a single tick.
inline std::vector<std::string> tick_labels(const std::vector<double>& ticks, bool log_scale = false) {
    double biggest = 0;
    for (double t : ticks) biggest = std::max(biggest, std::fabs(t));
    const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 0;
    const bool general = log_scale || ticks.size() < 2 || !(step > 0) || step < 1e-4 || biggest >= 1e6;
    const int decimals = general ? 0 : std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 10);
    std::vector<std::string> labels;
    for (double t : ticks) {
        char buf[64];
        const auto res = general ? std::to_chars(buf, buf + sizeof buf, t, std::chars_format::general, 3)
                                 : std::to_chars(buf, buf + sizeof buf, t, std::chars_format::fixed, decimals);
        labels.emplace_back(buf, res.ptr);
    }
    return labels;
}

// ---- the frame ----------------------------------------------------------------------------

/// Where a plot's data area is in an image and which data it shows. px/py map data
/// coordinates to continuous pixel coordinates: x_lo is the left edge of the area, y_hi
/// the top edge (pixel row area.y), so a point lands in pixel (floor(px), floor(py)).
struct PlotArea {
    /// The data area, in pixels of the image.
    Rect area;
    ///@{
    /// The data shown along x and along y.
    AxisRange x, y;
    ///@}
    /// Whether the y axis is logarithmic (y.lo > 0).
    bool log_y = false;

    /// The pixel x coordinate of data value v.
    double px(double v) const { return area.x + (v - x.lo) / (x.hi - x.lo) * area.w; }
    /// The pixel y coordinate of data value v (row area.y at y.hi).
    double py(double v) const {
        const double t = log_y ? (std::log10(v) - std::log10(y.lo)) / (std::log10(y.hi) - std::log10(y.lo))
                               : (v - y.lo) / (y.hi - y.lo);
        return area.y + (1 - t) * area.h;
    }
};

/// How a plot's frame looks: title, axis labels, colours, ticks and grid.
struct FrameStyle {
    ///@{
    /// Title above the frame and axis labels below and beside it (none when empty).
    std::string title{}, x_label{}, y_label{};
    ///@}
    int title_scale = 2;  ///< font scale of the title; tick labels use 1
    /// Colour of the frame and ticks.
    Rgb axis_colour{60, 60, 60};
    /// Colour of the title, labels and tick labels.
    Rgb text_colour = colours::black;
    /// Draw ticks with numeric labels.
    bool ticks = true;
    bool grid = false;  ///< light grid lines at the ticks, under the data
};

/// Pixels a frame needs around the data area: left for the y tick labels, top for the
/// title, bottom for the x tick labels and x label, right for the half of the last x label.
struct FrameMargins {
    ///@{
    /// Margin in pixels on each side.
    int left, top, right, bottom;
///@}
};
/// The margins a frame with style `s` needs around the data area of `a`.
inline FrameMargins frame_margins(const FrameStyle& s, const PlotArea& a) {
    FrameMargins m{8, 8, 14, 8};
    if (s.ticks) {
        const std::vector<double> yt = a.log_y ? log_ticks(a.y.lo, a.y.hi) : nice_ticks(a.y.lo, a.y.hi);
        int widest = 0;
        for (const std::string& l : tick_labels(yt, a.log_y)) widest = std::max(widest, text_width(l));
        m.left = widest + 12;
        m.bottom = text_height() + 12;
        // The x labels are centred on their ticks and may stick out at either end.
        const std::vector<std::string> xl = tick_labels(nice_ticks(a.x.lo, a.x.hi));
        if (!xl.empty()) {
            m.left = std::max(m.left, text_width(xl.front()) / 2 + 4);
            m.right = std::max(m.right, text_width(xl.back()) / 2 + 4);
        }
    }
    if (!s.x_label.empty()) m.bottom += text_height() + 6;
    if (!s.title.empty()) m.top = text_height(s.title_scale) + 14;
    if (!s.y_label.empty()) m.top = std::max(m.top, text_height(s.title_scale) + 14) + text_height() + 6;
    return m;
}

/// Grid lines (when asked for) inside the data area; call before drawing the data.
inline void draw_grid(Image& img, const PlotArea& a, const FrameStyle& s) {
    if (!s.grid) return;
    for (double t : nice_ticks(a.x.lo, a.x.hi)) {
        const int x = std::clamp(static_cast<int>(std::floor(a.px(t))), a.area.x, a.area.x + a.area.w - 1);
        img.fill_rect(x, a.area.y, 1, a.area.h, colours::light_grey);
    }
    for (double t : a.log_y ? log_ticks(a.y.lo, a.y.hi) : nice_ticks(a.y.lo, a.y.hi)) {
        const int y = std::clamp(static_cast<int>(std::floor(a.py(t))), a.area.y, a.area.y + a.area.h - 1);
        img.fill_rect(a.area.x, y, a.area.w, 1, colours::light_grey);
    }
}

/// The box around the data area (just outside it), outward ticks with numeric labels on
/// the left and bottom, the title and the axis labels; call after drawing the data. The
/// image is the plot's own, laid out with frame_margins: the title goes at its top.
inline void draw_frame(Image& img, const PlotArea& a, const FrameStyle& s) {
    const Rect& r = a.area;
    img.draw_rect(r.x - 1, r.y - 1, r.w + 2, r.h + 2, s.axis_colour);
    if (s.ticks) {
        const std::vector<double> xt = nice_ticks(a.x.lo, a.x.hi);
        const std::vector<std::string> xl = tick_labels(xt, false);
        for (std::size_t i = 0; i < xt.size(); ++i) {
            const int x = std::clamp(static_cast<int>(std::floor(a.px(xt[i]))), r.x, r.x + r.w - 1);
            img.fill_rect(x, r.y + r.h + 1, 1, 4, s.axis_colour);
            draw_text(img, x - text_width(xl[i]) / 2, r.y + r.h + 8, xl[i], s.text_colour);
        }
        const std::vector<double> yt = a.log_y ? log_ticks(a.y.lo, a.y.hi) : nice_ticks(a.y.lo, a.y.hi);
        const std::vector<std::string> yl = tick_labels(yt, a.log_y);
        for (std::size_t i = 0; i < yt.size(); ++i) {
            const int y = std::clamp(static_cast<int>(std::floor(a.py(yt[i]))), r.y, r.y + r.h - 1);
            img.fill_rect(r.x - 5, y, 4, 1, s.axis_colour);
            draw_text(img, r.x - 8 - text_width(yl[i]), y - text_height() / 2, yl[i], s.text_colour);
        }
    }
    if (!s.x_label.empty()) {
        const int y = r.y + r.h + (s.ticks ? text_height() + 14 : 6);
        draw_text(img, r.x + (r.w - text_width(s.x_label)) / 2, y, s.x_label, s.text_colour);
    }
    int title_bottom = 0;
    if (!s.title.empty()) {
        const int x = std::max(4, r.x + (r.w - text_width(s.title, s.title_scale)) / 2);
        draw_text(img, x, 6, s.title, s.text_colour, s.title_scale);
        title_bottom = 6 + text_height(s.title_scale);
    }
    // The y label goes above the axis, left-aligned with the tick labels (the font cannot
    // be rotated).
    if (!s.y_label.empty())
        draw_text(img, 4, std::max(title_bottom + 6, r.y - text_height() - 8), s.y_label, s.text_colour);
}

}  // namespace ember
