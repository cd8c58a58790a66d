#pragma once
/// \file
/// Ready-made coupling networks and coupling layers built with them.
///
///     mlp_conditioner(in, hidden, out):   Linear(in, hidden), SiLU, Linear(hidden, hidden),
///                                         SiLU, Linear(hidden, out)           for vectors
///     conv_conditioner(in, hidden, out):  Conv2d 3×3 (padding 1), SiLU, Conv2d 1×1, SiLU,
///                                         Conv2d 3×3 (padding 1)              for images
///                                         (RealNVP's and Glow's shape of network, shallower)
/// The last layer starts at zero, so a new coupling is the identity (s = t = 0): a deep flow
/// starts as a well-conditioned map and learns away from it (Glow, Kingma & Dhariwal 2018).
/// SiLU rather than ReLU: it is smooth, so log p(x) has continuous second derivatives in x
/// (score matching and gradient penalties on a flow's density differentiate it twice).
///
///     affine_coupling_mlp(D, hidden, flip, gen)            vectors, alternating halves
///     affine_coupling_conv(mask, hidden, gen)              images, any [C,H,W] mask
///     additive_coupling_mlp / additive_coupling_conv       the same for NICE's coupling
#include <memory>

#include "ember/core/instances.hpp"
#include "ember/flow/coupling.hpp"
#include "ember/nn/activation.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/sequential.hpp"

namespace ember::flow {

namespace detail {
// Sets a layer's weight and bias to zero (the last layer of a conditioner).
template <Real T>
void zero_layer(nn::WeightedLayer<T>& layer) {
    layer.weight().value().fill(T(0));
    if (layer.bias().defined()) layer.bias().value().fill(T(0));
}
}  // namespace detail

/// Linear(in, hidden), SiLU, Linear(hidden, hidden), SiLU, Linear(hidden, out), the last
/// layer zero: a coupling network for vectors.
template <Real T>
std::shared_ptr<nn::Module<T>> mlp_conditioner(Index in, Index hidden, Index out, Generator& gen) {
    EMBER_CHECK(in > 0 && hidden > 0 && out > 0, "mlp_conditioner", "sizes must be positive, got in=", in,
                ", hidden=", hidden, ", out=", out);
    auto net = std::make_shared<nn::Sequential<T>>();
    net->template add<nn::Linear>(in, hidden, gen);
    net->template add<nn::SiLU>();
    net->template add<nn::Linear>(hidden, hidden, gen);
    net->template add<nn::SiLU>();
    detail::zero_layer(net->template add<nn::Linear>(hidden, out, gen));
    return net;
}

/// Conv2d 3×3, SiLU, Conv2d 1×1, SiLU, Conv2d 3×3 (padding 1), the last layer zero: a
/// coupling network for images.
template <Real T>
std::shared_ptr<nn::Module<T>> conv_conditioner(Index in_channels, Index hidden, Index out_channels, Generator& gen) {
    EMBER_CHECK(in_channels > 0 && hidden > 0 && out_channels > 0, "conv_conditioner",
                "channel counts must be positive, got in=", in_channels, ", hidden=", hidden, ", out=", out_channels);
    auto net = std::make_shared<nn::Sequential<T>>();
    net->template add<nn::Conv2d>(in_channels, hidden, 3, gen, nn::Conv2dOptions{.padding = 1});
    net->template add<nn::SiLU>();
    net->template add<nn::Conv2d>(hidden, hidden, 1, gen);
    net->template add<nn::SiLU>();
    detail::zero_layer(net->template add<nn::Conv2d>(hidden, out_channels, 3, gen, nn::Conv2dOptions{.padding = 1}));
    return net;
}

/// Vectors [N, D]: conditions on the first ⌈D/2⌉ features (flip: on the others).
template <Real T>
std::shared_ptr<AffineCoupling<T>> affine_coupling_mlp(Index features, Index hidden, bool flip, Generator& gen) {
    return std::make_shared<AffineCoupling<T>>(half_mask<T>(features, flip),
                                               mlp_conditioner<T>(features, hidden, 2 * features, gen));
}
/// Vectors [N, D]: NICE's coupling on the first ⌈D/2⌉ features (flip: on the others).
template <Real T>
std::shared_ptr<AdditiveCoupling<T>> additive_coupling_mlp(Index features, Index hidden, bool flip, Generator& gen) {
    return std::make_shared<AdditiveCoupling<T>>(half_mask<T>(features, flip),
                                                 mlp_conditioner<T>(features, hidden, features, gen));
}

/// Images [N,C,H,W] with a [C,H,W] mask (checkerboard_mask or channel_mask).
template <Real T>
std::shared_ptr<AffineCoupling<T>> affine_coupling_conv(const Tensor<T>& mask, Index hidden, Generator& gen) {
    EMBER_CHECK(mask.defined() && mask.rank() == 3, "affine_coupling_conv", "expected a [C,H,W] mask, got ",
                mask.defined() ? mask.shape().str() : "undefined");
    return std::make_shared<AffineCoupling<T>>(mask, conv_conditioner<T>(mask.dim(0), hidden, 2 * mask.dim(0), gen));
}
/// Images [N,C,H,W] with a [C,H,W] mask: NICE's coupling with a conv_conditioner.
template <Real T>
std::shared_ptr<AdditiveCoupling<T>> additive_coupling_conv(const Tensor<T>& mask, Index hidden, Generator& gen) {
    EMBER_CHECK(mask.defined() && mask.rank() == 3, "additive_coupling_conv", "expected a [C,H,W] mask, got ",
                mask.defined() ? mask.shape().str() : "undefined");
    return std::make_shared<AdditiveCoupling<T>>(mask, conv_conditioner<T>(mask.dim(0), hidden, mask.dim(0), gen));
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CONDITIONER_INSTANCES(X, T) \
    X template std::shared_ptr<nn::Module<T>> mlp_conditioner<T>(Index, Index, Index, Generator&); \
    X template std::shared_ptr<nn::Module<T>> conv_conditioner<T>(Index, Index, Index, Generator&); \
    X template std::shared_ptr<AffineCoupling<T>> affine_coupling_mlp<T>(Index, Index, bool, Generator&); \
    X template std::shared_ptr<AdditiveCoupling<T>> additive_coupling_mlp<T>(Index, Index, bool, Generator&); \
    X template std::shared_ptr<AffineCoupling<T>> affine_coupling_conv<T>(const Tensor<T>&, Index, Generator&); \
    X template std::shared_ptr<AdditiveCoupling<T>> additive_coupling_conv<T>(const Tensor<T>&, Index, Generator&);
EMBER_EXTERN_INSTANCES(EMBER_CONDITIONER_INSTANCES)

}  // namespace ember::flow
