#pragma once
/// \file
/// Shape operations on Var: reshape, transpose, slice, concat, and gathering by index
/// (index_select for rows, take/put_add for flat indices as pooling and upsampling use).
/// Each backward is another op of this file, so all are differentiable to any order.
#include <memory>
#include <numeric>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/ops/broadcast.hpp"

namespace ember {

/// Same values, new shape (one dimension may be -1). A view when the input's layout allows
/// (Tensor::view_strides), else a contiguous copy: a convolution's output stored with the
/// samples varying fastest, flattened to [N, C·H·W], stays a view that linear() reads as a
/// column-major matrix, and its gradient comes back in that layout.
template <Real T>
Var<T> reshape(const Var<T>& x, const Shape& s) {
    if (x.shape() == s) return x;
    const Shape from = x.shape();
    const Tensor<T>& v = x.value();
    return record("reshape", v.view_strides(s) ? v.reshape(s) : v.contiguous().reshape(s), {x},
                  [from](const Var<T>& g, std::span<const bool>) { return std::vector<Var<T>>{reshape(g, from)}; });
}

/// Flattens all axes from `start` on into one.
template <Real T>
Var<T> flatten(const Var<T>& x, int start = 1) {
    const Shape& s = x.shape();
    start = s.normalize_axis(start, "flatten");
    std::vector<Index> d(s.begin(), s.begin() + start);
    d.push_back(-1);
    return reshape(x, Shape(std::span<const Index>(d)));
}

/// Swaps two axes (a view, no copy).
template <Real T>
Var<T> transpose(const Var<T>& x, int a0 = -2, int a1 = -1) {
    return record("transpose", x.value().transpose(a0, a1), {x}, [a0, a1](const Var<T>& g, std::span<const bool>) {
        return std::vector<Var<T>>{transpose(g, a0, a1)};
    });
}

template <Real T>
Var<T> slice(const Var<T>& x, int axis, Index start, Index end, Index step = 1);

namespace detail {
// The adjoint of slice: zeros of `shape` with g written into the sliced positions.
template <Real T>
Var<T> unslice(const Var<T>& g, const Shape& shape, int axis, Index start, Index end, Index step) {
    Tensor<T> out = Tensor<T>::zeros(shape);
    Tensor<T> view = out.slice(axis, start, end, step);
    const Tensor<T> gv = g.value();
    for (Index i = 0; i < gv.numel(); ++i) view.data()[view.offset_of(i)] = gv.flat(i);
    return record("unslice", out, {g}, [=](const Var<T>& gg, std::span<const bool>) {
        return std::vector<Var<T>>{slice(gg, axis, start, end, step)};
    });
}
}  // namespace detail

/// Elements [start, end) with `step` along `axis` (a view, no copy).
template <Real T>
Var<T> slice(const Var<T>& x, int axis, Index start, Index end, Index step) {
    const Shape from = x.shape();
    const int a = from.normalize_axis(axis, "slice");
    const Index n = from[a];
    if (start < 0) start += n;
    if (end < 0) end += n;
    Tensor<T> v = x.value().slice(a, start, end, step);
    return record("slice", v, {x}, [=](const Var<T>& g, std::span<const bool>) {
        return std::vector<Var<T>>{detail::unslice(g, from, a, start, end, step)};
    });
}

/// Joins tensors along `axis`; all other dimensions must agree.
template <Real T>
Var<T> concat(const std::vector<Var<T>>& xs, int axis = 0) {
    EMBER_CHECK(!xs.empty(), "concat", "needs at least one tensor");
    const Shape& s0 = xs[0].shape();
    const int a = s0.normalize_axis(axis, "concat");
    Shape out = s0;
    out[a] = 0;
    for (const auto& x : xs) {
        bool ok = x.rank() == s0.rank();
        for (int d = 0; ok && d < s0.rank(); ++d) ok = d == a || x.shape()[d] == s0[d];
        EMBER_CHECK(ok, "concat", "shape ", x.shape().str(), " does not match ", s0.str(), " outside axis ", a);
        out[a] += x.shape()[a];
    }
    Tensor<T> v = Tensor<T>::empty(out);
    // Each input is `outer` blocks of shape[a]·inner contiguous elements; its blocks go to
    // offsets starts·inner within the output's blocks of out[a]·inner.
    Index outer = 1, inner = 1;
    for (int d = 0; d < a; ++d) outer *= out[d];
    for (int d = a + 1; d < out.rank(); ++d) inner *= out[d];
    std::vector<Index> starts;
    Index at = 0;
    for (const auto& x : xs) {
        starts.push_back(at);
        const Tensor<T> src = x.value().contiguous();
        const Index block = x.shape()[a] * inner;
        for (Index o = 0; o < outer; ++o)
            std::copy_n(src.data() + o * block, block, v.data() + o * out[a] * inner + at * inner);
        at += x.shape()[a];
    }
    auto backward = [=](const Var<T>& g, std::span<const bool> need) {
        std::vector<Var<T>> gs(xs.size());
        for (std::size_t i = 0; i < xs.size(); ++i)
            if (need[i]) gs[i] = slice(g, a, starts[i], starts[i] + xs[i].shape()[a]);
        return gs;
    };
    Var<T> result(v);
    if (!grad_enabled()) return result;
    bool any = false;
    for (const auto& x : xs) any = any || x.requires_grad();
    if (!any) return result;
    auto node = std::make_shared<detail::FnNode<T, decltype(backward)>>("concat", backward);
    for (const auto& x : xs) node->inputs.push_back(x.impl());
    result.impl()->fn = node;
    result.impl()->requires_grad = true;
    return result;
}

/// A shared list of flat indices, as take() and put_add() use it.
using IndexList = std::shared_ptr<const std::vector<Index>>;

template <Real T>
Var<T> put_add(const Var<T>& g, IndexList idx, const Shape& shape);

/// out.flat(i) = x.flat(idx[i]), shaped `shape`. The gather behind pooling and upsampling.
template <Real T>
Var<T> take(const Var<T>& x, IndexList idx, const Shape& shape) {
    EMBER_CHECK(static_cast<Index>(idx->size()) == shape.numel(), "take", "index count ", idx->size(),
                " does not match output shape ", shape.str());
    const Tensor<T> xc = x.value().contiguous();
    Tensor<T> out = Tensor<T>::empty(shape);
    const Index n = xc.numel();
    const T* src = xc.data();
    T* dst = out.data();
    for (std::size_t i = 0; i < idx->size(); ++i) {
        const Index j = (*idx)[i];
        EMBER_CHECK(j >= 0 && j < n, "take", "index ", j, " out of range for ", n, " elements");
        dst[i] = src[j];
    }
    const Shape from = x.shape();
    return record("take", out, {x}, [=](const Var<T>& gg, std::span<const bool>) {
        return std::vector<Var<T>>{put_add(gg, idx, from)};
    });
}

/// The adjoint of take: zeros of `shape`, then out.flat(idx[i]) += g.flat(i).
template <Real T>
Var<T> put_add(const Var<T>& g, IndexList idx, const Shape& shape) {
    Tensor<T> out = Tensor<T>::zeros(shape);
    const Tensor<T> gc = g.value().contiguous();
    for (std::size_t i = 0; i < idx->size(); ++i) out.data()[(*idx)[i]] += gc.data()[i];
    const Shape from = g.shape();
    return record("put_add", out, {g}, [=](const Var<T>& gg, std::span<const bool>) {
        return std::vector<Var<T>>{take(gg, idx, from)};
    });
}

/// Rows of x (axis 0) in the order of `rows`, e.g.\ a permutation or replay-buffer picks.
template <Real T>
Var<T> index_select(const Var<T>& x, const std::vector<Index>& rows) {
    EMBER_CHECK(x.rank() >= 1, "index_select", "needs rank >= 1, shape is ", x.shape().str());
    const Index n = x.shape()[0], row = n ? x.numel() / n : 0;
    auto idx = std::make_shared<std::vector<Index>>();
    idx->reserve(rows.size() * static_cast<std::size_t>(row));
    for (Index r : rows) {
        EMBER_CHECK(r >= 0 && r < n, "index_select", "row ", r, " out of range for shape ", x.shape().str());
        for (Index j = 0; j < row; ++j) idx->push_back(r * row + j);
    }
    Shape out = x.shape();
    out[0] = static_cast<Index>(rows.size());
    return take(x, idx, out);
}

/// One-hot rows: out[i, labels[i]] = 1.
template <Real T>
Tensor<T> one_hot(const std::vector<Index>& labels, Index classes) {
    Tensor<T> out = Tensor<T>::zeros(Shape{static_cast<Index>(labels.size()), classes});
    for (std::size_t i = 0; i < labels.size(); ++i) {
        EMBER_CHECK(labels[i] >= 0 && labels[i] < classes, "one_hot", "label ", labels[i], " out of range [0,",
                    classes, ")");
        out.data()[static_cast<Index>(i) * classes + labels[i]] = T(1);
    }
    return out;
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_SHAPE_INSTANCES(X, T) \
    X template Var<T> reshape<T>(const Var<T>&, const Shape&); \
    X template Var<T> flatten<T>(const Var<T>&, int); \
    X template Var<T> transpose<T>(const Var<T>&, int, int); \
    X template Var<T> slice<T>(const Var<T>&, int, Index, Index, Index); \
    X template Var<T> concat<T>(const std::vector<Var<T>>&, int); \
    X template Var<T> take<T>(const Var<T>&, IndexList, const Shape&); \
    X template Var<T> put_add<T>(const Var<T>&, IndexList, const Shape&); \
    X template Var<T> index_select<T>(const Var<T>&, const std::vector<Index>&); \
    X template Tensor<T> one_hot<T>(const std::vector<Index>&, Index);
EMBER_EXTERN_INSTANCES(EMBER_SHAPE_INSTANCES)

}  // namespace ember
