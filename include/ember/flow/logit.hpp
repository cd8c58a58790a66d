#pragma once
/// \file
/// The logit transform (RealNVP's preprocessing), elementwise on x ∈ [0, 1]:
///
///     u = α + (1 - 2α) x                     squeezes [0,1] into [α, 1-α], away from 0 and 1
///     y = logit(u) = log u - log(1 - u)      maps it onto the real line, where a Gaussian base
///                                            density has support
///     dy/dx = (1 - 2α) / (u (1 - u)),  so  log|det ∂y/∂x| = Σ [log(1 - 2α) - log u - log(1 - u)]
///     x = (sigmoid(y) - α) / (1 - 2α)
/// As the first step of a flow, it makes log p(x) a density on [0,1]^D (what bits per
/// dimension needs, image.hpp). α = 0.05 as in RealNVP; α = 0 is the plain logit and then
/// x must lie strictly inside (0, 1). Inputs outside the domain are an error rather than
/// a NaN or ±inf.
#include <cmath>

#include "ember/core/instances.hpp"
#include "ember/flow/step.hpp"

namespace ember::flow {

/// The logit transform y = logit(α + (1 - 2α) x) of data in [0, 1] (see the file description).
template <Real T>
class LogitTransform : public FlowStep<T> {
public:
    /// A transform with squeeze parameter `alpha` in [0, 0.5).
    explicit LogitTransform(double alpha = 0.05) : alpha_(alpha) {
        EMBER_CHECK(alpha >= 0 && alpha < 0.5, "LogitTransform", "alpha must be in [0, 0.5), got ", alpha);
    }

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        EMBER_CHECK(x.rank() >= 2, "LogitTransform", "expected input [N, ...], got ", x.shape().str());
        check_domain(x.value());
        const Var<T> u(x * static_cast<T>(1 - 2 * alpha_) + static_cast<T>(alpha_));
        const Var<T> log_u(log(u)), log_1mu(log(T(1) - u));
        const Var<T> y(log_u - log_1mu);
        const Var<T> log_dydx(static_cast<T>(std::log(1 - 2 * alpha_)) - log_u - log_1mu);
        return {y, detail::sum_per_sample(log_dydx)};
    }

    Var<T> inverse(const Var<T>& y) override {
        EMBER_CHECK(y.rank() >= 2, "LogitTransform::inverse", "expected input [N, ...], got ", y.shape().str());
        return Var<T>((sigmoid(y) - static_cast<T>(alpha_)) * static_cast<T>(1 / (1 - 2 * alpha_)));
    }

    /// α.
    double alpha() const { return alpha_; }
    std::string describe() const override { return nn::detail::call_string("LogitTransform", alpha_); }

private:
    void check_domain(const Tensor<T>& x) const {
        const Tensor<T> c = x.contiguous();
        for (Index i = 0; i < c.numel(); ++i) {
            const T v = c.data()[i];
            const bool ok = alpha_ > 0 ? (v >= T(0) && v <= T(1)) : (v > T(0) && v < T(1));
            EMBER_CHECK(ok, "LogitTransform", "input of shape ", x.shape().str(), " has ", v, " at element ", i,
                        alpha_ > 0 ? "; expected values in [0, 1]" : "; expected values in (0, 1) (alpha = 0)");
        }
    }

    double alpha_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_LOGIT_INSTANCES(X, T) \
    X template class LogitTransform<T>;
EMBER_EXTERN_INSTANCES(EMBER_LOGIT_INSTANCES)

}  // namespace ember::flow
