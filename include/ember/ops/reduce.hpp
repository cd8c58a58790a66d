#pragma once
/// \file
/// Reductions over all elements, one axis or several (keepdim or not): sum, mean, max, min,
/// logsumexp, var, norm2; and argmax. Backwards are written with public ops; where a
/// backward reuses a forward value it recomputes it as a Var when gradients are being
/// recorded, so second derivatives stay exact.
#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/ops/shape.hpp"

namespace ember {

/// The axes a reduction runs over: all of them (the default, or std::nullopt), one
/// (`sum(x, 1)`; negative axes count from the end) or several (`sum(x, {1, 2, 3})`).
class Axes {
public:
    /// Every axis.
    Axes() = default;
    /// Every axis.
    Axes(std::nullopt_t) {}
    /// One axis.
    Axes(int axis) : count_(1) { axes_[0] = axis; }
    /// One axis, or every axis when empty.
    Axes(std::optional<int> axis) : count_(axis ? 1 : -1) {
        if (axis) axes_[0] = *axis;
    }
    /// Several axes, each at most once.
    Axes(std::initializer_list<int> axes) : count_(static_cast<int>(axes.size())) {
        EMBER_CHECK(axes.size() <= axes_.size(), "reduction", axes.size(), " axes given; tensors have at most ",
                    kMaxRank);
        std::copy(axes.begin(), axes.end(), axes_.begin());
    }
    /// Whether the reduction runs over every axis.
    bool all() const { return count_ < 0; }
    /// The axes given (empty when all()).
    std::span<const int> list() const { return {axes_.data(), static_cast<std::size_t>(std::max(count_, 0))}; }

private:
    std::array<int, kMaxRank> axes_{};
    int count_ = -1;  // -1: every axis
};

namespace detail {
// Shape with the reduced axes set to 1, the result shape, and the number of elements
// reduced into each result.
struct ReducedShapes {
    Shape keep, out;
    Index count;
};
inline ReducedShapes reduced_shapes(const Shape& s, const Axes& axes, bool keepdim, const char* op) {
    ReducedShapes r;
    if (axes.all()) {
        r.count = s.numel();
        r.keep = Shape{};
        if (keepdim) {
            r.keep = s;
            for (int d = 0; d < s.rank(); ++d) r.keep[d] = 1;
        }
        r.out = r.keep;
        return r;
    }
    std::array<bool, kMaxRank> reduced{};
    for (const int axis : axes.list()) {
        const int a = s.normalize_axis(axis, op);
        EMBER_CHECK(!reduced[static_cast<std::size_t>(a)], op, "axis ", axis, " is given twice for shape ", s.str());
        reduced[static_cast<std::size_t>(a)] = true;
    }
    r.count = 1;
    r.keep = s;
    std::vector<Index> o;
    for (int d = 0; d < s.rank(); ++d) {
        const bool here = reduced[static_cast<std::size_t>(d)];
        if (here) r.count *= s[d], r.keep[d] = 1;
        if (!here || keepdim) o.push_back(here ? 1 : s[d]);
    }
    r.out = Shape(std::span<const Index>(o));
    return r;
}
}  // namespace detail

/// Sum over all elements, one axis or several (Axes).
template <Real T>
Var<T> sum(const Var<T>& x, Axes axis = {}, bool keepdim = false) {
    auto r = detail::reduced_shapes(x.shape(), axis, keepdim, "sum");
    return reshape(sum_to(x, r.keep), r.out);
}

/// Mean over all elements, one axis or several (Axes).
template <Real T>
Var<T> mean(const Var<T>& x, Axes axis = {}, bool keepdim = false) {
    auto r = detail::reduced_shapes(x.shape(), axis, keepdim, "mean");
    EMBER_CHECK(r.count > 0, "mean", "mean of an empty tensor of shape ", x.shape().str());
    return Var<T>(sum(x, axis, keepdim) * (T(1) / static_cast<T>(r.count)));
}

namespace detail {
// max/min: the gradient is shared equally among the elements that attain the extreme.
template <class Combine, Real T>
Var<T> extreme(const Var<T>& x, const Axes& axis, bool keepdim, const char* op) {
    auto r = reduced_shapes(x.shape(), axis, keepdim, op);
    EMBER_CHECK(r.count > 0, op, "reduction over an empty axis of shape ", x.shape().str());
    Tensor<T> keep = reduce_into<Combine>(x.value(), r.keep, op);
    const Shape keep_shape = r.keep;
    return record(op, keep.reshape(r.out), {x}, [x, keep, keep_shape](const Var<T>& g, std::span<const bool>) {
        const Var<T> mask = eq(x.detach(), keep);
        const Var<T> count = sum_to(mask, keep_shape);
        return std::vector<Var<T>>{Var<T>(reshape(g, keep_shape) / count * mask)};
    });
}
}  // namespace detail

/// Maximum over all elements or over one axis; the gradient is shared equally among the
/// elements that attain it.
template <Real T>
Var<T> max(const Var<T>& x, Axes axis = {}, bool keepdim = false) {
    return detail::extreme<detail::MaxCombine>(x, axis, keepdim, "max");
}
/// Minimum over all elements or over one axis; the gradient is shared equally among the
/// elements that attain it.
template <Real T>
Var<T> min(const Var<T>& x, Axes axis = {}, bool keepdim = false) {
    return detail::extreme<detail::MinCombine>(x, axis, keepdim, "min");
}

/// log Σ exp(x), computed with the maximum subtracted (docs/math.md §8).
template <Real T>
Var<T> logsumexp(const Var<T>& x, Axes axis = {}, bool keepdim = false) {
    auto r = detail::reduced_shapes(x.shape(), axis, keepdim, "logsumexp");
    EMBER_CHECK(r.count > 0, "logsumexp", "reduction over an empty axis of shape ", x.shape().str());
    Tensor<T> m = detail::reduce_into<detail::MaxCombine>(x.value(), r.keep, "logsumexp");
    // An all -inf slice would give -inf - -inf = NaN; shift by 0 there instead.
    Tensor<T> shift = where(abs(m) < std::numeric_limits<T>::infinity(), m, T(0));
    Tensor<T> s = detail::reduce_into<detail::AddCombine>(Tensor<T>(exp(x.value() - shift)), r.keep, "logsumexp");
    Tensor<T> lse = shift + log(s);
    const Shape keep_shape = r.keep;
    return record("logsumexp", lse.reshape(r.out), {x}, [x, lse, keep_shape, axis](const Var<T>& g, std::span<const bool>) {
        // d lse / dx = softmax(x); recomputed as a Var when the backward is recorded.
        const Var<T> l = grad_enabled() ? logsumexp(x, axis, true) : Var<T>(lse);
        return std::vector<Var<T>>{Var<T>(reshape(g, keep_shape) * exp(x - l))};
    });
}

/// Variance with Bessel's correction by default (correction = 1, as torch.var).
template <Real T>
Var<T> var(const Var<T>& x, Axes axis = {}, bool keepdim = false, int correction = 1) {
    auto r = detail::reduced_shapes(x.shape(), axis, keepdim, "var");
    EMBER_CHECK(r.count - correction > 0, "var", "needs more than ", correction, " elements, shape is ",
                x.shape().str());
    const Var<T> centred = x - mean(x, axis, true);
    return Var<T>(sum(Var<T>(square(centred)), axis, keepdim) * (T(1) / static_cast<T>(r.count - correction)));
}

/// Euclidean norm sqrt(Σ x²); its gradient x/‖x‖ is taken as 0 at x = 0.
template <Real T>
Var<T> norm2(const Var<T>& x, Axes axis = {}, bool keepdim = false) {
    auto r = detail::reduced_shapes(x.shape(), axis, keepdim, "norm2");
    Tensor<T> n = sqrt(detail::reduce_into<detail::AddCombine>(Tensor<T>(square(x.value())), r.keep, "norm2"));
    const Shape keep_shape = r.keep;
    return record("norm2", n.reshape(r.out), {x}, [x, n, keep_shape, axis](const Var<T>& g, std::span<const bool>) {
        const Var<T> nv = grad_enabled() ? norm2(x, axis, true) : Var<T>(n);
        const Var<T> safe = where(nv > T(0), nv, T(1));  // no 0/0 even in the unused branch
        return std::vector<Var<T>>{Var<T>(where(nv > T(0), reshape(g, keep_shape) * x / safe, T(0)))};
    });
}

/// Index of the largest element along `axis` (first one on ties), row-major over the
/// remaining axes.
template <Real T>
std::vector<Index> argmax(const Tensor<T>& x, int axis = -1) {
    const Shape& s = x.shape();
    const int a = s.normalize_axis(axis, "argmax");
    EMBER_CHECK(s[a] > 0, "argmax", "empty axis in shape ", s.str());
    Index outer = 1, inner = 1;
    for (int d = 0; d < a; ++d) outer *= s[d];
    for (int d = a + 1; d < s.rank(); ++d) inner *= s[d];
    const Tensor<T> c = x.contiguous();
    std::vector<Index> out(static_cast<std::size_t>(outer * inner));
    for (Index o = 0; o < outer; ++o)
        for (Index i = 0; i < inner; ++i) {
            const T* p = c.data() + o * s[a] * inner + i;
            Index best = 0;
            for (Index k = 1; k < s[a]; ++k)
                if (p[k * inner] > p[best * inner]) best = k;
            out[static_cast<std::size_t>(o * inner + i)] = best;
        }
    return out;
}

// Tensor versions: the same reductions without recording.
#define EMBER_TENSOR_REDUCTION(NAME)                                                                     \
    template <Real T>                                                                                    \
    Tensor<T> NAME(const Tensor<T>& x, Axes axis = {}, bool keepdim = false) { \
        return NAME(Var<T>(x), axis, keepdim).value();                                                   \
    }
/// sum of a Tensor, without recording.
EMBER_TENSOR_REDUCTION(sum)
/// mean of a Tensor, without recording.
EMBER_TENSOR_REDUCTION(mean)
/// max of a Tensor, without recording.
EMBER_TENSOR_REDUCTION(max)
/// min of a Tensor, without recording.
EMBER_TENSOR_REDUCTION(min)
/// logsumexp of a Tensor, without recording.
EMBER_TENSOR_REDUCTION(logsumexp)
/// norm2 of a Tensor, without recording.
EMBER_TENSOR_REDUCTION(norm2)
#undef EMBER_TENSOR_REDUCTION

// Expression versions: reduce `sum(x * x)` without naming the intermediate.
#define EMBER_EXPR_REDUCTION(NAME)                                                                     \
    template <expr::Expression E>                                                                  \
    auto NAME(const E& e, Axes axis = {}, bool keepdim = false) {          \
        return NAME(eval(e), axis, keepdim);                                                       \
    }
/// sum of an elementwise expression, evaluated first: a Var if it has Var leaves.
EMBER_EXPR_REDUCTION(sum)
/// mean of an elementwise expression, evaluated first.
EMBER_EXPR_REDUCTION(mean)
/// max of an elementwise expression, evaluated first.
EMBER_EXPR_REDUCTION(max)
/// min of an elementwise expression, evaluated first.
EMBER_EXPR_REDUCTION(min)
/// logsumexp of an elementwise expression, evaluated first.
EMBER_EXPR_REDUCTION(logsumexp)
/// norm2 of an elementwise expression, evaluated first.
EMBER_EXPR_REDUCTION(norm2)
#undef EMBER_EXPR_REDUCTION

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_REDUCE_INSTANCES(X, T) \
    X template Var<T> sum<T>(const Var<T>&, Axes, bool); \
    X template Var<T> mean<T>(const Var<T>&, Axes, bool); \
    X template Var<T> max<T>(const Var<T>&, Axes, bool); \
    X template Var<T> min<T>(const Var<T>&, Axes, bool); \
    X template Var<T> logsumexp<T>(const Var<T>&, Axes, bool); \
    X template Var<T> var<T>(const Var<T>&, Axes, bool, int); \
    X template Var<T> norm2<T>(const Var<T>&, Axes, bool); \
    X template std::vector<Index> argmax<T>(const Tensor<T>&, int);
EMBER_EXTERN_INSTANCES(EMBER_REDUCE_INSTANCES)

}  // namespace ember
