#pragma once
/// \file
/// Step-size adaptation by dual averaging (Nesterov 2009, as tuned for MCMC by Hoffman and
/// Gelman 2014 and used by Stan). During warm-up only: after it the step is fixed, because a
/// step that keeps reacting to the chain's own history breaks detailed balance.
///
/// With a_t the mean acceptance probability min(1, r) over all chains at warm-up step t and
/// δ the target:
///
///     s̄_t       = (1 - 1/(t + t0)) s̄_{t-1} + (δ - a_t) / (t + t0)
///     log ε_t   = μ - √t / γ · s̄_t                (the step used at the next iteration)
///     log ε̄_t   = t^-κ log ε_t + (1 - t^-κ) log ε̄_{t-1}
/// with μ = log(10 ε_0), and the averaged ε̄ is the step kept after warm-up. Too many
/// acceptances push s̄ below zero and ε up, and vice versa. The samplers restart it from its
/// current ε̄ a few times during warm-up (as Stan does at the ends of its adaptation
/// windows) so early iterates far from the answer do not bias the final step.
#include <cmath>
#include <limits>

#include "ember/core/error.hpp"

namespace ember::sample {

/// Settings of the step-size adaptation (see the file description for the iteration).
struct AdaptOptions {
    /// Target mean acceptance probability; NaN means the sampler's own default (MALA 0.574,
    /// HMC 0.65).
    double target_accept = std::numeric_limits<double>::quiet_NaN();
    /// How strongly ε is pulled toward μ; the gain of the iteration is 1/γ. Stan uses 0.05
    /// for one chain, whose per-iteration acceptance is very noisy. Here a_t is a mean over
    /// a batch of chains, and at 0.05 the iterates overshoot and oscillate wherever the
    /// acceptance falls steeply with ε (HMC near its stability limit): on a 20-D Gaussian
    /// with 5 leapfrog steps the kept step then gave 0.71-0.77 acceptance for a 0.65 target
    /// after 200-400 warm-up steps, against 0.65-0.66 with γ = 0.2.
    double gamma = 0.2;
    double t0 = 10;       ///< damps the first iterations (Stan's)
    double kappa = 0.75;  ///< averaging exponent: later iterates weigh more (Stan's)
};

/// Dual averaging of the log step size toward a target acceptance (see the file description).
class DualAveraging {
public:
    /// `shrink_to` is the factor of μ = log(shrink_to · initial_step), the point the early
    /// iterates are drawn to: 10 (Stan's, a bias toward larger steps) from a first guess;
    /// 1 when restarting from an estimate already close.
    DualAveraging(double initial_step, double target, const AdaptOptions& o = {}, double shrink_to = 10)
        : o_(o), target_(target), mu_(std::log(shrink_to * initial_step)), log_step_(std::log(initial_step)) {
        EMBER_CHECK(target > 0 && target < 1, "DualAveraging", "target acceptance must be in (0, 1), got ", target);
        EMBER_CHECK(initial_step > 0 && std::isfinite(initial_step), "DualAveraging",
                    "initial step must be positive and finite, got ", initial_step);
        EMBER_CHECK(o.gamma > 0 && o.t0 >= 0 && o.kappa > 0 && o.kappa <= 1, "DualAveraging",
                    "expected gamma > 0, t0 >= 0, 0 < kappa <= 1, got ", o.gamma, ", ", o.t0, ", ", o.kappa);
    }

    /// Feeds the mean acceptance probability of one iteration; returns the next step.
    double update(double accept_prob) {
        t_ += 1;
        const double eta = 1 / (t_ + o_.t0);
        s_bar_ = (1 - eta) * s_bar_ + eta * (target_ - accept_prob);
        log_step_ = mu_ - std::sqrt(t_) / o_.gamma * s_bar_;
        const double w = std::pow(t_, -o_.kappa);
        log_step_bar_ = w * log_step_ + (1 - w) * log_step_bar_;
        return step();
    }
    /// The step to use at the next iteration, ε_t.
    double step() const { return std::exp(log_step_); }
    /// The step to keep after warm-up (the initial one if no iteration ran).
    double final_step() const { return t_ > 0 ? std::exp(log_step_bar_) : step(); }
    /// The target mean acceptance probability δ.
    double target() const { return target_; }

private:
    AdaptOptions o_;
    double target_, mu_, log_step_;
    double t_ = 0, s_bar_ = 0, log_step_bar_ = 0;
};

}  // namespace ember::sample
