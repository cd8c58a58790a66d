#pragma once
/// \file
/// Stride-1 convolutions with few output channels, without im2col.
///
/// A generator's or decoder's last layer maps many channels to one image (32 -> 1 at 28x28).
/// Through im2col it would first write C·k² copies of every pixel (225 000 floats per
/// 28x28 image for 32 channels and a 3x3 kernel), only to feed a GEMM with one row: a
/// matrix-vector product bound by memory. Instead, each input plane is copied once into a
/// zero-padded buffer of width Wp = W + 2p. In that layout a kernel tap (ki, kj) is a
/// constant shift (ki·Wp + kj)·d of the flat index, so a tap's contribution to a run of
/// outputs is a run of inputs read at one offset. The output is computed at padded width
/// over L = (Ho-1)·Wp + Wo positions; the Wp - Wo extra columns of each row are dropped
/// (forward) or held at zero (weight gradient). Buffers carry a zero tail, so the SIMD
/// loops run over whole blocks.
///
///     forward: each block of outputs is held in registers for all O channels while every
///              tap of every input channel is added (one load per tap, O fused multiply-adds);
///     weight:  dW[o,c,tap] = Σ_q gy[o,q]·x[c,q+shift(tap)], one dot product per (o, c, tap)
///              with four partial sums to hide the FMA latency.
///
/// The input gradient needs no kernel here: for stride 1 it is itself a convolution with
/// O input channels (conv_adjoint_as_conv), whose im2col is small.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>
#include "ember/core/simd.hpp"

#include "ember/core/tensor.hpp"
#include "ember/core/threading.hpp"
#include "ember/ops/conv/epilogue.hpp"
#include "ember/ops/conv/geometry.hpp"

// The loops over the O output channels and the U vectors of a block have constant trip
// counts; unrolled, their accumulators live in registers (GCC at -O2 would keep them in
// memory).
#define EMBER_UNROLL _Pragma("GCC unroll 16")

namespace ember::detail {

// Up to this many output channels the direct kernels beat im2col + GEMM: on 64 images,
// one thread, 32 -> 1 (3x3, 28x28) and 64 -> 4 (2x2, 14x14, the decoders' phase convolution).
inline constexpr Index kDirectConvMaxOut = 4;

inline bool direct_conv_applies(const ConvGeometry& g) {
    return g.stride == 1 && g.O >= 1 && g.O <= kDirectConvMaxOut;
}

// The padded layout of one sample, and the kernel's geometry in flat offsets.
struct DirectLayout {
    Index C, O, taps;          // input channels, output channels, kh·kw
    Index plane;               // Hp·Wp: one padded input plane
    Index L;                   // output positions at padded width
    Index Lpad;                // L rounded up to whole blocks
    std::vector<Index> shift;  // flat offset of each tap (ki, kj): (ki·Wp + kj)·d
};

template <Real T>
inline constexpr Index kDirectBlock = 4 * static_cast<Index>(xsimd::batch<T>::size);

template <Real T>
DirectLayout direct_layout(const ConvGeometry& g) {
    const Index Hp = g.H + 2 * g.pad, Wp = g.W + 2 * g.pad;
    DirectLayout l{g.C, g.O, g.kh * g.kw, Hp * Wp, (g.Ho - 1) * Wp + g.Wo, 0, {}};
    l.Lpad = (l.L + kDirectBlock<T> - 1) / kDirectBlock<T> * kDirectBlock<T>;
    for (Index ki = 0; ki < g.kh; ++ki)
        for (Index kj = 0; kj < g.kw; ++kj) l.shift.push_back((ki * Wp + kj) * g.dil);
    return l;
}

// Copies the C planes of one sample into `xp` [C, Hp·Wp] plus a zero tail, zero outside
// the image. The last tap read of the last block ends within shift.back() + Lpad.
template <Real T>
void pad_planes(const ConvGeometry& g, const DirectLayout& l, const T* x, std::vector<T>& xp) {
    const Index Wp = g.W + 2 * g.pad;
    xp.assign(static_cast<std::size_t>(std::max(g.C * l.plane, (g.C - 1) * l.plane + l.shift.back() + l.Lpad)), T(0));
    for (Index c = 0; c < g.C; ++c)
        for (Index iy = 0; iy < g.H; ++iy)
            copy_row(x + (c * g.H + iy) * g.W, g.W, xp.data() + c * l.plane + (iy + g.pad) * Wp + g.pad);
}

// yp [O, Lpad] = the convolution of one padded sample at padded width.
template <Real T, int O>
void direct_forward_sample(const DirectLayout& l, const T* xp, const T* w, T* yp) {
    using B = xsimd::batch<T>;
    constexpr Index S = B::size, U = kDirectBlock<T> / S;
    for (Index q = 0; q < l.Lpad; q += U * S) {
        B acc[O][U];
        EMBER_UNROLL
        for (int o = 0; o < O; ++o)
            EMBER_UNROLL
            for (Index u = 0; u < U; ++u) acc[o][u] = B(T(0));
        for (Index c = 0; c < l.C; ++c)
            for (Index t = 0; t < l.taps; ++t) {
                const T* in = xp + c * l.plane + l.shift[static_cast<std::size_t>(t)] + q;
                B v[U];
                EMBER_UNROLL
                for (Index u = 0; u < U; ++u) v[u] = B::load_unaligned(in + u * S);
                EMBER_UNROLL
                for (int o = 0; o < O; ++o) {
                    const B wt(w[(o * l.C + c) * l.taps + t]);
                    EMBER_UNROLL
                    for (Index u = 0; u < U; ++u) acc[o][u] = xsimd::fma(wt, v[u], acc[o][u]);
                }
            }
        EMBER_UNROLL
        for (int o = 0; o < O; ++o)
            EMBER_UNROLL
            for (Index u = 0; u < U; ++u) acc[o][u].store_unaligned(yp + o * l.Lpad + q + u * S);
    }
}

// dw [O, C, taps] += Σ_q gp[o, q] · xp[c, q + shift(t)] for one sample; gp [O, Lpad] is zero
// beyond each row's Wo columns and beyond L.
template <Real T, int O>
void direct_weight_sample(const DirectLayout& l, const T* xp, const T* gp, T* dw) {
    using B = xsimd::batch<T>;
    constexpr Index S = B::size, U = kDirectBlock<T> / S;
    for (Index c = 0; c < l.C; ++c)
        for (Index t = 0; t < l.taps; ++t) {
            const T* in = xp + c * l.plane + l.shift[static_cast<std::size_t>(t)];
            B acc[O][U];
            EMBER_UNROLL
            for (int o = 0; o < O; ++o)
                EMBER_UNROLL
                for (Index u = 0; u < U; ++u) acc[o][u] = B(T(0));
            for (Index q = 0; q < l.Lpad; q += U * S)
                EMBER_UNROLL
                for (Index u = 0; u < U; ++u) {
                    const B v = B::load_unaligned(in + q + u * S);
                    EMBER_UNROLL
                    for (int o = 0; o < O; ++o)
                        acc[o][u] = xsimd::fma(B::load_unaligned(gp + o * l.Lpad + q + u * S), v, acc[o][u]);
                }
            EMBER_UNROLL
            for (int o = 0; o < O; ++o) {
                B sum = acc[o][0];
                EMBER_UNROLL
                for (Index u = 1; u < U; ++u) sum += acc[o][u];
                dw[(o * l.C + c) * l.taps + t] += xsimd::hadd(sum);
            }
        }
}

// Calls f with O as a compile-time constant (1..kDirectConvMaxOut), so that the kernels'
// accumulators are fixed-size arrays the compiler keeps in registers.
template <class F>
void with_out_channels(Index O, F&& f) {
    switch (O) {
        case 1: f(std::integral_constant<int, 1>{}); break;
        case 2: f(std::integral_constant<int, 2>{}); break;
        case 3: f(std::integral_constant<int, 3>{}); break;
        default: f(std::integral_constant<int, 4>{}); break;
    }
}

// y [N, O, Ho, Wo] = epilogue(conv(x [N, C, H, W], w [O, C, kh, kw])), stride 1, x and w
// contiguous.
template <Real T>
Tensor<T> conv_forward_direct(const ConvGeometry& g, const Tensor<T>& x, const Tensor<T>& w, const ConvEpilogue<T>& epilogue) {
    const DirectLayout l = direct_layout<T>(g);
    const Index Wp = g.W + 2 * g.pad;
    Tensor<T> y = Tensor<T>::empty(g.y_shape());
    parallel_for(g.N, [&](Index n) {
        thread_local std::vector<T> xp, yp;
        pad_planes(g, l, x.data() + n * g.C * g.H * g.W, xp);
        yp.resize(static_cast<std::size_t>(g.O * l.Lpad));
        with_out_channels(g.O, [&](auto O) { direct_forward_sample<T, O.value>(l, xp.data(), w.data(), yp.data()); });
        for (Index o = 0; o < g.O; ++o)
            for (Index oy = 0; oy < g.Ho; ++oy) {
                const T* from = yp.data() + o * l.Lpad + oy * Wp;
                T* to = y.data() + ((n * g.O + o) * g.Ho + oy) * g.Wo;
                epilogue.write_row(o, from, g.Wo, to);
            }
    });
    return y;
}

// dW [O, C, kh, kw] = Σ_n Σ_pixels gy[n, o, p] · x[n, c, p + tap], stride 1, x and gy
// contiguous. The samples are cut into private_sum_parts ranges, each summed into its own
// buffer, and the buffers are added in order (the same result whichever thread runs which).
template <Real T>
Tensor<T> conv_weight_direct(const ConvGeometry& g, const Tensor<T>& x, const Tensor<T>& gy) {
    const DirectLayout l = direct_layout<T>(g);
    const Index Wp = g.W + 2 * g.pad, size = g.O * g.C * l.taps;
    const int parts = private_sum_parts(g.N);
    std::vector<std::vector<T>> part(static_cast<std::size_t>(parts));
    parallel_tasks(parts, [&](int k) {
        std::vector<T>& acc = part[static_cast<std::size_t>(k)];
        acc.assign(static_cast<std::size_t>(size), T(0));
        thread_local std::vector<T> xp, gp;
        for (Index n = g.N * k / parts; n < g.N * (k + 1) / parts; ++n) {
            pad_planes(g, l, x.data() + n * g.C * g.H * g.W, xp);
            gp.assign(static_cast<std::size_t>(g.O * l.Lpad), T(0));  // the extra columns and the tail stay zero
            for (Index o = 0; o < g.O; ++o)
                for (Index oy = 0; oy < g.Ho; ++oy)
                    copy_row(gy.data() + ((n * g.O + o) * g.Ho + oy) * g.Wo, g.Wo, gp.data() + o * l.Lpad + oy * Wp);
            with_out_channels(g.O, [&](auto O) { direct_weight_sample<T, O.value>(l, xp.data(), gp.data(), acc.data()); });
        }
    });
    Tensor<T> dw = Tensor<T>::empty(g.w_shape());
    std::copy(part[0].begin(), part[0].end(), dw.data());
    for (std::size_t p = 1; p < part.size(); ++p)
        for (Index i = 0; i < size; ++i) dw.data()[i] += part[p][static_cast<std::size_t>(i)];
    return dw;
}

}  // namespace ember::detail

#undef EMBER_UNROLL
