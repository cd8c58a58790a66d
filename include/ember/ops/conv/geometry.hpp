#pragma once
/// \file
/// The geometry of a 2-D convolution, shared by conv.hpp's autodiff and every backend in this
/// folder: the sizes of input, output and kernel, and which output columns a kernel tap reads
/// inside the image.
#include <algorithm>

#include "ember/core/shape.hpp"

namespace ember::detail {

// One convolution x[N,C,H,W] -> y[N,O,Ho,Wo] with a kh x kw kernel.
struct ConvGeometry {
    Index N, C, H, W, O, kh, kw, stride, pad, dil, Ho, Wo;
    Index patch() const { return C * kh * kw; }
    Index pixels() const { return Ho * Wo; }
    Shape x_shape() const { return {N, C, H, W}; }
    Shape y_shape() const { return {N, O, Ho, Wo}; }
    Shape w_shape() const { return {O, C, kh, kw}; }
};

inline Index conv_out_size(Index in, Index k, Index stride, Index pad, Index dil) {
    return (in + 2 * pad - dil * (k - 1) - 1) / stride + 1;
}

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

}  // namespace ember::detail
