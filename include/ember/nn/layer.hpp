#pragma once
/// \file
/// Layers with a weight and an optional bias (Linear, Conv2d, ConvTranspose2d) share this
/// interface, so that a wrapper can transform the weight before the layer uses it:
/// spectral normalisation (spectral_norm.hpp) divides it by its largest singular value.
#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"

namespace ember::nn {

/// A layer with a weight and an optional bias, whose forward can use another weight in place
/// of its own (see the file description).
template <Real T>
class WeightedLayer : public Module<T> {
public:
    /// The weight parameter.
    const Var<T>& weight() const { return weight_; }
    const Var<T>& bias() const { return bias_; }  ///< undefined when the layer has none

    /// forward_with_weight(x, weight()).
    Var<T> forward(const Var<T>& x) override { return forward_with_weight(x, weight_); }
    /// The layer's map with `w` (of the weight's shape) in place of its own weight.
    virtual Var<T> forward_with_weight(const Var<T>& x, const Var<T>& w) = 0;
    /// The weight axis that indexes output features: the rows of the matrix whose largest
    /// singular value spectral normalisation divides by (PyTorch's `dim`).
    virtual int output_axis() const { return 0; }

protected:
    ///@{
    /// The weight and bias parameters; derived layers register them in their constructors.
    Var<T> weight_, bias_;
///@}
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_LAYER_INSTANCES(X, T) \
    X template class WeightedLayer<T>;
EMBER_EXTERN_INSTANCES(EMBER_LAYER_INSTANCES)

}  // namespace ember::nn
