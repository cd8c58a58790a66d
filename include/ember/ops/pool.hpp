#pragma once
/// \file
/// Pooling and nearest upsampling on NCHW: average pooling and its adjoint (which nearest
/// upsampling is, up to the weight of a window) as a pair of linear ops, each the other's
/// backward, so both are differentiable to any order; max pooling as a gather (take).
#include <memory>
#include <vector>

#include "ember/autodiff/var.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/threading.hpp"
#include "ember/ops/shape.hpp"

namespace ember {

namespace detail {
// Windows of size k, stride s, padding p over x[N,C,H,W]; each window's sum is scaled by
// `weight` (1/k² for average pooling, 1 for the sum that nearest upsampling's gradient is).
struct PoolGeometry {
    Index N, C, H, W, k, s, p, Ho, Wo;
    double weight;
    // Windows tile the input exactly once: no padding, no overlap, no leftover rows/columns.
    bool tiles() const { return s == k && p == 0 && Ho * k == H && Wo * k == W; }
};
inline PoolGeometry pool_geometry(const Shape& xs, Index k, Index s, Index p, const char* op) {
    EMBER_CHECK(xs.rank() == 4, op, "expected input [N,C,H,W], got ", xs.str());
    EMBER_CHECK(k > 0 && s > 0 && p >= 0 && 2 * p <= k, op, "invalid kernel ", k, ", stride ", s, ", padding ", p);
    PoolGeometry g{xs[0], xs[1], xs[2], xs[3], k, s, p, 0, 0, 1.0 / static_cast<double>(k * k)};
    g.Ho = (g.H + 2 * p - k) / s + 1;
    g.Wo = (g.W + 2 * p - k) / s + 1;
    EMBER_CHECK(g.Ho > 0 && g.Wo > 0, op, "window ", k, " larger than padded input ", xs.str());
    return g;
}

template <Real T> Var<T> window_spread(const Var<T>& g, const PoolGeometry& pg, const char* name);

// y[n,c,oy,ox] = weight · Σ over the window of x (padding counts as zeros, PyTorch's
// count_include_pad). Its adjoint is window_spread, and window_spread's is this.
template <Real T>
Var<T> window_sum(const Var<T>& x, const PoolGeometry& g, const char* name) {
    const Tensor<T> xc = x.value().contiguous();
    Tensor<T> y = Tensor<T>::empty(Shape{g.N, g.C, g.Ho, g.Wo});
    const T weight = static_cast<T>(g.weight);
    parallel_for(g.N * g.C, [&](Index nc) {
        const T* in = xc.data() + nc * g.H * g.W;
        T* out = y.data() + nc * g.Ho * g.Wo;
        if (g.tiles()) {  // add the window's k rows (contiguous), then runs of k neighbours
            thread_local std::vector<T> rows;
            rows.resize(static_cast<std::size_t>(g.W));
            for (Index oy = 0; oy < g.Ho; ++oy) {
                const T* first = in + oy * g.k * g.W;
                std::copy_n(first, g.W, rows.data());
                for (Index i = 1; i < g.k; ++i)
                    for (Index ix = 0; ix < g.W; ++ix) rows[ix] += first[i * g.W + ix];
                T* o = out + oy * g.Wo;
                for (Index ox = 0; ox < g.Wo; ++ox) {
                    T acc = 0;
                    for (Index j = 0; j < g.k; ++j) acc += rows[ox * g.k + j];
                    o[ox] = acc * weight;
                }
            }
            return;
        }
        for (Index oy = 0; oy < g.Ho; ++oy)
            for (Index ox = 0; ox < g.Wo; ++ox) {
                T acc = 0;
                for (Index i = 0; i < g.k; ++i) {
                    const Index iy = oy * g.s - g.p + i;
                    if (iy < 0 || iy >= g.H) continue;
                    for (Index j = 0; j < g.k; ++j) {
                        const Index ix = ox * g.s - g.p + j;
                        if (ix >= 0 && ix < g.W) acc += in[iy * g.W + ix];
                    }
                }
                out[oy * g.Wo + ox] = acc * weight;
            }
    });
    return record(name, y, {x}, [g](const Var<T>& gy, std::span<const bool>) {
        return std::vector<Var<T>>{window_spread(gy, g, "window_spread")};
    });
}

// x[n,c,iy,ix] = weight · Σ of y over the windows that contain (iy, ix).
template <Real T>
Var<T> window_spread(const Var<T>& gy, const PoolGeometry& g, const char* name) {
    const Tensor<T> gc = gy.value().contiguous();
    Tensor<T> x = g.tiles() ? Tensor<T>::empty(Shape{g.N, g.C, g.H, g.W}) : Tensor<T>::zeros(Shape{g.N, g.C, g.H, g.W});
    const T weight = static_cast<T>(g.weight);
    parallel_for(g.N * g.C, [&](Index nc) {
        const T* in = gc.data() + nc * g.Ho * g.Wo;
        T* out = x.data() + nc * g.H * g.W;
        if (g.tiles()) {  // write each output row once, then copy it to the window's other rows
            for (Index oy = 0; oy < g.Ho; ++oy) {
                T* first = out + oy * g.k * g.W;
                for (Index ox = 0; ox < g.Wo; ++ox) std::fill_n(first + ox * g.k, g.k, in[oy * g.Wo + ox] * weight);
                for (Index i = 1; i < g.k; ++i) std::copy_n(first, g.W, first + i * g.W);
            }
            return;
        }
        for (Index oy = 0; oy < g.Ho; ++oy)
            for (Index ox = 0; ox < g.Wo; ++ox) {
                const T v = in[oy * g.Wo + ox] * weight;
                for (Index i = 0; i < g.k; ++i) {
                    const Index iy = oy * g.s - g.p + i;
                    if (iy < 0 || iy >= g.H) continue;
                    for (Index j = 0; j < g.k; ++j) {
                        const Index ix = ox * g.s - g.p + j;
                        if (ix >= 0 && ix < g.W) out[iy * g.W + ix] += v;
                    }
                }
            }
    });
    return record(name, x, {gy}, [g](const Var<T>& gx, std::span<const bool>) {
        return std::vector<Var<T>>{window_sum(gx, g, "window_sum")};
    });
}
}  // namespace detail

/// Mean over each `kernel` x `kernel` window of x [N, C, H, W] (stride 0: the kernel size);
/// padding counts as zeros in the mean, as PyTorch's default.
template <Real T>
Var<T> avg_pool2d(const Var<T>& x, Index kernel, Index stride = 0, Index padding = 0) {
    return detail::window_sum(x, detail::pool_geometry(x.shape(), kernel, stride ? stride : kernel, padding, "avg_pool2d"),
                              "avg_pool2d");
}

/// Max over each window (padding never wins); the gradient goes to the first maximum.
template <Real T>
Var<T> max_pool2d(const Var<T>& x, Index kernel, Index stride = 0, Index padding = 0) {
    const auto g = detail::pool_geometry(x.shape(), kernel, stride ? stride : kernel, padding, "max_pool2d");
    const Tensor<T> xc = x.value().contiguous();
    auto idx = std::make_shared<std::vector<Index>>(static_cast<std::size_t>(g.N * g.C * g.Ho * g.Wo));
    parallel_for(g.N * g.C, [&](Index nc) {
        const T* in = xc.data() + nc * g.H * g.W;
        for (Index oy = 0; oy < g.Ho; ++oy)
            for (Index ox = 0; ox < g.Wo; ++ox) {
                Index best = -1;
                for (Index i = 0; i < g.k; ++i) {
                    const Index iy = oy * g.s - g.p + i;
                    if (iy < 0 || iy >= g.H) continue;
                    for (Index j = 0; j < g.k; ++j) {
                        const Index ix = ox * g.s - g.p + j;
                        if (ix < 0 || ix >= g.W) continue;
                        const Index at = iy * g.W + ix;
                        if (best < 0 || in[at] > in[best] || in[at] != in[at]) best = at;
                    }
                }
                (*idx)[static_cast<std::size_t>((nc * g.Ho + oy) * g.Wo + ox)] = nc * g.H * g.W + best;
            }
    });
    return take(x, idx, Shape{g.N, g.C, g.Ho, g.Wo});
}

/// Nearest-neighbour upsampling by an integer factor: every pixel spread over a factor x
/// factor block, i.e.\ the adjoint of sum pooling over those blocks.
template <Real T>
Var<T> upsample2d(const Var<T>& x, Index factor) {
    const Shape& s = x.shape();
    EMBER_CHECK(s.rank() == 4, "upsample2d", "expected input [N,C,H,W], got ", s.str());
    EMBER_CHECK(factor >= 1, "upsample2d", "factor must be >= 1, got ", factor);
    detail::PoolGeometry g = detail::pool_geometry(Shape{s[0], s[1], s[2] * factor, s[3] * factor}, factor, factor, 0,
                                                   "upsample2d");
    g.weight = 1;
    return detail::window_spread(x, g, "upsample2d");
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_POOL_INSTANCES(X, T) \
    X template Var<T> avg_pool2d<T>(const Var<T>&, Index, Index, Index); \
    X template Var<T> max_pool2d<T>(const Var<T>&, Index, Index, Index); \
    X template Var<T> upsample2d<T>(const Var<T>&, Index);
EMBER_EXTERN_INSTANCES(EMBER_POOL_INSTANCES)

}  // namespace ember
