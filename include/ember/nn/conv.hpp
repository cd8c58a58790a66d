#pragma once
/// \file
/// Conv2d and ConvTranspose2d layers over ember::conv2d / conv_transpose2d, with square
/// kernels and PyTorch's weight layouts and default initialisation:
///
///     Conv2d:           weight [out, in, k, k], bias [out]
///     ConvTranspose2d:  weight [in, out, k, k], bias [out]
///     UpsampleConv2d:   weight [out, in, k, k], bias [out]: nn.Upsample(f) then nn.Conv2d with
///                       "same" padding, computed by upsample_conv2d's phase decomposition
#include "ember/core/instances.hpp"
#include "ember/nn/init.hpp"
#include "ember/nn/layer.hpp"
#include "ember/ops/conv.hpp"
#include "ember/ops/upsample_conv.hpp"

namespace ember::nn {

/// Conv2d's settings besides the channels and kernel size, as PyTorch's arguments.
struct Conv2dOptions {
    ///@{
    /// Stride, zero padding on each side and dilation, as in torch.nn.Conv2d.
    Index stride = 1, padding = 0, dilation = 1;
    ///@}
    /// Whether the layer has a bias.
    bool bias = true;
    /// Applied to the output as the convolution stores it, e.g.
    /// `ConvActivation::leaky_relu(0.2)` in place of a LeakyReLU layer after this one (one
    /// pass over the output and its gradient fewer, the same values).
    ConvActivation activation{};
};
/// ConvTranspose2d's settings besides the channels and kernel size, as PyTorch's arguments.
struct ConvTranspose2dOptions {
    ///@{
    /// Stride, padding, output padding and dilation, as in torch.nn.ConvTranspose2d.
    Index stride = 1, padding = 0, output_padding = 0, dilation = 1;
    ///@}
    /// Whether the layer has a bias.
    bool bias = true;
};

namespace detail {
inline void check_channels(const char* op, Index in, Index out, Index k) {
    EMBER_CHECK(in > 0 && out > 0 && k > 0, op, "channels and kernel size must be positive, got in=", in, ", out=", out,
                ", kernel=", k);
}
}  // namespace detail

/// A 2-D convolution with a square kernel, as torch.nn.Conv2d: weight [out, in, k, k].
template <Real T>
class Conv2d : public WeightedLayer<T> {
public:
    /// A convolution from `in_channels` to `out_channels` with a `kernel` x `kernel` kernel,
    /// initialised from `gen` as PyTorch does.
    Conv2d(Index in_channels, Index out_channels, Index kernel, Generator& gen, Conv2dOptions o = {})
        : in_(in_channels), out_(out_channels), k_(kernel), o_(o) {
        detail::check_channels("Conv2d", in_channels, out_channels, kernel);
        this->weight_ = this->register_parameter("weight", Tensor<T>::empty(Shape{out_channels, in_channels, kernel, kernel}));
        if (o.bias) this->bias_ = this->register_parameter("bias", Tensor<T>::empty(Shape{out_channels}));
        init::pytorch_default_(this->weight_.value(), this->bias_.defined() ? this->bias_.value() : Tensor<T>(), gen);
    }

    Var<T> forward_with_weight(const Var<T>& x, const Var<T>& w) override {
        return conv2d(x, w, this->bias_, ember::Conv2dOptions{o_.stride, o_.padding, o_.dilation, o_.activation});
    }
    std::string describe() const override {
        const std::optional<double> slope = o_.activation.leaky_relu_slope;
        return ember::nn::detail::call_string("Conv2d", in_, out_, "kernel=" + std::to_string(k_),
                                              "stride=" + std::to_string(o_.stride),
                                              "padding=" + std::to_string(o_.padding)) +
               (o_.bias ? "" : " (no bias)") + (slope ? " -> " + ember::nn::detail::call_string("LeakyReLU", *slope) : std::string());
    }

private:
    Index in_, out_, k_;
    Conv2dOptions o_;
};

/// Nearest upsampling by `factor` followed by a k x k convolution (k odd, padding (k-1)/2):
/// the same function and parameters as Upsample(factor) then Conv2d(in, out, k, padding
/// (k-1)/2), at about half the cost for 3x3 kernels (ember/ops/upsample_conv.hpp).
template <Real T>
class UpsampleConv2d : public WeightedLayer<T> {
public:
    /// A layer upsampling by `factor` then convolving from `in_channels` to `out_channels` with
    /// an odd `kernel`, initialised from `gen` as Conv2d.
    UpsampleConv2d(Index factor, Index in_channels, Index out_channels, Index kernel, Generator& gen, bool bias = true)
        : f_(factor), in_(in_channels), out_(out_channels), k_(kernel) {
        detail::check_channels("UpsampleConv2d", in_channels, out_channels, kernel);
        EMBER_CHECK(factor >= 1 && kernel % 2 == 1, "UpsampleConv2d", "need factor >= 1 and an odd kernel, got factor ",
                    factor, ", kernel ", kernel);
        this->weight_ = this->register_parameter("weight", Tensor<T>::empty(Shape{out_channels, in_channels, kernel, kernel}));
        if (bias) this->bias_ = this->register_parameter("bias", Tensor<T>::empty(Shape{out_channels}));
        init::pytorch_default_(this->weight_.value(), this->bias_.defined() ? this->bias_.value() : Tensor<T>(), gen);
    }

    Var<T> forward_with_weight(const Var<T>& x, const Var<T>& w) override { return upsample_conv2d(x, w, this->bias_, f_); }
    std::string describe() const override {
        return ember::nn::detail::call_string("UpsampleConv2d", "factor=" + std::to_string(f_), in_, out_,
                                              "kernel=" + std::to_string(k_)) +
               (this->bias_.defined() ? "" : " (no bias)");
    }

private:
    Index f_, in_, out_, k_;
};

/// A 2-D transposed convolution with a square kernel, as torch.nn.ConvTranspose2d: weight
/// [in, out, k, k].
template <Real T>
class ConvTranspose2d : public WeightedLayer<T> {
public:
    /// A transposed convolution from `in_channels` to `out_channels` with a `kernel` x `kernel`
    /// kernel, initialised from `gen` as PyTorch does.
    ConvTranspose2d(Index in_channels, Index out_channels, Index kernel, Generator& gen, ConvTranspose2dOptions o = {})
        : in_(in_channels), out_(out_channels), k_(kernel), o_(o) {
        detail::check_channels("ConvTranspose2d", in_channels, out_channels, kernel);
        this->weight_ = this->register_parameter("weight", Tensor<T>::empty(Shape{in_channels, out_channels, kernel, kernel}));
        if (o.bias) this->bias_ = this->register_parameter("bias", Tensor<T>::empty(Shape{out_channels}));
        init::pytorch_default_(this->weight_.value(), this->bias_.defined() ? this->bias_.value() : Tensor<T>(), gen);
    }

    Var<T> forward_with_weight(const Var<T>& x, const Var<T>& w) override {
        return conv_transpose2d(x, w, this->bias_,
                                ember::ConvTranspose2dOptions{o_.stride, o_.padding, o_.output_padding, o_.dilation});
    }
    /// The weight is [in, out, k, k]: output features are axis 1 (PyTorch uses dim=1 too).
    int output_axis() const override { return 1; }
    std::string describe() const override {
        return ember::nn::detail::call_string("ConvTranspose2d", in_, out_, "kernel=" + std::to_string(k_),
                                              "stride=" + std::to_string(o_.stride),
                                              "padding=" + std::to_string(o_.padding)) +
               (o_.bias ? "" : " (no bias)");
    }

private:
    Index in_, out_, k_;
    ConvTranspose2dOptions o_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_NN_CONV_INSTANCES(X, T) \
    X template class Conv2d<T>; \
    X template class UpsampleConv2d<T>; \
    X template class ConvTranspose2d<T>;
EMBER_EXTERN_INSTANCES(EMBER_NN_CONV_INSTANCES)

}  // namespace ember::nn
