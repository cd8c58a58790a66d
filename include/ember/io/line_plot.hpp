#pragma once
/// \file
/// Line plots of training curves: several named series of (x, y) points with axes, numeric
/// ticks, a legend and optionally a logarithmic y axis; and the same for the columns of a
/// metrics CSV file (ember/train/metrics.hpp) against its "step" column.
///
///     save_line_plot("loss.png", {{"train", steps, train_loss}, {"test", steps, test_loss}},
///                    {.title = "NLL", .log_y = true});
///     save_metrics_plot("out/metrics.csv", "out/metrics.png", {"loss", "test_nll"});
///
/// Points whose x or y is not finite (a missing value in the CSV is NaN) are skipped and
/// the line joins their neighbours, so a metric logged every 100 steps next to one logged
/// every step still draws as a line. On a log axis, values <= 0 are skipped the same way.
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/io/csv.hpp"
#include "ember/io/image.hpp"
#include "ember/io/plot_axes.hpp"

namespace ember {

/// One named line of a line plot: its points (x[i], y[i]).
struct Series {
    /// The name in the legend.
    std::string name;
    ///@{
    /// The coordinates of the points.
    std::vector<double> x, y;  ///< the same length
    ///@}
};

/// What a line plot shows and how.
struct LinePlotOptions {
    /// Title above the plot (none when empty).
    std::string title{};
    ///@{
    /// Axis labels.
    std::string x_label = "step", y_label{};
    ///@}
    ///@{
    int width = 640, height = 400;  ///< the whole picture, in pixels
    ///@}
    /// Plot log10(y) (values <= 0 are skipped).
    bool log_y = false;
    ///@{
    /// Default: the finite data with 5% margins (log_y: in log10, positive values only).
    std::optional<AxisRange> x_range{}, y_range{};
    ///@}
    bool legend = true;  ///< names and colours, in the top right corner of the data area
    bool grid = true;    ///< light lines at the ticks
    /// Width of the lines in pixels.
    int line_width = 2;
};

namespace io_detail {

inline bool plottable(double x, double y, bool log_y) {
    return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0);
}

inline void draw_legend(Image& img, const PlotArea& a, const std::vector<Series>& series, int line_width) {
    constexpr int kLine = 18, kPad = 6, kRow = 12;
    int widest = 0;
    for (const Series& s : series) widest = std::max(widest, text_width(s.name));
    const int w = kPad + kLine + 6 + widest + kPad, h = kPad + kRow * static_cast<int>(series.size()) - 5 + kPad;
    const int x = a.area.x + a.area.w - w - 6, y = a.area.y + 6;
    img.fill_rect(x, y, w, h, colours::white);
    img.draw_rect(x, y, w, h, colours::grey);
    for (std::size_t i = 0; i < series.size(); ++i) {
        const int row = y + kPad + kRow * static_cast<int>(i);
        img.fill_rect(x + kPad, row + 3 - line_width / 2, kLine, line_width, series_colour(i));
        draw_text(img, x + kPad + kLine + 6, row, series[i].name, colours::black);
    }
}

}  // namespace io_detail

/// The series drawn in matplotlib's tab10 colours, in order. Throws ember::Error if a
/// series' x and y differ in length, the options are out of range, or an explicit range is
/// empty (or not positive on a log axis). Nothing to plot is not an error: the frame is
/// drawn around an empty area.
inline Image line_plot(const std::vector<Series>& series, const LinePlotOptions& o = {}) {
    constexpr const char* op = "line_plot";
    EMBER_CHECK(o.width >= 160 && o.height >= 120 && o.width <= 8192 && o.height <= 8192, op, "size ", o.width, "x",
                o.height, " is out of range; width must be in [160, 8192] and height in [120, 8192]");
    EMBER_CHECK(o.line_width >= 1 && o.line_width <= 16, op, "line_width must be in [1, 16], got ", o.line_width);
    std::vector<double> xs, ys;  // all plottable points, for the default ranges
    for (const Series& s : series) {
        EMBER_CHECK(s.x.size() == s.y.size(), op, "series '", s.name, "' has ", s.x.size(), " x values and ",
                    s.y.size(), " y values");
        for (std::size_t i = 0; i < s.x.size(); ++i)
            if (io_detail::plottable(s.x[i], s.y[i], o.log_y)) xs.push_back(s.x[i]), ys.push_back(s.y[i]);
    }
    PlotArea a{{}, o.x_range.value_or(auto_range(xs.begin(), xs.end())),
               o.y_range.value_or(auto_range(ys.begin(), ys.end(), 0.05, o.log_y)), o.log_y};
    check_range(a.x, op, "x");
    check_range(a.y, op, "y", o.log_y);

    const FrameStyle style{.title = o.title, .x_label = o.x_label, .y_label = o.y_label, .grid = o.grid};
    const FrameMargins m = frame_margins(style, a);
    a.area = {m.left, m.top, o.width - m.left - m.right, o.height - m.top - m.bottom};
    EMBER_CHECK(a.area.w >= 40 && a.area.h >= 40, op, "a ", o.width, "x", o.height,
                " picture leaves no room for the data once the labels are placed; make it larger");
    Image img(o.width, o.height);
    draw_grid(img, a, style);

    for (std::size_t k = 0; k < series.size(); ++k) {
        const Series& s = series[k];
        const Rgb colour = series_colour(k);
        std::size_t drawn = 0;
        std::optional<std::pair<double, double>> previous;  // pixel position of the last point
        for (std::size_t i = 0; i < s.x.size(); ++i)
            if (io_detail::plottable(s.x[i], s.y[i], o.log_y)) ++drawn;
        for (std::size_t i = 0; i < s.x.size(); ++i) {
            if (!io_detail::plottable(s.x[i], s.y[i], o.log_y)) continue;
            const double px = a.px(s.x[i]), py = a.py(s.y[i]);
            if (previous) img.draw_line(previous->first, previous->second, px, py, colour, o.line_width, a.area);
            // Few points: mark each one, so that a curve of two points, or one, is visible.
            if (drawn <= 50) img.draw_line(px, py, px, py, colour, o.line_width + 2, a.area);
            previous = {px, py};
        }
    }
    if (o.legend && !series.empty()) io_detail::draw_legend(img, a, series, o.line_width);
    draw_frame(img, a, style);
    return img;
}

/// Writes line_plot(series, o) as a PNG file at `path`.
inline void save_line_plot(const std::filesystem::path& path, const std::vector<Series>& series,
                           const LinePlotOptions& o = {}) {
    save_png(path, line_plot(series, o));
}

/// The columns `columns` of a metrics table against its "step" column; no columns given
/// means all of them but "step". Throws ember::Error if a column (or "step") is missing.
inline Image metrics_plot(const CsvTable& table, const std::vector<std::string>& columns = {},
                          const LinePlotOptions& o = {}) {
    EMBER_CHECK(table.has("step"), "metrics_plot", "the table has no \"step\" column to plot against; its columns are: ",
                table.column_list());
    std::vector<std::string> names = columns;
    if (names.empty())
        for (const std::string& c : table.columns)
            if (c != "step") names.push_back(c);
    for (const std::string& name : names)
        EMBER_CHECK(table.has(name), "metrics_plot", "no column named '", name, "'; the columns are: ",
                    table.column_list());
    std::vector<Series> series;
    for (const std::string& name : names) series.push_back({name, table.column("step"), table.column(name)});
    return line_plot(series, o);
}

/// Reads a metrics CSV file (ember/io/csv.hpp) and plots it with metrics_plot. An empty
/// file (a log that has no header yet) gives empty axes, as a header without rows does.
inline Image plot_metrics_csv(const std::filesystem::path& csv, const std::vector<std::string>& columns = {},
                              const LinePlotOptions& o = {}) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(csv, ec) && std::filesystem::file_size(csv, ec) == 0 && !ec) {
        CsvTable empty;
        empty.columns.push_back("step");
        for (const std::string& c : columns)
            if (c != "step") empty.columns.push_back(c);
        empty.values.resize(empty.columns.size());
        return metrics_plot(empty, columns, o);
    }
    return metrics_plot(read_numeric_csv(csv), columns, o);
}

/// Reads the metrics CSV file `csv` and writes metrics_plot of it as a PNG file at `png`.
inline void save_metrics_plot(const std::filesystem::path& csv, const std::filesystem::path& png,
                              const std::vector<std::string>& columns = {}, const LinePlotOptions& o = {}) {
    save_png(png, plot_metrics_csv(csv, columns, o));
}

}  // namespace ember
