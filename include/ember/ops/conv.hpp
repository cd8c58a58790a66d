#pragma once
/// \file
/// Convolution family on NCHW by im2col + GEMM (gemm_panels.hpp), and pooling / nearest
/// upsampling. Three bilinear primitives close under differentiation:
///
///     conv2d(x, W, b)         y = W · cols(x) + b     (the bias added as y is written out)
///     conv2d_adjoint(y, W)    x = col2im(Wᵀ · y)       (= conv_transpose2d)
///     conv2d_weight(x, g)     dW = g · cols(x)ᵀ
/// Each one's backward is made of the other two, so every conv is twice differentiable.
#include <Eigen/Core>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/ops/conv_chwn.hpp"
#include "ember/ops/conv_direct.hpp"
#include "ember/ops/gemm_panels.hpp"
#include "ember/ops/linalg.hpp"

namespace ember {

/// Stride, padding and dilation of conv2d, as torch.nn.functional.conv2d's arguments.
struct Conv2dOptions {
    ///@{
    /// Stride, zero padding on each side and dilation, the same along both image axes.
    Index stride = 1, padding = 0, dilation = 1;
///@}
};
/// Stride, padding, output padding and dilation of conv_transpose2d, as PyTorch's arguments.
struct ConvTranspose2dOptions {
    ///@{
    /// Stride, padding, output padding and dilation, the same along both image axes.
    Index stride = 1, padding = 0, output_padding = 0, dilation = 1;
///@}
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

inline Index ceil_div(Index a, Index b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// The output columns [lo, hi) whose input column ox·s - p + offset lies inside [0, W).
struct ValidRange {
    Index lo, hi;
};
inline ValidRange valid_range(Index W, Index Wo, Index s, Index p, Index offset) {
    const Index lo = std::clamp<Index>(ceil_div(p - offset, s), 0, Wo);
    const Index hi = std::clamp<Index>(ceil_div(W + p - offset, s), lo, Wo);
    return {lo, hi};
}

// cols[(c,ki,kj), (oy,ox)] = x[c, oy*s - p + ki*d, ox*s - p + kj*d] (0 outside); rows of
// cols are `ld` apart, so several samples can sit side by side in one matrix. The valid
// column range is computed once per kernel offset, so the inner loop has no bounds tests.
template <Real T>
void im2col(const ConvGeometry& g, const T* x, T* cols, Index ld) {
    // With stride 1 and output rows as long as input rows ("same" padding), a kernel offset's
    // whole row of cols is x shifted by a constant: one block copy, then the columns that fell
    // outside the image are zeroed. This replaces Ho short copies per kernel offset.
    const bool shifted_copy = g.stride == 1 && g.Wo == g.W;
    for (Index c = 0; c < g.C; ++c)
        for (Index ki = 0; ki < g.kh; ++ki)
            for (Index kj = 0; kj < g.kw; ++kj) {
                T* row = cols + ((c * g.kh + ki) * g.kw + kj) * ld;
                const ValidRange cr = valid_range(g.W, g.Wo, g.stride, g.pad, kj * g.dil);
                const Index shift = kj * g.dil - g.pad;
                const T* plane = x + c * g.H * g.W;
                if (shifted_copy) {
                    const ValidRange rr = valid_range(g.H, g.Ho, 1, g.pad, ki * g.dil);
                    const Index row_shift = ki * g.dil - g.pad;
                    std::fill_n(row, rr.lo * g.Wo, T(0));
                    if (rr.lo < rr.hi && cr.lo < cr.hi) {
                        const Index first = rr.lo * g.Wo + cr.lo, last = (rr.hi - 1) * g.Wo + cr.hi;
                        std::copy(plane + first + row_shift * g.W + shift, plane + last + row_shift * g.W + shift, row + first);
                        for (Index oy = rr.lo; oy < rr.hi; ++oy) {
                            std::fill_n(row + oy * g.Wo, cr.lo, T(0));
                            std::fill(row + oy * g.Wo + cr.hi, row + (oy + 1) * g.Wo, T(0));
                        }
                    } else {
                        std::fill(row + rr.lo * g.Wo, row + rr.hi * g.Wo, T(0));
                    }
                    std::fill(row + rr.hi * g.Wo, row + g.Ho * g.Wo, T(0));
                    continue;
                }
                for (Index oy = 0; oy < g.Ho; ++oy) {
                    const Index iy = oy * g.stride - g.pad + ki * g.dil;
                    T* out = row + oy * g.Wo;
                    if (iy < 0 || iy >= g.H) {
                        std::fill_n(out, g.Wo, T(0));
                        continue;
                    }
                    const T* in = plane + iy * g.W + shift;
                    std::fill_n(out, cr.lo, T(0));
                    if (g.stride == 1) std::copy(in + cr.lo, in + cr.hi, out + cr.lo);
                    else
                        for (Index ox = cr.lo; ox < cr.hi; ++ox) out[ox] = in[ox * g.stride];
                    std::fill(out + cr.hi, out + g.Wo, T(0));
                }
            }
}

// x[c, iy, ix] += cols[(c,ki,kj), (oy,ox)]: the adjoint of im2col.
template <Real T>
void col2im(const ConvGeometry& g, const T* cols, T* x, Index ld) {
    for (Index c = 0; c < g.C; ++c)
        for (Index ki = 0; ki < g.kh; ++ki)
            for (Index kj = 0; kj < g.kw; ++kj) {
                const T* row = cols + ((c * g.kh + ki) * g.kw + kj) * ld;
                const ValidRange cr = valid_range(g.W, g.Wo, g.stride, g.pad, kj * g.dil);
                const Index shift = kj * g.dil - g.pad;
                for (Index oy = 0; oy < g.Ho; ++oy) {
                    const Index iy = oy * g.stride - g.pad + ki * g.dil;
                    if (iy < 0 || iy >= g.H) continue;
                    T* out = x + (c * g.H + iy) * g.W + shift;
                    const T* in = row + oy * g.Wo;
                    if (g.stride == 1)
                        for (Index ox = cr.lo; ox < cr.hi; ++ox) out[ox] += in[ox];
                    else
                        for (Index ox = cr.lo; ox < cr.hi; ++ox) out[ox * g.stride] += in[ox];
                }
            }
}

template <Real T>
using MatMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// Work is split across threads by groups of samples. A group's im2col columns sit side by
// side in one [C·kh·kw, count·Ho·Wo] matrix, so each thread runs single-threaded GEMMs wide
// enough to be efficient (about 512 columns) with no synchronisation between threads.
inline Index conv_group(const ConvGeometry& g) {
    const Index threads = std::max<Index>(num_threads(), 1);
    const Index wide = std::max<Index>((512 + g.pixels() - 1) / g.pixels(), 1);
    return std::clamp<Index>(wide, 1, std::max<Index>(g.N / threads, 1));
}

template <Real T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A per-thread scratch matrix that only ever grows. The layers of a network need matrices
// of different sizes; resizing one Eigen matrix to each would free and map fresh pages for
// every convolution (page faults were a tenth of a conv GAN's step).
template <Real T, int Slot>
MatMap<T> scratch_matrix(Index rows, Index cols) {
    thread_local std::vector<T, Eigen::aligned_allocator<T>> buffer;
    const auto size = static_cast<std::size_t>(rows * cols);
    if (buffer.size() < size) {
        buffer.clear();
        buffer.resize(size);
    }
    return MatMap<T>(buffer.data(), rows, cols);
}

// Runs body(n0, count, cols) for each group of samples; `cols` is a per-thread scratch matrix.
template <Real T, class Body>
void for_sample_groups(const ConvGeometry& g, Body&& body) {
    const Index group = conv_group(g), groups = (g.N + group - 1) / group;
    parallel_for(groups, [&](Index i) {
        const Index n0 = i * group, count = std::min(group, g.N - n0);
        MatMap<T> cols = scratch_matrix<T, 0>(g.patch(), count * g.pixels());
        body(n0, count, cols);
    });
}

// y[n0 + i, o, p] <-> Y[o, i·P + p] for the samples of one group.
template <Real T>
void to_group(const T* y, Index channels, Index P, Index n0, Index count, T* Y) {
    for (Index i = 0; i < count; ++i)
        for (Index o = 0; o < channels; ++o) std::copy_n(y + ((n0 + i) * channels + o) * P, P, Y + (o * count + i) * P);
}
// The same with bias[o] added to every value of channel o (no bias when null).
template <Real T>
void from_group(const T* Y, Index channels, Index P, Index n0, Index count, T* y, const T* bias = nullptr) {
    for (Index i = 0; i < count; ++i)
        for (Index o = 0; o < channels; ++o) {
            write_channel_row(Y + (o * count + i) * P, P, bias ? bias + o : nullptr, y + ((n0 + i) * channels + o) * P);
        }
}

// y = W · cols(x) (+ bias[o] on channel o when bias is not null)
template <Real T>
Tensor<T> conv_forward(const ConvGeometry& g, const Tensor<T>& xt, const Tensor<T>& wt, const T* bias = nullptr) {
    const Tensor<T> w = wt.contiguous();
    if (direct_conv_applies(g)) return conv_forward_direct(g, xt.contiguous(), w, bias);
    if (const Index group = chwn_group(g)) return conv_forward_chwn(g, group, xt, w, bias);
    const Tensor<T> x = xt.contiguous();
    Tensor<T> y = Tensor<T>::empty(g.y_shape());
    const Index P = g.pixels();
    for_sample_groups<T>(g, [&](Index n0, Index count, MatMap<T>& cols) {
        for (Index i = 0; i < count; ++i) im2col(g, x.data() + (n0 + i) * g.C * g.H * g.W, cols.data() + i * P, count * P);
        if (count == 1) {
            T* yn = y.data() + n0 * g.O * P;
            gemm_row_major(w.data(), false, cols.data(), false, yn, g.O, P, g.patch(), false);
            if (bias)  // while the sample's output is still in cache
                for (Index o = 0; o < g.O; ++o) write_channel_row(yn + o * P, P, bias + o, yn + o * P);
            return;
        }
        MatMap<T> Y = scratch_matrix<T, 1>(g.O, count * P);
        gemm_row_major(w.data(), false, cols.data(), false, Y.data(), g.O, count * P, g.patch(), false);
        from_group(Y.data(), g.O, P, n0, count, y.data(), bias);
    });
    return y;
}

// For stride 1 and a square kernel, the adjoint is itself a convolution: x = conv(y, W̃) with
// W̃[c,o,i,j] = W[o,c,k-1-i,k-1-j] and padding d(k-1) - p. Its GEMM has the long inner
// dimension O·k² instead of O, and im2col's copies replace col2im's scattered additions
// into a zeroed x; with few output channels (a decoder's last conv has one) that is several
// times faster. Returns an undefined tensor when the geometry does not allow it.
template <Real T>
Tensor<T> conv_adjoint_as_conv(const ConvGeometry& g, const Tensor<T>& y, const Tensor<T>& w) {
    const Index k = g.kh, pad = g.dil * (k - 1) - g.pad;
    if (g.stride != 1 || g.kw != k || pad < 0) return {};
    const ConvGeometry flipped{g.N, g.O, g.Ho, g.Wo, g.C, k, k, 1, pad, g.dil, g.H, g.W};
    Tensor<T> wf = Tensor<T>::empty(flipped.w_shape());
    const T* src = w.data();
    T* dst = wf.data();
    for (Index o = 0; o < g.O; ++o)
        for (Index c = 0; c < g.C; ++c)
            for (Index i = 0; i < k; ++i)
                for (Index j = 0; j < k; ++j) dst[((c * g.O + o) * k + i) * k + j] = src[((o * g.C + c) * k + (k - 1 - i)) * k + (k - 1 - j)];
    return conv_forward(flipped, y, wf);
}

// x = col2im(Wᵀ · y)
template <Real T>
Tensor<T> conv_adjoint(const ConvGeometry& g, const Tensor<T>& yt, const Tensor<T>& wt) {
    const Tensor<T> w = wt.contiguous();
    if (Tensor<T> x = conv_adjoint_as_conv(g, yt, w); x.defined()) return x;
    if (const Index group = chwn_group(g)) return conv_adjoint_chwn(g, group, yt, w);
    const Tensor<T> y = yt.contiguous();
    Tensor<T> x = Tensor<T>::zeros(g.x_shape());
    const Index P = g.pixels();
    for_sample_groups<T>(g, [&](Index n0, Index count, MatMap<T>& cols) {
        MatMap<T> Y = scratch_matrix<T, 1>(g.O, count * P);
        to_group(y.data(), g.O, P, n0, count, Y.data());
        gemm_row_major(w.data(), true, Y.data(), false, cols.data(), g.patch(), count * P, g.O, false);
        for (Index i = 0; i < count; ++i) col2im(g, cols.data() + i * P, x.data() + (n0 + i) * g.C * g.H * g.W, count * P);
    });
    return x;
}

// dW = Σ_n y_n cols(x_n)ᵀ: each thread accumulates its groups, then the parts are summed.
template <Real T>
Tensor<T> conv_weight(const ConvGeometry& g, const Tensor<T>& xt, const Tensor<T>& yt) {
    const Tensor<T> x = xt.contiguous(), y = yt.contiguous();
    if (direct_conv_applies(g)) return conv_weight_direct(g, x, y);
    const Index P = g.pixels();
    std::vector<Matrix<T>> part(static_cast<std::size_t>(std::max(num_threads(), 1)));
    for (auto& m : part) m.setZero(g.O, g.patch());
    for_sample_groups<T>(g, [&](Index n0, Index count, MatMap<T>& cols) {
#ifdef _OPENMP
        Matrix<T>& acc = part[static_cast<std::size_t>(omp_get_thread_num()) % part.size()];
#else
        Matrix<T>& acc = part[0];
#endif
        for (Index i = 0; i < count; ++i) im2col(g, x.data() + (n0 + i) * g.C * g.H * g.W, cols.data() + i * P, count * P);
        MatMap<T> Y = scratch_matrix<T, 1>(g.O, count * P);
        to_group(y.data(), g.O, P, n0, count, Y.data());
        gemm_row_major(Y.data(), false, cols.data(), true, acc.data(), g.O, g.patch(), count * P, true);
    });
    Tensor<T> w = Tensor<T>::empty(g.w_shape());
    MatMap<T> Wm(w.data(), g.O, g.patch());
    Wm = part[0];
    for (std::size_t i = 1; i < part.size(); ++i) Wm += part[i];
    return w;
}

template <Real T> Var<T> conv_y(const Var<T>& x, const Var<T>& w, const ConvGeometry& g, const Var<T>& bias = {});
template <Real T> Var<T> conv_x(const Var<T>& y, const Var<T>& w, const ConvGeometry& g);
template <Real T> Var<T> conv_w(const Var<T>& x, const Var<T>& y, const ConvGeometry& g);

// y = conv(x, w) + bias: the bias is added as the output is written, and its gradient is
// gy summed over samples and pixels.
template <Real T>
Var<T> conv_y(const Var<T>& x, const Var<T>& w, const ConvGeometry& g, const Var<T>& bias) {
    auto backward = [x, w, g](const Var<T>& gy, std::span<const bool> need) {
        std::vector<Var<T>> out(need.size());
        if (need[0]) out[0] = conv_x(gy, w, g);
        if (need[1]) out[1] = conv_w(x, gy, g);
        if (need.size() > 2 && need[2]) out[2] = reshape(sum_to(gy, Shape{1, g.O, 1, 1}), Shape{g.O});
        return out;
    };
    if (!bias.defined()) return record("conv2d", conv_forward(g, x.value(), w.value()), {x, w}, backward);
    const Tensor<T> b = bias.value().contiguous();
    return record("conv2d", conv_forward(g, x.value(), w.value(), b.data()), {x, w, bias}, backward);
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

// h = leaky_relu(conv(x, w) + bias, slope) as one op, where the convolution's samples form
// one group in the samples-innermost layout (conv_chwn.hpp): the activation is applied to
// each row panel of the product while it is in cache, and the input gradient multiplies
// the incoming gradient by the activation's derivative as it packs it. That saves a pass
// over the output each way, and a transpose where the gradient arrives contiguous. Elsewhere
// (several groups, a negative slope, where the sign of h would not give the derivative) it
// is the two ops. The result, the gradients and their rounding are those of the two ops.
template <Real T>
Var<T> conv_y_leaky(const Var<T>& x, const Var<T>& w, const ConvGeometry& g, const Var<T>& bias, double slope) {
    auto one_group = [g] { return !direct_conv_applies(g) && chwn_group(g) >= g.N; };
    if (slope < 0 || !one_group()) return Var<T>(leaky_relu(conv_y(x, w, g, bias), slope));
    const Tensor<T> b = bias.defined() ? bias.value().contiguous() : Tensor<T>();
    const Tensor<T> h = conv_forward_chwn(g, chwn_group(g), x.value(), w.value().contiguous(), b.defined() ? b.data() : nullptr,
                                          std::optional<T>(static_cast<T>(slope)));
    auto backward = [x, w, g, h, slope, one_group](const Var<T>& gh, std::span<const bool> need) {
        std::vector<Var<T>> out(need.size());
        const bool input_only = !need[1] && (need.size() < 3 || !need[2]);
        if (need[0] && input_only && !grad_enabled() && one_group()) {  // a sampler's ∇x: the fused pass
            out[0] = Var<T>(conv_adjoint_chwn(g, chwn_group(g), gh.value(), w.value().contiguous(), h.data(), static_cast<T>(slope)));
            return out;
        }
        const Var<T> gy(where(h > T(0), gh, gh * static_cast<T>(slope)));  // LeakyReluOp's derivative
        if (need[0]) out[0] = conv_x(gy, w, g);
        if (need[1]) out[1] = conv_w(x, gy, g);
        if (need.size() > 2 && need[2]) out[2] = reshape(sum_to(gy, Shape{1, g.O, 1, 1}), Shape{g.O});
        return out;
    };
    if (!bias.defined()) return record("conv2d_leaky_relu", h, {x, w}, backward);
    return record("conv2d_leaky_relu", h, {x, w, bias}, backward);
}

inline Index conv_out_size(Index in, Index k, Index stride, Index pad, Index dil) {
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

template <Real T>
void check_channel_bias(const Var<T>& bias, Index channels, const char* op) {
    if (!bias.defined()) return;
    EMBER_CHECK(bias.shape() == Shape{channels}, op, "bias shape ", bias.shape().str(), " does not match ", channels,
                " output channels");
}
template <Real T>
Var<T> add_channel_bias(const Var<T>& y, const Var<T>& bias, Index channels, const char* op) {
    if (!bias.defined()) return y;
    check_channel_bias(bias, channels, op);
    return Var<T>(y + reshape(bias, Shape{1, channels, 1, 1}));
}

}  // namespace detail

namespace detail {
// conv2d's geometry, after checking its arguments (`op` names the caller in errors).
template <Real T>
ConvGeometry conv2d_geometry(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, const Conv2dOptions& o, const char* op) {
    const Shape &xs = x.shape(), &ws = weight.shape();
    EMBER_CHECK(xs.rank() == 4 && ws.rank() == 4, op, "expected input [N,C,H,W] and weight [O,C,kh,kw], got ", xs.str(),
                " and ", ws.str());
    EMBER_CHECK(xs[1] == ws[1], op, "input has ", xs[1], " channels but weight expects ", ws[1], ": ", xs.str(), " * ",
                ws.str());
    EMBER_CHECK(o.stride > 0 && o.dilation > 0 && o.padding >= 0, op, "stride and dilation must be positive, padding non-negative");
    ConvGeometry g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o.stride, o.padding, o.dilation, 0, 0};
    g.Ho = conv_out_size(g.H, g.kh, g.stride, g.pad, g.dil);
    g.Wo = conv_out_size(g.W, g.kw, g.stride, g.pad, g.dil);
    EMBER_CHECK(g.Ho > 0 && g.Wo > 0, op, "kernel ", ws.str(), " larger than padded input ", xs.str());
    check_channel_bias(bias, g.O, op);
    return g;
}
}  // namespace detail

/// x [N,C,H,W], weight [O,C,kh,kw], optional bias [O] -> [N,O,Ho,Wo].
template <Real T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = {}, Conv2dOptions o = {}) {
    return detail::conv_y(x, weight, detail::conv2d_geometry(x, weight, bias, o, "conv2d"), bias);
}

/// leaky_relu(conv2d(x, weight, bias, o), slope), fused where it pays (detail::conv_y_leaky);
/// nn::Sequential calls it for a Conv2d followed by a LeakyReLU.
template <Real T>
Var<T> conv2d_leaky_relu(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, Conv2dOptions o, double slope) {
    return detail::conv_y_leaky(x, weight, detail::conv2d_geometry(x, weight, bias, o, "conv2d_leaky_relu"), bias, slope);
}

/// The adjoint (gradient) of conv2d, as generators use it: y [N,Cin,H,W], weight
/// [Cin,Cout,kh,kw] (PyTorch's layout), optional bias [Cout] -> [N,Cout,Hout,Wout] with
/// Hout = (H-1)·stride - 2·padding + dilation·(kh-1) + output_padding + 1.
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
#define EMBER_CONV_INSTANCES(X, T) \
    X template Var<T> conv2d<T>(const Var<T>&, const Var<T>&, const Var<T>&, Conv2dOptions); \
    X template Var<T> conv2d_leaky_relu<T>(const Var<T>&, const Var<T>&, const Var<T>&, Conv2dOptions, double); \
    X template Var<T> conv_transpose2d<T>(const Var<T>&, const Var<T>&, const Var<T>&, ConvTranspose2dOptions); \
    X template Var<T> avg_pool2d<T>(const Var<T>&, Index, Index, Index); \
    X template Var<T> max_pool2d<T>(const Var<T>&, Index, Index, Index); \
    X template Var<T> upsample2d<T>(const Var<T>&, Index);
EMBER_EXTERN_INSTANCES(EMBER_CONV_INSTANCES)

}  // namespace ember
