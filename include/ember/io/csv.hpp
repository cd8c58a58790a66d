#pragma once
/// \file
/// Reading numeric CSV files such as training metrics logs (ember/train/metrics.hpp):
/// a header row of column names, then rows of numbers.
///
///     CsvTable t = read_numeric_csv("out/metrics.csv");
///     const std::vector<double>& loss = t.column("loss");   // one value per row
///
/// The dialect is the plain one ember writes: fields separated by ',', no quoting, lines
/// ended by "\n" or "\r\n", spaces around fields ignored, blank lines skipped. A field is
/// a number as std::from_chars reads it ("1", "-2.5e-3", "nan", "inf", "-inf"); an empty
/// field is a missing value and reads as NaN. Anything else (text in a number column, a
/// row with the wrong number of fields, an empty or repeated column name) is an
/// ember::Error naming the file, the line and the column.
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ember/core/error.hpp"

namespace ember {

/// A numeric CSV file in memory: column names and, per column, one value per data row.
struct CsvTable {
    std::vector<std::string> columns;         ///< names, in file order
    std::vector<std::vector<double>> values;  ///< values[c][r]: column c, data row r

    /// Number of data rows.
    std::size_t rows() const { return values.empty() ? 0 : values.front().size(); }
    /// Whether a column is called `name`.
    bool has(std::string_view name) const { return std::find(columns.begin(), columns.end(), name) != columns.end(); }
    /// "step, loss, lr": the names for an error message.
    std::string column_list() const {
        std::string names;
        for (const std::string& c : columns) names += (names.empty() ? "" : ", ") + c;
        return names;
    }
    /// The values of column `name`; throws ember::Error listing the columns if there is none.
    const std::vector<double>& column(std::string_view name) const {
        const auto it = std::find(columns.begin(), columns.end(), name);
        if (it == columns.end())
            detail::fail("CsvTable::column", "no column named '", name, "'; the columns are: ", column_list());
        return values[static_cast<std::size_t>(it - columns.begin())];
    }
};

namespace io_detail {

inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// Splits one line at commas (no quoting), trimming each field.
inline std::vector<std::string_view> split_csv_line(std::string_view line) {
    std::vector<std::string_view> fields;
    for (;;) {
        const std::size_t comma = line.find(',');
        fields.push_back(trim(line.substr(0, comma)));
        if (comma == std::string_view::npos) return fields;
        line.remove_prefix(comma + 1);
    }
}

// A whole field as a double; "" is NaN (a missing value). False if it is not a number or
// lies outside the range of double (1e999).
inline bool parse_csv_number(std::string_view field, double& out) {
    if (field.empty()) {
        out = std::numeric_limits<double>::quiet_NaN();
        return true;
    }
    const char* end = field.data() + field.size();
    const auto [ptr, ec] = std::from_chars(field.data(), end, out);
    return ec == std::errc() && ptr == end;
}

}  // namespace io_detail

/// Parses CSV text; `label` names it in error messages (a file name, say).
inline CsvTable parse_numeric_csv(std::string_view text, std::string_view label = "<memory>") {
    const char* op = "read_numeric_csv";
    CsvTable table;
    std::size_t line_no = 0;
    bool have_header = false;
    while (!text.empty()) {
        const std::size_t nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        ++line_no;
        if (io_detail::trim(line).empty()) continue;
        const std::vector<std::string_view> fields = io_detail::split_csv_line(line);
        if (!have_header) {
            for (std::string_view name : fields) {
                if (name.empty()) detail::fail(op, label, ": line ", line_no, ": empty column name in the header");
                if (table.has(name)) detail::fail(op, label, ": line ", line_no, ": column '", name, "' appears twice");
                table.columns.emplace_back(name);
            }
            table.values.resize(table.columns.size());
            have_header = true;
            continue;
        }
        if (fields.size() != table.columns.size())
            detail::fail(op, label, ": line ", line_no, " has ", fields.size(), " fields; the header has ",
                         table.columns.size());
        for (std::size_t c = 0; c < fields.size(); ++c) {
            double v = 0;
            if (!io_detail::parse_csv_number(fields[c], v))
                detail::fail(op, label, ": line ", line_no, ", column '", table.columns[c], "': '",
                             std::string(fields[c].substr(0, 40)),
                             "' is not a number (or not within the range of double)");
            table.values[c].push_back(v);
        }
    }
    if (!have_header) detail::fail(op, label, ": the file is empty; expected a header row of column names");
    return table;
}

/// Reads the numeric CSV file at `path` (see the file description for the dialect).
inline CsvTable read_numeric_csv(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) detail::fail("read_numeric_csv", path.string(), ": cannot open the file");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) detail::fail("read_numeric_csv", path.string(), ": read error");
    return parse_numeric_csv(text, path.string());
}

}  // namespace ember
