#pragma once
/// \file
/// Shape of a tensor (rank 0 to 4, row-major, N C H W) and NumPy broadcasting rules.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <span>
#include <string>

#include "ember/core/error.hpp"

namespace ember {

/// The largest tensor rank ember supports.
inline constexpr int kMaxRank = 4;
/// Element counts, dimensions, strides and offsets (signed, as in PyTorch).
using Index = std::int64_t;

/// The dimensions of a tensor: rank 0 (a scalar) to kMaxRank, outermost first.
class Shape {
public:
    /// A rank-0 shape (a scalar).
    Shape() = default;
    /// A shape from its dimensions, e.g.\ `Shape{64, 784}`.
    Shape(std::initializer_list<Index> dims) { assign(dims.begin(), dims.size()); }
    /// A shape from a span of dimensions.
    explicit Shape(std::span<const Index> dims) { assign(dims.data(), dims.size()); }

    /// Number of dimensions.
    int rank() const { return rank_; }
    /// Dimension `i` (0 <= i < rank()).
    Index operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
    /// Dimension `i`, writable.
    Index& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }
    /// Negative axes count from the end, as in NumPy.
    Index dim(int axis) const { return (*this)[normalize_axis(axis, "shape")]; }
    /// Number of elements: the product of the dimensions (1 for rank 0).
    Index numel() const {
        Index n = 1;
        for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
        return n;
    }
    /// First dimension, for range-for over the dimensions.
    const Index* begin() const { return dims_.data(); }
    /// One past the last dimension.
    const Index* end() const { return dims_.data() + rank_; }

    /// Axis `axis` as an index in [0, rank()), negative counting from the end; throws Error
    /// naming `op` when out of range.
    int normalize_axis(int axis, const char* op) const {
        int a = axis < 0 ? axis + rank_ : axis;
        EMBER_CHECK(a >= 0 && a < rank_, op, "axis ", axis, " out of range for shape ", str());
        return a;
    }

    /// Row-major strides (in elements) of a contiguous tensor of this shape.
    std::array<Index, kMaxRank> contiguous_strides() const {
        std::array<Index, kMaxRank> s{};
        Index acc = 1;
        for (int i = rank_ - 1; i >= 0; --i) {
            s[static_cast<std::size_t>(i)] = acc;
            acc *= dims_[static_cast<std::size_t>(i)];
        }
        return s;
    }

    /// The dimensions as text, e.g.\ `[64,784]`.
    std::string str() const {
        std::string s = "[";
        for (int i = 0; i < rank_; ++i) {
            if (i) s += ",";
            s += std::to_string(dims_[static_cast<std::size_t>(i)]);
        }
        return s + "]";
    }

    /// Equal rank and dimensions.
    friend bool operator==(const Shape& a, const Shape& b) {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a[i] != b[i]) return false;
        return true;
    }
    /// Writes str().
    friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

private:
    void assign(const Index* d, std::size_t n) {
        EMBER_CHECK(n <= static_cast<std::size_t>(kMaxRank), "shape", "rank ", n,
                    " exceeds the maximum rank ", kMaxRank);
        rank_ = static_cast<int>(n);
        Index total = 1;
        for (std::size_t i = 0; i < n; ++i) {
            if (d[i] > 0) {
                EMBER_CHECK(total <= std::numeric_limits<Index>::max() / d[i], "shape", "too many elements in a shape of rank ", n);
                total *= d[i];
            }
            // -1 is allowed as reshape's "infer this dimension"; tensors reject it.
            EMBER_CHECK(d[i] >= -1, "shape", "negative dimension ", d[i]);
            dims_[i] = d[i];
        }
    }
    std::array<Index, kMaxRank> dims_{};
    int rank_ = 0;
};

/// NumPy broadcasting: align trailing dimensions; each pair must be equal or contain a 1.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
    int r = a.rank() > b.rank() ? a.rank() : b.rank();
    std::array<Index, kMaxRank> out{};
    for (int i = 0; i < r; ++i) {
        int ia = a.rank() - r + i, ib = b.rank() - r + i;
        Index da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        EMBER_CHECK(da == db || da == 1 || db == 1, op, "shapes ", a.str(), " and ", b.str(),
                    " cannot be broadcast together");
        out[static_cast<std::size_t>(i)] = da == 1 ? db : da;
    }
    return Shape(std::span<const Index>(out.data(), static_cast<std::size_t>(r)));
}

}  // namespace ember
