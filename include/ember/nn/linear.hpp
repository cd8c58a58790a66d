#pragma once
/// \file
/// Linear(in, out): y = x Wᵀ + b with W [out, in] and b [out], PyTorch's layout, for x of
/// shape [..., in]. Default initialisation as PyTorch's: W, b ~ U(-1/sqrt(in), 1/sqrt(in)).
#include "ember/core/instances.hpp"
#include "ember/nn/init.hpp"
#include "ember/nn/layer.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/shape.hpp"

namespace ember::nn {

/// y = x Wᵀ + b, as torch.nn.Linear (see the file description).
template <Real T>
class Linear : public WeightedLayer<T> {
public:
    /// A layer from `in_features` to `out_features`, initialised from `gen` as PyTorch does.
    Linear(Index in_features, Index out_features, Generator& gen, bool bias = true)
        : in_(in_features), out_(out_features) {
        EMBER_CHECK(in_features > 0 && out_features > 0, "Linear", "feature counts must be positive, got ", in_features,
                    " and ", out_features);
        this->weight_ = this->register_parameter("weight", Tensor<T>::empty(Shape{out_features, in_features}));
        if (bias) this->bias_ = this->register_parameter("bias", Tensor<T>::empty(Shape{out_features}));
        init::pytorch_default_(this->weight_.value(), bias ? this->bias_.value() : Tensor<T>(), gen);
    }

    /// Number of input features.
    Index in_features() const { return in_; }
    /// Number of output features.
    Index out_features() const { return out_; }

    Var<T> forward_with_weight(const Var<T>& x, const Var<T>& w) override {
        const Shape& xs = x.shape();
        EMBER_CHECK(xs.rank() >= 1 && xs[xs.rank() - 1] == in_, "Linear", "expected input [..., ", in_, "], got ",
                    xs.str(), " (", describe(), ")");
        if (xs.rank() == 2) return affine(x, w);
        // [..., in] -> [M, in] -> [M, out] -> [..., out]
        Shape ys = xs;
        ys[xs.rank() - 1] = out_;
        return reshape(affine(reshape(x, Shape{-1, in_}), w), ys);
    }

    std::string describe() const override {
        return this->bias_.defined() ? detail::call_string("Linear", in_, out_)
                                     : detail::call_string("Linear", in_, out_, "bias=false");
    }

private:
    Var<T> affine(const Var<T>& x, const Var<T>& w) const {
        return linear(x, w, this->bias_);
    }

    Index in_, out_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_LINEAR_INSTANCES(X, T) \
    X template class Linear<T>;
EMBER_EXTERN_INSTANCES(EMBER_LINEAR_INSTANCES)

}  // namespace ember::nn
