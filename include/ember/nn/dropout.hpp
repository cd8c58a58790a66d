#pragma once
/// \file
/// Dropout(p): in training, zero each element with probability p and scale the rest by
/// 1/(1-p) (so the expected output is the input); in evaluation, the identity. The mask
/// comes from the layer's own Generator, seeded at construction, so a run is reproducible
/// and a checkpoint can save where the stream is (generator().offset()).
#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/nn/module.hpp"

namespace ember::nn {

/// Dropout with probability p (see the file description).
template <Real T>
class Dropout : public Module<T> {
public:
    /// Dropout with probability `p`, its masks drawn from Generator(seed).
    explicit Dropout(double p = 0.5, std::uint64_t seed = 0) : p_(p), gen_(seed) {
        EMBER_CHECK(p >= 0 && p <= 1, "Dropout", "probability must be in [0, 1], got ", p);
    }
    /// In training, x with each element zeroed with probability p and the rest scaled by
    /// 1/(1 - p); in evaluation, x.
    Var<T> forward(const Var<T>& x) override {
        if (!this->is_training() || p_ == 0) return x;
        if (p_ == 1) return Var<T>(x * T(0));
        const Tensor<T> keep = bernoulli<T>(x.shape(), gen_, 1 - p_);
        return Var<T>(x * keep * static_cast<T>(1 / (1 - p_)));
    }
    /// The generator the masks come from.
    Generator& generator() { return gen_; }
    std::string describe() const override { return detail::call_string("Dropout", p_); }

private:
    double p_;
    Generator gen_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_DROPOUT_INSTANCES(X, T) \
    X template class Dropout<T>;
EMBER_EXTERN_INSTANCES(EMBER_DROPOUT_INSTANCES)

}  // namespace ember::nn
