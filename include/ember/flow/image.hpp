#pragma once
/// \file
/// Image preprocessing and evaluation for flows (docs/math.md §6).
///
/// Uniform dequantisation. A density on 8-bit pixels k ∈ {0..255}^D is degenerate for a
/// continuous model (it could put unbounded density on the grid points); adding uniform
/// noise and rescaling,
///
///     x = (k + u) / 256,   u ~ U[0, 1)^D,   so x ∈ [0, 1)^D,
/// turns it into a continuous density whose log-likelihood lower-bounds the discrete one:
/// log P(k) ≥ E_u[log p(x)] - D log 256 (Theis et al. 2016). The pixel values are checked
/// (integers in 0..255: a common mistake is passing already scaled data), and x is kept
/// strictly below 1, which float rounding of 255 + u would otherwise break (a plain logit
/// transform, α = 0, is infinite at 1).
///
/// Bits per dimension, with log p(x) the model's density on [0, 1)^D (including the logit
/// transform's log-determinant when the flow starts with one, as Flow::log_prob does):
///
///     bits/dim = (-log p(x) + D log 256) / (D log 2)
/// The D log 256 converts the density on [0,1)^D into one on the pixel scale [0,256)^D
/// (the 1/256 rescaling has Jacobian 256^-D), and D log 2 turns nats into bits per pixel.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"

namespace ember::flow {

/// 8-bit pixels (values 0..255, any shape) -> x = (pixels + u) / 256 ∈ [0, 1), u ~ U[0,1).
template <Real T>
Tensor<T> dequantize_pixels(const Tensor<T>& pixels, Generator& gen) {
    const Tensor<T> k = pixels.contiguous();
    const Tensor<double> u = uniform<double>(k.shape(), gen);
    Tensor<T> x = Tensor<T>::empty(k.shape());
    const T below_one = std::nextafter(T(1), T(0));
    for (Index i = 0; i < k.numel(); ++i) {
        const T v = k.data()[i];
        EMBER_CHECK(v >= T(0) && v <= T(255) && v == std::floor(v), "dequantize_pixels", "expected integer pixel values 0..255, got ",
                    v, " at element ", i, " of shape ", k.shape().str());
        x.data()[i] = std::min(static_cast<T>((static_cast<double>(v) + u.data()[i]) / 256.0), below_one);
    }
    return x;
}

/// Bits per dimension of each sample from its log density log p(x) on [0,1)^D ([N] or any
/// shape, elementwise); `dims` = D, the number of values per sample (e.g.\ 784 for MNIST).
template <Real T>
Var<T> bits_per_dim(const Var<T>& log_prob, Index dims) {
    EMBER_CHECK(dims > 0, "bits_per_dim", "number of dimensions must be positive, got ", dims);
    const double d = static_cast<double>(dims);
    return Var<T>((-log_prob + static_cast<T>(d * std::log(256.0))) * static_cast<T>(1 / (d * std::numbers::ln2)));
}
/// bits_per_dim for one log density in double.
inline double bits_per_dim(double log_prob, Index dims) {
    EMBER_CHECK(dims > 0, "bits_per_dim", "number of dimensions must be positive, got ", dims);
    const double d = static_cast<double>(dims);
    return (-log_prob + d * std::log(256.0)) / (d * std::numbers::ln2);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_FLOW_IMAGE_INSTANCES(X, T) \
    X template Tensor<T> dequantize_pixels<T>(const Tensor<T>&, Generator&); \
    X template Var<T> bits_per_dim<T>(const Var<T>&, Index);
EMBER_EXTERN_INSTANCES(EMBER_FLOW_IMAGE_INSTANCES)

}  // namespace ember::flow
