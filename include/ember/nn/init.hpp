#pragma once
/// \file
/// Weight initialisers, with PyTorch's definitions (torch/nn/init.py), filling a tensor in
/// place from a seeded Generator:
///
///     uniform_, normal_, constant_, zeros_, ones_
///     xavier_uniform_ / xavier_normal_   (Glorot & Bengio 2010): std = gain·sqrt(2/(fan_in+fan_out))
///     kaiming_uniform_ / kaiming_normal_ (He et al. 2015):       std = gain/sqrt(fan)
///     dcgan_                              (Radford et al. 2016): N(0, 0.02) weights, as the DCGAN code does
/// fan_in and fan_out follow PyTorch: for a weight of shape [a, b, k...], fan_in = b·prod(k)
/// and fan_out = a·prod(k) (so for ConvTranspose2d, whose weight is [in, out, k, k], PyTorch's
/// "fan_in" is out·k·k; we keep that so that the defaults match PyTorch's exactly).
#include <cmath>
#include <string_view>

#include "ember/core/random.hpp"
#include "ember/core/tensor.hpp"

/// Weight initialisers with PyTorch's definitions, filling a tensor in place from a
/// Generator.
namespace ember::nn::init {

/// The fan-in and fan-out of a weight shape (see the file description).
struct Fans {
    ///@{
    /// Inputs and outputs per unit, as PyTorch counts them.
    Index fan_in, fan_out;
///@}
};

/// fan_in and fan_out of a weight of shape `s` (rank >= 2).
inline Fans fans(const Shape& s) {
    EMBER_CHECK(s.rank() >= 2, "nn::init", "fan in and fan out need a weight of rank >= 2, got ", s.str());
    Index receptive = 1;
    for (int i = 2; i < s.rank(); ++i) receptive *= s[i];
    return {s[1] * receptive, s[0] * receptive};
}

/// Which fan a Kaiming initialiser scales by.
enum class FanMode { fan_in, fan_out };

/// PyTorch's calculate_gain for the nonlinearity that follows the layer.
inline double gain(std::string_view nonlinearity, double param = 0.01) {
    if (nonlinearity == "linear" || nonlinearity == "conv2d" || nonlinearity == "sigmoid" ||
        nonlinearity == "conv_transpose2d")
        return 1.0;
    if (nonlinearity == "tanh") return 5.0 / 3.0;
    if (nonlinearity == "relu") return std::sqrt(2.0);
    if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + param * param));
    if (nonlinearity == "selu") return 0.75;
    ember::detail::fail("nn::init::gain", "unknown nonlinearity '", std::string(nonlinearity),
                 "' (linear, conv2d, sigmoid, tanh, relu, leaky_relu, selu)");
}

/// Fills t with U(lo, hi) draws.
template <Real T>
void uniform_(const Tensor<T>& t, Generator& gen, double lo, double hi) {
    EMBER_CHECK(lo <= hi, "nn::init::uniform_", "lower bound ", lo, " exceeds upper bound ", hi);
    t.copy_from(uniform<T>(t.shape(), gen, static_cast<T>(lo), static_cast<T>(hi)));
}
/// Fills t with N(mean, std²) draws.
template <Real T>
void normal_(const Tensor<T>& t, Generator& gen, double mean, double std) {
    EMBER_CHECK(std >= 0, "nn::init::normal_", "std must be >= 0, got ", std);
    t.copy_from(normal<T>(t.shape(), gen, static_cast<T>(mean), static_cast<T>(std)));
}
/// Sets every element of t to v.
template <Real T>
void constant_(const Tensor<T>& t, double v) {
    t.fill(static_cast<T>(v));
}
/// Sets every element of t to 0.
template <Real T>
void zeros_(const Tensor<T>& t) {
    t.fill(T(0));
}
/// Sets every element of t to 1.
template <Real T>
void ones_(const Tensor<T>& t) {
    t.fill(T(1));
}

/// Glorot & Bengio's uniform initialiser: U(-a, a) with a = gain·sqrt(6/(fan_in + fan_out)).
template <Real T>
void xavier_uniform_(const Tensor<T>& t, Generator& gen, double gain = 1.0) {
    const Fans f = fans(t.shape());
    const double a = gain * std::sqrt(6.0 / static_cast<double>(f.fan_in + f.fan_out));
    uniform_(t, gen, -a, a);
}
/// Glorot & Bengio's normal initialiser: N(0, std²) with std = gain·sqrt(2/(fan_in + fan_out)).
template <Real T>
void xavier_normal_(const Tensor<T>& t, Generator& gen, double gain = 1.0) {
    const Fans f = fans(t.shape());
    normal_(t, gen, 0.0, gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out)));
}

namespace detail {
inline double kaiming_std(const Shape& s, double a, FanMode mode, std::string_view nonlinearity) {
    const Fans f = fans(s);
    const Index fan = mode == FanMode::fan_in ? f.fan_in : f.fan_out;
    EMBER_CHECK(fan > 0, "nn::init::kaiming", "weight ", s.str(), " has a zero fan");
    return gain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
}
}  // namespace detail

/// a is the negative slope of the leaky ReLU that follows (only used for "leaky_relu").
template <Real T>
void kaiming_uniform_(const Tensor<T>& t, Generator& gen, double a = 0, FanMode mode = FanMode::fan_in,
                      std::string_view nonlinearity = "leaky_relu") {
    const double bound = std::sqrt(3.0) * detail::kaiming_std(t.shape(), a, mode, nonlinearity);
    uniform_(t, gen, -bound, bound);
}
/// The Kaiming (He) normal initialiser: N(0, std²) with std = gain(nonlinearity, a)/sqrt(fan),
/// the fan chosen by `mode`.
template <Real T>
void kaiming_normal_(const Tensor<T>& t, Generator& gen, double a = 0, FanMode mode = FanMode::fan_in,
                     std::string_view nonlinearity = "leaky_relu") {
    normal_(t, gen, 0.0, detail::kaiming_std(t.shape(), a, mode, nonlinearity));
}

/// PyTorch's default for Linear and convolution layers: kaiming_uniform_(a = sqrt(5)) for
/// the weight, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for the bias
/// (undefined when the layer has none).
template <Real T>
void pytorch_default_(const Tensor<T>& weight, const Tensor<T>& bias, Generator& gen) {
    kaiming_uniform_(weight, gen, std::sqrt(5.0));
    if (bias.defined()) {
        const Index fan_in = fans(weight.shape()).fan_in;
        const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
        uniform_(bias, gen, -bound, bound);
    }
}

}  // namespace ember::nn::init
