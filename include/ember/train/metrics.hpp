#pragma once
/// \file
/// A CSV log of training metrics, one row per logged step, that survives crashes and
/// resumes without duplicated rows.
///
///     MetricsLog log("out/metrics.csv", start_step);   // 0 for a fresh run
///     for (std::int64_t step = start_step; step < steps; ++step) {
///         ...
///         log.write(step, {{"loss", loss}, {"lr", lr}});
///     }
///
/// * Columns: "step" first, then the names of the first row written, in its order (or
///   the names given to the constructor). They are then fixed: a later row may leave a
///   column out (an empty field, read back as NaN by ember/io/csv.hpp; e.g. a test metric
///   computed every 100 steps) but may not add one, which is an ember::Error.
/// * Every row is written with a single write() call straight to the file (no buffering
///   in the process), so a crash of the program loses at most the row being written.
///   Rows are not fsync'ed: after a power cut the last few may be missing.
/// * Opening with start_step S keeps the rows of an existing file whose step is < S and
///   drops the rest, rewriting the file atomically (ember/io/atomic_file.hpp); a run
///   resumed from a checkpoint of step S then logs S, S+1, ... again without duplicating
///   them. A partial last line (the crash above) is dropped too. If no row is kept, the
///   next row chooses the columns anew; otherwise the file's header fixes them. A file
///   that does not look like a metrics log (no "step" header, a row without an integer
///   step) is an error and is left as it is. S = 0 starts an empty log, replacing any
///   file at `path` without reading it.
/// * Steps must increase from row to row and be >= the start step.
/// * Values are written in the shortest form that reads back to the same double ("0.1",
///   "1e-05", "nan", "inf"), independent of the C locale.
///
/// A MetricsLog is not thread-safe; log from one thread.
#if !__has_include(<unistd.h>)
#error "ember/train/metrics.hpp needs a POSIX system (open, write)"
#endif

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/io/atomic_file.hpp"

namespace ember {

/// A crash-safe, resumable CSV log of training metrics (see the file description).
class MetricsLog {
public:
    /// `columns` (without "step") fixes the columns up front instead of the first row; on
    /// resume they must then equal those of the file's header.
    explicit MetricsLog(std::filesystem::path path, std::int64_t start_step = 0,
                        const std::vector<std::string>& columns = {})
        : path_(std::move(path)) {
        EMBER_CHECK(start_step >= 0, "MetricsLog", path_.string(), ": the start step must be >= 0, got ", start_step);
        start_step_ = start_step;
        std::vector<std::string> wanted;
        if (!columns.empty()) wanted = checked_columns(columns.begin(), columns.end(), "MetricsLog");
        const std::string kept = rows_before(start_step);
        if (!wanted.empty() && !columns_.empty() && wanted != columns_)
            detail::fail("MetricsLog", path_.string(), ": cannot resume: the file has the columns ", joined(columns_),
                         ", this run asks for ", joined(wanted));
        write_file_atomic(path_, kept, "MetricsLog");
        header_pending_ = columns_.empty() && !wanted.empty();
        if (header_pending_) columns_ = std::move(wanted);
        fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd_ < 0) detail::fail("MetricsLog", path_.string(), ": cannot open for appending: ", detail::errno_text(errno));
    }
    MetricsLog(const MetricsLog&) = delete;
    MetricsLog& operator=(const MetricsLog&) = delete;
    /// Takes over the open file of `o`.
    MetricsLog(MetricsLog&& o) noexcept
        : path_(std::move(o.path_)),
          columns_(std::move(o.columns_)),
          start_step_(o.start_step_),
          last_step_(o.last_step_),
          header_pending_(o.header_pending_),
          fd_(std::exchange(o.fd_, -1)) {}
    /// Closes this log's file and takes over the open file of `o`.
    MetricsLog& operator=(MetricsLog&& o) noexcept {
        if (this != &o) {
            close();
            path_ = std::move(o.path_), columns_ = std::move(o.columns_);
            start_step_ = o.start_step_, last_step_ = o.last_step_, header_pending_ = o.header_pending_;
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    ~MetricsLog() { close(); }

    /// Appends the row for `step`. The names must be columns (see the top of this file).
    void write(std::int64_t step, std::initializer_list<std::pair<std::string_view, double>> values) {
        write_row(step, values.begin(), values.end());
    }
    /// Appends the row for `step` from a list of (name, value) pairs built at run time.
    void write(std::int64_t step, const std::vector<std::pair<std::string, double>>& values) {
        write_row(step, values.begin(), values.end());
    }

    /// The file being written.
    const std::filesystem::path& path() const { return path_; }
    /// "step" and the metric names; empty until the columns are fixed.
    const std::vector<std::string>& columns() const { return columns_; }

    /// The value as written to the file.
    static std::string format_value(double v) {
        if (std::isnan(v)) return "nan";  // not "-nan"
        char buf[32];
        const auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
        return std::string(buf, res.ptr);
    }

private:
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    template <class It>
    void write_row(std::int64_t step, It first, It last) {
        const char* op = "MetricsLog::write";
        EMBER_CHECK(fd_ >= 0, op, "the log was moved from");
        EMBER_CHECK(step >= start_step_, op, path_.string(), ": step ", step, " comes before the start step ",
                    start_step_);
        EMBER_CHECK(step > last_step_, op, path_.string(), ": step ", step, " after step ", last_step_,
                    "; steps must increase");
        std::string text;
        if (columns_.empty()) {  // this row fixes the columns
            std::vector<std::string_view> names;
            for (It it = first; it != last; ++it) names.push_back(it->first);
            columns_ = checked_columns(names.begin(), names.end(), op);
            header_pending_ = true;
        }
        if (header_pending_) text = joined(columns_) + "\n";
        std::vector<std::string> fields(columns_.size());
        std::vector<bool> given(columns_.size(), false);
        fields[0] = std::to_string(step);
        for (It it = first; it != last; ++it) {
            const std::string_view name = it->first;
            const auto c = static_cast<std::size_t>(std::find(columns_.begin(), columns_.end(), name) - columns_.begin());
            if (c == columns_.size() || c == 0)
                detail::fail(op, path_.string(), ": '", name, "' is not a metric column of this log; its columns are ",
                             joined(columns_));
            EMBER_CHECK(!given[c], op, path_.string(), ": column '", name, "' given twice in one row");
            given[c] = true;
            fields[c] = format_value(it->second);
        }
        for (std::size_t c = 0; c < fields.size(); ++c) text += (c ? "," : "") + fields[c];
        text += '\n';
        append(text);
        header_pending_ = false;
        last_step_ = step;
    }

    // "step" followed by `names`, checked: non-empty, unique, nothing a CSV field cannot hold.
    template <class It>
    std::vector<std::string> checked_columns(It first, It last, const char* op) const {
        std::vector<std::string> out{"step"};
        for (; first != last; ++first) {
            const std::string_view name = *first;
            EMBER_CHECK(!name.empty() && name.find_first_of(",\"\r\n") == std::string_view::npos, op, path_.string(),
                        ": column name '", name, "' must be non-empty and free of , \" and line breaks");
            EMBER_CHECK(std::find(out.begin(), out.end(), name) == out.end(), op, path_.string(), ": column '", name,
                        "' given twice (\"step\" is always the first column)");
            out.emplace_back(name);
        }
        return out;
    }
    static std::string joined(const std::vector<std::string>& names) {
        std::string s;
        for (const std::string& n : names) s += (s.empty() ? "" : ",") + n;
        return s;
    }

    // One write() per row (header and first row together), so a crash leaves whole rows.
    void append(const std::string& text) {
        std::size_t done = 0;
        while (done < text.size()) {
            const ssize_t k = ::write(fd_, text.data() + done, text.size() - done);
            if (k < 0) {
                if (errno == EINTR) continue;
                detail::fail("MetricsLog::write", path_.string(), ": write failed: ", detail::errno_text(errno));
            }
            done += static_cast<std::size_t>(k);
        }
    }

    // The header and the rows of steps < start of an existing file, which is to become
    // the new file (see the top); sets columns_ (if a row is kept) and last_step_.
    std::string rows_before(std::int64_t start) {
        const char* op = "MetricsLog";
        std::string kept;
        if (start > 0 && std::filesystem::exists(path_)) {
            std::ifstream in(path_, std::ios::binary);
            if (!in) detail::fail(op, path_.string(), ": cannot open the existing log to resume it");
            const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            std::string header;
            std::size_t pos = 0, line_no = 0, rows = 0;
            // Only complete lines: one without its '\n' was cut short by a crash.
            for (std::size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
                std::string_view line(text.data() + pos, nl - pos);
                ++line_no;
                if (line.empty() || line == "\r") continue;
                if (header.empty()) {
                    EMBER_CHECK(line.starts_with("step,") || line == "step", op, path_.string(),
                                ": cannot resume: the first line is not a header starting with \"step\"");
                    header = std::string(line);
                    continue;
                }
                std::int64_t step = 0;
                const auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), step);
                if (ec != std::errc() || (ptr != line.data() + line.size() && *ptr != ','))
                    detail::fail(op, path_.string(), ": cannot resume: line ", line_no,
                                 " does not start with an integer step");
                if (step >= start) continue;
                kept.append(line).push_back('\n');
                last_step_ = std::max(last_step_, step);
                ++rows;
            }
            if (rows > 0) {
                kept.insert(0, header + "\n");
                // The header fixes the columns for this run.
                for (std::size_t p = 0;;) {
                    const std::size_t comma = header.find(',', p);
                    columns_.push_back(header.substr(p, comma - p));
                    if (comma == std::string::npos) break;
                    p = comma + 1;
                }
                if (!columns_.empty() && columns_.back().ends_with('\r')) columns_.back().pop_back();
            }
        }
        return kept;
    }

    std::filesystem::path path_;
    std::vector<std::string> columns_;
    std::int64_t start_step_ = 0;
    std::int64_t last_step_ = -1;  // of the last row in the file
    bool header_pending_ = false;  // columns_ chosen but the header not yet in the file
    int fd_ = -1;
};

}  // namespace ember
