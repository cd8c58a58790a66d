#pragma once
/// \file
/// Batch normalisation without the affine part, as one op: for x [N, C, ...],
///
///     y = (x - μ_c) · r_c,   μ_c = mean of channel c over every axis but 1,
///     r_c = 1 / sqrt(σ²_c + eps),   σ²_c = the biased variance of channel c.
/// The forward pass is two sweeps over x (statistics, then y) instead of the seven
/// elementwise ops and four reductions of the composed formula, and the gradient
///
///     ∂L/∂x = r_c · (g - mean_c(g) - y · mean_c(g · y))
/// is two more sweeps. When a backward pass builds a graph (create_graph, e.g. for a gradient
/// penalty), the same gradient is built from differentiable ops instead, so the op stays
/// twice differentiable.
#include <Eigen/Core>
#include <cmath>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember {

/// The result of batch_normalize: the normalised input and the batch statistics.
template <Real T>
struct BatchNormalized {
    /// x normalised per channel, on the graph.
    Var<T> y;
    ///@{
    Tensor<T> mean, var;  ///< [C]: the batch mean and the biased variance, for running statistics
    ///@}
};

namespace detail {

// x [N, C, ...] viewed as [N, C, S]: channel c is N segments of S contiguous values.
struct ChannelLayout {
    Index N, C, S;
    explicit ChannelLayout(const Shape& s) : N(s[0]), C(s[1]), S(s.numel() / (s[0] * s[1])) {}
    Index count() const { return N * S; }
    Index offset(Index n, Index c) const { return (n * C + c) * S; }
};

// The composed formula, for graphs that must be differentiated again.
template <Real T>
Var<T> channel_mean(const Var<T>& x) {  // [1, C, 1...], mean over every axis but 1
    const Shape& s = x.shape();
    std::vector<Index> kept(static_cast<std::size_t>(s.rank()), 1);
    kept[1] = s[1];
    const ChannelLayout l(s);
    Var<T> m = mean(reshape(transpose(reshape(x, Shape{l.N, l.C, l.S}), 0, 1), Shape{l.C, l.N * l.S}), 1);
    return reshape(m, Shape(kept));
}

template <Real T>
Var<T> batch_norm_grad_composed(const Var<T>& x, const Var<T>& g, double eps) {
    const Var<T> xc = x - channel_mean(x);
    const Var<T> r = rsqrt(channel_mean(Var<T>(square(xc))) + static_cast<T>(eps));
    const Var<T> y = xc * r;
    return Var<T>(r * (g - channel_mean(g) - y * channel_mean(Var<T>(g * y))));
}

}  // namespace detail

namespace detail {

template <Real T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <Real T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <Real T>
using ConstRowsMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <Real T>
using RowsMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// Σ of channel c: Eigen's vectorised sum of each of its N segments, accumulated in double.
template <Real T>
double channel_sum(const ChannelLayout& l, const T* data, Index c) {
    double sum = 0;
    for (Index n = 0; n < l.N; ++n) sum += static_cast<double>(ConstArrayMap<T>(data + l.offset(n, c), l.S).sum());
    return sum;
}

// [N, C] inputs: body(first, width) on blocks of whole channels (columns), one per thread
// when the input is large enough to be worth it.
template <class Body>
void parallel_column_blocks(const ChannelLayout& l, Body&& body) {
    const Index min_columns = std::max<Index>(1, (Index{1} << 14) / std::max<Index>(l.N, 1));
    parallel_chunks(l.C, min_columns, 16, [&](Index b, Index e) { body(b, e - b); });
}

// y = (x - μ) r per channel; fills mean, biased var and r = 1/sqrt(var + eps).
template <Real T>
void batch_norm_forward(const ChannelLayout& l, const T* x, T* y, T* mean, T* var, T* r, double eps) {
    const double inv = 1.0 / static_cast<double>(l.count());
    auto finish = [&](Index c, double mu, double v) {
        mean[c] = static_cast<T>(mu);
        var[c] = static_cast<T>(v);
        r[c] = static_cast<T>(1 / std::sqrt(v + eps));
    };
    if (l.S == 1) {  // [N, C]: rows of channels; column sums run along contiguous rows
        const ConstRowsMap<T> X(x, l.N, l.C);
        RowsMap<T> Y(y, l.N, l.C);
        parallel_column_blocks(l, [&](Index b, Index w) {
            const auto Xb = X.middleCols(b, w);
            auto Yb = Y.middleCols(b, w);
            const Eigen::Array<T, 1, Eigen::Dynamic> mu = Xb.colwise().sum() * static_cast<T>(inv);
            Yb = Xb.rowwise() - mu;
            const Eigen::Array<T, 1, Eigen::Dynamic> v = Yb.square().colwise().sum() * static_cast<T>(inv);
            for (Index c = 0; c < w; ++c) finish(b + c, mu(c), v(c));
            Yb.rowwise() *= ConstArrayMap<T>(r + b, w).transpose();
        });
        return;
    }
    parallel_for(l.C, [&](Index c) {
        // Two passes (the mean, then squares around it): no cancellation on large channels.
        const double mu = channel_sum(l, x, c) * inv;
        double ss = 0;
        for (Index n = 0; n < l.N; ++n)
            ss += static_cast<double>((ConstArrayMap<T>(x + l.offset(n, c), l.S) - static_cast<T>(mu)).square().sum());
        finish(c, mu, ss * inv);
        for (Index n = 0; n < l.N; ++n)
            ArrayMap<T>(y + l.offset(n, c), l.S) = (ConstArrayMap<T>(x + l.offset(n, c), l.S) - mean[c]) * r[c];
    });
}

// gx = r (g - mean(g) - y mean(g y)) per channel.
template <Real T>
void batch_norm_backward(const ChannelLayout& l, const T* g, const T* y, const T* r, T* gx) {
    const T inv = static_cast<T>(1.0 / static_cast<double>(l.count()));
    if (l.S == 1) {
        const ConstRowsMap<T> G(g, l.N, l.C), Y(y, l.N, l.C);
        RowsMap<T> GX(gx, l.N, l.C);
        parallel_column_blocks(l, [&](Index first, Index w) {
            const auto Gb = G.middleCols(first, w), Yb = Y.middleCols(first, w);
            const Eigen::Array<T, 1, Eigen::Dynamic> a = Gb.colwise().sum() * inv, b = (Gb * Yb).colwise().sum() * inv;
            GX.middleCols(first, w) =
                ((Gb.rowwise() - a) - Yb.rowwise() * b).rowwise() * ConstArrayMap<T>(r + first, w).transpose();
        });
        return;
    }
    parallel_for(l.C, [&](Index c) {
        double sg = 0, sgy = 0;
        for (Index n = 0; n < l.N; ++n) {
            const ConstArrayMap<T> gs(g + l.offset(n, c), l.S), ys(y + l.offset(n, c), l.S);
            sg += static_cast<double>(gs.sum());
            sgy += static_cast<double>((gs * ys).sum());
        }
        const T a = static_cast<T>(sg) * inv, b = static_cast<T>(sgy) * inv;
        for (Index n = 0; n < l.N; ++n) {
            const ConstArrayMap<T> gs(g + l.offset(n, c), l.S), ys(y + l.offset(n, c), l.S);
            ArrayMap<T>(gx + l.offset(n, c), l.S) = (gs - a - ys * b) * r[c];
        }
    });
}

}  // namespace detail

/// Normalises x [N, C, ...] per channel by the batch's mean and biased variance (plus eps),
/// as one fused op, twice differentiable; also returns the statistics.
template <Real T>
BatchNormalized<T> batch_normalize(const Var<T>& x, double eps) {
    EMBER_CHECK(x.defined() && x.rank() >= 2, "batch_normalize", "expected input [N, C, ...], got ",
                x.defined() ? x.shape().str() : std::string("(undefined)"));
    EMBER_CHECK(eps > 0, "batch_normalize", "eps must be positive, got ", eps);
    const detail::ChannelLayout l(x.shape());
    EMBER_CHECK(l.count() > 1, "batch_normalize", "needs more than one value per channel, got input ", x.shape().str());
    const Tensor<T> xc = x.value().contiguous();
    Tensor<T> y = Tensor<T>::empty(x.shape()), mean_t = Tensor<T>::empty(Shape{l.C}), var_t = Tensor<T>::empty(Shape{l.C});
    Tensor<T> rstd = Tensor<T>::empty(Shape{l.C});
    detail::batch_norm_forward(l, xc.data(), y.data(), mean_t.data(), var_t.data(), rstd.data(), eps);
    const Tensor<T> y_saved = y;
    Var<T> out = record("batch_normalize", y, {x}, [x, y_saved, rstd, eps, l](const Var<T>& g, std::span<const bool>) {
        if (grad_enabled()) return std::vector<Var<T>>{detail::batch_norm_grad_composed(x, g, eps)};
        const Tensor<T> gc = g.value().contiguous();
        Tensor<T> gx = Tensor<T>::empty(gc.shape());
        detail::batch_norm_backward(l, gc.data(), y_saved.data(), rstd.data(), gx.data());
        return std::vector<Var<T>>{Var<T>(gx)};
    });
    return {out, mean_t, var_t};
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_BATCH_NORM_INSTANCES(X, T) \
    X template BatchNormalized<T> batch_normalize<T>(const Var<T>&, double);
EMBER_EXTERN_INSTANCES(EMBER_BATCH_NORM_INSTANCES)

}  // namespace ember
