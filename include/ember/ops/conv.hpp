#pragma once
// Convolution family on NCHW by im2col + Eigen GEMM, and pooling / nearest upsampling.
// Three bilinear primitives close under differentiation:
//   conv2d(x, W)            y = W · cols(x)
//   conv2d_adjoint(y, W)    x = col2im(Wᵀ · y)       (= conv_transpose2d)
//   conv2d_weight(x, g)     dW = g · cols(x)ᵀ
// Each one's backward is made of the other two, so every conv is twice differentiable.
#include <Eigen/Core>
#include <vector>

#include "ember/ops/linalg.hpp"

namespace ember {

struct Conv2dOptions {
    Index stride = 1, padding = 0, dilation = 1;
};
struct ConvTranspose2dOptions {
    Index stride = 1, padding = 0, output_padding = 0, dilation = 1;
};

namespace detail {

// The geometry of one convolution x[N,C,H,W] -> y[N,O,Ho,Wo] with a kh x kw kernel.
struct ConvGeometry {
    Index N, C, H, W, O, kh, kw, stride, pad, dil, Ho, Wo;
    Index patch() const { return C * kh * kw; }
    Index pixels() const { return Ho * Wo; }
    Shape x_shape() const { return {N, C, H, W}; }
    Shape y_shape() const { return {N, O, Ho, Wo}; }
    Shape w_shape() const { return {O, C, kh, kw}; }
};

// cols[(c,ki,kj), (oy,ox)] = x[c, oy*s - p + ki*d, ox*s - p + kj*d] (0 outside).
template <Real T>
void im2col(const ConvGeometry& g, const T* x, T* cols) {
    for (Index c = 0; c < g.C; ++c)
        for (Index ki = 0; ki < g.kh; ++ki)
            for (Index kj = 0; kj < g.kw; ++kj) {
                T* row = cols + ((c * g.kh + ki) * g.kw + kj) * g.pixels();
                for (Index oy = 0; oy < g.Ho; ++oy) {
                    const Index iy = oy * g.stride - g.pad + ki * g.dil;
                    T* out = row + oy * g.Wo;
                    if (iy < 0 || iy >= g.H) {
                        std::fill_n(out, g.Wo, T(0));
                        continue;
                    }
                    const T* in = x + (c * g.H + iy) * g.W;
                    for (Index ox = 0; ox < g.Wo; ++ox) {
                        const Index ix = ox * g.stride - g.pad + kj * g.dil;
                        out[ox] = (ix >= 0 && ix < g.W) ? in[ix] : T(0);
                    }
                }
            }
}

// x[c, iy, ix] += cols[(c,ki,kj), (oy,ox)]: the adjoint of im2col.
template <Real T>
void col2im(const ConvGeometry& g, const T* cols, T* x) {
    for (Index c = 0; c < g.C; ++c)
        for (Index ki = 0; ki < g.kh; ++ki)
            for (Index kj = 0; kj < g.kw; ++kj) {
                const T* row = cols + ((c * g.kh + ki) * g.kw + kj) * g.pixels();
                for (Index oy = 0; oy < g.Ho; ++oy) {
                    const Index iy = oy * g.stride - g.pad + ki * g.dil;
                    if (iy < 0 || iy >= g.H) continue;
                    T* out = x + (c * g.H + iy) * g.W;
                    const T* in = row + oy * g.Wo;
                    for (Index ox = 0; ox < g.Wo; ++ox) {
                        const Index ix = ox * g.stride - g.pad + kj * g.dil;
                        if (ix >= 0 && ix < g.W) out[ix] += in[ox];
                    }
                }
            }
}

template <Real T>
using MatMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <Real T>
using ConstMatMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// Per-sample work split across threads; each thread keeps its own im2col buffer and runs
// a single-threaded GEMM (Eigen does not nest inside our parallel region).
template <class Body>
void per_sample(Index n, Body&& body) {
    parallel_for(n, body);
}

template <Real T>
Tensor<T> conv_forward(const ConvGeometry& g, const Tensor<T>& xt, const Tensor<T>& wt) {
    const Tensor<T> x = xt.contiguous(), w = wt.contiguous();
    Tensor<T> y = Tensor<T>::empty(g.y_shape());
    const ConstMatMap<T> W(w.data(), g.O, g.patch());
    const bool one_by_one = g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0;
    per_sample(g.N, [&](Index n) {
        MatMap<T> Y(y.data() + n * g.O * g.pixels(), g.O, g.pixels());
        if (one_by_one) {
            Y.noalias() = W * ConstMatMap<T>(x.data() + n * g.C * g.H * g.W, g.C, g.pixels());
            return;
        }
        thread_local std::vector<T> cols;
        cols.resize(static_cast<std::size_t>(g.patch() * g.pixels()));
        im2col(g, x.data() + n * g.C * g.H * g.W, cols.data());
        Y.noalias() = W * ConstMatMap<T>(cols.data(), g.patch(), g.pixels());
    });
    return y;
}

// x = col2im(Wᵀ y) for every sample.
template <Real T>
Tensor<T> conv_adjoint(const ConvGeometry& g, const Tensor<T>& yt, const Tensor<T>& wt) {
    const Tensor<T> y = yt.contiguous(), w = wt.contiguous();
    Tensor<T> x = Tensor<T>::zeros(g.x_shape());
    const ConstMatMap<T> W(w.data(), g.O, g.patch());
    per_sample(g.N, [&](Index n) {
        thread_local std::vector<T> cols;
        cols.resize(static_cast<std::size_t>(g.patch() * g.pixels()));
        MatMap<T> Cm(cols.data(), g.patch(), g.pixels());
        Cm.noalias() = W.transpose() * ConstMatMap<T>(y.data() + n * g.O * g.pixels(), g.O, g.pixels());
        col2im(g, cols.data(), x.data() + n * g.C * g.H * g.W);
    });
    return x;
}

// dW = Σ_n y_n cols(x_n)ᵀ, accumulated per thread then summed.
template <Real T>
Tensor<T> conv_weight(const ConvGeometry& g, const Tensor<T>& xt, const Tensor<T>& yt) {
    const Tensor<T> x = xt.contiguous(), y = yt.contiguous();
    const int threads = static_cast<int>(std::min<Index>(num_threads(), std::max<Index>(g.N, 1)));
    std::vector<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> part(static_cast<std::size_t>(threads));
    for (auto& p : part) p.setZero(g.O, g.patch());
    parallel_chunks(g.N, 1, 1, [&](Index b, Index e) {
#ifdef _OPENMP
        auto& acc = part[static_cast<std::size_t>(omp_get_thread_num() % threads)];
#else
        auto& acc = part[0];
#endif
        std::vector<T> cols(static_cast<std::size_t>(g.patch() * g.pixels()));
        for (Index n = b; n < e; ++n) {
            im2col(g, x.data() + n * g.C * g.H * g.W, cols.data());
            acc.noalias() += ConstMatMap<T>(y.data() + n * g.O * g.pixels(), g.O, g.pixels()) *
                             ConstMatMap<T>(cols.data(), g.patch(), g.pixels()).transpose();
        }
    });
    Tensor<T> w = Tensor<T>::empty(g.w_shape());
    MatMap<T> Wm(w.data(), g.O, g.patch());
    Wm = part[0];
    for (std::size_t i = 1; i < part.size(); ++i) Wm += part[i];
    return w;
}

template <Real T> Var<T> conv_y(const Var<T>& x, const Var<T>& w, const ConvGeometry& g);
template <Real T> Var<T> conv_x(const Var<T>& y, const Var<T>& w, const ConvGeometry& g);
template <Real T> Var<T> conv_w(const Var<T>& x, const Var<T>& y, const ConvGeometry& g);

template <Real T>
Var<T> conv_y(const Var<T>& x, const Var<T>& w, const ConvGeometry& g) {
    return record("conv2d", conv_forward(g, x.value(), w.value()), {x, w}, [x, w, g](const Var<T>& gy, std::span<const bool> need) {
        std::vector<Var<T>> out(2);
        if (need[0]) out[0] = conv_x(gy, w, g);
        if (need[1]) out[1] = conv_w(x, gy, g);
        return out;
    });
}
template <Real T>
Var<T> conv_x(const Var<T>& y, const Var<T>& w, const ConvGeometry& g) {
    return record("conv_transpose2d", conv_adjoint(g, y.value(), w.value()), {y, w}, [y, w, g](const Var<T>& gx, std::span<const bool> need) {
        std::vector<Var<T>> out(2);
        if (need[0]) out[0] = conv_y(gx, w, g);
        if (need[1]) out[1] = conv_w(gx, y, g);
        return out;
    });
}
template <Real T>
Var<T> conv_w(const Var<T>& x, const Var<T>& y, const ConvGeometry& g) {
    return record("conv2d_weight", conv_weight(g, x.value(), y.value()), {x, y}, [x, y, g](const Var<T>& gw, std::span<const bool> need) {
        std::vector<Var<T>> out(2);
        if (need[0]) out[0] = conv_x(y, gw, g);
        if (need[1]) out[1] = conv_y(x, gw, g);
        return out;
    });
}

inline Index conv_out_size(Index in, Index k, Index stride, Index pad, Index dil) {
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

template <Real T>
Var<T> add_channel_bias(const Var<T>& y, const Var<T>& bias, Index channels, const char* op) {
    if (!bias.defined()) return y;
    EMBER_CHECK(bias.shape() == Shape{channels}, op, "bias shape ", bias.shape().str(), " does not match ", channels,
                " output channels");
    return Var<T>(y + reshape(bias, Shape{1, channels, 1, 1}));
}

}  // namespace detail

// x [N,C,H,W], weight [O,C,kh,kw], optional bias [O] -> [N,O,Ho,Wo].
template <Real T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = {}, Conv2dOptions o = {}) {
    const Shape &xs = x.shape(), &ws = weight.shape();
    EMBER_CHECK(xs.rank() == 4 && ws.rank() == 4, "conv2d", "expected input [N,C,H,W] and weight [O,C,kh,kw], got ",
                xs.str(), " and ", ws.str());
    EMBER_CHECK(xs[1] == ws[1], "conv2d", "input has ", xs[1], " channels but weight expects ", ws[1], ": ", xs.str(),
                " * ", ws.str());
    EMBER_CHECK(o.stride > 0 && o.dilation > 0 && o.padding >= 0, "conv2d", "stride and dilation must be positive, padding non-negative");
    detail::ConvGeometry g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o.stride, o.padding, o.dilation, 0, 0};
    g.Ho = detail::conv_out_size(g.H, g.kh, g.stride, g.pad, g.dil);
    g.Wo = detail::conv_out_size(g.W, g.kw, g.stride, g.pad, g.dil);
    EMBER_CHECK(g.Ho > 0 && g.Wo > 0, "conv2d", "kernel ", ws.str(), " larger than padded input ", xs.str());
    return detail::add_channel_bias(detail::conv_y(x, weight, g), bias, g.O, "conv2d");
}

// The adjoint (gradient) of conv2d, as generators use it: y [N,Cin,H,W], weight
// [Cin,Cout,kh,kw] (PyTorch's layout), optional bias [Cout] -> [N,Cout,Hout,Wout] with
// Hout = (H-1)·stride - 2·padding + dilation·(kh-1) + output_padding + 1.
template <Real T>
Var<T> conv_transpose2d(const Var<T>& y, const Var<T>& weight, const Var<T>& bias = {}, ConvTranspose2dOptions o = {}) {
    const Shape &ys = y.shape(), &ws = weight.shape();
    EMBER_CHECK(ys.rank() == 4 && ws.rank() == 4, "conv_transpose2d",
                "expected input [N,Cin,H,W] and weight [Cin,Cout,kh,kw], got ", ys.str(), " and ", ws.str());
    EMBER_CHECK(ys[1] == ws[0], "conv_transpose2d", "input has ", ys[1], " channels but weight expects ", ws[0], ": ",
                ys.str(), " * ", ws.str());
    EMBER_CHECK(o.stride > 0 && o.dilation > 0 && o.padding >= 0 && o.output_padding >= 0 &&
                    o.output_padding < std::max(o.stride, o.dilation),
                "conv_transpose2d", "invalid stride/padding/output_padding/dilation");
    const Index H = (ys[2] - 1) * o.stride - 2 * o.padding + o.dilation * (ws[2] - 1) + o.output_padding + 1;
    const Index W = (ys[3] - 1) * o.stride - 2 * o.padding + o.dilation * (ws[3] - 1) + o.output_padding + 1;
    EMBER_CHECK(H > 0 && W > 0, "conv_transpose2d", "output size would be empty for input ", ys.str());
    detail::ConvGeometry g{ys[0], ws[1], H, W, ws[0], ws[2], ws[3], o.stride, o.padding, o.dilation, ys[2], ys[3]};
    return detail::add_channel_bias(detail::conv_x(y, weight, g), bias, g.C, "conv_transpose2d");
}

namespace detail {
// Pooling windows of size k, stride s, padding p over [N,C,H,W].
struct PoolGeometry {
    Index N, C, H, W, k, s, p, Ho, Wo;
};
inline PoolGeometry pool_geometry(const Shape& xs, Index k, Index s, Index p, const char* op) {
    EMBER_CHECK(xs.rank() == 4, op, "expected input [N,C,H,W], got ", xs.str());
    EMBER_CHECK(k > 0 && s > 0 && p >= 0 && 2 * p <= k, op, "invalid kernel ", k, ", stride ", s, ", padding ", p);
    PoolGeometry g{xs[0], xs[1], xs[2], xs[3], k, s, p, 0, 0};
    g.Ho = (g.H + 2 * p - k) / s + 1;
    g.Wo = (g.W + 2 * p - k) / s + 1;
    EMBER_CHECK(g.Ho > 0 && g.Wo > 0, op, "window ", k, " larger than padded input ", xs.str());
    return g;
}

template <Real T> Var<T> avg_pool_adjoint(const Var<T>& g, const PoolGeometry& pg);

// Average over each window, padding counted as zeros (PyTorch's count_include_pad).
template <Real T>
Var<T> avg_pool(const Var<T>& x, const PoolGeometry& g) {
    const Tensor<T> xc = x.value().contiguous();
    Tensor<T> y = Tensor<T>::zeros(Shape{g.N, g.C, g.Ho, g.Wo});
    const T scale = T(1) / static_cast<T>(g.k * g.k);
    parallel_for(g.N * g.C, [&](Index nc) {
        const T* in = xc.data() + nc * g.H * g.W;
        T* out = y.data() + nc * g.Ho * g.Wo;
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
                out[oy * g.Wo + ox] = acc * scale;
            }
    });
    return record("avg_pool2d", y, {x}, [g](const Var<T>& gy, std::span<const bool>) {
        return std::vector<Var<T>>{avg_pool_adjoint(gy, g)};
    });
}

template <Real T>
Var<T> avg_pool_adjoint(const Var<T>& gy, const PoolGeometry& g) {
    const Tensor<T> gc = gy.value().contiguous();
    Tensor<T> x = Tensor<T>::zeros(Shape{g.N, g.C, g.H, g.W});
    const T scale = T(1) / static_cast<T>(g.k * g.k);
    parallel_for(g.N * g.C, [&](Index nc) {
        const T* in = gc.data() + nc * g.Ho * g.Wo;
        T* out = x.data() + nc * g.H * g.W;
        for (Index oy = 0; oy < g.Ho; ++oy)
            for (Index ox = 0; ox < g.Wo; ++ox) {
                const T v = in[oy * g.Wo + ox] * scale;
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
    return record("avg_pool2d_adjoint", x, {gy}, [g](const Var<T>& gx, std::span<const bool>) {
        return std::vector<Var<T>>{avg_pool(gx, g)};
    });
}
}  // namespace detail

template <Real T>
Var<T> avg_pool2d(const Var<T>& x, Index kernel, Index stride = 0, Index padding = 0) {
    return detail::avg_pool(x, detail::pool_geometry(x.shape(), kernel, stride ? stride : kernel, padding, "avg_pool2d"));
}

// Max over each window (padding never wins); the gradient goes to the first maximum.
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

// Nearest-neighbour upsampling by an integer factor.
template <Real T>
Var<T> upsample2d(const Var<T>& x, Index factor) {
    const Shape& s = x.shape();
    EMBER_CHECK(s.rank() == 4, "upsample2d", "expected input [N,C,H,W], got ", s.str());
    EMBER_CHECK(factor >= 1, "upsample2d", "factor must be >= 1, got ", factor);
    const Index H = s[2] * factor, W = s[3] * factor;
    auto idx = std::make_shared<std::vector<Index>>(static_cast<std::size_t>(s[0] * s[1] * H * W));
    for (Index nc = 0; nc < s[0] * s[1]; ++nc)
        for (Index y = 0; y < H; ++y)
            for (Index xx = 0; xx < W; ++xx)
                (*idx)[static_cast<std::size_t>((nc * H + y) * W + xx)] = (nc * s[2] + y / factor) * s[3] + xx / factor;
    return take(x, idx, Shape{s[0], s[1], H, W});
}

}  // namespace ember
