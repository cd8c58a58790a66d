#pragma once
/// \file
/// safetensors checkpoints (the Hugging Face format): an 8-byte little-endian header length
/// N, N bytes of JSON
///
///     {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...,
///      "__metadata__": {"key": "value", ...}}            (metadata optional)
/// and then the raw little-endian tensor data; offsets count from the end of the header.
///
///     save_safetensors<float>("model.safetensors", {{"W", W}, {"b", b}}, {{"step", "100"}});
///     Safetensors<float> ckpt = load_safetensors<float>("model.safetensors");
///     Tensor<float> W2 = ckpt.at("W");
///
/// Tensors are saved as F32 (Tensor<float>) or F64 (Tensor<double>), or as another dtype
/// given to save_safetensors (U8 needs values in [0, 255]). Loading reads F32, F64 and U8
/// into float or double, converting. It validates everything the spec requires: the header
/// length, strict JSON, unique keys, known dtypes, ranks (at most ember's 4), and data
/// offsets that match each tensor's size and tile the data section exactly, without gaps or
/// overlaps. Every failure is an ember::Error "load_safetensors: FILE: ...". Saving is
/// atomic (ember/io/atomic_file.hpp).
///
/// Integrity. ember adds to the metadata a CRC-32 (zlib's) of every tensor, under
/// "crc32:<name>", covering its name, dtype, shape and data bytes, and one of the other
/// metadata entries, under "crc32:__metadata__". Loading verifies them, so a flipped bit in
/// a tensor's data, shape or name, or in a metadata value, is an error naming what is
/// damaged rather than a silently different model. Files without these entries (written by
/// PyTorch or the reference implementation) load unchecked; Safetensors::checksummed says
/// which kind was read. The "crc32:" entries are not returned among the metadata, and user
/// metadata cannot use that prefix.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/shape.hpp"
#include "ember/core/tensor.hpp"
#include "ember/io/atomic_file.hpp"
#include "ember/io/npy.hpp"  // DType, element conversion, byte sources

namespace ember {

/// The contents of a safetensors file: tensors by name (sorted by name) and the
/// "__metadata__" strings.
template <Real T>
struct Safetensors {
    /// The tensors, by name.
    std::map<std::string, Tensor<T>> tensors;
    /// The "__metadata__" entries (string to string), without ember's "crc32:" entries.
    std::map<std::string, std::string> metadata;
    /// Whether the file carried ember's CRC-32s (all of which were verified).
    bool checksummed = false;

    /// The tensor called `name`; throws ember::Error naming it if there is none.
    const Tensor<T>& at(const std::string& name) const {
        const auto it = tensors.find(name);
        EMBER_CHECK(it != tensors.end(), "Safetensors::at", "no tensor named '", name, "'");
        return it->second;
    }
};

namespace io_detail {

// The reference implementation refuses larger headers too.
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100'000'000;

// Every dtype the format defines (including later additions), so that a file with, say,
// BF16 gets "not supported" rather than "unknown".
inline constexpr std::array<std::string_view, 20> kSafetensorsDtypes = {
    "BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "I16",
    "U16",  "F16", "BF16", "I32",    "U32",     "F32",     "F64", "I64",     "U64",     "C64"};

inline const char* safetensors_dtype(DType d) { return d == DType::F32 ? "F32" : d == DType::F64 ? "F64" : "U8"; }

// ---- integrity: CRC-32 of each tensor and of the metadata -----------------------------

inline constexpr std::string_view kCrcPrefix = "crc32:";
inline constexpr std::string_view kMetadataCrcKey = "crc32:__metadata__";

inline std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t n) {
    return static_cast<std::uint32_t>(::crc32_z(crc, static_cast<const Bytef*>(data), n));
}
inline std::uint32_t crc32_update(std::uint32_t crc, std::string_view s) { return crc32_update(crc, s.data(), s.size()); }

// The CRC a tensor's data bytes continue from: its name, dtype and shape, so that damage
// to the header entry is caught as well as damage to the data.
inline std::uint32_t tensor_crc_seed(std::string_view name, DType dtype, const Shape& shape) {
    std::uint32_t crc = crc32_update(0, name);
    crc = crc32_update(crc, "\0", 1);
    crc = crc32_update(crc, safetensors_dtype(dtype));
    crc = crc32_update(crc, "\0", 1);
    return crc32_update(crc, shape.str());
}
// The CRC of every metadata entry but ember's own "crc32:" ones, in key order.
inline std::uint32_t metadata_crc(const std::map<std::string, std::string>& metadata) {
    std::uint32_t crc = 0;
    for (const auto& [key, value] : metadata) {
        if (key.starts_with(kCrcPrefix)) continue;
        crc = crc32_update(crc, key.data(), key.size() + 1);  // with the terminating NUL
        crc = crc32_update(crc, value.data(), value.size() + 1);
    }
    return crc;
}
inline std::string crc_hex(std::uint32_t crc) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string s(8, '0');
    for (int i = 7; i >= 0; --i, crc >>= 4) s[static_cast<std::size_t>(i)] = hex[crc & 15];
    return s;
}
// The stored CRC `text` of `what`; 8 lowercase hex digits, or the file is damaged.
inline std::uint32_t parse_crc_hex(const std::string& text, const std::string& what, const Where& where) {
    std::uint32_t v = 0;
    bool ok = text.size() == 8;
    for (const char c : text) {
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        ok = ok && d >= 0;
        v = v * 16 + static_cast<std::uint32_t>(std::max(d, 0));
    }
    if (!ok) where.fail("the CRC-32 of ", what, " is \"", printable(text, 20), "\", not 8 hex digits: the file is damaged");
    return v;
}

// A sink that only computes the CRC of what is written to it.
struct CrcSink {
    std::uint32_t crc;
    void write(const void* data, std::size_t n) { crc = crc32_update(crc, data, n); }
    void write(std::string_view s) { write(s.data(), s.size()); }
};
// A source that computes the CRC of everything read through it, in the order read.
class CrcSource final : public ByteSource {
public:
    CrcSource(ByteSource& src, std::uint32_t seed) : crc(seed), src_(src) {}
    std::uint64_t size() const override { return src_.size(); }
    void read(std::uint64_t offset, std::byte* dst, std::size_t n) override {
        src_.read(offset, dst, n);
        crc = crc32_update(crc, dst, n);
    }
    std::uint32_t crc;  // of the bytes read so far

private:
    ByteSource& src_;
};

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid (overlong
// forms, surrogates and code points above U+10FFFF are invalid, as RFC 3629 says).
inline std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned c = b(i);
    if (c < 0x80) return 1;
    std::size_t n;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;       // overlong
        else if (c == 0xED) hi = 0x9F;  // UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;       // overlong
        else if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else return 0;
    if (s.size() - i < n || b(i + 1) < lo || b(i + 1) > hi) return 0;
    for (std::size_t k = 2; k < n; ++k)
        if ((b(i + k) & 0xC0) != 0x80) return 0;
    return n;
}
inline bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = utf8_sequence(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

// The JSON the format needs, and nothing more: objects, arrays, strings (with every
// escape, validated UTF-8) and non-negative integers. true/false/null, fractions and
// exponents are rejected since no field of the format can hold them. The reader is driven
// by the caller (who knows which value comes next), so it needs no recursion and a
// deeply nested input cannot exhaust the stack.
class JsonReader {
public:
    JsonReader(std::string_view text, const Where& where) : s_(text), where_(where) {}

    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }
    bool at_end() {
        skip_ws();
        return pos_ == s_.size();
    }
    bool consume(char c) {
        skip_ws();
        if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
        return false;
    }
    void expect(char c, std::string_view what) {
        if (!consume(c)) error(std::string("expected ") + std::string(what));
    }

    std::string string(std::string_view what) {
        skip_ws();
        if (pos_ >= s_.size() || s_[pos_] != '"') error("expected " + std::string(what) + " (a JSON string)");
        ++pos_;
        std::string out;
        for (;;) {
            if (pos_ >= s_.size()) error("unterminated string");
            const auto c = static_cast<unsigned char>(s_[pos_]);
            if (c == '"') {
                ++pos_;
                return out;
            }
            if (c < 0x20) error("control character in a string (it must be escaped)");
            if (c == '\\') {
                escape(out);
                continue;
            }
            const std::size_t n = utf8_sequence(s_, pos_);
            if (n == 0) error("invalid UTF-8 in a string");
            out.append(s_.substr(pos_, n));
            pos_ += n;
        }
    }

    // A non-negative integer, in strict JSON syntax (no leading zeros, no '+').
    std::uint64_t integer(std::string_view what) {
        skip_ws();
        const std::size_t start = pos_;
        if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') error("expected " + std::string(what) + " (a non-negative integer)");
        std::uint64_t v = 0;
        while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
            const auto digit = static_cast<std::uint64_t>(s_[pos_] - '0');
            if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) error("integer too large");
            v = v * 10 + digit;
            ++pos_;
        }
        if (s_[start] == '0' && pos_ - start > 1) {
            pos_ = start;
            error("leading zeros are not valid JSON");
        }
        if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E'))
            error("expected " + std::string(what) + " to be an integer");
        return v;
    }

    // [n, n, ...], at most `max_len` numbers (longer arrays are rejected before they can
    // take much memory).
    std::vector<std::uint64_t> integer_array(std::string_view what, std::size_t max_len) {
        expect('[', "'[' to start " + std::string(what));
        std::vector<std::uint64_t> v;
        if (consume(']')) return v;
        for (;;) {
            if (v.size() == max_len) error(std::string(what) + " has more than " + std::to_string(max_len) + " entries");
            v.push_back(integer(std::string("an element of ") + std::string(what)));
            if (consume(',')) continue;
            expect(']', "',' or ']' in " + std::string(what));
            return v;
        }
    }

    std::size_t pos() const { return pos_; }
    // Reports a problem with the text starting at byte `at` (e.g. a key already read).
    [[noreturn]] void error_at(std::size_t at, const std::string& what) {
        pos_ = at;
        error(what);
    }
    [[noreturn]] void error(const std::string& what) const {
        const std::string found = pos_ < s_.size() ? "'" + printable(s_.substr(pos_, 12), 12) + "'" : "the end of the header";
        where_.fail("invalid JSON header at byte ", pos_, ": ", what, ", found ", found);
    }

private:
    void escape(std::string& out) {
        ++pos_;  // the backslash
        if (pos_ >= s_.size()) error("unterminated escape");
        const char e = s_[pos_++];
        switch (e) {
            case '"': out += '"'; return;
            case '\\': out += '\\'; return;
            case '/': out += '/'; return;
            case 'b': out += '\b'; return;
            case 'f': out += '\f'; return;
            case 'n': out += '\n'; return;
            case 'r': out += '\r'; return;
            case 't': out += '\t'; return;
            case 'u': break;
            default: --pos_; error("invalid escape sequence");
        }
        std::uint32_t cp = hex4();
        if (cp >= 0xDC00 && cp <= 0xDFFF) error("unpaired UTF-16 low surrogate in a \\u escape");
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair encodes one code point
            if (s_.substr(pos_, 2) != "\\u") error("unpaired UTF-16 high surrogate in a \\u escape");
            pos_ += 2;
            const std::uint32_t low = hex4();
            if (low < 0xDC00 || low > 0xDFFF) error("unpaired UTF-16 high surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        append_utf8(out, cp);
    }
    std::uint32_t hex4() {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i, ++pos_) {
            if (pos_ >= s_.size()) error("unterminated \\u escape");
            const char c = s_[pos_];
            const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) error("expected 4 hex digits after \\u");
            v = v * 16 + static_cast<std::uint32_t>(d);
        }
        return v;
    }
    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) out += static_cast<char>(cp);
        else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    const Where& where_;
};

// A JSON string literal for `s` (valid UTF-8): quotes, backslashes and control
// characters escaped, everything else as is.
inline std::string json_quote(std::string_view s) {
    std::string out = "\"";
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"') out += "\\\"";
        else if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (c < 0x20) {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else out += ch;
    }
    return out + "\"";
}

// ---- reading ---------------------------------------------------------------------------

struct SafetensorsEntry {
    std::string name;
    DType dtype{};
    Shape shape;
    std::uint64_t begin = 0, end = 0;  // byte offsets into the data section
};
struct SafetensorsHeader {
    std::vector<SafetensorsEntry> entries;  // in the order of the header
    std::map<std::string, std::string> metadata;
};

inline std::string quoted_name(const std::string& name) { return "'" + printable(name, 60) + "'"; }

inline void parse_metadata(JsonReader& r, std::map<std::string, std::string>& metadata) {
    r.expect('{', "'{' (\"__metadata__\" must be an object of strings)");
    if (r.consume('}')) return;
    for (;;) {
        r.skip_ws();
        const std::size_t at = r.pos();
        std::string key = r.string("a metadata key");
        if (metadata.count(key)) r.error_at(at, "duplicate metadata key " + quoted_name(key));
        r.expect(':', "':' after a metadata key");
        metadata.emplace(std::move(key), r.string("a metadata value"));
        if (r.consume(',')) continue;
        r.expect('}', "',' or '}' in \"__metadata__\"");
        return;
    }
}

inline SafetensorsEntry parse_entry(JsonReader& r, std::string name, const Where& where) {
    const std::string who = "tensor " + quoted_name(name);
    r.expect('{', "'{' (" + who + " must be an object)");
    bool has_dtype = false, has_shape = false, has_offsets = false;
    std::string dtype;
    std::vector<std::uint64_t> dims, offsets;
    if (!r.consume('}')) {
        for (;;) {
            r.skip_ws();
            const std::size_t at = r.pos();
            const std::string field = r.string("a field name of " + who);
            r.expect(':', "':' after a field name");
            bool* seen = field == "dtype" ? &has_dtype : field == "shape" ? &has_shape : field == "data_offsets" ? &has_offsets : nullptr;
            if (!seen)
                r.error_at(at, "unexpected field " + quoted_name(field) + " in " + who +
                                   "; expected exactly \"dtype\", \"shape\" and \"data_offsets\"");
            if (*seen) r.error_at(at, "duplicate field " + quoted_name(field) + " in " + who);
            *seen = true;
            if (field == "dtype") dtype = r.string("the dtype of " + who);
            // Arrays longer than ember's rank are refused below; 64 still lets the error
            // message show the rank of any reasonable shape.
            else if (field == "shape") dims = r.integer_array("the shape of " + who, 64);
            else offsets = r.integer_array("the data_offsets of " + who, 2);
            if (r.consume(',')) continue;
            r.expect('}', "',' or '}' in " + who);
            break;
        }
    }
    if (!has_dtype || !has_shape || !has_offsets)
        where.fail(who, " lacks \"", !has_dtype ? "dtype" : !has_shape ? "shape" : "data_offsets", "\"");
    if (offsets.size() != 2)
        where.fail(who, ": data_offsets must be [begin, end], found ", offsets.size(), " number(s)");

    SafetensorsEntry e;
    if (dtype == "F32") e.dtype = DType::F32;
    else if (dtype == "F64") e.dtype = DType::F64;
    else if (dtype == "U8") e.dtype = DType::U8;
    else if (std::find(kSafetensorsDtypes.begin(), kSafetensorsDtypes.end(), dtype) != kSafetensorsDtypes.end())
        where.fail(who, " has dtype ", dtype, ", which ember does not read; expected F32, F64 or U8");
    else
        where.fail(who, " has unknown dtype \"", printable(dtype, 40), "\"; expected F32, F64 or U8");
    e.shape = checked_shape(dims, where, who + ": ");
    e.begin = offsets[0];
    e.end = offsets[1];
    e.name = std::move(name);
    return e;
}

inline SafetensorsHeader parse_safetensors_header(std::string_view text, const Where& where) {
    // The spec requires the very first byte to be '{' (trailing spaces are padding).
    if (text.empty() || text[0] != '{')
        where.fail("the header must be a JSON object starting with '{', found \"", printable(text, 20), "\"");
    JsonReader r(text, where);
    SafetensorsHeader h;
    std::set<std::string> keys;
    r.expect('{', "'{'");
    if (!r.consume('}')) {
        for (;;) {
            r.skip_ws();
            const std::size_t at = r.pos();
            std::string key = r.string("a tensor name");
            if (!keys.insert(key).second) r.error_at(at, "duplicate key " + quoted_name(key));
            r.expect(':', "':' after a key");
            if (key == "__metadata__") parse_metadata(r, h.metadata);
            else h.entries.push_back(parse_entry(r, std::move(key), where));
            if (r.consume(',')) continue;
            r.expect('}', "',' or '}' after a tensor entry");
            break;
        }
    }
    if (!r.at_end()) r.error("unexpected text after the header object");
    return h;
}

// Checks each tensor's byte range against its dtype and shape, and that together the
// ranges tile [0, data_size) exactly: no gaps, no overlaps, nothing left over.
inline void check_offsets(const SafetensorsHeader& h, std::uint64_t data_size, const Where& where) {
    auto range = [](const SafetensorsEntry& e) {
        return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    };
    for (const SafetensorsEntry& e : h.entries) {
        const std::string who = "tensor " + quoted_name(e.name);
        if (e.end < e.begin) where.fail(who, ": data_offsets ", range(e), " end before they begin");
        if (e.end > data_size)
            where.fail(who, ": data_offsets ", range(e), " run past the end of the data section (", data_size,
                       " bytes)");
        // checked_shape bounds numel by 2^60, so this product cannot overflow.
        const std::uint64_t need = static_cast<std::uint64_t>(e.shape.numel()) * dtype_size(e.dtype);
        if (e.end - e.begin != need)
            where.fail(who, ": data_offsets ", range(e), " span ", e.end - e.begin, " bytes, but shape ",
                       e.shape.str(), " of ", safetensors_dtype(e.dtype), " needs ", need);
    }
    std::vector<const SafetensorsEntry*> sorted;
    for (const SafetensorsEntry& e : h.entries) sorted.push_back(&e);
    std::sort(sorted.begin(), sorted.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
        return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
    });
    std::uint64_t covered = 0;  // [0, covered) belongs to the tensors seen so far
    const SafetensorsEntry* previous = nullptr;
    for (const SafetensorsEntry* e : sorted) {
        if (e->begin < covered)
            where.fail("tensors ", quoted_name(previous->name), " ", range(*previous), " and ", quoted_name(e->name),
                       " ", range(*e), " overlap");
        if (e->begin > covered)
            where.fail("bytes [", covered, ", ", e->begin, ") of the data section belong to no tensor");
        covered = e->end;
        previous = e;
    }
    if (covered != data_size)
        where.fail("bytes [", covered, ", ", data_size, ") of the data section belong to no tensor");
}

template <Real T>
Safetensors<T> read_safetensors(ByteSource& src, const Where& where) {
    const std::uint64_t size = src.size();
    if (size < 8)
        where.fail("the file is ", size, " bytes long; a safetensors file starts with an 8-byte header length");
    std::array<std::byte, 8> len_bytes{};
    src.read(0, len_bytes.data(), 8);
    const auto n = load_le<std::uint64_t>(len_bytes.data());
    if (n > kSafetensorsMaxHeader)
        where.fail("header length ", n, " exceeds the limit of ", kSafetensorsMaxHeader, " bytes");
    if (n > size - 8)
        where.fail("header length ", n, " runs past the end of the file (", size - 8,
                   " bytes follow the length field)");
    std::string text(static_cast<std::size_t>(n), '\0');
    src.read(8, reinterpret_cast<std::byte*>(text.data()), text.size());
    const SafetensorsHeader h = parse_safetensors_header(text, where);
    check_offsets(h, size - 8 - n, where);

    // ember's CRCs: either none, or one for every tensor and the metadata, and none for a
    // tensor the file does not have (a damaged name shows up as both).
    Safetensors<T> out;
    std::map<std::string, std::uint32_t> crcs;
    for (const auto& [key, value] : h.metadata) {
        if (!key.starts_with(kCrcPrefix)) out.metadata.emplace(key, value);
        else crcs.emplace(key.substr(kCrcPrefix.size()), parse_crc_hex(value, quoted_name(key.substr(kCrcPrefix.size())), where));
    }
    out.checksummed = !crcs.empty();
    if (out.checksummed) {
        std::set<std::string_view> names;
        for (const SafetensorsEntry& e : h.entries) {
            names.insert(e.name);
            if (!crcs.count(e.name))
                where.fail("tensor ", quoted_name(e.name), " has no CRC-32 while the file's other entries have one: "
                           "its name is damaged, or it was added by a program that kept ember's checksums");
        }
        for (const auto& [name, crc] : crcs)
            if (name != "__metadata__" && !names.count(name))
                where.fail("the metadata has a CRC-32 for tensor ", quoted_name(name),
                           ", which the file does not contain: a tensor name is damaged");
        const auto stored = crcs.find("__metadata__");
        if (stored == crcs.end()) where.fail("the metadata has no CRC-32 while the tensors have: the file is damaged");
        if (const std::uint32_t computed = metadata_crc(h.metadata); computed != stored->second)
            where.fail("the metadata do not match their CRC-32 (stored ", crc_hex(stored->second), ", computed ",
                       crc_hex(computed), "): the file is damaged");
    }
    for (const SafetensorsEntry& e : h.entries) {
        Tensor<T> t = Tensor<T>::empty(e.shape);
        if (!out.checksummed) {  // another writer's file: nothing to verify
            read_elements(src, 8 + n + e.begin, e.dtype, t.data(), static_cast<std::size_t>(t.numel()));
            out.tensors.emplace(e.name, std::move(t));
            continue;
        }
        CrcSource checked(src, tensor_crc_seed(e.name, e.dtype, e.shape));
        read_elements(checked, 8 + n + e.begin, e.dtype, t.data(), static_cast<std::size_t>(t.numel()));
        if (checked.crc != crcs.at(e.name))
            where.fail("tensor ", quoted_name(e.name), " does not match its CRC-32 (stored ", crc_hex(crcs.at(e.name)),
                       ", computed ", crc_hex(checked.crc), "): the file is damaged");
        out.tensors.emplace(e.name, std::move(t));
    }
    return out;
}

// ---- writing ---------------------------------------------------------------------------

template <Real T>
using NamedTensors = std::vector<std::pair<std::string, Tensor<T>>>;

// Everything about a save that can be checked before any byte is written; only a uint8
// value out of range is found later, while writing.
template <Real T>
void check_for_save(const NamedTensors<T>& named, const std::map<std::string, std::string>& metadata,
                    const Where& where) {
    std::set<std::string_view> names;
    for (const auto& [name, t] : named) {
        if (name == "__metadata__") where.fail("\"__metadata__\" is reserved and cannot name a tensor");
        if (!valid_utf8(name)) where.fail("tensor name ", quoted_name(name), " is not valid UTF-8");
        if (!names.insert(name).second) where.fail("two tensors are named ", quoted_name(name));
        if (!t.defined()) where.fail("tensor ", quoted_name(name), " is undefined (default-constructed)");
    }
    for (const auto& [key, value] : metadata) {
        if (!valid_utf8(key) || !valid_utf8(value))
            where.fail("metadata entry ", quoted_name(key), " is not valid UTF-8");
        if (key.starts_with(kCrcPrefix))
            where.fail("metadata key ", quoted_name(key), " starts with \"crc32:\", which ember reserves for its checksums");
    }
}

template <class Sink, Real T>
void write_safetensors(Sink& sink, const NamedTensors<T>& named, const std::map<std::string, std::string>& metadata,
                       DType dtype, const Where& where) {
    check_for_save(named, metadata, where);
    // The checksums come first: the header holds them and precedes the data. Computing them
    // costs one extra pass over the tensors, without a copy of their bytes. (A tensor that is
    // not contiguous is made so in each pass, one tensor at a time, rather than all kept
    // between the passes: the save's peak memory stays one tensor, and saved tensors, the
    // parameters and optimiser states, are contiguous anyway.)
    std::map<std::string, std::string> meta = metadata;
    for (const auto& [name, t] : named) {
        const Tensor<T> c = t.contiguous();
        CrcSink crc{tensor_crc_seed(name, dtype, c.shape())};
        write_elements(crc, c.data(), static_cast<std::size_t>(c.numel()), dtype, where, " of tensor " + quoted_name(name));
        meta[std::string(kCrcPrefix) + name] = crc_hex(crc.crc);
    }
    meta[std::string(kMetadataCrcKey)] = crc_hex(metadata_crc(metadata));
    std::string header = "{\"__metadata__\":{";
    bool first = true;
    for (const auto& [key, value] : meta) {
        header += (first ? "" : ",") + json_quote(key) + ":" + json_quote(value);
        first = false;
    }
    header += "}";
    std::uint64_t offset = 0;
    for (const auto& [name, t] : named) {
        const std::uint64_t bytes = static_cast<std::uint64_t>(t.numel()) * dtype_size(dtype);
        if (header.size() > 1) header += ",";
        header += json_quote(name) + ":{\"dtype\":\"" + safetensors_dtype(dtype) + "\",\"shape\":[";
        for (int i = 0; i < t.rank(); ++i) header += (i ? "," : "") + std::to_string(t.dim(i));
        header += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
        offset += bytes;
    }
    header += "}";
    // Pad with spaces (allowed by the spec) so that the data starts 8-byte aligned, as the
    // reference implementation does; readers can then map F64 data in place.
    header.append((8 - header.size() % 8) % 8, ' ');

    std::array<std::byte, 8> len{};
    store_le(len.data(), static_cast<std::uint64_t>(header.size()));
    sink.write(len.data(), len.size());
    sink.write(header);
    for (const auto& [name, t] : named) {
        const Tensor<T> c = t.contiguous();
        write_elements(sink, c.data(), static_cast<std::size_t>(c.numel()), dtype, where,
                       " of tensor " + quoted_name(name));
    }
}

template <Real T>
NamedTensors<T> to_named(const std::map<std::string, Tensor<T>>& tensors) {
    return NamedTensors<T>(tensors.begin(), tensors.end());
}

}  // namespace io_detail

/// Reads a safetensors file; every tensor is converted to T.
template <Real T>
Safetensors<T> load_safetensors(const std::filesystem::path& path) {
    const io_detail::Where where{"load_safetensors", path.string()};
    io_detail::FileSource src(path, where);
    return io_detail::read_safetensors<T>(src, where);
}

/// The same from the bytes of a safetensors file in memory; `label` names it in errors.
template <Real T>
Safetensors<T> safetensors_from_bytes(std::span<const std::byte> bytes, std::string_view label = "<memory>") {
    const io_detail::Where where{"load_safetensors", std::string(label)};
    io_detail::MemorySource src(bytes, where);
    return io_detail::read_safetensors<T>(src, where);
}

/// Writes `tensors` (in this order; names unique) and `metadata` atomically, every tensor
/// as `dtype`.
template <Real T>
void save_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor<T>>>& tensors,
                      const std::map<std::string, std::string>& metadata = {}, DType dtype = dtype_of<T>) {
    const io_detail::Where where{"save_safetensors", path.string()};
    // Refuse bad input before a temporary file exists (write_safetensors checks again).
    io_detail::check_for_save(tensors, metadata, where);
    write_file_atomic(
        path, [&](AtomicWriter& w) { io_detail::write_safetensors(w, tensors, metadata, dtype, where); },
        "save_safetensors");
}
/// save_safetensors of a map from name to tensor: the tensors are written in name order.
template <Real T>
void save_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor<T>>& tensors,
                      const std::map<std::string, std::string>& metadata = {}, DType dtype = dtype_of<T>) {
    save_safetensors(path, io_detail::to_named(tensors), metadata, dtype);
}
/// For a braced list, save_safetensors<float>(path, {{"W", W}, {"b", b}}): without this
/// overload the list could become either the vector or the map, which is ambiguous.
template <Real T>
void save_safetensors(const std::filesystem::path& path, std::initializer_list<std::pair<std::string, Tensor<T>>> tensors,
                      const std::map<std::string, std::string>& metadata = {}, DType dtype = dtype_of<T>) {
    save_safetensors(path, io_detail::NamedTensors<T>(tensors), metadata, dtype);
}

/// The bytes of the file save_safetensors would write.
template <Real T>
std::vector<std::byte> safetensors_to_bytes(const std::vector<std::pair<std::string, Tensor<T>>>& tensors,
                                            const std::map<std::string, std::string>& metadata = {},
                                            DType dtype = dtype_of<T>) {
    io_detail::VectorSink sink;
    io_detail::write_safetensors(sink, tensors, metadata, dtype, io_detail::Where{"safetensors_to_bytes", "<memory>"});
    return std::move(sink.bytes);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_SAFETENSORS_INSTANCES(X, T) \
    X template Safetensors<T> load_safetensors<T>(const std::filesystem::path&); \
    X template Safetensors<T> safetensors_from_bytes<T>(std::span<const std::byte>, std::string_view); \
    X template void save_safetensors<T>(const std::filesystem::path&, const std::vector<std::pair<std::string, Tensor<T>>>&, const std::map<std::string, std::string>&, DType); \
    X template void save_safetensors<T>(const std::filesystem::path&, const std::map<std::string, Tensor<T>>&, const std::map<std::string, std::string>&, DType); \
    X template std::vector<std::byte> safetensors_to_bytes<T>(const std::vector<std::pair<std::string, Tensor<T>>>&, const std::map<std::string, std::string>&, DType);
EMBER_EXTERN_INSTANCES(EMBER_SAFETENSORS_INSTANCES)

}  // namespace ember
