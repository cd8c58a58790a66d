#pragma once
/// \file
/// Progress reports for long loops.
///
///     Progress progress(steps, {.label = "train"});
///     for (std::int64_t step = 1; step <= steps; ++step) {
///         ...
///         progress.update(step, {{"loss", loss}, {"nll", nll}});
///     }
///     progress.finish();
///
/// On a terminal (isatty of the stream, stderr by default) this is one line rewritten in
/// place with '\\r', at most every `refresh_seconds`:
///
///     train 1200/5000 24.0% | 35.2 steps/s | 00:34 elapsed | ETA 01:48 | loss 0.1234 | nll 1.702
/// Otherwise (a log file, a pipe, a batch job) it is a plain line every `every_steps` steps
/// or every `every_seconds` seconds, whichever comes first. finish() prints the final
/// state and ends the line; message() prints a line of text without garbling the
/// progress line. The text of a report is format_progress(status()), a pure function that
/// the tests check; a fake clock can be given in the options.
///
/// Rates count from the first step of this run (start_step, for a resumed run), so the
/// ETA is (total - step) / (steps per second so far).
#if !__has_include(<unistd.h>)
#error "ember/train/progress.hpp needs a POSIX system (isatty)"
#endif

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <system_error>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"

namespace ember {

/// "MM:SS" below an hour, "H:MM:SS" from one hour; "--:--" if not finite or negative.
inline std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e12) return "--:--";
    const auto s = static_cast<std::int64_t>(seconds);  // whole seconds, rounded down
    const std::int64_t h = s / 3600, m = s / 60 % 60, sec = s % 60;
    char buf[48];
    if (h > 0) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(h), static_cast<long long>(m),
                             static_cast<long long>(sec));
    else std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(m), static_cast<long long>(sec));
    return buf;
}

/// Four significant digits: "0.1235", "1.703e+04", "nan".
inline std::string format_metric(double v) {
    char buf[32];
    const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 4);
    return std::string(buf, res.ptr);
}

namespace detail {
// v with `decimals` digits after the point. std::to_chars, unlike printf, ignores the
// C locale, so a program that set a German locale still gets "24.0", not "24,0".
inline std::string fixed_point(double v, int decimals) {
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, decimals);
    return res.ec == std::errc() ? std::string(buf, res.ptr) : std::string("?");
}
}  // namespace detail

/// What a report shows.
struct ProgressStatus {
    std::string label{};             ///< printed first if not empty
    std::int64_t step = 0;           ///< steps done
    std::int64_t total = 0;          ///< <= 0: unknown (no percentage, no ETA)
    std::int64_t start_step = 0;     ///< where this run started (a resumed run: > 0)
    double elapsed = 0;              ///< seconds since this run started
    std::vector<std::pair<std::string, double>> values{};  ///< the latest named losses
};

/// The report for `s`, e.g.
///
///     "train 1200/5000 24.0% | 35.2 steps/s | 00:34 elapsed | ETA 01:48 | loss 0.1234"
/// The rate is shown as "s/step" when it is below one step a second, and as "-" before any
/// step has been done.
inline std::string format_progress(const ProgressStatus& s) {
    std::string out = s.label.empty() ? "" : s.label + " ";
    out += std::to_string(s.step);
    if (s.total > 0) {
        const auto done = std::clamp(s.step, std::int64_t(0), s.total);
        out += "/" + std::to_string(s.total) + " " +
               detail::fixed_point(100.0 * static_cast<double>(done) / static_cast<double>(s.total), 1) + "%";
    }
    const double done = static_cast<double>(s.step - s.start_step);
    const double rate = s.elapsed > 0 && done > 0 ? done / s.elapsed : 0;
    if (rate <= 0) out += " | - steps/s";
    else if (rate >= 1) out += " | " + detail::fixed_point(rate, 1) + " steps/s";
    else out += " | " + detail::fixed_point(1 / rate, 2) + " s/step";
    out += " | " + format_duration(s.elapsed) + " elapsed";
    if (s.total > 0) {
        const double remaining = static_cast<double>(std::max<std::int64_t>(0, s.total - s.step));
        out += " | ETA " + (remaining == 0 ? format_duration(0) : rate > 0 ? format_duration(remaining / rate) : "--:--");
    }
    for (const auto& [name, v] : s.values) out += " | " + name + " " + format_metric(v);
    return out;
}

/// Settings of Progress.
struct ProgressOptions {
    /// Printed at the start of every report.
    std::string label{};
    /// Where the reports go.
    std::FILE* stream = stderr;
    std::optional<bool> interactive{};  ///< default: whether `stream` is a terminal
    std::int64_t start_step = 0;        ///< the step a resumed run starts from
    double refresh_seconds = 0.1;       ///< terminal: redraw at most this often
    std::int64_t every_steps = 0;       ///< not a terminal: a line every N steps (0: never by steps)
    double every_seconds = 30;          ///< ... and every T seconds (0: never by time)
    std::function<double()> clock{};    ///< seconds; default: std::chrono::steady_clock
};

/// A progress line with rate and ETA for a loop of known length (see the file description).
class Progress {
public:
    /// Reports for a loop of `total` steps.
    explicit Progress(std::int64_t total, ProgressOptions options = {}) : o_(std::move(options)) {
        EMBER_CHECK(o_.stream != nullptr, "Progress", "the output stream is null");
        EMBER_CHECK(o_.every_steps >= 0 && o_.every_seconds >= 0 && o_.refresh_seconds >= 0, "Progress",
                    "every_steps, every_seconds and refresh_seconds must be >= 0");
        if (!o_.clock) {
            o_.clock = [t0 = std::chrono::steady_clock::now()] {
                return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            };
        }
        interactive_ = o_.interactive.value_or(::isatty(::fileno(o_.stream)) == 1);
        status_.label = o_.label;
        status_.total = total;
        status_.step = status_.start_step = last_print_step_ = o_.start_step;
        start_ = last_print_ = o_.clock();
    }
    Progress(const Progress&) = delete;
    Progress& operator=(const Progress&) = delete;
    /// Ends an unfinished terminal line, so that what is printed next starts on a new line.
    ~Progress() {
        if (interactive_ && line_shown_) std::fputc('\n', o_.stream), std::fflush(o_.stream);
    }

    /// Records that `step` steps are done, with the latest values of some named metrics
    /// (kept until given again), and prints a report if one is due.
    void update(std::int64_t step, std::initializer_list<std::pair<std::string_view, double>> values = {}) {
        for (const auto& [name, v] : values) set_value(name, v);
        advance(step);
    }
    /// Records `step` with (name, value) pairs built at run time; as the other update().
    void update(std::int64_t step, const std::vector<std::pair<std::string, double>>& values) {
        for (const auto& [name, v] : values) set_value(name, v);
        advance(step);
    }

    /// Prints the final report and ends the line.
    void finish() {
        status_.elapsed = o_.clock() - start_;
        print();
        if (interactive_) std::fputc('\n', o_.stream);
        line_shown_ = false;
        std::fflush(o_.stream);
    }

    /// Prints `text` on a line of its own; on a terminal the progress line is redrawn below.
    void message(std::string_view text) {
        if (interactive_ && line_shown_) std::fprintf(o_.stream, "\r%*s\r", last_width_, "");
        std::fprintf(o_.stream, "%.*s\n", static_cast<int>(text.size()), text.data());
        if (interactive_ && line_shown_) print();
        std::fflush(o_.stream);
    }

    /// The numbers of the latest report.
    const ProgressStatus& status() const { return status_; }
    /// Whether reports rewrite one terminal line (else they are plain lines).
    bool interactive() const { return interactive_; }

private:
    void set_value(std::string_view name, double v) {
        for (auto& [n, old] : status_.values)
            if (n == name) {
                old = v;
                return;
            }
        status_.values.emplace_back(std::string(name), v);
    }

    void advance(std::int64_t step) {
        status_.step = step;
        const double now = o_.clock();
        status_.elapsed = now - start_;
        bool due;
        if (interactive_) due = now - last_print_ >= o_.refresh_seconds || step == status_.total;
        else
            due = (o_.every_steps > 0 && step - last_print_step_ >= o_.every_steps) ||
                  (o_.every_seconds > 0 && now - last_print_ >= o_.every_seconds);
        if (!due) return;
        print();
        last_print_ = now;
        last_print_step_ = step;
    }

    void print() {
        std::string line = format_progress(status_);
        if (interactive_) {
            // A line longer than the terminal would wrap, and '\r' would then only return
            // to the start of its last row: cut it to the terminal's width.
            winsize ws{};
            if (::ioctl(::fileno(o_.stream), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && line.size() >= ws.ws_col)
                line.resize(ws.ws_col - 1u);
            const int width = static_cast<int>(line.size());
            // Spaces over the rest of a longer previous line.
            std::fprintf(o_.stream, "\r%s%*s", line.c_str(), std::max(0, last_width_ - width), "");
            last_width_ = width;
            line_shown_ = true;
        } else {
            std::fprintf(o_.stream, "%s\n", line.c_str());
        }
        std::fflush(o_.stream);
    }

    ProgressOptions o_;
    ProgressStatus status_;
    bool interactive_ = false;
    bool line_shown_ = false;
    int last_width_ = 0;
    double start_ = 0, last_print_ = 0;
    std::int64_t last_print_step_ = 0;
};

}  // namespace ember
