#pragma once
/// \file
/// Flow: a sequence of invertible steps f = f_K ∘ … ∘ f_1 over a standard normal base
/// density (docs/math.md §6):
///
///     forward_and_logdet(x) = (z, Σ_k logdet_k)      z = f(x), per-sample sums [N]
///     inverse(z)            = f_1⁻¹(…f_K⁻¹(z))
///     log_prob(x)           = log N(f(x); 0, I) + Σ_k log|det ∂f_k|        [N]
///     sample(n, gen, τ)     = f⁻¹(τ ε),  ε ~ N(0, I)
/// Sampling with a temperature τ < 1 draws from the base density narrowed to N(0, τ² I),
/// trading diversity for typical-looking samples (Glow); τ = 1 samples the model itself.
/// Train by maximising mean(log_prob(x)) (or minimising bits_per_dim, image.hpp).
///
///     flow::Flow<float> f(Shape{2});                       // per-sample shape of x
///     f.add<flow::ActNorm>(2);
///     f.add(flow::affine_coupling_mlp<float>(2, 64, false, gen));
///     f.add(flow::affine_coupling_mlp<float>(2, 64, true, gen));
///     Var<float> nll = mean(Var<float>(-f.log_prob(Var<float>(x))));
///
/// A Flow is itself a step, so flows nest. Its steps are children "0", "1", ..., so their
/// parameters are "0.bias", "2.net.0.weight", ...
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ember/core/random.hpp"
#include "ember/flow/step.hpp"
#include "ember/info/vae.hpp"

namespace ember::flow {

/// A sequence of steps over a standard normal base density, with log_prob and sampling; itself
/// a step, so flows nest (see the file description).
template <Real T>
class Flow : public FlowStep<T> {
public:
    /// event_shape: the per-sample shape of x, e.g.\ {2} for points, {1, 28, 28} for images.
    explicit Flow(const Shape& event_shape) : event_(event_shape), latent_(event_shape) {
        bool ok = event_shape.rank() >= 1 && event_shape.rank() < kMaxRank;
        for (int d = 0; ok && d < event_shape.rank(); ++d) ok = event_shape[d] > 0;
        EMBER_CHECK(ok, "Flow", "per-sample shape must have rank 1 to 3 and positive sizes, got ", event_shape.str());
    }

    /// Appends a step built in place from `args`: f.add<ActNorm>(2).
    template <template <Real> class S, class... A>
    S<T>& add(A&&... args) {
        return *add(std::make_shared<S<T>>(std::forward<A>(args)...));
    }
    /// Appends an existing step (shared: the caller may keep a handle to it).
    template <class S>
    std::shared_ptr<S> add(std::shared_ptr<S> step) {
        static_assert(std::is_base_of_v<FlowStep<T>, S>, "Flow::add takes flow steps (FlowStep<T>)");
        EMBER_CHECK(step != nullptr, "Flow::add", "step is null");
        latent_ = step->output_shape(latent_);
        steps_.push_back(step);
        return this->register_module(std::to_string(steps_.size() - 1), std::move(step));
    }

    /// Number of steps.
    std::size_t size() const { return steps_.size(); }
    /// Step `i`, in the order they were added.
    FlowStep<T>& operator[](std::size_t i) const {
        EMBER_CHECK(i < steps_.size(), "Flow", "step ", i, " out of range for ", steps_.size(), " steps");
        return *steps_[i];
    }
    const Shape& event_shape() const { return event_; }    ///< per-sample shape of x
    const Shape& latent_shape() const { return latent_; }  ///< per-sample shape of z = f(x)

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        detail::check_event_shape("Flow", x.shape(), event_);
        Var<T> h = x;
        Var<T> logdet = detail::zero_logdet<T>(x.dim(0));
        for (const auto& step : steps_) {
            FlowOutput<T> out = step->forward_and_logdet(h);
            EMBER_CHECK(out.logdet.shape() == Shape{x.dim(0)}, "Flow", "step ", step->describe(), " returned a log-determinant of shape ",
                        out.logdet.shape().str(), "; expected [", x.dim(0), "] (one per sample)");
            h = std::move(out.y);
            logdet = Var<T>(logdet + out.logdet);
        }
        return {h, logdet};
    }

    Var<T> inverse(const Var<T>& z) override {
        detail::check_event_shape("Flow::inverse", z.shape(), latent_);
        Var<T> h = z;
        for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) h = (*it)->inverse(h);
        return h;
    }

    Shape output_shape(const Shape& in) const override {
        EMBER_CHECK(in == event_, "Flow", "expected per-sample shape ", event_.str(), ", got ", in.str());
        return latent_;
    }

    /// log p(x) per sample, [N]: the standard normal log density of z = f(x) plus Σ logdet.
    Var<T> log_prob(const Var<T>& x) {
        const FlowOutput<T> out = forward_and_logdet(x);
        return Var<T>(info::standard_normal_log_prob(out.y, latent_.rank()) + out.logdet);
    }

    /// n samples f⁻¹(τ ε), ε ~ N(0, I), shaped [n, event_shape...]. Wrap in NoGrad unless
    /// gradients through the samples are wanted.
    Var<T> sample(Index n, Generator& gen, double temperature = 1.0) {
        EMBER_CHECK(n > 0, "Flow::sample", "number of samples must be positive, got ", n);
        EMBER_CHECK(temperature > 0 && std::isfinite(temperature), "Flow::sample", "temperature must be positive, got ",
                    temperature);
        return inverse(Var<T>(normal<T>(detail::with_batch(n, latent_), gen, T(0), static_cast<T>(temperature))));
    }

    std::string describe() const override { return "Flow(" + event_.str() + " -> " + latent_.str() + ")"; }

private:
    Shape event_, latent_;
    std::vector<std::shared_ptr<FlowStep<T>>> steps_;
};

}  // namespace ember::flow
