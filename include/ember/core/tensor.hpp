#pragma once
/// \file
/// Tensor<T>: a rank 0-4 row-major array of float or double in a 64-byte aligned, pooled
/// buffer. Copies share the buffer (like PyTorch); reshape, slice, transpose and expand
/// are views without copies; contiguous() copies only when the layout requires it.
#include <algorithm>
#include <array>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/core/shape.hpp"
#include "ember/core/small_alloc.hpp"
#include "ember/core/storage.hpp"
#include "ember/core/transpose.hpp"

namespace ember {

/// The scalar types ember computes in: float for training, double for gradient checks.
template <class T>
concept Real = std::same_as<T, float> || std::same_as<T, double>;

/// Per-axis strides in elements (only the first rank() entries are used).
using Strides = std::array<Index, kMaxRank>;

namespace expr {
/// An expression template node (see ember/expr/expr.hpp); tensors can be built from one.
template <class E>
concept Expression = requires { typename std::remove_cvref_t<E>::is_expression_tag; };
}  // namespace expr

/// A rank 0-4 array of float or double: a shared handle to a pooled, 64-byte aligned buffer
/// plus a shape and strides. Copies share the buffer; reshape, slice, transpose and expand
/// are views.
template <Real T>
class Tensor {
public:
    /// The element type.
    using value_type = T;

    Tensor() = default;  ///< an empty (rank 0, no buffer) tensor; defined() is false

    /// A new uninitialised contiguous tensor of `shape`.
    static Tensor empty(const Shape& shape) {
        for (int i = 0; i < shape.rank(); ++i)
            EMBER_CHECK(shape[i] >= 0, "Tensor", "negative dimension in shape ", shape.str());
        Tensor t;
        t.storage_ = allocate(shape);  // first: it checks that the sizes do not overflow
        t.shape_ = shape;
        t.strides_ = shape.contiguous_strides();
        t.data_ = t.storage_->data();
        return t;
    }
    /// A new contiguous tensor of `shape` with every element `value`.
    static Tensor full(const Shape& shape, T value) {
        Tensor t = empty(shape);
        std::fill_n(t.data_, shape.numel(), value);
        return t;
    }
    /// A new uninitialised tensor shaped like `like` and, when `like` is dense, laid out like
    /// it: an elementwise result keeps its operands' layout.
    static Tensor empty_like(const Tensor& like) {
        Tensor t = empty(like.shape_);
        if (like.is_dense()) t.strides_ = like.strides_;
        return t;
    }
    /// A new uninitialised tensor of `shape` whose axes lie in memory in the order `order`,
    /// outermost first: {1, 2, 3, 0} stores [N, C, H, W] as [C, H, W, N]. Any dense layout;
    /// elementwise work, reductions and contiguous() follow it from the strides alone.
    static Tensor empty_in_order(const Shape& shape, std::span<const int> order) {
        EMBER_CHECK(static_cast<int>(order.size()) == shape.rank(), "Tensor::empty_in_order", "an order of ",
                    order.size(), " axes for shape ", shape.str());
        std::array<bool, kMaxRank> seen{};
        for (int a : order) {
            EMBER_CHECK(a >= 0 && a < shape.rank() && !seen[static_cast<std::size_t>(a)], "Tensor::empty_in_order",
                        "the order is not a permutation of the axes of ", shape.str());
            seen[static_cast<std::size_t>(a)] = true;
        }
        Tensor t = empty(shape);
        t.strides_ = strides_in_order(shape, order);
        return t;
    }
    /// The strides of the dense layout of `shape` whose axes lie in memory in the order
    /// `order` (a permutation of the axes), outermost first.
    static Strides strides_in_order(const Shape& shape, std::span<const int> order) {
        Strides st{};
        Index stride = 1;
        for (std::size_t i = order.size(); i-- > 0;) {
            st[static_cast<std::size_t>(order[i])] = stride;
            stride *= shape[order[i]];
        }
        return st;
    }
    /// True when the tensor is laid out as empty_in_order(shape(), order) would lay it out
    /// (axes of size 1 may have any stride).
    bool is_in_order(std::span<const int> order) const {
        if (static_cast<int>(order.size()) != rank()) return false;
        const Strides expected = strides_in_order(shape_, order);
        for (int d = 0; d < rank(); ++d)
            if (shape_[d] != 1 && strides_[static_cast<std::size_t>(d)] != expected[static_cast<std::size_t>(d)]) return false;
        return true;
    }
    /// A new tensor of `shape` filled with 0.
    static Tensor zeros(const Shape& shape) { return full(shape, T(0)); }
    /// A new tensor of `shape` filled with 1.
    static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
    /// A rank-0 tensor holding `value`.
    static Tensor scalar(T value) { return full(Shape{}, value); }
    /// A new tensor of `shape` with `values` in row-major order (as many as shape.numel()).
    static Tensor from(const Shape& shape, std::initializer_list<T> values) {
        return from(shape, std::vector<T>(values));
    }
    /// A new tensor of `shape` with `values` in row-major order (as many as shape.numel()).
    static Tensor from(const Shape& shape, const std::vector<T>& values) {
        EMBER_CHECK(static_cast<Index>(values.size()) == shape.numel(), "Tensor::from", "shape ",
                    shape.str(), " needs ", shape.numel(), " values, got ", values.size());
        Tensor t = empty(shape);
        std::copy(values.begin(), values.end(), t.data_);
        return t;
    }
    /// [0, 1, ..., n-1]
    static Tensor arange(Index n) {
        Tensor t = empty(Shape{n});
        for (Index i = 0; i < n; ++i) t.data_[i] = static_cast<T>(i);
        return t;
    }

    /// Evaluates an expression template (ember/expr/expr.hpp) in one fused pass.
    template <expr::Expression E>
    Tensor(const E& e);  // NOLINT(google-explicit-constructor): expressions convert implicitly

    /// False only for a default-constructed tensor, which has no buffer.
    bool defined() const { return storage_ != nullptr; }
    /// The dimensions.
    const Shape& shape() const { return shape_; }
    /// The strides in elements, one per axis (0 along broadcast axes).
    const Strides& strides() const { return strides_; }
    /// Number of dimensions.
    int rank() const { return shape_.rank(); }
    /// Dimension `axis`; negative axes count from the end.
    Index dim(int axis) const { return shape_.dim(axis); }
    /// Number of elements.
    Index numel() const { return shape_.numel(); }
    /// Pointer to element 0 (the start of this view, not necessarily of the buffer).
    T* data() const { return data_; }
    /// The shared buffer.
    const std::shared_ptr<Storage<T>>& storage() const { return storage_; }
    /// True when both tensors view the same buffer.
    bool shares_storage_with(const Tensor& o) const { return storage_ && storage_ == o.storage_; }
    /// True when no other tensor shares this buffer, so it may be updated in place.
    bool unique() const { return storage_ && storage_.use_count() == 1; }

    /// True when the layout is row-major with no gaps (axes of size 1 may have any stride).
    bool is_contiguous() const {
        const Strides c = shape_.contiguous_strides();
        for (int i = 0; i < rank(); ++i)
            if (shape_[i] != 1 && strides_[static_cast<std::size_t>(i)] != c[static_cast<std::size_t>(i)]) return false;
        return true;
    }

    /// True when the elements exactly fill a span of the buffer, the axes in some order:
    /// contiguous, or a permutation of its axes (Tensor::empty_in_order).
    bool is_dense() const {
        if (numel() == 0) return is_contiguous();
        std::array<std::pair<Index, Index>, kMaxRank> axes{};  // (stride, size) of axes longer than 1
        std::size_t k = 0;
        for (int i = 0; i < rank(); ++i)
            if (shape_[i] != 1) axes[k++] = {strides_[static_cast<std::size_t>(i)], shape_[i]};
        for (std::size_t i = 1; i < k; ++i)  // by stride (insertion sort: at most 4 axes)
            for (std::size_t j = i; j > 0 && axes[j].first < axes[j - 1].first; --j) std::swap(axes[j], axes[j - 1]);
        Index expected = 1;
        for (std::size_t i = 0; i < k; ++i) {
            if (axes[i].first != expected) return false;
            expected *= axes[i].second;
        }
        return true;
    }
    /// A dense tensor's elements as one axis, in memory order (a view). Elementwise work on
    /// operands that share a dense layout runs over this.
    Tensor memory_order() const {
        EMBER_CHECK(is_dense(), "Tensor::memory_order", "the tensor of shape ", shape_.str(), " is not dense");
        Tensor t = *this;
        t.shape_ = Shape{numel()};
        t.strides_ = Strides{};
        t.strides_[0] = 1;
        return t;
    }

    /// Element access by multi-index (any layout).
    T& at(std::initializer_list<Index> idx) const {
        EMBER_CHECK(static_cast<int>(idx.size()) == rank(), "Tensor::at", "expected ", rank(),
                    " indices for shape ", shape_.str(), ", got ", idx.size());
        Index off = 0;
        int d = 0;
        for (Index i : idx) {
            EMBER_CHECK(i >= 0 && i < shape_[d], "Tensor::at", "index ", i, " out of range for axis ", d,
                        " of shape ", shape_.str());
            off += i * strides_[static_cast<std::size_t>(d++)];
        }
        return data_[off];
    }
    /// Element `i` in row-major order (any layout).
    T flat(Index i) const { return data_[offset_of(i)]; }
    /// The value of a one-element tensor; throws Error otherwise.
    T item() const {
        EMBER_CHECK(numel() == 1, "Tensor::item", "needs exactly one element, shape is ", shape_.str());
        return data_[0];
    }
    /// The elements in row-major order.
    std::vector<T> to_vector() const {
        std::vector<T> v(static_cast<std::size_t>(numel()));
        for (Index i = 0; i < numel(); ++i) v[static_cast<std::size_t>(i)] = flat(i);
        return v;
    }

    /// A contiguous tensor with the same values: *this when already contiguous, else a copy.
    Tensor contiguous() const {
        if (is_contiguous()) return *this;
        Tensor t = empty(shape_);
        copy_strided(t.data_);
        return t;
    }
    /// A contiguous copy with its own buffer.
    Tensor clone() const {
        Tensor t = empty(shape_);
        if (is_contiguous()) std::memcpy(t.data_, data_, sizeof(T) * static_cast<std::size_t>(numel()));
        else copy_strided(t.data_);
        return t;
    }
    /// Copies the values of `src` (same shape) into this tensor's buffer.
    void copy_from(const Tensor& src) const {
        EMBER_CHECK(src.shape() == shape_, "Tensor::copy_from", "shape ", src.shape().str(), " into ",
                    shape_.str());
        EMBER_CHECK(is_contiguous(), "Tensor::copy_from", "destination must be contiguous");
        if (src.is_contiguous()) std::memmove(data_, src.data_, sizeof(T) * static_cast<std::size_t>(numel()));
        else src.copy_strided(data_);
    }
    /// Sets every element to `value` (contiguous tensors only).
    void fill(T value) const {
        EMBER_CHECK(is_contiguous(), "Tensor::fill", "tensor must be contiguous");
        std::fill_n(data_, numel(), value);
    }

    // ---- views ---------------------------------------------------------------------
    /// Same buffer, new shape; one dimension may be -1. Needs a layout in which the new shape
    /// is a view (view_strides): any contiguous tensor, and some others.
    Tensor reshape(const Shape& requested) const {
        const Shape s = resolved_shape(requested);
        const std::optional<Strides> view = strides_viewing(s);
        EMBER_CHECK(view.has_value(), "reshape", "tensor of shape ", shape_.str(),
                    " cannot be viewed as ", s.str(), " in its layout; call contiguous() first");
        Tensor t = *this;
        t.shape_ = s;
        t.strides_ = *view;
        return t;
    }
    /// The strides under which `requested` (as many elements; one dimension may be -1) views
    /// this tensor's elements in row-major order without a copy, or none. Always for a
    /// contiguous tensor; for another layout when each run of axes that the new shape splits
    /// or merges is contiguous within itself: a [N, C, H, W] tensor stored as [C, H, W, N]
    /// flattens to [N, C·H·W] with strides (1, N).
    std::optional<Strides> view_strides(const Shape& requested) const { return strides_viewing(resolved_shape(requested)); }

    /// Elements [start, end) with `step` along `axis`, sharing the buffer.
    Tensor slice(int axis, Index start, Index end, Index step = 1) const {
        int a = shape_.normalize_axis(axis, "slice");
        const Index n = shape_[a];
        if (start < 0) start += n;
        if (end < 0) end += n;
        EMBER_CHECK(step > 0, "slice", "step must be positive, got ", step);
        EMBER_CHECK(0 <= start && start <= end && end <= n, "slice", "range [", start, ",", end,
                    ") out of bounds for axis ", a, " of shape ", shape_.str());
        Tensor t = *this;
        t.data_ = data_ + start * strides_[static_cast<std::size_t>(a)];
        t.shape_[a] = (end - start + step - 1) / step;
        t.strides_[static_cast<std::size_t>(a)] *= step;
        return t;
    }
    /// Swaps two axes (a view).
    Tensor transpose(int a0 = -2, int a1 = -1) const {
        int i = shape_.normalize_axis(a0, "transpose"), j = shape_.normalize_axis(a1, "transpose");
        Tensor t = *this;
        std::swap(t.shape_[i], t.shape_[j]);
        std::swap(t.strides_[static_cast<std::size_t>(i)], t.strides_[static_cast<std::size_t>(j)]);
        return t;
    }
    /// Broadcasts to `target` (NumPy rules) with zero strides: a view, no copy.
    Tensor expand(const Shape& target) const {
        Shape b = broadcast_shapes(shape_, target, "expand");
        EMBER_CHECK(b == target, "expand", "cannot expand ", shape_.str(), " to ", target.str());
        Tensor t = *this;
        t.shape_ = target;
        const int off = target.rank() - rank();
        for (int i = 0; i < target.rank(); ++i) {
            const int src = i - off;
            t.strides_[static_cast<std::size_t>(i)] =
                (src < 0 || shape_[src] == 1) ? 0 : strides_[static_cast<std::size_t>(src)];
        }
        return t;
    }

    /// Offset (in elements) of row-major element i.
    Index offset_of(Index i) const {
        Index off = 0;
        for (int d = rank() - 1; d >= 0; --d) {
            const Index n = shape_[d];
            off += (i % n) * strides_[static_cast<std::size_t>(d)];
            i /= n;
        }
        return off;
    }

private:
    // The buffer of a new tensor of `shape`. Out of memory is an ember::Error that says how
    // much was asked for, not a bare std::bad_alloc far from its cause.
    static std::shared_ptr<Storage<T>> allocate(const Shape& shape) {
        std::size_t numel = 1;
        bool fits = true;
        for (int i = 0; i < shape.rank(); ++i) {
            const auto d = static_cast<std::size_t>(shape[i]);
            if (d != 0 && numel > static_cast<std::size_t>(PTRDIFF_MAX) / sizeof(T) / d) fits = false;
            numel *= d;
        }
        EMBER_CHECK(fits, "Tensor", "shape ", shape.str(), " has more elements than memory can address");
        try {
            return detail::make_small_shared<Storage<T>>(numel);
        } catch (const std::bad_alloc&) {
            detail::fail("Tensor", "cannot allocate a tensor of shape ", shape.str(), ": ", numel * sizeof(T),
                         " bytes of ", sizeof(T) == 4 ? "float" : "double", " (out of memory)");
        }
    }

    // view_strides of a shape with no -1 and as many elements.
    std::optional<Strides> strides_viewing(const Shape& s) const {
        Strides out{};
        if (numel() == 0 || rank() == 0 || is_contiguous()) return s.contiguous_strides();
        // Walk this tensor's axes from the last, in chunks of axes that are contiguous with
        // one another; each chunk must be exactly covered by a run of the new shape's axes.
        int view_axis = s.rank() - 1;
        Index chunk_stride = strides_[static_cast<std::size_t>(rank() - 1)];
        Index chunk_size = 1, view_size = 1;
        for (int d = rank() - 1; d >= 0; --d) {
            chunk_size *= shape_[d];
            const bool chunk_ends =
                d == 0 || (shape_[d - 1] != 1 && strides_[static_cast<std::size_t>(d - 1)] != chunk_size * chunk_stride);
            if (!chunk_ends) continue;
            while (view_axis >= 0 && (view_size < chunk_size || s[view_axis] == 1)) {
                out[static_cast<std::size_t>(view_axis)] = view_size * chunk_stride;
                view_size *= s[view_axis];
                --view_axis;
            }
            if (view_size != chunk_size) return std::nullopt;
            if (d > 0) {
                chunk_stride = strides_[static_cast<std::size_t>(d - 1)];
                chunk_size = view_size = 1;
            }
        }
        if (view_axis != -1) return std::nullopt;
        return out;
    }

    // `requested` with its -1 (if any) resolved, checked to hold numel() elements.
    Shape resolved_shape(const Shape& requested) const {
        Shape s = requested;
        Index known = 1;
        int infer = -1;
        for (int i = 0; i < s.rank(); ++i) {
            if (s[i] == -1) {
                EMBER_CHECK(infer < 0, "reshape", "only one dimension may be -1 in ", s.str());
                infer = i;
            } else known *= s[i];
        }
        if (infer >= 0) {
            EMBER_CHECK(known > 0 && numel() % known == 0, "reshape", "cannot infer -1 reshaping ",
                        shape_.str(), " to ", s.str());
            s[infer] = numel() / known;
        }
        EMBER_CHECK(s.numel() == numel(), "reshape", "cannot reshape ", shape_.str(), " (", numel(),
                    " elements) to ", s.str());
        return s;
    }

    // When the memory holds this tensor as a transposed matrix (its first k axes varying fastest, in
    // order, the others outside them in order: [N, C, H, W] stored as [C, H, W, N] has k = 1),
    // the number of rows k's axes make, else 0.
    Index transposed_rows() const {
        if (!is_dense() || is_contiguous()) return 0;
        std::array<int, kMaxRank> order{};
        const auto r = static_cast<std::size_t>(rank());
        for (std::size_t k = 1; k < r; ++k) {
            for (std::size_t i = 0; i < r; ++i) order[i] = static_cast<int>((i + k) % r);  // axes k.., then 0..k-1
            if (!is_in_order(std::span<const int>(order.data(), r))) continue;
            Index rows = 1;
            for (std::size_t d = 0; d < k; ++d) rows *= shape_[static_cast<int>(d)];
            return rows;
        }
        return 0;
    }

    void copy_strided(T* out) const {
        const Index n = numel();
        if (rank() == 0) {
            if (n) out[0] = data_[0];
            return;
        }
        if (const Index rows = transposed_rows()) {  // [cols, rows] in memory, transposed to [rows, cols]
            const Index cols = numel() / rows;
            detail::transpose_matrix(data_, rows, cols, rows, out, cols);
            return;
        }
        // Walk rows of the last axis; the inner loop is a strided copy.
        const Index inner = shape_[rank() - 1], s = strides_[static_cast<std::size_t>(rank() - 1)];
        for (Index row = 0; row * inner < n; ++row) {
            const T* src = data_ + offset_of(row * inner);
            T* dst = out + row * inner;
            for (Index j = 0; j < inner; ++j) dst[j] = src[j * s];
        }
    }

    std::shared_ptr<Storage<T>> storage_;
    T* data_ = nullptr;
    Shape shape_;
    Strides strides_{};
};

}  // namespace ember
