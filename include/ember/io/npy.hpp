#pragma once
/// \file
/// NumPy .npy files (format versions 1.0, 2.0 and 3.0) of float32, float64 or uint8 arrays,
/// rank 0 to 4, in C order.
///
///     Tensor<float> x = load_npy<float>("x.npy");        // converts from any of the 3 dtypes
///     save_npy("y.npy", y);                               // float32 for Tensor<float>
///     save_npy("img.npy", img, DType::U8);                // values must lie in [0, 255]
///     Tensor<double> z = npy_from_bytes<double>(bytes);   // the same parser, from memory
///
/// Reading is strict: the header dict must have exactly 'descr', 'fortran_order' and
/// 'shape'; big-endian, Fortran-order and other dtypes are refused, and the data must be
/// exactly as long as the shape says. Every failure is an ember::Error
/// "load_npy: FILE: what was expected, what was found". Saving is atomic
/// (ember/io/atomic_file.hpp) and writes the header byte for byte as numpy does.
///
/// The first half of this file (DType, element conversion, byte sources, shape checks) is
/// shared with ember/io/safetensors.hpp.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
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

namespace ember {

// ===================================================================================
// Element types on disk (shared with safetensors.hpp)
// ===================================================================================

/// The element types ember reads and writes. Reading converts any of them to the tensor's
/// float/double; writing converts from it.
enum class DType { F32, F64, U8 };

/// NumPy's name of the type: "float32", "float64" or "uint8".
inline const char* dtype_name(DType d) {
    switch (d) {
        case DType::F32: return "float32";
        case DType::F64: return "float64";
        case DType::U8: return "uint8";
    }
    return "?";
}
/// Bytes per element.
inline std::size_t dtype_size(DType d) { return d == DType::F32 ? 4 : d == DType::F64 ? 8 : 1; }

/// The dtype that stores T without conversion: F32 for float, F64 for double.
template <Real T>
inline constexpr DType dtype_of = std::same_as<T, float> ? DType::F32 : DType::F64;

namespace io_detail {

// Converting double to float relies on IEEE 754 rules (out-of-range values become +-inf).
static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "ember/io assumes IEEE 754 float and double");

// The operation and file an error message starts with: "load_npy: FILE: ...".
struct Where {
    const char* op;
    std::string file;
    template <class... Parts>
    [[noreturn]] void fail(Parts&&... parts) const {
        detail::fail(op, file, ": ", std::forward<Parts>(parts)...);
    }
};

// Both formats store little-endian values. These compile to plain loads and stores on a
// little-endian machine and swap bytes on a big-endian one.
template <class U>
U load_le(const std::byte* p) {
    std::array<std::byte, sizeof(U)> b;
    std::memcpy(b.data(), p, sizeof(U));
    if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
    return std::bit_cast<U>(b);
}
template <class U>
void store_le(std::byte* p, U v) {
    auto b = std::bit_cast<std::array<std::byte, sizeof(U)>>(v);
    if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
    std::memcpy(p, b.data(), sizeof(U));
}

// Text from a file, made safe to print in an error message: non-printable bytes become
// \xNN and long text is cut.
inline std::string printable(std::string_view s, std::size_t max = 80) {
    std::string out;
    for (std::size_t i = 0; i < s.size() && i < max; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
        else {
            static constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

// ---- where the bytes come from: a file or memory ------------------------------------

// Random access to the bytes of a file or buffer. Readers first validate offsets against
// size(); read() past the end still fails cleanly (a file may shrink while being read).
class ByteSource {
public:
    virtual ~ByteSource() = default;
    virtual std::uint64_t size() const = 0;
    virtual void read(std::uint64_t offset, std::byte* dst, std::size_t n) = 0;
};

class MemorySource final : public ByteSource {
public:
    MemorySource(std::span<const std::byte> bytes, const Where& where) : bytes_(bytes), where_(where) {}
    std::uint64_t size() const override { return bytes_.size(); }
    void read(std::uint64_t offset, std::byte* dst, std::size_t n) override {
        if (offset > bytes_.size() || n > bytes_.size() - offset)
            where_.fail("reading ", n, " bytes at offset ", offset, " runs past the end (", bytes_.size(), " bytes)");
        if (n) std::memcpy(dst, bytes_.data() + offset, n);
    }

private:
    std::span<const std::byte> bytes_;
    const Where& where_;
};

// Reads with pread, so tensor data goes straight from the file into the tensor's buffer
// without a copy of the whole file in memory.
class FileSource final : public ByteSource {
public:
    FileSource(const std::filesystem::path& path, const Where& where) : where_(where) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) where.fail("cannot open: ", detail::errno_text(errno));
        struct stat st {};
        if (::fstat(fd_, &st) != 0) {
            const int err = errno;
            ::close(fd_);
            where.fail("cannot stat: ", detail::errno_text(err));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd_);
            where.fail("not a regular file");
        }
        size_ = static_cast<std::uint64_t>(st.st_size);
    }
    ~FileSource() override { ::close(fd_); }
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;

    std::uint64_t size() const override { return size_; }
    void read(std::uint64_t offset, std::byte* dst, std::size_t n) override {
        while (n > 0) {
            const ssize_t k = ::pread(fd_, dst, n, static_cast<off_t>(offset));
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) where_.fail("read failed at byte ", offset, ": ", detail::errno_text(errno));
            if (k == 0)
                where_.fail("the file ended at byte ", offset, " while ", n,
                            " more bytes were expected (did it change while being read?)");
            dst += k;
            offset += static_cast<std::uint64_t>(k);
            n -= static_cast<std::size_t>(k);
        }
    }

private:
    int fd_ = -1;
    std::uint64_t size_ = 0;
    const Where& where_;
};

// A sink collecting bytes in memory (the in-memory counterpart of AtomicWriter).
struct VectorSink {
    std::vector<std::byte> bytes;
    void write(const void* data, std::size_t n) {
        const auto* p = static_cast<const std::byte*>(data);
        bytes.insert(bytes.end(), p, p + n);
    }
    void write(std::string_view s) { write(s.data(), s.size()); }
};

// ---- shapes --------------------------------------------------------------------------

inline std::string dims_str(std::span<const std::uint64_t> dims) {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + "]";
}

// Validates dimensions read from a file and returns them as a Shape. Besides ember's rank
// limit, the product of the non-zero dimensions must fit comfortably in an Index: a
// zero-size tensor of shape [0, 2^40, 2^40] has no bytes to check against the file, yet
// its strides would overflow.
inline Shape checked_shape(std::span<const std::uint64_t> dims, const Where& where, std::string_view what) {
    if (dims.size() > static_cast<std::size_t>(kMaxRank))
        where.fail(what, "shape ", dims_str(dims), " has rank ", dims.size(), "; ember tensors have at most ",
                   kMaxRank, " dimensions");
    constexpr std::uint64_t kLimit = std::uint64_t(1) << 60;  // elements; leaves room for *8 bytes
    std::uint64_t product = 1;
    std::array<Index, kMaxRank> d{};
    for (std::size_t i = 0; i < dims.size(); ++i) {
        if (dims[i] > kLimit || (dims[i] > 1 && product > kLimit / dims[i]))
            where.fail(what, "shape ", dims_str(dims), " is too large");
        product *= std::max<std::uint64_t>(dims[i], 1);
        d[i] = static_cast<Index>(dims[i]);
    }
    return Shape(std::span<const Index>(d.data(), dims.size()));
}

// ---- element conversion --------------------------------------------------------------

// Fills out[0, n) from `n` elements of type `dtype` stored at `offset` in `src`.
template <Real T>
void read_elements(ByteSource& src, std::uint64_t offset, DType dtype, T* out, std::size_t n) {
    if (dtype == dtype_of<T> && std::endian::native == std::endian::little) {
        src.read(offset, reinterpret_cast<std::byte*>(out), n * sizeof(T));
        return;
    }
    // Convert in chunks so that memory use stays small whatever the tensor's size.
    const std::size_t width = dtype_size(dtype);
    const std::size_t chunk = (std::size_t(1) << 16) / width;
    std::vector<std::byte> buf(std::min(n, chunk) * width);
    for (std::size_t start = 0; start < n; start += chunk) {
        const std::size_t m = std::min(chunk, n - start);
        src.read(offset + start * width, buf.data(), m * width);
        T* o = out + start;
        const std::byte* p = buf.data();
        switch (dtype) {
            case DType::F32:
                for (std::size_t i = 0; i < m; ++i) o[i] = static_cast<T>(load_le<float>(p + 4 * i));
                break;
            case DType::F64:
                for (std::size_t i = 0; i < m; ++i) o[i] = static_cast<T>(load_le<double>(p + 8 * i));
                break;
            case DType::U8:
                for (std::size_t i = 0; i < m; ++i) o[i] = static_cast<T>(std::to_integer<std::uint8_t>(p[i]));
                break;
        }
    }
}

// Writes `n` elements of `data` as `dtype` to `sink`. For uint8 every value must lie in
// [0, 255]; it is rounded to the nearest integer (so 254.7 becomes 255, not 254 as a C
// cast would give). A value out of range throws midway through the write, which is one
// reason every saver writes atomically.
template <class Sink, Real T>
void write_elements(Sink& sink, const T* data, std::size_t n, DType dtype, const Where& where,
                    std::string_view what) {
    if (dtype == dtype_of<T> && std::endian::native == std::endian::little) {
        sink.write(data, n * sizeof(T));
        return;
    }
    const std::size_t width = dtype_size(dtype);
    const std::size_t chunk = (std::size_t(1) << 16) / width;
    std::vector<std::byte> buf(std::min(n, chunk) * width);
    for (std::size_t start = 0; start < n; start += chunk) {
        const std::size_t m = std::min(chunk, n - start);
        const T* in = data + start;
        std::byte* p = buf.data();
        switch (dtype) {
            case DType::F32:
                for (std::size_t i = 0; i < m; ++i) store_le(p + 4 * i, static_cast<float>(in[i]));
                break;
            case DType::F64:
                for (std::size_t i = 0; i < m; ++i) store_le(p + 8 * i, static_cast<double>(in[i]));
                break;
            case DType::U8:
                for (std::size_t i = 0; i < m; ++i) {
                    const T v = in[i];
                    if (!(v >= T(0) && v <= T(255)))  // also catches NaN
                        where.fail("cannot store ", v, " (element ", start + i, what,
                                   ") as uint8: values must lie in [0, 255]");
                    p[i] = static_cast<std::byte>(std::lround(v));
                }
                break;
        }
        sink.write(buf.data(), m * width);
    }
}

}  // namespace io_detail

// ===================================================================================
// NPY
// ===================================================================================

namespace io_detail {

inline constexpr std::string_view kNpyMagic{"\x93NUMPY", 6};
// Real headers are under 200 bytes; the cap keeps a corrupt length from allocating much.
inline constexpr std::uint64_t kNpyMaxHeader = std::uint64_t(1) << 20;

struct NpyHeader {
    DType dtype{};
    std::vector<std::uint64_t> dims;
};

// Parses the header: a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// Only what numpy writes is accepted: string keys, a string descr, True/False, and a
// tuple of non-negative integers (single- or double-quoted strings, any spacing,
// trailing commas).
class NpyHeaderParser {
public:
    NpyHeaderParser(std::string_view text, const Where& where) : s_(text), where_(where) {}

    NpyHeader parse() {
        bool have_descr = false, have_fortran = false, have_shape = false;
        std::string descr;
        bool fortran = false;
        NpyHeader h;
        expect('{', "'{' (the header is a Python dict)");
        while (!consume('}')) {
            skip_ws();
            const std::size_t key_pos = pos_;
            const std::string key = string_literal("a quoted key");
            expect(':', "':' after the key");
            if (key == "descr") {
                once(have_descr, key, key_pos);
                skip_ws();
                if (peek() == '[') error("structured (record) dtypes are not supported; expected a plain descr such as '<f4'");
                descr = string_literal("a quoted dtype such as '<f4'");
            } else if (key == "fortran_order") {
                once(have_fortran, key, key_pos);
                fortran = boolean();
            } else if (key == "shape") {
                once(have_shape, key, key_pos);
                h.dims = shape_tuple();
            } else {
                where_.fail("unexpected key '", printable(key),
                            "' in the NPY header; expected exactly 'descr', 'fortran_order' and 'shape'");
            }
            if (!consume(',')) {
                expect('}', "',' or '}'");
                break;
            }
        }
        skip_ws();  // numpy pads the header with spaces and ends it with '\n'
        if (pos_ != s_.size()) error("unexpected text after the header dict");
        if (!have_descr || !have_fortran || !have_shape)
            where_.fail("the NPY header lacks '", !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape",
                        "'; expected exactly 'descr', 'fortran_order' and 'shape'");
        if (fortran)
            where_.fail("fortran_order is True (column-major data), which is not supported; expected a C-order "
                        "array (save numpy.ascontiguousarray(a))");
        h.dtype = dtype_from_descr(descr);
        return h;
    }

private:
    DType dtype_from_descr(const std::string& d) const {
        if (d == "<f4") return DType::F32;
        if (d == "<f8") return DType::F64;
        if (d == "|u1" || d == "<u1" || d == ">u1") return DType::U8;  // byte order is moot for 1 byte
        if (!d.empty() && d[0] == '>')
            where_.fail("big-endian dtype '", printable(d), "' is not supported; expected little-endian "
                        "'<f4', '<f8' or '|u1' (convert with a.astype(a.dtype.newbyteorder('<')))");
        where_.fail("unsupported dtype '", printable(d),
                    "'; expected '<f4' (float32), '<f8' (float64) or '|u1' (uint8)");
    }

    void once(bool& seen, const std::string& key, std::size_t key_pos) {
        if (seen) {
            pos_ = key_pos;
            error("duplicate key '" + key + "'");
        }
        seen = true;
    }
    std::vector<std::uint64_t> shape_tuple() {
        expect('(', "'(' (the shape is a tuple)");
        std::vector<std::uint64_t> dims;
        bool trailing_comma = false;
        while (!consume(')')) {
            dims.push_back(integer());
            trailing_comma = consume(',');
            if (!trailing_comma) {
                expect(')', "',' or ')' in the shape tuple");
                break;
            }
        }
        // "(3)" is the integer 3 in Python, not a tuple; numpy never writes it.
        if (dims.size() == 1 && !trailing_comma) error("a one-element shape needs a trailing comma, as in (3,)");
        return dims;
    }
    std::uint64_t integer() {
        skip_ws();
        if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9')
            error("expected a non-negative integer dimension");
        std::uint64_t v = 0;
        while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
            const auto digit = static_cast<std::uint64_t>(s_[pos_] - '0');
            if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) error("dimension too large");
            v = v * 10 + digit;
            ++pos_;
        }
        return v;
    }
    bool boolean() {
        skip_ws();
        if (s_.substr(pos_, 4) == "True") return pos_ += 4, true;
        if (s_.substr(pos_, 5) == "False") return pos_ += 5, false;
        error("expected True or False for 'fortran_order'");
    }
    std::string string_literal(const char* what) {
        skip_ws();
        if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) error(std::string("expected ") + what);
        const char quote = s_[pos_++];
        const std::size_t start = pos_;
        while (pos_ < s_.size() && s_[pos_] != quote) {
            // Escapes never occur in the keys and dtypes numpy writes; refusing them keeps
            // this parser small.
            if (s_[pos_] == '\\' || s_[pos_] == '\n') error("unsupported character in a string");
            ++pos_;
        }
        if (pos_ >= s_.size()) error("unterminated string");
        return std::string(s_.substr(start, pos_++ - start));
    }

    void skip_ws() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
    }
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    bool consume(char c) {
        skip_ws();
        if (peek() == c && pos_ < s_.size()) return ++pos_, true;
        return false;
    }
    void expect(char c, const char* what) {
        if (!consume(c)) error(std::string("expected ") + what);
    }
    [[noreturn]] void error(const std::string& what) const {
        // Show the header and the text at the error without numpy's padding.
        const auto trim = [](std::string_view v) {
            while (!v.empty() && (v.back() == ' ' || v.back() == '\n')) v.remove_suffix(1);
            return v;
        };
        const std::string_view next = trim(s_.substr(std::min(pos_, s_.size()), 10));
        const std::string found = next.empty() ? "the end" : "'" + printable(next, 10) + "'";
        where_.fail("malformed NPY header \"", printable(trim(s_)), "\": ", what, " at byte ", pos_, ", found ", found);
    }

    std::string_view s_;
    std::size_t pos_ = 0;
    const Where& where_;
};

template <Real T>
Tensor<T> read_npy(ByteSource& src, const Where& where) {
    const std::uint64_t size = src.size();
    std::array<std::byte, 12> pre{};
    src.read(0, pre.data(), static_cast<std::size_t>(std::min<std::uint64_t>(size, pre.size())));
    const std::string_view pre_text(reinterpret_cast<const char*>(pre.data()),
                                    static_cast<std::size_t>(std::min<std::uint64_t>(size, pre.size())));
    if (size < 10 && kNpyMagic.starts_with(pre_text.substr(0, 6)))
        where.fail("truncated NPY file of ", size, " bytes; the fixed header alone takes 10");
    if (pre_text.substr(0, 6) != kNpyMagic)
        where.fail("not an NPY file: expected the magic string \\x93NUMPY, found \"", printable(pre_text.substr(0, 6)),
                   "\"");
    const int major = std::to_integer<int>(pre[6]), minor = std::to_integer<int>(pre[7]);
    if (!((major == 1 || major == 2 || major == 3) && minor == 0))
        where.fail("unsupported NPY format version ", major, ".", minor, "; expected 1.0, 2.0 or 3.0");
    // Version 1.0 stores the header length in 2 bytes; 2.0 and 3.0 (UTF-8 header) in 4.
    const std::uint64_t prefix = major == 1 ? 10 : 12;
    if (size < prefix) where.fail("truncated NPY file of ", size, " bytes; the fixed header alone takes ", prefix);
    const std::uint64_t header_len =
        major == 1 ? load_le<std::uint16_t>(pre.data() + 8) : load_le<std::uint32_t>(pre.data() + 8);
    if (header_len > kNpyMaxHeader)
        where.fail("NPY header length ", header_len, " exceeds the limit of ", kNpyMaxHeader, " bytes");
    if (header_len > size - prefix)
        where.fail("truncated NPY header: its length field says ", header_len, " bytes, but only ", size - prefix,
                   " follow");
    std::string header(static_cast<std::size_t>(header_len), '\0');
    src.read(prefix, reinterpret_cast<std::byte*>(header.data()), header.size());
    const NpyHeader h = NpyHeaderParser(header, where).parse();

    const Shape shape = checked_shape(h.dims, where, "");
    const auto numel = static_cast<std::uint64_t>(shape.numel());
    const std::uint64_t need = numel * dtype_size(h.dtype), have = size - prefix - header_len;
    if (have < need)
        where.fail("truncated data: shape ", shape.str(), " of ", dtype_name(h.dtype), " needs ", need,
                   " bytes after the header, found ", have);
    if (have > need)
        where.fail("unexpected data: shape ", shape.str(), " of ", dtype_name(h.dtype), " needs ", need,
                   " bytes after the header, found ", have);
    Tensor<T> t = Tensor<T>::empty(shape);
    read_elements(src, prefix + header_len, h.dtype, t.data(), static_cast<std::size_t>(numel));
    return t;
}

inline const char* npy_descr(DType d) { return d == DType::F32 ? "<f4" : d == DType::F64 ? "<f8" : "|u1"; }

template <class Sink, Real T>
void write_npy(Sink& sink, const Tensor<T>& tensor, DType dtype, const Where& where) {
    if (!tensor.defined()) where.fail("the tensor is undefined (default-constructed)");
    const Tensor<T> t = tensor.contiguous();  // C order, whatever the view's strides
    // Exactly numpy's own text, so that files compare equal byte for byte.
    std::string dict = std::string("{'descr': '") + npy_descr(dtype) + "', 'fortran_order': False, 'shape': (";
    for (int i = 0; i < t.rank(); ++i) dict += (i ? ", " : "") + std::to_string(t.dim(i));
    if (t.rank() == 1) dict += ",";
    dict += "), }";
    // numpy pads with spaces so that the data starts at a multiple of 64 bytes, then '\n'.
    const std::size_t unpadded = 10 + dict.size() + 1;
    dict.append((64 - unpadded % 64) % 64, ' ');
    dict += '\n';
    std::array<std::byte, 10> pre{};
    std::memcpy(pre.data(), kNpyMagic.data(), 6);
    pre[6] = std::byte{1};
    pre[7] = std::byte{0};
    store_le(pre.data() + 8, static_cast<std::uint16_t>(dict.size()));  // < 200 bytes for rank <= 4
    sink.write(pre.data(), pre.size());
    sink.write(dict);
    write_elements(sink, t.data(), static_cast<std::size_t>(t.numel()), dtype, where, "");
}

}  // namespace io_detail

/// Reads an .npy file of float32, float64 or uint8 values into a Tensor<T>, converting.
template <Real T>
Tensor<T> load_npy(const std::filesystem::path& path) {
    const io_detail::Where where{"load_npy", path.string()};
    io_detail::FileSource src(path, where);
    return io_detail::read_npy<T>(src, where);
}

/// The same from the bytes of an .npy file in memory; `label` names it in error messages.
template <Real T>
Tensor<T> npy_from_bytes(std::span<const std::byte> bytes, std::string_view label = "<memory>") {
    const io_detail::Where where{"load_npy", std::string(label)};
    io_detail::MemorySource src(bytes, where);
    return io_detail::read_npy<T>(src, where);
}

/// Writes `tensor` (any layout; stored in C order) as an .npy file of `dtype`, atomically.
template <Real T>
void save_npy(const std::filesystem::path& path, const Tensor<T>& tensor, DType dtype = dtype_of<T>) {
    const io_detail::Where where{"save_npy", path.string()};
    if (!tensor.defined()) where.fail("the tensor is undefined (default-constructed)");
    write_file_atomic(path, [&](AtomicWriter& w) { io_detail::write_npy(w, tensor, dtype, where); }, "save_npy");
}

/// The bytes of the .npy file save_npy would write.
template <Real T>
std::vector<std::byte> npy_to_bytes(const Tensor<T>& tensor, DType dtype = dtype_of<T>) {
    io_detail::VectorSink sink;
    io_detail::write_npy(sink, tensor, dtype, io_detail::Where{"npy_to_bytes", "<memory>"});
    return std::move(sink.bytes);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_NPY_INSTANCES(X, T) \
    X template Tensor<T> load_npy<T>(const std::filesystem::path&); \
    X template Tensor<T> npy_from_bytes<T>(std::span<const std::byte>, std::string_view); \
    X template void save_npy<T>(const std::filesystem::path&, const Tensor<T>&, DType); \
    X template std::vector<std::byte> npy_to_bytes<T>(const Tensor<T>&, DType);
EMBER_EXTERN_INSTANCES(EMBER_NPY_INSTANCES)

}  // namespace ember
