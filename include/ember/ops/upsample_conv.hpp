#pragma once
/// \file
/// upsample_conv2d(x, W, b, f) = conv2d(upsample2d(x, f), W, b, "same" padding), computed
/// without the upsampled image.
///
/// Output row f·i + a (phase a ∈ [0, f)) of the convolution reads upsampled rows
/// f·i + a + ki - p, i.e. input rows i + floor((a + ki - p) / f): each phase is a convolution
/// of the low-resolution input with a smaller kernel whose taps are sums of W's taps. All f²
/// phases are computed by one conv2d of x with the phase kernels stacked as f²·O output
/// channels, and then interleaved into the [N, O, f·H, f·W] image. For f = 2 and a 3x3 kernel
/// the phase kernels are 2x2: 16·(H+1)·(W+1) instead of 36·H·W multiply-adds per channel pair,
/// in the forward pass and in both gradients, and no 4x larger upsampled activation is made.
/// Everything is built from differentiable ops (a matmul for the phase kernels, conv2d, and
/// the interleave below with its adjoint), so the result is twice differentiable.
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/ops/conv.hpp"
#include "ember/ops/linalg.hpp"

namespace ember {
namespace detail {

inline Index floor_div(Index a, Index b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// How the f phases along one axis read a k-tap "same" convolution (padding p = (k-1)/2)
// of the f-times upsampled axis from the original axis.
struct PhaseGeometry {
    Index f, k, p;
    Index taps;               // kernel size of every phase convolution
    Index pad;                // padding of the stacked phase convolution
    std::vector<Index> lo;    // phase a's first tap reads input row i + lo[a]
    std::vector<Index> q0;    // phase a's output row i is row i + q0[a] of the stacked conv

    PhaseGeometry(Index factor, Index kernel) : f(factor), k(kernel), p((kernel - 1) / 2), taps(0), pad(0) {
        for (Index a = 0; a < f; ++a) {
            lo.push_back(floor_div(a - p, f));
            taps = std::max(taps, floor_div(a + k - 1 - p, f) - lo.back() + 1);
        }
        for (Index a = 0; a < f; ++a) pad = std::max({pad, -lo[a], lo[a] + taps - 1});
        for (Index a = 0; a < f; ++a) q0.push_back(lo[a] + pad);
    }
    // Size of the stacked phase convolution's output along an axis of n input pixels.
    Index conv_size(Index n) const { return n + 2 * pad - taps + 1; }
    // The 0/1 matrix [k², f²·taps²] that sums W's taps into the phase kernels: column
    // (a·f + b)·taps² + u·taps + v collects the taps (ki, kj) that phase (a, b) reads at (u, v).
    template <Real T>
    Tensor<T> tap_matrix() const {
        Tensor<T> m = Tensor<T>::zeros(Shape{k * k, f * f * taps * taps});
        for (Index a = 0; a < f; ++a)
            for (Index b = 0; b < f; ++b)
                for (Index ki = 0; ki < k; ++ki)
                    for (Index kj = 0; kj < k; ++kj) {
                        const Index u = floor_div(a + ki - p, f) - lo[a], v = floor_div(b + kj - p, f) - lo[b];
                        m.at({ki * k + kj, ((a * f + b) * taps + u) * taps + v}) = T(1);
                    }
        return m;
    }
};

template <Real T>
Var<T> phase_split(const Var<T>& y, const PhaseGeometry& pg, Index H, Index W);

// out[n, o, f·i + a, f·j + b] = y[n, (a·f + b)·O + o, i + q0[a], j + q0[b]] for y of shape
// [N, f²·O, Hc, Wc]; the result is [N, O, f·H, f·W].
template <Real T>
Var<T> phase_interleave(const Var<T>& y, const PhaseGeometry& pg, Index H, Index W) {
    const Shape& s = y.shape();
    const Index f = pg.f, N = s[0], O = s[1] / (f * f), Hc = s[2], Wc = s[3];
    const Tensor<T> yc = y.value().contiguous();
    Tensor<T> out = Tensor<T>::empty(Shape{N, O, f * H, f * W});
    parallel_for(N * O, [&](Index no) {
        const Index n = no / O, o = no % O;
        T* dst = out.data() + no * f * H * f * W;
        for (Index a = 0; a < f; ++a)
            for (Index b = 0; b < f; ++b) {
                const T* src = yc.data() + ((n * f * f + a * f + b) * O + o) * Hc * Wc + pg.q0[a] * Wc + pg.q0[b];
                for (Index i = 0; i < H; ++i)
                    for (Index j = 0; j < W; ++j) dst[(f * i + a) * f * W + f * j + b] = src[i * Wc + j];
            }
    });
    return record("phase_interleave", out, {y}, [pg, Hc, Wc](const Var<T>& g, std::span<const bool>) {
        return std::vector<Var<T>>{phase_split(g, pg, Hc, Wc)};
    });
}

// The adjoint of phase_interleave: g [N, O, f·H, f·W] -> [N, f²·O, Hc, Wc], zero where the
// interleave reads nothing.
template <Real T>
Var<T> phase_split(const Var<T>& g, const PhaseGeometry& pg, Index Hc, Index Wc) {
    const Shape& s = g.shape();
    const Index f = pg.f, N = s[0], O = s[1], H = s[2] / f, W = s[3] / f;
    const Tensor<T> gc = g.value().contiguous();
    Tensor<T> y = Tensor<T>::zeros(Shape{N, f * f * O, Hc, Wc});
    parallel_for(N * O, [&](Index no) {
        const Index n = no / O, o = no % O;
        const T* src = gc.data() + no * f * H * f * W;
        for (Index a = 0; a < f; ++a)
            for (Index b = 0; b < f; ++b) {
                T* dst = y.data() + ((n * f * f + a * f + b) * O + o) * Hc * Wc + pg.q0[a] * Wc + pg.q0[b];
                for (Index i = 0; i < H; ++i)
                    for (Index j = 0; j < W; ++j) dst[i * Wc + j] = src[(f * i + a) * f * W + f * j + b];
            }
    });
    return record("phase_split", y, {g}, [pg, H, W](const Var<T>& gg, std::span<const bool>) {
        return std::vector<Var<T>>{phase_interleave(gg, pg, H, W)};
    });
}

}  // namespace detail

/// x [N,C,H,W], weight [O,C,k,k] with k odd, optional bias [O], factor f >= 1
/// -> [N,O,f·H,f·W], equal to conv2d(upsample2d(x, f), weight, bias, {.padding = (k-1)/2}).
template <Real T>
Var<T> upsample_conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, Index factor) {
    const Shape &xs = x.shape(), &ws = weight.shape();
    EMBER_CHECK(xs.rank() == 4, "upsample_conv2d", "expected input [N,C,H,W], got ", xs.str());
    EMBER_CHECK(ws.rank() == 4 && ws[2] == ws[3] && ws[2] % 2 == 1, "upsample_conv2d",
                "expected a square kernel of odd size [O,C,k,k] (\"same\" padding), got ", ws.str());
    EMBER_CHECK(ws[1] == xs[1], "upsample_conv2d", "input has ", xs[1], " channels but weight expects ", ws[1], ": ",
                xs.str(), " * ", ws.str());
    EMBER_CHECK(factor >= 1, "upsample_conv2d", "factor must be >= 1, got ", factor);
    const Index O = ws[0], C = ws[1], k = ws[2], f = factor;
    const detail::PhaseGeometry pg(f, k);
    const Index t = pg.taps;
    // Phase kernels [f²·O, C, t, t]: W's taps summed by the 0/1 tap matrix, then the phase
    // axis moved in front of the output channels.
    Var<T> taps = matmul(reshape(weight, Shape{O * C, k * k}), Var<T>(pg.tap_matrix<T>()));
    taps = transpose(transpose(reshape(taps, Shape{O, C, f * f, t * t}), 0, 2), 1, 2);  // [f², O, C, t²]
    const Var<T> phases = conv2d(x, reshape(taps, Shape{f * f * O, C, t, t}), Var<T>{}, Conv2dOptions{.padding = pg.pad});
    return detail::add_channel_bias(detail::phase_interleave(phases, pg, xs[2], xs[3]), bias, O, "upsample_conv2d");
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_UPSAMPLE_CONV_INSTANCES(X, T) \
    X template Var<T> upsample_conv2d<T>(const Var<T>&, const Var<T>&, const Var<T>&, Index);
EMBER_EXTERN_INSTANCES(EMBER_UPSAMPLE_CONV_INSTANCES)

}  // namespace ember
