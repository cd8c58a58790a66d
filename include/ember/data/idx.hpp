#pragma once
/// \file
/// The IDX format of MNIST and Fashion-MNIST (and any IDX file), plain or gzip-compressed.
/// Layout: two zero bytes, a type code, the number of dimensions d, then d big-endian
/// 32-bit sizes, then the data, big-endian, row-major. Everything is validated before any
/// allocation: magic, type, dimensions (ember tensors hold up to 4) and the exact data
/// size, so a truncated, corrupted or mismatched file fails with a message, never a crash.
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <span>
#include <string>
#include <vector>

#include "ember/core/tensor.hpp"

namespace ember {

/// An array read from an IDX file (the format of MNIST), still in the file's encoding.
struct IdxArray {
    std::uint8_t type = 0;           ///< 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
    std::vector<Index> dims;         ///< at least one, at most kMaxRank
    std::vector<std::uint8_t> data;  ///< raw big-endian payload

    /// Bytes per element of `type`.
    std::size_t element_size() const;
    /// Number of elements: the product of the dimensions.
    Index numel() const {
        Index n = 1;
        for (Index d : dims) n *= d;
        return n;
    }
    /// The values converted to T, as a tensor of shape `dims`.
    template <Real T>
    Tensor<T> to_tensor() const;
};

namespace detail {

inline std::size_t idx_element_size(std::uint8_t type) {
    switch (type) {
        case 0x08: case 0x09: return 1;
        case 0x0B: return 2;
        case 0x0C: case 0x0D: return 4;
        case 0x0E: return 8;
        default: return 0;
    }
}

// Largest payload we agree to allocate (the MNIST training images are 47 MB).
inline constexpr std::uint64_t kIdxMaxBytes = std::uint64_t{4} << 30;

inline std::uint32_t read_be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

// Validates the 4-byte magic and returns {type, number of dimensions}.
inline std::pair<std::uint8_t, int> idx_magic(const std::uint8_t* m, const std::string& where) {
    EMBER_CHECK(m[0] == 0 && m[1] == 0, "read_idx", where, ": not an IDX file (magic bytes ",
                static_cast<int>(m[0]), ",", static_cast<int>(m[1]), ", expected 0,0)");
    EMBER_CHECK(idx_element_size(m[2]) != 0, "read_idx", where, ": unknown element type 0x", std::hex,
                static_cast<int>(m[2]), std::dec, " (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)");
    EMBER_CHECK(m[3] >= 1 && m[3] <= kMaxRank, "read_idx", where, ": ", static_cast<int>(m[3]),
                " dimensions; ember tensors hold 1 to ", kMaxRank);
    return {m[2], m[3]};
}

// Reads the dimension block and returns the expected payload size in bytes.
inline std::uint64_t idx_dims(IdxArray& a, const std::uint8_t* p, int nd, const std::string& where) {
    std::uint64_t count = 1;
    for (int i = 0; i < nd; ++i) {
        const std::uint32_t d = read_be32(p + 4 * i);
        EMBER_CHECK(d <= 0x7fffffffu, "read_idx", where, ": dimension ", i, " is ", d, ", too large");
        a.dims.push_back(static_cast<Index>(d));
        count *= d;
        EMBER_CHECK(count * idx_element_size(a.type) <= kIdxMaxBytes, "read_idx", where,
                    ": dimensions describe more than ", kIdxMaxBytes, " bytes of data");
    }
    return count * idx_element_size(a.type);
}

}  // namespace detail

inline std::size_t IdxArray::element_size() const { return detail::idx_element_size(type); }

/// Parses an IDX file held in memory (uncompressed). `where` names it in errors.
inline IdxArray parse_idx(std::span<const std::uint8_t> bytes, const std::string& where = "<memory>") {
    EMBER_CHECK(bytes.size() >= 4, "read_idx", where, ": file is ", bytes.size(), " bytes, shorter than the 4-byte header (truncated)");
    IdxArray a;
    const auto [type, nd] = detail::idx_magic(bytes.data(), where);
    a.type = type;
    const std::size_t header = 4 + 4 * static_cast<std::size_t>(nd);
    EMBER_CHECK(bytes.size() >= header, "read_idx", where, ": truncated header: ", nd, " dimensions need ", header,
                " bytes, file has ", bytes.size());
    const std::uint64_t expected = detail::idx_dims(a, bytes.data() + 4, nd, where);
    const std::uint64_t have = bytes.size() - header;
    EMBER_CHECK(have == expected, "read_idx", where, ": dimensions [", a.dims.size() ? std::to_string(a.dims[0]) : "",
                a.dims.size() > 1 ? ",..." : "", "] need ", expected, " data bytes but the file has ", have,
                have < expected ? " (truncated)" : " (trailing bytes)");
    a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
    return a;
}

/// Reads an IDX file from disk; gzip-compressed files (.gz or not) are decompressed on the
/// fly. The size the header claims is checked against the file before memory is taken for
/// it: exactly, for a plain file; for a compressed one against the most a deflate stream of
/// the file's size can hold, and the data are then read in bounded steps, so a damaged
/// header never allocates more than the file can fill.
inline IdxArray read_idx(const std::string& path) {
    std::error_code ec;
    const std::uint64_t file_size = std::filesystem::file_size(path, ec);
    EMBER_CHECK(!ec, "read_idx", path, ": cannot open file (", ec.message(), ")");
    gzFile f = gzopen(path.c_str(), "rb");
    EMBER_CHECK(f != nullptr, "read_idx", path, ": cannot open file");
    struct Closer {
        gzFile f;
        ~Closer() { gzclose(f); }
    } closer{f};
    // gzread's error, as a message: a gzip stream cut short, or one whose data or check
    // value is damaged.
    auto stream_error = [&](const char* what) {
        int code = 0;
        const char* msg = gzerror(f, &code);
        if (code == Z_BUF_ERROR) detail::fail("read_idx", path, ": file ends early while reading ", what, " (truncated)");
        detail::fail("read_idx", path, ": corrupt gzip stream while reading ", what, " (", msg ? msg : "zlib error", ")");
    };
    auto read_exact = [&](void* dst, std::uint64_t n, const char* what) {
        auto* out = static_cast<std::uint8_t*>(dst);
        while (n > 0) {
            const unsigned chunk = static_cast<unsigned>(std::min<std::uint64_t>(n, 1u << 30));
            const int got = gzread(f, out, chunk);
            if (got < 0) stream_error(what);
            EMBER_CHECK(got > 0, "read_idx", path, ": file ends early while reading ", what, " (truncated)");
            out += got;
            n -= static_cast<std::uint64_t>(got);
        }
    };
    std::uint8_t magic[4];
    read_exact(magic, 4, "the header");
    IdxArray a;
    const auto [type, nd] = detail::idx_magic(magic, path);
    a.type = type;
    std::uint8_t dims[4 * kMaxRank];
    read_exact(dims, 4 * static_cast<std::uint64_t>(nd), "the dimensions");
    const std::uint64_t expected = detail::idx_dims(a, dims, nd, path);
    const std::uint64_t header = 4 + 4 * static_cast<std::uint64_t>(nd);
    if (gzdirect(f)) {
        const std::uint64_t have = file_size - header;
        EMBER_CHECK(have == expected, "read_idx", path, ": the dimensions need ", expected,
                    " data bytes but the file has ", have, have < expected ? " (truncated)" : " (trailing bytes)");
    } else {
        // deflate compresses at most about 1032:1, so a stream of this size cannot hold more.
        constexpr std::uint64_t kMaxRatio = 1032;
        EMBER_CHECK(expected <= file_size * kMaxRatio, "read_idx", path, ": the dimensions need ", expected,
                    " data bytes, more than a gzip file of ", file_size, " bytes can hold (truncated or damaged)");
    }
    constexpr std::uint64_t kStep = std::uint64_t{64} << 20;
    for (std::uint64_t done = 0; done < expected;) {
        const std::uint64_t n = std::min(kStep, expected - done);
        a.data.resize(static_cast<std::size_t>(done + n));
        read_exact(a.data.data() + done, n, "the data");
        done += n;
    }
    std::uint8_t extra;
    const int more = gzread(f, &extra, 1);  // also makes zlib verify the gzip trailer's CRC
    if (more < 0) stream_error("the end of the data");
    EMBER_CHECK(more == 0, "read_idx", path, ": trailing bytes after the ", expected, " data bytes the dimensions describe");
    return a;
}

template <Real T>
Tensor<T> IdxArray::to_tensor() const {
    Tensor<T> t = Tensor<T>::empty(Shape(std::span<const Index>(dims)));
    T* out = t.data();
    const std::uint8_t* p = data.data();
    const Index n = numel();
    auto be = [&](Index i, std::size_t size) {
        std::uint64_t v = 0;
        for (std::size_t b = 0; b < size; ++b) v = (v << 8) | p[static_cast<std::size_t>(i) * size + b];
        return v;
    };
    for (Index i = 0; i < n; ++i) {
        switch (type) {
            case 0x08: out[i] = static_cast<T>(p[i]); break;
            case 0x09: out[i] = static_cast<T>(static_cast<std::int8_t>(p[i])); break;
            case 0x0B: out[i] = static_cast<T>(static_cast<std::int16_t>(be(i, 2))); break;
            case 0x0C: out[i] = static_cast<T>(static_cast<std::int32_t>(be(i, 4))); break;
            case 0x0D: {
                const std::uint32_t bits = static_cast<std::uint32_t>(be(i, 4));
                float f;
                std::memcpy(&f, &bits, 4);
                out[i] = static_cast<T>(f);
                break;
            }
            default: {
                const std::uint64_t bits = be(i, 8);
                double d;
                std::memcpy(&d, &bits, 8);
                out[i] = static_cast<T>(d);
            }
        }
    }
    return t;
}

/// Writes an unsigned-byte IDX file (plain, or gzip-compressed when `gzip`), e.g.\ for tests.
inline void write_idx_u8(const std::string& path, const std::vector<Index>& dims, std::span<const std::uint8_t> values,
                         bool gzip = false) {
    std::vector<std::uint8_t> bytes = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
    for (Index d : dims)
        for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<std::uint8_t>((static_cast<std::uint32_t>(d) >> s) & 0xff));
    bytes.insert(bytes.end(), values.begin(), values.end());
    gzFile f = gzopen(path.c_str(), gzip ? "wb" : "wbT");  // T: write uncompressed
    EMBER_CHECK(f != nullptr, "write_idx", path, ": cannot create file");
    const int wrote = gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    const int closed = gzclose(f);
    EMBER_CHECK(wrote == static_cast<int>(bytes.size()) && closed == Z_OK, "write_idx", path, ": write failed");
}

}  // namespace ember
