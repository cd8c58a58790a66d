#pragma once
/// \file
/// Layers with a weight and an optional bias (Linear, Conv2d, ConvTranspose2d) share this
/// interface, so that a wrapper can transform the weight before the layer uses it:
/// spectral normalisation (spectral_norm.hpp) divides it by its largest singular value.
#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"

namespace ember::nn {

template <Real T>
class WeightedLayer : public Module<T> {
public:
    const Var<T>& weight() const { return weight_; }
    const Var<T>& bias() const { return bias_; }  ///< undefined when the layer has none

    Var<T> forward(const Var<T>& x) override { return forward_with_weight(x, weight_); }
    /// The layer's map with `w` (of the weight's shape) in place of its own weight.
    virtual Var<T> forward_with_weight(const Var<T>& x, const Var<T>& w) = 0;
    /// The weight axis that indexes output features: the rows of the matrix whose largest
    /// singular value spectral normalisation divides by (PyTorch's `dim`).
    virtual int output_axis() const { return 0; }

protected:
    Var<T> weight_, bias_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_LAYER_INSTANCES(X, T) \
    X template class WeightedLayer<T>;
EMBER_EXTERN_INSTANCES(EMBER_LAYER_INSTANCES)

}  // namespace ember::nn
