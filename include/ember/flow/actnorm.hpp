#pragma once
/// \file
/// ActNorm (Glow, Kingma & Dhariwal 2018): a per-channel affine map
///
///     y = (x + bias) ⊙ exp(log_scale),   x [N, C] or [N, C, H, W], bias and log_scale [C],
///     log|det ∂y/∂x| = Σ_c log_scale_c            for vectors,
///                    = H·W · Σ_c log_scale_c      for images (each channel scales H·W pixels),
///     x = y ⊙ exp(-log_scale) - bias.
/// Data-dependent initialisation: the first forward pass sets, per channel c,
///
///     bias_c = -mean_c(x),   log_scale_c = -log(std_c(x) + eps)
/// (mean and biased std over the batch and, for images, all pixels), so that the first
/// batch leaves with zero mean and unit variance per channel; from then on both are
/// ordinary parameters. The flag "initialized" is a buffer, so a model restored from a
/// checkpoint does not initialise again and overwrite what it learned. The initialisation
/// happens in whichever mode the module is in (as in Glow); call initialize(x) to choose
/// the batch explicitly. inverse() before any initialisation uses the current parameters
/// (the identity for a new layer).
#include <cmath>

#include "ember/core/instances.hpp"
#include "ember/flow/step.hpp"

namespace ember::flow {

/// Per-channel affine step with data-dependent initialisation (Glow's ActNorm; see the file
/// description).
template <Real T>
class ActNorm : public FlowStep<T> {
public:
    /// An uninitialised ActNorm over `channels` channels; `eps` keeps the first scale finite.
    explicit ActNorm(Index channels, double eps = 1e-6) : channels_(channels), eps_(eps) {
        EMBER_CHECK(channels > 0, "ActNorm", "channels must be positive, got ", channels);
        EMBER_CHECK(eps > 0, "ActNorm", "eps must be positive, got ", eps);
        bias_ = this->register_parameter("bias", Tensor<T>::zeros(Shape{channels}));
        log_scale_ = this->register_parameter("log_scale", Tensor<T>::zeros(Shape{channels}));
        initialized_ = this->register_buffer("initialized", Tensor<T>::zeros(Shape{}));
    }

    /// Whether the data-dependent initialisation has happened (a buffer: checkpoints keep it).
    bool initialized() const { return initialized_.item() != T(0); }

    /// Sets bias and log_scale from the batch x (see the header comment), in place.
    void initialize(const Var<T>& x) {
        check_input("ActNorm::initialize", x.shape());
        const Shape per_channel = channel_shape(x.shape());
        const Index count = x.numel() / channels_;
        EMBER_CHECK(count > 1, "ActNorm::initialize", "needs more than one value per channel to estimate a scale, got ",
                    x.shape().str());
        NoGrad no_grad;
        const Tensor<T> xv = x.value();
        const Tensor<T> mean = sum_to(Var<T>(xv), per_channel).value() * (T(1) / static_cast<T>(count));
        const Tensor<T> var = sum_to(Var<T>(Tensor<T>(square(xv - mean))), per_channel).value() * (T(1) / static_cast<T>(count));
        bias_.value().copy_from(Tensor<T>(-mean).reshape(Shape{channels_}));
        log_scale_.value().copy_from(Tensor<T>(-log(sqrt(var) + static_cast<T>(eps_))).reshape(Shape{channels_}));
        initialized_.fill(T(1));
    }

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        check_input("ActNorm", x.shape());
        if (!initialized()) initialize(x);
        const Shape per_channel = channel_shape(x.shape());
        const Var<T> y((x + reshape(bias_, per_channel)) * exp(reshape(log_scale_, per_channel)));
        const Index pixels = x.rank() == 4 ? x.dim(2) * x.dim(3) : 1;
        const Var<T> total(sum(log_scale_) * static_cast<T>(pixels));
        return {y, detail::same_for_each_sample(total, x.dim(0))};
    }

    Var<T> inverse(const Var<T>& y) override {
        check_input("ActNorm::inverse", y.shape());
        const Shape per_channel = channel_shape(y.shape());
        return Var<T>(y * exp(-reshape(log_scale_, per_channel)) - reshape(bias_, per_channel));
    }

    /// The bias parameter [C].
    const Var<T>& bias() const { return bias_; }
    /// The log-scale parameter [C].
    const Var<T>& log_scale() const { return log_scale_; }

    std::string describe() const override { return nn::detail::call_string("ActNorm", channels_); }

private:
    void check_input(const char* op, const Shape& s) const {
        EMBER_CHECK((s.rank() == 2 || s.rank() == 4) && s[1] == channels_, op, "expected input [N,", channels_,
                    "] or [N,", channels_, ",H,W], got ", s.str());
    }
    static Shape channel_shape(const Shape& s) {  // [1,C] or [1,C,1,1]
        return s.rank() == 2 ? Shape{1, s[1]} : Shape{1, s[1], 1, 1};
    }

    Index channels_;
    double eps_;
    Var<T> bias_, log_scale_;
    Tensor<T> initialized_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_ACTNORM_INSTANCES(X, T) \
    X template class ActNorm<T>;
EMBER_EXTERN_INSTANCES(EMBER_ACTNORM_INSTANCES)

}  // namespace ember::flow
